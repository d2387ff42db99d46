"""The DSAR API, ``/api/2/dsar/requests`` (docs/amplitude-api.md §14).

Modelling choices where Amplitude's docs are silent or disagree (§14.2-§14.4):

* Keys: the organisation's key pair (``sim.dsar.org_api_key``/``org_secret_key``) is always
  accepted; the project's pair too, unless ``sim.dsar.refuse_project_keys`` (then 403, or
  ``refusal_status``). Bad keys get the usual 401/403 of §1.3.
* ``POST`` answers **202** ``{"requestId": n}``; exactly one of ``userId``/``amplitudeId`` and
  both dates (``YYYY-MM-DD``, start not after end) are required, else 400. No span limit.
* ``GET …/{requestId}`` answers 200 in every state; the state moves on status reads (see
  :class:`~amplitude_simulator.settings.DsarSettings`). Once ``done``, ``urls`` holds one
  output per month with events (this simulator serves one project) and ``expires`` is the
  done day plus 2 days (``YYYY-MM-DD``).
* ``GET …/{requestId}/outputs/{outputId}`` answers **302** to a pre-signed link on this
  server (``/dsar-downloads/…?X-Amz-Expires=…&X-Amz-Signature=…``, no auth needed) valid for
  ``link_ttl_seconds``; after ``expires`` it answers **410**. An expired or tampered link
  gets S3's 403 ``AccessDenied``.
* Outputs are gzip JSON lines, shuffled: the user's rows (the ones ``useractivity`` serves)
  with ``event_time`` within the dates. Users whose deletion job is done have none.
* Every ``/api/2/dsar`` request costs (POST 8, GET 1) against a sliding window of
  ``cost_per_window`` per ``window_seconds``; beyond it, 429 with ``Retry-After``.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import math
import random
import re
import time
import typing as t
from datetime import date, timedelta, timezone
from http import HTTPStatus
from urllib.parse import urlencode

from amplitude_simulator.auth import check_basic
from amplitude_simulator.data.dataset import Project, activity_lines
from amplitude_simulator.protocol import Route, SimRequest, SimResponse
from amplitude_simulator.settings import DsarRequest, DsarSettings

if t.TYPE_CHECKING:
    from amplitude_simulator.protocol import Context

PATH = "/api/2/dsar/requests"
DOWNLOADS = "/dsar-downloads"
POST_COST = 8
GET_COST = 1
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_SIGNING_KEY = b"amplitude-simulator-dsar-links"
_DAMAGED_CRC = b"\x00\x00\x00\x00"


def routes() -> list[Route]:
    """Create a request, read its status, get its outputs, and the pre-signed downloads."""
    return [
        Route("POST", PATH, create_request, auth="none"),
        Route("GET", PATH + "/{request_id}", request_status, auth="none"),
        Route("GET", PATH + "/{request_id}/outputs/{output_id}", output_link, auth="none"),
        Route("GET", DOWNLOADS + "/{request_id}/{output_id}", download, auth="none"),
    ]


def create_request(sim: Context, request: SimRequest) -> SimResponse:  # noqa: PLR0911
    """Check the body and accept the request (202)."""
    refused = _admit(sim, request, POST_COST)
    if refused is not None:
        return refused
    try:
        body = request.json()
    except ValueError:
        return _error(400, "The request body must be JSON")
    if not isinstance(body, dict):
        return _error(400, "The request body must be a JSON object")
    user_id, amplitude_id = body.get("userId"), body.get("amplitudeId")
    if (user_id is None) == (amplitude_id is None):
        return _error(400, "Provide exactly one of userId and amplitudeId")
    if amplitude_id is not None and (
        isinstance(amplitude_id, bool) or not isinstance(amplitude_id, int)
    ):
        return _error(400, "amplitudeId must be an integer")
    try:
        start, end = _date(body, "startDate"), _date(body, "endDate")
    except ValueError as exc:
        return _error(400, f"{exc} is required, as YYYY-MM-DD")
    if end < start:
        return _error(400, "endDate must not be before startDate")
    dsar = sim.dsar
    with dsar.lock:
        request_id = dsar.next_id
        dsar.next_id += 1
        dsar.requests[request_id] = DsarRequest(
            request_id,
            None if user_id is None else str(user_id),
            amplitude_id,
            start,
            end,
            fail_reason=dsar.fail_reason,
        )
    return SimResponse.json(HTTPStatus.ACCEPTED, {"requestId": request_id})


def request_status(sim: Context, request: SimRequest) -> SimResponse:
    """The request's fields; each read moves it along its lifecycle."""
    refused = _admit(sim, request, GET_COST)
    if refused is not None:
        return refused
    dsar = sim.dsar
    today = _today(sim)
    with dsar.lock:
        ask = _find(dsar, request.path_params["request_id"])
        if ask is None:
            return _error(404, "Request not found")
        ask.polls += 1
        status = _status(dsar, ask)
        if status == "done" and ask.done_on is None:
            ask.done_on = today
            ask.outputs = _outputs(sim, ask)
        base = f"http://{request.header('Host') or '127.0.0.1'}{PATH}/{ask.request_id}/outputs"
        payload = {
            "requestId": ask.request_id,
            "userId": ask.user_id,
            "amplitudeId": ask.amplitude_id,
            "startDate": ask.start.isoformat(),
            "endDate": ask.end.isoformat(),
            "status": status,
            "failReason": ask.fail_reason if status == "failed" else None,
            "urls": [f"{base}/{index}" for index in range(len(ask.outputs))],
            "expires": _expires(dsar, ask).isoformat() if ask.done_on else None,
        }
    return SimResponse.json(HTTPStatus.OK, payload)


