"""``amplitude-privacy``: data discovery and safe GDPR deletion for one Amplitude project.

The commands reuse the tap's streams (``user_search``, ``user_profiles``, ``deletion_jobs``), so
every request gets the tap's authentication, retries that honour ``Retry-After``, the privacy
API's 1 request/second limiter, and its one-line errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import typing as t
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import click
import requests
from singer_sdk.exceptions import RetriableAPIError

from tap_amplitude.client import REGION_HOSTS, AmplitudeError, api_base_url
from tap_amplitude.streams.privacy import (
    DELETIONS_PATH,
    JOBS_LOOKAHEAD_DAYS,
    DeletionJobsStream,
    RequestRejectedError,
    UserProfilesStream,
    profile_api_available,
)
from tap_amplitude.streams.users import UserSearchStream
from tap_amplitude.tap import TapAmplitude
from tap_amplitude.timestamps import format_datetime

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

PROG = "amplitude-privacy"
EXIT_OK = 0
EXIT_FAILURE = 1  # Amplitude refused or failed: auth, rejected request, network, 5xx
EXIT_USAGE = 2  # bad command line or config file
EXIT_INTERRUPTED = 130
MAX_IDS_PER_REQUEST = 100
DEFAULT_AUDIT_LOG = "amplitude-deletions.jsonl"
# The settings these commands read; everything else in a shared tap config is ignored.
_CONFIG_KEYS = ("api_key", "secret_key", "region", "api_url", "profile_api_url")
_OPTIONAL_KEYS = ("request_timeout", "rec_id")

_EPILOG = (
    "Exit codes: 0 success, 1 Amplitude refused or failed the request (credentials, rejected "
    "ids, network, server errors), 2 bad command line or config file, 130 interrupted."
)


class CliError(Exception):
    """A failure reported as one line on stderr; ``exit_code`` says what kind."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        """Keep the message and the exit code."""
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


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
    except (ValueError, UnicodeDecodeError) as exc:
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
    if (data.get("region") or "us") not in REGION_HOSTS:
        problems.append(f"region must be one of {', '.join(REGION_HOSTS)}")
    for key in ("api_url", "profile_api_url"):
        value = data.get(key)
        if value is not None:
            parts = urlsplit(str(value))
            if parts.scheme not in {"http", "https"} or not parts.netloc:
                problems.append(f"{key} must be an http(s) URL")
    timeout = data.get("request_timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        problems.append("request_timeout must be a number of seconds above 0")
    rec_id = data.get("rec_id")
    if rec_id is not None and not isinstance(rec_id, str):
        problems.append("rec_id must be a string")
    return problems


@contextlib.contextmanager
def open_tap(config: dict[str, t.Any]) -> Iterator[TapAmplitude]:
    """A tap whose streams make the requests (no sync is run); its connections close after."""
    # The tap requires start_date; none of these commands reads it.
    today = datetime.now(tz=timezone.utc).date().isoformat()
    tap = TapAmplitude(config={**config, "start_date": today}, setup_mapper=False)
    try:
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


def _emit(payload: t.Any) -> None:
    """One JSON line on stdout."""
    click.echo(json.dumps(payload, ensure_ascii=False, default=str))


def _note(message: str) -> None:
    """One human line on stderr."""
    click.echo(f"{PROG}: {message}", err=True)


def _day(value: datetime | None, default: date) -> date:
    """A ``--start-day``/``--end-day`` value as a date."""
    return value.date() if value else default


config_option = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The tap's JSON config file (api_key, secret_key, region, api_url, profile_api_url).",
)


@click.group(epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Answer access requests and delete users' data in Amplitude (GDPR/CCPA).

    Every command reads the tap's config file (--config) and talks to that one project.
    """


# ----------------------------------------------------------------------------------------
# lookup


