"""Window planning and splitting: hour-aligned, disjoint, and covering the range exactly."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tap_amplitude.export import HOUR, Window, export_end, plan_windows

EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)

hour_offsets = st.integers(min_value=0, max_value=24 * 800)
window_sizes = st.integers(min_value=1, max_value=8760)


def _hours(start: int, length: int) -> tuple[datetime, datetime]:
    return EPOCH + HOUR * start, EPOCH + HOUR * (start + length)


def _assert_tiles(windows: list[Window], start: datetime, end: datetime) -> None:
    if start >= end:
        assert windows == []
        return
    assert windows[0].start == start
    assert windows[-1].end == end
    for window in windows:
        assert window.start < window.end
        for edge in (window.start, window.end):
            assert edge.minute == edge.second == edge.microsecond == 0
    for before, after in pairwise(windows):
        assert before.end == after.start  # no gap, no overlap


@given(hour_offsets, st.integers(min_value=0, max_value=24 * 400), window_sizes)
def test_plan_covers_range_exactly(start: int, length: int, size: int) -> None:
    first, last = _hours(start, length)
    windows = plan_windows(first, last, size)
    _assert_tiles(windows, first, last)
    assert all(window.hours <= size for window in windows)
    assert sum(window.hours for window in windows) == length
    # only the last window may be short
    assert all(window.hours == size for window in windows[:-1])


@given(hour_offsets, st.integers(min_value=2, max_value=24 * 400))
def test_halves_split_on_hour_boundaries(start: int, length: int) -> None:
    window = Window(*_hours(start, length))
    first, second = window.halves()
    _assert_tiles([first, second], window.start, window.end)
    assert first.hours >= second.hours >= 1


@given(hour_offsets, st.integers(min_value=1, max_value=24 * 30))
def test_recursive_splitting_reaches_single_hours(start: int, length: int) -> None:
    pending = [Window(*_hours(start, length))]
    leaves: list[Window] = []
    while pending:
        window = pending.pop()
        if window.hours == 1:
            leaves.append(window)
        else:
            pending.extend(window.halves())
    leaves.sort()
    _assert_tiles(leaves, *_hours(start, length))
    assert len(leaves) == length


def test_export_params_are_inclusive_hours() -> None:
    window = Window(
        datetime(2024, 3, 1, 0, tzinfo=timezone.utc), datetime(2024, 3, 2, tzinfo=timezone.utc)
    )
    assert window.params() == {"start": "20240301T00", "end": "20240301T23"}
    assert Window(*_hours(5, 1)).params()["start"] == Window(*_hours(5, 1)).params()["end"]


def test_zero_hour_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_windows(EPOCH, EPOCH + HOUR, 0)


def test_export_end_respects_lag_and_end_date() -> None:
    now = datetime(2024, 3, 5, 10, 42, tzinfo=timezone.utc)
    assert export_end({"export_lag_hours": 2}, now) == datetime(2024, 3, 5, 8, tzinfo=timezone.utc)
    assert export_end({"export_lag_hours": 0}, now) == datetime(2024, 3, 5, 10, tzinfo=timezone.utc)
    capped = export_end({"export_lag_hours": 2, "end_date": "2024-03-02T05:30:00Z"}, now)
    assert capped == datetime(2024, 3, 2, 5, tzinfo=timezone.utc)
    later = export_end({"export_lag_hours": 2, "end_date": "2030-01-01"}, now)
    assert later == now.replace(minute=0) - timedelta(hours=2)
