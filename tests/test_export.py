"""export_events end to end through the CLI against the simulator, including every fault."""

from __future__ import annotations

import gzip
import io
import json
import signal
import subprocess
import tempfile
import time
import zipfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from rfc3339_validator import validate_rfc3339
from singer_sdk.exceptions import RetriableAPIError

from amplitude_simulator import AmplitudeSimulator, Fault
from amplitude_simulator.api.export import member_name
from amplitude_simulator.data.dataset import hour_members
from tap_amplitude.client import MAX_TRIES
from tap_amplitude.export import HOUR, plan_windows
from tap_amplitude.streams.export_events import ExportEventsStream
from tap_amplitude.tap import TapAmplitude
from tap_amplitude.timestamps import EVENT_TIMESTAMP_FIELDS
from tests.helpers import (
    TapRun,
    iter_waits,
    parse_messages,
    run_tap,
    simulator_config,
    tap_command,
)

EXPORT = "/api/2/export"
STREAM = "export_events"


def _expected_uuids(sim: AmplitudeSimulator, start: datetime, end: datetime) -> list[str]:
    return [event["uuid"] for event in sim.dataset.expected_events(start, end)]


def _export(sim: AmplitudeSimulator, **overrides: Any) -> TapRun:
    run = run_tap(simulator_config(sim, **overrides), streams=[STREAM])
    assert run.returncode == 0, run.stderr
    return run


def _uuids(run: TapRun) -> list[str]:
    return [record["uuid"] for record in run.records(STREAM)]


def _export_requests(sim: AmplitudeSimulator) -> list[tuple[str, str, int]]:
    return [
        (r.params["start"], r.params["end"], r.status) for r in sim.requests if r.path == EXPORT
    ]


def test_full_export_matches_the_dataset(simulator: AmplitudeSimulator) -> None:
    run = _export(simulator)
    uuids = _uuids(run)
    expected = _expected_uuids(simulator, simulator.dataset.start, simulator.dataset.end)
    assert len(expected) > 500
    assert Counter(uuids) == Counter(expected)
    assert len(set(uuids)) == len(uuids)

    records = run.records(STREAM)
    assert all(len(record) == 55 for record in records)
    for record in records:
        for field in EVENT_TIMESTAMP_FIELDS:
            if record[field] is not None:
                assert validate_rfc3339(record[field]), (field, record[field])
    # property bags arrive whole, exactly as Amplitude sent them
    source = {
        e["uuid"]: e
        for e in simulator.dataset.expected_events(simulator.dataset.start, simulator.dataset.end)
    }
    for record in records[:200]:
        original = source[record["uuid"]]
        for bag in (
            "event_properties",
            "user_properties",
            "groups",
            "group_properties",
            "data",
            "plan",
        ):
            assert record[bag] == original[bag]

    state = run.final_state()["bookmarks"][STREAM]
    assert state["replication_key"] == "server_upload_time"
    assert state["replication_key_value"] == "2024-03-04T00:00:00.000000Z"
    assert "progress_markers" not in state

    # people watching see the plan, then one line per window ending with all hours done
    assert (
        "export_events: exporting 72 hours (2024-03-01 00:00..2024-03-03 23:59 UTC) in 3 windows"
        in run.stderr
    )
    progress = [line for line in run.stderr.splitlines() if "export_events progress:" in line]
    assert len(progress) == 3
    assert f"72/72 hours, {len(expected)} events" in progress[-1]


def test_windows_requested_are_hour_aligned_and_inclusive(simulator: AmplitudeSimulator) -> None:
    _export(simulator, export_window_hours=24)
    assert sorted((start, end) for start, end, _ in _export_requests(simulator)) == [
        ("20240301T00", "20240301T23"),
        ("20240302T00", "20240302T23"),
        ("20240303T00", "20240303T23"),
    ]


