"""The Amplitude simulator over real HTTP: data fidelity, export archive, errors and faults."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import zipfile
import zlib
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
import requests

from amplitude_simulator import AmplitudeSimulator, Dataset, Fault, Project, User
from amplitude_simulator.data import dataset as dataset_module

if TYPE_CHECKING:
    from collections.abc import Iterator

UTC = timezone.utc
HOUR = timedelta(hours=1)
START = datetime(2024, 3, 1, tzinfo=UTC)
DATASET = Dataset(start=START, end=START + timedelta(days=2), events_per_hour=30, users=25)
PROJECT = Project()
AUTH = (PROJECT.api_key, PROJECT.secret_key)
EXPORT = "/api/2/export"

# Typed out from docs/amplitude-api.md §2.3 rather than imported, so the test can disagree.
DOCUMENTED_KEYS = {
    "$insert_id", "$insert_key", "$schema", "adid", "amplitude_attribution_ids",
    "amplitude_event_type", "amplitude_id", "app", "city", "client_event_time",
    "client_upload_time", "country", "data", "data_type", "device_brand", "device_carrier",
    "device_family", "device_id", "device_manufacturer", "device_model", "device_type", "dma",
    "event_id", "event_properties", "event_time", "event_type", "global_user_properties",
    "group_properties", "groups", "idfa", "ip_address", "is_attribution_event", "language",
    "library", "location_lat", "location_lng", "os_name", "os_version", "partner_id", "paying",
    "plan", "platform", "processed_time", "region", "sample_rate", "server_received_time",
    "server_upload_time", "session_id", "source_id", "start_version", "user_creation_time",
    "user_id", "user_properties", "uuid", "version_name",
}  # fmt: skip
TIMESTAMP_KEYS = (
    "client_event_time",
    "client_upload_time",
    "event_time",
    "processed_time",
    "server_received_time",
    "server_upload_time",
    "user_creation_time",
)
WITH_FRACTION = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$")
WITHOUT_FRACTION = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
MEMBER_NAME = re.compile(r"^(\d+)/(\d+)_(\d{4}-\d{2}-\d{2})_(\d{1,2})#(\d+)\.json\.gz$")
NOT_FOUND = "Raw data files were not found."
TOO_LARGE = (
    "The file size of the exported data is too large. Shorten the time ranges and try again. "
    "The limit size is 4GB."
)


@pytest.fixture
def sim() -> Iterator[AmplitudeSimulator]:
    with AmplitudeSimulator(DATASET) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def all_events() -> list[dict[str, Any]]:
    return DATASET.expected_events(DATASET.start, DATASET.end)


def param(hour: datetime) -> str:
    return hour.strftime("%Y%m%dT%H")


def get_export(
    sim: AmplitudeSimulator, first: datetime, last: datetime, **kwargs: Any
) -> requests.Response:
    params = {"start": param(first), "end": param(last)}
    return requests.get(f"{sim.url}{EXPORT}", params=params, auth=AUTH, timeout=10, **kwargs)


def read_archive(body: bytes) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every ``.gz`` member's rows, in archive order."""
    members = []
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        for name in archive.namelist():
            if name.endswith(".gz"):
                text = gzip.decompress(archive.read(name)).decode()
                assert text.endswith("\n")
                members.append((name, [json.loads(line) for line in text.splitlines()]))
    return members


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def is_empty_hour(hour: datetime) -> bool:
    return DATASET.events_for_hour(hour) == []


# ------------------------------------------------------------------------------------------
# the data


def test_every_row_has_exactly_the_55_keys(all_events: list[dict[str, Any]]) -> None:
    assert len(DOCUMENTED_KEYS) == 55
    assert len(all_events) > 1000
    for event in all_events:
        assert set(event) == DOCUMENTED_KEYS
    # Missing values are present as null, not absent.
    assert all(event["sample_rate"] is None for event in all_events)
    assert any(event["user_id"] is None for event in all_events)


def test_uuids_are_unique_v4_across_the_export_and_user_activity(
    all_events: list[dict[str, Any]],
) -> None:
    uuids = [event["uuid"] for event in all_events]
    for user in DATASET.user_list()[:5]:
        uuids += [event["uuid"] for event in DATASET.user_activity(user.amplitude_id)]
    assert len(uuids) == len(set(uuids))
    v4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert all(v4.fullmatch(u) for u in uuids)


