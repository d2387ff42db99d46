"""Behavioral cohort download, ``/api/5/cohorts/…`` (docs/amplitude-api.md §11).

1. ``GET /api/5/cohorts/request/{cohort_id}`` (``props``, repeatable ``propKeys``) counts
   against the monthly quota and answers **202** ``{"request_id", "cohort_id"}``.
2. ``GET /api/5/cohorts/request-status/{request_id}``: **202** ``JOB INPROGRESS`` for the
   first ``polls_in_progress`` reads and while the cohort is in ``computing``, then **200**
   ``JOB COMPLETED``.
3. ``GET /api/5/cohorts/request/{request_id}/file``: **200** with the file for cohorts of at
   most ``inline_max_members``, else **302** to ``/cohort-downloads/{request_id}`` with a
   pre-signed query valid ``link_ttl_seconds``. Both serve the same bytes: quoted CSV, header
   first, ``Content-Encoding: gzip``.

Modelling choices (**Unverified** in §11): unknown cohort or request 404; ``/file`` before
completion 400; a spent monthly quota 429 with the §1.4 envelope and a ``Retry-After`` to
the next month (the 60-per-10-minutes limit also 429, with a short ``Retry-After``); a job
older than ``job_ttl_days`` 410; columns ``amplitude_id``, ``user_id`` (empty for anonymous
members), then each requested property, custom ones named with ``property_prefix``
(``gp:``). ``used_this_month`` is never reset by the simulator's clock; tests set it.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import hmac
import io
import json
import math
import random
import string
import tempfile
import time
from datetime import datetime, timezone
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from amplitude_simulator.api.cohorts import cohort_list, erased_ids, members_of
from amplitude_simulator.protocol import Route, SimResponse
from amplitude_simulator.settings import CohortJob

if TYPE_CHECKING:
    from collections.abc import Iterator

    from amplitude_simulator.data.dataset import Dataset, UserProfile
    from amplitude_simulator.protocol import Context, SimRequest
    from amplitude_simulator.settings import CohortExportSettings

BASE = "/api/5/cohorts"
DOWNLOADS = "/cohort-downloads"
QUOTA_MESSAGE = "Monthly cohort download quota exceeded"
IN_PROGRESS = "JOB INPROGRESS"
COMPLETED = "JOB COMPLETED"
# Amplitude-defined user properties: their columns carry no prefix.
BUILT_IN_PROPERTIES = ("country", "city", "platform", "os_name", "device_id", "language")
_SIGNING_KEY = b"amplitude-simulator-cohort-links"
_SPOOL_MEMBERS = 20_000  # bigger files are written to a temporary file, then streamed
_DAY_SECONDS = 86_400


def routes() -> list[Route]:
    """Request an export, read its status, get its file, and the pre-signed download."""
    return [
        Route("GET", BASE + "/request/{cohort_id}", request_export),
        Route("GET", BASE + "/request-status/{request_id}", request_status),
        Route("GET", BASE + "/request/{request_id}/file", file_link),
        Route("GET", DOWNLOADS + "/{request_id}", download, auth="none"),
    ]


def request_export(sim: Context, request: SimRequest) -> SimResponse:
    """Step 1: a job for a known cohort, within the monthly quota and the request rate."""
    cohort_id = request.path_params["cohort_id"]
    if _cohort_index(sim, cohort_id) is None:
        return SimResponse.error(HTTPStatus.NOT_FOUND, "Cohort not found", cohort_id=cohort_id)
    export = sim.cohort_export
    query = parse_qs(request.query, keep_blank_values=True)
    with_props = (query.get("props") or ["0"])[-1] == "1"
    keys = tuple(key for key in query.get("propKeys", []) if key)
    now = time.monotonic()
    with export.lock:
        if export.used_this_month >= export.monthly_quota:
            return _quota_refusal(sim, export)
        window = export.rate_window_seconds
        export.requested[:] = [at for at in export.requested if at > now - window]
        if len(export.requested) >= export.requests_per_window:
            refused = SimResponse.error(
                HTTPStatus.TOO_MANY_REQUESTS,
                "Exceeded rate limit",
                details=f"At most {export.requests_per_window} cohort requests per {window:g} s",
            )
            wait = export.requested[0] + window - now
            refused.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return refused
        export.requested.append(now)
        export.used_this_month += 1
        rng = random.Random(f"cohort-job|{len(export.jobs)}|{cohort_id}")  # noqa: S311
        request_id = "".join(rng.choices(string.ascii_letters + string.digits, k=6))
        export.jobs[request_id] = CohortJob(
            request_id, cohort_id, keys if with_props else None, time.time()
        )
    return SimResponse.json(HTTPStatus.ACCEPTED, {"request_id": request_id, "cohort_id": cohort_id})


def request_status(sim: Context, request: SimRequest) -> SimResponse:
    """Step 2: 202 while the job runs, 200 once it is complete."""
    export = sim.cohort_export
    with export.lock:
        job = export.jobs.get(request.path_params["request_id"])
        if job is None:
            return SimResponse.error(HTTPStatus.NOT_FOUND, "Request not found")
        job.polls += 1
        job.done = job.polls > export.polls_in_progress and job.cohort_id not in export.computing
        payload = {
            "request_id": job.request_id,
            "cohort_id": job.cohort_id,
            "async_status": COMPLETED if job.done else IN_PROGRESS,
        }
    return SimResponse.json(HTTPStatus.OK if job.done else HTTPStatus.ACCEPTED, payload)


def file_link(sim: Context, request: SimRequest) -> SimResponse:
    """Step 3: the file itself, or a 302 to a pre-signed link for a large cohort."""
    export = sim.cohort_export
    with export.lock:
        job = export.jobs.get(request.path_params["request_id"])
        if job is None:
            return SimResponse.error(HTTPStatus.NOT_FOUND, "Request not found")
        if time.time() > job.created + export.job_ttl_days * _DAY_SECONDS:
            return SimResponse.error(HTTPStatus.GONE, "This download link has expired")
        if not job.done:
            return SimResponse.error(HTTPStatus.BAD_REQUEST, "Job is not completed")
        ttl = export.link_ttl_seconds
        if export.expired_links > 0 and _member_count_locked(sim, job) > export.inline_max_members:
            export.expired_links -= 1
            ttl = -1.0
    members = _member_count(sim, job)
    if members <= export.inline_max_members:
        return _file(sim, job)
    expires_at = math.floor(time.time() + ttl)
    query = {"X-Amz-Expires": str(expires_at), "X-Amz-Signature": _sign(job, expires_at)}
    host = request.header("Host") or "127.0.0.1"
    location = f"http://{host}{DOWNLOADS}/{job.request_id}?{urlencode(query)}"
    return SimResponse(HTTPStatus.FOUND, {"Location": location})


def download(sim: Context, request: SimRequest) -> SimResponse:
    """The pre-signed "S3" link: the same bytes, if the link is genuine and not expired."""
    export = sim.cohort_export
    with export.lock:
        job = export.jobs.get(request.path_params["request_id"])
    try:
        expires_at = int(request.params.get("X-Amz-Expires", ""))
    except ValueError:
        return _access_denied("Query-string authentication requires the X-Amz-Expires parameter")
    if job is None or not hmac.compare_digest(
        request.params.get("X-Amz-Signature", ""), _sign(job, expires_at)
    ):
        return _access_denied("The request signature we calculated does not match")
    if time.time() > expires_at:
        return _access_denied("Request has expired")
    return _file(sim, job)


# --------------------------------------------------------------------------------------
# the file


def member_rows(
    sim: Context, cohort_id: str, prop_keys: tuple[str, ...] | None
) -> Iterator[list[str]]:
    """The file's rows, header first (the CSV the simulator serves, before gzip)."""
    index = _cohort_index(sim, cohort_id)
    if index is None:
        return
    export = sim.cohort_export
    with export.lock:
        revision = export.revisions.get(cohort_id, 0)
        extra = export.extra_members.get(cohort_id, 0)
        prefix = export.property_prefix
    profiles = members_of(sim.dataset, index, revision, erased_ids(sim))
    keys = _keys(sim.dataset, prop_keys)
    yield ["amplitude_id", "user_id", *(_column(key, prefix) for key in keys)]
    for profile in profiles:
        user_id = "" if profile.index % 5 == 2 else profile.user.user_id  # noqa: PLR2004
        yield [str(profile.user.amplitude_id), user_id, *(_value(profile, k) for k in keys)]
    for number in range(extra):
        yield [str(900_000_000_000 + number), f"synthetic_{number:07d}", *([""] * len(keys))]


