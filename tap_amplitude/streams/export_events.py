"""``export_events``: raw events from the Export API, one hour window at a time."""

from __future__ import annotations

import contextlib
import gzip
import time
import typing as t
import uuid
import zipfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from singer_sdk.exceptions import RetriableAPIError

from tap_amplitude.client import MAX_TRIES, AmplitudeError, AmplitudeStream, error_summary
from tap_amplitude.export import (
    CorruptExportError,
    Window,
    iter_line_batches,
    member_hour,
    plan_windows,
    spool_body,
)
from tap_amplitude.fastpath import BulkRecordWriter, RecordShaper, parse_line
from tap_amplitude.schemas import EVENT_PROPERTIES
from tap_amplitude.timestamps import floor_hour, format_datetime, normalize_event, parse_datetime

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    import requests
    from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
    from singer_sdk.helpers.types import Context, Record

NO_DATA_TEXT = "raw data files were not found"
WRITE_BLOCK_ROWS = 1000
S3_HINT = (
    "Amplitude cannot export that much data for a single hour through the Export API; "
    "use Amplitude's Amazon S3 export for volumes this large."
)


class WindowTooLargeError(Exception):
    """Amplitude answered 400 (over 4 GB) or 504 for a multi-hour window: split it."""


@dataclass(frozen=True)
class Checkpoint:
    """Every upload hour before ``until`` has been read."""

    until: datetime


ExportItem = list[bytes] | Checkpoint  # a batch of JSON lines, or a checkpoint