def test_timestamps_use_amplitudes_format_and_sometimes_lack_the_fraction(
    all_events: list[dict[str, Any]],
) -> None:
    without = 0
    for event in all_events:
        for key in TIMESTAMP_KEYS:
            value = event[key]
            assert WITH_FRACTION.match(value) or WITHOUT_FRACTION.match(value), (key, value)
        without += any(WITHOUT_FRACTION.match(event[key]) for key in TIMESTAMP_KEYS)
    share = without / len(all_events)
    assert 0.02 < share < 0.09  # about 1 in 20


def test_upload_time_is_inside_the_hour_and_some_events_are_late() -> None:
    late = 0
    for hour in DATASET.hours():
        for event in DATASET.events_for_hour(hour):
            uploaded = parse_ts(event["server_upload_time"])
            assert hour <= uploaded < hour + HOUR
            happened = parse_ts(event["event_time"])
            # Clocks less than a minute ahead are not corrected (docs/amplitude-api.md §2.3).
            assert happened < uploaded + timedelta(minutes=1)
            late += uploaded - happened > timedelta(hours=1)
    assert late > 10


def test_rows_are_realistically_nested_and_sized(all_events: list[dict[str, Any]]) -> None:
    sizes = [
        len(json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode()) for e in all_events
    ]
    assert 1500 < sum(sizes) / len(sizes) < 2300
    sample = all_events[0]
    assert isinstance(sample["amplitude_id"], int)
    assert sample["app"] == PROJECT.app_id
    for event in all_events:
        props = event["event_properties"]
        assert len(props) >= 10
        assert any(isinstance(v, dict) for v in props.values())
        assert any(isinstance(v, list) for v in props.values())
        assert len(event["user_properties"]) >= 11
        assert event["data"]["path"] in {"/2/httpapi", "/batch"}
        assert event["plan"] in ({}, {"branch": "main", "source": "web", "version": "3"})
    assert Counter(bool(e["groups"]) for e in all_events).keys() == {True, False}
    assert {e["session_id"] == -1 for e in all_events} == {True, False}


def test_generation_is_deterministic_and_hours_are_independent() -> None:
    hours = DATASET.hours()[:4]
    first = [DATASET.events_for_hour(h) for h in hours]
    dataset_module.clear_caches()
    twin = Dataset(start=START, end=START + timedelta(days=2), events_per_hour=30, users=25)
    again = [twin.events_for_hour(h) for h in reversed(hours)][::-1]
    assert json.dumps(first) == json.dumps(again)
    other_seed = Dataset(start=START, end=DATASET.end, events_per_hour=30, users=25, seed=2)
    assert other_seed.events_for_hour(hours[0]) != first[0]


