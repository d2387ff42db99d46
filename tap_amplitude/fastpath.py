"""The fast record path for ``export_events``: where a big export spends its time.

The SDK's per-record pipeline (deselection walk, type conformance, one message object and one
flush per record) costs several times the unzip-and-parse floor. Export rows are conformant by
construction (JSON types from Amplitude, timestamps normalized on the way in), so this path
keeps only what can change a row: dropping keys the schema lacks, top-level deselection, and
the configured stream maps (including flattening), and writes messages in bulk.
"""

from __future__ import annotations

import json
import sys
import typing as t

import orjson
from singer_sdk.mapper import SameRecordTransform

from tap_amplitude.timestamps import normalize_event

if t.TYPE_CHECKING:
    from singer_sdk.streams import Stream

WRITE_BATCH_RECORDS = 1000


def parse_line(line: bytes) -> dict[str, t.Any]:
    """Decode one JSON line; integers beyond 64 bits fall back to the standard library."""
    try:
        return t.cast("dict[str, t.Any]", orjson.loads(line))
    except orjson.JSONDecodeError:
        return t.cast("dict[str, t.Any]", json.loads(line))


def dump_line(payload: dict[str, t.Any]) -> bytes:
    """Encode one JSON line (newline included), with the same big-integer fallback."""
    try:
        return orjson.dumps(payload, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (json.dumps(payload, separators=(",", ":")) + "\n").encode()


class RecordShaper:
    """Apply the catalog and stream maps to export rows exactly as the SDK would."""

    def __init__(self, stream: Stream) -> None:
        """Precompute what per-record work is needed for this stream's catalog and maps."""
        properties = stream.schema["properties"]
        self.schema_keys = frozenset(properties)
        mask = stream.mask
        self.deselected = tuple(name for name in properties if not mask[("properties", name)])
        self.maps = [
            (stream_map.stream_alias, None if _is_identity(stream_map) else stream_map)
            for stream_map in stream.stream_maps
        ]

    @property
    def passthrough(self) -> bool:
        """Nothing to deselect and only the identity map: rows go out as parsed."""
        return not self.deselected and len(self.maps) == 1 and self.maps[0][1] is None

    def conformed(self, lines: list[bytes]) -> t.Iterator[dict[str, t.Any]]:
        """Parse, normalize timestamps, and drop keys the schema lacks (as conformance would)."""
        keys = self.schema_keys
        for line in lines:
            row = normalize_event(parse_line(line))
            yield row if keys.issuperset(row) else {k: v for k, v in row.items() if k in keys}

    def shape(self, row: dict[str, t.Any]) -> t.Iterator[tuple[str, dict[str, t.Any]]]:
        """Yield ``(stream alias, record)`` of a conformed row for every map that keeps it."""
        for name in self.deselected:
            row.pop(name, None)
        for alias, stream_map in self.maps:
            if stream_map is None:
                yield alias, row
                continue
            mapped = stream_map.transform(row)
            if mapped is not None:
                yield alias, mapped

    def record_messages(self, lines: list[bytes], time_extracted: str) -> list[bytes]:
        """RECORD messages (one JSON line each) for a batch of raw export lines."""
        if self.passthrough:  # the common case, where a big export spends its time
            envelope = {
                "type": "RECORD",
                "stream": self.maps[0][0],
                "time_extracted": time_extracted,
            }
            return [dump_line({**envelope, "record": row}) for row in self.conformed(lines)]
        return [
            dump_line(
                {
                    "type": "RECORD",
                    "stream": alias,
                    "record": record,
                    "time_extracted": time_extracted,
                },
            )
            for row in self.conformed(lines)
            for alias, record in self.shape(row)
        ]

    def batch_rows(self, lines: list[bytes]) -> list[bytes]:
        """BATCH file rows (one JSON record per line) for a batch of raw export lines."""
        if self.passthrough:
            return [dump_line(row) for row in self.conformed(lines)]
        return [dump_line(record) for row in self.conformed(lines) for _, record in self.shape(row)]


def _is_identity(stream_map: t.Any) -> bool:
    """The default map with flattening off returns every record unchanged."""
    return type(stream_map) is SameRecordTransform and not stream_map.flattening_enabled


class BulkRecordWriter:
    """RECORD messages encoded with orjson and written to stdout in large blocks."""

    def __init__(self) -> None:
        """Start with nothing queued."""
        self.pending: list[bytes] = []

    def extend(self, messages: list[bytes]) -> None:
        """Queue encoded RECORD messages; write once enough are waiting."""
        self.pending += messages
        if len(self.pending) >= WRITE_BATCH_RECORDS:
            self.flush()

    def flush(self) -> None:
        """Write everything queued; called before any STATE so order is preserved."""
        if not self.pending:
            return
        block = b"".join(self.pending)
        self.pending.clear()
        sys.stdout.flush()
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is None:  # stdout replaced by a text stream (e.g. in-process test runners)
            sys.stdout.write(block.decode())
        else:
            buffer.write(block)
            buffer.flush()