def output_link(sim: Context, request: SimRequest) -> SimResponse:
    """302 to a pre-signed download link; 410 once the outputs have expired."""
    refused = _admit(sim, request, GET_COST)
    if refused is not None:
        return refused
    dsar = sim.dsar
    with dsar.lock:
        ask = _find(dsar, request.path_params["request_id"])
        index = _index(request.path_params["output_id"])
        if ask is None or ask.done_on is None or index is None or index >= len(ask.outputs):
            return _error(404, "Output not found")
        if _today(sim) > _expires(dsar, ask):
            return _error(410, f"The outputs of request {ask.request_id} have expired")
        ttl = dsar.link_ttl_seconds
    expires_at = math.floor(time.time() + ttl)
    query = {
        "X-Amz-Expires": str(expires_at),
        "X-Amz-Signature": _sign(ask.request_id, index, expires_at),
    }
    location = (
        f"http://{request.header('Host') or '127.0.0.1'}{DOWNLOADS}/{ask.request_id}/{index}"
        f"?{urlencode(query)}"
    )
    return SimResponse(HTTPStatus.FOUND, {"Location": location})


def download(sim: Context, request: SimRequest) -> SimResponse:
    """The output's gzip JSON lines, if the link is genuine and has not expired."""
    dsar = sim.dsar
    index = _index(request.path_params["output_id"])
    try:
        expires_at = int(request.params.get("X-Amz-Expires", ""))
    except ValueError:
        return _access_denied("Query-string authentication requires the X-Amz-Expires parameter")
    with dsar.lock:
        ask = _find(dsar, request.path_params["request_id"])
        if ask is None or index is None or index >= len(ask.outputs):
            return _access_denied("Access Denied")
        signature = request.params.get("X-Amz-Signature", "")
        if not hmac.compare_digest(signature, _sign(ask.request_id, index, expires_at)):
            return _access_denied("The request signature we calculated does not match")
        if time.time() > expires_at:
            return _access_denied("Request has expired")
        body = ask.outputs[index]
        if dsar.corrupt_downloads > 0:
            dsar.corrupt_downloads -= 1
            body = body[:-8] + _DAMAGED_CRC + body[-4:]  # the gzip trailer's CRC-32
    return SimResponse(HTTPStatus.OK, {"Content-Type": "application/octet-stream"}, body)


# ----------------------------------------------------------------------------------------
# helpers


