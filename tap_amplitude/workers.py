"""Worker threads that never hold an ending process open.

``ThreadPoolExecutor`` joins its threads when the interpreter exits. A download waiting
minutes for Amplitude's first byte, or in the middle of its retries, would then keep a run
that was interrupted, or that already failed, alive until the download gave up. These
workers are daemon threads: once the run is over, the process ends with it.
"""

from __future__ import annotations

import functools
import queue
import threading
import typing as t
from concurrent.futures import Future

if t.TYPE_CHECKING:
    from collections.abc import Callable

_T = t.TypeVar("_T")
_Job = tuple[Future[t.Any], "Callable[[], t.Any]"]


class DaemonPool:
    """A fixed number of daemon threads taking jobs in submission order."""

    def __init__(self, workers: int, *, name: str) -> None:
        """Start ``workers`` threads, named ``name-N`` for logs and thread dumps."""
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{number}", daemon=True)
            for number in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, function: Callable[..., _T], /, *args: t.Any) -> Future[_T]:
        """Queue ``function(*args)``; its result or exception arrives through the future."""
        future: Future[_T] = Future()
        self._jobs.put((future, functools.partial(function, *args)))
        return future

    def shutdown(self) -> None:
        """Cancel the jobs not started and let each thread end after its current job."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[0].cancel()
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, call = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                future.set_exception(exc)
            else:
                future.set_result(result)
