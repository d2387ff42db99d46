"""The audit log: every request that changes (or asks for) something, as locked JSON lines."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import typing as t

from tap_amplitude.interrupt import BOUNDARY
from tap_amplitude.privacy.base import CliError, key_hash, note, open_private

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


class AuditLog:
    """Append-only JSON lines recording every change asked of Amplitude, read back to resume.

    Deletion batches, removals from a staging job (``cancel``) and DSAR requests
    (``access``) are all recorded; the file is created readable by its owner only (0600),
    and an existing log with wider permissions is tightened, since it names people.

    Before each request a ``sending`` line is written and forced to disk, then an
    ``accepted``, ``rejected`` or ``failed`` line. Only ``accepted`` ids count as done, so a
    run interrupted at any point can simply be run again. Lines carry ``project``, a short
    hash of the API key, so one log can serve several projects without mixing them up.

    A sending run holds an exclusive ``flock`` on the log from reading the accepted ids to
    its last line (:meth:`locked`), so two runs sharing a log never send an id twice: the
    second waits, then skips what the first had accepted. A line cut short by a crash or
    power cut is skipped with a warning (its ids do not count as accepted), and the next
    line starts on a line of its own.
    """

    def __init__(self, path: Path, api_key: str) -> None:
        """Bind the log to the project identified by ``api_key``."""
        self.path = path
        self.project = key_hash(api_key)
        self._fd: int | None = None

    @contextlib.contextmanager
    def locked(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the log exclusively for the block, waiting for another run to finish first.

        ``on_wait`` runs once before waiting, if another process holds the log.
        """
        created = not self.path.exists()
        try:
            fd = open_private(self.path, os.O_RDWR | os.O_APPEND)
        except OSError as exc:
            raise CliError(
                f"cannot open the audit log {self.path} ({exc.strerror or exc}); "
                "nothing was sent. Fix the path or pass --audit-log.",
            ) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
            if created:
                fsync_directory(self.path)
            self._fd = fd
            yield
        finally:
            self._fd = None
            os.close(fd)  # releases the lock

    def entries(self) -> list[dict[str, t.Any]]:
        """Every whole entry, oldest first; a line that is not one is skipped with a warning.

        A line cut short by a crash or power cut is not a whole JSON object: ids in it do
        not count for anything.
        """
        found: list[dict[str, t.Any]] = []
        for number, raw in enumerate(self._read().split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError, RecursionError):  # [[[[… nested too deep
                entry = None
            if not isinstance(entry, dict):
                note(
                    f"warning: {self.path} line {number} is not a whole JSON entry (a write "
                    "cut short?); ignoring it: ids in it do not count as accepted"
                )
                continue
            found.append(entry)
        return found

    def accepted(self, *, delete_from_org: bool) -> set[tuple[str, str]]:
        """``(kind, id)`` pairs this project already had accepted, for the same scope.

        Ids Amplitude reported as invalid do not count: a later run asks again. An org-wide
        deletion covers a project-only request; the reverse does not hold. An id later taken
        out of its job again (``cancel``) no longer counts as accepted.
        """
        done: set[tuple[str, str]] = set()
        for entry in self.entries():
            if entry.get("project") != self.project:
                continue
            if entry.get("event") == "cancelled":
                done -= id_keys(entry)
            elif entry.get("event") == "accepted" and (
                entry.get("delete_from_org") or not delete_from_org
            ):
                invalid = {str(value) for value in entry.get("invalid_ids") or []}
                done.update(key for key in id_keys(entry) if key[1] not in invalid)
        return done

    def _read(self) -> bytes:
        """The whole log (through the locked descriptor when there is one)."""
        if self._fd is None:
            try:
                return self.path.read_bytes()
            except FileNotFoundError:
                return b""
            except OSError as exc:
                raise CliError(
                    f"cannot read the audit log {self.path} ({exc.strerror or exc}); "
                    "nothing was sent. Fix the path or pass --audit-log.",
                ) from exc
        chunks: list[bytes] = []
        offset = 0
        while chunk := os.pread(self._fd, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def append(self, entry: dict[str, t.Any]) -> None:
        """Write one whole line and force it to disk before anything else happens.

        If the log ends in a line cut short, the new line starts on a line of its own. A
        signal arriving meanwhile takes effect once the line is on disk.
        """
        line = (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            with BOUNDARY.writing():
                if self._fd is not None:
                    self._write(self._fd, line)
                else:
                    with self.locked():
                        self._write(t.cast("int", self._fd), line)
        except OSError as exc:
            raise CliError(
                f"cannot write the audit log {self.path} ({exc.strerror or exc}); "
                "nothing further was sent. Fix the path or pass --audit-log.",
            ) from exc

    @staticmethod
    def _write(fd: int, line: bytes) -> None:
        """Append ``line`` (after a newline if the last line is unfinished), then fsync."""
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)


def fsync_directory(path: Path) -> None:
    """Make a newly created file's directory entry durable too (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def id_keys(entry: dict[str, t.Any]) -> set[tuple[str, str]]:
    """The ``(kind, id)`` pairs a body or an audit line names."""
    keys = {("amplitude_id", str(value)) for value in entry.get("amplitude_ids") or []}
    keys |= {("user_id", str(value)) for value in entry.get("user_ids") or []}
    return keys
