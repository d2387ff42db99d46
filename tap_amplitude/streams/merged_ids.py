"""``merged_ids``: Amplitude ID merges from the cloud-storage export.

Facts: docs/amplitude-api.md §15.3, §15.4 (records) and §16 (layout).

Amplitude writes them only to S3 / GCS (no REST endpoint has them), one gzipped JSON-lines
file per upload hour under ``-{org_id}/`` (legacy organisations: the app folder, without
``#n``). The stream reads them exactly as ``export_events`` reads the bucket's events (same
listing, state, checkpoints and output path); without ``storage_export_url`` it emits nothing
and says why once.
"""

from __future__ import annotations

import typing as t
from datetime import datetime, timezone

from singer_sdk import typing as th
from typing_extensions import override

from tap_amplitude.client import AmplitudeError
from tap_amplitude.output import RowReader, row_line_index
from tap_amplitude.storage import Kind, storage_run
from tap_amplitude.streams.export_events import ExportEventsStream
from tap_amplitude.timestamps import format_datetime, normalize

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk.helpers.types import Context, Record

    from tap_amplitude.export import ExportRun, LineBlock
    from tap_amplitude.output import Row
    from tap_amplitude.sdk import BaseBatchFileEncoding, BatchConfig
    from tap_amplitude.storage import StorageRun

NO_STORAGE = (
    "merged_ids: emits nothing: Amplitude delivers merged Amplitude IDs only through its "
    "S3 / GCS export; set storage_export_url to the bucket it writes to (README: 'Reading the "
    "S3 / GCS export')."
)
_EPOCH_SECONDS_BELOW = 10**11  # 10**11 s is the year 5138; 10**11 ms is 1973
TIME_FIELDS = ("merge_time", "merge_server_time")

MERGED_ID_PROPERTIES = th.PropertiesList(
    th.Property(
        "amplitude_id",
        th.IntegerType,
        required=True,
        description="The Amplitude ID merged into another (absorbed).",
    ),
    th.Property(
        "merged_amplitude_id",
        th.IntegerType,
        required=True,
        description="The Amplitude ID it was merged into (the user's original ID).",
    ),
    th.Property(
        "scope",
        th.IntegerType,
        required=True,
        description="The export's scope: the negative organisation id, or the app id (legacy).",
    ),
    th.Property(
        "merge_time", th.DateTimeType, description="When the merging event happened (UTC)."
    ),
    th.Property(
        "merge_server_time",
        th.DateTimeType,
        description="When Amplitude's servers received the merging event (UTC).",
    ),
    th.Property(
        "app",
        th.IntegerType,
        description="Amplitude project id: project_id, or the app folder of a legacy file.",
    ),
)


def merge_timestamp(value: t.Any) -> t.Any:
    """Epoch milliseconds or seconds (both seen documented as "long"), or text, as RFC 3339."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        seconds = value if abs(value) < _EPOCH_SECONDS_BELOW else value / 1000
        try:
            return format_datetime(datetime.fromtimestamp(seconds, tz=timezone.utc))
        except (OverflowError, OSError, ValueError):
            return value  # kept as it came; MergedIdReader stops the run naming the line
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return merge_timestamp(int(value))
    return normalize(value) if isinstance(value, str) else value


class MergedIdReader(RowReader):
    """Merged-id lines to rows: RFC 3339 times, and ``app`` from project_id or the folder."""

    @override
    def rows(self, block: LineBlock) -> list[Row]:
        rows = super().rows(block)
        project_id = self.stream.config.get("project_id")
        folder = block.member.split("/", 1)[0]
        app = project_id if project_id is not None else (int(folder) if folder.isdigit() else None)
        for number, row in enumerate(rows):
            for field in TIME_FIELDS:
                if field in row:
                    row[field] = merge_timestamp(row[field])
                    if row[field] is not None and not isinstance(row[field], str):
                        what = (
                            f"its {field} is not epoch seconds or milliseconds of a real date, "
                            "nor a date-time string"
                        )
                        self._stop(block, row_line_index(block, number), what)
            row.setdefault("app", app)
        return rows


class MergedIdsStream(ExportEventsStream):
    """Every Amplitude ID merge Amplitude exported, by upload hour (incremental, like events)."""

    name = "merged_ids"
    # the base's one-key tuple is inferred as tuple[str]; the SDK takes any sequence
    primary_keys = ("scope", "amplitude_id", "merged_amplitude_id")  # type: ignore[assignment]
    replication_key = "merge_server_time"
    schema = MERGED_ID_PROPERTIES.to_dict()

    def has_source(self) -> bool:
        """Whether the bucket is configured; if not, say so once (INFO)."""
        if self.config.get("storage_export_url"):
            return True
        self.logger.info(NO_STORAGE)
        return False

    @override
    def export_run(self, context: Context | None) -> ExportRun | StorageRun:
        if not self.config.get("storage_export_url"):
            raise AmplitudeError(NO_STORAGE)
        return storage_run(self, self.get_context_state(context), Kind.MERGED_IDS)

    @override
    def row_reader(self) -> RowReader:
        return MergedIdReader(self)

    @override
    def get_records(self, context: Context | None) -> Iterator[Record]:
        if self.has_source():
            yield from super().get_records(context)

    @override
    def write_records(self, context: Context | None) -> None:
        if self.has_source():
            super().write_records(context)

    @override
    def get_batches(
        self,
        batch_config: BatchConfig,
        context: Context | None = None,
    ) -> Iterable[tuple[BaseBatchFileEncoding, list[str]]]:
        if self.has_source():
            yield from super().get_batches(batch_config, context)
