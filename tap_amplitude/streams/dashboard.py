"""Dashboard REST streams: event types, cohorts, annotations and two daily chart metrics.

``active_users`` and ``average_session_length`` are dated in the Amplitude project's time zone
(the Dashboard REST API's own convention), not UTC. They are read in date slices from the
bookmark (the last date emitted, read again because it may have been partial) or ``start_date``
up to today in UTC: the tap cannot know the project's zone, and Amplitude refuses a start
date in the future.
"""

from __future__ import annotations

import abc
import typing as t
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlsplit

from singer_sdk import typing as th
from typing_extensions import override

from tap_amplitude.client import (
    AmplitudeResponseError,
    AmplitudeStream,
    error_summary,
)
from tap_amplitude.ranges import every, inclusive_days, next_month
from tap_amplitude.schemas import ANNOTATION_CATEGORY, PROPERTY_BAG
from tap_amplitude.streams.annotations import (
    V3_ANNOTATIONS_PATH,
    V3_ONLY_FIELDS,
    V3RefusedError,
    V3RouteStream,
    v3_annotation,
)
from tap_amplitude.timestamps import format_datetime, parse_datetime

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    import requests
    from singer_sdk.helpers.types import Context, Record


class EventTypesStream(AmplitudeStream):
    """Visible event types with this week's totals (a snapshot, not history)."""

    name = "event_types"
    path = "/api/2/events/list"
    records_jsonpath = "$.data[*]"
    primary_keys = ("value",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("value", th.StringType, required=True, description="Raw event name."),
        th.Property("id", th.IntegerType),
        th.Property("name", th.StringType),
        th.Property("display", th.StringType, description="Display name."),
        th.Property("totals", th.IntegerType, description="Count this week."),
        th.Property("totals_delta", th.NumberType),
        th.Property("non_active", th.BooleanType),
        th.Property("deleted", th.BooleanType),
        th.Property("hidden", th.BooleanType),
        th.Property("flow_hidden", th.BooleanType),
        th.Property("autohidden", th.BooleanType),
        th.Property("clusters_hidden", th.BooleanType),
        th.Property("in_waitroom", th.BooleanType),
        th.Property("timeline_hidden", th.CustomType({"type": ["boolean", "number", "null"]})),
    ).to_dict()

    single_response = True  # One response holds every event type.


# --------------------------------------------------------------------------------------
# cohorts and annotations

# Epoch values at or above this are milliseconds (as seconds they would be past year 5000).
_EPOCH_MS_THRESHOLD = 100_000_000_000
# Amplitude's epoch-second cohort fields and the RFC 3339 columns the tap derives from them.
COHORT_TIMESTAMPS: dict[str, str] = {
    "lastMod": "last_modified_at",
    "createdAt": "created_at",
    "lastComputed": "last_computed_at",
    "last_viewed": "last_viewed_at",
}
COHORTS_UNAVAILABLE = (
    "cohorts: skipped; Amplitude did not list cohorts (HTTP %d: %s). The keys work, so the "
    "project most likely lacks the Behavioral Cohorts add-on that this API needs; add it, "
    "or deselect the cohorts stream. The other streams continue."
)


class CohortsUnavailableError(AmplitudeResponseError):
    """Amplitude refused ``/api/3/cohorts``: no add-on, no permission, or bad keys.

    The response's status decides whether the keys need checking.
    """


