"""``delete`` (schedule deletions), ``cancel`` (take an id out of a staging job), ``verify``."""

from __future__ import annotations

import functools
import typing as t
from datetime import date, datetime
from pathlib import Path

import click
import requests
from singer_sdk.exceptions import RetriableAPIError

from tap_amplitude.client import AmplitudeError
from tap_amplitude.privacy.audit import AuditLog, id_keys
from tap_amplitude.privacy.base import (
    DAY,
    DEFAULT_AUDIT_LOG,
    EPILOG,
    MAX_IDS_PER_REQUEST,
    PROG,
    CliError,
    RunState,
    Shield,
    checked_ids,
    cli,
    config_option,
    emit,
    failure_reason,
    host_of,
    load_config,
    note,
    now_text,
    open_tap,
    resolve_config,
    run_state,
    text_problem,
)
from tap_amplitude.privacy.identities import Identities, MappedUser
from tap_amplitude.streams.privacy import (
    DELETIONS_PATH,
    DeletionJobsStream,
    RequestRejectedError,
    UserProfilesStream,
    profile_api_available,
)
from tap_amplitude.streams.users import UserSearchStream

if t.TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from singer_sdk.helpers.types import Context


def read_id_file(path: Path) -> list[tuple[str, str]]:
    """Ids from a file: one per line, ``amplitude_id:N``, ``user_id:X`` or a bare user id.

    Blank lines and lines starting with ``#`` are skipped.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path} ({exc.strerror or exc})", param_hint="--from-file"
        ) from exc
    except UnicodeDecodeError as exc:
        raise click.BadParameter(
            f"{path} is not UTF-8 text; save it as UTF-8, one id per line",
            param_hint="--from-file",
        ) from exc
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
    include_mapped: bool = False,
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
        if include_mapped:  # changes only Amplitude's answer (§17.2); the ids are added here
            bodies[-1]["include_mapped_user_ids"] = True
    return bodies


@cli.command(epilog=EPILOG)
@config_option
@click.option(
    "--user-id",
    "user_ids",
    multiple=True,
    metavar="ID",
    callback=checked_ids,
    help="A user id (repeatable).",
)
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
    "--include-mapped",
    is_flag=True,
    help=(
        "Also delete the users mapped into or out of these users (user mapping lookup); "
        "the dry run shows which ids were added and why."
    ),
)
@click.option(
    "--audit-log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_AUDIT_LOG,
    show_default=True,
    help="JSON-lines record of every batch; ids accepted there are never sent again.",
)
def delete(  # noqa: C901, PLR0913, PLR0917 - one parameter per option
    config_path: Path | None,
    user_ids: tuple[str, ...],
    amplitude_ids: tuple[int, ...],
    from_file: Path | None,
    requester: str,
    yes: bool,  # noqa: FBT001 - click flag
    ignore_invalid_ids: bool,  # noqa: FBT001
    delete_from_org: bool,  # noqa: FBT001
    include_mapped: bool,  # noqa: FBT001
    audit_log: Path,
) -> None:
    """Schedule deletion of users' data (POST /api/2/deletions/users).

    Without --yes this is a dry run: it prints each request it would send (method, path,
    JSON body) and sends nothing. With --yes it sends batches of at most 100 ids, at most
    one request per second, retrying rate limits and server errors, and appends each
    accepted batch (time, ids, requester, job day and status, invalid ids) to the audit
    log. Ids the audit log shows as accepted are skipped, so an interrupted or failed run
    can simply be run again. While a run sends, it holds the audit log: a second run on the
    same log waits for it, then skips the ids it had accepted.

    --include-mapped looks the users up in Amplitude's user mapping and adds every user
    mapped into or out of them (Amplitude's include_mapped_user_ids flag does not delete
    them by itself); the added ids and the reason are printed (dry run) or logged.
    """
    if problem := text_problem(requester):
        raise click.BadParameter(problem, param_hint="--requester")
    requester = requester.strip()
    wanted = [("user_id", value.strip()) for value in user_ids]
    wanted += [("amplitude_id", str(value)) for value in amplitude_ids]
    if from_file is not None:
        wanted += read_id_file(from_file)
    wanted = list(dict.fromkeys(wanted))
    if not wanted:
        raise click.UsageError("nothing to delete: give --user-id, --amplitude-id or --from-file")
    config = load_config(resolve_config(config_path))
    audit = AuditLog(audit_log, config["api_key"])
    batches = functools.partial(
        batch_bodies,
        requester=requester,
        ignore_invalid_ids=ignore_invalid_ids,
        delete_from_org=delete_from_org,
        include_mapped=include_mapped,
    )
    added: list[tuple[tuple[str, str], MappedUser]] = []
    if include_mapped:
        added = _mapped_ids(config, wanted)
        wanted += [key for key, _ in added]
        for key, mapped in added:
            if not yes:
                emit({"added": {key[0]: key[1]}, "because": mapped.reason(), "for": mapped.of})
        note(
            f"--include-mapped: {len(added)} mapped user id(s) added"
            + (f" ({', '.join(k[1] for k, _ in added)})" if added else "")
        )
    if not yes:
        pending = _pending(audit, wanted, delete_from_org=delete_from_org)
        bodies = batches(pending)
        for body in bodies:
            emit({"method": "POST", "path": DELETIONS_PATH, "body": body})
        if pending:
            note(
                f"dry run: {len(bodies)} request(s) for {len(pending)} ids to "
                f"{host_of(config)}; nothing was sent. Add --yes to send them."
            )
        return
    state = run_state()
    state.sending, state.audit_path, state.wanted = True, audit_log, len(wanted)

    def waiting() -> None:
        state.waiting_for = audit_log
        note(
            f"another {PROG} run is sending deletions with {audit_log}; waiting for it to "
            "finish, then the ids it had accepted are skipped..."
        )

    with audit.locked(on_wait=waiting):
        state.waiting_for = None
        for key, mapped in added:
            audit.append(
                {
                    "time": now_text(),
                    "event": "mapped-id-added",
                    "project": audit.project,
                    "user_ids": [key[1]],
                    "amplitude_ids": [],
                    "for": mapped.of,
                    "because": mapped.reason(),
                }
            )
        pending = _pending(audit, wanted, delete_from_org=delete_from_org)
        state.accepted = len(wanted) - len(pending)
        if pending:
            with open_tap(config) as tap:
                sender = _DeletionSender(tap=tap, name="deletions")
                _submit(sender, audit, batches(pending), state)


def _pending(
    audit: AuditLog, wanted: list[tuple[str, str]], *, delete_from_org: bool
) -> list[tuple[str, str]]:
    """The ids the audit log does not show as accepted, saying how many were skipped."""
    done = audit.accepted(delete_from_org=delete_from_org)
    pending = [key for key in wanted if key not in done]
    if len(pending) < len(wanted):
        note(f"skipping {len(wanted) - len(pending)} ids already accepted per {audit.path}")
    if not pending:
        note("nothing to send: every id was already accepted.")
    return pending


class _DeletionSender(DeletionJobsStream):
    """Sends deletion requests; each answer is recorded before a signal can stop the run."""

    def send_batch(
        self,
        body: dict[str, t.Any],
        batch: str,
        state: RunState,
        record: Callable[[requests.Response], None],
    ) -> None:
        """POST ``body`` through the stream's limiter and retries; ``record`` an acceptance.

        Each attempt, from sending the request to ``record`` returning, is shielded from
        termination signals (see :class:`Shield`); the pauses between attempts are not.
        ``record`` clears ``state.in_flight`` once the acceptance is in the audit log, so a
        failure after that (stdout) does not call the batch's outcome unknown.
        """
        shield = Shield()

        def attempt(
            prepared_request: requests.PreparedRequest, _context: Context | None
        ) -> requests.Response:
            with shield.holding():
                state.in_flight = batch
                try:
                    response = self.requests_session.send(
                        prepared_request, timeout=self.timeout, allow_redirects=False
                    )
                    self.validate_response(response)
                except (requests.ConnectionError, requests.Timeout):
                    raise  # the request may have arrived: its outcome is unknown
                except Exception:
                    state.in_flight = None  # Amplitude answered: nothing was scheduled
                    raise
                record(response)  # clears state.in_flight once the answer is on disk
            return response

        prepared = self.build_prepared_request(
            method="POST", url=self.get_url(None), headers=self.http_headers, json=body
        )
        with shield.installed():
            self.request_decorator(attempt)(prepared, None)


def _submit(
    sender: _DeletionSender,
    audit: AuditLog,
    bodies: list[dict[str, t.Any]],
    state: RunState,
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
        audit.append({"time": now_text(), "event": "sending", **record})

        def accepted(response: requests.Response, record: dict[str, t.Any] = record) -> None:
            nonlocal invalid_total
            jobs = jobs_of(response)
            invalid = [value for job in jobs for value in job.get("invalid_ids") or []]
            entry = {
                "time": now_text(),
                "event": "accepted",
                **record,
                "jobs": [
                    {"app": job.get("app"), "day": job.get("day"), "status": job.get("status")}
                    for job in jobs
                ],
                "invalid_ids": invalid,
            }
            audit.append(entry)
            state.in_flight = None  # its outcome is on disk, whatever happens to stdout
            named = len(id_keys(record))
            state.accepted += named - len({str(value) for value in invalid} & _id_values(record))
            invalid_total += len(invalid)
            emit(entry)

        try:
            sender.send_batch(body, batch, state, accepted)
        except RequestRejectedError as exc:
            audit.append({"time": now_text(), "event": "rejected", **record, "error": exc.reason})
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
            reason = failure_reason(exc)
            audit.append({"time": now_text(), "event": "failed", **record, "error": reason})
            raise CliError(
                f"{reason}. Batch {batch} may not have been scheduled. {_progress(index, audit)} "
                "Run the same command again to resume; accepted ids are never sent again."
            ) from exc
    skipped = f" ({invalid_total} unknown to Amplitude and skipped)" if invalid_total else ""
    note(f"{len(bodies)} batch(es) accepted{skipped}; audit log: {audit.path}")


def _id_values(entry: dict[str, t.Any]) -> set[str]:
    """The ids an audit line names, as strings."""
    return {value for _kind, value in id_keys(entry)}


def jobs_of(response: requests.Response) -> list[dict[str, t.Any]]:
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


def _mapped_ids(
    config: dict[str, t.Any], wanted: list[tuple[str, str]]
) -> list[tuple[tuple[str, str], MappedUser]]:
    """User ids mapped into or out of the wanted users, not wanted already, with the reason.

    Amplitude ids are first turned into user ids with user search (the mapping is keyed by
    user id, §15.2).
    """
    with open_tap(config) as tap:
        user_ids = [value for kind, value in wanted if kind == "user_id"]
        search = UserSearchStream(tap=tap)
        for kind, value in wanted:
            if kind == "amplitude_id":
                user_ids += [
                    str(match["user_id"])
                    for match in search.request_records({"search_term": value})
                    if match.get("user_id") and str(match.get("amplitude_id")) == value
                ]
        mapped = Identities(tap=tap).mapped_users(user_ids) if user_ids else []
    known = {value for _, value in wanted}
    added: list[tuple[tuple[str, str], MappedUser]] = []
    for user in mapped:
        if user.user_id in known or (
            user.amplitude_id is not None and str(user.amplitude_id) in known
        ):
            continue
        known.add(user.user_id)
        added.append((("user_id", user.user_id), user))
    return added


# ----------------------------------------------------------------------------------------
# cancel


class _JobEditor(DeletionJobsStream):
    """Lists one day's job and takes an id out of it, through the 1-per-second limiter."""

    def job(self, day: date) -> dict[str, t.Any] | None:
        """The job on ``day``, if there is one."""
        return next((job for job in self.jobs(day, day) if job.get("day") == day.isoformat()), None)

    def remove(self, amplitude_id: int, day: date) -> dict[str, t.Any]:
        """``DELETE /api/2/deletions/users/{amplitude_id}/{day}``; the removed entry."""
        prepared = self.build_prepared_request(
            method="DELETE",
            url=f"{self.get_url(None)}/{amplitude_id}/{day.isoformat()}",
            headers=self.http_headers,
        )
        response = self.send(prepared)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        return payload if isinstance(payload, dict) else {"amplitude_id": amplitude_id}