def test_state_is_checkpointed_after_every_window(simulator: AmplitudeSimulator) -> None:
    run = _export(simulator, export_window_hours=12)
    bookmarks = [
        state["bookmarks"][STREAM].get("replication_key_value")
        for state in run.states()
        if STREAM in state.get("bookmarks", {})
    ]
    window_ends = [
        f"{window.end:%Y-%m-%dT%H}:00:00.000000Z"
        for window in plan_windows(simulator.dataset.start, simulator.dataset.end, 12)
    ]
    for end in window_ends:
        assert end in bookmarks
    # and every STATE after a checkpoint only moves forward
    checkpoints = [b for b in bookmarks if b in window_ends]
    assert checkpoints == sorted(checkpoints)


def test_empty_hours_are_404_and_not_an_error(simulator: AmplitudeSimulator) -> None:
    run = _export(simulator, export_window_hours=1)
    statuses = Counter(status for _, _, status in _export_requests(simulator))
    assert statuses[404] > 0
    assert statuses[200] > 0
    expected = _expected_uuids(simulator, simulator.dataset.start, simulator.dataset.end)
    assert Counter(_uuids(run)) == Counter(expected)


def test_incremental_run_reads_only_new_windows(simulator: AmplitudeSimulator) -> None:
    start = simulator.dataset.start
    middle = start + timedelta(days=1, hours=5)
    first = _export(simulator, end_date=middle.isoformat())
    assert Counter(_uuids(first)) == Counter(_expected_uuids(simulator, start, middle))
    simulator.clear_requests()

    second = run_tap(simulator_config(simulator), streams=[STREAM], state=first.final_state())
    assert second.returncode == 0, second.stderr
    assert Counter(_uuids(second)) == Counter(
        _expected_uuids(simulator, middle, simulator.dataset.end)
    )
    assert min(start for start, _, _ in _export_requests(simulator)) == f"{middle:%Y%m%dT%H}"

    third = run_tap(simulator_config(simulator), streams=[STREAM], state=second.final_state())
    assert third.returncode == 0, third.stderr
    assert third.records(STREAM) == []


def test_later_start_date_wins_over_bookmark(simulator: AmplitudeSimulator) -> None:
    state = {
        "bookmarks": {
            STREAM: {
                "replication_key": "server_upload_time",
                "replication_key_value": "2024-03-01T02:00:00.000000Z",
            }
        }
    }
    start = simulator.dataset.start + timedelta(days=2)
    run = run_tap(
        simulator_config(simulator, start_date=start.isoformat()), streams=[STREAM], state=state
    )
    assert run.returncode == 0, run.stderr
    assert Counter(_uuids(run)) == Counter(_expected_uuids(simulator, start, simulator.dataset.end))


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(429, headers={"Retry-After": "1"}),
        Fault.status(500, headers={"Retry-After": "1"}),
        Fault.status(503, headers={"Retry-After": "1"}),
        Fault.not_zip(),
        Fault.truncated(),
    ],
    ids=["429", "500", "503", "not-zip", "truncated"],
)
def test_transient_faults_are_retried_without_loss(
    simulator: AmplitudeSimulator, fault: Fault
) -> None:
    simulator.add_fault(
        EXPORT, fault, times=1, when=lambda params: params.get("start") == "20240302T00"
    )
    run = _export(simulator)
    expected = _expected_uuids(simulator, simulator.dataset.start, simulator.dataset.end)
    assert Counter(_uuids(run)) == Counter(expected)
    second_day = [r for r in _export_requests(simulator) if r[0] == "20240302T00"]
    assert len(second_day) == 2  # the failed attempt and the retry


def test_corrupt_gzip_member_is_fetched_again_without_duplicates(
    simulator: AmplitudeSimulator,
) -> None:
    simulator.add_fault(EXPORT, Fault.corrupt_gzip(), times=1)
    run = _export(simulator)
    expected = _expected_uuids(simulator, simulator.dataset.start, simulator.dataset.end)
    assert Counter(_uuids(run)) == Counter(expected)
    assert "corrupt archive member" in run.stderr


