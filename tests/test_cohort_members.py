"""cohort_members end to end (simulator): the async flow, redirects, quota, re-downloads."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import tempfile
import tracemalloc
from typing import Any

import pytest

from amplitude_simulator import AmplitudeSimulator
from amplitude_simulator.api.cohort_export import member_rows as served_rows
from amplitude_simulator.api.cohorts import cohort_list
from tap_amplitude.streams.cohort_members import (
    is_quota_refusal,
    member_record,
    member_rows,
)
from tap_amplitude.streams.dashboard import epoch_to_rfc3339
from tests.helpers import TapRun, run_tap, simulator_config, warning_lines

STREAM = ["cohort_members"]
PROPERTIES = ["plan", "country"]


@pytest.fixture
def quick(simulator: AmplitudeSimulator) -> AmplitudeSimulator:
    """Exports complete on the first status read (the polling test turns this back)."""
    simulator.cohort_export.polls_in_progress = 0
    return simulator


def _cohorts(sim: AmplitudeSimulator) -> list[dict[str, Any]]:
    return cohort_list(sim.dataset, sync_info=False, revisions=sim.cohort_export.revisions)


def _live(sim: AmplitudeSimulator) -> list[dict[str, Any]]:
    return [c for c in _cohorts(sim) if not c["archived"]]


def _expected(sim: AmplitudeSimulator, cohort_id: str, keys: list[str]) -> list[dict[str, Any]]:
    rows = list(served_rows(sim, cohort_id, tuple(keys) if keys else None))
    header, body = rows[0], rows[1:]
    return [
        {
            "amplitude_id": int(row[0]),
            "user_id": row[1] or None,
            "properties": dict(zip(keys, (value or None for value in row[2:]), strict=True)),
        }
        for row in body
        if header
    ]


def _requests_for(sim: AmplitudeSimulator, prefix: str) -> list[Any]:
    return [r for r in sim.requests if r.path.startswith(prefix)]


def _exports(sim: AmplitudeSimulator) -> list[str]:
    """Cohort ids of step-1 export requests (each one spends a monthly download)."""
    return [
        r.path.rsplit("/", 1)[1]
        for r in _requests_for(sim, "/api/5/cohorts/request/")
        if not r.path.endswith("/file")
    ]


def _members(run: TapRun) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for record in run.records("cohort_members"):
        found.setdefault(record["cohort_id"], []).append(
            {k: record[k] for k in ("amplitude_id", "user_id", "properties")}
        )
    return found


def _bookmarks(run: TapRun) -> dict[str, Any]:
    state: dict[str, Any] = run.final_state()["bookmarks"]["cohort_members"]
    return state


# --------------------------------------------------------------------------------------
# the flow


def test_every_cohort_polled_redirected_and_streamed(simulator: AmplitudeSimulator) -> None:
    simulator.cohort_export.inline_max_members = 4  # bigger cohorts come by a 302
    simulator.cohort_export.expired_links = 1  # the first link has expired: /file again
    config = simulator_config(simulator, cohort_member_properties=PROPERTIES)
    run = run_tap(config, streams=STREAM)
    assert run.returncode == 0, run.stderr
    warnings = warning_lines(run.stderr)
    assert len(warnings) == 1, warnings
    assert "retrying after RetriableAPIError" in warnings[0]
    assert "Signature" not in run.stderr  # the pre-signed link never reaches the logs
    live = _live(simulator)
    assert _members(run) == {
        c["id"]: _expected(simulator, c["id"], PROPERTIES)
        for c in live
        if _expected(simulator, c["id"], PROPERTIES)
    }
    records = run.records("cohort_members")
    assert any(r["user_id"] is None for r in records)  # anonymous members
    assert all(set(r["properties"]) == set(PROPERTIES) for r in records)
    by_id = {c["id"]: c for c in live}
    for record in records:
        cohort = by_id[record["cohort_id"]]
        assert record["cohort_last_modified_at"] == epoch_to_rfc3339(cohort["lastMod"])
        assert record["cohort_last_computed_at"] == epoch_to_rfc3339(cohort["lastComputed"])
        assert record["downloaded_at"].endswith("Z")
    # request (202), poll (202, then 200), file: inline or a 302 to a served "S3" link
    assert sorted(_exports(simulator)) == sorted(by_id)
    exports = list(_requests_for(simulator, "/api/5/cohorts/request/"))
    assert {r.params.get("props") for r in exports if not r.path.endswith("/file")} == {"1"}
    statuses = [r.status for r in _requests_for(simulator, "/api/5/cohorts/request-status/")]
    assert statuses.count(202) == len(live)
    assert statuses.count(200) == len(live)
    files = [r.status for r in exports if r.path.endswith("/file")]
    assert 302 in files
    assert 200 in files
    downloads = [r.status for r in _requests_for(simulator, "/cohort-downloads/")]
    assert downloads == [403] + [200] * (files.count(302) - 1)
    bookmarks = _bookmarks(run)
    assert set(bookmarks["cohorts"]) == set(by_id)
    assert bookmarks["pending"] == {}
    for cohort_id, mark in bookmarks["cohorts"].items():
        assert mark["lastMod"] == by_id[cohort_id]["lastMod"]
        assert mark["members"] == len(_expected(simulator, cohort_id, PROPERTIES))
    assert f"{len(live)} cohort download(s) used this run" in run.stderr
    states = [s for s in run.states() if "cohorts" in s["bookmarks"].get("cohort_members", {})]
    assert len(states) >= len(live)  # STATE after each cohort


def test_only_changed_cohorts_are_downloaded_again(quick: AmplitudeSimulator) -> None:
    first = run_tap(simulator_config(quick), streams=STREAM)
    assert first.returncode == 0, first.stderr
    state = first.final_state()
    live = _live(quick)
    changed = live[1]["id"]
    quick.cohort_export.revisions[changed] = 1  # lastMod, lastComputed and members move on
    quick.clear_requests()

    second = run_tap(simulator_config(quick), streams=STREAM, state=state)
    assert second.returncode == 0, second.stderr
    assert _exports(quick) == [changed]
    members = _members(second)
    assert list(members) == [changed]
    assert members[changed] == _expected(quick, changed, [])
    assert len(members[changed]) < len(_members(first)[changed])  # the revision dropped some
    assert "1 cohort download(s) used this run" in second.stderr
    assert f"{len(live) - 1} cohort(s) unchanged since the bookmark" in second.stderr
    marks = _bookmarks(second)["cohorts"]
    assert marks[changed]["lastMod"] == _live(quick)[1]["lastMod"]
    assert set(marks) == {c["id"] for c in live}

    # Only lastComputed moved: the default trigger (lastMod) skips it, last_computed does not.
    state = second.final_state()
    state["bookmarks"]["cohort_members"]["cohorts"][changed]["lastComputed"] -= 60
    quick.clear_requests()
    third = run_tap(simulator_config(quick), streams=STREAM, state=state)
    assert third.returncode == 0, third.stderr
    assert _exports(quick) == []
    fourth = run_tap(
        simulator_config(quick, cohort_download_trigger="last_computed"),
        streams=STREAM,
        state=state,
    )
    assert fourth.returncode == 0, fourth.stderr
    assert _exports(quick) == [changed]


def test_a_cohort_still_computing_is_skipped_then_polled_next_run(
    quick: AmplitudeSimulator,
) -> None:
    slow = _live(quick)[0]["id"]
    quick.cohort_export.computing.add(slow)
    config = simulator_config(quick, cohort_export_wait_seconds=1)
    first = run_tap(config, streams=STREAM)
    assert first.returncode == 0, first.stderr
    assert slow not in _members(first)
    assert len(_members(first)) >= 3
    said = [line for line in first.stderr.splitlines() if "still being computed" in line]
    assert len(said) == 1
    assert slow in said[0]
    assert "| INFO" in said[0]
    pending = _bookmarks(first)["pending"]
    assert list(pending) == [slow]
    assert slow not in _bookmarks(first)["cohorts"]
    polls = [r for r in quick.requests if r.path.endswith(pending[slow]["request_id"])]
    assert len(polls) >= 2  # polled with growing waits before giving up

    quick.cohort_export.computing.clear()
    used = quick.cohort_export.used_this_month
    quick.clear_requests()
    second = run_tap(config, streams=STREAM, state=first.final_state())
    assert second.returncode == 0, second.stderr
    assert _exports(quick) == []  # the same export, polled again: no new download spent
    assert quick.cohort_export.used_this_month == used
    assert list(_members(second)) == [slow]
    assert _bookmarks(second)["pending"] == {}
    assert "0 cohort download(s) used this run" in second.stderr


def test_a_spent_quota_warns_and_ends_with_what_was_done(quick: AmplitudeSimulator) -> None:
    quick.cohort_export.monthly_quota = 2
    run = run_tap(simulator_config(quick), streams=[*STREAM, "annotations"])
    assert run.returncode == 0, run.stderr
    warnings = warning_lines(run.stderr)
    assert len(warnings) == 1, warnings
    assert "monthly quota" in warnings[0]
    assert "Monthly cohort download quota exceeded" in warnings[0]
    live = _live(quick)
    assert list(_bookmarks(run)["cohorts"]) == [c["id"] for c in live[:2]]
    refused = [r for r in _requests_for(quick, "/api/5/cohorts/request/") if r.status == 429]
    assert len(refused) == 1  # not retried
    assert len(run.records("annotations")) == 4  # streams after it still run
    assert "2 cohort download(s) used this run" in run.stderr


def test_cohort_ids_limit_the_downloads_and_name_unknown_ones(
    quick: AmplitudeSimulator,
) -> None:
    quick.cohort_export.epoch_ms = True  # times in milliseconds read the same
    archived = next(c for c in _cohorts(quick) if c["archived"])
    wanted = _live(quick)[2]
    run = run_tap(
        simulator_config(quick, cohort_ids=[wanted["id"], "nope123", archived["id"]]),
        streams=STREAM,
    )
    assert run.returncode == 0, run.stderr
    assert sorted(_exports(quick)) == sorted([wanted["id"], archived["id"]])
    warnings = warning_lines(run.stderr)
    assert len(warnings) == 1, warnings
    assert "nope123" in warnings[0]
    record = next(r for r in run.records("cohort_members") if r["cohort_id"] == wanted["id"])
    assert record["cohort_last_modified_at"] == epoch_to_rfc3339(wanted["lastMod"])


def test_no_cohorts_addon_warns_once(quick: AmplitudeSimulator) -> None:
    quick.analytics.cohorts_addon = False
    run = run_tap(simulator_config(quick), streams=STREAM)
    assert run.returncode == 0, run.stderr
    assert run.records("cohort_members") == []
    warnings = warning_lines(run.stderr)
    assert len(warnings) == 1
    assert "cohort_members: skipped" in warnings[0]
    assert _exports(quick) == []


# --------------------------------------------------------------------------------------
# reading files


def _gzip_csv(rows: int, *, twice: bool = False) -> tempfile.SpooledTemporaryFile[bytes]:
    spooled: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(0)  # noqa: SIM115
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as packed:
        text = io.TextIOWrapper(packed, encoding="utf-8", newline="")
        writer = csv.writer(text, quoting=csv.QUOTE_ALL)
        writer.writerow(["amplitude_id", "user_id", "gp:plan"])
        for number in range(rows):
            writer.writerow([str(10**11 + number), f"u{number}" if number % 3 else "", "pro"])
        text.flush()
        text.detach()
    body = buffer.getvalue()
    spooled.write(gzip.compress(body) if twice else body)
    return spooled


def test_a_large_cohort_is_read_a_row_at_a_time() -> None:
    with _gzip_csv(100_000) as spooled:
        size = spooled.tell()
        rows = member_rows(spooled)
        first = next(rows)
        assert spooled.tell() < size / 10  # one row needs only the first blocks of the file
        cohort = {"id": "big", "lastMod": 1679437294, "lastComputed": 1679437294}
        record = member_record(first, cohort, ["plan"], "2024-01-01T00:00:00.000000Z")
        assert record["properties"] == {"plan": "pro"}  # gp:plan answers a request for plan
        assert record["amplitude_id"] == 10**11
        assert record["user_id"] is None
        tracemalloc.start()
        count = 1 + sum(1 for _ in itertools.islice(rows, 20_000))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert count == 20_001
        assert peak < 400_000, peak  # those rows are ~700 kB of CSV: never held together


def test_files_gzip_encoded_twice_or_plain_are_read_alike() -> None:
    with _gzip_csv(5, twice=True) as twice_file, _gzip_csv(5) as once_file:
        twice = [dict(r) for r in member_rows(twice_file)]
        once = [dict(r) for r in member_rows(once_file)]
    assert twice == once
    assert once[0] == {"amplitude_id": "100000000000", "user_id": "", "gp:plan": "pro"}
    with tempfile.SpooledTemporaryFile(0) as plain:
        plain.write(b'"amplitude_id","user_id"\n"7","\tabc"\n\n')
        assert [dict(r) for r in member_rows(plain)] == [{"amplitude_id": "7", "user_id": "abc"}]


def test_quota_refusals_are_told_from_the_request_rate() -> None:
    import requests

    def response(status: int, body: bytes, retry_after: str | None = None) -> requests.Response:
        made = requests.Response()
        made.status_code = status
        made._content = body
        if retry_after is not None:
            made.headers["Retry-After"] = retry_after
        return made

    assert is_quota_refusal(response(429, b'{"error": {"message": "Monthly quota exceeded"}}'))
    assert is_quota_refusal(response(403, b"You have used this month's cohort downloads"))
    assert is_quota_refusal(response(429, b"slow down", retry_after="86400"))
    assert not is_quota_refusal(response(429, b"slow down", retry_after="30"))
    assert not is_quota_refusal(response(403, b"Invalid API Key"))


@pytest.mark.parametrize("cohorts", [[1, 2], "x", {"abc": 5}])
def test_a_bookmark_of_the_wrong_shape_is_one_line(quick: AmplitudeSimulator, cohorts: Any) -> None:
    state = {"bookmarks": {"cohort_members": {"cohorts": cohorts}}}
    run = run_tap(simulator_config(quick), streams=STREAM, state=state)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, run.stderr
    assert "bookmark of 'cohort_members'" in errors[0]
    assert "remove the stream's entry" in errors[0]
