"""Dashboard REST charts: daily active users, average session length, saved-chart results.

Shapes follow docs/amplitude-api.md §3.3 and §3.4: chart answers are wrapped in ``data`` with
``series``, ``seriesMeta``, ``seriesLabels``, ``seriesCollapsed`` and ``xValues``; errors use
the ``{"error": {...}}`` envelope of §1.4. Values are computed from the dataset's own events,
with days in the project's time zone (``sim.analytics.timezone``), counting only the events
Amplitude has at the simulator's now: never one from the future. A group-by the project
refuses (``sim.analytics.group_by_supported``) and a start date in the future get 400s.
"""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from amplitude_simulator.data.values import FUTURE_TOLERANCE_MS, epoch_ms, visible
from amplitude_simulator.protocol import Route, SimResponse

if TYPE_CHECKING:
    from amplitude_simulator.data.dataset import Dataset
    from amplitude_simulator.protocol import Context, SimRequest

DATE_FORMAT = "%Y%m%d"
SUPPORTED_GROUP_BY = "country"


def routes() -> list[Route]:
    """The chart endpoints this module serves."""
    return [
        Route("GET", "/api/2/users", handle_active_users),
        Route("GET", "/api/2/sessions/average", handle_average_session_length),
        *saved_chart_routes(),
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
def daily_figures(dataset: Dataset, zone: tzinfo, until_ms: int | None = None) -> DailyFigures:
    """Active users by event day and sessions by start day, over the dataset's events.

    With ``until_ms``, only the events Amplitude has at that instant count: uploaded and
    happened by then (never one from the future). A session lasts from its start
    (``session_id``, ms) to its last event's ``event_time``.
    """
    active: dict[date, set[int]] = defaultdict(set)
    by_country: dict[date, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    session_ends: dict[tuple[int, int], int] = {}
    for hour in dataset.hours():
        if until_ms is not None and epoch_ms(hour) > until_ms:
            break  # uploaded later than now
        for event in dataset.events_for_hour(hour):
            if until_ms is not None and not visible(event, until_ms):
                continue
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


def figures_until(sim: Context) -> int | None:
    """The simulator's now in epoch ms, or ``None`` when the whole dataset is in the past."""
    now_ms = epoch_ms(sim.current_time())
    return None if now_ms >= epoch_ms(sim.dataset.end) + FUTURE_TOLERANCE_MS else now_ms


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


def _days(sim: Context, params: dict[str, str]) -> list[date]:
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
) -> SimResponse:
    """A chart answer: one ``series`` row per segment, one value per day in ``xValues``."""
    return SimResponse.json(
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


def _rejected(exc: _RejectedError) -> SimResponse:
    """The 400 envelope for a refused query."""
    message, details = exc.args
    return SimResponse.error(HTTPStatus.BAD_REQUEST, message, details=details)


def handle_active_users(sim: Context, request: SimRequest) -> SimResponse:
    """``/api/2/users``: daily active (``m=active``) or new (``m=new``) users.

    Project-wide or per country (``g=country``). New users are counted on the project day of
    their ``user_creation_time``. Only daily figures (``i=1``) are modelled: the shape of the
    weekly and monthly answers (``i=7``/``i=30``) is Unverified, so they get 400.
    """
    try:
        days, group_by = _users_query(sim, request.params)
    except _RejectedError as exc:
        return _rejected(exc)
    if request.params.get("m", "active") == "new":
        figures = _new_user_figures(sim)
    else:
        figures = daily_figures(sim.dataset, sim.analytics.timezone, figures_until(sim))
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


def _users_query(sim: Context, params: dict[str, str]) -> tuple[list[date], str]:
    """The days and group-by (``""`` for none) of a users query Amplitude would answer."""
    days = _days(sim, params)
    if params.get("m", "active") not in {"active", "new"}:
        raise _RejectedError("Invalid metric", "m must be active or new")
    if params.get("i", "1") != "1":
        raise _RejectedError("Unsupported query", "the simulator models only daily figures (i=1)")
    group_by = params.get("g", "")
    if group_by and (group_by != SUPPORTED_GROUP_BY or not sim.analytics.group_by_supported):
        raise _RejectedError("Invalid chart definition", f"Invalid user property {group_by}")
    return days, group_by


def _new_user_figures(sim: Context) -> DailyFigures:
    """Users by the project day they were created (``user_creation_time``), up to now."""
    zone, now_ms = sim.analytics.timezone, epoch_ms(sim.current_time())
    new: dict[date, set[int]] = defaultdict(set)
    by_country: dict[date, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for profile in sim.dataset.profiles():
        if profile.created_ms > now_ms:
            continue
        day = _day(profile.created_ms, zone)
        new[day].add(profile.user.amplitude_id)
        by_country[day][profile.place[0] or "(none)"].add(profile.user.amplitude_id)
    return DailyFigures(
        {day: frozenset(users) for day, users in new.items()},
        {
            day: {country: frozenset(users) for country, users in countries.items()}
            for day, countries in by_country.items()
        },
        {},
    )


def _collapsed(value: float) -> dict[str, Any]:
    """One ``seriesCollapsed`` cell: the figure over the whole range."""
    return {"setId": "", "value": value}


def handle_average_session_length(sim: Context, request: SimRequest) -> SimResponse:
    """``/api/2/sessions/average``: seconds per day; ``series`` is empty without sessions."""
    try:
        days = _days(sim, request.params)
    except _RejectedError as exc:
        return _rejected(exc)
    figures = daily_figures(sim.dataset, sim.analytics.timezone, figures_until(sim))
    lengths = [figures.session_seconds.get(day, ()) for day in days]
    every = [value for values in lengths for value in values]
    if not every:
        return _chart([], [], [], [], days)
    averages = [sum(values) / len(values) if values else 0.0 for values in lengths]
    overall = [[_collapsed(sum(every) / len(every))]]
    return _chart([averages], [{"segmentIndex": 0}], [0], overall, days)


# --------------------------------------------------------------------------------------
# saved-chart results: /api/3/chart/{chart_id}/query and /csv (docs/amplitude-api.md §13)
#
# Modelling choices (every response shape in §13.2 is Unverified): each saved chart has a
# type and a date range (the dataset's days); /query answers {"data": <payload shaped like the
# matching Dashboard endpoint>}; /csv answers {"data": "<CSV text>"} with title lines, a
# blank line, a "Segment" header and tab-prefixed date and segment cells, or bare text/csv
# with sim.charts.csv_bare; unknown chart 404; a chart of another project 403. Dates are
# project days (sim.analytics.timezone). Cost: sim.limits.chart_cost per query.

SAVED_CHARTS: dict[str, tuple[str, str]] = {
    "abc123": ("segmentation", "Daily Active Users"),
    "fun456": ("funnel", "Signup funnel"),
    "ret789": ("retention", "Week-one retention"),
    "tbl001": ("table", "Plans by country"),
}
FOREIGN_CHARTS = frozenset({"zzz999"})  # charts of another project: 403


def saved_chart_routes() -> list[Route]:
    """The saved-chart endpoints."""
    return [
        Route("GET", "/api/3/chart/{chart_id}/query", handle_chart_query),
        Route("GET", "/api/3/chart/{chart_id}/csv", handle_chart_csv),
    ]


def chart_days(sim: Context) -> list[date]:
    """The saved range every fixture chart covers: the dataset's days, up to today."""
    zone = sim.analytics.timezone
    first = sim.dataset.start.astimezone(zone).date()
    last = (sim.dataset.end - timedelta(microseconds=1)).astimezone(zone).date()
    last = min(last, sim.current_time().astimezone(zone).date())
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def chart_payload(sim: Context, chart_id: str) -> Any:
    """The ``data`` part of a saved chart's ``/query`` answer."""
    kind = SAVED_CHARTS[chart_id][0]
    days = chart_days(sim)
    figures = daily_figures(sim.dataset, sim.analytics.timezone, figures_until(sim))
    counts = [len(figures.active.get(day, ())) for day in days]
    if kind == "segmentation":
        everyone = frozenset().union(*(figures.active.get(day, frozenset()) for day in days))
        return {
            "series": [[_collapsed(count) for count in counts]],
            "seriesLabels": [0],
            "seriesCollapsed": [[_collapsed(len(everyone))]],
            "xValues": [day.isoformat() for day in days],
        }
    if kind == "funnel":
        steps = [sum(counts), sum(counts) * 2 // 5, sum(counts) // 7]
        return [
            {
                "meta": {"segmentIndex": 0},
                "events": ["signup_started", "signup_completed", "purchase_completed"],
                "stepByStep": [1.0, *(b / a if a else 0.0 for a, b in itertools.pairwise(steps))],
                "cumulative": [s / steps[0] if steps[0] else 0.0 for s in steps],
                "cumulativeRaw": steps,
                "dayFunnels": {
                    "xValues": [day.isoformat() for day in days],
                    "series": [[count, count * 2 // 5, count // 7] for count in counts],
                },
            }
        ]
    if kind == "retention":
        return {
            "series": [
                {
                    "dates": [day.isoformat() for day in days],
                    "values": {
                        day.isoformat(): [
                            {"count": count, "outof": count},
                            {"count": count // 3, "outof": count},
                        ]
                        for day, count in zip(days, counts, strict=True)
                    },
                    "combined": [{"count": sum(counts), "outof": sum(counts)}],
                }
            ],
            "seriesMeta": [{"segmentIndex": 0, "eventIndex": 0}],
        }
    return {  # a data table: row 0 is the header
        "labels": ["Country", "Plan", "Users"],
        "values": [
            ["Country", "Plan", "Users"],
            ["United States", "pro", sum(counts) // 3],
            ["Germany", "free", sum(counts) // 5],
        ],
    }


def chart_csv(sim: Context, chart_id: str) -> str:
    """The ``/csv`` text: title lines, a blank line, the Segment header, one row per segment."""
    title = SAVED_CHARTS[chart_id][1]
    days = chart_days(sim)
    figures = daily_figures(sim.dataset, sim.analytics.timezone, figures_until(sim))
    counts = [len(figures.active.get(day, ())) for day in days]
    header = ",".join(['"Segment"', *(f'"\t{day.isoformat()}"' for day in days)])
    row = ",".join(['"\tAll Users"', *(f'"{count}"' for count in counts)])
    return f'"{title}"\n"Uniques"\n\n{header}\n{row}\n'


def _saved_chart(request: SimRequest) -> SimResponse | None:
    """404 for an unknown chart, 403 for another project's; None for one of ours."""
    chart_id = request.path_params["chart_id"]
    if chart_id in FOREIGN_CHARTS:
        return SimResponse.error(
            HTTPStatus.FORBIDDEN, "Forbidden", details="This chart belongs to another project"
        )
    if chart_id not in SAVED_CHARTS:
        return SimResponse.error(HTTPStatus.NOT_FOUND, "Chart not found", chart_id=chart_id)
    return None


def handle_chart_query(sim: Context, request: SimRequest) -> SimResponse:
    """``/api/3/chart/{chart_id}/query``: the chart's JSON (``sim.charts.query_status``)."""
    if sim.charts.query_status is not None:
        return SimResponse.error(sim.charts.query_status, "Not found")
    refused = _saved_chart(request)
    if refused is not None:
        return refused
    return SimResponse.json(
        HTTPStatus.OK, {"data": chart_payload(sim, request.path_params["chart_id"])}
    )


def handle_chart_csv(sim: Context, request: SimRequest) -> SimResponse:
    """``/api/3/chart/{chart_id}/csv``: CSV in a JSON string, or bare by switch."""
    refused = _saved_chart(request)
    if refused is not None:
        return refused
    text = chart_csv(sim, request.path_params["chart_id"])
    if sim.charts.csv_bare:
        return SimResponse(HTTPStatus.OK, {"Content-Type": "text/csv"}, text.encode())
    return SimResponse.json(HTTPStatus.OK, {"data": text})
