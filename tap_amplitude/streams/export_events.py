"""``export_events``: raw events from the Export API, one window of upload hours at a time.

The stream only wires the parts together: :mod:`tap_amplitude.export` walks the Export API
and says when hours are complete, :mod:`tap_amplitude.output` turns lines into RECORD or
BATCH output, and the stream moves the bookmark at each checkpoint.
"""

from __future__ import annotations

import typing as t
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from typing_extensions import override

from tap_amplitude.client import AmplitudeStream
from tap_amplitude.export import Checkpoint, ExportRun, export_end, plan_windows
from tap_amplitude.output import (
    BatchFiles,
    RecordShaper,
    RecordWriter,
    RowReader,
    bulk_parsing,
)
from tap_amplitude.schemas import EVENT_PROPERTIES
from tap_amplitude.sdk import BulkRecordStream
from tap_amplitude.storage import Kind, StorageRun, storage_run
from tap_amplitude.timestamps import floor_hour, format_datetime, parse_datetime

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk.helpers.types import Context, Record

    from tap_amplitude.sdk import BaseBatchFileEncoding, BatchConfig


class ExportEventsStream(BulkRecordStream, AmplitudeStream):
    """Every event Amplitude stored, selected by upload hour (``server_upload_time``).

    Windows are checkpointed as they complete, and RECORD output also at each new upload hour,
    so an interrupted run resumes at the hour in flight. Rows come in upload-hour order.
    """

    name = "export_events"
    path = "/api/2/export"
    primary_keys = ("uuid",)
    replication_key = "server_upload_time"
    is_sorted = True
    check_sorted = False  # sorted by hour, not within the hour; resume floors to the hour
    schema = EVENT_PROPERTIES.to_dict()
    reads_storage_export = True

    def export_run(self, context: Context | None) -> ExportRun | StorageRun:
        """Windows from the later of bookmark and ``start_date`` to the newest exportable hour.

        With ``storage_export_url``, the bucket's objects instead (:mod:`tap_amplitude.storage`).
        """
        if self.config.get("storage_export_url"):
            return storage_run(self, self.get_context_state(context), Kind.EVENTS)
        start = parse_datetime(self.config["start_date"])
        bookmark = self.get_context_state(context).get("replication_key_value")
        if bookmark:
            start = max(start, parse_datetime(bookmark))
        windows = plan_windows(
            floor_hour(start),
            export_end(self.config),
            int(self.config.get("export_window_hours", 24)),
        )
        return ExportRun(self, windows, concurrency=int(self.config.get("export_concurrency", 3)))

    def row_reader(self) -> RowReader:
        """Lines to rows (a stream reading other rows than events replaces it)."""
        return RowReader(self)

    @override
    def get_records(self, context: Context | None) -> Iterator[Record]:
        """The SDK's per-record path (dry runs, tests): rows, with checkpoints applied."""
        reader = self.row_reader()
        for item in self.export_run(context).items(hourly=False):
            if isinstance(item, Checkpoint):
                self.checkpoint(context, item.until)
            else:
                yield from reader.rows(item)

    @override
    def write_records(self, context: Context | None) -> None:
        """RECORD messages in blocks (:mod:`tap_amplitude.output`), STATE at each checkpoint."""
        reader = self.row_reader()
        shaper = RecordShaper(self)
        writer = RecordWriter()
        time_extracted = format_datetime(datetime.now(tz=timezone.utc))
        counter = self.get_record_counter()
        with counter, self.get_sync_timer(), bulk_parsing():
            for item in self.export_run(context).items(hourly=True):
                if isinstance(item, Checkpoint):
                    writer.flush()
                    self.checkpoint(context, item.until)
                    continue
                rows = reader.rows(item)
                writer.extend(shaper.record_messages(rows, time_extracted))
                counter.increment(len(rows))
            writer.flush()
        self.checkpoint(context, None)

    @override
    def get_batches(
        self,
        batch_config: BatchConfig,
        context: Context | None = None,
    ) -> Iterable[tuple[BaseBatchFileEncoding, list[str]]]:
        """BATCH files written straight from the export, one or more per window.

        Unlike the SDK's default, deselected properties and a single stream map (filters,
        added properties, flattening) are applied here too, so files match the SCHEMA message.
        JSON lines (gzipped or plain) are written here; parquet is the SDK's.
        """
        shaper = RecordShaper(self)
        encoding = batch_config.encoding
        if len(shaper.maps) != 1 or encoding.format != "jsonl":
            yield from super().get_batches(batch_config, context)  # parquet
            return
        reader = self.row_reader()
        counter = self.get_record_counter()
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-gzip") as compressor,
            counter,
            self.get_sync_timer(),
            bulk_parsing(),
        ):
            files = BatchFiles(self, batch_config, compressor)
            for item in self.export_run(context).items(hourly=False):
                if isinstance(item, Checkpoint):
                    self.checkpoint(context, item.until, emit=False)
                    if closed := files.close():
                        yield batch_config.encoding, closed
                    else:
                        self.checkpoint(context, item.until)
                    continue
                rows = reader.rows(item)
                for full in files.add(shaper.batch_records(rows)):
                    yield batch_config.encoding, full
                counter.increment(len(rows))

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
            self.write_state_message()
