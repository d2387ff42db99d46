"""``/api/3/cohorts``: the project's cohorts (docs/amplitude-api.md §4).

Refused without the Behavioral Cohorts add-on (``sim.analytics.cohorts_addon``), with the
status ``sim.analytics.cohorts_refusal_status``. ``includeSyncInfo=true`` adds
``syncMetadata`` to every cohort and changes nothing else: it is drawn from its own streams.
"""

from __future__ import annotations

import random
import string
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from amplitude_simulator.protocol import Route, SimResponse

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from amplitude_simulator.data.dataset import Dataset, UserProfile
    from amplitude_simulator.protocol import Context, SimRequest

ADDON_MESSAGE = "Behavioral Cohorts add-on required"
ADDON_DETAILS = (
    "This project's plan does not include the Behavioral Cohorts API; ask your Amplitude "
    "account manager to add it."
)
_DAY_SECONDS = 86_400


def routes() -> list[Route]:
    """The cohort listing."""
    return [Route("GET", "/api/3/cohorts", handle_cohorts)]


# name, description, membership rule, predictive?, archived?
_COHORTS: tuple[tuple[str, str, Callable[[UserProfile], bool], bool, bool], ...] = (
    ("Paying customers", "Users on a paid plan", lambda p: p.paying, False, False),
    ("Mobile users", "iOS and Android", lambda p: p.platform != "Web", False, False),
    ("Power users", "100+ events", lambda p: p.activity_count >= 100, False, False),  # noqa: PLR2004
    ("Trials", "On a trial", lambda p: p.properties.get("is_trial") is True, False, False),
    (
        "Enterprise (2023)",
        "Old enterprise segment",
        lambda p: p.properties.get("plan") == "enterprise",
        False,
        True,
    ),
    ("Likely to churn", "Predicted churn", lambda p: p.activity_count < 20, True, False),  # noqa: PLR2004
)
_OWNERS = ("ana@example.com", "ben@example.org", "chen@example.net")


def cohort_list(
    dataset: Dataset,
    *,
    sync_info: bool,
    revisions: Mapping[str, int] | None = None,
    epoch_ms: bool = False,
    erased: frozenset[int] = frozenset(),
) -> list[dict[str, Any]]:
    """The project's cohorts, sizes counted over the dataset's users (not the ``erased``).

    A cohort's revision (``sim.cohort_export.revisions``) changes its members and moves its
    ``lastMod`` and ``lastComputed`` on by an hour each (docs/amplitude-api.md §11.5).
    """
    rng = random.Random(f"amplitude-sim|cohorts|{dataset.seed}|{dataset.app_id}")  # noqa: S311
    start = int(dataset.start.timestamp())
    computed = int(dataset.end.timestamp()) - 3600
    items: list[dict[str, Any]] = []
    for index, (name, description, _, predictive, archived) in enumerate(_COHORTS):
        created = start - rng.randint(10, 400) * _DAY_SECONDS
        from_chart = index % 3 == 1
        cohort: dict[str, Any] = {
            "appId": dataset.app_id,
            "archived": archived,
            "definition": _definition(name, predictive=predictive),
            "description": description,
            "finished": True,
            "id": "".join(rng.choices(string.ascii_lowercase + string.digits, k=7)),
            "name": name,
            "owners": [rng.choice(_OWNERS)],
            "viewers": rng.sample(_OWNERS, rng.randint(0, 2)),
            "published": not archived,
            "size": 0,  # counted below, once the id (and so the revision) is known
            "type": "predictive" if predictive else "redshift",
            "lastMod": created + rng.randint(0, 9) * _DAY_SECONDS + rng.randint(0, 86_399),
            "createdAt": created,
            "lastComputed": computed,
            "hidden": False,
            "metadata": ["funnel", f"step {index}"] if from_chart else None,
            "view_count": rng.randint(0, 500) if index % 2 else None,
            "popularity": rng.randint(0, 50) if from_chart else None,
            "last_viewed": start + rng.randint(0, 86_399) if index % 2 else None,
            "chart_id": f"{rng.randrange(10**6, 10**7):x}" if from_chart else None,
            "edit_id": f"{rng.randrange(10**6, 10**7):x}" if from_chart else None,
            "is_predictive": predictive,
            "is_official_content": index == 0,
            "location_id": f"loc-{rng.randrange(1000)}" if from_chart else None,
            "shortcut_ids": [],
        }
        revision = (revisions or {}).get(cohort["id"], 0)
        cohort["size"] = len(members_of(dataset, index, revision, erased))
        cohort["lastMod"] += revision * 3600
        cohort["lastComputed"] += revision * 3600
        if epoch_ms:
            for key in ("lastMod", "createdAt", "lastComputed", "last_viewed"):
                if cohort[key] is not None:
                    cohort[key] *= 1000
        if sync_info:  # its own stream: the flag adds syncMetadata and changes nothing else
            sync_rng = random.Random(  # noqa: S311
                f"amplitude-sim|cohort-sync|{dataset.seed}|{dataset.app_id}|{index}"
            )
            cohort["syncMetadata"] = _sync_metadata(sync_rng, computed) if index % 2 == 0 else []
        items.append(cohort)
    return items


