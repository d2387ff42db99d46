"""What every ``amplitude-privacy`` command shares: config, the tap, output, signals, files.

The commands reuse the tap's streams, so every request gets the tap's authentication,
retries that honour ``Retry-After``, Amplitude's rate limits, and its one-line errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import threading
import typing as t
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import click
import requests
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.io_base import GenericSingerWriter
from typing_extensions import override

from tap_amplitude.client import REGION_HOSTS, api_base_url, request_failure
from tap_amplitude.interrupt import BOUNDARY, TERMINATION_SIGNALS, Interrupted, write_whole
from tap_amplitude.ratelimit import project_limiter
from tap_amplitude.settings import (
    EARLIEST_DATE,
    LATEST_DATE,
    base_url_problems,
    request_timeout_problem,
)
from tap_amplitude.tap import TapAmplitude
from tap_amplitude.timestamps import format_datetime

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

    from singer_sdk.singerlib import Message

PROG = "amplitude-privacy"
EXIT_OK = 0
EXIT_FAILURE = 1  # Amplitude refused or failed (auth, rejected, network, 5xx); stdout, disk
EXIT_USAGE = 2  # bad command line or config file
EXIT_INTERRUPTED = 130
MAX_IDS_PER_REQUEST = 100
# Longer values (ids, paths) are cut to this many characters in message lines.
SHOWN_CHARS = 40
# The days a deletion job can have: the tap's own bounds on dates (settings.py).
FIRST_DAY, LAST_DAY = EARLIEST_DATE.date(), LATEST_DATE.date()
DEFAULT_AUDIT_LOG = "amplitude-deletions.jsonl"
# The access package and the audit log hold personal data: their owner alone may read them.
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
# The settings these commands read; everything else in a shared tap config is ignored.
_CONFIG_KEYS = ("api_key", "secret_key", "region", "api_url", "profile_api_url")
# rate_limits: with a shared backend the CLI spends the same budget as the tap runs.
_OPTIONAL_KEYS = ("request_timeout", "rec_id", "org_api_key", "org_secret_key", "rate_limits")
_ORG_KEYS = ("org_api_key", "org_secret_key")

EPILOG = (
    "Exit codes: 0 success, 1 Amplitude refused or failed the request (credentials, rejected "
    "ids, network, server errors) or the output, a file or rate_limits.backend could not be "
    "used, 2 bad command line or config file, 130 interrupted."
)


class CliError(Exception):
    """A failure reported as one line on stderr; ``exit_code`` says what kind."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        """Keep the message and the exit code."""
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass
class RunState:
    """What this invocation has done so far, for the line printed if a signal stops it."""

    config_before_command: Path | None = None
    sending: bool = False  # a ``delete --yes`` run that may send requests
    waiting_for: Path | None = None  # the audit log another run holds
    audit_path: Path | None = None
    wanted: int = 0  # ids named on the command line
    accepted: int = 0  # of them, accepted per the audit log (earlier runs and this one)
    in_flight: str | None = None  # the batch whose request may have reached Amplitude
    resume_hint: str | None = None  # what a command other than delete says when stopped

    def interrupted(self, signal_name: str) -> str:
        """The one stderr line for a run a signal stopped: what was sent, what to do."""
        head = f"{PROG}: interrupted by {signal_name}"
        if self.waiting_for is not None:
            return (
                f"{head} while waiting for another run to release {self.waiting_for}; "
                "nothing was sent. Run the same command again."
            )
        return head + self._so_far()

    def output_lost(self, reason: str) -> str:
        """The one stderr line for a run whose standard output stopped taking its lines."""
        return (
            f"{PROG}: error: could not write to standard output ({reason}): whatever reads it "
            f"stopped or has no room left, so the output is incomplete{self._so_far()}"
        )

    def _so_far(self) -> str:
        """What the run changed in Amplitude before it stopped, and what to do next."""
        if self.resume_hint is not None:
            return f"; {self.resume_hint}"
        if not self.sending:
            return "; nothing was changed in Amplitude. Run the same command again."
        unknown = (
            f"; batch {self.in_flight} was in flight and may have been scheduled "
            "(a re-run sends it again)"
            if self.in_flight
            else ""
        )
        return (
            f": {self.accepted} of {self.wanted} ids accepted so far, recorded in "
            f"{self.audit_path}{unknown}. Run the same command again to send the rest; "
            "accepted ids are not sent again."
        )


class Shield:
    """Holds a termination signal while a deletion request is in flight and being recorded.

    Stopping between "Amplitude accepted the batch" and "the audit log says so" would make a
    re-run send the batch again, so the first signal waits until the answer is on disk
    (at most one request: retry pauses are not shielded). A second signal stops at once.
    """

    def __init__(self) -> None:
        """Not shielding, nothing held."""
        self._active = False
        self._held: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """Hold the first signal inside :meth:`holding`; anything else goes to the boundary."""
        if self._active and self._held is None:
            self._held = signum
            return
        BOUNDARY.handle(signum, frame)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Shield the block; a signal held meanwhile is raised right after it."""
        self._active = True
        try:
            yield
        finally:
            self._active = False
            if self._held is not None:
                signum, self._held = self._held, None
                raise Interrupted(signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Route termination signals through the shield for the block."""
        with signal_handlers(self.handle):
            yield


def _in_main_thread() -> bool:
    """Python lets only the main thread set signal handlers."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def signal_handlers(handler: t.Any) -> Iterator[None]:
    """Set SIGINT/SIGTERM handlers for the block (None: keep them), then restore the old ones."""
    if not _in_main_thread():
        yield
        return
    saved = {signum: signal.getsignal(signum) for signum in TERMINATION_SIGNALS}
    if handler is not None:
        for signum in TERMINATION_SIGNALS:
            signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, previous in saved.items():
            if previous is not None:
                signal.signal(signum, previous)


class _NoSingerMessages(GenericSingerWriter[str, "Message"]):
    """The tap's message writer here: these commands never write Singer messages.

    Their stdout is their own JSON lines; a STATE the SDK might emit (its signal handler
    does) would corrupt it, so anything the tap tries to write is dropped.
    """

    @override
    def serialize_message(self, message: Message) -> str:
        """Nothing is written, so nothing is serialized."""
        del message
        return ""

    @override
    def write_message(self, message: Message) -> None:
        """Drop the message."""
        del message


# ----------------------------------------------------------------------------------------
# config and plumbing


def load_config(path: Path) -> dict[str, t.Any]:
    """Read and check the settings the commands use, naming what is wrong (never a value)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(
            f"cannot read config file {path}: {exc.strerror or exc}", EXIT_USAGE
        ) from exc
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: [[[[…
        raise CliError(
            f"config file {path} is not valid JSON; it takes the tap's settings "
            '(e.g. {"api_key": "...", "secret_key": "..."})',
            EXIT_USAGE,
        ) from exc
    if not isinstance(data, dict):
        raise CliError(f"config file {path} must hold a JSON object of settings", EXIT_USAGE)
    problems = setting_problems(data)
    if problems:
        raise CliError(f"config file {path}: {'; '.join(problems)}", EXIT_USAGE)
    config = {key: data[key] for key in (*_CONFIG_KEYS, *_OPTIONAL_KEYS) if data.get(key)}
    config["region"] = data.get("region") or "us"
    try:  # the tap checks the rest (rate_limits, characters HTTP cannot carry) by name
        _new_tap(config)
    except ConfigValidationError as exc:
        raise CliError(
            f"config file {path}: {'; '.join(exc.errors or [str(exc)])}", EXIT_USAGE
        ) from exc
    return config


def setting_problems(data: dict[str, t.Any]) -> list[str]:
    """What is wrong with the settings the commands use, by name, never by value."""
    problems: list[str] = []
    missing = [
        key
        for key in ("api_key", "secret_key")
        if not isinstance(data.get(key), str) or not data[key].strip()
    ]
    if missing:
        problems.append(
            f"{' and '.join(missing)} missing or empty "
            "(copy them from Amplitude: Settings > Projects > General)"
        )
    region = data.get("region") or "us"
    if not isinstance(region, str) or region not in REGION_HOSTS:
        problems.append(f"region must be one of {', '.join(REGION_HOSTS)}")
    problems += [f"{key} {why}" for key, why in base_url_problems(data).items()]
    timeout = data.get("request_timeout")
    if timeout is not None and (problem := request_timeout_problem(timeout)):
        problems.append(f"request_timeout {problem}")
    rec_id = data.get("rec_id")
    if rec_id is not None and not isinstance(rec_id, str):
        problems.append("rec_id must be a string")
    org = [key for key in _ORG_KEYS if data.get(key) is not None]
    if any(not isinstance(data[key], str) or not data[key].strip() for key in org):
        problems.append("org_api_key and org_secret_key must be non-empty strings")
    elif len(org) == 1:
        problems.append("org_api_key and org_secret_key go together: give both or neither")
    return problems


def _new_tap(config: dict[str, t.Any]) -> TapAmplitude:
    """A tap for ``config``, which it validates (ConfigValidationError names what is wrong)."""
    # The tap requires start_date; none of these commands reads it.
    today = datetime.now(tz=timezone.utc).date().isoformat()
    # The SDK points SIGINT/SIGTERM at the tap, whose handler may write STATE: the handlers
    # in place before (``run`` installs the boundary's) are put back once the tap exists.
    with signal_handlers(None):
        return TapAmplitude(
            config={**config, "start_date": today},
            setup_mapper=False,
            message_writer=_NoSingerMessages(),
        )


@contextlib.contextmanager
def open_tap(config: dict[str, t.Any]) -> Iterator[TapAmplitude]:
    """A tap whose streams make the requests (no sync is run); its connections close after.

    The project's limiter is made first, so a ``rate_limits.backend`` that cannot be opened
    fails (SettingsError) before any request is sent or any audit line written.
    """
    tap = _new_tap(config)
    try:
        project_limiter(tap.config, api_base_url(tap.config))
        yield tap
    finally:
        tap.http_session.close()


def host_of(config: dict[str, t.Any]) -> str:
    """Scheme, host and port of the API base, without any ``user:password@``."""
    parts = urlsplit(api_base_url(config))
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}"


def emit(payload: t.Any) -> None:
    """One JSON line on stdout, written and flushed whole even if a signal arrives meanwhile.

    A closed, full or abandoned stdout raises OutputUnwritable here, not at exit, so the
    run reports the lost output instead of ending 0 (or with a traceback at shutdown).
    """
    line = json.dumps(payload, ensure_ascii=False, default=str)
    write_whole(f"{line}\n".encode())


def note(message: str) -> None:
    """One human line on stderr."""
    click.echo(f"{PROG}: {message}", err=True)


def day_of(value: datetime | None, default: date) -> date:
    """A ``--start-day``/``--end-day`` value as a date."""
    return value.date() if value else default


def shorten(text: str) -> str:
    """``text``, or its start and its length: one long value must not flood a message line."""
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}… ({len(text)} characters)"


def shown(value: str) -> str:
    """A user's value quoted for a one-line message: control characters escaped, cut short."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return f"{value[:SHOWN_CHARS]!r}… ({len(value)} characters)"


def text_problem(value: str) -> str | None:
    """Why a value from the command line cannot be sent to Amplitude, or None if it can."""
    if not value.strip():
        return "must not be empty or blank"
    try:
        value.encode()
    except UnicodeEncodeError:  # bytes the terminal's encoding could not decode
        return f"{shown(value)} is not valid UTF-8 text (check the terminal's encoding)"
    return None


def checked_ids(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """Click callback: a blank id would be sent as a search for nothing; refuse it first."""
    del ctx
    for value in values:
        if problem := text_problem(value):
            raise click.BadParameter(f"an id {problem}", param=param)
    return values


def finite_seconds(param: click.Parameter, value: float) -> float:
    """Refuse ``nan`` and ``inf``, which click's FloatRange lets through."""
    if not math.isfinite(value):
        raise click.BadParameter("must be a finite number of seconds", param=param)
    return value


class _Day(click.DateTime):
    """A YYYY-MM-DD day early enough that job windows and the day after it exist."""

    @override
    def convert(
        self, value: t.Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> t.Any:
        """The day as a datetime; one outside FIRST_DAY..LAST_DAY is a usage error."""
        parsed = super().convert(value, param, ctx)
        if not FIRST_DAY <= parsed.date() <= LAST_DAY:
            self.fail(
                f"{shown(str(value))} is out of range: days go from {FIRST_DAY} to {LAST_DAY}",
                param,
                ctx,
            )
        return parsed


DAY = _Day(formats=["%Y-%m-%d"])


_CONFIG_HELP = (
    "The tap's JSON config file (api_key, secret_key, region, api_url, profile_api_url; "
    "org_api_key and org_secret_key for access). "
    "Required; it goes before or after the command name: "
    f"'{PROG} --config FILE delete ...' and '{PROG} delete --config FILE ...' are the same."
)

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help=_CONFIG_HELP,
)


def run_state() -> RunState:
    """This invocation's :class:`RunState` (``run`` passes one; a bare ``cli()`` gets one)."""
    return click.get_current_context().ensure_object(RunState)


def resolve_config(given: Path | None) -> Path:
    """The config file named after the command name, or else before it."""
    before = run_state().config_before_command
    if given is not None and before is not None and given != before:
        raise click.UsageError(
            f"--config names {before} before the command and {given} after it; give it once"
        )
    path = given or before
    if path is None:
        raise click.UsageError("Missing option '--config' (before or after the command name)")
    return path


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@config_option
def cli(config_path: Path | None) -> None:
    """Answer access requests and delete users' data in Amplitude (GDPR/CCPA).

    Every command reads the tap's config file (--config FILE, before or after the command
    name) and talks to that one project.
    """
    run_state().config_before_command = config_path


# ----------------------------------------------------------------------------------------
# lookup


def failure_reason(exc: Exception) -> str:
    """One line for an API or network failure, without secrets."""
    if isinstance(exc, requests.RequestException):
        return request_failure(exc)
    return str(exc).rstrip(".")


def now_text() -> str:
    """The audit log's timestamp: RFC 3339 UTC."""
    return format_datetime(datetime.now(tz=timezone.utc))


def key_hash(key: str) -> str:
    """A short, stable hash naming a project (or organisation) by its API key, never the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def region_of(config: dict[str, t.Any]) -> str:
    """``us`` or ``eu``."""
    return str(config.get("region") or "us")


# ----------------------------------------------------------------------------------------
# files readable by their owner only


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as needed; the folder itself ends up 0700."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIR_MODE)
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` a file that is created 0600 and tightened to 0600 if it already existed."""
    fd = os.open(path, flags | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o777 != PRIVATE_FILE_MODE:
            os.fchmod(fd, PRIVATE_FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, as a 0600 file forced to disk."""
    temporary = path.with_name(f".{path.name}.partial")
    fd = open_private(temporary, os.O_WRONLY | os.O_TRUNC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    temporary.replace(path)


def write_private_json(path: Path, payload: t.Any) -> None:
    """:func:`write_private` for an indented JSON document."""
    text = json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n"
    write_private(path, text.encode("utf-8"))
