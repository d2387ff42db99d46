"""cohorts, annotations, active_users and average_session_length, end to end (simulator)."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest

from amplitude_simulator import AmplitudeSimulator, Project, RequestRecord
from amplitude_simulator.api.chart_annotations import annotation_list
from amplitude_simulator.api.charts import (
    average_session_seconds,
    daily_active_users,
    daily_active_users_by_country,
)
from amplitude_simulator.api.cohorts import ADDON_MESSAGE, cohort_list
from tap_amplitude.streams.dashboard import (
    ALL_USERS,
    date_bounds,
    day_slices,
    epoch_to_rfc3339,
    month_slices,
)
from tests.conftest import SMALL_DATASET
from tests.helpers import run_tap, simulator_config, warning_lines

UTC = timezone.utc
DAYS = [date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)]  # the dataset's days
DAILY = ["active_users", "average_session_length"]


def _calls(sim: AmplitudeSimulator, path: str) -> list[RequestRecord]:
    return [record for record in sim.requests if record.path == path]


def _day(value: str) -> date:
    return datetime.strptime(value, "%Y%m%d").replace(tzinfo=UTC).date()


def _span(record: RequestRecord) -> tuple[date, date]:
    return _day(record.params["start"]), _day(record.params["end"])


def _utc_today() -> date:
    return datetime.now(tz=UTC).date()


# --------------------------------------------------------------------------------------
# records


def test_every_stream_serves_what_the_simulator_holds(simulator: AmplitudeSimulator) -> None:
    streams = ["cohorts", "annotations", *DAILY]
    run = run_tap(simulator_config(simulator, project_id=187520), streams=streams)
    assert run.returncode == 0, run.stderr
    dataset = simulator.dataset

    cohorts = run.records("cohorts")
    expected = cohort_list(dataset, sync_info=True)
    assert [c["id"] for c in cohorts] == [c["id"] for c in expected]
    assert len({c["id"] for c in cohorts}) == len(cohorts) == 6
    for record, served in zip(cohorts, expected, strict=True):
        assert {k: record[k] for k in served} == served  # every documented field, unchanged
        assert record["app"] == served["appId"]
        assert record["created_at"] == epoch_to_rfc3339(served["createdAt"])
        assert record["last_modified_at"].endswith("Z")
        created = datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
        assert created.timestamp() == served["createdAt"]
        assert record["last_viewed_at"] == epoch_to_rfc3339(served["last_viewed"])
    assert any(c["syncMetadata"] for c in cohorts)
    assert any(c["last_viewed_at"] is None for c in cohorts)

    assert [
        {k: a[k] for k in ("id", "date", "label", "details")} for a in run.records("annotations")
    ] == annotation_list(dataset)

    active = run.records("active_users")
    assert [(r["date"], r["group"], r["group_by"]) for r in active] == [
        (day.isoformat(), ALL_USERS, None) for day in DAYS
    ]
    assert [r["active_users"] for r in active] == [
        daily_active_users(dataset, UTC, day) for day in DAYS
    ]
    assert all(r["active_users"] > 0 for r in active)

    sessions = run.records("average_session_length")
    assert [r["date"] for r in sessions] == [day.isoformat() for day in DAYS]
    assert [r["length"] for r in sessions] == pytest.approx(
        [average_session_seconds(dataset, UTC, day) for day in DAYS]
    )
    assert {tuple(_span(r)) for r in _calls(simulator, "/api/2/users")} == {(DAYS[0], DAYS[-1])}
    bookmarks = run.final_state()["bookmarks"]
    assert bookmarks["active_users"]["replication_key_value"] == "2024-03-03"
    assert bookmarks["average_session_length"]["replication_key_value"] == "2024-03-03"
    assert "progress_markers" not in str(bookmarks)


def test_active_users_per_country(simulator: AmplitudeSimulator) -> None:
    run = run_tap(
        simulator_config(simulator, active_users_group_by_country=True), streams=["active_users"]
    )
    assert run.returncode == 0, run.stderr
    rows = run.records("active_users")
    got: dict[tuple[str, str], int] = {(r["date"], r["group"]): r["active_users"] for r in rows}
    expected = {
        (day.isoformat(), country): count
        for day in DAYS
        for country, count in daily_active_users_by_country(simulator.dataset, UTC, day).items()
    }
    assert got == expected
    assert len(got) == len(rows)  # (date, group) is unique
    assert len({country for _, country in got}) > 3
    assert all(r["group_by"] == "country" for r in rows)
    assert [r.params.get("g") for r in _calls(simulator, "/api/2/users")] == ["country"]
    assert warning_lines(run.stderr) == []


def test_a_refused_group_by_falls_back_to_project_wide_with_one_warning(
    simulator: AmplitudeSimulator,
) -> None:
    simulator.analytics.group_by_supported = False
    config = simulator_config(
        simulator, start_date="2024-01-20T00:00:00Z", active_users_group_by_country=True
    )
    run = run_tap(config, streams=["active_users", "annotations"])
    assert run.returncode == 0, run.stderr
    calls = _calls(simulator, "/api/2/users")
    # Jan: grouped refused, then project-wide; Feb and Mar: project-wide straight away.
    assert [(r.params.get("g"), r.status) for r in calls] == [
        ("country", 400),
        (None, 200),
        (None, 200),
        (None, 200),
    ]
    warnings = warning_lines(run.stderr)
    assert len(warnings) == 1, warnings
    assert "Invalid chart definition: Invalid user property country" in warnings[0]
    assert "active_users_group_by_country" in warnings[0]
    rows = run.records("active_users")
    assert {r["group"] for r in rows} == {ALL_USERS}
    assert [r["date"] for r in rows][:2] == ["2024-01-20", "2024-01-21"]
    assert len(rows) == 12 + 29 + 3
    assert run.records("annotations")


# --------------------------------------------------------------------------------------
# incremental state and slicing


def test_second_run_resumes_from_the_bookmarked_date(simulator: AmplitudeSimulator) -> None:
    first = run_tap(simulator_config(simulator, end_date="2024-03-03T00:00:00Z"), streams=DAILY)
    assert first.returncode == 0, first.stderr
    assert [r["date"] for r in first.records("active_users")] == ["2024-03-01", "2024-03-02"]
    state = first.final_state()
    assert state["bookmarks"]["average_session_length"]["replication_key_value"] == "2024-03-02"
    simulator.clear_requests()

    second = run_tap(simulator_config(simulator), streams=DAILY, state=state)
    assert second.returncode == 0, second.stderr
    # The bookmarked day is read again (it may have been partial), nothing before it.
    assert [_span(r) for r in simulator.requests] == [(DAYS[1], DAYS[2])] * 2
    assert [r["date"] for r in second.records("active_users")] == ["2024-03-02", "2024-03-03"]
    assert [r["date"] for r in second.records("average_session_length")] == [
        "2024-03-02",
        "2024-03-03",
    ]
    assert second.final_state()["bookmarks"]["active_users"]["replication_key_value"] == (
        "2024-03-03"
    )


def test_a_later_start_date_wins_over_the_bookmark(simulator: AmplitudeSimulator) -> None:
    state = {
        "bookmarks": {
            "active_users": {"replication_key": "date", "replication_key_value": "2024-01-05"}
        }
    }
    run = run_tap(simulator_config(simulator), streams=["active_users"], state=state)
    assert run.returncode == 0, run.stderr
    assert [_span(r) for r in simulator.requests] == [(DAYS[0], DAYS[-1])]


def test_month_and_fifteen_day_slices_end_at_end_date(simulator: AmplitudeSimulator) -> None:
    config = simulator_config(
        simulator, start_date="2024-01-15T00:00:00Z", end_date="2024-03-04T00:00:00Z"
    )
    run = run_tap(config, streams=DAILY)
    assert run.returncode == 0, run.stderr
    months = [_span(r) for r in _calls(simulator, "/api/2/users")]
    assert months == [
        (date(2024, 1, 15), date(2024, 1, 31)),
        (date(2024, 2, 1), date(2024, 2, 29)),
        (date(2024, 3, 1), date(2024, 3, 3)),
    ]
    assert [r.params["m"] for r in _calls(simulator, "/api/2/users")] == ["active"] * 3
    assert [r.params["i"] for r in _calls(simulator, "/api/2/users")] == ["1"] * 3
    halves = [_span(r) for r in _calls(simulator, "/api/2/sessions/average")]
    assert halves == [
        (date(2024, 1, 15), date(2024, 1, 29)),
        (date(2024, 1, 30), date(2024, 2, 13)),
        (date(2024, 2, 14), date(2024, 2, 28)),
        (date(2024, 2, 29), date(2024, 3, 3)),
    ]
    # Days before the dataset have no users (0) but, for sessions, no series at all.
    active = run.records("active_users")
    assert len(active) == 17 + 29 + 3
    assert active[0] == {"date": "2024-01-15", "group": ALL_USERS, "group_by": None,
                         "active_users": 0}  # fmt: skip
    # The first two 15-day slices hold no sessions (empty series); late events start a few
    # sessions before the dataset, so the third slice has rows, zero on quiet days.
    sessions = run.records("average_session_length")
    assert [r["date"] for r in sessions] == [
        (date(2024, 2, 14) + timedelta(days=n)).isoformat() for n in range(15 + 4)
    ]
    assert sessions[0]["length"] == 0
    assert all(r["length"] > 0 for r in sessions[-3:])


def test_nothing_after_today_is_ever_asked_for(simulator: AmplitudeSimulator) -> None:
    before = _utc_today()
    start = before - timedelta(days=40)
    config = simulator_config(simulator, start_date=f"{start.isoformat()}T00:00:00Z")
    del config["end_date"]
    run = run_tap(config, streams=DAILY)
    after = _utc_today()
    assert run.returncode == 0, run.stderr
    spans = [_span(r) for r in simulator.requests]
    assert spans, "no requests"
    assert all(first <= last <= after for first, last in spans)
    assert max(last for _, last in spans) >= before
    assert all(r.status == 200 for r in simulator.requests)
    active = run.records("active_users")
    assert active[-1]["date"] in {before.isoformat(), after.isoformat()}
    assert run.records("average_session_length") == []  # empty series: no rows, no error


def test_a_day_not_yet_begun_in_the_projects_zone_is_left_for_later() -> None:
    # The project's today is UTC's yesterday (a zone far behind UTC): asking for the UTC today
    # gets Amplitude's 400 for a future start date, which must not fail the run.
    behind = datetime.now(tz=UTC) - timedelta(days=1)
    with AmplitudeSimulator(SMALL_DATASET, now=behind) as sim:
        today = _utc_today()
        state = {
            "bookmarks": {
                name: {"replication_key": "date", "replication_key_value": today.isoformat()}
                for name in DAILY
            }
        }
        config = simulator_config(sim)
        del config["end_date"]
        run = run_tap(config, streams=DAILY, state=state)
        assert run.returncode == 0, run.stderr
        assert [r.status for r in sim.requests] == [400, 400]
        assert all(_span(r)[0] == today for r in sim.requests)
        assert run.stderr.count("is read on a later run") == 2
        assert run.records("active_users") == []


# --------------------------------------------------------------------------------------
# cohorts without the add-on, and bad keys


@pytest.mark.parametrize("status", [403, 400])
def test_cohorts_without_the_addon_warn_once_and_the_run_goes_on(
    simulator: AmplitudeSimulator, status: int
) -> None:
    simulator.analytics.cohorts_addon = False
    simulator.analytics.cohorts_refusal_status = status
    run = run_tap(simulator_config(simulator), streams=["cohorts", "annotations", "active_users"])
    assert run.returncode == 0, run.stderr
    assert run.records("cohorts") == []
    assert len(run.records("annotations")) == 4
    assert len(run.records("active_users")) == 3
    warnings = warning_lines(run.stderr)
    assert len(warnings) == 1, warnings
    assert f"HTTP {status}: {ADDON_MESSAGE}" in warnings[0]
    assert "Behavioral Cohorts add-on" in warnings[0]
    probes = _calls(simulator, "/api/2/events/list")
    assert len(probes) == (1 if status == 403 else 0)  # a 403 could be bad keys: checked


def test_wrong_keys_still_stop_the_run_with_the_auth_message(
    simulator: AmplitudeSimulator,
) -> None:
    config = simulator_config(simulator, secret_key="not-the-secret")
    run = run_tap(config, streams=["cohorts"])
    assert run.returncode == 1
    assert "Amplitude refused the credentials" in run.stderr
    assert "skipped" not in run.stderr
    assert "not-the-secret" not in run.stderr + run.stdout
    assert [r.path for r in simulator.requests] == ["/api/3/cohorts", "/api/2/events/list"]


def test_wrong_keys_and_no_addon_are_still_told_apart() -> None:
    # Even when the cohorts refusal looks like an auth failure (403), the keys decide.
    with AmplitudeSimulator(SMALL_DATASET, Project(secret_key="right-secret")) as sim:
        sim.analytics.cohorts_addon = False
        config = simulator_config(sim, secret_key="wrong-secret")
        run = run_tap(config, streams=["cohorts"])
    assert run.returncode == 1
    assert "Amplitude refused the credentials" in run.stderr


# --------------------------------------------------------------------------------------
# pure helpers


def test_date_bounds_take_start_date_bookmark_end_date_and_today() -> None:
    today = date(2024, 5, 10)
    config: dict[str, Any] = {"start_date": "2024-03-01T00:00:00Z"}
    assert date_bounds(config, None, today) == (date(2024, 3, 1), today)
    assert date_bounds(config, "2024-04-02", today) == (date(2024, 4, 2), today)
    assert date_bounds(config, "2024-02-02", today) == (date(2024, 3, 1), today)
    config["end_date"] = "2024-04-01T00:00:00Z"
    assert date_bounds(config, None, today) == (date(2024, 3, 1), date(2024, 3, 31))
    config["end_date"] = "2024-04-01T06:00:00Z"  # part of Apr 1 is before the end
    assert date_bounds(config, None, today)[1] == date(2024, 4, 1)
    config["end_date"] = "2030-01-01T00:00:00Z"
    assert date_bounds(config, None, today)[1] == today


def test_slices_cover_the_range_exactly_once() -> None:
    first, last = date(2023, 12, 30), date(2024, 3, 1)
    for slices in (month_slices(first, last), day_slices(first, last, 15)):
        assert slices[0][0] == first
        assert slices[-1][1] == last
        for (_, end), (start, _) in itertools.pairwise(slices):
            assert start == end + timedelta(days=1)
    assert all(a.month == b.month for a, b in month_slices(first, last))
    assert all((b - a).days < 15 for a, b in day_slices(first, last, 15))
    assert month_slices(last, first) == []


def test_epoch_values_become_rfc3339_utc() -> None:
    assert epoch_to_rfc3339(1679437294) == "2023-03-21T22:21:34.000000Z"
    assert epoch_to_rfc3339(1679437294123) == "2023-03-21T22:21:34.123000Z"  # milliseconds
    assert epoch_to_rfc3339(None) is None
    assert epoch_to_rfc3339(True) is None
