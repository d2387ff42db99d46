"""``GET /api/2/export``: a zip of gzipped JSON-lines files, one or more per upload hour.

Behaviour follows docs/amplitude-api.md §2: inclusive ``YYYYMMDDTHH`` bounds on upload time, 404
``Raw data files were not found.`` when nothing matches (never an empty zip), 400 when the
export would exceed the size limit, 504 when it would take too long, and nothing newer than
the export lag. A user whose deletion job is done (§8, §17.3: the job "deletes all events ...
up to the run time") has no rows uploaded before the job's day.
"""

from __future__ import annotations

import gzip
import io
import json
import tempfile
import time
import zipfile
from datetime import date, datetime, timedelta, timezone
from http import HTTPStatus
from pathlib import Path
from typing import IO, TYPE_CHECKING

from amplitude_simulator.data.dataset import hour_lines, hour_members
from amplitude_simulator.protocol import Route, SimResponse

if TYPE_CHECKING:
    from amplitude_simulator.data.dataset import Dataset
    from amplitude_simulator.protocol import Context, SimRequest
    from amplitude_simulator.settings import NetworkSettings

HOUR = timedelta(hours=1)
PARAM_FORMAT = "%Y%m%dT%H"
MAX_SPAN = timedelta(days=365)
_ESTIMATED_GZ_BYTES_PER_EVENT = 320

NOT_FOUND_TEXT = "Raw data files were not found."
TOO_LARGE_TEXT = (
    "The file size of the exported data is too large. Shorten the time ranges and try again. "
    "The limit size is 4GB."
)
TIMEOUT_TEXT = "Gateway Timeout"


def routes() -> list[Route]:
    """The Export API endpoint."""
    return [Route("GET", "/api/2/export", handle_export)]


class _BadRequestError(ValueError):
    """A request Amplitude would refuse with 400."""


