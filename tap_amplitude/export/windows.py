"""Export windows: the upload hours one Export API request covers, and how a range is cut."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from tap_amplitude.ranges import every, split_range
from tap_amplitude.timestamps import floor_hour, parse_datetime

HOUR = timedelta(hours=1)
EXPORT_PARAM_FORMAT = "%Y%m%dT%H"
MAX_WINDOW_HOURS = 365 * 24  # the Export API's longest span per request (docs §2.1)


@dataclass(frozen=True, order=True)
class Window:
    """Upload hours ``[start, end)``; both ends on hour boundaries."""

    start: datetime
    end: datetime

    @property
    def hours(self) -> int:
        """Number of hours covered."""
        return int((self.end - self.start) / HOUR)

    def params(self) -> dict[str, str]:
        """Export API query: both ``start`` and ``end`` hours are inclusive."""
        return {
            "start": self.start.strftime(EXPORT_PARAM_FORMAT),
            "end": (self.end - HOUR).strftime(EXPORT_PARAM_FORMAT),
        }

    def halves(self) -> tuple[Window, Window]:
        """Split on an hour boundary; the first half gets the extra hour."""
        middle = self.start + HOUR * ((self.hours + 1) // 2)
        return Window(self.start, middle), Window(middle, self.end)

    def label(self) -> str:
        """Human-readable range for logs and errors."""
        last = self.end - HOUR
        return f"{self.start:%Y-%m-%d %H:00}..{last:%Y-%m-%d %H:59} UTC"


def plan_windows(start: datetime, end: datetime, window_hours: int) -> list[Window]:
    """Cover ``[start, end)`` with consecutive hour-aligned windows of ``window_hours``.

    ``start`` and ``end`` must already be on hour boundaries; an empty range plans nothing.
    """
    if window_hours < 1:
        msg = "window_hours must be at least 1"
        raise ValueError(msg)
    step = every(HOUR * min(window_hours, MAX_WINDOW_HOURS))
    return [Window(lower, upper) for lower, upper in split_range(start, end, step)]


def export_end(config: t.Mapping[str, t.Any], now: datetime | None = None) -> datetime:
    """Exclusive upper bound: ``end_date`` capped at now − ``export_lag_hours``, floored."""
    now = now or datetime.now(tz=timezone.utc)
    end = now - timedelta(hours=int(config.get("export_lag_hours", 2)))
    if config.get("end_date"):
        end = min(end, parse_datetime(config["end_date"]))
    return floor_hour(end)