def _file(sim: Context, job: CohortJob) -> SimResponse:
    """Gzip-encoded quoted CSV, in memory or (large cohorts) from a temporary file."""
    headers = {"Content-Type": "text/csv; charset=utf-8", "Content-Encoding": "gzip"}
    rows = member_rows(sim, job.cohort_id, job.prop_keys)
    if _member_count(sim, job) <= _SPOOL_MEMBERS:
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as packed:
            _write_csv(packed, rows)
        return SimResponse(HTTPStatus.OK, headers, buffer.getvalue())
    with tempfile.NamedTemporaryFile(prefix="amplitude-sim-cohort-", delete=False) as out:
        path = Path(out.name)
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as packed:
            _write_csv(packed, rows)
    return SimResponse(HTTPStatus.OK, headers, body_path=path, delete_body_path=True)


def _write_csv(target: gzip.GzipFile, rows: Iterator[list[str]]) -> None:
    text = io.TextIOWrapper(target, encoding="utf-8", newline="")
    writer = csv.writer(text, quoting=csv.QUOTE_ALL)
    for row in rows:
        writer.writerow(row)
    text.flush()
    text.detach()


def _keys(dataset: Dataset, prop_keys: tuple[str, ...] | None) -> list[str]:
    """Requested property keys; every key the project has when none are named."""
    if prop_keys is None:
        return []
    if prop_keys:
        return list(prop_keys)
    found: dict[str, None] = dict.fromkeys(BUILT_IN_PROPERTIES)
    for profile in dataset.profiles():
        found.update(dict.fromkeys(profile.properties))
    return list(found)