def test_persistent_non_zip_fails_loudly(simulator: AmplitudeSimulator) -> None:
    simulator.add_fault(EXPORT, Fault.not_zip(), times=100)
    config = simulator_config(simulator, export_concurrency=1)
    tap = TapAmplitude(config=config, validate_config=True)
    stream = tap.streams[STREAM]
    assert isinstance(stream, ExportEventsStream)
    # same retry path, without the minutes of real backoff
    stream.backoff_wait_generator = lambda: iter_waits(0.0)  # type: ignore[method-assign]
    with pytest.raises(RetriableAPIError, match="brought an HTML page, not Amplitude's data"):
        list(stream.get_records(None))
    assert len(_export_requests(simulator)) == MAX_TRIES


def test_read_timeout_is_retried(simulator: AmplitudeSimulator) -> None:
    simulator.add_fault(EXPORT, Fault.delay(3), times=1)
    run = _export(simulator, request_timeout=1)
    expected = _expected_uuids(simulator, simulator.dataset.start, simulator.dataset.end)
    assert Counter(_uuids(run)) == Counter(expected)
    # the timeout really fired: the first window was asked for twice, and the retry was logged
    windows = Counter((start, end) for start, end, _ in _export_requests(simulator))
    assert sorted(windows.values()) == [1, 1, 2]
    assert "retrying after ReadTimeout" in run.stderr


def test_too_large_windows_are_split_down_to_what_fits(simulator: AmplitudeSimulator) -> None:
    simulator.export_max_events = 150  # a few hours' worth
    run = _export(simulator, export_window_hours=24)
    expected = _expected_uuids(simulator, simulator.dataset.start, simulator.dataset.end)
    assert Counter(_uuids(run)) == Counter(expected)
    requests = _export_requests(simulator)
    assert any(status == 400 for _, _, status in requests)
    served = [(s, e) for s, e, status in requests if status in (200, 404)]
    hours = sorted(
        _hour(start) + HOUR * offset
        for start, end in served
        for offset in range(int((_hour(end) - _hour(start)) / HOUR) + 1)
    )
    assert hours == list(simulator.dataset.hours())  # every hour exactly once


def _hour(param: str) -> datetime:
    return datetime.strptime(param, "%Y%m%dT%H").replace(tzinfo=timezone.utc)


def test_gateway_timeouts_split_windows(simulator: AmplitudeSimulator) -> None:
    simulator.export_timeout_hours = 6
    run = _export(simulator, export_window_hours=24)
    expected = _expected_uuids(simulator, simulator.dataset.start, simulator.dataset.end)
    assert Counter(_uuids(run)) == Counter(expected)
    assert any(status == 504 for _, _, status in _export_requests(simulator))


def test_single_hour_too_large_stops_with_a_clear_message(simulator: AmplitudeSimulator) -> None:
    simulator.export_max_events = 1
    run = run_tap(simulator_config(simulator, export_window_hours=2), streams=[STREAM])
    assert run.returncode == 1
    assert "single hour 2024-03-01 00:00..2024-03-01 00:59 UTC" in run.stderr
    assert "S3 export" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_400_that_is_not_about_size_stops_without_splitting(
    simulator: AmplitudeSimulator,
) -> None:
    simulator.add_fault(EXPORT, Fault.status(400, "Invalid start parameter"), times=100)
    run = run_tap(simulator_config(simulator, export_window_hours=24), streams=[STREAM])
    assert run.returncode == 1
    requested = _export_requests(simulator)
    assert requested  # each a whole day: not split down hour by hour
    assert all(start.endswith("T00") and end.endswith("T23") for start, end, _ in requested)
    assert "(HTTP 400: Invalid start parameter). Check start_date, end_date" in run.stderr
    assert "S3" not in run.stderr
    assert "Traceback" not in run.stderr


def test_unknown_path_404_is_not_mistaken_for_no_data(simulator: AmplitudeSimulator) -> None:
    run = run_tap(simulator_config(simulator, api_url=simulator.url + "/wrong"), streams=[STREAM])
    assert run.returncode == 1
    assert "check api_url" in run.stderr