def epoch_to_rfc3339(value: t.Any) -> str | None:
    """An epoch timestamp (seconds; milliseconds when that large) in RFC 3339 UTC."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    seconds = value / 1000 if value >= _EPOCH_MS_THRESHOLD else value
    return format_datetime(datetime.fromtimestamp(seconds, tz=timezone.utc))


class CohortsStream(AmplitudeStream):
    """Every discoverable cohort (needs the Behavioral Cohorts add-on; else skipped, warned)."""

    name = "cohorts"
    path = "/api/3/cohorts"
    records_jsonpath = "$.cohorts[*]"
    primary_keys = ("id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("id", th.StringType, required=True, description="Cohort id, e.g. id_12345."),
        th.Property("appId", th.IntegerType, description="Amplitude project id."),
        th.Property("name", th.StringType),
        th.Property("description", th.StringType),
        th.Property("archived", th.BooleanType),
        th.Property("definition", PROPERTY_BAG, description="Amplitude's internal definition."),
        th.Property("finished", th.BooleanType, description="Predictive cohorts: trained."),
        th.Property("owners", th.ArrayType(th.StringType), description="Owner emails."),
        th.Property("viewers", th.ArrayType(th.StringType)),
        th.Property("published", th.BooleanType, description="Discoverable by other users."),
        th.Property("size", th.IntegerType, description="Users in the cohort."),
        th.Property("type", th.StringType, description="Amplitude's internal cohort type."),
        th.Property("lastMod", th.IntegerType, description="Last modified, epoch seconds."),
        th.Property(
            "last_modified_at",
            th.DateTimeType,
            description="lastMod as RFC 3339 UTC (added by the tap).",
        ),
        th.Property("createdAt", th.IntegerType, description="Created, epoch seconds."),
        th.Property(
            "created_at",
            th.DateTimeType,
            description="createdAt as RFC 3339 UTC (added by the tap).",
        ),
        th.Property("lastComputed", th.IntegerType, description="Last computed, epoch seconds."),
        th.Property(
            "last_computed_at",
            th.DateTimeType,
            description="lastComputed as RFC 3339 UTC (added by the tap).",
        ),
        th.Property("hidden", th.BooleanType),
        th.Property(
            "metadata",
            th.ArrayType(th.StringType),
            description="Set on cohorts created from a funnel or microscope.",
        ),
        th.Property("view_count", th.IntegerType),
        th.Property("popularity", th.IntegerType),
        th.Property("last_viewed", th.IntegerType, description="Last viewed, epoch seconds."),
        th.Property(
            "last_viewed_at",
            th.DateTimeType,
            description="last_viewed as RFC 3339 UTC (added by the tap).",
        ),
        th.Property("chart_id", th.StringType, description="Chart the cohort was created from."),
        th.Property("edit_id", th.StringType),
        th.Property("is_predictive", th.BooleanType),
        th.Property("is_official_content", th.BooleanType),
        th.Property("location_id", th.StringType),
        th.Property("shortcut_ids", th.ArrayType(th.StringType)),
        th.Property(
            "syncMetadata",
            th.ArrayType(
                th.ObjectType(
                    th.Property("target", th.StringType, description="e.g. braze."),
                    th.Property("frequency", th.StringType, description="minute, hourly, daily."),
                    th.Property(
                        "last_successful", th.StringType, description="As Amplitude sends it."
                    ),
                    th.Property(
                        "last_failure", th.StringType, description="As Amplitude sends it."
                    ),
                    th.Property("params", PROPERTY_BAG),
                )
            ),
            description="Active cohort syncs (one-time and disabled syncs are not listed).",
        ),
    ).to_dict()

    single_response = True  # One response holds every cohort.

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        """Ask for the sync metadata too."""
        return {"includeSyncInfo": "true"}

    @override
    def validate_response(self, response: requests.Response) -> None:
        """A refused cohort listing is set apart, so the run can go on without it."""
        refused = {400, 401, 403}
        if response.status_code in refused and urlsplit(response.url).path.endswith(self.path):
            raise CohortsUnavailableError(self.response_error_message(response), response)
        super().validate_response(response)

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        """Every cohort; nothing (one warning) when the project cannot list cohorts."""
        try:
            yield from super().get_records(context)
        except CohortsUnavailableError as exc:
            if exc.response.status_code != 400:  # noqa: PLR2004
                self.check_credentials()
            self.logger.warning(
                COHORTS_UNAVAILABLE, exc.response.status_code, error_summary(exc.response)
            )

    @override
    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        """RFC 3339 copies of the epoch fields; ``app`` from the cohort's ``appId``."""
        for epoch_field, rfc3339_field in COHORT_TIMESTAMPS.items():
            row[rfc3339_field] = epoch_to_rfc3339(row.get(epoch_field))
        if row.get("app") is None:
            row["app"] = row.get("appId")
        return super().post_process(row, context)