@cli.command(epilog=_EPILOG)
@config_option
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
def lookup(config_path: Path, ids: tuple[str, ...]) -> None:
    """Show what Amplitude holds about each person (data discovery).

    Each ID (an email or user id, a device id, or an Amplitude id) gives one JSON line: the
    user-search matches, their Amplitude ids and user ids, and, in the US region, each
    matched user's profile (user properties, cohort ids, and recommendations if the config
    has rec_id). The User Profile API does not exist in the EU region; there profiles are
    null. Nothing is changed in Amplitude.
    """
    config = load_config(config_path)
    if not profile_api_available(config):
        _note(
            "the User Profile API is not available in the EU region; "
            "showing user search results only (profiles: null)."
        )
    with open_tap(config) as tap:
        search = UserSearchStream(tap=tap)
        profiles = UserProfilesStream(tap=tap) if profile_api_available(config) else None
        for term in dict.fromkeys(ids):
            _emit(_discover(term, search, profiles))


def _discover(
    term: str, search: UserSearchStream, profiles: UserProfilesStream | None
) -> dict[str, t.Any]:
    """Everything Amplitude holds for one search term."""
    matches = [
        {key: value for key, value in match.items() if key != "search_term"}
        for match in search.request_records({"search_term": term})
    ]
    return {
        "query": term,
        "found": bool(matches),
        "matches": matches,
        "amplitude_ids": list(dict.fromkeys(m["amplitude_id"] for m in matches)),
        "user_ids": list(dict.fromkeys(m["user_id"] for m in matches if m.get("user_id"))),
        "profiles": None if profiles is None else _profiles(profiles, term, matches),
    }


def _profiles(
    stream: UserProfilesStream, term: str, matches: list[dict[str, t.Any]]
) -> list[dict[str, t.Any]]:
    """Profiles of the matched users; an anonymous device match is looked up by device id."""
    found: list[dict[str, t.Any]] = []
    asked: set[tuple[str, str]] = set()
    for match in matches:
        user_id = match.get("user_id")
        if user_id:
            key = ("user_id", str(user_id))
        elif match.get("match_type") == "match_user_or_device_id":
            key = ("device_id", term)
        else:
            continue
        if key in asked:
            continue
        asked.add(key)
        profile = stream.fetch(**{key[0]: key[1]})
        if profile is not None:
            found.append(profile)
    return found


# ----------------------------------------------------------------------------------------
# jobs


@cli.command(epilog=_EPILOG)
@config_option
@click.option(
    "--start-day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help=f"First job day, YYYY-MM-DD (default: {JOBS_LOOKAHEAD_DAYS} days ago, UTC).",
)
@click.option(
    "--end-day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help=f"Last job day, YYYY-MM-DD (default: today + {JOBS_LOOKAHEAD_DAYS} days).",
)
def jobs(config_path: Path, start_day: datetime | None, end_day: datetime | None) -> None:
    """List deletion jobs scheduled between two days, one JSON line per job.

    Each job has its day, status (staging: still editable; submitted: locked; done), the
    Amplitude ids in it with requester and request day, and active_scrub_done_date. Ranges
    longer than Amplitude's six-month limit are split into several requests.
    """
    config = load_config(config_path)
    today = datetime.now(tz=timezone.utc).date()
    first = _day(start_day, today - timedelta(days=JOBS_LOOKAHEAD_DAYS))
    last = _day(end_day, today + timedelta(days=JOBS_LOOKAHEAD_DAYS))
    if last < first:
        raise click.BadParameter("must not be before --start-day", param_hint="--end-day")
    with open_tap(config) as tap:
        for job in DeletionJobsStream(tap=tap).jobs(first, last):
            _emit(job)


# ----------------------------------------------------------------------------------------
# delete