class ExportEventsStream(AmplitudeStream):
    """Every event Amplitude stored, selected by upload hour (``server_upload_time``).

    Windows are checkpointed as they complete, and RECORD output also at each new upload hour,
    so an interrupted run resumes at the hour in flight. Rows are read in upload-hour order.
    """

    name = "export_events"
    path = "/api/2/export"
    primary_keys = ("uuid",)
    replication_key = "server_upload_time"
    is_sorted = True
    check_sorted = False  # sorted by hour, not within the hour; resume floors to the hour
    schema = EVENT_PROPERTIES.to_dict()

    # -- planning ---------------------------------------------------------------------------

    def export_start(self, context: Context | None) -> datetime:
        """The later of the bookmark and ``start_date``, floored to the hour."""
        start = parse_datetime(self.config["start_date"])
        bookmark = self.get_context_state(context).get("replication_key_value")
        if bookmark:
            start = max(start, parse_datetime(bookmark))
        return floor_hour(start)

    def planned_windows(self, context: Context | None) -> list[Window]:
        """Windows from the bookmark (or ``start_date``) to the newest exportable hour."""
        return plan_windows(
            self.export_start(context),
            export_end(self.config),
            int(self.config.get("export_window_hours", 24)),
        )

    # -- reading ----------------------------------------------------------------------------

    def export_items(self, context: Context | None, *, hourly: bool) -> Iterator[ExportItem]:
        """JSON lines and checkpoints, window after window; the next window downloads meanwhile.

        Windows Amplitude finds too large are split in halves and retried in place.
        """
        windows = deque(self.planned_windows(context))
        progress = ExportProgress(self, list(windows))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-prefetch") as pool:
            prefetched: dict[Window, Future[t.IO[bytes] | None]] = {}
            try:
                while windows:
                    window = windows.popleft()
                    pending = prefetched.pop(window, None)
                    if pending is None:
                        pending = pool.submit(self.download, window, context)
                    try:
                        spool = pending.result()
                    except WindowTooLargeError as exc:
                        windows.extendleft(reversed(window.halves()))
                        self.logger.info(
                            "%s: %s for %s; splitting it in halves",
                            self.name,
                            exc,
                            window.label(),
                        )
                        continue
                    if windows and windows[0] not in prefetched:
                        prefetched[windows[0]] = pool.submit(self.download, windows[0], context)
                    yield from self.window_items(window, spool, context, progress, hourly=hourly)
                    progress.window_done(window)
                    yield Checkpoint(window.end)
            finally:
                for leftover in prefetched.values():
                    if not leftover.cancel() and leftover.exception() is None:
                        spool = leftover.result()
                        if spool is not None:
                            spool.close()

    def window_items(
        self,
        window: Window,
        spool: t.IO[bytes] | None,
        context: Context | None,
        progress: ExportProgress,
        *,
        hourly: bool,
    ) -> Iterator[ExportItem]:
        """One window's lines; a corrupt member fetches the window again, skipping lines sent."""
        emitted = 0
        for attempt in range(1, MAX_TRIES + 1):
            if spool is None:
                return
            progress.downloaded(spool)
            seen = 0
            current_hour: datetime | None = None
            try:
                with spool:
                    for name, batch in iter_line_batches(spool):
                        hour = member_hour(name)
                        if (
                            hourly
                            and seen >= emitted
                            and hour is not None
                            and current_hour is not None
                            and hour > current_hour
                        ):
                            yield Checkpoint(hour)
                        current_hour = hour if hour is not None else current_hour
                        fresh = batch[emitted - seen :] if seen < emitted else batch
                        seen += len(batch)
                        if fresh:
                            emitted = seen
                            progress.events += len(fresh)
                            yield fresh
            except CorruptExportError as exc:
                if attempt == MAX_TRIES:
                    msg = (
                        f"{self.name}: the export for {window.label()} is corrupt after "
                        f"{attempt} downloads ({exc}); nothing after it was read. Re-run "
                        "later; if it persists, report the window to Amplitude support."
                    )
                    raise AmplitudeError(msg) from exc
                self.logger.warning(
                    "%s: corrupt archive member for %s (%s); downloading the window again",
                    self.name,
                    window.label(),
                    exc,
                )
                spool = self.download(window, context)
                continue
            return

    def get_records(self, context: Context | None) -> Iterator[Record]:
        """The SDK's record path (dry runs, tests): parsed rows, with checkpoints applied."""
        for item in self.export_items(context, hourly=False):
            if isinstance(item, Checkpoint):
                self.checkpoint(context, item.until)
            else:
                yield from map(parse_line, item)

    def _sync_records(
        self,
        context: Context | None = None,
        *,
        write_messages: bool = True,
    ) -> t.Generator[dict[str, t.Any], t.Any, t.Any]:
        """RECORD output through the fast path (see :mod:`tap_amplitude.fastpath`).

        Dry runs with a record cap and internal record consumers keep the SDK's own path.
        """
        if not write_messages or self.ABORT_AT_RECORD_COUNT is not None:
            yield from super()._sync_records(context, write_messages=write_messages)
            return
        shaper = RecordShaper(self)
        writer = BulkRecordWriter()
        time_extracted = format_datetime(datetime.now(tz=timezone.utc))
        counter = self.get_record_counter()
        with counter, self.get_sync_timer():
            for item in self.export_items(context, hourly=True):
                if isinstance(item, Checkpoint):
                    writer.flush()
                    self.checkpoint(context, item.until)
                    continue
                writer.extend(shaper.record_messages(item, time_extracted))
                counter.increment(len(item))
            writer.flush()
        self.checkpoint(context, None)

    def get_batches(
        self,
        batch_config: BatchConfig,
        context: Context | None = None,
    ) -> Iterable[tuple[BaseBatchFileEncoding, list[str]]]:
        """BATCH files written straight from the export, one or more per window.

        Unlike the SDK's default, deselected properties and a single stream map (filters,
        added properties, flattening) are applied here too, so files match the SCHEMA message.
        """
        shaper = RecordShaper(self)
        if len(shaper.maps) != 1:
            yield from super().get_batches(batch_config, context)
            return
        files = BatchFiles(self, batch_config)
        counter = self.get_record_counter()
        try:
            with counter, self.get_sync_timer():
                for item in self.export_items(context, hourly=False):
                    if isinstance(item, Checkpoint):
                        self.checkpoint(context, item.until, emit=False)
                        if closed := files.close():
                            yield batch_config.encoding, closed
                        else:
                            self.checkpoint(context, item.until)
                        continue
                    for full in files.add(shaper.batch_rows(item)):
                        yield batch_config.encoding, full
                    counter.increment(len(item))
        finally:
            files.shutdown()

    # -- HTTP -------------------------------------------------------------------------------

    def download(self, window: Window, context: Context | None) -> t.IO[bytes] | None:
        """Fetch one window to a temporary file, with retries; None when it has no data."""
        prepared = self.build_prepared_request(
            method="GET",
            url=self.get_url(context),
            params=window.params(),
            headers=self.http_headers,
        )
        # The SDK's retry decorator is generic over what the wrapped call returns.
        fetch: Callable[[requests.PreparedRequest, Window], t.IO[bytes] | None]
        fetch = self.request_decorator(self._fetch)  # type: ignore[arg-type, assignment]
        try:
            return fetch(prepared, window)
        except RetriableAPIError as exc:
            if exc.response is not None and exc.response.status_code == 504:  # noqa: PLR2004
                msg = f"{self.name}: Amplitude timed out (HTTP 504) exporting {window.label()}. "
                raise AmplitudeError(msg + S3_HINT) from exc
            raise

    def _fetch(self, prepared: requests.PreparedRequest, window: Window) -> t.IO[bytes] | None:
        """One attempt: send, classify the status, spool the body (all inside the retry)."""
        with self.requests_session.send(
            prepared,
            stream=True,
            timeout=self.timeout,
            allow_redirects=self.allow_redirects,
        ) as response:
            status = response.status_code
            if status == 404:  # noqa: PLR2004
                if NO_DATA_TEXT in response.text.lower():
                    self.logger.debug("%s: no data for %s", self.name, window.label())
                    return None
                msg = (
                    f"{self.name}: HTTP 404 without Amplitude's no-data message for "
                    f"{window.label()}; check api_url ({self.url_base}) points at Amplitude."
                )
                raise AmplitudeError(msg)
            if status in {400, 504} and window.hours > 1:
                msg = f"HTTP {status} ({error_summary(response)})"
                raise WindowTooLargeError(msg)
            if status == 400:  # noqa: PLR2004
                msg = (
                    f"{self.name}: Amplitude refused the single hour {window.label()} "
                    f"(HTTP 400: {error_summary(response)}). {S3_HINT}"
                )
                raise AmplitudeError(msg)
            self.validate_response(response)
            try:
                return spool_body(response)
            except zipfile.BadZipFile as exc:
                msg = f"{self.name}: the body for {window.label()} is not a complete zip ({exc})"
                raise RetriableAPIError(msg, response) from exc

    # -- records and state ------------------------------------------------------------------

    def post_process(self, row: Record, context: Context | None = None) -> Record | None:  # noqa: ARG002
        """Render Amplitude's zone-less timestamps as RFC 3339 UTC."""
        return normalize_event(row)

    def checkpoint(
        self,
        context: Context | None,
        completed_until: datetime | None,
        *,
        emit: bool = True,
    ) -> None:
        """Record that every hour before ``completed_until`` is exported; emit STATE."""
        if completed_until is not None:
            state = self.get_context_state(context)
            state["replication_key"] = self.replication_key
            state["replication_key_value"] = format_datetime(completed_until)
            self.state_manager.is_flushed = False
        if emit:
            self._write_state_message()


