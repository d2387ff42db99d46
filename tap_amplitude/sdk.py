"""The one place the tap uses singer-sdk's private API; everything else uses public hooks.

Each private name below is listed in :data:`PRIVATE_API` with the reason it is needed, and
``tests/test_sdk_adapter.py`` fails when the pinned SDK renames one or changes its signature,
so an SDK upgrade shows at once what to revisit.
"""

from __future__ import annotations

import typing as t

from singer_sdk import Tap
from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig, StorageTarget
from singer_sdk.streams import Stream
from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Generator
    from types import FrameType

    from singer_sdk.helpers.types import Context

__all__ = [
    "PRIVATE_API",
    "BaseBatchFileEncoding",
    "BatchConfig",
    "BulkRecordStream",
    "HookedTap",
    "StorageTarget",
    "tap_of",
    "write_state",
]

PRIVATE_API: dict[str, str] = {
    "singer_sdk.streams.core.Stream._sync_records": (
        "the per-record loop; export_events replaces it to write RECORD messages in blocks"
    ),
    "singer_sdk.streams.core.Stream._write_state_message": (
        "emits STATE; export_events checkpoints at hour boundaries inside a window, "
        "cohort_members after each cohort"
    ),
    "singer_sdk.streams.core.Stream._tap": "the tap object, which holds the one pooled session",
    "singer_sdk.plugin_base.PluginBase._validate_config": (
        "config validation; overridden so errors name settings without echoing values"
    ),
    "singer_sdk.plugin_base.PluginBase._config": (
        "the config being validated; settings are typed in place before the schema check"
    ),
    "singer_sdk.tap_base.Tap._handle_termination": (
        "the signal handler; the SDK's writes STATE mid-message and exits 0"
    ),
    "singer_sdk.helpers._batch.BatchConfig": "type of get_batches' batch_config argument",
    "singer_sdk.helpers._batch.BaseBatchFileEncoding": "type of get_batches' encodings",
    "singer_sdk.helpers._batch.StorageTarget": (
        "type of batch_config.storage, which the BATCH storage check writes to"
    ),
}


def tap_of(stream: Stream) -> Tap:
    """The tap a stream belongs to."""
    return stream._tap  # noqa: SLF001


def write_state(stream: Stream) -> None:
    """Emit the stream's current STATE now, mid-sync."""
    stream._write_state_message()  # noqa: SLF001


class BulkRecordStream(Stream):
    """A stream that writes its own RECORD and STATE messages when it runs for real.

    Dry runs with a record cap (``--test``, the SDK's test suite) and internal consumers of
    records (``write_messages=False``) keep the SDK's per-record path.
    """

    def write_records(self, context: Context | None) -> None:
        """Write every RECORD and STATE message of one sync."""
        raise NotImplementedError

    def write_state_message(self) -> None:
        """Emit the stream's current STATE."""
        self._write_state_message()

    @override
    def _sync_records(
        self,
        context: Context | None = None,
        *,
        write_messages: bool = True,
    ) -> Generator[dict[str, t.Any], t.Any, t.Any]:
        if not write_messages or self.ABORT_AT_RECORD_COUNT is not None:
            yield from super()._sync_records(context, write_messages=write_messages)
            return
        self.write_records(context)


class HookedTap(Tap):
    """A Tap whose config validation and signal handling are public hooks."""

    def validate_settings(self, config: dict[str, t.Any], *, raise_errors: bool) -> list[str]:
        """Type ``config`` in place and return its problems (raising if asked to)."""
        raise NotImplementedError

    def on_termination(self, signum: int, frame: FrameType | None) -> None:
        """Handle SIGINT or SIGTERM."""
        raise NotImplementedError

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        return self.validate_settings(self._config, raise_errors=raise_errors)

    @override
    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        self.on_termination(signum, frame)