class AuditLog:
    """Append-only JSON lines recording every deletion batch, read back to resume.

    Before each request a ``sending`` line is written and flushed to disk, then an
    ``accepted``, ``rejected`` or ``failed`` line. Only ``accepted`` ids count as done, so a
    run interrupted at any point can simply be run again. Lines carry ``project``, a short
    hash of the API key, so one log can serve several projects without mixing them up.
    """

    def __init__(self, path: Path, api_key: str) -> None:
        """Bind the log to the project identified by ``api_key``."""
        self.path = path
        self.project = hashlib.sha256(api_key.encode()).hexdigest()[:12]

    def accepted(self, *, delete_from_org: bool) -> set[tuple[str, str]]:
        """``(kind, id)`` pairs this project already had accepted, for the same scope.

        Ids Amplitude reported as invalid do not count: a later run asks again. An org-wide
        deletion covers a project-only request; the reverse does not hold.
        """
        done: set[tuple[str, str]] = set()
        if not self.path.exists():
            return done
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    _note(f"{self.path} line {number} is not JSON; ignoring it")
                    continue
                if (
                    isinstance(entry, dict)
                    and entry.get("event") == "accepted"
                    and entry.get("project") == self.project
                    and (entry.get("delete_from_org") or not delete_from_org)
                ):
                    invalid = {str(value) for value in entry.get("invalid_ids") or []}
                    done.update(key for key in _id_keys(entry) if key[1] not in invalid)
        return done

    def append(self, entry: dict[str, t.Any]) -> None:
        """Write one line and force it to disk before anything else happens."""
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise CliError(
                f"cannot write the audit log {self.path} ({exc.strerror or exc}); "
                "nothing further was sent. Fix the path or pass --audit-log.",
            ) from exc


def _id_keys(entry: dict[str, t.Any]) -> set[tuple[str, str]]:
    """The ``(kind, id)`` pairs a body or an audit line names."""
    keys = {("amplitude_id", str(value)) for value in entry.get("amplitude_ids") or []}
    keys |= {("user_id", str(value)) for value in entry.get("user_ids") or []}
    return keys


