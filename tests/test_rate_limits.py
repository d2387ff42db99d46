"""Amplitude's REST limits: what requests cost, how the tap waits, what the simulator refuses."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import pytest
import requests

from amplitude_simulator import AmplitudeSimulator, Fault
from amplitude_simulator.limits import Window
from tap_amplitude.client import AmplitudeStream
from tap_amplitude.ratelimit import (
    COST_BUDGET,
    PROFILE_BUDGET,
    USER_LOOKUP_BUDGET,
    Charge,
    ProjectLimiter,
    RateLimits,
    project_limiter,
    request_charge,
)
from tap_amplitude.tap import TapAmplitude
from tests.helpers import discovered_catalog, parse_messages, run_tap, select_only, simulator_config

BASE = "https://amplitude.com"
LOGGER = logging.getLogger("tests.rate_limits")


def _prepared(path: str, **params: str) -> requests.PreparedRequest:
    return requests.Request("GET", f"{BASE}{path}", params=params).prepare()


# --------------------------------------------------------------------------------------
# what a request costs


@pytest.mark.parametrize(
    ("path", "params", "charge"),
    [
        ("/api/2/users", {"start": "20240101", "end": "20240131", "m": "active"}, 31),
        ("/api/2/users", {"start": "20240201", "end": "20240229", "g": "country"}, 29 * 4),
        ("/api/2/sessions/average", {"start": "20240101", "end": "20240115"}, 15),
        ("/api/2/sessions/average", {"start": "20240101", "end": "20240101"}, 1),
        ("/api/3/cohorts", {"includeSyncInfo": "true"}, 1),
        ("/api/2/annotations", {}, 1),
        ("/api/2/events/list", {}, 1),
        ("/proxy/amplitude/api/2/users", {"start": "20240101", "end": "20240102"}, 2),
    ],
)
def test_dashboard_queries_cost_days_times_conditions(
    path: str, params: dict[str, str], charge: int
) -> None:
    assert request_charge(path, params) == Charge(COST_BUDGET, charge)


def test_user_lookups_have_their_own_budget_and_export_none() -> None:
    assert request_charge("/api/2/usersearch", {"user": "a"}) == Charge(USER_LOOKUP_BUDGET, 1)
    assert request_charge("/api/2/useractivity", {"user": "1"}) == Charge(USER_LOOKUP_BUDGET, 1)
    assert request_charge("/api/2/export", {"start": "20240101T00"}) is None
    assert request_charge("/api/2/deletions/users", {}) is None


def test_settings_override_amplitudes_defaults() -> None:
    assert RateLimits.from_config({}) == RateLimits()
    limits = RateLimits.from_config(
        {"rate_limits": {"cost_per_5_minutes": 500, "user_lookups_per_hour": 100}}
    )
    assert (limits.cost_per_short_window, limits.cost_per_long_window) == (500, 108_000)
    assert limits.user_lookups_per_long_window == 100
    with pytest.raises(ValueError, match="whole multiple"):
        RateLimits(short_window_seconds=2, long_window_seconds=3)


def test_only_binding_cost_windows_are_kept() -> None:
    default = ProjectLimiter(RateLimits(), BASE).budgets[COST_BUDGET]
    assert [rate.limit for rate in default.bucket.rates] == [1000]  # 12 x 1000 < 108,000
    tight_hour = RateLimits(cost_per_short_window=1000, cost_per_long_window=5000)
    both = ProjectLimiter(tight_hour, BASE).budgets[COST_BUDGET]
    assert [rate.limit for rate in both.bucket.rates] == [1000, 5000]
    tighter_hour = RateLimits(cost_per_short_window=1000, cost_per_long_window=800)
    hour = ProjectLimiter(tighter_hour, BASE).budgets[COST_BUDGET]
    assert [rate.limit for rate in hour.bucket.rates] == [800]


def test_one_limiter_per_project_and_limits() -> None:
    config = {"api_key": "k1", "rate_limits": {"cost_per_5_minutes": 10}}
    assert project_limiter(config, BASE) is project_limiter(dict(config), BASE)
    assert project_limiter(config, BASE) is not project_limiter({**config, "api_key": "k2"}, BASE)
    assert project_limiter(config, BASE) is not project_limiter({"api_key": "k1"}, BASE)


# --------------------------------------------------------------------------------------
# the tap-side limiter


def _fast_limits(**overrides: Any) -> RateLimits:
    """Windows of a second, so waits are short but measurable."""
    settings: dict[str, Any] = {
        "cost_per_short_window": 10,
        "user_lookups_per_long_window": 3,
        "short_window_seconds": 0.5,
        "long_window_seconds": 1.0,
    }
    settings.update(overrides)
    return RateLimits(**settings)


def test_cost_budget_blocks_until_the_window_frees_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = ProjectLimiter(_fast_limits(), BASE)
    request = _prepared("/api/2/users", start="20240101", end="20240104")  # costs 4
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    started = time.monotonic()
    for _ in range(3):
        with limiter.admitted(request, stream="active_users", logger=LOGGER):
            pass
    elapsed = time.monotonic() - started
    # 4 + 4 fit in 10; the third waits for the first to leave the (stretched) 1 s window.
    assert elapsed >= 0.9
    waits = [r for r in caplog.records if "waiting" in r.getMessage()]
    assert len(waits) == 1
    message = waits[0].getMessage()
    assert waits[0].levelno == logging.INFO
    assert "active_users: waiting" in message
    assert "Dashboard cost budget (10 per 0.5 s; this request costs 4)" in message


def test_a_request_dearer_than_a_window_waits_for_an_empty_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = ProjectLimiter(_fast_limits(), BASE)
    dear = _prepared("/api/2/users", start="20240101", end="20240131")  # 31 > 10
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    started = time.monotonic()
    for _ in range(2):
        with limiter.admitted(dear, stream="active_users", logger=LOGGER):
            pass
    assert 0.9 <= time.monotonic() - started < 5
    # Named once, as a warning: the budget the user set is exceeded by each such request.
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "active_users: a request costs 31, more than the whole Dashboard cost budget" in (
        warning.getMessage()
    )
    assert "(10 per 0.5 s, from rate_limits)" in warning.getMessage()


def test_user_lookups_are_limited_per_hour_window(caplog: pytest.LogCaptureFixture) -> None:
    limiter = ProjectLimiter(_fast_limits(), BASE)
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    started = time.monotonic()
    for term in ("a", "b", "c", "d"):
        with limiter.admitted(_prepared("/api/2/usersearch", user=term), stream="s", logger=LOGGER):
            pass
    # The fourth waits for the first to leave the 1 s window (stretched to 2 s: the margin
    # is at least half the 0.5 s short window, and both windows stretch alike).
    assert time.monotonic() - started >= 1.9
    assert any("user lookups budget (3 per 1 s" in r.getMessage() for r in caplog.records)


def test_export_waits_for_nothing_but_a_concurrency_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = ProjectLimiter(_fast_limits(), BASE)
    export = _prepared("/api/2/export", start="20240101T00", end="20240101T23")
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    started = time.monotonic()
    for _ in range(20):
        with limiter.admitted(export, stream="export_events", logger=LOGGER):
            pass
    # no budget wait was logged (the loose time bound only catches a hang on a loaded machine)
    assert not [r for r in caplog.records if "waiting" in r.getMessage()]
    assert time.monotonic() - started < 2.0


def test_at_most_the_concurrency_limit_runs_at_once(caplog: pytest.LogCaptureFixture) -> None:
    limiter = ProjectLimiter(_fast_limits(concurrent_requests=2), BASE)
    request = _prepared("/api/2/export", start="20240101T00", end="20240101T00")
    running, peak, lock = 0, 0, threading.Lock()
    caplog.set_level(logging.INFO, logger=LOGGER.name)

    def one() -> None:
        nonlocal running, peak
        with limiter.admitted(request, stream="export_events", logger=LOGGER):
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.1)
            with lock:
                running -= 1

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 2
    assert any("2 concurrent request slots" in r.getMessage() for r in caplog.records)


def test_profile_api_requests_take_no_rest_slot() -> None:
    limiter = ProjectLimiter(_fast_limits(concurrent_requests=1), BASE)
    profile = requests.Request("GET", "https://profile-api.amplitude.com/v1/userprofile").prepare()
    rest = _prepared("/api/2/export")
    with (
        limiter.admitted(rest, stream="export_events", logger=LOGGER),
        limiter.admitted(profile, stream="user_profiles", logger=LOGGER),
    ):
        assert not limiter.slots.acquire(blocking=False)  # the one slot is the export's


def test_profile_api_requests_are_paced_to_their_own_per_minute_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Amplitude allows 600 a minute (§7); the tap used to learn it from 429s."""
    assert request_charge("/v1/userprofile", {"user_id": "a"}) == Charge(PROFILE_BUDGET, 1)
    limiter = ProjectLimiter(
        _fast_limits(profile_requests_per_window=3, profile_window_seconds=0.5), BASE
    )
    profile = requests.Request(
        "GET", "https://profile-api.amplitude.com/v1/userprofile", params={"user_id": "a"}
    ).prepare()
    caplog.set_level(logging.INFO, logger=LOGGER.name)
    started = time.monotonic()
    for _ in range(4):
        with limiter.admitted(profile, stream="user_profiles", logger=LOGGER):
            pass
    assert time.monotonic() - started >= 0.9  # the fourth waited for the (stretched) window
    [wait] = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert "User Profile API requests budget (3 per 0.5 s" in wait