def test_generation_does_not_depend_on_the_process() -> None:
    code = (
        "import hashlib, sys\n"
        "from datetime import datetime, timezone\n"
        "from amplitude_simulator.data.dataset import Dataset, hour_members\n"
        "utc = timezone.utc\n"
        "ds = Dataset(datetime(2024, 3, 1, tzinfo=utc), datetime(2024, 3, 3, tzinfo=utc),\n"
        "             events_per_hour=30, users=25)\n"
        "digest = hashlib.sha256()\n"
        "for hour in ds.hours()[:3]:\n"
        "    for member in hour_members(ds, hour):\n"
        "        digest.update(member)\n"
        "sys.stdout.write(digest.hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    digest = hashlib.sha256()
    for hour in DATASET.hours()[:3]:
        for member in dataset_module.hour_members(DATASET, hour):
            digest.update(member)
    assert child.stdout == digest.hexdigest()


def test_empty_hours_follow_empty_hour_every() -> None:
    counts = [len(DATASET.events_for_hour(h)) for h in DATASET.hours()]
    empty = [index for index, count in enumerate(counts) if count == 0]
    assert empty == [i for i in range(len(counts)) if (i + 1) % 7 == 0]
    busy = [count for count in counts if count]
    assert min(busy) >= 15
    assert max(busy) <= 45
    assert len(set(busy)) > 5
    assert DATASET.events_for_hour(DATASET.start - HOUR) == []


def test_dataset_refuses_naive_or_unaligned_bounds() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Dataset(start=datetime(2024, 3, 1), end=datetime(2024, 3, 2, tzinfo=UTC))
    with pytest.raises(ValueError, match="hour boundary"):
        Dataset(start=START + timedelta(minutes=5), end=DATASET.end)


def test_users_mix_emails_and_ids_and_the_first_is_heavy() -> None:
    users = DATASET.user_list()
    assert len(users) == 25
    assert all(isinstance(user, User) for user in users)
    assert any("@" in u.user_id for u in users)
    assert any(re.fullmatch(r"user_\d{4}", u.user_id) for u in users)
    assert len({u.amplitude_id for u in users}) == 25
    assert all(10**11 <= u.amplitude_id < 10**12 for u in users)
    counts = [len(DATASET.user_activity(u.amplitude_id)) for u in users]
    assert counts[0] > 1000
    assert min(counts) < 10
    assert DATASET.user_activity(1) == []


# ------------------------------------------------------------------------------------------
# export


def test_export_zip_layout_and_inclusive_bounds(sim: AmplitudeSimulator) -> None:
    first, last = START + 5 * HOUR, START + 9 * HOUR
    response = get_export(sim, first, last)
    assert response.status_code == 200
    assert response.content[:4] == b"PK\x03\x04"
    assert response.headers["Content-Type"] == "application/zip"
    members = read_archive(response.content)
    parts: dict[int, list[int]] = {}
    for name, _ in members:
        found = MEMBER_NAME.match(name)
        assert found, name
        assert found[1] == found[2] == str(PROJECT.app_id)
        assert found[3] == "2024-03-01"
        assert not found[4].startswith("0") or found[4] == "0"
        parts.setdefault(int(found[4]), []).append(int(found[5]))
    expected_hours = [h.hour for h in (first + i * HOUR for i in range(5)) if not is_empty_hour(h)]
    assert sorted(parts) == expected_hours
    assert 6 not in parts  # the 7th hour of the dataset has no data
    for numbers in parts.values():
        assert numbers == list(range(len(numbers)))
    assert any(len(numbers) > 1 for numbers in parts.values())
    rows = [row for _, member in members for row in member]
    assert rows == DATASET.expected_events(first, last + HOUR)
    uploaded = [parse_ts(row["server_upload_time"]) for row in rows]
    assert min(uploaded) < first + HOUR
    assert max(uploaded) >= last


def test_single_hour_window(sim: AmplitudeSimulator) -> None:
    hour = START + 2 * HOUR
    rows = [r for _, m in read_archive(get_export(sim, hour, hour).content) for r in m]
    assert rows == DATASET.events_for_hour(hour)


def test_export_is_byte_identical_across_requests_and_storage(sim: AmplitudeSimulator) -> None:
    first, last = START, START + 23 * HOUR
    in_memory = get_export(sim, first, last).content
    assert len(in_memory) < sim.export.spool_threshold_bytes
    sim.export.spool_threshold_bytes = 0  # stream from a temp file
    spooled = get_export(sim, first, last).content
    assert spooled == in_memory


def test_export_404_on_windows_without_rows(sim: AmplitudeSimulator) -> None:
    empty_hour = START + 6 * HOUR
    assert is_empty_hour(empty_hour)
    for first, last in [
        (empty_hour, empty_hour),
        (START - 48 * HOUR, START - HOUR),
        (DATASET.end, DATASET.end + 5 * HOUR),
    ]:
        response = get_export(sim, first, last)
        assert response.status_code == 404
        assert response.text == NOT_FOUND


def test_hours_inside_the_export_lag_are_not_served() -> None:
    now = START + timedelta(hours=5, minutes=30)
    with AmplitudeSimulator(DATASET, now=now, export_lag_hours=2) as simulator:
        response = get_export(simulator, START, START + 23 * HOUR)
        assert response.status_code == 200
        hours = {int(MEMBER_NAME.match(name)[4]) for name, _ in read_archive(response.content)}  # type: ignore[index]
        assert hours == {0, 1, 2}
        late = get_export(simulator, START + 3 * HOUR, START + 5 * HOUR)
        assert late.status_code == 404
        assert late.text == NOT_FOUND


@pytest.mark.parametrize(
    ("params", "mentions"),
    [
        ({"end": "20240301T05"}, "start"),
        ({"start": "20240301T05"}, "end"),
        ({"start": "2024-03-01", "end": "20240301T05"}, "start"),
        ({"start": "20240301T05", "end": "20240301T24"}, "end"),
        ({"start": "20240301T5", "end": "20240301T05"}, "start"),
        ({"start": "20240301T06", "end": "20240301T05"}, "start must not be after end"),
        ({"start": "20230301T00", "end": "20240229T00"}, "365 days"),
    ],
)
def test_export_400_on_bad_parameters(
    sim: AmplitudeSimulator, params: dict[str, str], mentions: str
) -> None:
    response = requests.get(f"{sim.url}{EXPORT}", params=params, auth=AUTH, timeout=10)
    assert response.status_code == 400
    assert mentions in response.text


def test_a_span_of_exactly_365_days_is_allowed(sim: AmplitudeSimulator) -> None:
    last = START + 2 * HOUR
    first = last - timedelta(days=365) + HOUR  # 8,760 hours, both ends included
    response = get_export(sim, first, last)
    assert response.status_code == 200
    assert get_export(sim, first - HOUR, last).status_code == 400


def test_export_max_events_answers_400_too_large(sim: AmplitudeSimulator) -> None:
    first, last = START, START + 4 * HOUR
    total = len(DATASET.expected_events(first, last + HOUR))
    sim.export_max_events = total - 1
    response = get_export(sim, first, last)
    assert response.status_code == 400
    assert response.text == TOO_LARGE
    sim.export_max_events = total
    assert get_export(sim, first, last).status_code == 200


def test_export_timeout_hours_answers_504(sim: AmplitudeSimulator) -> None:
    sim.export_timeout_hours = 4
    response = get_export(sim, START, START + 4 * HOUR)  # five hours
    assert response.status_code == 504
    assert "Gateway Timeout" in response.text
    assert get_export(sim, START, START + 3 * HOUR).status_code == 200


def test_marker_entries_are_added_only_when_asked(sim: AmplitudeSimulator) -> None:
    first, last = START, START + 7 * HOUR
    plain = zipfile.ZipFile(io.BytesIO(get_export(sim, first, last).content)).namelist()
    assert all(name.endswith(".json.gz") for name in plain)
    sim.export_include_marker = True
    names = zipfile.ZipFile(io.BytesIO(get_export(sim, first, last).content)).namelist()
    markers = [name for name in names if not name.endswith(".gz")]
    busy = [h for h in (first + i * HOUR for i in range(8)) if not is_empty_hour(h)]
    app = PROJECT.app_id
    assert markers == [f"{app}/{app}_{h:%Y-%m-%d}_{h.hour}_complete" for h in busy]
    assert sorted(set(names) - set(markers)) == sorted(plain)


def test_rows_carry_the_simulated_projects_app_id() -> None:
    project = Project(app_id=999001, api_key="k", secret_key="s")
    with AmplitudeSimulator(DATASET, project) as simulator:
        response = requests.get(
            f"{simulator.url}{EXPORT}",
            params={"start": "20240301T00", "end": "20240301T01"},
            auth=("k", "s"),
            timeout=10,
        )
        members = read_archive(response.content)
    assert all(name.startswith("999001/999001_2024-03-01_") for name, _ in members)
    assert {row["app"] for _, rows in members for row in rows} == {999001}


# ------------------------------------------------------------------------------------------
# authentication, routing, request log


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("path", [EXPORT, "/api/2/events/list", "/api/2/usersearch"])
@pytest.mark.parametrize(
    ("authorization", "status", "text"),
    [
        (None, 401, "Missing or malformed Authorization header"),
        ("Bearer abc", 401, "Missing or malformed Authorization header"),
        ("Basic !!!not-base64", 401, "Missing or malformed Authorization header"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), 401, "Missing or malformed"),
        (basic("wrong-key", PROJECT.secret_key), 403, "Invalid API Key"),
        (basic(PROJECT.api_key, "wrong-secret"), 403, "Invalid API Key"),
    ],
)
def test_bad_credentials(
    sim: AmplitudeSimulator, path: str, authorization: str | None, status: int, text: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.get(
        f"{sim.url}{path}", params={"start": "20240301T00", "end": "20240301T01", "user": "x"},
        headers=headers, timeout=10,
    )  # fmt: skip
    assert response.status_code == status
    assert text in response.text


def test_unknown_path_is_an_empty_404_and_wrong_method_405(sim: AmplitudeSimulator) -> None:
    response = requests.get(f"{sim.url}/api/2/nope", auth=AUTH, timeout=10)
    assert response.status_code == 404
    assert response.content == b""
    assert requests.post(f"{sim.url}{EXPORT}", auth=AUTH, timeout=10).status_code == 405


def test_request_log_records_answers_without_credentials(sim: AmplitudeSimulator) -> None:
    get_export(sim, START, START + HOUR)
    requests.get(f"{sim.url}/api/2/events/list", auth=("x", "y"), timeout=10)
    records = sim.requests
    assert [(r.method, r.path, r.status) for r in records] == [
        ("GET", EXPORT, 200),
        ("GET", "/api/2/events/list", 403),
    ]
    assert records[0].params == {"start": "20240301T00", "end": "20240301T01"}
    assert records[0].at <= records[1].at
    dumped = repr(records)
    assert PROJECT.secret_key not in dumped
    assert basic(*AUTH).split()[1] not in dumped
    sim.clear_requests()
    assert sim.requests == []


def test_keep_alive_session_and_stop(sim: AmplitudeSimulator) -> None:
    with requests.Session() as session:
        session.auth = AUTH
        for _ in range(3):
            assert session.get(f"{sim.url}/api/2/events/list", timeout=10).status_code == 200
        url = sim.url
        sim.stop()
        with pytest.raises(requests.ConnectionError):
            session.get(f"{url}/api/2/events/list", timeout=2)


# ------------------------------------------------------------------------------------------
# faults


def test_status_fault_is_served_times_then_consumed(sim: AmplitudeSimulator) -> None:
    sim.add_fault(EXPORT, Fault.status(429, "Too many requests", {"Retry-After": "1"}), times=2)
    for _ in range(2):
        response = get_export(sim, START, START)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        assert response.text == "Too many requests"
    assert get_export(sim, START, START).status_code == 200
    assert [r.status for r in sim.requests] == [429, 429, 200]


def test_faults_are_first_in_first_out_per_path(sim: AmplitudeSimulator) -> None:
    sim.add_fault(EXPORT, Fault.status(500))
    sim.add_fault(EXPORT, Fault.status(503))
    sim.add_fault("/api/2/events/list", Fault.status(502))
    assert get_export(sim, START, START).status_code == 500
    assert requests.get(f"{sim.url}/api/2/events/list", auth=AUTH, timeout=10).status_code == 502
    response = get_export(sim, START, START)
    assert response.status_code == 503
    assert response.text == "Service Unavailable"
    assert get_export(sim, START, START).status_code == 200


def test_fault_with_a_condition_waits_for_a_matching_request(sim: AmplitudeSimulator) -> None:
    target = param(START + 2 * HOUR)
    sim.add_fault(EXPORT, Fault.status(504), when=lambda params: params.get("start") == target)
    assert get_export(sim, START, START).status_code == 200
    assert get_export(sim, START + 2 * HOUR, START + 2 * HOUR).status_code == 504
    assert get_export(sim, START + 2 * HOUR, START + 2 * HOUR).status_code == 200


def test_not_zip_fault_is_a_200_html_page(sim: AmplitudeSimulator) -> None:
    sim.add_fault(EXPORT, Fault.not_zip())
    response = get_export(sim, START, START)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(response.content))
    assert read_archive(get_export(sim, START, START).content)