def read_id_file(path: Path) -> list[tuple[str, str]]:
    """Ids from a file: one per line, ``amplitude_id:N``, ``user_id:X`` or a bare user id.

    Blank lines and lines starting with ``#`` are skipped.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="--from-file") from exc
    ids: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        kind, sep, value = line.partition(":")
        if sep and kind.strip() in {"amplitude_id", "user_id"}:
            kind, value = kind.strip(), value.strip()
        else:
            kind, value = "user_id", line
        if not value:
            raise click.BadParameter(f"{path} line {number}: no id", param_hint="--from-file")
        if kind == "amplitude_id":
            if not value.isdigit():
                raise click.BadParameter(
                    f"{path} line {number}: Amplitude ids are numbers", param_hint="--from-file"
                )
            value = str(int(value))  # one spelling per id, so the audit log recognises it
        ids.append((kind, value))
    return ids


def batch_bodies(
    ids: Sequence[tuple[str, str]],
    *,
    requester: str,
    ignore_invalid_ids: bool,
    delete_from_org: bool,
) -> list[dict[str, t.Any]]:
    """Request bodies of at most 100 ids each, Amplitude ids and user ids mixed."""
    bodies: list[dict[str, t.Any]] = []
    for start in range(0, len(ids), MAX_IDS_PER_REQUEST):
        chunk = ids[start : start + MAX_IDS_PER_REQUEST]
        bodies.append(
            {
                "amplitude_ids": [int(value) for kind, value in chunk if kind == "amplitude_id"],
                "user_ids": [value for kind, value in chunk if kind == "user_id"],
                "requester": requester,
                "ignore_invalid_id": ignore_invalid_ids,
                "delete_from_org": delete_from_org,
            }
        )
    return bodies


@cli.command(epilog=_EPILOG)
@config_option
@click.option("--user-id", "user_ids", multiple=True, metavar="ID", help="A user id (repeatable).")
@click.option(
    "--amplitude-id",
    "amplitude_ids",
    multiple=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="An Amplitude id (repeatable).",
)
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="More ids, one per line: amplitude_id:N, user_id:X, or a bare user id.",
)
@click.option(
    "--requester",
    required=True,
    metavar="EMAIL",
    help="Who asked for the deletion; Amplitude keeps it with the job.",
)
@click.option("--yes", is_flag=True, help="Really send the requests (default: dry run).")
@click.option(
    "--ignore-invalid-ids",
    is_flag=True,
    help="Skip ids Amplitude does not know instead of rejecting their whole batch.",
)
@click.option(
    "--delete-from-org",
    is_flag=True,
    help="Delete the users from every project of the organisation, not just this one.",
)
@click.option(
    "--audit-log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_AUDIT_LOG,
    show_default=True,
    help="JSON-lines record of every batch; ids accepted there are never sent again.",
)
def delete(  # noqa: PLR0913, PLR0917 - one parameter per option
    config_path: Path,
    user_ids: tuple[str, ...],
    amplitude_ids: tuple[int, ...],
    from_file: Path | None,
    requester: str,
    yes: bool,  # noqa: FBT001 - click flag
    ignore_invalid_ids: bool,  # noqa: FBT001
    delete_from_org: bool,  # noqa: FBT001
    audit_log: Path,
) -> None:
    """Schedule deletion of users' data (POST /api/2/deletions/users).

    Without --yes this is a dry run: it prints each request it would send (method, path,
    JSON body) and sends nothing. With --yes it sends batches of at most 100 ids, at most
    one request per second, retrying rate limits and server errors, and appends each
    accepted batch (time, ids, requester, job day and status, invalid ids) to the audit
    log. Ids the audit log shows as accepted are skipped, so an interrupted or failed run
    can simply be run again.
    """
    requester = requester.strip()
    if not requester:
        raise click.BadParameter("must not be empty", param_hint="--requester")
    wanted = [("user_id", value.strip()) for value in user_ids if value.strip()]
    wanted += [("amplitude_id", str(value)) for value in amplitude_ids]
    if from_file is not None:
        wanted += read_id_file(from_file)
    wanted = list(dict.fromkeys(wanted))
    if not wanted:
        raise click.UsageError("nothing to delete: give --user-id, --amplitude-id or --from-file")
    config = load_config(config_path)
    audit = AuditLog(audit_log, config["api_key"])
    done = audit.accepted(delete_from_org=delete_from_org)
    pending = [key for key in wanted if key not in done]
    if len(pending) < len(wanted):
        _note(f"skipping {len(wanted) - len(pending)} ids already accepted per {audit_log}")
    if not pending:
        _note("nothing to send: every id was already accepted.")
        return
    bodies = batch_bodies(
        pending,
        requester=requester,
        ignore_invalid_ids=ignore_invalid_ids,
        delete_from_org=delete_from_org,
    )
    if not yes:
        for body in bodies:
            _emit({"method": "POST", "path": DELETIONS_PATH, "body": body})
        _note(
            f"dry run: {len(bodies)} request(s) for {len(pending)} ids to {host_of(config)}; "
            "nothing was sent. Add --yes to send them."
        )
        return
    with open_tap(config) as tap:
        _submit(DeletionJobsStream(tap=tap, name="deletions"), audit, bodies, config)


def _submit(
    stream: DeletionJobsStream,
    audit: AuditLog,
    bodies: list[dict[str, t.Any]],
    config: dict[str, t.Any],
) -> None:
    """Send each batch, recording it before and after; stop at the first failure."""
    invalid_total = 0
    for index, body in enumerate(bodies, 1):
        batch = f"{index}/{len(bodies)}"
        record = {
            "project": audit.project,
            "batch": batch,
            "requester": body["requester"],
            "delete_from_org": body["delete_from_org"],
            "ignore_invalid_ids": body["ignore_invalid_id"],
            "amplitude_ids": body["amplitude_ids"],
            "user_ids": body["user_ids"],
        }
        audit.append({"time": _now(), "event": "sending", **record})
        try:
            response = stream.submit(body)
        except RequestRejectedError as exc:
            audit.append({"time": _now(), "event": "rejected", **record, "error": exc.reason})
            hint = (
                "Correct or remove the ids Amplitude does not know and run again, or run "
                "again with --ignore-invalid-ids to skip them"
                if not body["ignore_invalid_id"]
                else "Fix the request and run again"
            )
            raise CliError(
                f"Amplitude rejected batch {batch} (HTTP 400: {exc.reason}); nothing in it "
                f"was scheduled. {_progress(index, audit)} {hint}; accepted ids are never "
                "sent again."
            ) from exc
        except (AmplitudeError, RetriableAPIError, requests.RequestException) as exc:
            reason = _failure_reason(exc, config)
            audit.append({"time": _now(), "event": "failed", **record, "error": reason})
            raise CliError(
                f"{reason}. Batch {batch} may not have been scheduled. {_progress(index, audit)} "
                "Run the same command again to resume; accepted ids are never sent again."
            ) from exc
        jobs = _jobs_of(response)
        invalid = [value for job in jobs for value in job.get("invalid_ids") or []]
        invalid_total += len(invalid)
        entry = {
            "time": _now(),
            "event": "accepted",
            **record,
            "jobs": [
                {"app": job.get("app"), "day": job.get("day"), "status": job.get("status")}
                for job in jobs
            ],
            "invalid_ids": invalid,
        }
        audit.append(entry)
        _emit(entry)
    skipped = f" ({invalid_total} unknown to Amplitude and skipped)" if invalid_total else ""
    _note(f"{len(bodies)} batch(es) accepted{skipped}; audit log: {audit.path}")


def _jobs_of(response: requests.Response) -> list[dict[str, t.Any]]:
    """The job(s) a deletion request landed in: one object, or one per project (org-wide)."""
    try:
        payload = response.json()
    except ValueError:
        return []
    items = payload if isinstance(payload, list) else [payload]
    return [item for item in items if isinstance(item, dict)]


def _progress(index: int, audit: AuditLog) -> str:
    """How many earlier batches of this run went through, and where they are recorded."""
    earlier = index - 1
    if not earlier:
        return "No earlier batch of this run was sent."
    return f"The {earlier} earlier batch(es) were accepted and are recorded in {audit.path}."


def _failure_reason(exc: Exception, config: dict[str, t.Any]) -> str:
    """One line for an API or network failure, without secrets."""
    if isinstance(exc, requests.RequestException):
        return (
            f"could not reach Amplitude at {host_of(config)} ({type(exc).__name__}); "
            "check api_url/region and the network"
        )
    return str(exc).rstrip(".")


def _now() -> str:
    """The audit log's timestamp: RFC 3339 UTC."""
    return format_datetime(datetime.now(tz=timezone.utc))


