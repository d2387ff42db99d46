"""``rate_limits.backend``: three tap processes against the simulator's limits, one budget.

Each process is a real sync (tests/shared_budget_worker.py) whose limiter has windows of
seconds; with a shared SQLite backend they spend one budget and hold one set of concurrency
slots, without it each spends its own and the simulator answers 429.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from amplitude_simulator import AmplitudeSimulator, Fault
from amplitude_simulator.limits import COST_PATHS, Window, query_cost
from tap_amplitude.ratelimit import ProjectLimiter, RateLimits
from tap_amplitude.settings import SettingsError
from tap_amplitude.shared_slots import SharedBackend
from tests.e2e.support import free_port
from tests.helpers import discovered_catalog, select_only, simulator_config

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 30  # cost units per (tap) window
TAP_WINDOW = 0.5  # seconds; stretched by the tap's margin to 1.0 s
STRETCHED_WINDOW = 1.0
SIM_WINDOW = 0.8  # Amplitude's (the simulator's) window: shorter than the tap's stretched one
# Per process: active_users 10 + 3, average_session_length 13, annotations 1.
STREAMS = ["active_users", "average_session_length", "annotations"]
QUERIES_PER_PROCESS = 4
PROCESSES = 3


def _run_three(
    sim: AmplitudeSimulator, tmp_path: Path, streams: list[str], **settings: Any
) -> list[subprocess.CompletedProcess[str]]:
    """Start three tap processes at once on one project; wait for all of them."""
    config = simulator_config(sim, **settings)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "catalog.json").write_text(json.dumps(select_only(streams, discovered_catalog())))
    argv = [
        sys.executable,
        "-m",
        "tests.shared_budget_worker",
        str(tmp_path / "config.json"),
        str(tmp_path / "catalog.json"),
        str(TAP_WINDOW),
        str(TAP_WINDOW * 2),
    ]
    processes = [
        subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(PROCESSES)
    ]
    results = []
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(argv, process.returncode, "", stderr))
    return results


def _dashboard(sim: AmplitudeSimulator) -> list[tuple[float, int, int]]:
    """(arrival, cost, status) of every Dashboard query, in order of arrival."""
    return sorted(
        (record.at, query_cost(record.params), record.status)
        for record in sim.requests
        if record.path in COST_PATHS
    )


def _warm_up(sim: AmplitudeSimulator) -> None:
    """Build the simulator's chart data first, so each request is recorded as it arrives."""
    sim.limits.enabled = False
    for path in ("/api/2/users", "/api/2/sessions/average"):
        requests.get(
            f"{sim.url}{path}",
            params={"start": "20240220", "end": "20240304"},
            auth=(sim.project.api_key, sim.project.secret_key),
            timeout=30,
        )
    sim.clear_requests()
    sim.limits.enabled = True
    sim.limits.cost = (Window(BUDGET, SIM_WINDOW),)


def _budget_settings(tmp_path: Path, *, shared: bool, **more: Any) -> dict[str, Any]:
    limits: dict[str, Any] = {"cost_per_5_minutes": BUDGET, **more}
    if shared:
        limits["backend"] = f"sqlite:///{tmp_path / 'budget.db'}"
    return {"start_date": "2024-02-20T00:00:00Z", "rate_limits": limits}


def test_three_processes_sharing_a_backend_spend_one_budget(
    simulator: AmplitudeSimulator, tmp_path: Path
) -> None:
    _warm_up(simulator)
    runs = _run_three(simulator, tmp_path, STREAMS, **_budget_settings(tmp_path, shared=True))
    assert all(run.returncode == 0 for run in runs), [run.stderr[-2000:] for run in runs]
    queries = _dashboard(simulator)
    assert len(queries) == QUERIES_PER_PROCESS * PROCESSES
    assert [status for _, _, status in queries] == [200] * len(queries)  # not one 429
    # Spaced as the budget says: however the arrivals fall, no stretch of Amplitude's window
    # holds more than the budget (the tap's own window is that window plus its margin, which
    # absorbs the moment between the tap counting a request and the request arriving).
    for at, _, _ in queries:
        recent = [(round(o - at, 3), c) for o, c, _ in queries if at - SIM_WINDOW < o <= at]
        assert sum(cost for _, cost in recent) <= BUDGET, recent
    # 81 units at 30 per window need at least three windows: two waits.
    assert queries[-1][0] - queries[0][0] >= 2 * STRETCHED_WINDOW - 0.2
    waits = "".join(run.stderr for run in runs)
    assert "waiting" in waits
    assert "Dashboard cost budget (30 per 0.5 s" in waits


