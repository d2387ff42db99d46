"""Taxonomy API streams: the tracking plan's categories and properties (docs/amplitude-api.md §10).

The Taxonomy API needs an Enterprise plan. Without it Amplitude answers 404 (403 for keys of
a workspace's non-primary environment): the run then logs one warning for all four streams
and goes on. Its own limit (4 cost in flight, 7,200 an hour) is held by ``ratelimit.py``.
"""

from __future__ import annotations

import typing as t
import weakref
from urllib.parse import urlsplit

from singer_sdk import typing as th
from typing_extensions import override

from tap_amplitude.client import AmplitudeError, AmplitudeResponseError, AmplitudeStream
from tap_amplitude.schemas import TAXONOMY_PROPERTY_FIELDS
from tap_amplitude.sdk import tap_of

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    import requests
    from singer_sdk import Tap
    from singer_sdk.helpers.types import Context, Record

BASE = "/api/2/taxonomy"
TAXONOMY_STREAMS = "event_categories, event_properties, user_properties and group_properties"
TAXONOMY_UNAVAILABLE = (
    "taxonomy: skipped %s; Amplitude refused the Taxonomy API (HTTP %d: %s). It needs an "
    "Enterprise plan and, in a multi-environment workspace, the keys of the first "
    "environment; deselect these streams to skip the request. The other streams continue."
)
# Taps whose project refused the Taxonomy API this run, with the status: one warning per run.
_REFUSED: weakref.WeakKeyDictionary[Tap, int] = weakref.WeakKeyDictionary()


class TaxonomyRefusedError(AmplitudeResponseError):
    """Amplitude answered 400, 403 or 404 on a taxonomy path."""


def taxonomy_error(response: requests.Response) -> str:
    """The messages of the ``{"success": false, "errors": [...]}`` envelope, else the text."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("errors"), list):
        messages = [str(e.get("message", e)) for e in payload["errors"] if e is not None]
        if messages:
            return "; ".join(messages)[:300]
    return " ".join(response.text.split())[:300] or response.reason or ""


class TaxonomyStream(AmplitudeStream):
    """A taxonomy listing: every item Amplitude returns, or nothing if the plan lacks it."""

    replication_key = None

    single_response = True  # Taxonomy lists come whole (no paging is documented).

    @override
    def validate_response(self, response: requests.Response) -> None:
        """Refusals on taxonomy paths are set apart: a missing plan, or an unknown item."""
        path = urlsplit(response.url).path
        if response.status_code in {400, 403, 404} and BASE in path:
            raise TaxonomyRefusedError(
                f"{self.name}: HTTP {response.status_code} for {path}: {taxonomy_error(response)}",
                response,
            )
        super().validate_response(response)

    def fetch(self, path: str, params: Mapping[str, str] | None = None) -> list[dict[str, t.Any]]:
        """One taxonomy GET: the items of its ``data``."""
        prepared = self.build_prepared_request(
            method="GET",
            url=f"{self.url_base}{BASE}{path}",
            params=dict(params or {}),
            headers=self.http_headers,
        )
        payload = self.send(prepared).json()
        if isinstance(payload, dict) and payload.get("success") is False:
            message = f"{self.name}: Amplitude answered {path} with success=false"
            raise AmplitudeError(message)
        data = payload.get("data") if isinstance(payload, dict) else payload
        if isinstance(data, dict):
            return [data]
        return [item for item in data or [] if isinstance(item, dict)]

    def taxonomy_records(self, context: Context | None) -> Iterable[Record]:
        """The stream's records (every request may raise TaxonomyRefusedError)."""
        raise NotImplementedError

    @override
    def get_records(self, context: Context | None) -> Iterator[Record]:
        """The records; nothing (one warning per run) when the project lacks the API."""
        tap = tap_of(self)
        if tap in _REFUSED:
            self.logger.info(
                "%s: skipped, the Taxonomy API was refused (HTTP %d) earlier in this run",
                self.name,
                _REFUSED[tap],
            )
            return
        try:
            yield from self.taxonomy_records(context)
        except TaxonomyRefusedError as exc:
            status = exc.response.status_code
            if status == 400:  # noqa: PLR2004 - an item refused, not the API: a real failure
                raise
            if status == 403:  # noqa: PLR2004 - bad keys look the same: check them first
                self.check_credentials()
            _REFUSED[tap] = status
            self.logger.warning(
                TAXONOMY_UNAVAILABLE, TAXONOMY_STREAMS, status, taxonomy_error(exc.response)
            )


