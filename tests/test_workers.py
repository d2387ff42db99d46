"""The download pool: results and exceptions reach the caller; shutdown drops queued jobs."""

from __future__ import annotations

import threading

import pytest

from tap_amplitude.workers import DaemonPool


def test_results_and_exceptions_reach_the_futures() -> None:
    pool = DaemonPool(2, name="test")
    ok = pool.submit(pow, 2, 10)
    failed = pool.submit(int, "not a number")
    assert ok.result(timeout=5) == 1024
    with pytest.raises(ValueError, match="not a number"):
        failed.result(timeout=5)
    pool.shutdown()


def test_shutdown_cancels_queued_jobs_and_threads_are_daemons() -> None:
    started, release = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return release.wait(5)

    pool = DaemonPool(1, name="test")
    running = pool.submit(hold)
    assert started.wait(5)
    queued = pool.submit(pow, 2, 3)
    pool.shutdown()
    assert queued.cancelled()
    release.set()
    assert running.result(timeout=5) is True
    assert all(thread.daemon for thread in threading.enumerate() if thread.name.startswith("test-"))