# --------------------------------------------------------------------------------------
# the simulator's limits


def _get(sim: AmplitudeSimulator, path: str, **params: str) -> requests.Response:
    return requests.get(
        f"{sim.url}{path}",
        params=params,
        auth=(sim.project.api_key, sim.project.secret_key),
        timeout=30,
    )


def test_simulator_refuses_a_query_over_the_cost_budget(simulator: AmplitudeSimulator) -> None:
    simulator.limits.cost = (Window(20, 60.0),)
    first = _get(simulator, "/api/2/sessions/average", start="20240301", end="20240315")
    assert first.status_code == 200
    second = _get(simulator, "/api/2/sessions/average", start="20240301", end="20240306")
    assert second.status_code == 429
    assert 1 <= int(second.headers["Retry-After"]) <= 60
    error = second.json()["error"]
    assert (error["http_code"], error["message"]) == (429, "Exceeded rate limit")
    assert "costs 6" in error["metadata"]["details"]
    # a cheaper query still fits (15 + 5 = 20), and refused queries spent nothing
    assert _get(simulator, "/api/2/users", start="20240301", end="20240305").status_code == 200
    assert [r.status for r in simulator.requests] == [200, 429, 200]


def test_simulator_counts_group_bys_as_four_conditions(simulator: AmplitudeSimulator) -> None:
    simulator.limits.cost = (Window(12, 60.0),)
    grouped = {"start": "20240301", "end": "20240303", "g": "country"}
    assert _get(simulator, "/api/2/users", **grouped).status_code == 200  # 3 x 4 = 12
    assert _get(simulator, "/api/2/annotations").status_code == 429


