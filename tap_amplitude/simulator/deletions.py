"""The User Privacy (deletion) API v1, ``/api/2/deletions/users``, per amplitude-api.md §8.

Modelling choices where Amplitude's docs are silent:

* A request joins the earliest job that is still ``staging``; otherwise a new job is
  scheduled ``JOB_DELAY_DAYS`` after the request day.
* A job is ``staging`` until 3 days before its day, then ``submitted``; its scrub finishes
  the day after it runs (``active_scrub_done_date``) and it is ``done`` 5 days later.
* Unknown ids without ``ignore_invalid_id(s)`` get HTTP 400 with
  ``{"error": "...", "invalid_ids": [...]}`` and nothing is scheduled.
* The 1 request/second limit covers every method on the endpoint; a request inside the
  second gets 429 with ``Retry-After`` and does not count.
* A fresh simulator already holds two jobs for the dataset's last two users: one on the
  dataset's first day (``done`` for any dataset that ended a week ago) and one two days
  before today (``submitted``), so listings show every status.
"""

from __future__ import annotations

import calendar
import math
import re
import threading
import time
import typing as t
import weakref
from dataclasses import dataclass, field
from datetime import date, timedelta, timezone

from tap_amplitude.simulator.server import Route, SimRequest, SimResponse

if t.TYPE_CHECKING:
    from tap_amplitude.simulator.dataset import User
    from tap_amplitude.simulator.server import AmplitudeSimulator

PATH = "/api/2/deletions/users"
MAX_IDS = 100
MAX_RANGE_MONTHS = 6
MIN_INTERVAL_SECONDS = 1.0
JOB_DELAY_DAYS = 7
LOCK_DAYS = 3  # a job is locked ("submitted") this many days before it runs
SCRUB_DAYS = 1  # the scrub finishes the day after the job runs
BACKUP_DAYS = 5  # then Amplitude waits for backups to clear before "done"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_TRUE = {"true"}
_FALSE = {"false"}


@dataclass
class Job:
    """One project's deletion job for one day."""

    day: date
    entries: list[dict[str, t.Any]] = field(default_factory=list)

    def status(self, today: date) -> str:
        """The status on ``today``: staging, then submitted, then done."""
        if today < self.day - timedelta(days=LOCK_DAYS):
            return "staging"
        if today < self.day + timedelta(days=SCRUB_DAYS + BACKUP_DAYS):
            return "submitted"
        return "done"

    def scrub_done(self, today: date) -> str | None:
        """The day the data became inaccessible, once it has."""
        scrubbed = self.day + timedelta(days=SCRUB_DAYS)
        return scrubbed.isoformat() if today >= scrubbed else None