class BatchFiles:
    """Gzipped JSON-lines batch files in the configured storage, ``batch_size`` rows each.

    Rows are compressed in blocks as they arrive, on a second thread (zlib releases the GIL,
    so compression runs beside parsing); one block in flight keeps memory flat.
    """

    def __init__(self, stream: ExportEventsStream, batch_config: BatchConfig) -> None:
        """Name files like the SDK's batcher does: ``<tap>--<stream>-<id>-<n>.json.gz``."""
        self.storage = batch_config.storage
        self.limit = batch_config.batch_size
        self.sync_id = f"{stream.tap_name}--{stream.name}-{uuid.uuid4()}"
        self.sequence = 0
        self.rows = 0
        self.block: list[bytes] = []
        self.filename = ""
        self.open_file: contextlib.ExitStack | None = None
        self.compressed: gzip.GzipFile | None = None
        self.compressor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-gzip")
        self.in_flight: Future[int] | None = None

    def add(self, rows: list[bytes]) -> Iterator[list[str]]:
        """Queue encoded rows; yields a manifest each time a file reaches ``batch_size``."""
        while rows:
            room = self.limit - self.rows
            self.block += rows[:room]
            self.rows += min(room, len(rows))
            rows = rows[room:]
            if len(self.block) >= WRITE_BLOCK_ROWS:
                self._write_block()
            if self.rows >= self.limit:
                yield self.close()

    def _write_block(self) -> None:
        if self.compressed is None:
            self.sequence += 1
            self.filename = f"{self.storage.prefix or ''}{self.sync_id}-{self.sequence}.json.gz"
            self.open_file = contextlib.ExitStack()
            raw = self.open_file.enter_context(self.storage.open(self.filename, "wb"))
            self.compressed = self.open_file.enter_context(
                gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1),
            )
        self._wait()
        self.in_flight = self.compressor.submit(self.compressed.write, b"".join(self.block))
        self.block.clear()

    def _wait(self) -> None:
        """Let the previous block finish (and surface its error, if any)."""
        if self.in_flight is not None:
            self.in_flight.result()
            self.in_flight = None

    def close(self) -> list[str]:
        """Finish the current file; its URL as a manifest (empty if no rows were queued)."""
        if self.block:
            self._write_block()
        self._wait()
        if self.open_file is None:
            return []
        self.open_file.close()
        self.open_file = self.compressed = None
        self.rows = 0
        return [self.storage.get_url(self.filename)]

    def shutdown(self) -> None:
        """Stop the compression thread; a file left open by a failed run is abandoned."""
        self.compressor.shutdown(wait=True)