@cli.command(epilog=EPILOG)
@config_option
@click.option(
    "--amplitude-id",
    required=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="The Amplitude id to take out of the job.",
)
@click.option(
    "--day",
    required=True,
    type=DAY,
    help="The job's day, YYYY-MM-DD (as 'jobs' and the audit log show it).",
)
@click.option("--yes", is_flag=True, help="Really remove it (default: dry run).")
@click.option(
    "--audit-log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_AUDIT_LOG,
    show_default=True,
    help="JSON-lines log the removal is recorded in.",
)
def cancel(
    config_path: Path | None,
    amplitude_id: int,
    day: datetime,
    yes: bool,  # noqa: FBT001 - click flag
    audit_log: Path,
) -> None:
    """Take one Amplitude id out of a deletion job that is still staging.

    Amplitude allows it only while the job is staging (until 3 days before its day); a
    submitted or done job is refused in one line, and nothing is changed. Without --yes
    this is a dry run that prints the request. The removal (or Amplitude's refusal) is
    recorded in the audit log, and the id no longer counts as accepted there, so a later
    'delete' would send it again.
    """
    config = load_config(resolve_config(config_path))
    job_day = day.date()
    audit = AuditLog(audit_log, config["api_key"])
    path = f"{DELETIONS_PATH}/{amplitude_id}/{job_day.isoformat()}"
    with open_tap(config) as tap:
        editor = _JobEditor(tap=tap, name="deletions")
        job = editor.job(job_day)
        entry = (
            None
            if job is None
            else next(
                (
                    e
                    for e in job.get("amplitude_ids") or []
                    if e.get("amplitude_id") == amplitude_id
                ),
                None,
            )
        )
        record = {
            "project": audit.project,
            "day": job_day.isoformat(),
            "amplitude_ids": [amplitude_id],
            "user_ids": [entry["user_id"]] if entry and entry.get("user_id") else [],
        }
        refusal = _cancel_refusal(job, entry, amplitude_id, job_day)
        if refusal is not None:
            if yes:
                audit.append(
                    {"time": now_text(), "event": "cancel-refused", **record, "error": refusal}
                )
            raise CliError(f"{refusal}; nothing was changed.")
        if not yes:
            emit(
                {
                    "method": "DELETE",
                    "path": path,
                    "job": {"day": job_day.isoformat(), "status": "staging"},
                }
            )
            note(
                f"dry run: would take Amplitude id {amplitude_id} out of the job on {job_day}; "
                "nothing was sent. Add --yes to send it."
            )
            return
        with audit.locked(
            on_wait=lambda: note(f"waiting for another run to release {audit_log}...")
        ):
            audit.append({"time": now_text(), "event": "cancelling", **record})
            try:
                removed = editor.remove(amplitude_id, job_day)
            except RequestRejectedError as exc:
                audit.append(
                    {"time": now_text(), "event": "cancel-refused", **record, "error": exc.reason}
                )
                raise CliError(
                    f"Amplitude refused to take Amplitude id {amplitude_id} out of the job on "
                    f"{job_day} (HTTP 400: {exc.reason}); nothing was changed."
                ) from exc
            except (AmplitudeError, RetriableAPIError, requests.RequestException) as exc:
                reason = failure_reason(exc)
                audit.append(
                    {"time": now_text(), "event": "cancel-failed", **record, "error": reason}
                )
                raise CliError(
                    f"{reason}. Run 'jobs' to see whether the id is still in the job, and the "
                    "same command again if it is."
                ) from exc
            entry_out = {"time": now_text(), "event": "cancelled", **record, "removed": removed}
            audit.append(entry_out)
    run_state().resume_hint = (
        f"Amplitude id {amplitude_id} was taken out of the job on {job_day}, as {audit_log} "
        "records; nothing else was changed."
    )
    emit(entry_out)
    note(f"Amplitude id {amplitude_id} taken out of the job on {job_day}; audit log: {audit_log}")


