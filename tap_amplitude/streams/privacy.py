"""Privacy streams: ``user_profiles`` (User Profile API) and ``deletion_jobs`` (User Privacy API).

The ``amplitude-privacy`` CLI reuses these classes, so lookups, job listings and deletion
requests share the tap's session, authentication, retries and one-line errors.
"""

from __future__ import annotations

import typing as t
from datetime import date, datetime, timedelta, timezone
from functools import cached_property
from urllib.parse import parse_qs, urlsplit

from singer_sdk import typing as th
from singer_sdk.authenticators import APIKeyAuthenticator
from typing_extensions import override

from tap_amplitude.client import (
    DEFAULT_PROFILE_API_URL,
    AmplitudeResponseError,
    AmplitudeStream,
    error_summary,
)
from tap_amplitude.ranges import every, inclusive_days
from tap_amplitude.ratelimit import IntervalLimiter
from tap_amplitude.schemas import PROPERTY_BAG
from tap_amplitude.streams.users import UserSearchStream
from tap_amplitude.timestamps import parse_datetime

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    import requests
    from singer_sdk.helpers.types import Context, Record

    RequestFunc = Callable[[requests.PreparedRequest, Context | None], requests.Response]

UNKNOWN_USER_ERROR = "User id and device id not seen before"
EU_PROFILE_WARNING = (
    "user_profiles: skipped; Amplitude's User Profile API is not available in the EU region "
    "(region is 'eu'), so no profile requests are made."
)
DELETIONS_PATH = "/api/2/deletions/users"
# Amplitude allows six months per jobs request; 180 days always fits whatever the months.
JOBS_WINDOW_DAYS = 180
# Jobs are scheduled ahead of time; Amplitude suggests looking 30 days past today.
JOBS_LOOKAHEAD_DAYS = 30
# The privacy API allows 1 request per second. The margin absorbs network jitter: one
# request arriving late must not make the next look too early to Amplitude.
DELETIONS_REQUEST_INTERVAL = 1.2


def profile_api_available(config: Mapping[str, t.Any]) -> bool:
    """The User Profile API exists only for US-region projects."""
    return (config.get("region") or "us") != "eu"


class RequestRejectedError(AmplitudeResponseError):
    """Amplitude answered 400: it refused the request, so nothing in it took effect."""

    @property
    def reason(self) -> str:
        """Amplitude's own error text, shortened."""
        return error_summary(self.response)


