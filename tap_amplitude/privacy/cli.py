"""The entry point: runs one command, turning every failure into one line and an exit code."""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import sys
import typing as t

import click
import requests
from singer_sdk.exceptions import RetriableAPIError

from tap_amplitude.client import AmplitudeError, DropRepeatedFailureLines, request_failure
from tap_amplitude.interrupt import (
    BOUNDARY,
    OUTPUT_ERRNOS,
    Interrupted,
    OutputUnwritable,
    silence_stdout,
)

# The command modules register their commands on ``cli`` when imported.
from tap_amplitude.privacy import access, deletion, lookup  # noqa: F401
from tap_amplitude.privacy.base import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CliError,
    RunState,
    cli,
    shorten,
    signal_handlers,
)
from tap_amplitude.settings import SettingsError
from tap_amplitude.tap import TapAmplitude

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

# ----------------------------------------------------------------------------------------
# entry point

# A run of this many characters without a space is a value (an id, a URL), not prose.
_LONG_VALUE = re.compile(r"\S{200,}")


@contextlib.contextmanager
def _stderr_logging() -> Iterator[None]:
    """For one invocation, show the tap's warnings (retries, skipped sections) on stderr.

    The SDK's own records (request metrics, progress) are kept out of whatever logging the
    host process configured: the command's output is its JSON lines and one-line messages.
    """
    tap_logger, sdk_logger = logging.getLogger(TapAmplitude.name), logging.getLogger("singer_sdk")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    handler.addFilter(DropRepeatedFailureLines())
    saved = tap_logger.propagate, sdk_logger.propagate
    tap_logger.addHandler(handler)
    tap_logger.propagate = sdk_logger.propagate = False
    try:
        yield
    finally:
        tap_logger.removeHandler(handler)
        tap_logger.propagate, sdk_logger.propagate = saved


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure becomes one stderr line and an exit code.

    SIGINT and SIGTERM stop the command with one line saying what was sent and exit code
    130; they never print a traceback or a Singer message.
    """
    state = RunState()
    with signal_handlers(BOUNDARY.handle), _stderr_logging():
        try:
            result = cli.main(
                args=list(argv) if argv is not None else None,
                prog_name=PROG,
                standalone_mode=False,
                obj=state,
            )
        except (Interrupted, KeyboardInterrupt) as stop:
            name = stop.signal_name if isinstance(stop, Interrupted) else "SIGINT"
            with signal_handlers(signal.SIG_IGN):  # a second signal must not cut the line
                click.echo(state.interrupted(name), err=True)
            return EXIT_INTERRUPTED
        except click.exceptions.NoArgsIsHelpError as help_:  # the help, on stderr
            click.echo(help_.format_message(), err=True)
            return EXIT_USAGE
        except Exception as exc:  # noqa: BLE001 - every failure ends in one line
            message, code = _describe_failure(exc, state)
            click.echo(_one_line(message), err=True)
            return code
    return result if isinstance(result, int) else EXIT_OK


def _one_line(message: str) -> str:
    """``message`` on one line of reasonable length, whatever values it quotes.

    Messages from click and from Amplitude's answers may quote an id or a URL as given:
    control characters are escaped and a very long value is cut short.
    """
    flat = "".join(char if char.isprintable() else repr(char)[1:-1] for char in message)
    return _LONG_VALUE.sub(lambda found: shorten(found.group()), flat)


def _describe_failure(  # noqa: PLR0911 - one per kind
    exc: Exception, state: RunState
) -> tuple[str, int]:
    """The stderr line and exit code: what to do, or for the unforeseen, where to report."""
    if isinstance(exc, OutputUnwritable):
        return state.output_lost(str(exc)), EXIT_FAILURE
    if isinstance(exc, click.UsageError):
        command = exc.ctx.command_path if exc.ctx else PROG
        message = exc.format_message().rstrip(".")
        return f"{command}: error: {message}. See '{command} --help'.", EXIT_USAGE
    if isinstance(exc, click.Abort):  # a KeyboardInterrupt, as click reports it
        return state.interrupted("SIGINT"), EXIT_INTERRUPTED
    if isinstance(exc, CliError):
        return f"{PROG}: error: {exc.message}", exc.exit_code
    if isinstance(exc, SettingsError):  # rate_limits.backend unreachable (URL redacted)
        return f"{PROG}: error: {exc}", EXIT_FAILURE
    if isinstance(exc, AmplitudeError):
        return f"{PROG}: error: {exc}", EXIT_FAILURE
    if isinstance(exc, RetriableAPIError):
        return f"{PROG}: error: {exc} (still failing after retries)", EXIT_FAILURE
    if isinstance(exc, requests.RequestException):
        return f"{PROG}: error: {request_failure(exc)}", EXIT_FAILURE
    if isinstance(exc, OSError) and exc.filename is None and exc.errno in OUTPUT_ERRNOS:
        # click printing the help: the files the commands write name themselves in errors
        silence_stdout()  # what click left in stdout's buffer must not fail again at exit
        return state.output_lost(exc.strerror or str(exc)), EXIT_FAILURE
    unexpected = (
        f"{PROG}: error: stopped on an unexpected {type(exc).__name__} ({exc}); please "
        "report this to tap-amplitude with the command you ran"
    )
    return unexpected, EXIT_FAILURE


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
