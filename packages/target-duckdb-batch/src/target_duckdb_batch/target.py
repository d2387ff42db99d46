"""A Singer target that loads RECORD and BATCH messages into DuckDB with ``read_json``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import duckdb
from singer_sdk import typing as th
from singer_sdk.helpers.capabilities import PluginCapabilities, TargetCapabilities
from singer_sdk.target_base import Target

from target_duckdb_batch.sink import DuckDBSink

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if TYPE_CHECKING:
    from singer_sdk.helpers.capabilities import CapabilitiesEnum


DEFAULT_LOCK_TIMEOUT_SECONDS = 600.0
LOCK_POLL_SECONDS = 0.5


class DatabaseLockedError(Exception):
    """Another process kept the database file locked for longer than the target waits."""


class TargetDuckDBBatch(Target):
    """Load Singer streams into one DuckDB database file, one table per stream.

    Table columns are typed from each stream's SCHEMA message and keyed by its key properties;
    rows with a key already in the table replace it, so loading a range twice adds nothing.
    BATCH files (JSON lines, gzipped or not) go straight to DuckDB's ``read_json``: no row
    passes through Python. Every load is one transaction, committed before the target emits
    the STATE that follows it.
    """

    name = "target-duckdb-batch"
    default_sink_class = DuckDBSink
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.BATCH,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
        TargetCapabilities.VALIDATE_RECORDS,
    ]
    config_jsonschema = th.PropertiesList(
        th.Property(
            "database",
            th.StringType,
            required=True,
            title="Database file",
            description="The DuckDB database file (created if missing).",
        ),
        th.Property(
            "default_target_schema",
            th.StringType,
            default="main",
            title="Schema",
            description="Schema the stream tables are created in (created if missing).",
        ),
        th.Property(
            "lock_timeout_seconds",
            th.NumberType,
            default=DEFAULT_LOCK_TIMEOUT_SECONDS,
            title="Lock wait",
            description=(
                "How long to wait for another process (another pipeline run, a notebook) "
                "to release the database file before failing: DuckDB has one writer at a time."
            ),
        ),
        th.Property(
            "memory_limit",
            th.StringType,
            title="Memory limit",
            description="DuckDB's memory_limit, e.g. '1GB' (default: DuckDB's, 80% of RAM).",
        ),
    ).to_dict()

    def __init__(self, **kwargs: Any) -> None:
        """Start without a connection: the database opens on the first stream."""
        super().__init__(**kwargs)
        self._connection: duckdb.DuckDBPyConnection | None = None
        # Including the sink of an older schema, which the SDK no longer lists as active.
        self.sinks_with_pending_files: set[DuckDBSink] = set()
        # DuckDB parallelises each load itself; sinks share one connection: one at a time.
        self.max_parallelism = 1

    @override
    @classmethod
    def invoke(cls, **kwargs: Any) -> None:
        """The SDK's run; any failure is one ERROR line and exit 1, not a traceback.

        Loads commit before the STATE that follows them, so a failed run resumes from the
        last STATE it emitted.
        """
        try:
            super().invoke(**kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure ends in one line
            text = " ".join(str(exc).split())[:500]
            cls.logger.error(  # noqa: TRY400 - the line is the whole story
                "%s: %s (%s). Nothing after the last STATE it emitted was loaded; run the "
                "pipeline again to resume.",
                cls.name,
                text,
                type(exc).__name__,
            )
            sys.exit(1)

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The database connection (opened on first use, in UTC)."""
        if self._connection is None:
            database = Path(self.config["database"]).expanduser()
            database.parent.mkdir(parents=True, exist_ok=True)
            connection = self._connect(database)
            # Zone-less date-times are UTC (TimeZone is the built-in ICU extension's setting).
            connection.execute("SET TimeZone = 'UTC'")
            if limit := self.config.get("memory_limit"):
                connection.execute("SET memory_limit = ?", [limit])
            self._connection = connection
        return self._connection

    def _connect(self, database: Path) -> duckdb.DuckDBPyConnection:
        """Open the database, waiting while another process holds its lock."""
        timeout = float(self.config.get("lock_timeout_seconds", DEFAULT_LOCK_TIMEOUT_SECONDS))
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            try:
                return duckdb.connect(str(database))
            except duckdb.IOException as exc:  # noqa: PERF203 - a wait, not a hot loop
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    msg = (
                        f"{database} is still locked by another process after {timeout:g} s "
                        "(DuckDB allows one writer at a time); let the other run finish, or "
                        "raise lock_timeout_seconds"
                    )
                    raise DatabaseLockedError(msg) from exc
                if not announced:
                    announced = True
                    self.logger.info(
                        "Waiting up to %g s for %s: another process holds its lock",
                        timeout,
                        database,
                    )
                time.sleep(LOCK_POLL_SECONDS)

    def load_pending_files(self) -> None:
        """Load every sink's pending files: before DDL, which must not overtake them."""
        for sink in list(self.sinks_with_pending_files):
            sink.load_pending_files()

    @override
    def process_endofpipe(self) -> None:
        """Drain every sink (the SDK then emits the last STATE), then close the database."""
        super().process_endofpipe()
        if self._connection is not None:
            self._connection.close()
            self._connection = None
