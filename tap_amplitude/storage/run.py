"""One pass over the bucket: list hours, read new or rewritten objects in order, checkpoint.

:class:`StorageRun` yields the same items as :class:`~tap_amplitude.export.ExportRun`
(:class:`~tap_amplitude.export.LineBlock` and :class:`~tap_amplitude.export.Checkpoint`), so a
stream only chooses its source. Hours are listed one UTC day at a time per folder (dates are
zero-padded, hours are not, so every key is parsed: docs/amplitude-api.md §16.5), objects are
read in upload-hour and part order, several at once on worker threads, each streamed through
gzip into bounded queues of 1 MiB line blocks, so memory stays flat whatever the size of an
object or of the bucket.
"""

from __future__ import annotations

import dataclasses
import gzip
import queue
import threading
import time
import typing as t
import zlib
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from tap_amplitude.client import AmplitudeError
from tap_amplitude.export import Checkpoint, LineBlock
from tap_amplitude.export.archive import member_blocks
from tap_amplitude.settings import shown_names
from tap_amplitude.storage.layout import HOUR, Kind, day_prefix, parse_key
from tap_amplitude.storage.source import brief
from tap_amplitude.storage.state import CLOSE_GRACE, TRAILING, ReadState
from tap_amplitude.workers import DaemonPool

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from singer_sdk.streams import Stream

    from tap_amplitude.storage.source import Bucket, Entry

READ_TRIES = 3  # a corrupt or cut-off object is read again this many times in all
RETRY_WAIT_SECONDS = 1.0
QUEUE_BLOCKS = 4  # line blocks (≤ 1 MiB each) waiting per object being read ahead
DAY = timedelta(days=1)
KEY_WIDTH = 200  # object keys in warnings: whole, as Amplitude names them


@dataclass(frozen=True)
class Planned:
    """One object to read, with its upload hour and order within the hour."""

    hour: datetime
    scope: str
    part: int
    entry: Entry
    rewritten: bool


@dataclass
class HourPlan:
    """One upload hour of the run: its objects to read and whether it is closed."""

    hour: datetime
    objects: list[Planned]
    closed: bool
    marked: bool  # closed by ``complete`` markers, not only by the grace period


@dataclass
class _Listing:
    """One day's listing, sorted by upload hour."""

    listed: dict[datetime, list[Planned]] = dataclasses.field(default_factory=dict)
    keys: dict[datetime, set[str]] = dataclasses.field(default_factory=dict)
    markers: dict[datetime, set[str]] = dataclasses.field(default_factory=dict)
    unknown: list[str] = dataclasses.field(default_factory=list)
    parts: dict[tuple[str, datetime, int | None], str] = dataclasses.field(default_factory=dict)
    duplicates: list[str] = dataclasses.field(default_factory=list)  # "a and b"
    new: set[str] = dataclasses.field(default_factory=set)  # keys to read
    empty: list[str] = dataclasses.field(default_factory=list)


class _Done:
    """End of one object's blocks."""


_DONE = _Done()


class _CancelledError(Exception):
    """The run stopped while this object was being read ahead."""


