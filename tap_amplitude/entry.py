"""Console entry points that handle SIGINT and SIGTERM from the first moment.

Importing singer-sdk and the streams takes most of a second. A signal in that time used to
end the process with a KeyboardInterrupt traceback, or with no word at all; here it ends
with one line and the signal's exit code, like a signal at any later moment. This module
imports only the standard library and ``interrupt`` before the handlers are in place.
"""

from __future__ import annotations

import sys
import typing as t

from tap_amplitude.interrupt import BOUNDARY, Interrupted


def tap() -> None:
    """``tap-amplitude``."""
    BOUNDARY.install()
    try:
        from tap_amplitude.tap import TapAmplitude  # noqa: PLC0415 - after the handlers
    except Interrupted as stop:
        _stopped_while_starting("tap-amplitude", stop)
    TapAmplitude.cli()


def privacy() -> None:
    """``amplitude-privacy``."""
    BOUNDARY.install()
    try:
        from tap_amplitude.privacy.cli import main  # noqa: PLC0415 - after the handlers
    except Interrupted as stop:
        _stopped_while_starting("amplitude-privacy", stop)
    main()


def _stopped_while_starting(program: str, stop: Interrupted) -> t.NoReturn:
    sys.stderr.write(
        f"{program}: interrupted by {stop.signal_name} while starting; nothing was requested "
        "or written. Run the command again.\n"
    )
    sys.exit(stop.exit_code)
