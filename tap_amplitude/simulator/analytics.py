"""Dashboard REST charts and project metadata: active users, session length, cohorts, annotations.

Shapes follow amplitude-api.md §3.3, §3.4 and §4: chart answers are wrapped in ``data`` with
``series``, ``seriesMeta``, ``seriesLabels``, ``seriesCollapsed`` and ``xValues``; errors use
the ``{"error": {...}}`` envelope of §1.4. Chart values are computed from the dataset's own
events, with days in the project's time zone (:attr:`AnalyticsSettings.timezone`).

Switches (``sim.analytics``) reproduce what real projects do: no Behavioral Cohorts add-on
(``cohorts_addon``), a group-by the project refuses (``group_by_supported``, the 400 of
airbytehq/airbyte#46712), and the 400 for a start date in the future, always on.
"""

from __future__ import annotations

import functools
import random
import string
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from tap_amplitude.simulator import server

if TYPE_CHECKING:
    from collections.abc import Callable

    from tap_amplitude.simulator.dataset import Dataset, UserProfile

DATE_FORMAT = "%Y%m%d"
SUPPORTED_GROUP_BY = "country"
ADDON_MESSAGE = "Behavioral Cohorts add-on required"
ADDON_DETAILS = (
    "This project's plan does not include the Behavioral Cohorts API; ask your Amplitude "
    "account manager to add it."
)
_DAY_SECONDS = 86_400


@dataclass
class AnalyticsSettings:
    """How the simulated project answers the endpoints of this module."""

    #: False: ``/api/3/cohorts`` is refused, as for a plan without the add-on.
    cohorts_addon: bool = True
    #: Status of that refusal (403 or 400; Amplitude does not document which).
    cohorts_refusal_status: int = HTTPStatus.FORBIDDEN
    #: False: any ``g=`` group-by gets 400 ``Invalid chart definition``.
    group_by_supported: bool = True
    #: The project's time zone: the days of every chart, and what "today" is.
    timezone: tzinfo = field(default=timezone.utc)


def routes() -> list[server.Route]:
    """The chart and metadata endpoints this module serves."""
    return [
        server.Route("GET", "/api/2/users", handle_active_users),
        server.Route("GET", "/api/2/sessions/average", handle_average_session_length),
        server.Route("GET", "/api/3/cohorts", handle_cohorts),
        server.Route("GET", "/api/2/annotations", handle_annotations),
    ]


# --------------------------------------------------------------------------------------
# daily figures from the dataset


@dataclass(frozen=True)
class DailyFigures:
    """Per project day: who was active (overall and per country) and session lengths."""

    active: dict[date, frozenset[int]]
    active_by_country: dict[date, dict[str, frozenset[int]]]
    session_seconds: dict[date, tuple[float, ...]]


