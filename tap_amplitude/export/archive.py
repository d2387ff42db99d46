"""Reading one Export API archive: which members hold events, in what order, line by line.

Amplitude answers a zip whose data members are gzipped JSON lines named
``<app>/<app>_<YYYY-MM-DD>_<H>#<part>.json.gz`` (docs §2.2). Members are recognised by their
content as well as their name, so an upper-case suffix or an uncompressed ``.json`` is still
read; a nested zip is opened and read the same way. Anything that cannot hold events is named
in a warning, never skipped silently.
"""

from __future__ import annotations

import gzip
import typing as t
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

LINE_BLOCK_BYTES = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"


class CorruptExportError(Exception):
    """A member does not decompress; a later download of the window may be intact."""


@dataclass(frozen=True)
class LineBlock:
    """Consecutive lines of one member; ``first_line`` is the 1-based number of ``lines[0]``."""

    member: str
    hour: datetime | None
    first_line: int
    lines: list[bytes]
    window: str = ""  # the window's label, for messages; set by the run that downloaded it

    def line_number(self, index: int) -> int:
        """The member line number of ``lines[index]``, for error messages."""
        return self.first_line + index


def read_archive(spool: t.IO[bytes], warn: Callable[[str], None]) -> Iterator[LineBlock]:
    """Every line of every event member, members in upload-hour order.

    Raises:
        CorruptExportError: a member is damaged (the caller downloads the window again).
    """
    with zipfile.ZipFile(spool) as archive:
        yield from _read_zip(archive, "", warn)


def _read_zip(
    archive: zipfile.ZipFile, outer: str, warn: Callable[[str], None]
) -> Iterator[LineBlock]:
    members = [info for info in archive.infolist() if not info.is_dir()]
    for info in sorted(members, key=lambda info: member_sort_key(info.filename)):
        name = outer + info.filename
        try:
            with archive.open(info) as member:
                head = member.read(len(ZIP_MAGIC))
            if not head:
                continue  # an empty member (or a completion marker) holds no events
            if head.startswith(GZIP_MAGIC):
                with archive.open(info) as member, gzip.GzipFile(fileobj=member) as lines:
                    yield from member_blocks(lines, name)
            elif head == ZIP_MAGIC:
                with archive.open(info) as member, zipfile.ZipFile(member) as nested:
                    yield from _read_zip(nested, f"{name}/", warn)
            elif _is_json_lines(info.filename, head):
                with archive.open(info) as member:
                    yield from member_blocks(member, name)
            else:
                warn(
                    f"archive member {name} is neither gzip, zip nor JSON lines "
                    f"({info.file_size} bytes); it was not read"
                )
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
            msg = f"{name}: {exc}"
            raise CorruptExportError(msg) from exc


def _is_json_lines(filename: str, head: bytes) -> bool:
    """Uncompressed JSON lines: a ``.json``/``.jsonl`` name, or content that opens an object."""
    lowered = filename.lower()
    return lowered.endswith((".json", ".jsonl")) or head.lstrip()[:1] == b"{"


class _Readable(t.Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def member_blocks(stream: _Readable, name: str) -> Iterator[LineBlock]:
    """Split a member into lines in 1 MiB blocks (splitting runs in C, not per line).

    Also reads the objects of Amplitude's cloud-storage export (tap_amplitude.storage).
    """
    hour = member_hour(name)
    number = 1
    carry = b""
    while block := stream.read(LINE_BLOCK_BYTES):
        text = carry + block
        lines = text.split(b"\n")
        carry = lines.pop()
        if lines:
            yield LineBlock(name, hour, number, lines)
            number += len(lines)
    if carry.strip():
        yield LineBlock(name, hour, number, [carry])


def member_sort_key(name: str) -> tuple[str, int, int]:
    """``<app>/<app>_<YYYY-MM-DD>_<H>#<n>.json.gz`` sorts by day, hour, then part."""
    stem = name.rsplit("/", 1)[-1]
    lowered = stem.lower()
    for suffix in (".json.gz", ".jsonl.gz", ".gz", ".jsonl", ".json", ".zip"):
        if lowered.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    try:
        rest, part = stem.rsplit("#", 1)
        _, day, hour = rest.rsplit("_", 2)
        return day, int(hour), int(part)
    except ValueError:
        return stem, 0, 0


def member_hour(name: str) -> datetime | None:
    """The upload hour a member holds, from its name; None if the name is unusual."""
    day, hour, _ = member_sort_key(name)
    try:
        return datetime.strptime(f"{day} {hour}", "%Y-%m-%d %H").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
