"""Export rows to Singer output: exact parsing, one timestamp shape, the catalog, the writers.

The SDK's per-record pipeline (deselection walk, type conformance, one message object and one
flush per record) costs several times the unzip-and-parse floor. Export rows need less: JSON
types come from Amplitude and timestamps are normalized here, so this module keeps only what
can change a row (columns the schema lacks, deselection, stream maps and flattening) and writes
messages in blocks. What it cannot pass through exactly it names: a column the schema lacks
and a non-finite number are warned about once per run; a line that is not a JSON object, not
UTF-8, or has a timestamp of another type stops the run with its member and line number.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import json
import math
import typing as t
import uuid

import msgspec
from singer_sdk.exceptions import MapExpressionError
from singer_sdk.io_base import SingerWriter
from singer_sdk.mapper import SameRecordTransform
from typing_extensions import override

from tap_amplitude.client import AmplitudeError
from tap_amplitude.interrupt import write_whole
from tap_amplitude.storage.source import brief, display_url
from tap_amplitude.timestamps import EVENT_TIMESTAMP_FIELDS, normalize_event

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from concurrent.futures import Future, ThreadPoolExecutor

    from singer_sdk.singerlib import Message
    from singer_sdk.streams import Stream

    from tap_amplitude.export import LineBlock
    from tap_amplitude.sdk import BatchConfig, StorageTarget

Row = dict[str, t.Any]
WRITE_BLOCK_BYTES = 1 << 20  # encoded bytes per stdout write
COMPRESS_BLOCK_ROWS = 1000  # rows per block handed to the compressing thread
# msgspec keeps integers of any size exact both ways (orjson turns those beyond 64 bits into
# floats and refuses to write them), checks in C that a line is an object, and writes a list of
# rows as JSON lines in one call. Values a stream map may produce are written as the SDK does.
_DECODE_OBJECT = msgspec.json.Decoder(dict).decode
_ENCODER = msgspec.json.Encoder(enc_hook=str, decimal_format="number")
# Parsing a block keeps some 5,000 dicts and lists alive at once; at CPython's default
# threshold (700) the cyclic collector walks them several times a block, although reference
# counting frees them all (measured: a quarter of the export path's time).
_BULK_GC_THRESHOLD = 100_000


class BadLineError(AmplitudeError):
    """A line of the export cannot be passed on as it is; the run stops on it."""


def encode_lines(items: list[t.Any]) -> bytes:
    r"""Messages or rows as JSON lines, in one call for the whole list.

    A string holding half of a UTF-16 pair (JavaScript strings can; the export escapes it as
    ``\ud800``) is not Unicode, so not UTF-8 either: such items keep the escape instead.
    """
    try:
        return _ENCODER.encode_lines(items)
    except UnicodeEncodeError:
        return b"".join(_encode_line(item) for item in items)


def _encode_line(item: t.Any) -> bytes:
    try:
        return _ENCODER.encode(item) + b"\n"
    except UnicodeEncodeError:  # ASCII with \u escapes, as the Singer SDK writes messages
        return (json.dumps(item, separators=(",", ":"), default=str) + "\n").encode()


@contextlib.contextmanager
def bulk_parsing() -> Iterator[None]:
    """Let the cyclic garbage collector run rarely while rows are parsed in blocks."""
    threshold = gc.get_threshold()
    gc.set_threshold(_BULK_GC_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


class RowReader:
    """JSON lines of the export to rows: exact numbers, RFC 3339 timestamps, schema columns."""

    def __init__(self, stream: Stream) -> None:
        """Rows keep the columns of the stream's schema; others are named once per run."""
        self.stream = stream
        self.columns = frozenset(stream.schema["properties"])
        # The stream's own keys (never null in Amplitude's export), not a catalog's choice
        declared = getattr(type(stream), "primary_keys", ())
        self.keys: tuple[str, ...] = tuple(declared) if isinstance(declared, tuple) else ()
        self.named: set[str] = set()  # columns and values already warned about

    def rows(self, block: LineBlock) -> list[Row]:
        """Every row of a block; the common case runs without a Python call per field."""
        try:
            rows = [normalize_event(_DECODE_OBJECT(line)) for line in block.lines]
        except (
            msgspec.DecodeError,
            ValueError,
            TypeError,
            AttributeError,
            KeyError,
            IndexError,
            RecursionError,
        ):
            rows = list(self._one_by_one(block))
        for key in self.keys:
            if None in [row.get(key) for row in rows]:
                self._stop_keyless(block, rows, key)
        columns = self.columns
        return [row if columns.issuperset(row) else self._schema_columns(row) for row in rows]

    def _stop_keyless(self, block: LineBlock, rows: list[Row], key: str) -> t.NoReturn:
        """A row without a key property: a target could not load it as the row it is."""
        number = next(number for number, row in enumerate(rows) if row.get(key) is None)
        self._stop(
            block,
            row_line_index(block, number),
            f"it has no {key} (a key property of the stream), so no target could load it",
        )

    def _one_by_one(self, block: LineBlock) -> Iterator[Row]:
        """The careful path: skip blank lines, find the bad line, name what is wrong with it."""
        for index, line in enumerate(block.lines):
            if not line.strip():
                continue
            row = self._parse(line, block, index)
            for field in EVENT_TIMESTAMP_FIELDS:
                value = row.get(field)
                if value is not None and not isinstance(value, str):
                    self._stop(
                        block, index, f"its {field} is a JSON {_json_type(value)}, not a string"
                    )
            yield normalize_event(row)

    def _parse(self, line: bytes, block: LineBlock, index: int) -> Row:
        try:
            return t.cast("Row", _DECODE_OBJECT(line))
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            pass  # find out why below, on the slow path
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._stop(block, index, f"it is not UTF-8 (byte {exc.start + 1})")
        try:
            value = json.loads(text, parse_constant=float)  # NaN and Infinity, named below
        except json.JSONDecodeError as exc:
            self._stop(block, index, f"it is not JSON ({exc.msg} at column {exc.colno})")
        except RecursionError:
            self._stop(block, index, "it nests arrays or objects too deeply to be parsed")
        if not isinstance(value, dict):
            self._stop(block, index, f"it is a JSON {_json_type(value)}, not an object")
        return t.cast("Row", self._finite(value, ""))

    def _finite(self, value: t.Any, path: str) -> t.Any:
        """Non-finite numbers (NaN, ±Infinity, beyond ±1.8e308) become null, named once."""
        if isinstance(value, float) and not math.isfinite(value):
            self._warn_once(
                f"value:{path}",
                "%s: %s holds %s, which JSON output cannot carry; it is written as null",
                path,
                value,
            )
            return None
        if isinstance(value, dict):
            return {
                key: self._finite(item, f"{path}.{key}" if path else key)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self._finite(item, f"{path}[]") for item in value]
        return value

    def _schema_columns(self, row: Row) -> Row:
        """Drop columns the schema lacks (as SDK conformance would), naming each once."""
        for column in sorted(row.keys() - self.columns):
            self._warn_once(
                f"column:{column}",
                "%s: Amplitude sent column %r, which the stream's schema does not have; its "
                "values are not loaded. Upgrade tap-amplitude, or report the column.",
                column,
            )
        return {key: value for key, value in row.items() if key in self.columns}

    def _warn_once(self, key: str, message: str, *args: t.Any) -> None:
        if key not in self.named:
            self.named.add(key)
            self.stream.logger.warning(message, self.stream.name, *args)

    def _stop(self, block: LineBlock, index: int, problem: str) -> t.NoReturn:
        msg = (
            f"{self.stream.name}: line {block.line_number(index)} of archive member "
            f"{block.member} in the export for {block.window} cannot be loaded: {problem}. "
            "The run stopped there and its bookmark stays at that hour, so nothing is "
            "skipped; report the window to Amplitude support."
        )
        raise BadLineError(msg)


