"""One DuckDB table per stream: typed from the SCHEMA message, loaded with ``read_json``."""
# ruff: noqa: S608 - SQL text carries only quoted identifiers from the SCHEMA message and settings

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import duckdb
from singer_sdk.helpers._batch import BatchFileFormat, StorageTarget  # the SDK's own sinks use them
from singer_sdk.sinks import BatchSink

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if TYPE_CHECKING:
    from collections.abc import Sequence

    from singer_sdk.helpers._batch import BaseBatchFileEncoding
    from singer_sdk.target_base import Target

    from target_duckdb_batch.target import TargetDuckDBBatch

# BATCH files wait until the SDK drains the sink (before it emits STATE, at the end of the input
# and every few minutes) or until this many are pending: one load reads them all in parallel.
MAX_PENDING_FILES = 64
SCALARS = {"integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}
STRING_FORMATS = {"date-time": "TIMESTAMPTZ", "date": "DATE"}


def column_type(schema: dict[str, Any]) -> str:
    """The DuckDB type of one JSON-schema property.

    Date-times become ``TIMESTAMPTZ`` (values without an offset are read as UTC), nested objects
    and arrays ``JSON``; so do properties that allow several types (``anyOf``, or e.g.
    ``["string", "number"]``), which keeps every value exactly as it was sent.
    """
    declared = schema.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    types.discard("null")
    if len(types) != 1:
        return "JSON"
    (kind,) = types
    if kind == "string":
        return STRING_FORMATS.get(schema.get("format", ""), "VARCHAR")
    return SCALARS.get(kind, "JSON")


def quoted(name: str) -> str:
    """An SQL identifier, double-quoted unless it is a plain lower-case name."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def local_path(url: str) -> Path | None:
    """The local file a ``file://`` URL (or a bare path) names; None for remote storage."""
    parsed = urlparse(url)
    if parsed.scheme in {"", "file"}:
        return Path(unquote(parsed.path))
    return None


def _json_default(value: Any) -> Any:
    """JSON for the Python values the SDK's RECORD parsing produces."""
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    msg = f"cannot encode {type(value).__name__} as JSON"
    raise TypeError(msg)


class DuckDBSink(BatchSink):
    """A stream's table: created from the schema, upserted on its key by ``read_json`` loads."""

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict[str, Any],
        key_properties: Sequence[str] | None,
    ) -> None:
        """Name the table after the stream, in the configured schema."""
        super().__init__(target, stream_name, schema, key_properties)
        self._target: TargetDuckDBBatch = target  # type: ignore[assignment]
        self.schema_name = self.config.get("default_target_schema") or "main"
        self.table = f"{quoted(self.schema_name)}.{quoted(stream_name)}"
        self.pending_files: list[str] = []
        self.compression = "uncompressed"
        self._downloads: tempfile.TemporaryDirectory[str] | None = None

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The target's connection to the database."""
        return self._target.connection

    @property
    def columns(self) -> dict[str, str]:
        """Column name to DuckDB type, in the schema's order."""
        properties: dict[str, dict[str, Any]] = self.schema.get("properties", {})
        return {name: column_type(prop) for name, prop in properties.items()}

    @override
    def setup(self) -> None:
        """Create the schema and the table; add columns a newer schema brought.

        A new table is created without its key: it gets it with its first load, in one index
        build instead of a check per inserted row (about a fifth of a first load of 100,000
        events).
        """
        self._target.load_pending_files()  # the sink of an older schema may hold some
        con = self.connection
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted(self.schema_name)}")
        existing = {
            name
            for (name,) in con.execute(
                "SELECT column_name FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = ? AND table_name = ?",
                [self.schema_name, self.stream_name],
            ).fetchall()
        }
        if not existing:
            definitions = [f"{quoted(name)} {kind}" for name, kind in self.columns.items()]
            con.execute(f"CREATE TABLE {self.table} ({', '.join(definitions)})")
            return
        for name, kind in self.columns.items():
            if name not in existing:
                con.execute(f"ALTER TABLE {self.table} ADD COLUMN {quoted(name)} {kind}")
        if self._lacks_key():  # a run that stopped before its first load
            self._add_primary_key()

    def _lacks_key(self) -> bool:
        """Whether the stream has key properties and its table no primary key yet.

        Asked of the database, not remembered: a newer schema's sink shares the table.
        """
        if not self.key_properties:
            return False
        (count,) = self.connection.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [self.schema_name, self.stream_name],
        ).fetchone() or (0,)
        return not count

    def _add_primary_key(self) -> None:
        keys = ", ".join(quoted(key) for key in self.key_properties)
        self.connection.execute(f"ALTER TABLE {self.table} ADD PRIMARY KEY ({keys})")

    def _first_load(self, paths: list[str], compression: str) -> int | None:
        """Insert into the new, keyless table, then add the key.

        None if the load holds a key twice (or anything else failed), with nothing changed.
        """
        con = self.connection
        con.execute("BEGIN TRANSACTION")
        try:
            count = self._insert("INSERT INTO", paths, compression)
            self._add_primary_key()
            con.execute("COMMIT")  # checks the key: a duplicate fails here
        except duckdb.Error:
            with contextlib.suppress(duckdb.Error):  # a failed COMMIT has rolled back already
                con.execute("ROLLBACK")
            return None
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return count

    def _insert(self, verb: str, paths: list[str], compression: str) -> int:
        """Insert the rows of JSON-lines files, typed as the schema says; how many."""
        columns = self.columns
        names = ", ".join(quoted(name) for name in columns)
        (count,) = self.connection.execute(
            f"{verb} {self.table} ({names}) SELECT {names} FROM read_json($files, "
            "format = 'newline_delimited', columns = $columns, compression = $compression)",
            {"files": paths, "columns": columns, "compression": compression},
        ).fetchone() or (0,)
        return int(count)

    def load_files(self, paths: list[str], *, compression: str) -> int:
        """Upsert the rows of JSON-lines files in one transaction; the number of rows read.

        Rows whose key is already in the table replace it. A key that occurs more than once
        within one load (the same event exported twice) is kept once: DuckDB's
        ``INSERT OR REPLACE`` keeps one of the copies, which one depends on how its threads
        read the files. Making that the newest would need a window over every row of the load.
        """
        if self._lacks_key():
            count = self._first_load(paths, compression)
            if count is not None:
                return count
            self._add_primary_key()  # then load the usual way, which keeps one of the copies
        verb = "INSERT OR REPLACE INTO" if self.key_properties else "INSERT INTO"
        con = self.connection
        con.execute("BEGIN TRANSACTION")
        try:
            count = self._insert(verb, paths, compression)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return count

    @override
    def clean_up(self) -> None:
        """A table that got no rows in this run still gets its key."""
        self._target.load_pending_files()
        if self._lacks_key():
            self._add_primary_key()
        super().clean_up()

    @property
    @override
    def current_size(self) -> int:
        """Records waiting, plus BATCH files waiting (so that a drain loads them)."""
        return super().current_size + len(self.pending_files)

    @override
    def process_batch(self, context: dict[str, Any]) -> None:
        """Load the pending BATCH files, then this batch's RECORD messages (the same way)."""
        self.load_pending_files()
        records: list[dict[str, Any]] = context.get("records", [])
        if not records:
            return
        if self.key_properties:  # the last record of a key wins
            by_key = {tuple(r.get(k) for k in self.key_properties): r for r in records}
            records = list(by_key.values())
        with tempfile.TemporaryDirectory(prefix="target-duckdb-batch-") as tmp:
            path = Path(tmp) / "records.jsonl"
            with path.open("w", encoding="utf-8") as out:
                for record in records:
                    out.write(json.dumps(record, default=_json_default, ensure_ascii=False))
                    out.write("\n")
            self.load_files([str(path)], compression="uncompressed")

    @override
    def process_batch_files(self, encoding: BaseBatchFileEncoding, files: Sequence[str]) -> None:
        """Queue the JSON-lines files of one BATCH message; load once enough are pending.

        Local files (``file://``) are read where they are; files in remote storage (``s3://``,
        ...) are first copied to a temporary directory through the SDK's storage layer.
        Other encodings (Parquet) go through the SDK's default row-by-row path.
        """
        if encoding.format != BatchFileFormat.JSONL:
            super().process_batch_files(encoding, files)
            return
        compression = "gzip" if encoding.compression == "gzip" else "uncompressed"
        if self.pending_files and compression != self.compression:
            self.load_pending_files()
        self.compression = compression
        for url in files:
            path = local_path(url)
            if path is None:
                if self._downloads is None:
                    self._downloads = tempfile.TemporaryDirectory(prefix="target-duckdb-batch-")
                head, tail = StorageTarget.split_url(url)
                path = Path(self._downloads.name) / f"{len(self.pending_files)}-{Path(tail).name}"
                storage = StorageTarget.from_url(head)
                with storage.open(tail, mode="rb") as remote, path.open("wb") as copy:
                    shutil.copyfileobj(remote, copy, 1 << 20)
            self.pending_files.append(str(path))
            self._target.sinks_with_pending_files.add(self)
        if len(self.pending_files) >= MAX_PENDING_FILES:
            self.load_pending_files()

    def load_pending_files(self) -> None:
        """Load every queued BATCH file in one transaction (DuckDB reads them in parallel)."""
        if not self.pending_files:
            return
        files, self.pending_files = self.pending_files, []
        self._target.sinks_with_pending_files.discard(self)
        count = self.load_files(files, compression=self.compression)
        if self._downloads is not None:
            self._downloads.cleanup()
            self._downloads = None
        self.record_counter_metric.increment(count)
        self.logger.info("Loaded %d rows from %d file(s) into %s", count, len(files), self.table)
