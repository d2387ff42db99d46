"""Reading Amplitude's cloud-storage export from a folder (``file://``): the tap's CLI end to end.

The simulator's bucket writer (amplitude_simulator.bucket) lays out the dataset as Amplitude
does (hourly jobs on a simulated clock, late hours, several hours per job, parts, markers,
backfill rewrites, merged ids); the tap must read it incrementally, exactly once, and produce
the rows the Export API produces.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from amplitude_simulator import AmplitudeSimulator, Dataset
from amplitude_simulator.bucket import DEFAULT_ORG_ID, BucketExport, FolderSink, Schedule
from tap_amplitude.storage.state import TRAILING
from tests.helpers import TapRun, run_tap, simulator_config
from tests.test_fastpath import _batch_records, _catalog, _sdk_path_messages

START = datetime(2024, 3, 1, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
DATASET = Dataset(start=START, end=START + timedelta(days=2), events_per_hour=20, users=12)
EVENTS = "export_events"
MERGED = "merged_ids"


def bucket_config(url: str, **overrides: Any) -> dict[str, Any]:
    """Reading the bucket needs no project keys: none are given."""
    config: dict[str, Any] = {
        "start_date": DATASET.start.isoformat(),
        "end_date": DATASET.end.isoformat(),
        "storage_export_url": url,
    }
    config.update(overrides)
    return config


def read(
    config: dict[str, Any],
    state: dict[str, Any] | None = None,
    streams: tuple[str, ...] = (EVENTS,),
) -> TapRun:
    run = run_tap(config, streams=list(streams), state=state, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def uuids(run: TapRun) -> list[str]:
    return [record["uuid"] for record in run.records(EVENTS)]


def expected_uuids(dataset: Dataset, start: datetime, end: datetime) -> list[str]:
    return [event["uuid"] for event in dataset.expected_events(start, end)]


@pytest.fixture
def exported(tmp_path: Path) -> BucketExport:
    """Every job of the dataset's export, written to a folder."""
    export = BucketExport(DATASET, FolderSink(tmp_path / "bucket"), prefix="amplitude")
    export.run_all()
    return export


def url_of(tmp_path: Path) -> str:
    return f"file://{tmp_path}/bucket/amplitude"