def row_line_index(block: LineBlock, row: int) -> int:
    """The index in ``block.lines`` of the block's ``row``-th row (blank lines hold no row)."""
    rows = -1
    for index, line in enumerate(block.lines):
        rows += bool(line.strip())
        if rows == row:
            return index
    return row


def _json_type(value: t.Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return "null" if value is None else names.get(type(value), "object")


class RecordShaper:
    """Apply the catalog and stream maps to rows exactly as the SDK would."""

    def __init__(self, stream: Stream) -> None:
        """Precompute what per-record work this stream's catalog and maps need."""
        mask = stream.mask
        self.deselected = tuple(
            name for name in stream.schema["properties"] if not mask[("properties", name)]
        )
        self.maps = [
            (stream_map.stream_alias, None if _is_identity(stream_map) else stream_map)
            for stream_map in stream.stream_maps
        ]

    @property
    def passthrough(self) -> bool:
        """Nothing to deselect and only the identity map: rows go out as they are."""
        return not self.deselected and len(self.maps) == 1 and self.maps[0][1] is None

    def shape(self, row: Row) -> Iterator[tuple[str, Row]]:
        """Yield ``(stream alias, record)`` for every map that keeps the row."""
        for name in self.deselected:
            row.pop(name, None)
        for alias, stream_map in self.maps:
            if stream_map is None:
                yield alias, row
                continue
            try:
                mapped = stream_map.transform(row)
            except MapExpressionError:
                raise
            except Exception as exc:
                msg = (
                    f"the map of stream '{alias}' failed on a record ({type(exc).__name__}: {exc})."
                )
                raise MapExpressionError(msg) from exc
            if mapped is not None:
                yield alias, mapped

    def record_messages(self, rows: list[Row], time_extracted: str) -> bytes:
        """RECORD messages (JSON lines, encoded in one call) for a list of rows."""
        if self.passthrough:  # the common case, where a big export spends its time
            envelope = {
                "type": "RECORD",
                "stream": self.maps[0][0],
                "time_extracted": time_extracted,
            }
            return encode_lines([{**envelope, "record": row} for row in rows])
        return encode_lines(
            [
                {
                    "type": "RECORD",
                    "stream": alias,
                    "record": record,
                    "time_extracted": time_extracted,
                }
                for row in rows
                for alias, record in self.shape(row)
            ]
        )

    def batch_records(self, rows: list[Row]) -> list[Row]:
        """The records BATCH files hold for a list of rows."""
        if self.passthrough:
            return rows
        return [record for row in rows for _, record in self.shape(row)]


def _is_identity(stream_map: t.Any) -> bool:
    """The default map with flattening off returns every record unchanged."""
    return type(stream_map) is SameRecordTransform and not stream_map.flattening_enabled


class BoundedSingerWriter(SingerWriter):
    """The SDK's message writer, each message written whole before a signal acts."""

    @override
    def write_message(self, message: Message) -> None:
        """Serialize as the SDK does, then write the whole line."""
        write_whole((self.format_message(message) + "\n").encode())


class RecordWriter:
    """RECORD messages written to stdout in blocks, each block whole before a signal acts."""

    def __init__(self) -> None:
        """Start with nothing queued."""
        self.pending: list[bytes] = []
        self.pending_bytes = 0

    def extend(self, messages: bytes) -> None:
        """Queue encoded messages; write once enough are waiting."""
        self.pending.append(messages)
        self.pending_bytes += len(messages)
        if self.pending_bytes >= WRITE_BLOCK_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write everything queued; called before any STATE so order is preserved."""
        if not self.pending:
            return
        block = b"".join(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        write_whole(block)


class BatchStorageError(AmplitudeError):
    """``batch_config.storage`` does not take files: the message names the root, not TMPDIR."""

    def __init__(self, storage: StorageTarget, exc: BaseException) -> None:
        """Say where, why, and what to check."""
        super().__init__(
            f"Could not write BATCH files to batch_config.storage.root "
            f"{display_url(storage.root)} ({brief(exc)}); check that it is writable and has "
            "free space and, for a bucket, its credentials (batch_config.storage.params)."
        )


def check_batch_storage(batch_config: BatchConfig) -> None:
    """Write and remove one small file where BATCH files go, before any request.

    Raises:
        BatchStorageError: the root cannot take files (named, with the reason).
    """
    storage = batch_config.storage
    probe = f"{storage.prefix or ''}.tap-amplitude-write-check-{uuid.uuid4().hex}"
    try:
        import fsspec  # type: ignore[import-untyped]  # noqa: PLC0415 - only with batch_config

        with storage.open(probe, "wb") as handle:
            handle.write(b"{}\n")
        filesystem, path = fsspec.core.url_to_fs(storage.get_url(probe), **storage.params)
        filesystem.rm(path)
    except Exception as exc:
        raise BatchStorageError(storage, exc) from exc


class BatchFiles:
    """Gzipped JSON-lines batch files in the configured storage, ``batch_size`` rows each.

    Rows are compressed in blocks on a second thread (zlib releases the GIL, so compression
    runs beside parsing); one block in flight keeps memory flat.
    """

    def __init__(
        self, stream: Stream, batch_config: BatchConfig, compressor: ThreadPoolExecutor
    ) -> None:
        """Name files like the SDK's batcher does: ``<tap>--<stream>-<id>-<n>.json.gz``.

        ``compression: none`` writes plain ``.jsonl`` files, as the BATCH message says (the
        SDK's own batcher gzips them all the same).
        """
        self.storage = batch_config.storage
        self.gzip = batch_config.encoding.compression == "gzip"
        self.limit = batch_config.batch_size
        self.sync_id = f"{stream.tap_name}--{stream.name}-{uuid.uuid4()}"
        self.compressor = compressor
        self.sequence = 0
        self.rows = 0
        self.block: list[Row] = []
        self.filename = ""
        self.open_file: contextlib.ExitStack | None = None
        self.compressed: t.IO[bytes] | None = None
        self.in_flight: Future[int] | None = None

    def add(self, rows: list[Row]) -> Iterator[list[str]]:
        """Queue records; yields a manifest each time a file reaches ``batch_size``."""
        while rows:
            room = self.limit - self.rows
            self.block += rows[:room]
            self.rows += min(room, len(rows))
            rows = rows[room:]
            if len(self.block) >= COMPRESS_BLOCK_ROWS:
                self._write_block()
            if self.rows >= self.limit:
                yield self.close()

    def _write_block(self) -> None:
        output = self.compressed or self._next_file()
        self._wait()
        encoded = encode_lines(self.block)
        self.in_flight = self.compressor.submit(output.write, encoded)
        self.block.clear()

    def _next_file(self) -> t.IO[bytes]:
        """Open the next file, gzipped unless the encoding says ``compression: none``."""
        self.sequence += 1
        suffix = ".json.gz" if self.gzip else ".jsonl"
        self.filename = f"{self.storage.prefix or ''}{self.sync_id}-{self.sequence}{suffix}"
        self.open_file = contextlib.ExitStack()
        try:
            raw: t.IO[bytes] = self.open_file.enter_context(self.storage.open(self.filename, "wb"))
        except OSError as exc:
            raise BatchStorageError(self.storage, exc) from exc
        self.compressed = raw
        if self.gzip:
            self.compressed = t.cast(
                "t.IO[bytes]",
                self.open_file.enter_context(
                    gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1)
                ),
            )
        return self.compressed

    def _wait(self) -> None:
        """Let the previous block finish (and surface its error, if any)."""
        if self.in_flight is not None:
            try:
                self.in_flight.result()
            except OSError as exc:
                raise BatchStorageError(self.storage, exc) from exc
            finally:
                self.in_flight = None

    def close(self) -> list[str]:
        """Finish the current file; its URL as a manifest (empty if no rows were queued)."""
        if self.block:
            self._write_block()
        self._wait()
        if self.open_file is None:
            return []
        try:
            self.open_file.close()
        except OSError as exc:
            raise BatchStorageError(self.storage, exc) from exc
        self.open_file = self.compressed = None
        self.rows = 0
        return [self.storage.get_url(self.filename)]