def _column(key: str, prefix: str) -> str:
    bare = key.removeprefix("gp:")
    return bare if bare in BUILT_IN_PROPERTIES else f"{prefix}{bare}"


def _value(profile: UserProfile, key: str) -> str:
    bare = key.removeprefix("gp:")
    built_in = {
        "country": profile.place[0],
        "city": profile.place[2],
        "platform": profile.platform,
        "os_name": profile.os_name,
        "device_id": profile.user.device_id,
        "language": profile.place[6],
    }
    value: Any = built_in.get(bare, profile.properties.get(bare))
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


# --------------------------------------------------------------------------------------
# helpers


def _cohort_index(sim: Context, cohort_id: str) -> int | None:
    """Position of the cohort in the project's list (its membership rule)."""
    ids = [cohort["id"] for cohort in cohort_list(sim.dataset, sync_info=False)]
    return ids.index(cohort_id) if cohort_id in ids else None


def _member_count(sim: Context, job: CohortJob) -> int:
    with sim.cohort_export.lock:
        return _member_count_locked(sim, job)


def _member_count_locked(sim: Context, job: CohortJob) -> int:
    """Members of the job's cohort (the caller holds the export settings' lock)."""
    index = _cohort_index(sim, job.cohort_id)
    export = sim.cohort_export
    revision = export.revisions.get(job.cohort_id, 0)
    extra = export.extra_members.get(job.cohort_id, 0)
    if index is None:
        return extra
    return len(members_of(sim.dataset, index, revision, erased_ids(sim))) + extra


def _quota_refusal(sim: Context, export: CohortExportSettings) -> SimResponse:
    now = sim.current_time().astimezone(timezone.utc)
    month_end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=timezone.utc)
    refused = SimResponse.error(
        HTTPStatus.TOO_MANY_REQUESTS,
        QUOTA_MESSAGE,
        details=f"This project has used its {export.monthly_quota} cohort downloads this month",
    )
    refused.headers["Retry-After"] = str(max(1, math.ceil((month_end - now).total_seconds())))
    return refused


def _sign(job: CohortJob, expires_at: int) -> str:
    message = f"{job.request_id}/{expires_at}".encode()
    return hmac.new(_SIGNING_KEY, message, hashlib.sha256).hexdigest()


def _access_denied(message: str) -> SimResponse:
    """S3's XML refusal of a pre-signed link."""
    body = f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>"
    return SimResponse(HTTPStatus.FORBIDDEN, {"Content-Type": "application/xml"}, body.encode())