def test_without_the_backend_the_same_processes_meet_429s(
    simulator: AmplitudeSimulator, tmp_path: Path
) -> None:
    _warm_up(simulator)
    runs = _run_three(simulator, tmp_path, STREAMS, **_budget_settings(tmp_path, shared=False))
    assert all(run.returncode == 0 for run in runs)  # they back off and finish, but…
    statuses = [status for _, _, status in _dashboard(simulator)]
    assert 429 in statuses
    assert "retrying after HTTP 429" in "".join(run.stderr for run in runs)


def _slow_exports(sim: AmplitudeSimulator) -> None:
    sim.limits.concurrent = 2
    sim.add_fault("/api/2/export", Fault.delay(0.4), times=100)


def _export_settings(tmp_path: Path, *, shared: bool) -> dict[str, Any]:
    settings = _budget_settings(tmp_path, shared=shared, concurrent_requests=2)
    settings.update(
        start_date="2024-03-01T00:00:00Z", end_date="2024-03-01T03:00:00Z", export_window_hours=1
    )
    return settings


def test_the_concurrency_cap_holds_across_processes_through_the_backend(
    simulator: AmplitudeSimulator, tmp_path: Path
) -> None:
    _slow_exports(simulator)
    runs = _run_three(
        simulator, tmp_path, ["export_events"], **_export_settings(tmp_path, shared=True)
    )
    assert all(run.returncode == 0 for run in runs), [run.stderr[-2000:] for run in runs]
    exports = [r.status for r in simulator.requests if r.path == "/api/2/export"]
    assert exports == [200] * 9
    assert "concurrent request slots (shared by every process" in "".join(r.stderr for r in runs)


def test_without_the_backend_a_third_process_is_refused(
    simulator: AmplitudeSimulator, tmp_path: Path
) -> None:
    _slow_exports(simulator)
    runs = _run_three(
        simulator, tmp_path, ["export_events"], **_export_settings(tmp_path, shared=False)
    )
    assert all(run.returncode == 0 for run in runs)
    assert 429 in [r.status for r in simulator.requests if r.path == "/api/2/export"]


# --------------------------------------------------------------------------------------
# the setting itself


def test_backend_urls_never_show_their_password(caplog: pytest.LogCaptureFixture) -> None:
    url = "postgresql://budget:s3cret-pw@127.0.0.1:5432/limits"
    assert SharedBackend.redact(url) == "postgresql://budget:***@127.0.0.1:5432/limits"
    assert "s3cret" not in repr(RateLimits(backend=url))
    with pytest.raises(SettingsError) as unsupported:
        SharedBackend("mysql://user:s3cret-pw@host/db")
    assert "s3cret" not in str(unsupported.value)
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens: the connection is refused
    with pytest.raises(SettingsError) as refused:
        ProjectLimiter(
            RateLimits(backend=f"postgresql://budget:s3cret-pw@127.0.0.1:{port}/limits"),
            "https://amplitude.com",
        )
    message = str(refused.value)
    assert f"postgresql://budget:***@127.0.0.1:{port}/limits" in message
    assert "could not open its rate-limit bucket (OperationalError)" in message
    assert "s3cret" not in message + caplog.text


def test_a_shared_sqlite_budget_outlives_the_limiter(tmp_path: Path) -> None:
    # Two limiters (as two processes would) on one file: the second sees the first's spending.
    backend = f"sqlite:///{tmp_path / 'nested' / 'budget.db'}"
    limits = RateLimits(
        cost_per_short_window=3, short_window_seconds=60, long_window_seconds=120, backend=backend
    )
    first = ProjectLimiter(limits, "https://amplitude.com", project="p")
    second = ProjectLimiter(limits, "https://amplitude.com", project="p")
    other = ProjectLimiter(limits, "https://amplitude.com", project="q")
    assert first.budgets["Dashboard cost"].limiter.try_acquire("x", 3, timeout=0.3)
    assert not second.budgets["Dashboard cost"].limiter.try_acquire("x", 1, timeout=0.3)
    assert other.budgets["Dashboard cost"].limiter.try_acquire("x", 3, timeout=0.3)
    started = time.monotonic()
    with first.shared_slots.held() as waited:  # type: ignore[union-attr]
        assert not waited
    assert time.monotonic() - started < 1


def test_amplitude_privacy_spends_the_same_shared_budget(tmp_path: Path) -> None:
    from tap_amplitude.client import AmplitudeStream
    from tap_amplitude.privacy.base import load_config, open_tap

    backend = f"sqlite:///{tmp_path / 'budget.db'}"
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps({"api_key": "k", "secret_key": "s", "rate_limits": {"backend": backend}})
    )
    config = load_config(path)
    assert config["rate_limits"] == {"backend": backend}
    with open_tap(config) as tap:
        stream = tap.streams["user_search"]
        assert isinstance(stream, AmplitudeStream)
        assert stream.rate_limiter.limits.backend == backend
        assert stream.rate_limiter.shared_slots is not None