def _parse_hour(params: dict[str, str], name: str) -> datetime:
    """``YYYYMMDDTHH`` → an aware UTC hour."""
    raw = params.get(name)
    if not raw:
        raise _BadRequestError(f"Missing required parameter: {name} (format YYYYMMDDTHH)")
    parsed: datetime | None = None
    if len(raw) == len("20220201T05"):  # strptime alone would accept "2022021T5"
        try:
            parsed = datetime.strptime(raw, PARAM_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            parsed = None
    if parsed is None:
        raise _BadRequestError(
            f"Invalid {name} parameter {raw!r}: expected format YYYYMMDDTHH, e.g. 20220201T05"
        )
    return parsed


def _window(params: dict[str, str]) -> tuple[datetime, datetime]:
    """The inclusive first and last hour requested, validated."""
    start, end = _parse_hour(params, "start"), _parse_hour(params, "end")
    if start > end:
        raise _BadRequestError("Invalid time range: start must not be after end")
    if end - start >= MAX_SPAN:
        raise _BadRequestError("Invalid time range: the max period you can query is 365 days")
    return start, end


def member_name(app_id: int, hour: datetime, part: int) -> str:
    """``<app>/<app>_<YYYY-MM-DD>_<H>#<n>.json.gz`` with the hour not zero-padded."""
    return f"{app_id}/{app_id}_{hour:%Y-%m-%d}_{hour.hour}#{part}.json.gz"


def marker_name(app_id: int, hour: datetime) -> str:
    """The ``_complete`` marker the S3 export writes; clients must skip it."""
    return f"{app_id}/{app_id}_{hour:%Y-%m-%d}_{hour.hour}_complete"


def handle_export(simulator: Context, request: SimRequest) -> SimResponse:
    """Validate the window, apply the simulated limits, and answer the archive."""
    began = time.monotonic()
    try:
        first, last = _window(request.params)
    except _BadRequestError as exc:
        return SimResponse.text(HTTPStatus.BAD_REQUEST, str(exc))
    settings = simulator.export
    span_hours = int((last - first) / HOUR) + 1
    if settings.timeout_hours is not None and span_hours > settings.timeout_hours:
        return SimResponse.text(HTTPStatus.GATEWAY_TIMEOUT, TIMEOUT_TEXT)

    dataset = simulator.dataset
    today = simulator.current_time().astimezone(timezone.utc).date()
    erasures = simulator.deletions.erasures(today)
    hours, events = _hours_with_data(dataset, first, last, simulator.export_cutoff(), erasures)
    if not hours:
        return SimResponse.text(HTTPStatus.NOT_FOUND, NOT_FOUND_TEXT)
    if settings.max_events is not None and events > settings.max_events:
        return SimResponse.text(HTTPStatus.BAD_REQUEST, TOO_LARGE_TEXT)

    headers = {
        "Content-Type": "application/zip",
        "Content-Disposition": f'attachment; filename="{dataset.app_id}.zip"',
    }
    marker = settings.include_marker
    if events * _ESTIMATED_GZ_BYTES_PER_EVENT <= settings.spool_threshold_bytes:
        buffer = io.BytesIO()
        write_archive(buffer, dataset, hours, marker=marker, erasures=erasures)
        response = SimResponse(HTTPStatus.OK, headers, buffer.getvalue())
    else:
        with tempfile.NamedTemporaryFile(
            prefix="amplitude-sim-", suffix=".zip", delete=False
        ) as out:
            path = Path(out.name)
            try:
                write_archive(out, dataset, hours, marker=marker, erasures=erasures)
            except BaseException:
                path.unlink()
                raise
        response = SimResponse(HTTPStatus.OK, headers, body_path=path, delete_body_path=True)
    try:
        return _over_the_network(response, settings.network, began)
    except BaseException:
        response.discard()
        raise


def _hours_with_data(
    dataset: Dataset,
    first: datetime,
    last: datetime,
    cutoff: datetime,
    erasures: dict[int, date],
) -> tuple[list[datetime], int]:
    """The exportable upload hours of ``first``..``last`` that have rows, and their rows."""
    hours: list[datetime] = []
    events = 0
    hour = max(first, dataset.start)
    stop = min(last + HOUR, dataset.end, cutoff)
    while hour < stop:
        count = dataset.event_count(hour)
        if count and erasures:
            count = sum(map(len, _members_after_erasures(dataset, hour, erasures)))
        if count:
            hours.append(hour)
            events += count
        hour += HOUR
    return hours, events


def _over_the_network(response: SimResponse, network: NetworkSettings, began: float) -> SimResponse:
    """Wait out the modelled time to first byte, and mark the body for the bandwidth cap.

    Sleeps in this request's handler thread only (one per connection), so the server's other
    requests go on; the simulator's own build time counts towards the TTFB.
    """
    if not network.enabled:
        return response
    remaining = network.ttfb_seconds(response.content_length()) - (time.monotonic() - began)
    if remaining > 0:
        time.sleep(remaining)
    response.bytes_per_second = network.bandwidth
    return response


def write_archive(
    target: IO[bytes],
    dataset: Dataset,
    hours: list[datetime],
    *,
    marker: bool = False,
    erasures: dict[int, date] | None = None,
) -> None:
    """Write the export zip for ``hours`` (each with data) to ``target``.

    Members are already gzip, so they are stored, not deflated again; fixed timestamps make
    the archive byte-identical for the same request. ``erasures`` (Amplitude id → the day
    its deletion job ran) leaves out those users' rows uploaded before that day.
    """
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as archive:
        for hour in hours:
            stamp = (hour.year, hour.month, hour.day, hour.hour, 0, 0)
            members = hour_members(dataset, hour)
            if erasures:
                members = tuple(
                    gzip.compress(b"\n".join(lines) + b"\n", compresslevel=3, mtime=0)
                    for lines in _members_after_erasures(dataset, hour, erasures)
                )
            for part, member in enumerate(members):
                archive.writestr(_entry(member_name(dataset.app_id, hour, part), stamp), member)
            if marker:
                archive.writestr(_entry(marker_name(dataset.app_id, hour), stamp), b"")


def _members_after_erasures(
    dataset: Dataset, hour: datetime, erasures: dict[int, date]
) -> list[tuple[bytes, ...]]:
    """The hour's members without the erased users' rows (empty members dropped)."""
    members = []
    for lines in hour_lines(dataset, hour).members():
        kept = tuple(line for line in lines if not _erased(json.loads(line), erasures))
        if kept:
            members.append(kept)
    return members


def _erased(row: dict[str, object], erasures: dict[int, date]) -> bool:
    """Whether a deletion job that has run took this row (uploaded before the job's day)."""
    day = erasures.get(int(str(row["amplitude_id"])))
    return day is not None and str(row["server_upload_time"])[:10] < day.isoformat()


def _entry(name: str, stamp: tuple[int, int, int, int, int, int]) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, stamp)
    entry.compress_type = zipfile.ZIP_STORED
    entry.external_attr = 0o644 << 16
    return entry
