"""Chart annotations v3: categories, and reading a v3 annotation (docs/amplitude-api.md §12).

``annotations`` itself lives with the other Dashboard streams (streams/dashboard.py); it reads
v3 and falls back to v2 where Amplitude refuses v3.
"""

from __future__ import annotations

import typing as t
from urllib.parse import urlsplit

from singer_sdk import typing as th
from typing_extensions import override

from tap_amplitude.client import AmplitudeResponseError, AmplitudeStream, error_summary
from tap_amplitude.timestamps import normalize

if t.TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import requests
    from singer_sdk.helpers.types import Context, Record

V3_ANNOTATIONS_PATH = "/api/3/annotations"
CATEGORIES_PATH = "/api/3/annotation-categories"
V3_ONLY_FIELDS = ("start", "end", "category", "chart_id")


class V3RefusedError(AmplitudeResponseError):
    """Amplitude refused a v3 annotations path (any 4xx but 429)."""


def v3_refusal(response: requests.Response, path: str) -> bool:
    """Whether ``response`` refuses the v3 route ``path``: a 4xx other than 429."""
    status = response.status_code
    return 400 <= status < 500 and status != 429 and urlsplit(response.url).path.endswith(path)  # noqa: PLR2004


def category_of(value: t.Any) -> dict[str, t.Any] | None:
    """A category object as ``{"id", "name"}``; Amplitude also names it ``category`` (§12.2)."""
    if isinstance(value, dict):
        name = value.get("name", value.get("category"))
        return {"id": value.get("id"), "name": None if name is None else str(name)}
    if isinstance(value, str):
        return {"id": None, "name": value}
    return None


def v3_annotation(item: Mapping[str, t.Any]) -> Record:
    """A v3 annotation as the ``annotations`` stream writes it.

    ``start``/``end`` become RFC 3339 UTC; ``date`` is the calendar day of ``start`` as
    Amplitude wrote it (in its own offset), which is what v2 called ``date``.
    """
    start = item.get("start")
    return {
        "id": item.get("id"),
        "date": str(start)[:10] if start else None,
        "label": item.get("label"),
        "details": item.get("details"),
        "start": normalize(start) if isinstance(start, str) else None,
        "end": normalize(item["end"]) if isinstance(item.get("end"), str) else None,
        "category": category_of(item.get("category")),
        "chart_id": None if item.get("chart_id") is None else str(item["chart_id"]),
        "api_version": "v3",
    }


class V3RouteStream(AmplitudeStream):
    """A stream whose ``path`` is a v3 annotations route, which Amplitude may refuse."""

    @override
    def validate_response(self, response: requests.Response) -> None:
        """A refused v3 route is set apart (V3RefusedError), so the stream can do without it."""
        if v3_refusal(response, self.path):
            raise V3RefusedError(self.response_error_message(response), response)
        super().validate_response(response)


class AnnotationCategoriesStream(V3RouteStream):
    """Annotation categories (v3 only; skipped with one warning where v3 is refused)."""

    name = "annotation_categories"
    path = CATEGORIES_PATH
    records_jsonpath = "$.data[*]"
    primary_keys = ("id",)
    replication_key = None
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property(
            "name",
            th.StringType,
            description="The category's name (Amplitude sometimes calls the key `category`).",
        ),
    ).to_dict()

    single_response = True  # One response holds every category.

    @override
    def get_records(self, context: Context | None) -> Iterator[Record]:
        """Every category; nothing (one warning) where Amplitude refuses the v3 route."""
        try:
            yield from super().get_records(context)
        except V3RefusedError as exc:
            status = exc.response.status_code
            if status in {401, 403}:  # bad keys look the same: check them first
                self.check_credentials()
            self.logger.warning(
                "%s: skipped; Amplitude refused %s (HTTP %d: %s): the project does not offer "
                "the v3 annotations API, so annotations are read from v2, which has no "
                "categories. The other streams continue.",
                self.name,
                CATEGORIES_PATH,
                status,
                error_summary(exc.response),
            )

    @override
    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        """``name`` whichever key Amplitude used."""
        category = category_of(row) or {}
        row["name"] = category.get("name")
        row.pop("category", None)
        return super().post_process(row, context)