# ----------------------------------------------------------------------------------------
# entry point


class _NotFromBackoff(logging.Filter):
    """Drop the backoff library's own lines: retries are logged by the streams, failures by us."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep records not emitted from inside the ``backoff`` package."""
        return "backoff" not in Path(record.pathname).parts


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
    handler.addFilter(_NotFromBackoff())
    saved = tap_logger.propagate, sdk_logger.propagate
    tap_logger.addHandler(handler)
    tap_logger.propagate = sdk_logger.propagate = False
    try:
        yield
    finally:
        tap_logger.removeHandler(handler)
        tap_logger.propagate, sdk_logger.propagate = saved


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure becomes one stderr line and an exit code."""
    with _stderr_logging():
        try:
            result = cli.main(
                args=list(argv) if argv is not None else None,
                prog_name=PROG,
                standalone_mode=False,
            )
        except Exception as exc:
            described = _describe_failure(exc)
            if described is None:
                raise
            click.echo(described[0], err=True)
            return described[1]
    return result if isinstance(result, int) else EXIT_OK


def _describe_failure(exc: Exception) -> tuple[str, int] | None:  # noqa: PLR0911 - one per kind
    """The stderr line and exit code for a failure users can act on; None for a bug."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        return exc.format_message(), EXIT_USAGE
    if isinstance(exc, click.UsageError):
        command = exc.ctx.command_path if exc.ctx else PROG
        message = exc.format_message().rstrip(".")
        return f"{command}: error: {message}. See '{command} --help'.", EXIT_USAGE
    if isinstance(exc, click.Abort):
        return f"{PROG}: interrupted; run the same command again to resume.", EXIT_INTERRUPTED
    if isinstance(exc, CliError):
        return f"{PROG}: error: {exc.message}", exc.exit_code
    if isinstance(exc, AmplitudeError):
        return f"{PROG}: error: {exc}", EXIT_FAILURE
    if isinstance(exc, RetriableAPIError):
        return f"{PROG}: error: {exc} (still failing after retries)", EXIT_FAILURE
    if isinstance(exc, requests.RequestException):
        message = (
            f"{PROG}: error: could not reach Amplitude ({type(exc).__name__}); "
            "check api_url/region and the network"
        )
        return message, EXIT_FAILURE
    return None


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
