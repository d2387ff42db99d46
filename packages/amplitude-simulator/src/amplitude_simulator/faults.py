"""Injected failures: the ways Amplitude (and the edge in front of it) misbehave in practice.

Taps must survive 429s, 5xx, 200s whose body is an HTML error page, downloads cut short and
archives whose members do not decompress (docs/amplitude-api.md §2.2, §2.4). Tests queue these per
path; each is served ``times`` times, first in first out.
"""

from __future__ import annotations

import threading
import zipfile
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import IO, TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

FaultKind = Literal["status", "not_zip", "truncated", "corrupt_gzip", "delay"]

#: What an edge proxy answers with a 200 when the origin is unhappy (not a zip).
NOT_ZIP_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Amplitude is temporarily unavailable</title></head>\n"
    b"<body><h1>We'll be right back</h1><p>The service is temporarily unavailable. "
    b"Please try again in a few minutes.</p></body></html>\n"
)


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; build it with the class methods."""

    kind: FaultKind
    status_code: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0

    @classmethod
    def status(
        cls, code: int, body: str | bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Fault:
        """Answer ``code`` (e.g. 429 with ``Retry-After``, or a 5xx) instead of the real reply.

        The body defaults to the status phrase, as plain text.
        """
        if body is None:
            body = HTTPStatus(code).phrase
        raw = body.encode() if isinstance(body, str) else body
        return cls("status", code, raw, tuple((headers or {}).items()))

    @classmethod
    def not_zip(cls) -> Fault:
        """Answer 200 with an HTML page, as an edge proxy does, where a zip was expected."""
        return cls("not_zip", 200, NOT_ZIP_PAGE, (("Content-Type", "text/html; charset=utf-8"),))

    @classmethod
    def truncated(cls) -> Fault:
        """Declare the full Content-Length, send about half the body, then drop the connection."""
        return cls("truncated")

    @classmethod
    def corrupt_gzip(cls) -> Fault:
        """Serve a valid zip whose first ``.gz`` member fails to decompress."""
        return cls("corrupt_gzip")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Sleep ``seconds`` before answering normally (exercises client read timeouts)."""
        return cls("delay", seconds=seconds)


@dataclass
class _Pending:
    fault: Fault
    remaining: int
    when: Callable[[dict[str, str]], bool] | None


@dataclass
class FaultQueue:
    """Faults waiting per path; thread-safe because the server answers in many threads."""

    _pending: dict[str, list[_Pending]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        path: str,
        fault: Fault,
        *,
        times: int = 1,
        when: Callable[[dict[str, str]], bool] | None = None,
    ) -> None:
        """Queue ``fault`` for the next ``times`` requests to ``path`` that satisfy ``when``."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._pending.setdefault(path, []).append(_Pending(fault, times, when))

    def take(self, path: str, params: dict[str, str]) -> Fault | None:
        """The oldest queued fault for ``path`` that applies to ``params``, used up once."""
        with self._lock:
            queue = self._pending.get(path, [])
            for index, pending in enumerate(queue):
                if pending.when is not None and not pending.when(params):
                    continue
                pending.remaining -= 1
                if pending.remaining == 0:
                    del queue[index]
                return pending.fault
        return None

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._pending.clear()


def damage_gzip(member: bytes) -> bytes:
    """Flip bytes in the deflate stream and the CRC trailer so reading the member fails."""
    damaged = bytearray(member)
    header, trailer = 10, 8  # gzip.compress writes no optional header fields
    middle = header + max(0, len(damaged) - header - trailer) // 2
    damaged[middle] ^= 0xFF
    damaged[-trailer] ^= 0xFF
    return bytes(damaged)


def corrupt_first_gzip(source: IO[bytes], target: IO[bytes]) -> bool:
    """Copy a zip, damaging its first ``.gz`` member; the zip itself stays valid.

    Each entry is rewritten so its zip CRC matches the damaged bytes: the failure shows only
    when the member is gunzipped, as with a corrupt file on Amplitude's side.

    Returns:
        Whether a member was damaged (an archive without ``.gz`` members is copied as is).
    """
    damaged = False
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if not damaged and info.filename.endswith(".gz"):
                data = damage_gzip(data)
                damaged = True
            entry = zipfile.ZipInfo(info.filename, info.date_time)
            entry.compress_type = info.compress_type
            entry.external_attr = info.external_attr
            copy.writestr(entry, data)
    return damaged
