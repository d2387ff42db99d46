"""Deterministic, realistic Amplitude data for the simulator.

Every hour is generated independently from ``(seed, app_id, hour)`` so any window can be
served without generating the hours before it, and the same :class:`Dataset` always yields
byte-identical rows. Rows follow docs/amplitude-api.md §2.3: all 55 keys on every row, ``null``
for missing values, space-separated timestamps without a zone.
"""

from __future__ import annotations

import functools
import gzip
import json
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from amplitude_simulator.data.events import dumps, make_event
from amplitude_simulator.data.users import User, UserProfile, make_profile
from amplitude_simulator.data.values import (
    DAY_MS,
    EVENT_TYPES,
    FUTURE_TOLERANCE_MS,
    HOUR,
    HOUR_MS,
    P_ANONYMOUS,
    P_LATE,
    SECOND_MS,
    cumulative,
    parse_timestamp_ms,
    pick,
    to_ms,
    utc,
    utc_hour,
    visible,
)

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["Dataset", "HourLines", "Project", "User", "UserProfile"]


@dataclass(frozen=True)
class Project:
    """The Amplitude project the simulator impersonates, and the keys it accepts."""

    app_id: int = 187520
    api_key: str = "sim-api-key-0123456789"
    secret_key: str = "sim-secret-key-9876543210"  # noqa: S105 - simulator-only key