def _parse_ms(text: str) -> int:
    """Amplitude's zone-less UTC timestamp as epoch milliseconds."""
    moment = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _day(ms: int, zone: tzinfo) -> date:
    """The project day an epoch-millisecond instant falls on."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).astimezone(zone).date()


@functools.lru_cache(maxsize=16)
def daily_figures(dataset: Dataset, zone: tzinfo) -> DailyFigures:
    """Active users by event day and sessions by start day, over every event of the dataset.

    A session lasts from its start (``session_id``, ms) to its last event's ``event_time``.
    """
    active: dict[date, set[int]] = defaultdict(set)
    by_country: dict[date, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    session_ends: dict[tuple[int, int], int] = {}
    for hour in dataset.hours():
        for event in dataset.events_for_hour(hour):
            when = _parse_ms(event["event_time"])
            user = int(event["amplitude_id"])
            day = _day(when, zone)
            active[day].add(user)
            by_country[day][event["country"] or "(none)"].add(user)
            session = int(event["session_id"])
            if session != -1:
                key = (user, session)
                session_ends[key] = max(session_ends.get(key, when), when)
    lengths: dict[date, list[float]] = defaultdict(list)
    for (_, session), end in session_ends.items():
        lengths[_day(session, zone)].append(max(0, end - session) / 1000)
    return DailyFigures(
        {day: frozenset(users) for day, users in active.items()},
        {
            day: {country: frozenset(users) for country, users in countries.items()}
            for day, countries in by_country.items()
        },
        {day: tuple(values) for day, values in lengths.items()},
    )


def daily_active_users(dataset: Dataset, zone: tzinfo, day: date) -> int:
    """Users active on ``day`` (0 outside the dataset)."""
    return len(daily_figures(dataset, zone).active.get(day, ()))


def daily_active_users_by_country(dataset: Dataset, zone: tzinfo, day: date) -> dict[str, int]:
    """Users active on ``day`` per country (only countries with someone active)."""
    countries = daily_figures(dataset, zone).active_by_country.get(day, {})
    return {country: len(users) for country, users in countries.items()}


def average_session_seconds(dataset: Dataset, zone: tzinfo, day: date) -> float | None:
    """Mean length of the sessions that started on ``day``; None without sessions."""
    values = daily_figures(dataset, zone).session_seconds.get(day)
    return sum(values) / len(values) if values else None


# --------------------------------------------------------------------------------------
# chart endpoints


class _RejectedError(ValueError):
    """A query Amplitude answers with 400; the args are message and details."""


def _days(sim: server.AmplitudeSimulator, params: dict[str, str]) -> list[date]:
    """The requested days up to the project's today (a future start is refused)."""
    try:
        first = datetime.strptime(params["start"], DATE_FORMAT).date()  # noqa: DTZ007
        last = datetime.strptime(params["end"], DATE_FORMAT).date()  # noqa: DTZ007
    except KeyError as exc:
        raise _RejectedError(f"Missing required parameter: {exc.args[0]}", "") from exc
    except ValueError as exc:
        raise _RejectedError("Invalid date", "start and end must be YYYYMMDD") from exc
    if last < first:
        raise _RejectedError("Invalid date range", "end is before start")
    today = sim.current_time().astimezone(sim.analytics.timezone).date()
    if first > today:
        raise _RejectedError("Invalid date range", f"start date {params['start']} is in the future")
    last = min(last, today)
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def _chart(
    series: list[list[Any]],
    meta: list[Any],
    labels: list[Any],
    collapsed: list[Any],
    days: list[date],
) -> server.SimResponse:
    """A chart answer: one ``series`` row per segment, one value per day in ``xValues``."""
    return server.SimResponse.json(
        HTTPStatus.OK,
        {
            "data": {
                "series": series,
                "seriesMeta": meta,
                "seriesLabels": labels,
                "seriesCollapsed": collapsed,
                "xValues": [day.isoformat() for day in days],
            }
        },
    )


def _rejected(exc: _RejectedError) -> server.SimResponse:
    """The 400 envelope for a refused query."""
    message, details = exc.args
    return server.SimResponse.error(HTTPStatus.BAD_REQUEST, message, details=details)


def handle_active_users(
    sim: server.AmplitudeSimulator, request: server.SimRequest
) -> server.SimResponse:
    """``/api/2/users``: daily active users, project-wide or per country (``g=country``).

    Only the daily active count (``m=active``, ``i=1``) is modelled.
    """
    try:
        days, group_by = _users_query(sim, request.params)
    except _RejectedError as exc:
        return _rejected(exc)
    figures = daily_figures(sim.dataset, sim.analytics.timezone)
    if not group_by:
        everyone = frozenset().union(*(figures.active.get(day, frozenset()) for day in days))
        counts = [len(figures.active.get(day, ())) for day in days]
        return _chart([counts], [{"segmentIndex": 0}], [0], [[_collapsed(len(everyone))]], days)
    per_country: dict[str, set[int]] = defaultdict(set)
    for day in days:
        for country, users in figures.active_by_country.get(day, {}).items():
            per_country[country] |= users
    countries = sorted(per_country, key=lambda name: (-len(per_country[name]), name))
    series = [
        [len(figures.active_by_country.get(day, {}).get(country, ())) for day in days]
        for country in countries
    ]
    collapsed = [[_collapsed(len(per_country[country]))] for country in countries]
    return _chart(series, list(countries), list(countries), collapsed, days)