def _read_until_checkpoints(process: subprocess.Popen[str], wanted: int) -> list[dict[str, Any]]:
    """Read the tap's stdout until it has checkpointed ``wanted`` windows."""
    assert process.stdout is not None
    messages: list[dict[str, Any]] = []
    checkpoints = 0
    for line in process.stdout:
        message = json.loads(line)
        messages.append(message)
        if message["type"] == "STATE":
            value = message["value"]["bookmarks"].get(STREAM, {}).get("replication_key_value", "")
            if value.endswith(("T00:00:00.000000Z", "T12:00:00.000000Z")):
                checkpoints += 1
                if checkpoints >= wanted:
                    return messages
    return messages


def test_killed_run_resumes_from_last_state_without_loss(simulator: AmplitudeSimulator) -> None:
    # the 3rd window answers slowly, so the process is surely mid-export when killed
    simulator.add_fault(
        EXPORT, Fault.delay(30), times=1, when=lambda p: p.get("start") == "20240302T00"
    )
    config = simulator_config(simulator, export_window_hours=12)
    with tempfile.TemporaryDirectory() as tmp:
        command = tap_command(config, Path(tmp), streams=[STREAM])
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        ) as process:
            try:
                messages = _read_until_checkpoints(process, wanted=2)
                time.sleep(0.5)
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
                assert process.stdout is not None
                messages += parse_messages(process.stdout.read())
            finally:
                if process.poll() is None:
                    process.kill()
    first = TapRun(process.returncode, "", "", messages)
    assert first.returncode == -signal.SIGKILL
    last_state = first.final_state()
    assert last_state["bookmarks"][STREAM]["replication_key_value"] == "2024-03-02T00:00:00.000000Z"

    resumed = run_tap(config, streams=[STREAM], state=last_state)
    assert resumed.returncode == 0, resumed.stderr
    union = set(_uuids(first)) | set(_uuids(resumed))
    expected = _expected_uuids(simulator, simulator.dataset.start, simulator.dataset.end)
    assert union == set(expected)
    # nothing before the in-flight window is exported twice
    assert not set(_uuids(first)) & set(_uuids(resumed))


@pytest.mark.parametrize("concurrency", [1, 4])
def test_concurrent_downloads_keep_order_state_and_splitting(
    simulator: AmplitudeSimulator, concurrency: int
) -> None:
    # a window too large to export whole, and a transient failure, among windows in flight
    simulator.export_max_events = 150
    simulator.add_fault(EXPORT, Fault.status(503), times=1)
    run = _export(simulator, export_window_hours=6, export_concurrency=concurrency)
    expected = _expected_uuids(simulator, simulator.dataset.start, simulator.dataset.end)
    assert Counter(_uuids(run)) == Counter(expected)
    hours = [r["server_upload_time"][:13] for r in run.records(STREAM)]
    assert hours == sorted(hours)  # upload-hour order, whatever finished first
    bookmarks = [s["bookmarks"][STREAM]["replication_key_value"] for s in run.states()]
    assert bookmarks == sorted(bookmarks)
    assert bookmarks[-1] == "2024-03-04T00:00:00.000000Z"


def _hour_files(simulator: AmplitudeSimulator, hour: datetime) -> dict[str, bytes]:
    """The dataset's archive members for one upload hour, by name."""
    dataset = simulator.dataset
    return {
        member_name(dataset.app_id, hour, part): member
        for part, member in enumerate(hour_members(dataset, hour))
    }


def _serve_archive(simulator: AmplitudeSimulator, members: dict[str, bytes]) -> dict[str, Any]:
    """Answer the next export request with a zip of ``members``; a config reading 6-hour
    windows one at a time, so that archive is the first window's."""
    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as archive:
        for name, member in members.items():
            archive.writestr(name, member)
    simulator.add_fault(
        EXPORT, Fault.status(200, body.getvalue(), {"Content-Type": "application/zip"}), times=1
    )
    return simulator_config(simulator, export_window_hours=6, export_concurrency=1)


