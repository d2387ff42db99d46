"""Termination signals end a run between two Singer messages, with the signal's exit code.

A handler that raised at any bytecode could abort a write halfway, leaving half a RECORD on
stdout with a STATE glued to it. Here a signal that arrives while a message is being written
is held until that write is complete; one that arrives between writes raises at once. Either
way the run ends with :class:`Interrupted`, which the CLIs turn into one line and exit code
``128 + signal`` (130 for SIGINT, 143 for SIGTERM), so no scheduler mistakes it for success.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import typing as t

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType


TERMINATION_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A termination signal stopped the run; it is raised only between whole messages."""

    def __init__(self, signum: int) -> None:
        """Keep the signal number."""
        super().__init__(signum)
        self.signum = signum

    @property
    def signal_name(self) -> str:
        """``SIGINT`` or ``SIGTERM``."""
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: ``128 + signal``."""
        return 128 + self.signum


class MessageBoundary:
    """Holds a termination signal back until the message being written is complete."""

    def __init__(self) -> None:
        """No write in progress, no signal held."""
        self._depth = 0
        self._held: int | None = None

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Wrap one whole write; a signal received meanwhile is raised right after it."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._held is not None:
                signum, self._held = self._held, None
                raise Interrupted(signum)

    def handle(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002
        """Signal handler: stop now between messages, or once the current write is done."""
        if self._depth:
            self._held = signum
            return
        raise Interrupted(signum)

    def install(self) -> None:
        """Route SIGINT and SIGTERM here (main thread only, as Python requires)."""
        for signum in TERMINATION_SIGNALS:
            signal.signal(signum, self.handle)


BOUNDARY = MessageBoundary()
"""The process's one boundary: signals are process-wide, and so is stdout."""


def write_whole(data: bytes) -> None:
    """Write encoded messages to stdout completely before a signal may act.

    A signal can interrupt a large write after part of it reached the pipe; CPython's
    buffered writer then returns a short count (and the text layer ignores it), so the rest
    is written here until none is left.
    """
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        raise OutputUnwritable(os.strerror(errno.EBADF))
    try:
        _write_whole(data)
    except OSError as exc:
        if exc.errno not in OUTPUT_ERRNOS:
            raise
        silence_stdout()
        raise OutputUnwritable(os.strerror(exc.errno or 0)) from exc


OUTPUT_ERRNOS = {errno.EPIPE, errno.ENOSPC, errno.EBADF, errno.EDQUOT, errno.EIO}


class OutputUnwritable(Exception):  # noqa: N818 - named for what it says
    """Standard output no longer takes messages: closed, its reader gone, or its disk full."""


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _write_whole(data: bytes) -> None:
    with BOUNDARY.writing():
        sys.stdout.flush()
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is None:  # stdout replaced by a text stream (in-process test runners)
            sys.stdout.write(data.decode())
            sys.stdout.flush()
            return
        rest = memoryview(data)
        while rest:
            rest = rest[buffer.write(rest) :]
        buffer.flush()
