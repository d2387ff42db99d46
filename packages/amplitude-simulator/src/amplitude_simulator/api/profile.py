"""The User Profile API (``GET /v1/userprofile``), as docs/amplitude-api.md §7 describes it.

Auth is ``Authorization: Api-Key <secret_key>`` (the route's ``api-key`` scheme). Sections
that were not asked for are ``null``; computations come back inside ``amp_props`` as
strings. An unknown user gets ``{"error": "User id and device id not seen before"}`` with
HTTP 400: Amplitude does not document the status, and 400 is the simulator's choice.
``get_propensity=true`` (with ``prediction_id``, ``propensity_type`` ``score`` or ``pct``)
adds ``propensity`` (null when several ids are asked) and ``propensities`` (§7).
"""

from __future__ import annotations

import random
import typing as t
from datetime import timezone

from amplitude_simulator.data.dataset import (
    UserProfile,
    last_seen_ms,
    visible_activity_lines,
)
from amplitude_simulator.data.values import epoch_ms, format_timestamp
from amplitude_simulator.protocol import Route, SimRequest, SimResponse

if t.TYPE_CHECKING:
    from amplitude_simulator.protocol import Context

UNKNOWN_USER = "User id and device id not seen before"
# Cohorts synced to the Profile API, and the rule that puts a user in each.
_COHORTS: tuple[tuple[str, t.Callable[[UserProfile], bool]], ...] = (
    ("c0h0rt1", lambda p: p.paying),
    ("c0h0rt2", lambda p: p.platform != "Web"),
    ("c0h0rt3", lambda p: p.activity_count >= 100),  # noqa: PLR2004 - "power users"
    ("c0h0rt4", lambda p: p.properties.get("is_trial") is True),
)
# Computation ids the project defines; values are derived from the user and the number of
# events Amplitude has for them so far.
_COMPUTATIONS: dict[str, t.Callable[[UserProfile, int], float]] = {
    "comp-events-total": lambda _p, events: float(events),
    "comp-ltv": lambda p, _events: float(p.properties.get("lifetime_value") or 0),
}
_REC_ITEMS = ("sku-1042", "sku-2210", "sku-0007", "sku-7781", "sku-5150", "sku-3141")
_REC_ITEM_COUNT = 3


def routes() -> list[Route]:
    """The Profile API's one endpoint."""
    return [Route("GET", "/v1/userprofile", handle_profile, auth="api-key")]


def handle_profile(sim: Context, request: SimRequest) -> SimResponse:
    """One user's profile, with the sections the flags ask for."""
    params = request.params
    user_id, device_id = params.get("user_id"), params.get("device_id")
    if not user_id and not device_id:
        return SimResponse.json(400, {"error": "Either user_id or device_id is required"})
    get_recs = _flag(params, "get_recs")
    if get_recs and not params.get("rec_id"):
        return SimResponse.json(400, {"error": "rec_id is required when get_recs is true"})
    get_propensity = _flag(params, "get_propensity")
    if get_propensity and not params.get("prediction_id"):
        return SimResponse.json(
            400, {"error": "prediction_id is required when get_propensity is true"}
        )
    profile = _find(sim, user_id=user_id, device_id=device_id)
    if profile is None:
        return SimResponse.json(400, {"error": UNKNOWN_USER})
    now_ms = epoch_ms(sim.current_time())
    amp_props: dict[str, t.Any] | None = None
    if _flag(params, "get_amp_props"):
        last_used = last_seen_ms(sim.dataset, profile, now_ms)
        amp_props = {
            "library": profile.library,
            "first_used": format_timestamp(profile.created_ms)[:10],
            "last_used": format_timestamp(last_used)[:10],
            **profile.properties,
        }
    if _flag(params, "get_computations"):
        events = len(visible_activity_lines(sim.dataset, profile.user.amplitude_id, now_ms))
        amp_props = {**(amp_props or {}), **_computations(profile, events, params.get("comp_id"))}
    user_data = {
        "recommendations": _recommendations(profile, params["rec_id"]) if get_recs else None,
        "user_id": profile.user.user_id,
        "device_id": profile.user.device_id,
        "amp_props": amp_props,
        "cohort_ids": _cohorts(profile) if _flag(params, "get_cohort_ids") else None,
    }
    if get_propensity:
        user_data.update(
            _propensities(profile, params["prediction_id"], params.get("propensity_type"))
        )
    return SimResponse.json(200, {"userData": user_data})


def _find(sim: Context, *, user_id: str | None, device_id: str | None) -> UserProfile | None:
    """The user with that user id (or, failing that, device id); none once deleted."""
    erased = sim.deletions.erased(sim.current_time().astimezone(timezone.utc).date())
    for profile in sim.dataset.profiles():
        if profile.user.amplitude_id in erased:
            continue
        if user_id and profile.user.user_id == user_id:
            return profile
        if not user_id and device_id and profile.user.device_id == device_id:
            return profile
    return None


def _flag(params: t.Mapping[str, str], name: str) -> bool:
    """Amplitude's boolean query flags: ``true`` in any case; absent means false."""
    return params.get(name, "").strip().lower() == "true"


def _cohorts(profile: UserProfile) -> list[str]:
    """Ids of the synced cohorts the user is in."""
    return [cohort for cohort, member in _COHORTS if member(profile)]


def _computations(profile: UserProfile, events: int, comp_id: str | None) -> dict[str, str | None]:
    """Computed properties as strings; a requested id that does not exist is null."""
    wanted = [c.strip() for c in comp_id.split(",")] if comp_id else list(_COMPUTATIONS)
    return {
        name: str(_COMPUTATIONS[name](profile, events)) if name in _COMPUTATIONS else None
        for name in wanted
        if name
    }


def _propensities(
    profile: UserProfile, prediction_id: str, propensity_type: str | None
) -> dict[str, t.Any]:
    """``propensity`` (null for several ids) and ``propensities``, one per prediction id."""
    kind = "pct" if (propensity_type or "").strip().lower() == "pct" else "score"
    found = []
    for pred in (p.strip() for p in prediction_id.split(",")):
        if not pred:
            continue
        rng = random.Random(f"amplitude-sim|pred|{pred}|{profile.user.amplitude_id}")  # noqa: S311
        score = rng.random()
        value = round(score * 100, 2) if kind == "pct" else round(score, 6)
        found.append({"prop": value, "pred_id": pred, "prop_type": kind})
    return {
        "propensity": found[0]["prop"] if len(found) == 1 else None,
        "propensities": found,
    }


def _recommendations(profile: UserProfile, rec_id: str) -> list[dict[str, t.Any]]:
    """One recommendation per requested id, stable per user."""
    recs = []
    for rec in (r.strip() for r in rec_id.split(",")):
        if not rec:
            continue
        rng = random.Random(f"amplitude-sim|rec|{rec}|{profile.user.amplitude_id}")  # noqa: S311
        recs.append(
            {
                "rec_id": rec,
                "child_rec_id": rec,
                "items": rng.sample(_REC_ITEMS, _REC_ITEM_COUNT),
                "is_control": False,
                "recommendation_source": "model",
                "last_updated": profile.last_seen_ms // 1000,
            }
        )
    return recs