def _admit(sim: Context, request: SimRequest, cost: int) -> SimResponse | None:
    """Refuse bad or unwelcome keys, then charge ``cost`` against the budget (429 beyond)."""
    dsar = sim.dsar
    header = request.header("Authorization")
    org = Project(sim.project.app_id, dsar.org_api_key, dsar.org_secret_key)
    if check_basic(header, org) is not None:
        denied = check_basic(header, sim.project)
        if denied is not None:
            return denied
        if dsar.refuse_project_keys:
            return _error(
                dsar.refusal_status,
                "This API requires an organization API key, rather than a project level "
                "API key. Contact Amplitude Support for assistance.",
            )
    now = time.monotonic()
    with dsar.lock:
        window = dsar.window_seconds
        dsar.spent[:] = [(at, units) for at, units in dsar.spent if at > now - window]
        used = sum(units for _, units in dsar.spent)
        if used + cost > dsar.cost_per_window:
            wait = window
            for at, units in dsar.spent:  # oldest first: until enough has left the window
                used -= units
                if used + cost <= dsar.cost_per_window:
                    wait = at + window - now
                    break
            refused = _error(
                429,
                f"Exceeded the DSAR cost budget ({dsar.cost_per_window} per "
                f"{window:g} s; this request costs {cost})",
            )
            refused.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return refused
        dsar.spent.append((now, cost))
    return None


def _status(dsar: DsarSettings, ask: DsarRequest) -> str:
    """Where the request is after its status reads so far."""
    steps = max(1, dsar.polls_per_state)
    if ask.polls <= steps:
        return "staging"
    if ask.polls <= 2 * steps:
        return "submitted"
    return "failed" if ask.fail_reason else "done"


def _outputs(sim: Context, ask: DsarRequest) -> list[bytes]:
    """One shuffled gzip JSON-lines body per month that has the user's events."""
    if ask.fail_reason:
        return []
    amplitude_id = ask.amplitude_id
    if amplitude_id is None:
        found = next((u for u in sim.dataset.user_list() if u.user_id == ask.user_id), None)
        amplitude_id = found.amplitude_id if found else None
    if amplitude_id is None or amplitude_id in sim.deletions.erased(_today(sim)):
        return []
    months: dict[str, list[bytes]] = {}
    now_text = sim.current_time().astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    for line in activity_lines(sim.dataset, amplitude_id):
        row = json.loads(line)
        event_time = str(row.get("event_time") or "")
        day = event_time[:10]
        if ask.start.isoformat() <= day <= ask.end.isoformat() and event_time <= now_text:
            months.setdefault(day[:7], []).append(line)
    bodies = []
    for month in sorted(months):
        lines = months[month]
        random.Random(f"dsar|{ask.request_id}|{month}").shuffle(lines)  # noqa: S311
        bodies.append(gzip.compress(b"\n".join(lines) + b"\n", mtime=0))
    return bodies


def _expires(dsar: DsarSettings, ask: DsarRequest) -> date:
    """The last day the outputs can be downloaded."""
    assert ask.done_on is not None  # noqa: S101 - callers check
    return ask.done_on + timedelta(days=dsar.expires_days)


def _find(dsar: DsarSettings, raw: str) -> DsarRequest | None:
    """The request a path names, if any."""
    return dsar.requests.get(int(raw)) if raw.isdigit() else None


def _index(raw: str) -> int | None:
    """An output id from a path."""
    return int(raw) if raw.isdigit() else None


def _sign(request_id: int, index: int, expires_at: int) -> str:
    """The pre-signed link's signature."""
    message = f"{request_id}/{index}/{expires_at}".encode()
    return hmac.new(_SIGNING_KEY, message, hashlib.sha256).hexdigest()


def _date(body: dict[str, t.Any], name: str) -> date:
    """A ``YYYY-MM-DD`` body field.

    Raises:
        ValueError: naming the field, if it is missing or not a date.
    """
    value = body.get(name)
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise ValueError(name)
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(name) from exc


def _today(sim: Context) -> date:
    return sim.current_time().astimezone(timezone.utc).date()


def _access_denied(message: str) -> SimResponse:
    """S3's XML refusal of a pre-signed link."""
    body = f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>"
    return SimResponse(HTTPStatus.FORBIDDEN, {"Content-Type": "application/xml"}, body.encode())


def _error(status: int, message: str) -> SimResponse:
    """An error in the ``{"error": ...}`` shape of the privacy APIs."""
    return SimResponse.json(status, {"error": message})
