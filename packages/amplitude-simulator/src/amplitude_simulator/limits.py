"""Amplitude's per-project REST rate limits, as the simulator enforces them (429 beyond them).

docs/amplitude-api.md §3.1: at most 5 concurrent requests across the REST API; Dashboard queries
cost ``days × conditions`` (each group-by counts as 4) with at most 1,000 per 5 minutes and
108,000 per hour; User Search and User Activity have their own limits, 10 concurrent and 360
requests per hour (§3.1, §9: "a per-project semaphore of 5 (10 for useractivity/usersearch)").
The User Profile API allows 600 requests per minute and answers its own documented
``{"error": "Number of requests per minute exceeds system limit. …"}`` beyond that (§7; the
status, 429, is undocumented). Windows slide. Refused requests spend nothing. The other 429s
use the Dashboard error envelope; every 429 carries ``Retry-After`` (seconds until the request
would fit). Amplitude documents neither; both are the simulator's choice. Tests shrink the
numbers (e.g. ``Window(20, 2.0)``) to stay fast.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import TYPE_CHECKING

from amplitude_simulator.protocol import SimRequest, SimResponse

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

GROUP_BY_CONDITIONS = 4
COST_PATHS = frozenset(
    {
        "/api/2/users",
        "/api/2/sessions/average",
        "/api/2/events/list",
        "/api/2/annotations",
        "/api/3/cohorts",
        "/api/3/annotations",
        "/api/3/annotation-categories",
    }
)
CHART_PREFIX = "/api/3/chart/"  # saved-chart results: ``chart_cost`` each (§13.4)
USER_LOOKUP_PATHS = frozenset({"/api/2/usersearch", "/api/2/useractivity"})
PROFILE_PATH = "/v1/userprofile"
#: The Profile API's throttling body (docs/amplitude-api.md §7; its status is undocumented).
PROFILE_THROTTLED = (
    "Number of requests per minute exceeds system limit. Contact Support if you need this "
    "limit raised"
)


@dataclass(frozen=True)
class Window:
    """At most ``limit`` units in any ``seconds``-long stretch of time."""

    limit: int
    seconds: float


def query_cost(params: Mapping[str, str]) -> int:
    """Cost of a Dashboard query: days (``start``..``end`` inclusive, else 1) × conditions."""
    days = 1
    try:
        first = datetime.strptime(params["start"], "%Y%m%d")  # noqa: DTZ007 - calendar days
        last = datetime.strptime(params["end"], "%Y%m%d")  # noqa: DTZ007
        days = max(1, (last - first).days + 1)
    except (KeyError, ValueError):
        pass
    group_bys = [name for name in params.get("g", "").split(",") if name]
    return days * (GROUP_BY_CONDITIONS * len(group_bys) if group_bys else 1)


@dataclass
class _Spending:
    """What one budget admitted, oldest first, as ``(monotonic time, units)``."""

    windows: tuple[Window, ...]
    spent: deque[tuple[float, int]] = field(default_factory=deque)

    def wait_for(self, units: int, now: float) -> float:
        """Seconds until ``units`` more fit every window (0: they fit now)."""
        longest = max((window.seconds for window in self.windows), default=0.0)
        while self.spent and self.spent[0][0] <= now - longest:
            self.spent.popleft()
        wait = 0.0
        for window in self.windows:
            if units > window.limit:
                wait = max(wait, window.seconds)
                continue
            recent = [(at, amount) for at, amount in self.spent if at > now - window.seconds]
            used = sum(amount for _, amount in recent)
            for at, amount in recent:  # oldest first: wait until enough of it expires
                if used + units <= window.limit:
                    break
                used -= amount
                wait = max(wait, at + window.seconds - now)
        return wait


@dataclass
class RateLimits:
    """The limits one simulated project enforces; set fields to tighten or disable them.

    ``enabled = False`` turns every check off (the request log still shows each request).
    """

    concurrent: int = 5
    #: Concurrent User Search and User Activity requests (their own pool, not ``concurrent``).
    user_lookups_concurrent: int = 10
    cost: tuple[Window, ...] = (Window(1000, 300.0), Window(108_000, 3600.0))
    user_lookups: tuple[Window, ...] = (Window(360, 3600.0),)
    #: User Profile API requests (Amplitude: 600 per minute, per organisation).
    profile: tuple[Window, ...] = (Window(600, 60.0),)
    #: Dashboard cost of one saved-chart query (undocumented; docs/amplitude-api.md §13.4).
    chart_cost: int = 1
    enabled: bool = True
    _in_flight: int = 0
    _lookups_in_flight: int = 0
    _spending: dict[str, _Spending] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def admission(self, request: SimRequest, *, concurrent: bool) -> Iterator[SimResponse | None]:
        """Yield a 429 if ``request`` is over a limit; else hold its slot while it runs.

        ``concurrent`` says whether the request counts towards the concurrency limit (every
        Basic-auth REST endpoint does).
        """
        refusal = self._admit(request, concurrent=concurrent)
        try:
            yield refusal
        finally:
            if refusal is None and concurrent:
                with self._lock:
                    if request.path in USER_LOOKUP_PATHS:
                        self._lookups_in_flight -= 1
                    else:
                        self._in_flight -= 1

    def in_flight(self) -> int:
        """Requests being answered right now (user lookups not counted: their own pool)."""
        with self._lock:
            return self._in_flight

    def lookups_in_flight(self) -> int:
        """User Search and User Activity requests being answered right now."""
        with self._lock:
            return self._lookups_in_flight

    def _admit(self, request: SimRequest, *, concurrent: bool) -> SimResponse | None:
        lookup = request.path in USER_LOOKUP_PATHS
        if not self.enabled:
            if concurrent:
                with self._lock:
                    self._count(lookup=lookup)
            return None
        budget, windows, units = self._charge(request)
        now = time.monotonic()
        with self._lock:
            if concurrent and lookup and self._lookups_in_flight >= self.user_lookups_concurrent:
                return _too_many(
                    "Too many concurrent requests",
                    f"At most {self.user_lookups_concurrent} concurrent User Search and User "
                    "Activity requests are allowed per project.",
                    1.0,
                )
            if concurrent and not lookup and self._in_flight >= self.concurrent:
                return _too_many(
                    "Too many concurrent requests",
                    f"At most {self.concurrent} concurrent requests are allowed per project "
                    "across Amplitude's REST API.",
                    1.0,
                )
            if budget:
                spending = self._spending.get(budget)
                if spending is None or spending.windows != windows:
                    spending = self._spending[budget] = _Spending(windows)
                wait = spending.wait_for(units, now)
                if wait > 0 and budget == "profile":
                    return _profile_throttled(wait)
                if wait > 0:
                    limits = ", ".join(f"{w.limit} per {w.seconds:g} s" for w in windows)
                    return _too_many(
                        "Exceeded rate limit",
                        f"This query costs {units} of the project's {budget} budget ({limits}).",
                        wait,
                    )
                spending.spent.append((now, units))
            if concurrent:
                self._count(lookup=lookup)
        return None

    def _count(self, *, lookup: bool) -> None:
        """One more request in flight in its pool (the caller holds the lock)."""
        if lookup:
            self._lookups_in_flight += 1
        else:
            self._in_flight += 1

    def _charge(self, request: SimRequest) -> tuple[str, tuple[Window, ...], int]:
        """Budget name, its windows and the units ``request`` costs ("" when unmetered)."""
        if request.path in USER_LOOKUP_PATHS:
            return "user search and activity", self.user_lookups, 1
        if request.path == PROFILE_PATH:
            return "profile", self.profile, 1
        if request.path in COST_PATHS:
            return "query cost", self.cost, query_cost(request.params)
        if request.path.startswith(CHART_PREFIX):
            return "query cost", self.cost, self.chart_cost
        return "", (), 0


def _profile_throttled(retry_after: float) -> SimResponse:
    """The Profile API's 429: ``{"error": ...}`` with its documented text."""
    response = SimResponse.json(HTTPStatus.TOO_MANY_REQUESTS, {"error": PROFILE_THROTTLED})
    response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def _too_many(message: str, details: str, retry_after: float) -> SimResponse:
    """A 429 in the Dashboard error envelope, with ``Retry-After`` in whole seconds."""
    response = SimResponse.error(HTTPStatus.TOO_MANY_REQUESTS, message, details=details)
    response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response