def _users_query(sim: server.AmplitudeSimulator, params: dict[str, str]) -> tuple[list[date], str]:
    """The days and group-by (``""`` for none) of a users query Amplitude would answer."""
    days = _days(sim, params)
    if params.get("m", "active") != "active" or params.get("i", "1") != "1":
        raise _RejectedError("Unsupported query", "the simulator models only m=active&i=1")
    group_by = params.get("g", "")
    if group_by and (group_by != SUPPORTED_GROUP_BY or not sim.analytics.group_by_supported):
        raise _RejectedError("Invalid chart definition", f"Invalid user property {group_by}")
    return days, group_by


def _collapsed(value: float) -> dict[str, Any]:
    """One ``seriesCollapsed`` cell: the figure over the whole range."""
    return {"setId": "", "value": value}


def handle_average_session_length(
    sim: server.AmplitudeSimulator, request: server.SimRequest
) -> server.SimResponse:
    """``/api/2/sessions/average``: seconds per day; ``series`` is empty without sessions."""
    try:
        days = _days(sim, request.params)
    except _RejectedError as exc:
        return _rejected(exc)
    figures = daily_figures(sim.dataset, sim.analytics.timezone)
    lengths = [figures.session_seconds.get(day, ()) for day in days]
    every = [value for values in lengths for value in values]
    if not every:
        return _chart([], [], [], [], days)
    averages = [sum(values) / len(values) if values else 0.0 for values in lengths]
    overall = [[_collapsed(sum(every) / len(every))]]
    return _chart([averages], [{"segmentIndex": 0}], [0], overall, days)


# --------------------------------------------------------------------------------------
# cohorts and annotations

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


def cohort_list(dataset: Dataset, *, sync_info: bool) -> list[dict[str, Any]]:
    """The project's cohorts, sizes counted over the dataset's users."""
    rng = random.Random(f"amplitude-sim|cohorts|{dataset.seed}|{dataset.app_id}")  # noqa: S311
    profiles = dataset.profiles()
    start = int(dataset.start.timestamp())
    computed = int(dataset.end.timestamp()) - 3600
    items: list[dict[str, Any]] = []
    for index, (name, description, member, predictive, archived) in enumerate(_COHORTS):
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
            "size": sum(1 for profile in profiles if member(profile)),
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
        if sync_info:
            cohort["syncMetadata"] = _sync_metadata(rng, computed) if index % 2 == 0 else []
        items.append(cohort)
    return items


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


def handle_cohorts(
    sim: server.AmplitudeSimulator, request: server.SimRequest
) -> server.SimResponse:
    """``/api/3/cohorts``; refused without the Behavioral Cohorts add-on."""
    settings = sim.analytics
    if not settings.cohorts_addon:
        return server.SimResponse.error(
            settings.cohorts_refusal_status, ADDON_MESSAGE, details=ADDON_DETAILS
        )
    sync_info = request.params.get("includeSyncInfo", "").lower() == "true"
    return server.SimResponse.json(
        HTTPStatus.OK, {"cohorts": cohort_list(sim.dataset, sync_info=sync_info)}
    )


_ANNOTATIONS = (
    ("Release 4.12.0", "New editor for everyone"),
    ("Spring campaign", "Paid social and newsletter launch"),
    ("Pricing page test", "A/B test exp-311 started"),
    ("Ingestion delay", "Events from iOS arrived up to 3 h late"),
)


def annotation_list(dataset: Dataset) -> list[dict[str, Any]]:
    """The project's chart annotations, dated around the dataset."""
    first = dataset.start.date()
    span = max(1, (dataset.end - dataset.start).days)
    items = []
    for index, (label, details) in enumerate(_ANNOTATIONS):
        day = first + timedelta(days=(index * 2) % (span + 1) - (1 if index == 0 else 0))
        items.append(
            {
                "id": 160_419 + index * 37,
                "date": day.isoformat(),
                "label": label,
                "details": details,
            }
        )
    return items


def handle_annotations(
    sim: server.AmplitudeSimulator, request: server.SimRequest
) -> server.SimResponse:
    """``/api/2/annotations`` (v2), optionally one ``id``."""
    items = annotation_list(sim.dataset)
    wanted = request.params.get("id")
    if wanted:
        items = [item for item in items if str(item["id"]) == wanted]
    return server.SimResponse.json(HTTPStatus.OK, {"data": items})