def test_a_member_named_for_another_hour_never_moves_the_bookmark_past_unread_hours(
    simulator: AmplitudeSimulator,
) -> None:
    """A stray member for hour 10 in the 00-05 archive: a failure there leaves no gap."""
    dataset = simulator.dataset
    start = dataset.start
    stray = gzip.compress(b'{"uuid": "stray", "event_type": "x"}\nnot json\n')
    config = _serve_archive(
        simulator,
        {**_hour_files(simulator, start), member_name(dataset.app_id, start + 10 * HOUR, 0): stray},
    )
    failed = run_tap(config, streams=[STREAM])
    assert failed.returncode == 1
    assert "named for an upload hour outside the window" in failed.stderr
    bookmarks = [line for line in failed.stdout.splitlines() if '"replication_key_value"' in line]
    for line in bookmarks:  # never past the hours of the window being read
        value = json.loads(line)["value"]["bookmarks"][STREAM]["replication_key_value"]
        assert value <= (start + 6 * HOUR).strftime("%Y-%m-%dT%H")
    state = json.loads(bookmarks[-1])["value"] if bookmarks else None
    resumed = run_tap(config, streams=[STREAM], state=state)
    assert resumed.returncode == 0, resumed.stderr
    hour_zero = set(_expected_uuids(simulator, start, start + HOUR))
    expected = Counter(_expected_uuids(simulator, start, dataset.end))
    got = Counter(_uuids(failed)) + Counter(_uuids(resumed))
    got.pop("stray", None)
    assert set(got) == set(expected)  # every hour read; at most the hour in flight twice
    assert {u for u, n in got.items() if n > 1} <= hour_zero


def test_an_archive_of_other_hours_only_is_not_taken_as_the_window(
    simulator: AmplitudeSimulator,
) -> None:
    """The 00-05 archive holding only hour 10's file: the window stays unread, no gap."""
    dataset = simulator.dataset
    start = dataset.start
    config = _serve_archive(simulator, _hour_files(simulator, start + 10 * HOUR))
    failed = run_tap(config, streams=[STREAM])
    assert failed.returncode == 1
    errors = [row for row in failed.stderr.splitlines() if "ERROR" in row]
    assert len(errors) == 1, failed.stderr
    assert "holds only files named for upload hours outside it" in errors[0]
    assert "the bookmark stays before it" in errors[0]
    for state in failed.states():  # the bookmark never passed the window's start
        bookmark = state["bookmarks"].get(STREAM, {}).get("replication_key_value")
        assert bookmark is None or bookmark <= start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    states = failed.states()
    resumed = run_tap(config, streams=[STREAM], state=states[-1] if states else None)
    assert resumed.returncode == 0, resumed.stderr
    assert set(_uuids(resumed)) == set(_expected_uuids(simulator, start, dataset.end))


@pytest.mark.parametrize("line", [b'{"event_type": "x"}', b'{"uuid": null, "event_type": "x"}'])
def test_an_event_without_its_uuid_stops_naming_the_line(
    simulator: AmplitudeSimulator, line: bytes
) -> None:
    """No key: a target would fail on it or merge it into another row, so it is not written."""
    dataset = simulator.dataset
    member = member_name(dataset.app_id, dataset.start, 0)
    good = b'{"uuid": "a1", "event_type": "x"}'
    config = _serve_archive(simulator, {member: gzip.compress(good + b"\n\n" + line + b"\n")})
    run = run_tap(config, streams=[STREAM])
    assert run.returncode == 1
    errors = [row for row in run.stderr.splitlines() if "ERROR" in row]
    assert len(errors) == 1, run.stderr
    assert f"line 3 of archive member {member}" in errors[0]
    assert "it has no uuid" in errors[0]
    assert all(record.get("uuid") for record in run.records(STREAM))