def members_of(
    dataset: Dataset, index: int, revision: int = 0, erased: frozenset[int] = frozenset()
) -> list[UserProfile]:
    """The members of the ``index``-th cohort at ``revision`` (each revision drops some).

    Users whose deletion job is done (``erased`` Amplitude ids) are in no cohort.
    """
    member = _COHORTS[index][2]
    found = [
        profile
        for profile in dataset.profiles()
        if member(profile) and profile.user.amplitude_id not in erased
    ]
    if revision:
        found = [profile for profile in found if profile.index % (revision + 2) != 0]
    return found


def _definition(name: str, *, predictive: bool) -> dict[str, Any]:
    """A definition in the shape of Amplitude's docs sample."""
    return {
        "version": 3,
        "countGroup": {"name": "User", "is_computed": False},
        "cohortType": "PREDICTIVE" if predictive else "UNIQUES",
        "andClauses": [
            {
                "negated": False,
                "orClauses": [
                    {
                        "type": "event",
                        "time_type": "rolling",
                        "time_value": 30,
                        "offset": 0,
                        "interval": 1,
                        "type_value": "_active",
                        "operator": ">=",
                        "operator_value": 1,
                        "group_by": [],
                        "metric": None,
                        "label": name,
                    }
                ],
            }
        ],
        "referenceFrameTimeParams": {},
    }


def _sync_metadata(rng: random.Random, computed: int) -> list[dict[str, Any]]:
    """One active sync; its times as ISO 8601 with an offset, like the docs sample."""
    pacific = timezone(timedelta(hours=-7))
    last = datetime.fromtimestamp(computed - rng.randint(0, 3600), tz=pacific)
    return [
        {
            "target": rng.choice(("braze", "iterable", "hubspot")),
            "frequency": rng.choice(("minute", "hourly", "daily")),
            "last_successful": last.isoformat(),
            "last_failure": None,
            "params": {"user_id": rng.choice(_OWNERS)},
        }
    ]


def erased_ids(sim: Context) -> frozenset[int]:
    """Amplitude ids whose deletion job is done today: they belong to no cohort (§17.6)."""
    return frozenset(sim.deletions.erased(sim.current_time().astimezone(timezone.utc).date()))


def handle_cohorts(sim: Context, request: SimRequest) -> SimResponse:
    """``/api/3/cohorts``; refused without the Behavioral Cohorts add-on."""
    settings = sim.analytics
    if not settings.cohorts_addon:
        return SimResponse.error(
            settings.cohorts_refusal_status, ADDON_MESSAGE, details=ADDON_DETAILS
        )
    sync_info = request.params.get("includeSyncInfo", "").lower() == "true"
    export = sim.cohort_export
    with export.lock:
        revisions, extra = dict(export.revisions), dict(export.extra_members)
    cohorts = cohort_list(
        sim.dataset,
        sync_info=sync_info,
        revisions=revisions,
        epoch_ms=export.epoch_ms,
        erased=erased_ids(sim),
    )
    for cohort in cohorts:
        cohort["size"] += extra.get(cohort["id"], 0)
    return SimResponse.json(HTTPStatus.OK, {"cohorts": cohorts})
