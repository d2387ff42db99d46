"""``chart_results``: saved charts' results, a record per chart per run (docs/amplitude-api.md §13).

The result is kept whole as JSON: its shape depends on the chart type and is undocumented
(§13.2). The tap sends no date range, so Amplitude applies the chart's saved one (§13.1);
``range_start``/``range_end`` say which days the answer covered. A chart that does not exist,
or that the keys may not read, gets one warning naming it, and the other charts go on.
"""

from __future__ import annotations

import re
import typing as t
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

from singer_sdk import typing as th
from typing_extensions import override

from tap_amplitude.client import (
    AmplitudeError,
    AmplitudeResponseError,
    AmplitudeStream,
    error_summary,
)
from tap_amplitude.schemas import PROPERTY_BAG
from tap_amplitude.timestamps import format_datetime

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    import requests
    from singer_sdk.helpers.types import Context, Record

QUERY_PATH = "/api/3/chart/{}/query"
CSV_PATH = "/api/3/chart/{}/csv"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# Statuses that refuse one chart: unknown (404, or 410 if /query is retired), not allowed.
CHART_REFUSALS = frozenset({400, 403, 404, 410})


class ChartRefusedError(AmplitudeResponseError):
    """Amplitude refused one chart's results."""


def covered_days(body: t.Any) -> tuple[str | None, str | None]:
    """First and last day a chart answer covers, from its x-axis; (None, None) if it has none.

    Segmentation-like answers carry ``xValues``, funnels ``dayFunnels.xValues``, retention
    ``series[].dates``; a /csv answer has its days in the "Segment" header row.
    """
    found: set[str] = set()

    def walk(value: t.Any, key: str = "") -> None:
        if isinstance(value, dict):
            for name, inner in value.items():
                walk(inner, name)
        elif isinstance(value, list):
            if key in {"xValues", "dates"}:
                found.update(str(v)[:10] for v in value if _DAY.match(str(v)))
            else:
                for inner in value:
                    walk(inner, key)
        elif isinstance(value, str) and "Segment" in value:
            header = next((line for line in value.splitlines() if "Segment" in line), "")
            found.update(match.group(0) for match in _DAY.finditer(header))

    walk(body)
    return (min(found), max(found)) if found else (None, None)


class ChartResultsStream(AmplitudeStream):
    """The result of each saved chart in ``chart_ids``, as of this run."""

    name = "chart_results"
    path = "/api/3/chart/{chart_id}/query"
    primary_keys = ("chart_id", "run_at")
    replication_key = "run_at"
    is_sorted = True
    schema = th.PropertiesList(
        th.Property("chart_id", th.StringType, required=True),
        th.Property(
            "run_at",
            th.DateTimeType,
            required=True,
            description="When this run read the charts (RFC 3339 UTC); the replication key.",
        ),
        th.Property(
            "range_start",
            th.DateType,
            description=(
                "First day the result covers (project time zone). The tap asks for the "
                "chart's saved range; null when the result has no days (data tables)."
            ),
        ),
        th.Property("range_end", th.DateType, description="Last day the result covers."),
        th.Property(
            "endpoint",
            th.StringType,
            description="query, or csv where Amplitude no longer answers /query for the chart.",
        ),
        th.Property(
            "result",
            PROPERTY_BAG,
            description="Amplitude's answer kept whole (its shape depends on the chart type).",
        ),
    ).to_dict()

    single_response = True  # The stream makes its own requests.

    @override
    def validate_response(self, response: requests.Response) -> None:
        """A refused chart is set apart, so the other charts go on."""
        path = urlsplit(response.url).path
        if response.status_code in CHART_REFUSALS and path.startswith("/api/3/chart/"):
            raise ChartRefusedError(self.response_error_message(response), response)
        super().validate_response(response)

    @override
    def get_records(self, context: Context | None) -> Iterator[Record]:
        """One record per chart id; a refused chart is warned about and skipped."""
        chart_ids = [str(chart_id) for chart_id in self.config.get("chart_ids") or []]
        if not chart_ids:
            self.logger.info("%s: no chart_ids set; no chart is read", self.name)
            return
        run_at = format_datetime(datetime.now(tz=timezone.utc))
        keys_checked = False
        for chart_id in dict.fromkeys(chart_ids):
            try:
                endpoint, body = self.fetch_chart(chart_id)
            except ChartRefusedError as exc:
                status = exc.response.status_code
                if status in {401, 403} and not keys_checked:  # bad keys look the same
                    self.check_credentials()
                    keys_checked = True
                reason = "is not allowed" if status in {401, 403} else "was not found"
                self.logger.warning(
                    "%s: chart %r %s (HTTP %d: %s); skipped. Check chart_ids (and that the "
                    "chart belongs to this project). The other charts continue.",
                    self.name,
                    chart_id,
                    reason,
                    status,
                    error_summary(exc.response),
                )
                continue
            first, last = covered_days(body)
            yield {
                "chart_id": chart_id,
                "run_at": run_at,
                "range_start": first,
                "range_end": last,
                "endpoint": endpoint,
                "result": body,
            }

    def fetch_chart(self, chart_id: str) -> tuple[str, dict[str, t.Any]]:
        """``/query``; ``/csv`` when /query is refused but /csv answers (§13.1)."""
        quoted = quote(chart_id, safe="")
        try:
            return "query", self.json_body(chart_id, self.get(QUERY_PATH.format(quoted)))
        except ChartRefusedError as exc:
            if exc.response.status_code not in {404, 410}:
                raise
            try:
                response = self.get(CSV_PATH.format(quoted))
            except ChartRefusedError:
                raise exc from None  # the chart is missing: report /query's answer
            self.logger.info(
                "%s: /query refused chart %r (HTTP %d); read its /csv instead",
                self.name,
                chart_id,
                exc.response.status_code,
            )
            return "csv", self.json_body(chart_id, response, csv=True)

    def json_body(
        self, chart_id: str, response: requests.Response, *, csv: bool = False
    ) -> dict[str, t.Any]:
        """The answer as a JSON object; bare CSV text, as some /csv answers are, is wrapped.

        Anything else (an HTML page from a proxy or an outage) is never stored as a result.
        """
        try:
            body = response.json()
        except ValueError:
            text = response.text
            if csv and text.lstrip()[:1] != "<":
                return {"data": text}
            endpoint = "/csv" if csv else "/query"
            msg = (
                f"{self.name}: chart {chart_id!r}: {endpoint} answered HTTP "
                f"{response.status_code} with a body that is neither JSON nor CSV "
                f"({' '.join(text.split())[:80]!r}); nothing was stored for it. Run again "
                "later; if it persists, check api_url."
            )
            raise AmplitudeError(msg) from None
        return body if isinstance(body, dict) else {"data": body}