class StorageRun:
    """Reads upload hours ``[first, end)`` of ``kind`` from the bucket, in order."""

    def __init__(  # noqa: PLR0913 - each is one thing the run needs
        self,
        stream: Stream,
        bucket: Bucket,
        read_state: ReadState,
        *,
        kind: Kind,
        end: datetime,
        app: str | None,
        concurrency: int = 3,
        now: datetime | None = None,
    ) -> None:
        """Nothing is listed before :meth:`items` is iterated."""
        self.stream = stream
        self.bucket = bucket
        self.read_state = read_state
        self.kind = kind
        self.end = end
        self.app = app
        self.concurrency = max(1, concurrency)
        # A run bounded by end_date decides what is closed as it would have at end_date, so
        # the same config and state give the same result whenever the run happens.
        self.now = min(now or datetime.now(tz=timezone.utc), end)
        self.cancelled = threading.Event()
        self.saw_markers = False  # this export writes ``complete`` markers
        self.unmarked: list[HourPlan] = []  # closed by the grace period alone, not yet named
        self.objects_read = 0
        self.objects_skipped = 0
        self.lines = 0

    # ------------------------------------------------------------------ planning

    def folders(self) -> list[str]:
        """The folders this kind lives in; a root without Amplitude's layout is an error."""
        apps, orgs = self.bucket.folders()
        url = self.bucket.url
        if self.app is not None:
            if self.kind is Kind.EVENTS and self.app not in apps:
                msg = (
                    f"storage_export_url {url}: no {self.app}/ folder (project_id {self.app}) "
                    f"under it{'; it has ' + ', '.join(apps[:5]) if apps else ''}. Check "
                    "project_id, and that the URL names the folder holding Amplitude's "
                    "{app_id}/ folders."
                )
                raise AmplitudeError(msg)
            apps = [self.app] if self.app in apps else []
        if not apps and not orgs:
            msg = (
                f"storage_export_url {url}: nothing under it looks like Amplitude's export (no "
                "{app_id}/ or -{org_id}/ folders); check the bucket and prefix: the URL must "
                "name the folder that holds them (e.g. s3://bucket/amplitude for "
                "s3://bucket/amplitude/187520/187520_2024-03-02_5#0.json.gz)."
            )
            raise AmplitudeError(msg)
        if self.kind is Kind.EVENTS:
            return apps
        return orgs + apps  # merged ids: -org folders, or app folders (legacy organisations)

    def _check_state_folders(self, folders: list[str]) -> None:
        """A state whose objects all lie in folders this run does not read is another project's.

        Its bookmark would skip this project's hours up to it with exit 0. A state sharing a
        folder with the run is this export's (``project_id`` may have narrowed it to one app).

        Raises:
            AmplitudeError: the state names objects outside ``folders``.
        """
        named = {
            key.split("/", 1)[0] for objects in self.read_state.read.values() for key in objects
        }
        foreign = sorted(named - set(folders))
        if foreign and not named & set(folders):  # some in common: project_id narrowed it
            msg = (
                f"{self.stream.name}: the state's storage map names objects in "
                f"{', '.join(f'{folder[:20]}/' for folder in foreign[:3])}, which this run does "
                f"not read from {self.bucket.url} (it reads "
                f"{', '.join(f'{folder}/' for folder in folders[:5])}): the state is from "
                "another project_id or storage_export_url, and its bookmark would skip this "
                f"one's hours. Use this project's state, or remove the '{self.stream.name}' "
                "entry from the state to start again from start_date."
            )
            raise AmplitudeError(msg)

    def days(self, folders: list[str]) -> Iterator[list[HourPlan]]:
        """Every hour from the first to list up to ``end``, one day's listing at a time."""
        state = self.read_state
        first = state.first_hour()
        day = first.replace(hour=0)
        while day < self.end:
            listing = _Listing()
            for folder in folders:
                for entry in self.bucket.list_prefix(folder, day_prefix(folder, day)):
                    self._sort_entry(listing, folder, entry, first)
            self._log_listing(listing)
            plans = []
            for hour in _day_hours(day, first, self.end):
                state.forget_missing(hour, listing.keys.get(hour, set()))
                objects = sorted(listing.listed.get(hour, []), key=lambda p: (int(p.scope), p.part))
                marked = self._marked(listing.markers.get(hour, set()), folders)
                plans.append(
                    HourPlan(hour, objects, self._closed(hour, marked=marked), marked=marked)
                )
            yield plans
            day += DAY

    def _sort_entry(self, listing: _Listing, folder: str, entry: Entry, first: datetime) -> None:
        """File one listed entry: data to read or skip, a marker, or a name not understood."""
        parsed = parse_key(entry.key) if not entry.directory else None
        if parsed is None:
            listing.unknown.append(entry.key)
            return
        if not first <= parsed.hour < self.end:
            return
        if parsed.marker:
            self.saw_markers = True
            listing.markers.setdefault(parsed.hour, set()).add(folder)
        elif parsed.holds(self.kind):
            listing.keys.setdefault(parsed.hour, set()).add(entry.key)
            new = self.read_state.is_new(parsed.hour, entry)
            twin = listing.parts.setdefault((folder, parsed.hour, parsed.part), entry.key)
            if twin != entry.key and (new or twin in listing.new):
                listing.duplicates.append(f"{twin} and {entry.key}")  # named once, when read
            if new:
                listing.new.add(entry.key)
                if entry.identity.startswith("0:"):
                    listing.empty.append(entry.key)
                planned = Planned(
                    parsed.hour,
                    folder,
                    parsed.part or 0,
                    entry,
                    rewritten=self.read_state.was_read(parsed.hour, entry),
                )
                listing.listed.setdefault(parsed.hour, []).append(planned)
            else:
                self.objects_skipped += 1

    def _marked(self, markers: set[str], folders: list[str]) -> bool:
        """Whether ``complete`` markers say an hour is done.

        Events need a marker in every app folder read. Merged ids have no markers of their
        own that Amplitude documents; the export job that writes them writes the hour's
        event marker too, so any marker for the hour closes it.
        """
        if not markers:
            return False
        return self.kind is Kind.MERGED_IDS or markers.issuperset(folders)

    def _closed(self, hour: datetime, *, marked: bool) -> bool:
        """Closed: the grace period has passed, or the hour has ended and is marked done."""
        if hour + HOUR + CLOSE_GRACE <= self.now:
            return True
        return marked and hour + HOUR <= self.now

    # ------------------------------------------------------------------ reading

    def items(self, *, hourly: bool) -> Iterator[LineBlock | Checkpoint]:
        """Lines of every new or rewritten object, in order; checkpoints as hours settle.

        With ``hourly``, a checkpoint follows every object and every hour the bookmark
        passes; otherwise one follows each day that had objects to read.
        """
        folders = self.folders()
        self._check_state_folders(folders)
        state = self.read_state
        self._log_plan(folders)
        pool = DaemonPool(self.concurrency, name="storage-read")
        try:
            for plans in self.days(folders):
                pending = deque(planned for plan in plans for planned in plan.objects)
                ahead: deque[_Reader] = deque()
                for plan in plans:
                    for planned in plan.objects:
                        while pending and len(ahead) < self.concurrency:
                            reader = _Reader(self, pending.popleft())
                            pool.submit(reader.work)
                            ahead.append(reader)
                        reader = ahead.popleft()
                        if planned.rewritten:
                            self.stream.logger.info(
                                "%s: %s was rewritten since it was read (a backfill); reading "
                                "it again",
                                self.stream.name,
                                planned.entry.key,
                            )
                        if (yield from reader.blocks()):
                            self.objects_read += 1
                            state.mark_read(planned.hour, planned.entry)
                            if hourly:
                                yield Checkpoint(state.bookmark)
                        else:  # gone before it was read: the hour stays open, listed again
                            plan.closed = False
                    if self._settle(plan) and hourly:
                        yield Checkpoint(state.bookmark)
                self._log_unmarked()
                if not hourly and any(plan.objects for plan in plans):
                    yield Checkpoint(state.bookmark)
            state.save()
            yield Checkpoint(state.bookmark)
            self._log_done()
        finally:
            self.cancelled.set()
            pool.shutdown()

    def _settle(self, plan: HourPlan) -> bool:
        """The hour's objects are read: close it if it is; whether the bookmark moved."""
        before = self.read_state.bookmark
        if plan.closed and not plan.marked and plan.hour == before:
            self.unmarked.append(plan)
        self.read_state.settle(plan.hour, closed=plan.closed)
        return self.read_state.bookmark != before

    def read_object(self, planned: Planned, put: Callable[[LineBlock], None]) -> bool:
        """Stream one object's lines to ``put``; False if it vanished (a backfill in progress).

        A damaged or cut-off object is read again (lines already handed on are skipped).

        Raises:
            AmplitudeError: the object is still unreadable after :data:`READ_TRIES` reads.
        """
        entry = planned.entry
        label = f"{self.bucket.url} ({planned.hour:%Y-%m-%d %H}:00 UTC)"
        handed_on = 0
        for attempt in range(1, READ_TRIES + 1):
            seen = 0
            try:
                with self.bucket.open(entry.path) as raw, gzip.GzipFile(fileobj=raw) as lines:
                    for block in member_blocks(lines, entry.key):
                        count = len(block.lines)
                        if seen + count > handed_on:
                            skip = max(handed_on - seen, 0)
                            put(
                                dataclasses.replace(
                                    block,
                                    window=label,
                                    first_line=block.first_line + skip,
                                    lines=block.lines[skip:],
                                )
                            )
                            handed_on = seen + count
                        seen += count
            except FileNotFoundError:
                self.stream.logger.warning(
                    "%s: %s/%s disappeared before it was read (a backfill rewriting it?); the "
                    "bookmark stays before its hour, so the next run lists it again",
                    self.stream.name,
                    self.bucket.url,
                    entry.key,
                )
                return False
            except (OSError, EOFError, zlib.error) as exc:
                if isinstance(exc, PermissionError) or attempt == READ_TRIES:
                    what = f"{self.stream.name}: cannot read {self.bucket.url}/{entry.key}"
                    if not isinstance(exc, PermissionError):
                        what += f" after {attempt} tries"
                    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
                        problem = (
                            f"{what}: {brief(exc)}; the object is cut off or not a gzip of "
                            "JSON lines. Ask Amplitude to export the hour again (a backfill "
                            "rewrites it), or move the object out of the folder if its events "
                            "are not needed."
                        )
                    else:
                        problem = str(self.bucket.problem(what, exc))
                    msg = f"{problem} Nothing after it was read; the bookmark stays before it."
                    raise AmplitudeError(msg) from exc
                self.stream.logger.warning(
                    "%s: reading %s failed (%s); reading it again",
                    self.stream.name,
                    entry.key,
                    type(exc).__name__,
                )
                time.sleep(RETRY_WAIT_SECONDS * attempt)
                continue
            return True
        return False  # pragma: no cover - the loop returns or raises

    # ------------------------------------------------------------------ progress

    def _log_plan(self, folders: list[str]) -> None:
        first = self.read_state.first_hour()
        self.stream.logger.info(
            "%s: reading %s from %s, folders %s, upload hours %s..%s UTC (bookmark %s)",
            self.stream.name,
            self.kind.value,
            self.bucket.url,
            ", ".join(f"{folder}/" for folder in folders),
            f"{first:%Y-%m-%d %H}:00",
            f"{self.end - HOUR:%Y-%m-%d %H}:59",
            self.read_state.bookmark_text,
            extra={"stream_name": self.stream.name},
        )

    def _log_listing(self, listing: _Listing) -> None:
        """What a day's listing holds that is not plainly Amplitude's: named, never silent."""
        if listing.unknown:
            self._log_unknown(listing.unknown)
        if listing.duplicates:
            self.stream.logger.warning(
                "%s: %s in %s name the same upload hour and part; both are read, so their "
                "rows may come twice (load keyed on uuid, as Singer targets do), and the one "
                "Amplitude did not write should be removed",
                self.stream.name,
                shown_names(listing.duplicates, KEY_WIDTH),
                self.bucket.url,
            )
        if listing.empty:
            self.stream.logger.warning(
                "%s: %s in %s are empty (0 bytes, not even an empty gzip), so they hold no "
                "events; if Amplitude writes them again they are read again while their hour "
                "is within %d hours of the bookmark",
                self.stream.name,
                shown_names(listing.empty, KEY_WIDTH),
                self.bucket.url,
                int(TRAILING.total_seconds() // 3600),
            )

    def _log_unknown(self, keys: list[str]) -> None:
        """Objects named like the day's export that are not its data: named, never silent."""
        self.stream.logger.warning(
            "%s: %d object(s) in %s are named for an export day but not as Amplitude's data "
            "(…_{H}#{n}.json.gz, H 0-23), merged-id files or _complete markers, so they are not "
            "read: %s. If they hold events, give them Amplitude's names or ask Amplitude to "
            "export those hours again.",
            self.stream.name,
            len(keys),
            self.bucket.url,
            shown_names(sorted(keys), KEY_WIDTH),
        )

    def _log_unmarked(self) -> None:
        """Hours the grace period closed though this export writes markers: maybe a gap."""
        plans, self.unmarked = self.unmarked, []
        if not plans or not self.saw_markers:
            return
        hours = [
            f"{plan.hour:%Y-%m-%d %H}:00{'' if plan.objects else ' (no objects)'}" for plan in plans
        ]
        self.stream.logger.warning(
            "%s: upload hours %s have no _complete marker although this export writes them; "
            "they were closed %d hours after they ended with what they hold now, so the "
            "bookmark moved past them. If Amplitude missed them (an export error, lost "
            "access), objects it writes for them once the bookmark is %d hours past them are "
            "not seen: check the export in Amplitude (Data Destinations), and to read them run "
            "with a state whose bookmark is before them.",
            self.stream.name,
            ", ".join(hours[:6]) + (", …" if len(hours) > 6 else ""),  # noqa: PLR2004
            int(CLOSE_GRACE.total_seconds() // 3600),
            int(TRAILING.total_seconds() // 3600),
        )

    def _log_done(self) -> None:
        self.stream.logger.info(
            "%s: %d objects read (%d lines), %d already read and unchanged; bookmark %s",
            self.stream.name,
            self.objects_read,
            self.lines,
            self.objects_skipped,
            self.read_state.bookmark_text,
            extra={
                "stream_name": self.stream.name,
                "objects_read": self.objects_read,
                "objects_skipped": self.objects_skipped,
                "lines": self.lines,
            },
        )


class _Reader:
    """Reads one object on a worker thread into a bounded queue of line blocks."""

    def __init__(self, owner: StorageRun, planned: Planned) -> None:
        self.owner = owner
        self.planned = planned
        self.queue: queue.Queue[LineBlock | _Done | BaseException] = queue.Queue(QUEUE_BLOCKS)
        self.found = False

    def work(self) -> None:
        try:
            self.found = self.owner.read_object(self.planned, self._put)
            self._put(_DONE)
        except _CancelledError:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            try:
                self._put(exc)
            except _CancelledError:
                return

    def _put(self, item: LineBlock | _Done | BaseException) -> None:
        while True:
            if self.owner.cancelled.is_set():
                raise _CancelledError
            try:
                self.queue.put(item, timeout=0.1)
            except queue.Full:
                continue
            return

    def blocks(self) -> t.Generator[LineBlock, None, bool]:
        """The object's blocks as they arrive; returns whether the object was there."""
        while True:
            item = self.queue.get()
            if isinstance(item, _Done):
                return self.found
            if isinstance(item, BaseException):
                raise item
            self.owner.lines += len(item.lines)
            yield item


def _day_hours(day: datetime, first: datetime, end: datetime) -> Iterator[datetime]:
    """The hours of ``day`` inside ``[first, end)``."""
    hour = max(day, first)
    stop = min(day + DAY, end)
    while hour < stop:
        yield hour
        hour += HOUR
