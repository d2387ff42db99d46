"""One pass over the Export API: windows in order, downloads ahead, lines out, checkpoints.

The stream consumes :class:`LineBlock` items and acts on each :class:`Checkpoint`, which says
every upload hour before ``until`` has been handed on in full: the bookmark may move there.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing as t
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass

from tap_amplitude.client import MAX_TRIES, AmplitudeError
from tap_amplitude.export.archive import CorruptExportError, LineBlock, read_archive
from tap_amplitude.export.download import ExportDownloader, WindowTooLargeError
from tap_amplitude.export.progress import ExportProgress
from tap_amplitude.workers import DaemonPool

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime

    from tap_amplitude.client import AmplitudeStream
    from tap_amplitude.export.windows import Window


@dataclass(frozen=True)
class Checkpoint:
    """Every upload hour before ``until`` has been handed on."""

    until: datetime


ExportItem = LineBlock | Checkpoint
Spool = t.IO[bytes] | None  # None: Amplitude has no data for the window


class ExportRun:
    """Reads ``windows`` in order while up to ``concurrency`` of them download at once.

    Downloads run ahead of reading by at most ``2 × concurrency`` windows, each spooled to a
    temporary file; memory stays flat whatever the number of windows in flight.
    """

    def __init__(
        self, stream: AmplitudeStream, windows: list[Window], *, concurrency: int = 1
    ) -> None:
        """Announce the plan; nothing is requested before :meth:`items` is iterated."""
        self.stream = stream
        self.windows = windows
        self.concurrency = max(1, concurrency)
        self.download = ExportDownloader(stream)
        self.progress = ExportProgress(stream, windows)

    def items(self, *, hourly: bool) -> Iterator[ExportItem]:
        """Lines and checkpoints, window after window; too-large windows are split in place.

        With ``hourly``, a checkpoint also comes at each new upload hour inside a window.
        """
        queue = deque(self.windows)
        in_flight: dict[Window, Future[Spool]] = {}
        pool = DaemonPool(self.concurrency, name="export-download")
        try:
            while queue:
                window = queue[0]
                self._download_until_done(window, pool, queue, in_flight)
                queue.popleft()
                try:
                    spool = in_flight.pop(window).result()
                except WindowTooLargeError as exc:
                    queue.extendleft(reversed(window.halves()))
                    self.stream.logger.info(
                        "%s: %s for %s; splitting it in halves",
                        self.stream.name,
                        exc,
                        window.label(),
                    )
                    continue
                self._fill(pool, queue, in_flight)
                yield from self._window_items(window, spool, hourly=hourly)
                self.progress.window_done(window)
                yield Checkpoint(window.end)
        finally:
            self.download.cancelled.set()
            pool.shutdown()
            for leftover in in_flight.values():
                leftover.add_done_callback(_close_spool)

    def _download_until_done(
        self,
        window: Window,
        pool: DaemonPool,
        queue: deque[Window],
        in_flight: dict[Window, Future[Spool]],
    ) -> None:
        """Wait for ``window``, starting the next downloads as soon as others finish."""
        while True:
            self._fill(pool, queue, in_flight)
            if in_flight[window].done():
                return
            running = [future for future in in_flight.values() if not future.done()]
            wait(running, return_when=FIRST_COMPLETED)

    def _fill(
        self,
        pool: DaemonPool,
        queue: deque[Window],
        in_flight: dict[Window, Future[Spool]],
    ) -> None:
        """Keep ``concurrency`` downloads running, at most twice that many windows ahead.

        Finished downloads wait on disk for their turn, so a slow window does not hold the
        others back; the bound keeps the spooled-but-unread windows few.
        """
        running = sum(not future.done() for future in in_flight.values())
        for position, window in enumerate(itertools.islice(queue, 2 * self.concurrency)):
            if window in in_flight:
                continue
            if running >= self.concurrency and position:  # the next window always goes
                return
            in_flight[window] = pool.submit(self.download, window)
            running += 1

    def _window_items(self, window: Window, spool: Spool, *, hourly: bool) -> Iterator[ExportItem]:
        """One window's lines; a corrupt member fetches the window again, skipping lines sent."""
        label = window.label()
        warned: set[str] = set()

        def warn(problem: str) -> None:
            if problem not in warned:
                warned.add(problem)
                self.stream.logger.warning(
                    "%s: %s (export for %s)", self.stream.name, problem, label
                )

        handed_on = 0  # lines of this window already passed on, kept across downloads
        for attempt in range(1, MAX_TRIES + 1):
            if spool is None:
                return
            self.progress.downloaded(spool)
            seen = 0
            current_hour: datetime | None = None
            named: dict[datetime | None, str] = {}  # hours the members are named for: one each
            try:
                with spool:
                    for block in read_archive(spool, warn):
                        named.setdefault(block.hour, block.member)
                        new_hour = _starts_hour(window, block, current_hour, warn)
                        if hourly and new_hour is not None and seen >= handed_on:
                            yield Checkpoint(new_hour)
                        current_hour = block.hour or current_hour
                        count = len(block.lines)
                        if seen + count > handed_on:
                            skip = max(handed_on - seen, 0)
                            handed_on = seen + count
                            self.progress.events += count - skip
                            yield dataclasses.replace(
                                block,
                                window=label,
                                first_line=block.first_line + skip,
                                lines=block.lines[skip:],
                            )
                        seen += count
            except CorruptExportError as exc:
                if attempt == MAX_TRIES:
                    msg = (
                        f"{self.stream.name}: the export for {label} is corrupt after "
                        f"{attempt} downloads ({exc}); nothing after it was read. Re-run "
                        "later; if it persists, report the window to Amplitude support."
                    )
                    raise AmplitudeError(msg) from exc
                self.stream.logger.warning(
                    "%s: corrupt archive member for %s (%s); downloading the window again",
                    self.stream.name,
                    label,
                    exc,
                )
                spool = self.download(window)
                continue
            _check_named_hours(self.stream.name, window, named)
            return


def _check_named_hours(stream: str, window: Window, named: dict[datetime | None, str]) -> None:
    """Refuse an archive whose members are all named for hours outside its window.

    It is not the archive asked for; taking the window as read would leave its hours a gap.
    Members whose names give no hour (``None``) say nothing either way.

    Raises:
        AmplitudeError: naming one of its members.
    """
    hours = {hour: member for hour, member in named.items() if hour is not None}
    if hours and not any(window.start <= hour < window.end for hour in hours):
        msg = (
            f"{stream}: the export for {window.label()} holds only files named for upload "
            f"hours outside it (e.g. {next(iter(hours.values()))}), so it is not the archive "
            "asked for and the window is not taken as read; the bookmark stays before it. "
            "Run again later; if it persists, report the window to Amplitude support."
        )
        raise AmplitudeError(msg)


def _starts_hour(
    window: Window, block: LineBlock, current: datetime | None, warn: Callable[[str], None]
) -> datetime | None:
    """The upload hour ``block`` starts, if every hour of the window before it is read.

    Only hours inside the window count: a member named for another hour (Amplitude's or a
    proxy's mistake) must not move the bookmark past hours no download has read yet.
    """
    hour = block.hour
    if hour is None:
        return None
    if not window.start <= hour < window.end:
        warn(
            f"archive member {block.member} is named for an upload hour outside the window; "
            "its events are read, but the bookmark moves only to hours inside the window"
        )
        return None
    return hour if current is not None and hour > current else None


def _close_spool(future: Future[Spool]) -> None:
    """Close the file of a download the run no longer needs."""
    if not future.cancelled() and future.exception() is None and (spool := future.result()):
        spool.close()
