"""Amplitude's cloud-storage export (S3, GCS, a local folder) in one place.

``layout`` parses keys, ``source`` lists and opens objects through fsspec (imported lazily),
``state`` keeps what was read compactly, ``run`` reads new and rewritten objects in order and
yields the same :class:`~tap_amplitude.export.LineBlock` / :class:`~tap_amplitude.export.Checkpoint`
items as the Export API's run, so streams only choose their source.
"""

from __future__ import annotations

import typing as t
from datetime import datetime, timezone

from tap_amplitude.client import AmplitudeError
from tap_amplitude.storage.layout import HOUR, Kind
from tap_amplitude.storage.run import StorageRun
from tap_amplitude.storage.source import Bucket
from tap_amplitude.storage.state import ReadState
from tap_amplitude.timestamps import floor_hour, parse_datetime

if t.TYPE_CHECKING:
    from collections.abc import MutableMapping

    from singer_sdk.streams import Stream

__all__ = ["Kind", "StorageRun", "storage_end", "storage_run"]


def storage_end(config: t.Mapping[str, t.Any], now: datetime | None = None) -> datetime:
    """Exclusive upper bound: ``end_date``, or the end of the current hour."""
    end = floor_hour(now or datetime.now(tz=timezone.utc)) + HOUR
    if config.get("end_date"):
        end = min(end, floor_hour(parse_datetime(config["end_date"])))
    return end


def storage_run(stream: Stream, state: MutableMapping[str, t.Any], kind: Kind) -> StorageRun:
    """The run for one stream from its config and state (the bucket is not listed yet).

    Raises:
        AmplitudeError: the state's ``storage`` value is damaged, or fsspec is missing.
    """
    config = stream.config
    start = floor_hour(parse_datetime(config["start_date"]))
    try:
        read_state = ReadState(state, start)
    except (ValueError, TypeError, AttributeError) as exc:
        msg = (
            f"{stream.name}: the state's bookmark cannot be used ({exc}); fix or remove "
            f"bookmarks.{stream.name} in the state (README: 'Reading the S3 / GCS export')."
        )
        raise AmplitudeError(msg) from exc
    project_id = config.get("project_id")
    return StorageRun(
        stream,
        Bucket(config["storage_export_url"], config.get("storage_options")),
        read_state,
        kind=kind,
        end=storage_end(config),
        app=None if project_id is None else str(project_id),
        concurrency=int(config.get("export_concurrency", 3)),
    )
