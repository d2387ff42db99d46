"""Amplitude's bucket layout: which keys hold events, merged ids or ``complete`` markers.

Keys are ``{prefix}/{app}/{app}_{YYYY-MM-DD}_{H}#{n}.json.gz`` (events), ``{prefix}/-{org}/
-{org}_{YYYY-MM-DD}_{H}.json.gz`` (merged ids; legacy organisations use the app folder
without the ``#n``) and ``{app}_{YYYY-MM-DD}_{H}_complete`` markers (docs/amplitude-api.md
§15.4, §16.2). The hour is not zero-padded, so every key is parsed; nothing relies on the
lexical order of a listing (docs/amplitude-api.md §16.5).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

HOUR = timedelta(hours=1)
HOUR_KEY_FORMAT = "%Y-%m-%dT%H"  # hours in STATE: "2024-03-05T07"

_KEY = re.compile(
    r"^(?P<scope>-?\d+)_(?P<day>\d{4}-\d{2}-\d{2})_(?P<hour>\d{1,2})"
    r"(?:#(?P<part>\d+)(?P<suffix>\.json\.gz)|(?P<merged>\.json\.gz)|(?P<marker>_complete.*))$",
    re.IGNORECASE,
)
APP_FOLDER = re.compile(r"^\d+$")
ORG_FOLDER = re.compile(r"^-\d+$")


class Kind(enum.Enum):
    """What a stream reads from the bucket."""

    EVENTS = "events"
    MERGED_IDS = "merged ids"


@dataclass(frozen=True)
class ParsedKey:
    """One key's meaning: its scope (app or ``-org``), upload hour, and what it holds."""

    scope: str
    hour: datetime
    part: int | None  # events: the ``#n`` partition
    marker: bool  # a ``complete`` marker, no data

    def holds(self, kind: Kind) -> bool:
        """Whether the object holds data for ``kind``."""
        if self.marker:
            return False
        return (self.part is not None) == (kind is Kind.EVENTS)


def parse_key(name: str) -> ParsedKey | None:
    """The meaning of a key's last path segment; None for anything else (skipped)."""
    match = _KEY.match(name.rsplit("/", 1)[-1])
    if match is None:
        return None
    try:
        day = datetime.strptime(match["day"], "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    hour = int(match["hour"])
    if hour > 23:  # noqa: PLR2004
        return None
    part = int(match["part"]) if match["part"] is not None else None
    return ParsedKey(match["scope"], day + HOUR * hour, part, marker=bool(match["marker"]))


def day_prefix(scope: str, day: datetime) -> str:
    """The listing prefix of one scope's keys for one UTC day (dates are zero-padded)."""
    return f"{scope}_{day:%Y-%m-%d}_"


def hour_key(hour: datetime) -> str:
    """An upload hour as STATE writes it."""
    return hour.strftime(HOUR_KEY_FORMAT)


def parse_hour_key(text: str) -> datetime:
    """An hour from STATE.

    Raises:
        ValueError: the text is not ``YYYY-MM-DDTHH``.
    """
    return datetime.strptime(text, HOUR_KEY_FORMAT).replace(tzinfo=timezone.utc)
