"""User mapping lookup, ``GET /api/2/usermap`` (docs/amplitude-api.md §15.2).

Modelling choices where the docs are silent or disagree:

* ``user_ids`` is read from a form body (repeated ``user_ids=``, as the doc's example sends
  it on a GET), from the query string (repeated too, §15.5, or comma-separated), or from a
  JSON body (``{"user_ids": [...]}`` or a bare list); 1 to 100 ids, else 400.
* The answer is the doc's example shape: an object keyed by each requested user id, with
  ``mapped_from`` (users mapped into it) and ``mapped_to`` (the user it is mapped into),
  lists of ``{"amplitude_id", "user_id"}``. ``sim.usermap.wrap_in_mappings`` wraps it in
  ``{"mappings": ...}`` as the doc's table does. An id with no mapping gets ``{}``.
* Basic auth with the project's keys.
"""

from __future__ import annotations

import json
import typing as t
from http import HTTPStatus
from urllib.parse import parse_qs

from amplitude_simulator.protocol import Route, SimRequest, SimResponse

if t.TYPE_CHECKING:
    from amplitude_simulator.data.dataset import Dataset
    from amplitude_simulator.protocol import Context
    from amplitude_simulator.settings import UserMapSettings

PATH = "/api/2/usermap"
MAX_USER_IDS = 100


def routes() -> list[Route]:
    """The mapping lookup."""
    return [Route("GET", PATH, lookup, auth="basic")]


def lookup(sim: Context, request: SimRequest) -> SimResponse:
    """Who maps into, and out of, each requested user id."""
    user_ids = _user_ids(request)
    if not user_ids or len(user_ids) > MAX_USER_IDS:
        return SimResponse.json(
            HTTPStatus.BAD_REQUEST, {"error": f"Provide 1 to {MAX_USER_IDS} user_ids"}
        )
    settings = sim.usermap
    amplitude_ids = {user.user_id: user.amplitude_id for user in sim.dataset.user_list()}
    answer: dict[str, t.Any] = {}
    for user_id in dict.fromkeys(user_ids):
        mapped_from = [source for source, target in settings.mappings.items() if target == user_id]
        target = settings.mappings.get(user_id)
        if not mapped_from and target is None:
            answer[user_id] = {}
            continue
        answer[user_id] = {
            "mapped_from": [_user(amplitude_ids, source) for source in mapped_from],
            "mapped_to": [] if target is None else [_user(amplitude_ids, target)],
        }
    return SimResponse.json(
        HTTPStatus.OK, {"mappings": answer} if settings.wrap_in_mappings else answer
    )


def seed_mappings(settings: UserMapSettings, dataset: Dataset) -> None:
    """Map the dataset's fourth user into its first (datasets of five users or more)."""
    users = dataset.user_list()
    if len(users) >= 5:  # noqa: PLR2004
        settings.mappings.setdefault(users[3].user_id, users[0].user_id)


def _user(amplitude_ids: dict[str, int], user_id: str) -> dict[str, t.Any]:
    return {"amplitude_id": amplitude_ids.get(user_id), "user_id": user_id}


def _user_ids(request: SimRequest) -> list[str]:
    """``user_ids`` from the body (form or JSON) or the query string."""
    found: list[str] = []
    body = request.body.strip()
    if body.startswith((b"{", b"[")):
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        values = payload.get("user_ids") if isinstance(payload, dict) else payload
        if isinstance(values, list):
            found += [str(value) for value in values]
    elif body:
        found += parse_qs(body.decode("utf-8", "replace")).get("user_ids", [])
    if not found:
        for raw in parse_qs(request.query).get("user_ids", []):  # repeated, like the form
            if raw.startswith("["):
                try:
                    found += [str(value) for value in json.loads(raw)]
                except ValueError:
                    continue
            else:
                found += [value for value in raw.split(",") if value]
    return found