class AnnotationsStream(V3RouteStream):
    """Chart annotations: the v3 API, or v2 where Amplitude refuses v3 (§12.4).

    Amplitude's docs replaced v2 with v3 (hours, ranges, categories, chart ids). Each run
    logs which version it read; ``api_version`` says it per row.
    """

    name = "annotations"
    path = V3_ANNOTATIONS_PATH
    v2_path = "/api/2/annotations"
    records_jsonpath = "$.data[*]"
    primary_keys = ("id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property(
            "date",
            th.DateType,
            description="Annotated day: v2's date, or the day of v3's start (its own offset).",
        ),
        th.Property("label", th.StringType),
        th.Property("details", th.StringType),
        th.Property("start", th.DateTimeType, description="v3: when it starts, RFC 3339 UTC."),
        th.Property(
            "end", th.DateTimeType, description="v3: when a range ends, RFC 3339 UTC; else null."
        ),
        th.Property("category", ANNOTATION_CATEGORY, description="v3: its category, if any."),
        th.Property(
            "chart_id", th.StringType, description="v3: the chart it is on; null if global."
        ),
        th.Property(
            "api_version", th.StringType, description="v3 or v2: the API the row came from."
        ),
    ).to_dict()

    single_response = True  # One response holds every annotation.

    @override
    def get_records(self, context: Context | None) -> Iterator[Record]:
        """v3's annotations; v2's where Amplitude refuses v3 (one INFO line says which)."""
        try:
            items = self.fetch_items(V3_ANNOTATIONS_PATH)
        except V3RefusedError as exc:
            self.logger.info(
                "%s: Amplitude refused the v3 API (HTTP %d on %s: %s); reading v2 (%s), "
                "which has no start, end, category or chart_id",
                self.name,
                exc.response.status_code,
                V3_ANNOTATIONS_PATH,
                error_summary(exc.response),
                self.v2_path,
            )
            items = self.fetch_items(self.v2_path)
            self.logger.info("%s: read %d annotations from v2", self.name, len(items))
            for item in items:  # v2 has no v3 fields: null, not missing
                yield {**dict.fromkeys(V3_ONLY_FIELDS), **item, "api_version": "v2"}
            return
        self.logger.info(
            "%s: read %d annotations from v3 (%s)", self.name, len(items), V3_ANNOTATIONS_PATH
        )
        for item in items:
            yield v3_annotation(item)

    def fetch_items(self, path: str) -> list[dict[str, t.Any]]:
        """Every item of one annotations listing."""
        prepared = self.build_prepared_request(
            method="GET", url=f"{self.url_base}{path}", headers=self.http_headers
        )
        data = self.send(prepared).json().get("data") or []
        return [item for item in data if isinstance(item, dict)]


# --------------------------------------------------------------------------------------
# daily chart metrics

DATE_PARAM_FORMAT = "%Y%m%d"
SESSION_SLICE_DAYS = 15
ALL_USERS = "(all users)"
GROUP_BY_COUNTRY = "country"
PROJECT_DAY = (
    "Day in the Amplitude project's time zone (Dashboard REST dates are not UTC); "
    "the replication key."
)


class DashboardRejectedError(AmplitudeResponseError):
    """Amplitude answered 400 to a chart query."""


def utc_today() -> date:
    """Today in UTC: the latest day the tap asks for."""
    return datetime.now(tz=timezone.utc).date()