@pytest.mark.parametrize("spooled", [False, True])
def test_truncated_fault_breaks_the_download(sim: AmplitudeSimulator, spooled: bool) -> None:
    if spooled:
        sim.export.spool_threshold_bytes = 0
    full = get_export(sim, START, START + 3 * HOUR).content
    sim.add_fault(EXPORT, Fault.truncated())
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        get_export(sim, START, START + 3 * HOUR)
    # Reading by hand shows what arrived: about half of what was declared.
    sim.add_fault(EXPORT, Fault.truncated())
    response = get_export(sim, START, START + 3 * HOUR, stream=True)
    assert int(response.headers["Content-Length"]) == len(full)
    received = bytearray()

    def drain() -> None:
        for chunk in response.iter_content(4096):
            received.extend(chunk)

    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        drain()
    assert 0 < len(received) < len(full)
    assert bytes(received) == full[: len(received)]
    assert get_export(sim, START, START + 3 * HOUR).content == full


@pytest.mark.parametrize("spooled", [False, True])
def test_corrupt_gzip_fault_damages_only_the_first_member(
    sim: AmplitudeSimulator, spooled: bool
) -> None:
    if spooled:
        sim.export.spool_threshold_bytes = 0
    sim.add_fault(EXPORT, Fault.corrupt_gzip())
    response = get_export(sim, START, START + 3 * HOUR)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None  # the zip is fine; its first member is not
        names = archive.namelist()
        with pytest.raises((OSError, EOFError, zlib.error)):
            gzip.decompress(archive.read(names[0]))
        for name in names[1:]:
            assert gzip.decompress(archive.read(name))
    assert read_archive(get_export(sim, START, START + 3 * HOUR).content)


