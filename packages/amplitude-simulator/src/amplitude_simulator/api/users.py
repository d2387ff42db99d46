"""User lookups: ``/api/2/usersearch`` and ``/api/2/useractivity`` (docs/amplitude-api.md §5, §6).

Neither answer is wrapped in ``data``; errors use the ``{"error": {...}}`` envelope. Both show
only what Amplitude has at the simulator's now: no event from the future, and ``last_seen``
is the newest event uploaded so far. A user whose deletion job is done is not found by
search, and their activity is gone (uploaded before the job's day; with nothing left, the
answer is the unknown user's).
"""

from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from amplitude_simulator.data.dataset import last_seen_ms, visible_activity_lines
from amplitude_simulator.data.values import epoch_ms, format_timestamp
from amplitude_simulator.protocol import JSON, Route, SimResponse

if TYPE_CHECKING:
    from amplitude_simulator.data.dataset import Dataset, UserProfile
    from amplitude_simulator.protocol import Context, SimRequest

MAX_ACTIVITY_LIMIT = 1000
MAX_SEARCH_MATCHES = 100


def routes() -> list[Route]:
    """The user lookup endpoints."""
    return [
        Route("GET", "/api/2/usersearch", user_search),
        Route("GET", "/api/2/useractivity", user_activity),
    ]


def _match(dataset: Dataset, profile: UserProfile, now_ms: int) -> dict[str, Any]:
    return {
        "user_id": profile.user.user_id,
        "amplitude_id": profile.user.amplitude_id,
        "last_seen": format_timestamp(last_seen_ms(dataset, profile, now_ms), fraction=False),
        "platform": profile.platform,
        "country": profile.place[0],
    }


def user_search(simulator: Context, request: SimRequest) -> SimResponse:
    """Exact user/device id, then Amplitude ID, then user-id prefix, else ``nomatch``."""
    query = request.params.get("user", "")
    if not query:
        return SimResponse.error(HTTPStatus.BAD_REQUEST, "Missing required parameter: user")
    erased = simulator.deletions.erased(simulator.current_time().astimezone(timezone.utc).date())
    profiles = [p for p in simulator.dataset.profiles() if p.user.amplitude_id not in erased]
    found = [p for p in profiles if query in {p.user.user_id, p.user.device_id}]
    kind = "match_user_or_device_id"
    if not found and query.isdigit():
        found = [p for p in profiles if p.user.amplitude_id == int(query)]
        kind = "match_amplitude_id"
    if not found:
        found = [p for p in profiles if p.user.user_id.startswith(query)]
        kind = "match_user_prefix"
    if not found:
        return SimResponse.json(HTTPStatus.OK, {"matches": [], "type": "nomatch"})
    now_ms = epoch_ms(simulator.current_time())
    matches = [_match(simulator.dataset, p, now_ms) for p in found[:MAX_SEARCH_MATCHES]]
    return SimResponse.json(HTTPStatus.OK, {"matches": matches, "type": kind})


def _int_param(request: SimRequest, name: str, default: int) -> int:
    raw = request.params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise ValueError(f"Invalid {name}: expected a non-negative integer, got {raw!r}")
    return int(raw)


def user_activity(simulator: Context, request: SimRequest) -> SimResponse:
    """One page of a user's events, newest first, with the ``userData`` summary."""
    raw_user = request.params.get("user", "")
    if not raw_user:
        return SimResponse.error(HTTPStatus.BAD_REQUEST, "Missing required parameter: user")
    if not raw_user.isdigit():
        return SimResponse.error(
            HTTPStatus.BAD_REQUEST,
            "Invalid user: expected an Amplitude ID (a number); find it with usersearch",
        )
    try:
        offset = _int_param(request, "offset", 0)
        limit = min(_int_param(request, "limit", MAX_ACTIVITY_LIMIT), MAX_ACTIVITY_LIMIT)
    except ValueError as exc:
        return SimResponse.error(HTTPStatus.BAD_REQUEST, str(exc))
    direction = request.params.get("direction", "latest")
    if direction not in {"latest", "earliest"}:
        return SimResponse.error(
            HTTPStatus.BAD_REQUEST, "Invalid direction: expected 'latest' or 'earliest'"
        )
    amplitude_id = int(raw_user)
    dataset = simulator.dataset
    lines = visible_activity_lines(dataset, amplitude_id, epoch_ms(simulator.current_time()))
    today = simulator.current_time().astimezone(timezone.utc).date()
    erased_on = simulator.deletions.erasures(today).get(amplitude_id)
    if erased_on is not None:  # the job deleted every event uploaded before its day (§17.3)
        lines = tuple(
            line
            for line in lines
            if json.loads(line)["server_upload_time"][:10] >= erased_on.isoformat()
        )
    ordered = lines if direction == "latest" else lines[::-1]
    page = ordered[offset : offset + limit]
    if erased_on is not None and not lines:
        summary = json.dumps(unknown_user_data(amplitude_id), separators=(",", ":")).encode()
    else:
        summary = _user_data_json(dataset, amplitude_id, lines)
    body = b'{"userData":' + summary + b',"events":[' + b",".join(page) + b"]}"
    return SimResponse(HTTPStatus.OK, {"Content-Type": JSON}, body)