def test_bucket_rows_equal_export_api_rows_in_record_batch_and_sdk_paths(
    exported: BucketExport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AmplitudeSimulator(DATASET) as simulator:
        api = read(simulator_config(simulator))
    config = bucket_config(url_of(tmp_path))
    bucket = read(config)

    assert len(api.records(EVENTS)) > 500
    assert bucket.records(EVENTS) == api.records(EVENTS)  # same rows, shape and order
    state = bucket.final_state()["bookmarks"][EVENTS]
    assert state["replication_key"] == "server_upload_time"
    assert (
        state["replication_key_value"]
        == api.final_state()["bookmarks"][EVENTS]["replication_key_value"]
    )
    assert "storage" not in api.final_state()["bookmarks"][EVENTS]  # Export API state unchanged

    # The SDK's own per-record path (dry runs) reads the same rows and ends in the same STATE.
    sdk = _sdk_path_messages(config, _catalog([]), monkeypatch)
    assert [m["record"] for m in sdk if m["type"] == "RECORD"] == bucket.records(EVENTS)
    assert [m["value"] for m in sdk if m["type"] == "STATE"][-1] == bucket.final_state()

    # BATCH mode: the same rows, in files.
    batches = tmp_path / "batches"
    batches.mkdir()
    batch_config = {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": f"file://{batches}", "prefix": "amp-"},
        "batch_size": 400,
    }
    batch = read({**config, "batch_config": batch_config})
    assert not batch.records(EVENTS)
    assert _batch_records(batch.messages, 400) == bucket.records(EVENTS)
    assert batch.final_state() == bucket.final_state()


def test_incremental_runs_on_a_simulated_clock_read_every_row_once(tmp_path: Path) -> None:
    """Late hours, two-hour jobs written newest first, markers: the union is the dataset."""
    export = BucketExport(
        DATASET,
        FolderSink(tmp_path / "bucket"),
        prefix="amplitude",
        schedule=Schedule(delay_hours=1, hours_per_job=2, late_every=5, late_by_hours=4),
    )
    state: dict[str, Any] | None = None
    seen: list[str] = []
    bookmarks: list[str] = []
    now = START + 3 * HOUR
    while now <= DATASET.end + 8 * HOUR:
        export.run_until(now)
        run = read(bucket_config(url_of(tmp_path), end_date=now.isoformat()), state)
        seen += uuids(run)
        state = run.final_state()
        bookmark = state["bookmarks"][EVENTS]
        bookmarks.append(bookmark["replication_key_value"])
        read_map = bookmark["storage"]["read"]
        assert len(read_map) <= TRAILING / HOUR + 12  # trailing window + open hours
        now += 7 * HOUR
    jobs = export.jobs
    assert any(len(job) > 1 and job != sorted(job) for job in jobs)  # newest hour first
    assert any(  # a late hour came in a job after a job carrying a later hour
        min(later) < max(earlier) for i, earlier in enumerate(jobs) for later in jobs[i + 1 :]
    )
    assert Counter(seen) == Counter(expected_uuids(DATASET, DATASET.start, DATASET.end))
    assert bookmarks == sorted(bookmarks)
    assert bookmarks[-1] == "2024-03-03T00:00:00.000000Z"


def test_without_markers_hours_close_after_the_grace_period(
    exported: BucketExport, tmp_path: Path
) -> None:
    for marker in (tmp_path / "bucket" / "amplitude" / str(DATASET.app_id)).glob("*_complete"):
        marker.unlink()
    end = START + 30 * HOUR
    run = read(bucket_config(url_of(tmp_path), end_date=end.isoformat()))
    bookmark = run.final_state()["bookmarks"][EVENTS]
    # Everything before the end was read, but only hours 24 h older than it are closed.
    assert Counter(uuids(run)) == Counter(expected_uuids(DATASET, START, end))
    assert bookmark["replication_key_value"] == "2024-03-01T06:00:00.000000Z"
    assert not _warnings(run)  # no markers at all: the grace period is the export's rule
    again = read(bucket_config(url_of(tmp_path), end_date=end.isoformat()), run.final_state())
    assert uuids(again) == []  # open hours listed again; nothing read twice
    assert again.final_state() == run.final_state()


def test_a_backfill_rewrite_is_read_again_and_nothing_else(
    exported: BucketExport, tmp_path: Path
) -> None:
    config = bucket_config(url_of(tmp_path))
    first = read(config)
    assert Counter(uuids(first)) == Counter(expected_uuids(DATASET, DATASET.start, DATASET.end))

    rewritten = [DATASET.end - 5 * HOUR, DATASET.end - 30 * HOUR]  # inside the trailing window
    assert exported.backfill(rewritten, at=DATASET.end + 5 * HOUR)
    second = read(config, first.final_state())

    expected = [u for hour in sorted(rewritten) for u in expected_uuids(DATASET, hour, hour + HOUR)]
    assert Counter(uuids(second)) == Counter(expected)  # the rewritten hours, once each
    assert "was rewritten since it was read" in second.stderr
    warehouse = {r["uuid"]: r for r in first.records(EVENTS)} | {
        r["uuid"]: r for r in second.records(EVENTS)
    }
    assert sorted(warehouse) == sorted(expected_uuids(DATASET, DATASET.start, DATASET.end))

    third = read(config, second.final_state())
    assert uuids(third) == []


def test_hours_are_parsed_not_sorted_lexically(tmp_path: Path) -> None:
    """``_1#`` is not a prefix match of ``_10#``: hour 1 and hour 10 come out in hour order."""
    export = BucketExport(DATASET, FolderSink(tmp_path / "bucket"), prefix="amplitude")
    hours = [START + 10 * HOUR, START + 1 * HOUR, START + 2 * HOUR]
    export.export_hours(hours)
    run = read(bucket_config(url_of(tmp_path), end_date=(START + 11 * HOUR).isoformat()))
    expected = [u for hour in sorted(hours) for u in expected_uuids(DATASET, hour, hour + HOUR)]
    assert uuids(run) == expected


def _export_another_app(tmp_path: Path) -> None:
    """App 999's export, three hours of it, beside the dataset's in the same folder."""
    other = Dataset(start=START, end=START + 3 * HOUR, events_per_hour=5, app_id=999)
    BucketExport(
        other, FolderSink(tmp_path / "bucket"), prefix="amplitude", merged_ids=False
    ).run_all()


def test_project_id_picks_the_app_folder_and_merged_ids_are_read(
    exported: BucketExport, tmp_path: Path
) -> None:
    _export_another_app(tmp_path)
    config = bucket_config(url_of(tmp_path))

    both = read(config, streams=(EVENTS, MERGED))
    apps = Counter(record["app"] for record in both.records(EVENTS))
    assert set(apps) == {DATASET.app_id, 999}

    one = read({**config, "project_id": DATASET.app_id}, streams=(EVENTS, MERGED))
    assert {record["app"] for record in one.records(EVENTS)} == {DATASET.app_id}

    merges = exported.merge_records()
    assert merges
    records = one.records(MERGED)
    assert [(r["amplitude_id"], r["merged_amplitude_id"]) for r in records] == [
        (m["amplitude_id"], m["merged_amplitude_id"]) for m in merges
    ]
    first = records[0]
    assert first["scope"] == -exported.org_id
    assert first["app"] == DATASET.app_id
    assert first["merge_server_time"] == datetime.fromtimestamp(
        merges[0]["merge_server_time"] / 1000, tz=timezone.utc
    ).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    merged_state = one.final_state()["bookmarks"][MERGED]
    assert merged_state["replication_key"] == "merge_server_time"
    assert merged_state["replication_key_value"] == "2024-03-03T00:00:00.000000Z"
    assert (
        read({**config, "project_id": DATASET.app_id}, one.final_state(), (MERGED,)).records(MERGED)
        == []
    )


def test_merged_ids_without_a_bucket_emit_nothing_and_say_why() -> None:
    config = bucket_config("file:///nowhere", api_key="key", secret_key="secret")
    del config["storage_export_url"]
    run = read(config, streams=(MERGED,))
    assert run.records(MERGED) == []
    assert all(state["bookmarks"].get(MERGED, {}) == {} for state in run.states())
    (line,) = [line for line in run.stderr.splitlines() if "merged_ids: emits nothing" in line]
    assert "INFO" in line
    assert "storage_export_url" in line


def test_streams_calling_amplitude_still_need_the_keys(
    exported: BucketExport, tmp_path: Path
) -> None:
    """Only the bucket's streams do without keys; the others are named before any read."""
    run = run_tap(bucket_config(url_of(tmp_path)), streams=[EVENTS, "event_types"], timeout=60)
    assert run.returncode == 1
    (line,) = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert "api_key, secret_key: required setting is missing for the selected streams" in line
    assert "event_types" in line
    assert "export_events" not in line.split("storage_export_url")[0]
    assert run.messages == []

    without_bucket = bucket_config(url_of(tmp_path))
    del without_bucket["storage_export_url"]
    run = run_tap(without_bucket, streams=[EVENTS], timeout=60)
    assert run.returncode == 1
    assert "api_key, secret_key: required setting is missing (only reading" in run.stderr


@pytest.mark.parametrize(
    ("setup", "url_suffix", "config", "expected"),
    [
        ("empty", "", {}, "nothing under it looks like Amplitude's export"),
        ("missing", "/not-there", {}, "does not exist"),
        ("full", "", {"project_id": 4242}, "no 4242/ folder (project_id 4242)"),
    ],
)
def test_wrong_location_is_one_line_naming_the_url(
    tmp_path: Path, setup: str, url_suffix: str, config: dict[str, Any], expected: str
) -> None:
    root = tmp_path / "bucket" / "amplitude"
    root.mkdir(parents=True)
    if setup == "full":
        BucketExport(DATASET, FolderSink(tmp_path / "bucket"), prefix="amplitude").export_hours(
            [START]
        )
    url = url_of(tmp_path) + url_suffix
    run = run_tap(bucket_config(url, **config), streams=[EVENTS], timeout=60)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, run.stderr
    assert expected in errors[0]
    assert url in errors[0]
    assert "Traceback" not in run.stderr


def test_a_corrupt_object_is_retried_then_named(exported: BucketExport, tmp_path: Path) -> None:
    key = exported.event_key(START + 3 * HOUR, 0)
    path = tmp_path / "bucket" / key
    path.write_bytes(path.read_bytes()[:-40])  # cut short: the gzip stream ends early
    run = run_tap(bucket_config(url_of(tmp_path)), streams=[EVENTS], timeout=60)
    assert run.returncode == 1
    assert run.stderr.count("reading it again") == 2
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert key.split("/", 1)[1] in errors[0]
    assert "after 3 tries" in errors[0]
    # What to do about the object, not about credentials or the network.
    assert "cut off or not a gzip of JSON lines" in errors[0]
    assert "may read it" not in errors[0]
    assert "network" not in errors[0]
    # Hours before it were read and checkpointed: the bookmark stops at the damaged hour.
    states = [m for m in run.stdout.splitlines() if '"STATE"' in m]
    last = json.loads(states[-1])["value"]["bookmarks"][EVENTS]["replication_key_value"]
    assert last == "2024-03-01T03:00:00.000000Z"


def test_unsupported_scheme_is_a_config_error() -> None:
    run = run_tap(bucket_config("ftp://host/amplitude"), streams=[EVENTS], timeout=60)
    assert run.returncode == 1
    assert "storage_export_url: must start with s3://, gs:// or file://" in run.stderr


def test_objects_are_streamed_in_blocks(tmp_path: Path) -> None:
    """A large object is handed on in 1 MiB blocks, never read whole (in-process, no tap)."""
    from tap_amplitude.export.archive import LINE_BLOCK_BYTES, member_blocks

    line = b'{"uuid": "x", "event_type": "' + b"y" * 200 + b'"}'
    data = gzip.compress(b"\n".join([line] * 20_000) + b"\n")
    (tmp_path / "big.json.gz").write_bytes(data)
    with gzip.open(tmp_path / "big.json.gz", "rb") as stream:
        sizes = [
            sum(map(len, block.lines))
            for block in member_blocks(stream, "1/1_2024-03-01_0#0.json.gz")
        ]
    assert len(sizes) > 2
    assert max(sizes) <= LINE_BLOCK_BYTES


def test_state_stays_small_after_a_year_of_hourly_files() -> None:
    """A year of hours, three parts each, read and closed: the map keeps the trailing window."""
    from tap_amplitude.storage.source import Entry
    from tap_amplitude.storage.state import ReadState

    state: dict[str, Any] = {}
    read_state = ReadState(state, START)
    hour = START
    for _ in range(365 * 24):
        for part in range(3):
            key = f"187520/187520_{hour:%Y-%m-%d}_{hour.hour}#{part}.json.gz"
            read_state.mark_read(hour, Entry(key, key, f"4096:{part:032x}"))
        read_state.settle(hour, closed=True)
        hour += HOUR
    assert len(state["storage"]["read"]) == TRAILING / HOUR
    assert len(json.dumps(state)) < 20_000
    assert read_state.bookmark == START + timedelta(days=365)


def test_keys_are_parsed_by_hour_not_by_prefix() -> None:
    from tap_amplitude.storage.layout import Kind, parse_key

    one, ten = (
        parse_key("187520_2024-03-02_1#0.json.gz"),
        parse_key("187520_2024-03-02_10#12.json.gz"),
    )
    assert one is not None
    assert ten is not None
    assert (one.hour.hour, one.part, ten.hour.hour, ten.part) == (1, 0, 10, 12)
    marker = parse_key("187520_2024-03-02_7_complete")
    assert marker is not None
    assert marker.marker
    assert not marker.holds(Kind.EVENTS)
    merged = parse_key("-189524_2024-03-02_17.json.gz")
    assert merged is not None
    assert merged.holds(Kind.MERGED_IDS)
    assert not merged.holds(Kind.EVENTS)
    legacy = parse_key("187520_2020-01-25_17.json.gz")  # legacy merged ids in the app folder
    assert legacy is not None
    assert legacy.holds(Kind.MERGED_IDS)
    for other in ("187520_2024-03-02_24#0.json.gz", "187520_2024-03-02_1#0.json", "notes.txt"):
        assert parse_key(other) is None


def test_access_denied_names_the_url_and_the_policy_never_a_secret() -> None:
    from tap_amplitude.storage.source import Bucket, display_url

    assert display_url("s3://AKIA:hunter2@bucket/prefix/?x=1") == "s3://bucket/prefix"
    bucket = Bucket.__new__(Bucket)
    bucket.url, bucket.protocol = "s3://bucket/prefix", "s3"
    denied = PermissionError("AccessDenied: //AKIA:hunter2@host")
    message = str(bucket.problem("storage_export_url s3://bucket/prefix: cannot list it", denied))
    assert message.startswith(
        "storage_export_url s3://bucket/prefix: cannot list it: access denied"
    )
    assert "s3:ListBucket and s3:GetObject" in message
    assert "kms:Decrypt" in message
    assert "hunter2" not in message


def test_export_api_single_hour_refusal_points_at_the_bucket() -> None:
    from tap_amplitude.export.download import S3_HINT

    assert "storage_export_url" in S3_HINT


def _warnings(run: TapRun) -> list[str]:
    return [line for line in run.stderr.splitlines() if "WARNING" in line]


def test_objects_named_for_a_day_but_not_as_data_are_named_not_skipped_silently(
    exported: BucketExport, tmp_path: Path
) -> None:
    folder = tmp_path / "bucket" / "amplitude" / str(DATASET.app_id)
    data = (tmp_path / "bucket" / exported.event_key(START + 3 * HOUR, 0)).read_bytes()
    odd = [
        f"{DATASET.app_id}_2024-03-01_3#5.json.gz.tmp",  # an upload tool's temporary name
        f"{DATASET.app_id}_2024-03-01_24#0.json.gz",  # no hour 24
        f"{DATASET.app_id}_2024-03-01_3#6.json",  # not gzipped
    ]
    for name in odd:
        (folder / name).write_bytes(data)
    (folder / f"{DATASET.app_id}_2024-03-01_3#7.json.gz").mkdir()  # a directory-like key
    run = read(bucket_config(url_of(tmp_path)))
    assert Counter(uuids(run)) == Counter(expected_uuids(DATASET, DATASET.start, DATASET.end))
    [warning] = [line for line in _warnings(run) if "not read" in line]
    for name in [*odd, f"{DATASET.app_id}_2024-03-01_3#7.json.gz"]:
        assert f"{DATASET.app_id}/{name}" in warning


def test_an_hour_closed_without_its_marker_is_named_when_the_export_writes_markers(
    exported: BucketExport, tmp_path: Path
) -> None:
    folder = tmp_path / "bucket" / "amplitude" / str(DATASET.app_id)
    for path in folder.glob(f"{DATASET.app_id}_2024-03-01_5[#_]*"):
        path.unlink()  # hour 5: neither objects nor marker, a gap the grace period closes
    run = read(bucket_config(url_of(tmp_path)))
    gap = [line for line in _warnings(run) if "no _complete marker" in line]
    assert len(gap) == 1, run.stderr
    assert "2024-03-01 05:00 (no objects)" in gap[0]
    assert "2024-03-01 04:00" not in gap[0]
    assert "2024-03-01 06:00" not in gap[0]
    again = read(bucket_config(url_of(tmp_path)), run.final_state())
    assert not _warnings(again)  # named once, when the bookmark passed it


def test_a_state_from_another_project_is_one_line_not_a_silent_skip(
    exported: BucketExport, tmp_path: Path
) -> None:
    """Another app's state: its bookmark would skip this app's hours up to it with exit 0."""
    other = {
        "replication_key": "server_upload_time",
        "replication_key_value": "2024-03-02T00:00:00.000000Z",
        "storage": {"read": {"2024-03-01T23": {"999/999_2024-03-01_23#0.json.gz": "10:abc"}}},
    }
    state = {"bookmarks": {EVENTS: other}}
    run = run_tap(bucket_config(url_of(tmp_path)), streams=[EVENTS], state=state, timeout=60)
    assert run.returncode == 1
    assert not run.records(EVENTS)
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, run.stderr
    assert "999/" in errors[0]
    assert "another project_id or storage_export_url" in errors[0]
    assert "Traceback" not in run.stderr


def test_empty_objects_and_two_keys_for_one_part_are_named_once(
    exported: BucketExport, tmp_path: Path
) -> None:
    folder = tmp_path / "bucket" / "amplitude" / str(DATASET.app_id)
    data = (tmp_path / "bucket" / exported.event_key(START + 3 * HOUR, 0)).read_bytes()
    twin = f"{DATASET.app_id}_2024-03-01_03#0.json.gz"  # hour 3, part 0 again, zero-padded
    (folder / twin).write_bytes(data)
    empty = f"{DATASET.app_id}_2024-03-01_4#7.json.gz"
    (folder / empty).write_bytes(b"")
    config = bucket_config(url_of(tmp_path))
    run = read(config)
    got = Counter(uuids(run))
    assert set(got) == set(expected_uuids(DATASET, DATASET.start, DATASET.end))
    twice = {uuid for uuid, count in got.items() if count > 1}
    assert twice == {json.loads(line)["uuid"] for line in gzip.decompress(data).splitlines()}
    [same] = [line for line in _warnings(run) if "name the same upload hour and part" in line]
    assert f"{DATASET.app_id}/{twin}" in same
    [zero] = [line for line in _warnings(run) if "are empty (0 bytes" in line]
    assert f"{DATASET.app_id}/{empty}" in zero
    again = read(config, run.final_state())
    assert not _warnings(again)  # named when read, not on every run that lists them again


def test_an_object_gone_before_it_is_read_keeps_its_hour_open(
    exported: BucketExport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backfill deleting an object between listing and reading: its hour is listed again."""
    import logging
    from types import SimpleNamespace

    from tap_amplitude.storage.layout import Kind
    from tap_amplitude.storage.run import StorageRun
    from tap_amplitude.storage.source import Bucket
    from tap_amplitude.storage.state import ReadState

    gone = exported.event_key(START + 3 * HOUR, 0).rsplit("/", 1)[-1]
    real_open = Bucket.open

    def vanishing_open(self: Bucket, path: str) -> Any:
        if path.endswith(gone):
            raise FileNotFoundError(path)
        return real_open(self, path)

    stream: Any = SimpleNamespace(name=EVENTS, logger=logging.getLogger("test-storage"))
    state: dict[str, Any] = {}

    def lines(run: StorageRun) -> list[bytes]:
        return [
            line for item in run.items(hourly=True) if hasattr(item, "lines") for line in item.lines
        ]

    def storage_run() -> StorageRun:
        bucket = Bucket(url_of(tmp_path))
        return StorageRun(
            stream,
            bucket,
            ReadState(state, START),
            kind=Kind.EVENTS,
            end=DATASET.end,
            app=None,
        )

    with monkeypatch.context() as patch:
        patch.setattr(Bucket, "open", vanishing_open)
        first = storage_run()
        first_lines = lines(first)
    assert first.read_state.bookmark == START + 3 * HOUR  # not past the unread object's hour
    state["replication_key_value"] = first.read_state.bookmark_text
    second = storage_run()
    second_lines = lines(second)
    got = Counter(json.loads(line)["uuid"] for line in first_lines + second_lines if line.strip())
    assert set(got) == set(expected_uuids(DATASET, DATASET.start, DATASET.end))
    assert max(got.values()) == 1  # the second run reads only what the first could not
    assert second.read_state.bookmark == DATASET.end


ORG = DEFAULT_ORG_ID


@pytest.mark.parametrize("value", ["1e300", "true", "[1]"])
def test_a_merge_time_that_is_no_time_stops_naming_the_line(
    exported: BucketExport, tmp_path: Path, value: str
) -> None:
    """Not epoch seconds, milliseconds or a date-time: never written into a date-time column."""
    org = tmp_path / "bucket" / "amplitude" / f"-{ORG}"
    good = '{"scope": -1, "merge_time": 1709273103876, "merge_server_time": 1709273319889, '
    good += '"amplitude_id": 1, "merged_amplitude_id": 2}'
    bad = good.replace("1709273103876", value)
    name = f"-{ORG}_2024-03-01_7.json.gz"
    (org / name).write_bytes(gzip.compress(f"{good}\n\n{bad}\n".encode()))
    run = run_tap(bucket_config(url_of(tmp_path)), streams=[MERGED], timeout=60)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, run.stderr
    assert f"line 3 of archive member -{ORG}/{name}" in errors[0]
    assert "merge_time is not epoch seconds or milliseconds" in errors[0]
    assert all(isinstance(r["merge_time"], str) for r in run.records(MERGED))


def test_a_state_narrowed_by_project_id_is_still_this_exports(
    exported: BucketExport, tmp_path: Path
) -> None:
    """A state of two app folders, then project_id picks one: it resumes, nothing re-read."""
    _export_another_app(tmp_path)
    config = bucket_config(url_of(tmp_path))
    both = read(config)
    narrowed = read({**config, "project_id": DATASET.app_id}, both.final_state())
    assert uuids(narrowed) == []
