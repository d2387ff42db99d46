"""The one way ranges of hours or days are cut into the pieces each API request covers."""

from __future__ import annotations

import typing as t
from datetime import date, timedelta

if t.TYPE_CHECKING:
    from collections.abc import Callable

Point = t.TypeVar("Point", bound=date)  # a date or a datetime (a datetime is a date)
ONE_DAY = timedelta(days=1)


def split_range(
    start: Point, end: Point, next_cut: Callable[[Point], Point]
) -> list[tuple[Point, Point]]:
    """Half-open pieces ``[a, b)`` covering ``[start, end)``, each ending at ``next_cut(a)``.

    An empty range (``end <= start``) gives no pieces.
    """
    pieces: list[tuple[Point, Point]] = []
    cursor = start
    while cursor < end:
        upper = min(next_cut(cursor), end)
        if upper <= cursor:
            msg = f"next_cut must move forward (from {cursor})"
            raise ValueError(msg)
        pieces.append((cursor, upper))
        cursor = upper
    return pieces


def every(step: timedelta) -> Callable[[Point], Point]:
    """A cut every ``step`` from the start of each piece."""

    def cut(point: Point) -> Point:
        return point + step

    return cut


def next_month(day: date) -> date:
    """The first day of the month after ``day``'s: pieces follow calendar months."""
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def inclusive_days(
    first: date, last: date, next_cut: Callable[[date], date]
) -> list[tuple[date, date]]:
    """``[first, last]`` (both included, as day-based APIs take them) in inclusive pieces."""
    return [(a, b - ONE_DAY) for a, b in split_range(first, last + ONE_DAY, next_cut)]