def date_bounds(config: Mapping[str, t.Any], bookmark: t.Any, today: date) -> tuple[date, date]:
    """First and last day to read, both inclusive.

    From the later of ``start_date`` (its UTC day) and the bookmark, to the earlier of today
    (UTC) and the day before ``end_date`` (exclusive) ends.
    """
    first = parse_datetime(str(config["start_date"])).date()
    if bookmark:
        first = max(first, date.fromisoformat(str(bookmark)[:10]))
    last = today
    if config.get("end_date"):
        end = parse_datetime(str(config["end_date"])) - timedelta(microseconds=1)
        last = min(last, end.date())
    return first, last


def month_slices(first: date, last: date) -> list[tuple[date, date]]:
    """Calendar-month pieces of ``[first, last]``; the first and last may be partial."""
    return inclusive_days(first, last, next_month)


def day_slices(first: date, last: date, days: int) -> list[tuple[date, date]]:
    """Pieces of ``[first, last]`` of ``days`` days each (the last may be shorter)."""
    return inclusive_days(first, last, every(timedelta(days=days)))


class DailyMetricStream(AmplitudeStream):
    """A per-day chart metric, read slice by slice; incremental on ``date``."""

    replication_key = "date"
    is_sorted = True

    @abc.abstractmethod
    def slices(self, first: date, last: date) -> list[tuple[date, date]]:
        """How ``[first, last]`` is split into requests."""

    def planned_slices(self, context: Context | None) -> list[tuple[date, date]]:
        """Slices from the bookmark (or ``start_date``) to today, UTC, capped by ``end_date``."""
        first, last = date_bounds(
            self.config, self.get_starting_replication_key_value(context), utc_today()
        )
        if first > last:
            self.logger.info("%s: nothing to read (%s is after %s)", self.name, first, last)
            return []
        return self.slices(first, last)

    @override
    def validate_response(self, response: requests.Response) -> None:
        """400s are told apart from other failures (a group-by or a day not yet begun)."""
        if response.status_code == 400:  # noqa: PLR2004
            raise DashboardRejectedError(self.response_error_message(response), response)
        super().validate_response(response)

    def fetch(self, params: dict[str, str], context: Context | None) -> dict[str, t.Any]:
        """One chart query, with the stream's limits, retries and errors; the ``data`` part."""
        prepared = self.build_prepared_request(
            method="GET", url=self.get_url(context), params=params, headers=self.http_headers
        )
        response = self.send(prepared)
        return dict(response.json().get("data") or {})

    def fetch_slice(
        self, first: date, last: date, context: Context | None, **extra: str
    ) -> dict[str, t.Any] | None:
        """``start``..``end`` of a slice; None when it starts on a day the project lacks yet.

        The tap asks up to today in UTC. Where the project's zone is behind UTC, today may not
        have begun there, and Amplitude refuses a start date in the future: that slice is
        read on a later run.
        """
        params = {
            "start": first.strftime(DATE_PARAM_FORMAT),
            "end": last.strftime(DATE_PARAM_FORMAT),
        }
        try:
            return self.fetch({**params, **extra}, context)
        except DashboardRejectedError as exc:
            if first < utc_today():
                raise
            self.logger.info(
                "%s: Amplitude has no %s yet (HTTP 400: %s): the project's time zone is behind "
                "UTC; that day is read on a later run",
                self.name,
                first,
                error_summary(exc.response),
            )
            return None