@dataclass
class DeletionState:
    """One simulator's jobs, rate-limit clock and the request bodies it accepted."""

    jobs: dict[date, Job] = field(default_factory=dict)
    bodies: list[dict[str, t.Any]] = field(default_factory=list)
    last_served: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_STATES: weakref.WeakKeyDictionary[AmplitudeSimulator, DeletionState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def state(sim: AmplitudeSimulator) -> DeletionState:
    """The simulator's deletion state, seeded with a done and a submitted job."""
    with _STATES_LOCK:
        found = _STATES.get(sim)
        if found is None:
            found = _STATES[sim] = _seeded(sim)
        return found


def routes() -> list[Route]:
    """List jobs and request deletions."""
    return [
        Route("GET", PATH, handle_list, auth="basic"),
        Route("POST", PATH, handle_request, auth="basic"),
    ]


def handle_list(sim: AmplitudeSimulator, request: SimRequest) -> SimResponse:
    """Jobs whose day is within ``start_day``..``end_day`` (at most six months)."""
    jobs = state(sim)
    limited = _rate_limited(jobs)
    if limited is not None:
        return limited
    try:
        start, end = _day_param(request, "start_day"), _day_param(request, "end_day")
    except ValueError:
        return _error(400, "start_day and end_day are required, as YYYY-MM-DD")
    if end < start:
        return _error(400, "end_day must not be before start_day")
    if end > _add_months(start, MAX_RANGE_MONTHS):
        return _error(400, "The date range exceeds the maximum of 6 months")
    today = _today(sim)
    with jobs.lock:
        listed = [
            _job_json(sim, job, today)
            for day, job in sorted(jobs.jobs.items())
            if start <= day <= end
        ]
    return SimResponse.json(200, listed)


def handle_request(sim: AmplitudeSimulator, request: SimRequest) -> SimResponse:
    """Schedule users for deletion, or refuse the whole request."""
    jobs = state(sim)
    limited = _rate_limited(jobs)
    if limited is not None:
        return limited
    try:
        ask = _Ask.parse(request)
    except ValueError as exc:
        return _error(400, str(exc))
    found, invalid = _resolve(sim, ask.amplitude_ids, ask.user_ids)
    if invalid and not ask.ignore_invalid:
        return SimResponse.json(
            400,
            {
                "error": f"Invalid ids (not found in this project): {_listing(invalid)}",
                "invalid_ids": invalid,
            },
        )
    today = _today(sim)
    with jobs.lock:
        jobs.bodies.append(ask.body)
        job = _staging_job(jobs, today, create=bool(found))
        added = []
        for user, named_by_user_id in found:
            entry = {
                "amplitude_id": user.amplitude_id,
                "requester": ask.requester,
                "requested_on_day": today.isoformat(),
            }
            if named_by_user_id:
                entry["user_id"] = user.user_id
            if all(e["amplitude_id"] != user.amplitude_id for e in job.entries):
                job.entries.append(entry)
            added.append(entry)
        answer: dict[str, t.Any] = {
            "day": job.day.isoformat(),
            "status": job.status(today),
            "amplitude_ids": added,
        }
    if ask.ignore_invalid:
        answer["invalid_ids"] = invalid
    if ask.delete_from_org:  # one object per project that had the users, each with its app
        return SimResponse.json(200, [{**answer, "app": sim.project.app_id}])
    return SimResponse.json(200, answer)


class BadRequestError(ValueError):
    """A request Amplitude answers with 400; the message is the body's ``error``."""


@dataclass(frozen=True)
class _Ask:
    """A checked deletion request body."""

    body: dict[str, t.Any]
    amplitude_ids: list[t.Any]
    user_ids: list[t.Any]
    requester: str
    ignore_invalid: bool
    delete_from_org: bool

    @classmethod
    def parse(cls, request: SimRequest) -> _Ask:
        """Check the body as Amplitude does.

        Raises:
            BadRequestError: with the 400 message, if the body is not a valid request.
        """
        try:
            body = request.json()
        except ValueError as exc:
            raise BadRequestError("The request body must be JSON") from exc
        if not isinstance(body, dict):
            raise BadRequestError("The request body must be a JSON object")
        amplitude_ids, user_ids = body.get("amplitude_ids") or [], body.get("user_ids") or []
        if not isinstance(amplitude_ids, list) or not isinstance(user_ids, list):
            raise BadRequestError("amplitude_ids and user_ids must be lists")
        if not amplitude_ids and not user_ids:
            raise BadRequestError("Provide amplitude_ids or user_ids")
        if len(amplitude_ids) + len(user_ids) > MAX_IDS:
            raise BadRequestError(f"Too many ids: at most {MAX_IDS} per request")
        delete_from_org = _boolean(body, "delete_from_org")
        ignore = _boolean(body, "ignore_invalid_id", "ignore_invalid_ids")
        return cls(
            body=body,
            amplitude_ids=amplitude_ids,
            user_ids=user_ids,
            requester=str(body.get("requester") or ""),
            ignore_invalid=ignore or delete_from_org,  # org-wide requests always skip unknowns
            delete_from_org=delete_from_org,
        )


def _resolve(
    sim: AmplitudeSimulator, amplitude_ids: list[t.Any], user_ids: list[t.Any]
) -> tuple[list[tuple[User, bool]], list[t.Any]]:
    """Known users (and whether each was named by user id), and the ids nobody has."""
    users = sim.dataset.user_list()
    by_amplitude_id = {u.amplitude_id: u for u in users}
    by_user_id = {u.user_id: u for u in users}
    found: list[tuple[User, bool]] = []
    invalid: list[t.Any] = []
    for value in amplitude_ids:
        user = by_amplitude_id.get(value) if isinstance(value, int) else None
        if user is None and isinstance(value, str) and value.isdigit():
            user = by_amplitude_id.get(int(value))
        if user is None:
            invalid.append(value)
        else:
            found.append((user, False))
    for value in user_ids:
        user = by_user_id.get(str(value))
        if user is None:
            invalid.append(value)
        else:
            found.append((user, True))
    return found, invalid


def _staging_job(jobs: DeletionState, today: date, *, create: bool) -> Job:
    """The earliest job still open to additions, or a new one a week out."""
    for _, job in sorted(jobs.jobs.items()):
        if job.status(today) == "staging":
            return job
    job = Job(today + timedelta(days=JOB_DELAY_DAYS))
    if create:
        jobs.jobs[job.day] = job
    return job


def _boolean(body: dict[str, t.Any], *names: str) -> bool:
    """A flag sent as a JSON boolean or as "true"/"True"/"False"; absent means false."""
    for name in names:
        if name not in body:
            continue
        value = body[name]
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"{name} must be true or false")
    return False