def test_delay_fault_trips_a_read_timeout_once(sim: AmplitudeSimulator) -> None:
    sim.add_fault("/api/2/events/list", Fault.delay(0.6))
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{sim.url}/api/2/events/list", auth=AUTH, timeout=0.2)
    response = requests.get(f"{sim.url}/api/2/events/list", auth=AUTH, timeout=0.5)
    assert response.status_code == 200


# ------------------------------------------------------------------------------------------
# dashboard endpoints


def dashboard(sim: AmplitudeSimulator, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{sim.url}/api/2/{path}", params=params, auth=AUTH, timeout=10)


def test_events_list_matches_the_rows(
    sim: AmplitudeSimulator, all_events: list[dict[str, Any]]
) -> None:
    body = dashboard(sim, "events/list").json()
    items = body["data"]
    assert 12 <= len(items) <= 20
    keys = {
        "id", "name", "value", "display", "totals", "totals_delta", "non_active", "deleted",
        "hidden", "flow_hidden", "autohidden", "clusters_hidden", "in_waitroom", "timeline_hidden",
    }  # fmt: skip
    assert all(set(item) == keys for item in items)
    assert len({item["id"] for item in items}) == len(items)
    assert not any(item["hidden"] for item in items)
    assert {e["event_type"] for e in all_events} <= {item["value"] for item in items}
    page_viewed = next(item for item in items if item["value"] == "page_viewed")
    assert page_viewed["totals"] > 0


def test_usersearch_exact_amplitude_id_prefix_and_nomatch(sim: AmplitudeSimulator) -> None:
    users = DATASET.user_list()
    email_user = next(u for u in users if "@" in u.user_id)
    body = dashboard(sim, "usersearch", user=email_user.user_id).json()
    assert body["type"] == "match_user_or_device_id"
    assert [m["amplitude_id"] for m in body["matches"]] == [email_user.amplitude_id]
    match = body["matches"][0]
    assert set(match) == {"user_id", "amplitude_id", "last_seen", "platform", "country"}
    assert WITHOUT_FRACTION.match(match["last_seen"])

    by_device = dashboard(sim, "usersearch", user=users[3].device_id).json()
    assert by_device["type"] == "match_user_or_device_id"
    assert by_device["matches"][0]["user_id"] == users[3].user_id

    by_id = dashboard(sim, "usersearch", user=str(users[2].amplitude_id)).json()
    assert by_id["type"] == "match_amplitude_id"
    assert by_id["matches"][0]["user_id"] == users[2].user_id

    prefix = dashboard(sim, "usersearch", user="user_00").json()
    assert prefix["type"] == "match_user_prefix"
    expected = sorted(u.user_id for u in users if u.user_id.startswith("user_00"))
    assert len(expected) > 1
    assert sorted(m["user_id"] for m in prefix["matches"]) == expected

    assert dashboard(sim, "usersearch", user="nobody-here").json() == {
        "matches": [],
        "type": "nomatch",
    }


def test_usersearch_without_user_is_a_400_envelope(sim: AmplitudeSimulator) -> None:
    response = dashboard(sim, "usersearch")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["http_code"] == 400
    assert error["type"] == "invalid"
    assert "user" in error["message"]
    assert error["metadata"] == {}


def test_useractivity_pages_cover_every_event_once(sim: AmplitudeSimulator) -> None:
    heavy = DATASET.user_list()[0]
    expected = [e["uuid"] for e in DATASET.user_activity(heavy.amplitude_id)]
    assert len(expected) > 1000
    seen: list[str] = []
    pages = 0
    while True:
        body = dashboard(
            sim, "useractivity", user=heavy.amplitude_id, offset=len(seen), limit=1000
        ).json()
        pages += 1
        seen += [e["uuid"] for e in body["events"]]
        if len(body["events"]) < 1000:
            break
    assert pages == len(expected) // 1000 + 1
    assert seen == expected
    user_data = body["userData"]
    assert user_data["num_events"] == len(expected)
    assert user_data["user_id"] == heavy.user_id
    assert user_data["canonical_amplitude_id"] == heavy.amplitude_id
    assert heavy.device_id in user_data["device_ids"]


def test_useractivity_is_newest_first_with_full_rows(sim: AmplitudeSimulator) -> None:
    user = DATASET.user_list()[1]
    events = dashboard(sim, "useractivity", user=user.amplitude_id).json()["events"]
    assert events == DATASET.user_activity(user.amplitude_id)
    uploads = [e["server_upload_time"] for e in events]
    assert uploads == sorted(uploads, reverse=True)
    assert all(set(e) == DOCUMENTED_KEYS for e in events)
    assert {e["amplitude_id"] for e in events} == {user.amplitude_id}


def test_useractivity_limit_is_capped_at_1000(sim: AmplitudeSimulator) -> None:
    heavy = DATASET.user_list()[0]
    body = dashboard(sim, "useractivity", user=heavy.amplitude_id, limit=5000).json()
    assert len(body["events"]) == 1000
    default = dashboard(sim, "useractivity", user=heavy.amplitude_id, offset=5).json()
    assert len(default["events"]) == 1000
    assert default["events"][0]["uuid"] == body["events"][5]["uuid"]


def test_useractivity_unknown_and_invalid_users(sim: AmplitudeSimulator) -> None:
    response = dashboard(sim, "useractivity", user=123)
    assert response.status_code == 200
    assert response.json() == {
        "userData": {
            "num_sessions": 0, "purchases": 0, "revenue": 0, "merged_amplitude_ids": [],
            "num_events": 0, "canonical_amplitude_id": 123, "user_id": None,
            "last_location": None, "usage_time": 0, "last_device_id": None, "device_ids": [],
        },
        "events": [],
    }  # fmt: skip
    for bad in ({"user": "alice@example.com"}, {}, {"user": "1", "offset": "-1"}):
        invalid = dashboard(sim, "useractivity", **bad)
        assert invalid.status_code == 400
        assert invalid.json()["error"]["http_code"] == 400


# ------------------------------------------------------------------------------------------
# command line


def test_cli_prints_url_and_keys_and_exits_cleanly_on_sigterm() -> None:
    options = ["--port", "0", "--start", "2024-01-01", "--days", "1", "--events-per-hour", "5"]
    command = [sys.executable, "-m", "amplitude_simulator", *options]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert PROJECT.api_key in line
            assert PROJECT.secret_key in line
            assert "simulator-only" in line
            found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            assert found, line
            response = requests.get(
                f"{found[0]}{EXPORT}",
                params={"start": "20240101T00", "end": "20240101T02"},
                auth=AUTH,
                timeout=10,
            )
            assert response.status_code == 200
            assert read_archive(response.content)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()


# ------------------------------------------------------------------------------------------
# fidelity (issue #9): flags only add, and nothing from the future is ever reported

PRESENT = START + timedelta(days=1, hours=2, minutes=20)  # inside the dataset's second day


def visible_at(event: dict[str, Any], now: datetime) -> bool:
    """Amplitude has received the event and it has happened."""
    return parse_ts(event["server_upload_time"]) <= now and parse_ts(event["event_time"]) <= now


def test_include_sync_info_only_adds_sync_metadata(sim: AmplitudeSimulator) -> None:
    plain = requests.get(f"{sim.url}/api/3/cohorts", auth=AUTH, timeout=10).json()["cohorts"]
    synced = requests.get(
        f"{sim.url}/api/3/cohorts", params={"includeSyncInfo": "true"}, auth=AUTH, timeout=10
    ).json()["cohorts"]
    assert all("syncMetadata" not in cohort for cohort in plain)
    assert all("syncMetadata" in cohort for cohort in synced)
    assert any(cohort["syncMetadata"] for cohort in synced)
    stripped = [{k: v for k, v in c.items() if k != "syncMetadata"} for c in synced]
    assert stripped == plain


def _chart(sim: AmplitudeSimulator, path: str, **params: str) -> dict[str, Any]:
    response = requests.get(f"{sim.url}{path}", params=params, auth=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["data"]
    return body


def test_charts_never_count_future_events(all_events: list[dict[str, Any]]) -> None:
    visible = [e for e in all_events if visible_at(e, PRESENT)]
    assert len(visible) < len(all_events)  # the dataset reaches past "now"
    days = [START.date(), (START + timedelta(days=1)).date()]
    active: dict[Any, set[int]] = defaultdict(set)
    by_country: dict[str, set[int]] = defaultdict(set)
    ends: dict[tuple[int, int], datetime] = {}
    for event in visible:
        when = parse_ts(event["event_time"])
        active[when.date()].add(event["amplitude_id"])
        if when.date() == days[1]:
            by_country[event["country"] or "(none)"].add(event["amplitude_id"])
        if event["session_id"] != -1:
            key = (event["amplitude_id"], event["session_id"])
            ends[key] = max(ends.get(key, when), when)
    lengths: dict[Any, list[float]] = defaultdict(list)
    for (_, session), end in ends.items():
        begun = datetime.fromtimestamp(session / 1000, tz=UTC)
        lengths[begun.date()].append(max(0.0, (end - begun).total_seconds()))
    with AmplitudeSimulator(DATASET, now=PRESENT) as present:
        users = _chart(present, "/api/2/users", start="20240301", end="20240305")
        assert users["xValues"] == [day.isoformat() for day in days]  # no days after today
        assert users["series"] == [[len(active[day]) for day in days]]
        assert users["series"][0][1] < len(DATASET.user_list())
        countries = _chart(present, "/api/2/users", start="20240302", end="20240302", g="country")
        found = dict(zip(countries["seriesLabels"], countries["series"], strict=True))
        assert found == {country: [len(ids)] for country, ids in by_country.items()}
        sessions = _chart(present, "/api/2/sessions/average", start="20240301", end="20240302")
    expected = [sum(lengths[day]) / len(lengths[day]) for day in days]
    assert sessions["series"] == [pytest.approx(expected)]


def test_users_chart_answers_new_users_per_creation_day() -> None:
    """``m=new`` is a documented metric of /api/2/users (reference §3.3): 200, not 400."""
    created = {  # every user's creation day, as its rows carry it
        e["amplitude_id"]: e["user_creation_time"][:10]
        for e in DATASET.expected_events(DATASET.start, DATASET.end)
    }
    first, last = (START - timedelta(days=401)).date(), START.date()
    with AmplitudeSimulator(DATASET) as sim:
        new = _chart(sim, "/api/2/users", m="new", start=f"{first:%Y%m%d}", end=f"{last:%Y%m%d}")
        refused = requests.get(
            f"{sim.url}/api/2/users",
            params={"m": "bogus", "start": "20240301", "end": "20240301"},
            auth=AUTH,
            timeout=10,
        )
    counts = dict(zip(new["xValues"], new["series"][0], strict=True))
    for day, users in Counter(created.values()).items():
        assert counts[day] >= users
    assert sum(counts.values()) == len(DATASET.user_list())  # each user is new once
    assert refused.status_code == 400


def test_user_lookups_never_show_future_events() -> None:
    users = DATASET.user_list()
    with AmplitudeSimulator(DATASET, now=PRESENT) as present:
        futures = 0
        for user in users:
            everything = DATASET.user_activity(user.amplitude_id)
            expected = [e for e in everything if visible_at(e, PRESENT)]
            futures += len(everything) - len(expected)
            body = dashboard(present, "useractivity", user=user.amplitude_id).json()
            assert body["events"] == expected[:1000]
            assert body["userData"]["num_events"] == len(expected)
            match = dashboard(present, "usersearch", user=user.user_id).json()["matches"][0]
            assert parse_ts(match["last_seen"]) <= PRESENT
            if expected:
                newest = parse_ts(expected[0]["server_upload_time"]).replace(microsecond=0)
                assert parse_ts(match["last_seen"]) == newest
            profile = requests.get(
                f"{present.url}/v1/userprofile",
                params={"user_id": user.user_id, "get_amp_props": "true",
                        "get_computations": "true"},
                headers={"Authorization": f"Api-Key {PROJECT.secret_key}"},
                timeout=10,
            ).json()["userData"]  # fmt: skip
            assert profile["amp_props"]["last_used"] <= PRESENT.date().isoformat()
            assert profile["amp_props"]["comp-events-total"] == str(float(len(expected)))
        assert futures > 0  # some users' activity reaches past "now"


def test_cli_port_in_use_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from amplitude_simulator.__main__ import main

    with AmplitudeSimulator(DATASET) as running:
        port = str(running.url.rsplit(":", 1)[1])
        assert main(["--port", port]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "--port 0" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--port", "70000"], "--port must be from 0 to 65535"),
        (["--start", "0001-01-01"], "--start must be from 2000-01-01"),
        (["--days", "100000"], "--days must be from 1 to 3660"),
    ],
)
def test_cli_values_out_of_range_are_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], named: str
) -> None:
    from amplitude_simulator.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert named in capsys.readouterr().err


def test_cli_host_that_is_not_this_machine_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from amplitude_simulator.__main__ import main

    assert main(["--host", "example.invalid", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "cannot listen on example.invalid:0" in err
    assert "Traceback" not in err