def export_end(config: t.Mapping[str, t.Any], now: datetime | None = None) -> datetime:
    """Exclusive upper bound: ``end_date`` capped at now − ``export_lag_hours``, floored."""
    now = now or datetime.now(tz=timezone.utc)
    end = now - timedelta(hours=int(config.get("export_lag_hours", 2)))
    if config.get("end_date"):
        end = min(end, parse_datetime(config["end_date"]))
    return floor_hour(end)


class ExportProgress:
    """Progress lines for people watching a long backfill: a plan, then one line per window."""

    def __init__(self, stream: ExportEventsStream, windows: list[Window]) -> None:
        """Announce the plan and start the clock."""
        self.stream = stream
        self.hours_planned = sum(window.hours for window in windows)
        self.hours_done = 0
        self.events = 0
        self.bytes = 0
        self.started = time.monotonic()
        if windows:
            stream.logger.info(
                "%s: exporting %d hours (%s) in %d windows",
                stream.name,
                self.hours_planned,
                Window(windows[0].start, windows[-1].end).label(),
                len(windows),
                extra={"stream_name": stream.name, "hours_planned": self.hours_planned},
            )
        else:
            stream.logger.info("%s: up to date, no complete hour to export yet", stream.name)

    def downloaded(self, spool: t.IO[bytes]) -> None:
        """Count a spooled archive's size."""
        self.bytes += spool.seek(0, 2)
        spool.seek(0)

    def window_done(self, window: Window) -> None:
        """Log hours done of hours planned, events, bytes, rate and ETA."""
        self.hours_done += window.hours
        elapsed = max(time.monotonic() - self.started, 1e-9)
        remaining = self.hours_planned - self.hours_done
        eta = elapsed / self.hours_done * remaining if self.hours_done else 0.0
        rate = self.events / elapsed
        self.stream.logger.info(
            "%s progress: %d/%d hours, %d events, %.1f MB downloaded, %.0f events/s, ETA %s",
            self.stream.name,
            self.hours_done,
            self.hours_planned,
            self.events,
            self.bytes / 1e6,
            rate,
            _duration(eta),
            extra={
                "stream_name": self.stream.name,
                "window": window.label(),
                "hours_done": self.hours_done,
                "hours_planned": self.hours_planned,
                "events": self.events,
                "bytes": self.bytes,
                "events_per_second": round(rate, 1),
                "elapsed_seconds": round(elapsed, 1),
                "eta_seconds": round(eta, 1),
            },
        )


def _duration(seconds: float) -> str:
    """``42s``, ``7m05s`` or ``3h12m``."""
    whole = round(seconds)
    if whole < 60:  # noqa: PLR2004
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:  # noqa: PLR2004
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