class EventCategoriesStream(TaxonomyStream):
    """Event categories of the tracking plan."""

    name = "event_categories"
    path = f"{BASE}/category"
    primary_keys = ("id",)
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("name", th.StringType),
    ).to_dict()

    @override
    def taxonomy_records(self, context: Context | None) -> Iterable[Record]:
        """``GET /category``."""
        return self.fetch("/category")


class EventPropertiesStream(TaxonomyStream):
    """Event properties: those shared by every event, then each event type's own.

    Without ``event_type`` Amplitude lists only the shared properties (§10.4), so the tap
    lists the event types (deleted ones too, ``showDeleted``) and asks for each.
    """

    name = "event_properties"
    path = f"{BASE}/event-property"
    primary_keys = ("event_type", "event_property")
    schema = th.PropertiesList(
        th.Property(
            "event_type",
            th.StringType,
            required=True,
            description="The event the property belongs to; '' for shared properties.",
        ),
        th.Property("event_property", th.StringType, required=True),
        *TAXONOMY_PROPERTY_FIELDS,
        th.Property("is_required", th.BooleanType),
        th.Property(
            "shared",
            th.BooleanType,
            description="Listed without event_type: shared by every event (added by the tap).",
        ),
        th.Property(
            "event_deleted",
            th.BooleanType,
            description="The event type is deleted (listed only with showDeleted; by the tap).",
        ),
    ).to_dict()

    @override
    def taxonomy_records(self, context: Context | None) -> Iterator[Record]:
        """Shared properties, then every event type's, in the order Amplitude lists them."""
        live = {str(e.get("event_type")) for e in self.fetch("/event")}
        events = self.fetch("/event", {"showDeleted": "true"})
        for item in self.fetch("/event-property"):
            yield {**item, "event_type": "", "shared": True, "event_deleted": None}
        for event in events:
            event_type = str(event.get("event_type") or "")
            if not event_type:
                continue
            deleted = event.get("deleted")
            if not isinstance(deleted, bool):
                deleted = event_type not in live
            try:
                items = self.fetch("/event-property", {"event_type": event_type})
            except TaxonomyRefusedError as exc:
                if exc.response.status_code != 400:  # noqa: PLR2004
                    raise
                self.logger.info(
                    "%s: Amplitude lists no properties for event type %r (HTTP 400: %s)",
                    self.name,
                    event_type,
                    taxonomy_error(exc.response),
                )
                continue
            for item in items:
                yield {**item, "event_type": event_type, "shared": False, "event_deleted": deleted}


class UserPropertiesStream(TaxonomyStream):
    """User properties, deleted ones included and flagged (``showDeleted``)."""

    name = "user_properties"
    path = f"{BASE}/user-property"
    primary_keys = ("user_property",)
    schema = th.PropertiesList(
        th.Property(
            "user_property",
            th.StringType,
            required=True,
            description="Custom properties carry the gp: prefix; Amplitude's own none.",
        ),
        *TAXONOMY_PROPERTY_FIELDS,
        th.Property("deleted", th.BooleanType, description="Deleted from the tracking plan."),
    ).to_dict()

    @override
    def taxonomy_records(self, context: Context | None) -> Iterator[Record]:
        """Every property with ``showDeleted``; ``deleted`` from Amplitude or by comparison.

        Where an answer lacks the flag, a property missing from the default listing (which
        leaves deleted ones out) is the deleted one.
        """
        live = {str(item.get("user_property")) for item in self.fetch("/user-property")}
        for item in self.fetch("/user-property", {"showDeleted": "true"}):
            deleted = item.get("deleted")
            if not isinstance(deleted, bool):
                deleted = str(item.get("user_property")) not in live
            yield {**item, "deleted": deleted}


class GroupPropertiesStream(TaxonomyStream):
    """Group properties of every group type."""

    name = "group_properties"
    path = f"{BASE}/group-property"
    primary_keys = ("group_type", "group_property")
    schema = th.PropertiesList(
        th.Property("group_type", th.StringType, required=True),
        th.Property(
            "group_property",
            th.StringType,
            required=True,
            description="Custom group properties carry the grp: prefix.",
        ),
        *TAXONOMY_PROPERTY_FIELDS,
    ).to_dict()

    @override
    def taxonomy_records(self, context: Context | None) -> Iterable[Record]:
        """``GET /group-property`` without ``group_type``: every group type."""
        return self.fetch("/group-property")
