"""User lookups: ``user_search`` finds Amplitude ids, ``user_activity`` reads their events."""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qs, urlsplit

from singer_sdk import typing as th
from singer_sdk.pagination import OffsetPaginator
from typing_extensions import override

from tap_amplitude.client import AmplitudeStream
from tap_amplitude.schemas import EVENT_PROPERTIES
from tap_amplitude.timestamps import normalize_event

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    import requests
    from singer_sdk.helpers.types import Context, Record
    from singer_sdk.streams.rest import HTTPRequest, PageContext

ACTIVITY_PAGE_SIZE = 1000
NO_USERS_CONFIGURED = (
    "user_search, user_activity and user_profiles: nothing to look up, so they emit no "
    "records. Set user_ids (emails, user ids or device ids) or amplitude_ids to read users."
)


class UserSearchStream(AmplitudeStream):
    """One record per match of each ``user_ids`` and ``amplitude_ids`` entry."""

    name = "user_search"
    path = "/api/2/usersearch"
    records_jsonpath = "$.matches[*]"
    primary_keys = ("search_term", "amplitude_id")
    replication_key = None
    state_partitioning_keys = ()  # full table: no per-term state
    schema = th.PropertiesList(
        th.Property("search_term", th.StringType, required=True, description="What was asked."),
        th.Property("match_type", th.StringType, description="Amplitude's `type` of the answer."),
        th.Property("amplitude_id", th.IntegerType, required=True),
        th.Property("user_id", th.StringType),
        th.Property("last_seen", th.StringType),
        th.Property("platform", th.StringType),
        th.Property("country", th.StringType),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Track ids already handed to user_activity, so each is read once."""
        super().__init__(*args, **kwargs)
        self._activity_ids: set[int] = set()
        self._told_no_users = False

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]]:
        """One lookup per configured user id, email, device id or Amplitude id."""
        terms = [str(term) for term in self.config.get("user_ids") or []]
        terms += [str(amplitude_id) for amplitude_id in self.config.get("amplitude_ids") or []]
        return [{"search_term": term} for term in dict.fromkeys(terms)]

    single_response = True  # User search answers in one page.

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        """Matches for one term; with no terms configured, nothing (said once, at INFO).

        The SDK syncs a stream without partitions once, with no context: that is the
        default invocation when neither user_ids nor amplitude_ids is set.
        """
        if not (context or {}).get("search_term"):
            if not self._told_no_users:
                self._told_no_users = True
                self.logger.info(NO_USERS_CONFIGURED)
            return
        yield from super().get_records(context)

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        """``user=<term>``."""
        return {"user": (context or {})["search_term"]}

    @override
    def parse_response(self, response: requests.Response) -> Iterable[Record]:
        """Matches, each labelled with the term and match type; no match is logged."""
        payload = response.json()
        term = _term_of(response)
        matches = payload.get("matches") or []
        if not matches:
            self.logger.info("%s: no Amplitude user matches %r", self.name, term)
        for match in matches:
            yield {**match, "search_term": term, "match_type": payload.get("type")}

    @override
    def generate_child_contexts(
        self,
        record: Record,
        context: Context | None,
    ) -> Iterable[dict[str, t.Any] | None]:
        """Each Amplitude id once, however many terms found it, with its user id."""
        amplitude_id = record.get("amplitude_id")
        if amplitude_id is None or amplitude_id in self._activity_ids:
            return
        self._activity_ids.add(amplitude_id)
        yield {"amplitude_id": amplitude_id, "user_id": record.get("user_id")}


def _term_of(response: requests.Response) -> str:
    """The ``user`` query parameter the response answers."""
    return parse_qs(urlsplit(response.request.url or "").query).get("user", [""])[0]


class ActivityPaginator(OffsetPaginator):
    """Offsets advance by events received (pages may run long to keep sessions whole)."""

    def __init__(self) -> None:
        """Start at the newest event."""
        super().__init__(start_value=0, page_size=ACTIVITY_PAGE_SIZE)

    @override
    def get_next(self, response: requests.Response) -> int | None:
        """Next offset, or None after a short page."""
        received = len(response.json().get("events") or [])
        if received < ACTIVITY_PAGE_SIZE:
            return None
        return self.current_value + received


class UserActivityStream(AmplitudeStream):
    """Every event of each Amplitude id found by user_search, newest first."""

    name = "user_activity"
    path = "/api/2/useractivity"
    records_jsonpath = "$.events[*]"
    parent_stream_type = UserSearchStream
    primary_keys = ("uuid",)
    replication_key = None
    state_partitioning_keys = ()  # full table: no per-id state
    schema = EVENT_PROPERTIES.to_dict()

    @override
    def get_new_paginator(self) -> ActivityPaginator:
        """Offset pagination, 1000 events a page."""
        return ActivityPaginator()

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        """Events of the Amplitude id user_search handed over; nothing without one."""
        if (context or {}).get("amplitude_id") is None:
            return
        yield from super().get_records(context)

    @override
    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        """``user=<amplitude_id>&offset=<n>&limit=1000``."""
        request = super().get_http_request(page=page)
        request.params.update(
            {
                "user": (page.stream_context or {})["amplitude_id"],
                "offset": page.next_page_token or 0,
                "limit": ACTIVITY_PAGE_SIZE,
            },
        )
        return request

    @override
    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        """Timestamps as RFC 3339 UTC, like export_events."""
        return normalize_event(row)