@functools.lru_cache(maxsize=256)
def _user_data_json(dataset: Dataset, amplitude_id: int, lines: tuple[bytes, ...]) -> bytes:
    """``userData`` encoded once per user and rows (pages of one user share it)."""
    payload = user_data(dataset, amplitude_id, lines)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def user_data(dataset: Dataset, amplitude_id: int, lines: tuple[bytes, ...]) -> dict[str, Any]:
    """The ``userData`` block of §5, summarising the user's activity ``lines`` (newest first)."""
    profile = dataset.find_user(amplitude_id)
    if profile is None:
        return unknown_user_data(amplitude_id)
    events = [json.loads(line) for line in lines]
    sessions: dict[int, list[str]] = {}
    for event in events:
        if event["session_id"] != -1:
            sessions.setdefault(event["session_id"], []).append(event["client_event_time"])
    usage_ms = sum(_span_ms(times) for times in sessions.values())
    purchases = [e for e in events if e["event_type"] == "purchase_completed"]
    revenue = sum(e["event_properties"].get("revenue", 0) for e in purchases)
    located = next((e for e in events if e["location_lat"] is not None), None)
    return {
        "user_id": profile.user.user_id,
        "canonical_amplitude_id": amplitude_id,
        "merged_amplitude_ids": list(profile.merged_amplitude_ids),
        "num_events": len(events),
        "num_sessions": len(sessions),
        "usage_time": usage_ms,
        "first_used": events[-1]["client_event_time"][:10] if events else None,
        "last_used": events[0]["client_event_time"][:10] if events else None,
        "purchases": len(purchases),
        "revenue": round(revenue, 2),
        "paying": "true" if profile.paying else "",
        "platform": profile.platform,
        "os": f"{profile.os_name} {profile.os_version}",
        "version": profile.version_name or "",
        "device": profile.device_family,
        "device_type": profile.device_type,
        "carrier": profile.carrier,
        "country": profile.place[0],
        "region": profile.place[1],
        "city": profile.place[2],
        "dma": profile.place[3],
        "language": profile.place[6],
        "start_version": profile.start_version,
        "library": profile.library,
        "ip_address": profile.ip_address,
        "last_device_id": profile.user.device_id,
        "device_ids": [profile.user.device_id],
        "last_location": (
            {"lat": located["location_lat"], "lng": located["location_lng"]} if located else None
        ),
        "properties": dict(profile.properties),
    }


def unknown_user_data(amplitude_id: int) -> dict[str, Any]:
    """``userData`` for an Amplitude ID Amplitude has nothing for (§5)."""
    return {
        "num_sessions": 0,
        "purchases": 0,
        "revenue": 0,
        "merged_amplitude_ids": [],
        "num_events": 0,
        "canonical_amplitude_id": amplitude_id,
        "user_id": None,
        "last_location": None,
        "usage_time": 0,
        "last_device_id": None,
        "device_ids": [],
    }


def _span_ms(times: list[str]) -> int:
    """Milliseconds between a session's first and last event (timestamps sort as text)."""
    first, last = datetime.fromisoformat(min(times)), datetime.fromisoformat(max(times))
    return (last - first) // timedelta(milliseconds=1)