def _cancel_refusal(
    job: dict[str, t.Any] | None, entry: dict[str, t.Any] | None, amplitude_id: int, day: date
) -> str | None:
    """Why the id cannot be taken out of the job, or None if it can."""
    if job is None:
        return f"there is no deletion job on {day} (see '{PROG} jobs')"
    status = str(job.get("status") or "").lower()
    if status != "staging":
        return (
            f"the job on {day} is already {status or 'not staging'}: Amplitude lets ids be "
            "removed only while a job is staging (until 3 days before its day)"
        )
    if entry is None:
        return f"Amplitude id {amplitude_id} is not in the job on {day}"
    return None


# ----------------------------------------------------------------------------------------
# verify


@cli.command(epilog=EPILOG)
@config_option
@click.argument("ids", nargs=-1, required=True, metavar="ID...", callback=checked_ids)
@click.option(
    "--audit-log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_AUDIT_LOG,
    show_default=True,
    help="Where to find the jobs the ids were accepted into (read only).",
)
def verify(config_path: Path | None, ids: tuple[str, ...], audit_log: Path) -> int:
    """Check that Amplitude has nothing left for each id after its deletion job is done.

    For each ID (user id or email, device id, or Amplitude id): user search, and in the US
    region the Profile API, must find nothing. One JSON line per ID, with the jobs the audit
    log shows it in and their status now. Exits 1 if anything was found. Read-only.
    """
    config = load_config(resolve_config(config_path))
    audit = AuditLog(audit_log, config["api_key"])
    days = _job_days(audit, ids) if audit_log.exists() else {}
    left = 0
    with open_tap(config) as tap:
        search = UserSearchStream(tap=tap)
        profiles = UserProfilesStream(tap=tap) if profile_api_available(config) else None
        if profiles is None:
            note(
                "the User Profile API is not available in the EU region; checking user search only."
            )
        statuses: dict[str, str] = {}
        listing = DeletionJobsStream(tap=tap)
        for day in sorted({d for found in days.values() for d in found}):
            job_day = date.fromisoformat(day)
            for job in listing.jobs(job_day, job_day):
                statuses[str(job.get("day"))] = str(job.get("status"))
        for term in dict.fromkeys(ids):
            matches = list(search.request_records({"search_term": term}))
            profile = None
            if profiles is not None and not term.isdigit():
                profile = profiles.fetch(user_id=term)
            found = bool(matches) or profile is not None
            left += found
            emit(
                {
                    "id": term,
                    "clean": not found,
                    "user_search_matches": len(matches),
                    "amplitude_ids": list(dict.fromkeys(m["amplitude_id"] for m in matches)),
                    "profile_found": None if profiles is None else profile is not None,
                    "jobs": [
                        {"day": day, "status": statuses.get(day, "unknown")}
                        for day in sorted(days.get(term, set()))
                    ],
                }
            )
    if left:
        note(f"{left} of {len(set(ids))} id(s) still have data in Amplitude (is their job done?).")
        return 1
    note(f"nothing left in Amplitude for the {len(set(ids))} id(s).")
    return 0


def _job_days(audit: AuditLog, ids: tuple[str, ...]) -> dict[str, set[str]]:
    """Per id, the job days the audit log shows it accepted into and not taken out of since."""
    wanted = set(ids)
    days: dict[str, set[str]] = {}
    for entry in audit.entries():  # in the order they happened
        if entry.get("project") != audit.project:
            continue
        named = {value for _, value in id_keys(entry)} & wanted
        if entry.get("event") == "accepted":
            for job in entry.get("jobs") or []:
                if job.get("day"):
                    for term in named:
                        days.setdefault(term, set()).add(str(job["day"]))
        elif entry.get("event") == "cancelled" and entry.get("day"):
            for term in named:
                days.get(term, set()).discard(str(entry["day"]))
    return days