@dataclass(frozen=True)
class Dataset:
    """A deterministic project history; hours are generated lazily and independently.

    ``app_id`` is the project the rows belong to (the ``app`` column, the archive folder);
    :class:`~amplitude_simulator.server.AmplitudeSimulator` aligns it with its
    :class:`Project`.
    """

    start: datetime
    end: datetime
    events_per_hour: int = 40
    empty_hour_every: int = 7
    entries_per_hour: int = 3
    users: int = 25
    seed: int = 1
    app_id: int = 187520

    def __post_init__(self) -> None:
        """Normalise the bounds to UTC so equal datasets hash equal (they key the caches)."""
        start, end = utc_hour(self.start, "start"), utc_hour(self.end, "end")
        if end < start:
            raise ValueError("Dataset end must not be before start")
        if self.users < 1:
            raise ValueError("Dataset needs at least one user")
        if self.events_per_hour < 0 or self.empty_hour_every < 0 or self.entries_per_hour < 1:
            raise ValueError("events_per_hour and empty_hour_every must be >= 0, entries >= 1")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    def hours(self) -> list[datetime]:
        """Every hour in ``[start, end)``, whether or not it has data."""
        count = int((self.end - self.start) / HOUR)
        return [self.start + HOUR * i for i in range(count)]

    def event_count(self, hour: datetime) -> int:
        """Events uploaded in ``hour``, without generating them (cheap, for size checks)."""
        return _hour_count(self, utc_hour(hour, "hour"))

    def events_for_hour(self, hour: datetime) -> list[dict[str, Any]]:
        """The rows uploaded in ``hour``, in archive order; ``[]`` for hours without data."""
        return [json.loads(line) for line in hour_lines(self, utc_hour(hour, "hour")).lines]

    def expected_events(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Every row whose upload hour is in ``[start, end)``, as an export client sees them."""
        first, stop = utc(start, "start"), utc(end, "end")
        events: list[dict[str, Any]] = []
        for hour in self.hours():
            if first <= hour < stop:
                events.extend(self.events_for_hour(hour))
        return events

    def user_list(self) -> list[User]:
        """Every user of the project; the first is the heaviest (most events and activity)."""
        return [profile.user for profile in _factory(self).profiles]

    def user_activity(self, amplitude_id: int) -> list[dict[str, Any]]:
        """One user's rows, newest first; ``[]`` for an unknown Amplitude ID."""
        return [json.loads(line) for line in activity_lines(self, amplitude_id)]

    def event_types(self) -> list[dict[str, Any]]:
        """``/api/2/events/list`` items, with this week's totals expected from the dataset."""
        weekly = self.events_per_hour * 24 * 7
        if self.empty_hour_every:
            weekly -= weekly // self.empty_hour_every
        total_weight = sum(weight for _, weight, _, _ in EVENT_TYPES)
        rng = random.Random(f"amplitude-sim|event-types|{self.seed}|{self.app_id}")  # noqa: S311
        items: list[dict[str, Any]] = []
        for index, (name, weight, display, _) in enumerate(EVENT_TYPES):
            share = weekly * weight / total_weight
            totals = round(share * rng.uniform(0.9, 1.1))
            items.append(
                {
                    "id": 1203 + index * 17 + rng.randrange(17),
                    "name": name,
                    "value": name,
                    "display": display,
                    "totals": totals,
                    "totals_delta": round(rng.uniform(-0.25, 0.25), 4) if totals else 0,
                    "non_active": weight == 0,
                    "deleted": False,
                    "hidden": False,
                    "flow_hidden": False,
                    "autohidden": False,
                    "clusters_hidden": False,
                    "in_waitroom": False,
                    "timeline_hidden": False,
                }
            )
        return items

    def find_user(self, amplitude_id: int) -> UserProfile | None:
        """The profile behind an Amplitude ID, or ``None``."""
        return _factory(self).by_amplitude_id.get(amplitude_id)

    def profiles(self) -> list[UserProfile]:
        """Every user's fixed attributes (what usersearch and useractivity report)."""
        return list(_factory(self).profiles)


class _Factory:
    """Per-dataset tables shared by every hour: its users and how often each is drawn."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.profiles = tuple(
            make_profile(dataset.seed, dataset.app_id, dataset.start, dataset.end, i)
            for i in range(dataset.users)
        )
        self.by_amplitude_id = {p.user.amplitude_id: p for p in self.profiles}
        # A few heavy users and a long tail, like real products.
        weights = [1.0 / (i + 1) ** 0.8 for i in range(dataset.users)]
        self.user_cum = cumulative(weights)

    def pick_user(self, rng: random.Random) -> UserProfile:
        return self.profiles[pick(self.user_cum, rng)]


@functools.lru_cache(maxsize=32)
def _factory(dataset: Dataset) -> _Factory:
    return _Factory(dataset)


# --------------------------------------------------------------------------------------
# hours


def _hour_rng(dataset: Dataset, hour: datetime) -> random.Random:
    """The stream an hour is drawn from; independent of every other hour."""
    key = f"amplitude-sim|hour|{dataset.seed}|{dataset.app_id}|{hour:%Y%m%dT%H}"
    return random.Random(key)  # noqa: S311 - reproducible test data, not secrets


def _hour_count(dataset: Dataset, hour: datetime) -> int:
    """How many rows ``hour`` has: 0 outside the dataset and on every Nth hour."""
    if not dataset.start <= hour < dataset.end or dataset.events_per_hour == 0:
        return 0
    index = int((hour - dataset.start) / HOUR)
    if dataset.empty_hour_every and (index + 1) % dataset.empty_hour_every == 0:
        return 0
    rng = _hour_rng(dataset, hour)
    return max(1, round(dataset.events_per_hour * (0.5 + rng.random())))


@dataclass(frozen=True)
class HourLines:
    """An hour's rows as JSON lines, grouped into the archive members they are served in."""

    lines: tuple[bytes, ...]
    parts: tuple[int, ...]  # start offset of each member in ``lines``

    def members(self) -> list[tuple[bytes, ...]]:
        """The lines of each ``#n`` member, in order."""
        bounds = [*self.parts, len(self.lines)]
        return [self.lines[bounds[i] : bounds[i + 1]] for i in range(len(self.parts))]


_K = TypeVar("_K")
_V = TypeVar("_V")


class _LRU(Generic[_K, _V]):
    """A thread-safe LRU bounded by the summed size of its values."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._items: OrderedDict[_K, tuple[_V, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: _K, value: _V, size: int) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= old[1]
            self._items[key] = (value, size)
            self._size += size
            while self._size > self.max_size and len(self._items) > 1:
                _, (_, dropped) = self._items.popitem(last=False)
                self._size -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


_LINES_CACHE: _LRU[tuple[Dataset, datetime], HourLines] = _LRU(96 << 20)
_MEMBERS_CACHE: _LRU[tuple[Dataset, datetime], tuple[bytes, ...]] = _LRU(192 << 20)
_ACTIVITY_CACHE: _LRU[tuple[Dataset, int], tuple[bytes, ...]] = _LRU(32 << 20)
_EMPTY_HOUR = HourLines((), ())


def clear_caches() -> None:
    """Forget every generated hour (tests use it to prove generation itself is deterministic)."""
    _LINES_CACHE.clear()
    _MEMBERS_CACHE.clear()
    _ACTIVITY_CACHE.clear()
    _visible_activity.cache_clear()
    _factory.cache_clear()


def hour_lines(dataset: Dataset, hour: datetime) -> HourLines:
    """An hour's JSON lines in member order, generated once and cached."""
    count = _hour_count(dataset, hour)
    if count == 0:
        return _EMPTY_HOUR
    key = (dataset, hour)
    cached = _LINES_CACHE.get(key)
    if cached is not None:
        return cached
    rng = _hour_rng(dataset, hour)
    rng.random()  # the draw _hour_count used for the count
    factory = _factory(dataset)
    base = to_ms(hour)
    draw = rng.random
    uploads = sorted(base + int(draw() * HOUR_MS) for _ in range(count))
    rows = [
        dumps(
            make_event(
                dataset.app_id,
                rng,
                factory.pick_user(rng),
                upload,
                late=draw() < P_LATE,
                anonymous=draw() < P_ANONYMOUS,
            )
        )
        for upload in uploads
    ]
    # Rows are spread over the members (each sorted by upload time, interleaved between them),
    # the way Amplitude's ingestion shards write them.
    n_parts = min(rng.randint(1, dataset.entries_per_hour), count)
    assignment = [i % n_parts for i in range(count)]
    rng.shuffle(assignment)
    ordered: list[bytes] = []
    parts: list[int] = []
    for part in range(n_parts):
        parts.append(len(ordered))
        ordered.extend(row for row, where in zip(rows, assignment, strict=True) if where == part)
    result = HourLines(tuple(ordered), tuple(parts))
    _LINES_CACHE.put(key, result, sum(map(len, ordered)))
    return result


def hour_members(dataset: Dataset, hour: datetime) -> tuple[bytes, ...]:
    """An hour's gzip members (``#0``, ``#1``, …), byte-identical on every call."""
    key = (dataset, hour)
    cached = _MEMBERS_CACHE.get(key)
    if cached is not None:
        return cached
    members = tuple(
        gzip.compress(b"\n".join(lines) + b"\n", compresslevel=3, mtime=0)
        for lines in hour_lines(dataset, hour).members()
    )
    if members:
        _MEMBERS_CACHE.put(key, members, sum(map(len, members)))
    return members


def activity_lines(dataset: Dataset, amplitude_id: int) -> tuple[bytes, ...]:
    """One user's activity rows as JSON lines, newest first; cached."""
    profile = _factory(dataset).by_amplitude_id.get(amplitude_id)
    if profile is None:
        return ()
    key = (dataset, amplitude_id)
    cached = _ACTIVITY_CACHE.get(key)
    if cached is not None:
        return cached
    rng = random.Random(  # noqa: S311 - reproducible test data
        f"amplitude-sim|activity|{dataset.seed}|{dataset.app_id}|{amplitude_id}"
    )
    uploads: list[int] = []
    moment = profile.last_seen_ms
    for position in range(profile.activity_count):
        uploads.append(moment)
        # Sessions of events seconds apart, separated by hours or days.
        gap = rng.randint(4, 240) * SECOND_MS
        if position % rng.randint(5, 25) == 0:
            gap += rng.randint(2 * HOUR_MS, 3 * DAY_MS)
        moment -= gap
    lines = tuple(
        dumps(make_event(dataset.app_id, rng, profile, upload, late=False)) for upload in uploads
    )
    _ACTIVITY_CACHE.put(key, lines, sum(map(len, lines)))
    return lines


def visible_activity_lines(dataset: Dataset, amplitude_id: int, now_ms: int) -> tuple[bytes, ...]:
    """The user's activity rows Amplitude has at ``now_ms`` (none from the future), newest first."""
    profile = _factory(dataset).by_amplitude_id.get(amplitude_id)
    if profile is None:
        return ()
    if now_ms >= profile.last_seen_ms + FUTURE_TOLERANCE_MS:  # every row is in the past
        return activity_lines(dataset, amplitude_id)
    return _visible_activity(dataset, amplitude_id, now_ms)


@functools.lru_cache(maxsize=64)
def _visible_activity(dataset: Dataset, amplitude_id: int, now_ms: int) -> tuple[bytes, ...]:
    lines = activity_lines(dataset, amplitude_id)
    return tuple(line for line in lines if visible(json.loads(line), now_ms))


def last_seen_ms(dataset: Dataset, profile: UserProfile, now_ms: int) -> int:
    """When the user was last seen as of ``now_ms``: their newest visible upload.

    A user with nothing uploaded yet was last seen when created.
    """
    if now_ms >= profile.last_seen_ms + FUTURE_TOLERANCE_MS:
        return profile.last_seen_ms
    lines = visible_activity_lines(dataset, profile.user.amplitude_id, now_ms)
    if not lines:
        return profile.created_ms
    return parse_timestamp_ms(json.loads(lines[0])["server_upload_time"])
