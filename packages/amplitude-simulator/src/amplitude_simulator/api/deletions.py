"""The User Privacy (deletion) API v1, ``/api/2/deletions/users``, per docs/amplitude-api.md §8.

Modelling choices where Amplitude's docs are silent:

* A request joins the earliest job that is still ``staging``; otherwise a new job is
  scheduled ``sim.deletions.job_delay_days`` (default 7) after the request day.
* A job is ``staging`` until 3 days before its day, then ``submitted``; its scrub finishes
  the day after it runs (``active_scrub_done_date``) and it is ``done`` 5 days later.
* Unknown ids without ``ignore_invalid_id(s)`` get HTTP 400 with
  ``{"error": "...", "invalid_ids": [...]}`` and nothing is scheduled.
* The 1 request/second limit covers every method on the endpoint; a request inside the
  second gets 429 with ``Retry-After`` and does not count.
* ``DELETE /api/2/deletions/users/{amplitude_id}/{day}`` (§17.4) takes an id out of a job
  that is still ``staging`` and answers with the removed entry; a job that is not staging,
  a day without a job or an id not in it get 400 ``{"error": ...}`` (Amplitude documents
  only 200/400/401).
* ``include_mapped_user_ids`` adds the user id to every answered entry (§17.2); it changes
  the answer only.
* Once a job is ``done``, its users are gone from user search, the Profile API and DSAR
  outputs (``DeletionSettings.erased``), from cohorts, and the Export API leaves out their
  rows uploaded before the job's day (``DeletionSettings.erasures``), except in the seeded
  jobs below.
* A fresh simulator already holds two jobs for the dataset's last two users: one on the
  dataset's first day (``done`` for any dataset that ended a week ago) and one two days
  before today (``submitted``), so listings show every status.
"""

from __future__ import annotations

import calendar
import math
import re
import time
import typing as t
from dataclasses import dataclass
from datetime import date, timedelta, timezone

from amplitude_simulator.protocol import Context, Route, SimRequest, SimResponse
from amplitude_simulator.settings import JOB_DELAY_DAYS, DeletionSettings, Job

if t.TYPE_CHECKING:
    from amplitude_simulator.data.dataset import Dataset, User

PATH = "/api/2/deletions/users"
MAX_IDS = 100
MAX_RANGE_MONTHS = 6
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_TRUE = {"true"}
_FALSE = {"false"}


def routes() -> list[Route]:
    """List jobs and request deletions."""
    return [
        Route("GET", PATH, handle_list, auth="basic"),
        Route("POST", PATH, handle_request, auth="basic"),
        Route("DELETE", PATH + "/{amplitude_id}/{day}", handle_remove, auth="basic"),
    ]


def handle_remove(sim: Context, request: SimRequest) -> SimResponse:
    """Take one Amplitude id out of a staging job; 400 for anything else."""
    jobs = sim.deletions
    limited = _rate_limited(jobs)
    if limited is not None:
        return limited
    raw_id, raw_day = request.path_params["amplitude_id"], request.path_params["day"]
    if not raw_id.isdigit() or not _DAY.fullmatch(raw_day):
        return _error(400, "Expected /api/2/deletions/users/{AMPLITUDE_ID}/{YYYY-MM-DD}")
    day, amplitude_id, today = date.fromisoformat(raw_day), int(raw_id), _today(sim)
    with jobs.lock:
        job = jobs.jobs.get(day)
        if job is None:
            return _error(400, f"No deletion job on {raw_day}")
        status = job.status(today)
        if status != "staging":
            return _error(
                400, f"The job on {raw_day} is {status}; ids can only be removed while staging"
            )
        entry = next((e for e in job.entries if e["amplitude_id"] == amplitude_id), None)
        if entry is None:
            return _error(400, f"Amplitude id {amplitude_id} is not in the job on {raw_day}")
        job.entries.remove(entry)
        if not job.entries:
            del jobs.jobs[day]
    removed = {key: entry[key] for key in ("amplitude_id", "requested_on_day", "requester")}
    return SimResponse.json(200, removed)


def handle_list(sim: Context, request: SimRequest) -> SimResponse:
    """Jobs whose day is within ``start_day``..``end_day`` (at most six months)."""
    jobs = sim.deletions
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


def handle_request(sim: Context, request: SimRequest) -> SimResponse:
    """Schedule users for deletion, or refuse the whole request."""
    jobs = sim.deletions
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
            if named_by_user_id or ask.include_mapped:
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
    include_mapped: bool = False

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
            include_mapped=_boolean(body, "include_mapped_user_ids"),
        )


def _resolve(
    sim: Context, amplitude_ids: list[t.Any], user_ids: list[t.Any]
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


def _staging_job(jobs: DeletionSettings, today: date, *, create: bool) -> Job:
    """The earliest job still open to additions, or a new one a week out."""
    for _, job in sorted(jobs.jobs.items()):
        if job.status(today) == "staging":
            return job
    job = Job(today + timedelta(days=jobs.job_delay_days))
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


def _rate_limited(jobs: DeletionSettings) -> SimResponse | None:
    """429 if the previous served request was less than a second ago; else count this one."""
    with jobs.lock:
        now = time.monotonic()
        if jobs.last_served is not None:
            wait = jobs.last_served + jobs.min_interval_seconds - now
            if wait > 0:
                limited = SimResponse.json(
                    429, {"error": "Too many requests: at most 1 request per second"}
                )
                limited.headers["Retry-After"] = str(math.ceil(wait))
                return limited
        jobs.last_served = now
    return None


def seed_jobs(settings: DeletionSettings, dataset: Dataset, today: date) -> None:
    """A job on the dataset's first day and one two days before ``today``, for its last users.

    With the usual past dataset the first is ``done`` and the second ``submitted``.
    """
    users = dataset.user_list()
    first_day = dataset.start.date()
    recent_day = today - timedelta(days=2)
    second = users[-2] if len(users) > 1 else users[0]
    for day, user in ((first_day, users[-1]), (recent_day, second)):
        entry = {
            "amplitude_id": user.amplitude_id,
            "requester": "privacy@example.com",
            "requested_on_day": (day - timedelta(days=JOB_DELAY_DAYS)).isoformat(),
        }
        settings.jobs.setdefault(day, Job(day, [entry], erases=False))


def _job_json(sim: Context, job: Job, today: date) -> dict[str, t.Any]:
    """A job as ``GET`` lists it."""
    return {
        "day": job.day.isoformat(),
        "status": job.status(today),
        "app": sim.project.app_id,
        "amplitude_ids": [dict(entry) for entry in job.entries],
        "active_scrub_done_date": job.scrub_done(today),
    }


def _today(sim: Context) -> date:
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