def test_simulator_limits_user_lookups(simulator: AmplitudeSimulator) -> None:
    simulator.limits.user_lookups = (Window(2, 60.0),)
    user = simulator.dataset.user_list()[0]
    assert _get(simulator, "/api/2/usersearch", user=user.user_id).status_code == 200
    assert _get(simulator, "/api/2/useractivity", user=str(user.amplitude_id)).status_code == 200
    refused = _get(simulator, "/api/2/usersearch", user=user.user_id)
    assert refused.status_code == 429
    assert _get(simulator, "/api/2/annotations").status_code == 200  # another budget


def test_simulator_throttles_the_profile_api_with_its_documented_body(
    simulator: AmplitudeSimulator,
) -> None:
    """Profile API: 600 requests per minute; beyond, its own error text (reference §7)."""
    simulator.limits.profile = (Window(2, 60.0),)
    user = simulator.dataset.user_list()[0]

    def profile() -> requests.Response:
        return requests.get(
            f"{simulator.url}/v1/userprofile",
            params={"user_id": user.user_id},
            headers={"Authorization": f"Api-Key {simulator.project.secret_key}"},
            timeout=10,
        )

    assert [profile().status_code for _ in range(2)] == [200, 200]
    throttled = profile()
    assert throttled.status_code == 429
    assert throttled.json() == {
        "error": "Number of requests per minute exceeds system limit. "
        "Contact Support if you need this limit raised"
    }
    assert _get(simulator, "/api/2/annotations").status_code == 200  # another budget


def test_simulator_refuses_a_sixth_concurrent_request(simulator: AmplitudeSimulator) -> None:
    simulator.add_fault("/api/2/annotations", Fault.delay(1.0), times=5)
    statuses: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        status = _get(simulator, "/api/2/annotations").status_code
        with lock:
            statuses.append(status)

    slow = [threading.Thread(target=call) for _ in range(5)]
    for thread in slow:
        thread.start()
    deadline = time.monotonic() + 5
    while simulator.limits.in_flight() < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    refused = _get(simulator, "/api/2/export", start="20240301T00", end="20240301T00")
    for thread in slow:
        thread.join()
    assert refused.status_code == 429
    assert refused.json()["error"]["message"] == "Too many concurrent requests"
    assert sorted(statuses) == [200] * 5
    assert simulator.limits.in_flight() == 0