class UserProfilesStream(AmplitudeStream):
    """One profile per user id that user search finds for ``user_ids`` and ``amplitude_ids``.

    The User Profile API is keyed by user id (or device id), not by search term, so this is a
    child of user_search: each match's user id is read once. Unknown users yield no record.
    """

    name = "user_profiles"
    path = "/v1/userprofile"
    parent_stream_type = UserSearchStream
    primary_keys = ("user_id",)
    replication_key = None
    state_partitioning_keys = ()  # full table: no per-user state
    schema = th.PropertiesList(
        th.Property("user_id", th.StringType, required=True),
        th.Property("device_id", th.StringType),
        th.Property(
            "amp_props",
            PROPERTY_BAG,
            description=(
                "User properties, kept whole; computations are included as strings "
                "(that is how Amplitude returns them)."
            ),
        ),
        th.Property(
            "cohort_ids",
            th.ArrayType(th.StringType),
            description="Cohorts synced to the Profile API that the user belongs to.",
        ),
        th.Property(
            "recommendations",
            th.ArrayType(PROPERTY_BAG),
            description="Recommendations for the configured rec_id; null without rec_id.",
        ),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Track user ids already read and whether the EU warning was given."""
        super().__init__(*args, **kwargs)
        self._user_ids_read: set[str] = set()
        self._warned_eu = False

    @property
    @override
    def url_base(self) -> str:
        """``profile_api_url`` (Amplitude's profile host by default)."""
        return str(self.config.get("profile_api_url") or DEFAULT_PROFILE_API_URL).rstrip("/")

    @cached_property
    @override
    def authenticator(self) -> APIKeyAuthenticator:  # type: ignore[override]
        """``Authorization: Api-Key <secret_key>``: the Profile API does not take Basic auth."""
        return APIKeyAuthenticator(
            key="Authorization", value=f"Api-Key {self.config['secret_key']}"
        )

    single_response = True  # One profile per response.

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        """The user (or device) and every section the tap keeps."""
        context = context or {}
        params: dict[str, t.Any] = {
            key: context[key] for key in ("user_id", "device_id") if context.get(key)
        }
        params.update(get_amp_props="true", get_cohort_ids="true", get_computations="true")
        rec_id = self.config.get("rec_id")
        if rec_id:
            params.update(get_recs="true", rec_id=rec_id)
        return params

    @override
    def validate_response(self, response: requests.Response) -> None:
        """An unknown user is an answer, not an error, whatever status carries it."""
        if response.status_code < 500 and _is_unknown_user(response):  # noqa: PLR2004
            return
        super().validate_response(response)

    @override
    def auth_failure_message(self, response: requests.Response) -> str:
        """Name the setting the Profile API checks: the secret key, sent as ``Api-Key``."""
        return (
            f"The User Profile API refused the credentials (HTTP {response.status_code}: "
            f"{error_summary(response)}): check secret_key (sent as 'Authorization: Api-Key') "
            f"and profile_api_url ({self.url_base})."
        )

    @override
    def parse_response(self, response: requests.Response) -> Iterable[Record]:
        """The ``userData`` object as one record; nothing for an unknown user."""
        payload = response.json()
        data = payload.get("userData") if isinstance(payload, dict) else None
        asked = {k: v[0] for k, v in parse_qs(urlsplit(response.request.url or "").query).items()}
        if not isinstance(data, dict):
            who = asked.get("user_id") or asked.get("device_id")
            self.logger.info("%s: Amplitude has no profile for user %r", self.name, who)
            return
        yield {
            "user_id": data.get("user_id") or asked.get("user_id"),
            "device_id": data.get("device_id"),
            "amp_props": data.get("amp_props"),
            "cohort_ids": data.get("cohort_ids"),
            "recommendations": data.get("recommendations"),
        }

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        """The profile of one user search match's user id; nothing at all in the EU region."""
        if not profile_api_available(self.config):
            if not self._warned_eu:
                self.logger.warning(EU_PROFILE_WARNING)
                self._warned_eu = True
            return
        user_id = (context or {}).get("user_id")
        if user_id is None:
            self.logger.info(
                "%s: Amplitude id %s has no user id; the Profile API needs one",
                self.name,
                (context or {}).get("amplitude_id"),
            )
            return
        if user_id in self._user_ids_read:
            return
        self._user_ids_read.add(user_id)
        yield from self.request_records({"user_id": user_id})

    def fetch(self, *, user_id: str | None = None, device_id: str | None = None) -> Record | None:
        """One user's profile, or None if Amplitude has never seen the user."""
        records = list(self.request_records({"user_id": user_id, "device_id": device_id}))
        return records[0] if records else None


def _is_unknown_user(response: requests.Response) -> bool:
    """Whether the body is the Profile API's "never seen this user" answer."""
    try:
        payload = response.json()
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("error") == UNKNOWN_USER_ERROR


class DeletionJobsStream(AmplitudeStream):
    """Deletion jobs scheduled from ``start_date`` until ``end_date`` or 30 days ahead.

    Jobs are scheduled for future days, so without ``end_date`` the range runs to
    today + 30 days (Amplitude's own advice). Requests are windows of at most 180 days,
    spaced by the API's 1 request/second limit. The class also submits deletion
    requests for ``amplitude-privacy``, through the same limiter and retries.
    """

    name = "deletion_jobs"
    path = DELETIONS_PATH
    records_jsonpath = "$[*]"
    primary_keys = ("day", "app")
    replication_key = None
    state_partitioning_keys = ()  # full table: jobs change status, so re-read them all
    schema = th.PropertiesList(
        th.Property("day", th.DateType, required=True, description="Day the job runs."),
        th.Property("app", th.IntegerType, description="Amplitude project id."),
        th.Property(
            "status",
            th.StringType,
            description="staging (editable), submitted (locked) or done.",
        ),
        th.Property(
            "amplitude_ids",
            th.ArrayType(
                th.ObjectType(
                    th.Property("amplitude_id", th.IntegerType),
                    th.Property("user_id", th.StringType),
                    th.Property("requester", th.StringType),
                    th.Property("requested_on_day", th.DateType),
                )
            ),
            description="Users in the job, with who asked and when.",
        ),
        th.Property(
            "active_scrub_done_date",
            th.DateType,
            description="When the data became inaccessible; done follows 5 days later.",
        ),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Every request of this stream goes through one 1-request-per-second limiter."""
        super().__init__(*args, **kwargs)
        self.limiter = IntervalLimiter(DELETIONS_REQUEST_INTERVAL)

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]]:
        """Windows covering ``start_date`` to ``end_date`` (exclusive) or today + 30 days."""
        first = parse_datetime(str(self.config["start_date"])).date()
        end_date = self.config.get("end_date")
        if end_date:
            last = (parse_datetime(str(end_date)) - timedelta(microseconds=1)).date()
        else:
            last = datetime.now(tz=timezone.utc).date() + timedelta(days=JOBS_LOOKAHEAD_DAYS)
        return job_windows(first, last)

    single_response = True  # Each window answers in one response.

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        """Jobs of one window; none when the range is empty (start_date after its end)."""
        if not (context or {}).get("start_day"):
            self.logger.info(
                "%s: nothing to read (start_date is after end_date or today + %d days)",
                self.name,
                JOBS_LOOKAHEAD_DAYS,
            )
            return
        yield from super().get_records(context)

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        """``start_day`` and ``end_day`` of the window, both inclusive."""
        context = context or {}
        return {"start_day": context["start_day"], "end_day": context["end_day"]}

    @override
    def request_decorator(self, func: RequestFunc) -> RequestFunc:
        """Retries as for every stream, with each attempt waiting for the rate limiter."""
        limiter = self.limiter

        def limited(
            prepared_request: requests.PreparedRequest,
            context: Context | None,
        ) -> requests.Response:
            limiter.wait()
            return func(prepared_request, context)

        return super().request_decorator(limited)

    @override
    def validate_response(self, response: requests.Response) -> None:
        """A 400 means nothing was scheduled; callers may want Amplitude's reason."""
        if response.status_code == 400:  # noqa: PLR2004
            raise RequestRejectedError(self.response_error_message(response), response)
        super().validate_response(response)

    def jobs(self, first: date, last: date) -> Iterator[Record]:
        """Every job scheduled from ``first`` to ``last`` (inclusive)."""
        for window in job_windows(first, last):
            yield from self.request_records(window)

    def submit(self, body: dict[str, t.Any]) -> requests.Response:
        """POST one deletion request, with the stream's auth, limiter, retries and errors."""
        prepared = self.build_prepared_request(
            method="POST", url=self.get_url(None), headers=self.http_headers, json=body
        )
        return self.send(prepared)


def job_windows(first: date, last: date) -> list[dict[str, t.Any]]:
    """Consecutive ``start_day``/``end_day`` windows of at most 180 days covering both days."""
    return [
        {"start_day": start.isoformat(), "end_day": end.isoformat()}
        for start, end in inclusive_days(first, last, every(timedelta(days=JOBS_WINDOW_DAYS)))
    ]
