"""Amplitude timestamp handling: every value leaves the tap as RFC 3339 UTC.

Amplitude writes ``YYYY-MM-DD HH:MM:SS[.ffffff]`` with no zone (always UTC). Bookmarks compare as
strings, so every timestamp is rendered in exactly one shape, with six fraction digits and ``Z``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

EVENT_TIMESTAMP_FIELDS: tuple[str, ...] = (
    "client_event_time",
    "client_upload_time",
    "event_time",
    "processed_time",
    "server_received_time",
    "server_upload_time",
    "user_creation_time",
)

_FULL = len("2024-01-01 00:00:00.000000")
_NO_FRACTION = len("2024-01-01 00:00:00")


def normalize(value: object) -> str | None:
    """Render an Amplitude timestamp as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.

    The two shapes Amplitude really sends are handled by slicing (this runs for every event);
    anything else goes through ``datetime.fromisoformat``. An unparseable value is returned
    unchanged rather than dropped, so no data is lost.
    """
    if value is None or value == "":
        return value
    if not isinstance(value, str):  # JSON gave a number, boolean, array or object
        msg = f"a timestamp must be a string, not {type(value).__name__}"
        raise TypeError(msg)
    length = len(value)
    if length == _FULL and value[10] in " T":
        return f"{value[:10]}T{value[11:]}Z"
    if length == _NO_FRACTION and value[10] in " T":
        return f"{value[:10]}T{value[11:]}.000000Z"
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return format_datetime(parsed)


def normalize_event(event: dict[str, Any]) -> dict[str, Any]:
    """Normalize, in place, every timestamp field of an export or activity event.

    The common shape is handled inline: this runs seven times for every exported event.
    """
    for field in EVENT_TIMESTAMP_FIELDS:
        value = event.get(field)
        if value is not None:  # a value of another type raises (len, indexing or replace)
            if len(value) == _FULL and value[10] == " ":
                event[field] = value.replace(" ", "T", 1) + "Z"
            else:
                event[field] = normalize(value)
    return event


def format_datetime(moment: datetime) -> str:
    """Format a datetime (naive means UTC) in the tap's single timestamp shape."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_datetime(value: str) -> datetime:
    """Parse a config or bookmark timestamp; naive values are taken as UTC.

    Raises:
        ValueError: if the value is not an ISO 8601 date or date-time.
    """
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def floor_hour(moment: datetime) -> datetime:
    """Truncate to the start of the hour (the Export API's granularity)."""
    return moment.replace(minute=0, second=0, microsecond=0)
