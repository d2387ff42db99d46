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

import errno
import os
import sys
import typing as t
from pathlib import Path

from tap_amplitude.interrupt import BOUNDARY, Interrupted, silence_stdout

if t.TYPE_CHECKING:
    from collections.abc import Callable


# Names logging accepts; the SDK passes LOGLEVEL to it as given, upper-cased.
_LEVEL_NAMES = frozenset(
    {"CRITICAL", "FATAL", "ERROR", "WARN", "WARNING", "INFO", "DEBUG", "NOTSET"}
)


def tap() -> None:
    """``tap-amplitude``: a tap's output is its stdout, so a closed one stops it at once."""
    BOUNDARY.install()
    if sys.stdout is None:
        _output_lost("tap-amplitude", "could not write to standard output (it is closed)")
    _check_logging("tap-amplitude")
    try:
        from tap_amplitude.tap import TapAmplitude  # noqa: PLC0415 - after the handlers
    except Interrupted as stop:
        _stopped_while_starting("tap-amplitude", stop)
    _run("tap-amplitude", TapAmplitude.cli)


def privacy() -> None:
    """``amplitude-privacy``: every command answers on stdout, so a closed one stops it first.

    Refused before any request, a deletion is never sent with its answer bound to be lost
    (and click would drop ``--help`` into a closed stdout without a word).
    """
    BOUNDARY.install()
    _check_logging("amplitude-privacy")
    try:
        from tap_amplitude.privacy.base import RunState  # noqa: PLC0415 - after the handlers
        from tap_amplitude.privacy.cli import main  # noqa: PLC0415
    except Interrupted as stop:
        _stopped_while_starting("amplitude-privacy", stop)
    if sys.stdout is None:
        sys.stderr.write(RunState().output_lost(os.strerror(errno.EBADF)) + "\n")
        sys.exit(1)
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
        _output_lost(program, f"could not write to standard output ({os.strerror(exc.errno or 0)})")
    sys.exit(code)


def _check_logging(program: str) -> None:
    """Stop on log settings the SDK would fail on with a traceback, naming the variable."""
    for variable in ("TAP_AMPLITUDE_LOGLEVEL", "LOGLEVEL"):  # the SDK's order
        level = os.environ.get(variable)
        if level:
            if level.upper() not in _LEVEL_NAMES:
                _stop(program, f"{variable} is not a log level; use DEBUG, INFO, WARNING or ERROR")
            break
    path = os.environ.get("SINGER_SDK_LOG_CONFIG")
    if path and Path(path).is_file():
        import yaml  # type: ignore[import-untyped]  # noqa: PLC0415 - only with a log config

        try:
            with Path(path).open(encoding="utf-8") as handle:
                config = yaml.safe_load(handle)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            config = None
        if not isinstance(config, dict):
            _stop(
                program,
                f"SINGER_SDK_LOG_CONFIG file {path} is not a YAML logging configuration "
                "(a mapping, as logging.config.dictConfig takes)",
            )


def _stop(program: str, problem: str) -> t.NoReturn:
    sys.stderr.write(f"{program}: {problem}.\n")
    sys.exit(1)


def _output_lost(program: str, problem: str) -> t.NoReturn:
    _stop(
        program,
        f"{problem}: the output is incomplete. Give the command a standard output that takes "
        "it (a pipe, a file) and run it again",
    )


def _stopped_while_starting(program: str, stop: Interrupted) -> t.NoReturn:
    sys.stderr.write(
        f"{program}: interrupted by {stop.signal_name} while starting; nothing was requested "
        "or written. Run the command again.\n"
    )
    sys.exit(stop.exit_code)
