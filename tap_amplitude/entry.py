"""Console entry points: signals handled from the first moment, output checked to the last.

Importing singer-sdk and the streams takes most of a second. A signal in that time used to
end the process with a KeyboardInterrupt traceback, or with no word at all; here it ends
with one line and the signal's exit code, like a signal at any later moment. This module
imports only the standard library and ``interrupt`` before the handlers are in place.

What click prints itself (``--help``, ``--about``, the catalog of ``--discover``) reaches
stdout only at the last flush, which used to fail after the command had "succeeded" (exit
120 and an "Exception ignored" message); that flush happens here, where a failure is one line.
"""

from __future__ import annotations

import os
import sys
import typing as t

from tap_amplitude.interrupt import BOUNDARY, Interrupted, silence_stdout

if t.TYPE_CHECKING:
    from collections.abc import Callable


def tap() -> None:
    """``tap-amplitude``: a tap's output is its stdout, so a closed one stops it at once."""
    BOUNDARY.install()
    if sys.stdout is None:
        _fail("tap-amplitude", "could not write to standard output (it is closed)")
    try:
        from tap_amplitude.tap import TapAmplitude  # noqa: PLC0415 - after the handlers
    except Interrupted as stop:
        _stopped_while_starting("tap-amplitude", stop)
    _run("tap-amplitude", TapAmplitude.cli)


def privacy() -> None:
    """``amplitude-privacy``."""
    BOUNDARY.install()
    try:
        from tap_amplitude.privacy.cli import main  # noqa: PLC0415 - after the handlers
    except Interrupted as stop:
        _stopped_while_starting("amplitude-privacy", stop)
    _run("amplitude-privacy", main)


def _run(program: str, main: Callable[[], t.Any]) -> t.NoReturn:
    """Run ``main``, then flush stdout while a failure can still be reported."""
    try:
        main()
        code: t.Any = 0
    except SystemExit as done:
        code = done.code
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError as exc:
        silence_stdout()
        _fail(program, f"could not write to standard output ({os.strerror(exc.errno or 0)})")
    sys.exit(code)


def _fail(program: str, problem: str) -> t.NoReturn:
    sys.stderr.write(
        f"{program}: {problem}: the output is incomplete. Give the command a standard output "
        "that takes it (a pipe, a file) and run it again.\n"
    )
    sys.exit(1)


def _stopped_while_starting(program: str, stop: Interrupted) -> t.NoReturn:
    sys.stderr.write(
        f"{program}: interrupted by {stop.signal_name} while starting; nothing was requested "
        "or written. Run the command again.\n"
    )
    sys.exit(stop.exit_code)