def _rate_limited(jobs: DeletionState) -> SimResponse | None:
    """429 if the previous served request was less than a second ago; else count this one."""
    with jobs.lock:
        now = time.monotonic()
        if jobs.last_served is not None:
            wait = jobs.last_served + MIN_INTERVAL_SECONDS - now
            if wait > 0:
                limited = SimResponse.json(
                    429, {"error": "Too many requests: at most 1 request per second"}
                )
                limited.headers["Retry-After"] = str(math.ceil(wait))
                return limited
        jobs.last_served = now
    return None


def _seeded(sim: AmplitudeSimulator) -> DeletionState:
    """A job on the dataset's first day and one two days ago, for the last two users.

    With the usual past dataset the first is ``done`` and the second ``submitted``.
    """
    users = sim.dataset.user_list()
    seeded = DeletionState()
    first_day = sim.dataset.start.date()
    recent_day = _today(sim) - timedelta(days=2)
    second = users[-2] if len(users) > 1 else users[0]
    for day, user in ((first_day, users[-1]), (recent_day, second)):
        entry = {
            "amplitude_id": user.amplitude_id,
            "requester": "privacy@example.com",
            "requested_on_day": (day - timedelta(days=JOB_DELAY_DAYS)).isoformat(),
        }
        seeded.jobs.setdefault(day, Job(day, [entry]))
    return seeded


def _job_json(sim: AmplitudeSimulator, job: Job, today: date) -> dict[str, t.Any]:
    """A job as ``GET`` lists it."""
    return {
        "day": job.day.isoformat(),
        "status": job.status(today),
        "app": sim.project.app_id,
        "amplitude_ids": [dict(entry) for entry in job.entries],
        "active_scrub_done_date": job.scrub_done(today),
    }


def _today(sim: AmplitudeSimulator) -> date:
    """The simulator's current day (UTC)."""
    return sim.current_time().astimezone(timezone.utc).date()


def _day_param(request: SimRequest, name: str) -> date:
    """A ``YYYY-MM-DD`` query parameter (the docs' ``20220201`` example is wrong, §8.2).

    Raises:
        ValueError: if the parameter is missing or not in that form.
    """
    value = request.params.get(name, "")
    if not _DAY.fullmatch(value):
        raise ValueError(name)
    return date.fromisoformat(value)


def _add_months(day: date, months: int) -> date:
    """The same day ``months`` later, clamped to the month's end."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _listing(values: list[t.Any]) -> str:
    """A short, readable list of ids for an error message."""
    shown = ", ".join(str(v) for v in values[:10])
    return shown + (f" and {len(values) - 10} more" if len(values) > 10 else "")  # noqa: PLR2004


def _error(status: int, message: str) -> SimResponse:
    """An error in the privacy API's ``{"error": ...}`` shape."""
    return SimResponse.json(status, {"error": message})