def test_simulator_user_lookups_have_their_own_pool_of_ten(simulator: AmplitudeSimulator) -> None:
    """Amplitude: User Search and User Activity allow 10 concurrent (reference §3.1, §9)."""
    user = simulator.dataset.user_list()[0]
    # Long enough that all ten are in flight at once even on a loaded machine.
    simulator.add_fault("/api/2/usersearch", Fault.delay(4.0), times=10)
    statuses: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        status = _get(simulator, "/api/2/usersearch", user=user.user_id).status_code
        with lock:
            statuses.append(status)

    slow = [threading.Thread(target=call) for _ in range(10)]
    for thread in slow:
        thread.start()
    deadline = time.monotonic() + 4
    while simulator.limits.lookups_in_flight() < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert simulator.limits.lookups_in_flight() == 10
    eleventh = _get(simulator, "/api/2/useractivity", user=str(user.amplitude_id))
    other = _get(simulator, "/api/2/annotations")  # the REST pool of 5 is untouched
    for thread in slow:
        thread.join()
    assert sorted(statuses) == [200] * 10
    assert eleventh.status_code == 429
    assert eleventh.json()["error"]["message"] == "Too many concurrent requests"
    assert other.status_code == 200
    assert simulator.limits.lookups_in_flight() == 0
    assert simulator.limits.in_flight() == 0


# --------------------------------------------------------------------------------------
# whole runs


def _daily_streams_config(sim: AmplitudeSimulator) -> dict[str, Any]:
    # Feb 1 - Mar 3: users 29 + 3, sessions 15 + 15 + 2 = 64 cost units.
    return simulator_config(sim, start_date="2024-02-01T00:00:00Z")


DAILY_STREAMS = ["active_users", "average_session_length"]


def test_a_run_over_budget_is_throttled_not_refused(
    simulator: AmplitudeSimulator,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    simulator.limits.cost = (Window(30, 1.0),)
    config = _daily_streams_config(simulator)
    tap = TapAmplitude(
        config=config,
        catalog=select_only(DAILY_STREAMS, discovered_catalog()),
        parse_env_config=False,
    )
    limiter = ProjectLimiter(
        RateLimits(cost_per_short_window=30, short_window_seconds=1.0, long_window_seconds=12.0),
        simulator.url,
    )
    for stream in tap.streams.values():
        assert isinstance(stream, AmplitudeStream)
        stream.rate_limiter = limiter
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    tap.sync_all()
    elapsed = time.monotonic() - started

    statuses = [record.status for record in simulator.requests]
    assert statuses == [200] * 5, statuses  # 2 month slices + 3 session slices, none refused
    # 29, then 3 + 15 (after a window), then 15 + 2 (after another): at least two waits.
    waits = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
    assert len(waits) >= 2, waits
    assert all("Dashboard cost budget (30 per 1 s;" in message for message in waits)
    assert elapsed >= 2.0
    messages = parse_messages(capsys.readouterr().out)
    records = [m for m in messages if m["type"] == "RECORD"]
    assert {m["stream"] for m in records} == set(DAILY_STREAMS)
    assert len([m for m in records if m["stream"] == "active_users"]) == 29 + 3


def test_without_the_limiter_the_same_run_meets_429s_and_backs_off(
    simulator: AmplitudeSimulator,
) -> None:
    # Control for the test above: with Amplitude's default budget the tap does not wait, so
    # this tight simulator refuses; the tap honours Retry-After and still finishes.
    simulator.limits.cost = (Window(30, 1.0),)
    run = run_tap(_daily_streams_config(simulator), streams=DAILY_STREAMS, timeout=90)
    assert run.returncode == 0, run.stderr
    statuses = [record.status for record in simulator.requests]
    assert 429 in statuses
    assert statuses.count(200) == 5
    assert "retrying after HTTP 429" in run.stderr
    assert len(run.records("active_users")) == 29 + 3
    body = json.dumps(run.messages)
    assert simulator.project.secret_key not in body + run.stderr