class ActiveUsersStream(DailyMetricStream):
    """Daily active users, project-wide or per country; read a calendar month per request."""

    name = "active_users"
    path = "/api/2/users"
    primary_keys = ("date", "group")
    schema = th.PropertiesList(
        th.Property("date", th.DateType, required=True, description=PROJECT_DAY),
        th.Property(
            "group",
            th.StringType,
            required=True,
            description=(
                "Country when grouped by country (Amplitude's label, e.g. 'United States'); "
                f"'{ALL_USERS}' for project-wide counts."
            ),
        ),
        th.Property(
            "group_by",
            th.StringType,
            description="'country' when the count is per country; null for project-wide counts.",
        ),
        th.Property(
            "active_users",
            th.IntegerType,
            description="Users active that day (Amplitude's m=active, i=1).",
        ),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Group by country when asked to, until Amplitude refuses it."""
        super().__init__(*args, **kwargs)
        self.group_by_country = bool(self.config.get("active_users_group_by_country"))

    @override
    def slices(self, first: date, last: date) -> list[tuple[date, date]]:
        """Calendar months."""
        return month_slices(first, last)

    @override
    def get_records(self, context: Context | None) -> Iterator[Record]:
        """Rows of every month slice, grouped by country while the project allows it."""
        for first, last in self.planned_slices(context):
            if self.group_by_country:
                data = self.fetch_grouped(first, last, context)
            else:
                data = self.fetch_slice(first, last, context, m="active", i="1")
            if data is not None:
                yield from active_user_rows(data, first, last, grouped=self.group_by_country)

    def fetch_grouped(
        self, first: date, last: date, context: Context | None
    ) -> dict[str, t.Any] | None:
        """Counts per country; project-wide (and grouping off, one warning) if refused."""
        try:
            return self.fetch_slice(first, last, context, m="active", i="1", g=GROUP_BY_COUNTRY)
        except DashboardRejectedError as grouped_error:
            data = self.fetch_slice(first, last, context, m="active", i="1")
            if data is not None:
                self.group_by_country = False
                self.logger.warning(
                    "%s: Amplitude refused to group active users by country (%s); reading "
                    "project-wide counts instead. Set active_users_group_by_country to false "
                    "to skip the refused request.",
                    self.name,
                    error_summary(grouped_error.response),
                )
            return data


def active_user_rows(
    data: Mapping[str, t.Any], first: date, last: date, *, grouped: bool
) -> Iterator[Record]:
    """One row per day and group, in date order, for the days of the slice."""
    series = data.get("series") or []
    labels = series_labels(data, len(series)) if grouped else [ALL_USERS]
    for index, day in enumerate(data.get("xValues") or []):
        if not first.isoformat() <= str(day)[:10] <= last.isoformat():
            continue
        for label, values in zip(labels, series, strict=False):
            yield {
                "date": str(day)[:10],
                "group": label,
                "group_by": GROUP_BY_COUNTRY if grouped else None,
                "active_users": values[index] if index < len(values) else None,
            }


def series_labels(data: Mapping[str, t.Any], count: int) -> list[str]:
    """Group labels: ``seriesLabels``, else ``seriesMeta``, whichever names every series."""
    for key in ("seriesLabels", "seriesMeta"):
        labels = data.get(key) or []
        if len(labels) == count and all(isinstance(label, str) for label in labels):
            return list(labels)
    return [f"(series {index})" for index in range(count)]


class AverageSessionLengthStream(DailyMetricStream):
    """Average session length per day, in seconds; read 15 days per request."""

    name = "average_session_length"
    path = "/api/2/sessions/average"
    primary_keys = ("date",)
    schema = th.PropertiesList(
        th.Property("date", th.DateType, required=True, description=PROJECT_DAY),
        th.Property("length", th.NumberType, description="Average session length, seconds."),
    ).to_dict()

    @override
    def slices(self, first: date, last: date) -> list[tuple[date, date]]:
        """15-day pieces."""
        return day_slices(first, last, SESSION_SLICE_DAYS)

    @override
    def get_records(self, context: Context | None) -> Iterator[Record]:
        """Rows of every slice."""
        for first, last in self.planned_slices(context):
            data = self.fetch_slice(first, last, context)
            if data is not None:
                yield from session_length_rows(data, first, last)


def session_length_rows(data: Mapping[str, t.Any], first: date, last: date) -> Iterator[Record]:
    """One row per day of the slice; an empty ``series`` means no sessions, so no rows."""
    series = data.get("series") or []
    if not series:
        return
    for day, length in zip(data.get("xValues") or [], series[0], strict=False):
        if first.isoformat() <= str(day)[:10] <= last.isoformat():
            yield {"date": str(day)[:10], "length": length}
