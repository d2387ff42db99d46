"""Amplitude's REST rate limits, enforced before each request is sent rather than learnt from 429s.

Amplitude limits every project (docs/amplitude-api.md §3.1):

* at most 5 concurrent requests across all REST endpoints (Export, Dashboard REST, cohorts);
* Dashboard REST queries cost ``days × conditions × endpoint cost`` (1 for every endpoint this
  tap reads; each group-by counts as 4 conditions), at most 1,000 per 5 minutes and 108,000
  per hour;
* User Search and User Activity together: 360 requests per hour;
* the Taxonomy API, per key: at most 4 cost in flight and 7,200 per hour, a GET costing 1
  (§10.2);
* cohort download requests: 60 per 10 minutes (§11.4; the monthly quota is the stream's);
* the User Profile API, on its own host: 600 requests per minute (§7).

By default budgets are kept in memory, per project, for the whole process and every thread in
it (pyrate-limiter's thread-safe buckets plus a semaphore). With ``rate_limits.backend`` they
live in pyrate-limiter's own shared buckets instead (SQLite file, PostgreSQL or Redis), so every
process that names the same backend (tap runs, Dagster partitions, ``amplitude-privacy``)
spends one budget; the concurrency cap is then held across those processes too, by slots in
the same backend (:mod:`tap_amplitude.shared_slots`). A 429 that arrives anyway is retried by
the stream, honouring ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
import typing as t
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import parse_qs, urlsplit

from pyrate_limiter import AbstractBucket, InMemoryBucket, Limiter, Rate, RateItem

from tap_amplitude.shared_slots import SharedBackend

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Iterator, Mapping

    import requests

    from tap_amplitude.shared_slots import SharedSlots

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

P = t.ParamSpec("P")
R = t.TypeVar("R")

SHORT_WINDOW_SECONDS = 300.0
LONG_WINDOW_SECONDS = 3600.0
GROUP_BY_CONDITIONS = 4
# Amplitude counts a request when it arrives, a moment after we count it; windows are kept
# this much longer (2 %, at least half a second) so our window never ends before Amplitude's.
WINDOW_MARGIN = 0.02
MIN_WINDOW_MARGIN_SECONDS = 0.5
DATE_PARAM_FORMAT = "%Y%m%d"

COST_BUDGET = "Dashboard cost"
USER_LOOKUP_BUDGET = "user lookups"
TAXONOMY_BUDGET = "taxonomy cost"
COHORT_REQUEST_BUDGET = "cohort download requests"
COHORT_WINDOW_SECONDS = 600.0
PROFILE_BUDGET = "User Profile API requests"
PROFILE_WINDOW_SECONDS = 60.0

# Endpoints whose queries are priced in cost units (1 × days × conditions each).
COST_ENDPOINTS: tuple[str, ...] = (
    "/api/2/users",
    "/api/2/sessions/average",
    "/api/2/events/list",
    "/api/2/annotations",
    "/api/3/cohorts",
    "/api/3/annotations",
    "/api/3/annotation-categories",
)
# Saved-chart results: cost undocumented, taken as 1 (docs/amplitude-api.md §13.4).
COST_PREFIXES: tuple[str, ...] = ("/api/3/chart/",)
USER_LOOKUP_ENDPOINTS: tuple[str, ...] = ("/api/2/usersearch", "/api/2/useractivity")
TAXONOMY_PREFIX = "/api/2/taxonomy/"
# Step 1 of a cohort download (its /file and status reads are not counted, §11.4).
COHORT_REQUEST_PREFIX = "/api/5/cohorts/request/"
# The User Profile API, on its own host: 600 requests per minute per organisation (§7).
PROFILE_PATH = "/v1/userprofile"


@dataclass(frozen=True)
class RateLimits:
    """The numbers a :class:`ProjectLimiter` enforces; the defaults are Amplitude's.

    The window lengths exist for tests, which need windows of seconds rather than minutes;
    the long window must be a whole multiple of the short one.
    """

    concurrent_requests: int = 5
    cost_per_short_window: int = 1000
    cost_per_long_window: int = 108_000
    user_lookups_per_long_window: int = 360
    taxonomy_cost_per_long_window: int = 7200
    taxonomy_concurrent_requests: int = 4
    cohort_requests_per_window: int = 60
    profile_requests_per_window: int = 600
    short_window_seconds: float = SHORT_WINDOW_SECONDS
    long_window_seconds: float = LONG_WINDOW_SECONDS
    cohort_window_seconds: float = COHORT_WINDOW_SECONDS
    profile_window_seconds: float = PROFILE_WINDOW_SECONDS
    # sqlite:///path, postgresql://… or redis://…: budgets and slots shared by every process
    # naming it (see shared_slots.py); None keeps them in this process's memory.
    backend: str | None = None

    def __post_init__(self) -> None:
        """Refuse limits no bucket could enforce."""
        numbers = (
            self.concurrent_requests,
            self.cost_per_short_window,
            self.cost_per_long_window,
            self.user_lookups_per_long_window,
            self.taxonomy_cost_per_long_window,
            self.taxonomy_concurrent_requests,
            self.cohort_requests_per_window,
            self.profile_requests_per_window,
        )
        if min(numbers) < 1:
            msg = f"rate limits must be at least 1, got {self}"
            raise ValueError(msg)
        ratio = self.long_window_seconds / self.short_window_seconds
        if self.short_window_seconds <= 0 or ratio < 1 or ratio != round(ratio):
            msg = "the long window must be a whole multiple of the short window"
            raise ValueError(msg)

    @classmethod
    def from_config(cls, config: Mapping[str, t.Any]) -> RateLimits:
        """Amplitude's limits, with any ``rate_limits`` setting applied."""
        settings = config.get("rate_limits") or {}
        defaults = cls()
        return cls(
            concurrent_requests=int(
                settings.get("concurrent_requests") or defaults.concurrent_requests
            ),
            cost_per_short_window=int(
                settings.get("cost_per_5_minutes") or defaults.cost_per_short_window
            ),
            cost_per_long_window=int(
                settings.get("cost_per_hour") or defaults.cost_per_long_window
            ),
            user_lookups_per_long_window=int(
                settings.get("user_lookups_per_hour") or defaults.user_lookups_per_long_window
            ),
            taxonomy_cost_per_long_window=int(
                settings.get("taxonomy_cost_per_hour") or defaults.taxonomy_cost_per_long_window
            ),
            taxonomy_concurrent_requests=int(
                settings.get("taxonomy_concurrent_requests")
                or defaults.taxonomy_concurrent_requests
            ),
            backend=settings.get("backend") or None,
        )

    @override
    def __repr__(self) -> str:
        """The limits, with any password in the backend URL masked (reprs reach logs)."""
        fields = ", ".join(
            f"{name}={SharedBackend.redact(value) if name == 'backend' and value else value!r}"
            for name, value in self.__dict__.items()
        )
        return f"RateLimits({fields})"


@dataclass(frozen=True)
class Charge:
    """What one request draws from a budget."""

    budget: str
    amount: int


def request_charge(path: str, params: Mapping[str, str]) -> Charge | None:  # noqa: PLR0911 - one return per budget
    """The budget a request to ``path`` draws on, and how much; None when it has no budget.

    Cost-priced queries cost ``days × conditions``: days from ``start``/``end``
    (``YYYYMMDD``, inclusive; 1 without them) and 4 conditions per group-by (``g``), else 1.
    """
    if path.endswith(USER_LOOKUP_ENDPOINTS):
        return Charge(USER_LOOKUP_BUDGET, 1)
    if TAXONOMY_PREFIX in path:
        return Charge(TAXONOMY_BUDGET, 1)  # the tap only reads: a GET costs 1 (§10.2)
    if COHORT_REQUEST_PREFIX in path and not path.endswith("/file"):
        return Charge(COHORT_REQUEST_BUDGET, 1)
    if path.endswith(PROFILE_PATH):
        return Charge(PROFILE_BUDGET, 1)
    if any(prefix in path for prefix in COST_PREFIXES):
        return Charge(COST_BUDGET, 1)
    if not path.endswith(COST_ENDPOINTS):
        return None
    group_bys = [value for value in params.get("g", "").split(",") if value]
    conditions = GROUP_BY_CONDITIONS * len(group_bys) if group_bys else 1
    return Charge(COST_BUDGET, _days(params) * conditions)


def _days(params: Mapping[str, str]) -> int:
    """Days from ``start`` to ``end`` (inclusive); 1 when the query names no dates."""
    try:
        first, last = _param_date(params["start"]), _param_date(params["end"])
    except (KeyError, ValueError):
        return 1
    return max(1, (last - first).days + 1)


def _param_date(value: str) -> date:
    """A ``YYYYMMDD`` query value as a date."""
    return datetime.strptime(value, DATE_PARAM_FORMAT).date()  # noqa: DTZ007 - a calendar date


def prepared_charge(prepared: requests.PreparedRequest) -> Charge | None:
    """:func:`request_charge` for a prepared request."""
    parts = urlsplit(prepared.url or "")
    params = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    return request_charge(parts.path, params)


class _Budget:
    """One pyrate-limiter bucket, with a label for the log line that says why we wait."""

    def __init__(
        self,
        label: str,
        rates: list[Rate],
        windows: Mapping[int, str],
        bucket: AbstractBucket | None = None,
    ) -> None:
        self.label = label
        self.bucket = bucket if bucket is not None else InMemoryBucket(rates)
        self.limiter = Limiter(self.bucket)
        self.windows = windows
        self.ceiling = min(rate.limit for rate in rates)
        self.ceiling_window = windows.get(
            min(rates, key=lambda rate: rate.limit).interval, "window"
        )
        self.oversize_named = False  # the first request dearer than a window is named once

    def acquire(self, amount: int, *, log: Callable[[str, float, str, int], None]) -> None:
        """Take ``amount`` units, blocking (after one log line) until the budget has them.

        A request costing more than a whole window can never fit, so it is charged the
        whole window: it then waits for an empty window instead of forever.
        """
        weight = min(amount, self.ceiling)
        # A zero timeout rather than blocking=False: pyrate-limiter passes a bare False to the
        # SQLite bucket's file lock, which filelock 4 refuses as a timeout.
        if self.limiter.try_acquire(self.label, weight, timeout=0) is True:
            return
        failing = self.bucket.failing_rate
        if failing is None:  # a shared bucket busy with another process: no budget wait
            self.limiter.try_acquire(self.label, weight)
            return
        # bucket.now() is the clock the bucket stamps items with (monotonic in memory,
        # wall-clock or the database's for shared buckets).
        now = self.bucket.now()  # type: ignore[no-untyped-call]
        wait_ms = self.bucket.waiting(RateItem(self.label, now, weight))
        window, limit = self.windows.get(failing.interval, ""), failing.limit
        seconds = max(0, wait_ms) / 1000 if isinstance(wait_ms, int) else 0.0
        if seconds > 0:  # (a shared bucket that was only busy has nothing to wait for)
            log(self.label, seconds, f"{limit} per {window}", amount)
        self.limiter.try_acquire(self.label, weight)


class ProjectLimiter:
    """Every Amplitude REST limit of one project, shared by all streams of the process."""

    def __init__(self, limits: RateLimits, rest_base_url: str, project: str = "") -> None:
        """Buckets for the cost and user-lookup budgets, a semaphore for concurrency.

        With ``limits.backend`` the buckets and the concurrency slots live in that backend,
        named after ``project`` (a hash that tells Amplitude projects apart), so every process
        using the same backend and project shares them.
        """
        self.limits = limits
        self.rest_prefix = rest_base_url.rstrip("/") + "/"
        stretch = max(
            1 + WINDOW_MARGIN, 1 + MIN_WINDOW_MARGIN_SECONDS / limits.short_window_seconds
        )
        short_ms = int(limits.short_window_seconds * stretch * 1000)
        long_ms = int(limits.long_window_seconds * stretch * 1000)
        cohort_ms = int(limits.cohort_window_seconds * stretch * 1000)
        profile_ms = int(limits.profile_window_seconds * stretch * 1000)
        windows = {
            short_ms: _describe_window(limits.short_window_seconds),
            long_ms: _describe_window(limits.long_window_seconds),
            cohort_ms: _describe_window(limits.cohort_window_seconds),
            profile_ms: _describe_window(limits.profile_window_seconds),
        }
        rates = {
            COST_BUDGET: _cost_rates(limits, short_ms, long_ms),
            USER_LOOKUP_BUDGET: [Rate(limits.user_lookups_per_long_window, long_ms)],
            TAXONOMY_BUDGET: [Rate(limits.taxonomy_cost_per_long_window, long_ms)],
            COHORT_REQUEST_BUDGET: [Rate(limits.cohort_requests_per_window, cohort_ms)],
            PROFILE_BUDGET: [Rate(limits.profile_requests_per_window, profile_ms)],
        }
        self.backend = SharedBackend.open(limits.backend) if limits.backend else None
        scope = f"{project[:16] or 'default'}"
        self.budgets = {
            label: _Budget(
                label,
                budget_rates,
                windows,
                None
                if self.backend is None
                else self.backend.bucket(f"{scope}_{_BUCKET_NAMES[label]}", budget_rates),
            )
            for label, budget_rates in rates.items()
        }
        self.slots = threading.BoundedSemaphore(limits.concurrent_requests)
        self.shared_slots: SharedSlots | None = (
            None
            if self.backend is None
            else self.backend.slots(f"{scope}_concurrency", limits.concurrent_requests)
        )
        # Taxonomy's own "4 cost in flight" (§10.2), held inside the REST slot.
        self.taxonomy_slots = threading.BoundedSemaphore(limits.taxonomy_concurrent_requests)
        self.shared_taxonomy_slots: SharedSlots | None = (
            None
            if self.backend is None
            else self.backend.slots(f"{scope}_taxonomy", limits.taxonomy_concurrent_requests)
        )

    @contextmanager
    def admitted(
        self, prepared: requests.PreparedRequest, *, stream: str, logger: logging.Logger
    ) -> Iterator[None]:
        """Hold budget and a concurrency slot for one request (for its whole duration)."""

        def log_wait(label: str, seconds: float, limit: str, amount: int) -> None:
            logger.info(
                "%s: waiting %.1f s for Amplitude's %s budget (%s; this request costs %d)",
                stream,
                seconds,
                label,
                limit,
                amount,
                extra={"budget": label, "wait_seconds": round(seconds, 3)},
            )

        charge = prepared_charge(prepared)
        if charge is not None:
            budget = self.budgets[charge.budget]
            if charge.amount > budget.ceiling and not budget.oversize_named:
                budget.oversize_named = True
                logger.warning(
                    "%s: a request costs %d, more than the whole %s budget (%d per %s, from "
                    "rate_limits); each such request is sent alone once the window is empty. "
                    "Raise the budget in rate_limits, or ask for fewer days at a time.",
                    stream,
                    charge.amount,
                    charge.budget,
                    budget.ceiling,
                    budget.ceiling_window,
                )
            budget.acquire(charge.amount, log=log_wait)
        if charge is not None and charge.budget == TAXONOMY_BUDGET:
            with self._taxonomy_slot(), self._rest_slot(prepared, stream=stream, logger=logger):
                yield
            return
        with self._rest_slot(prepared, stream=stream, logger=logger):
            yield

    @contextmanager
    def _taxonomy_slot(self) -> Iterator[None]:
        """One of taxonomy's in-flight slots, in this process and in a shared backend."""
        with self.taxonomy_slots:
            if self.shared_taxonomy_slots is None:
                yield
                return
            with self.shared_taxonomy_slots.held():
                yield

    @contextmanager
    def _rest_slot(
        self, prepared: requests.PreparedRequest, *, stream: str, logger: logging.Logger
    ) -> Iterator[None]:
        """A concurrency slot for a request to the REST host (other hosts need none)."""
        if not (prepared.url or "").startswith(self.rest_prefix):
            yield
            return
        started = time.monotonic()
        waited = not self.slots.acquire(blocking=False)
        if waited:
            self.slots.acquire()
        try:
            if self.shared_slots is not None:
                with self.shared_slots.held() as shared_wait:
                    waited = waited or shared_wait
                    self._log_slot_wait(logger, stream, started, waited=waited)
                    yield
            else:
                self._log_slot_wait(logger, stream, started, waited=waited)
                yield
        finally:
            self.slots.release()

    def _log_slot_wait(
        self, logger: logging.Logger, stream: str, started: float, *, waited: bool
    ) -> None:
        """One INFO line when a request had to wait for a concurrency slot."""
        if not waited:
            return
        logger.info(
            "%s: waited %.1f s for one of Amplitude's %d concurrent request slots%s",
            stream,
            time.monotonic() - started,
            self.limits.concurrent_requests,
            " (shared by every process using rate_limits.backend)" if self.shared_slots else "",
            extra={"budget": "concurrency"},
        )

    def wrap(
        self,
        func: Callable[t.Concatenate[requests.PreparedRequest, P], R],
        *,
        stream: str,
        logger: logging.Logger,
    ) -> Callable[t.Concatenate[requests.PreparedRequest, P], R]:
        """``func`` (which sends a prepared request) made to wait for the limits first."""

        def limited(prepared: requests.PreparedRequest, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with self.admitted(prepared, stream=stream, logger=logger):
                return func(prepared, *args, **kwargs)

        return limited


def _cost_rates(limits: RateLimits, short_ms: int, long_ms: int) -> list[Rate]:
    """The cost windows that can bind; a window implied by the other is left out.

    With Amplitude's numbers the hourly 108,000 never binds: twelve 5-minute windows allow
    12,000 at most. pyrate-limiter refuses such redundant pairs, so only binding ones are kept.
    """
    short = Rate(limits.cost_per_short_window, short_ms)
    long = Rate(limits.cost_per_long_window, long_ms)
    windows_per_long = round(limits.long_window_seconds / limits.short_window_seconds)
    if long.limit >= windows_per_long * short.limit:
        return [short]
    if long.limit <= short.limit:
        return [long]
    return [short, long]


def _describe_window(seconds: float) -> str:
    """``5 min``, ``1 h`` or ``2 s``."""
    if seconds >= LONG_WINDOW_SECONDS and seconds % LONG_WINDOW_SECONDS == 0:
        return f"{int(seconds // LONG_WINDOW_SECONDS)} h"
    if seconds >= 60 and seconds % 60 == 0:  # noqa: PLR2004
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


_BUCKET_NAMES = {
    COST_BUDGET: "dashboard_cost",
    USER_LOOKUP_BUDGET: "user_lookups",
    TAXONOMY_BUDGET: "taxonomy_cost",
    COHORT_REQUEST_BUDGET: "cohort_requests",
    PROFILE_BUDGET: "profile_requests",
}

_LIMITERS: dict[tuple[str, RateLimits], ProjectLimiter] = {}
_LIMITERS_LOCK = threading.Lock()


def project_limiter(config: Mapping[str, t.Any], rest_base_url: str) -> ProjectLimiter:
    """The process-wide limiter of the project ``config`` names (one per project and limits).

    The registry key hashes the API key, so the key itself is never held outside the config;
    the same hash names the project's buckets in a shared ``rate_limits.backend``.
    """
    limits = RateLimits.from_config(config)
    project = hashlib.sha256(f"{rest_base_url}|{config.get('api_key', '')}".encode()).hexdigest()
    with _LIMITERS_LOCK:
        limiter = _LIMITERS.get((project, limits))
        if limiter is None:
            limiter = _LIMITERS[project, limits] = ProjectLimiter(limits, rest_base_url, project)
        return limiter


class IntervalLimiter:
    """Spaces calls at least ``interval`` seconds apart, across threads (Privacy API: 1/s).

    Each call to :meth:`wait` reserves the next free slot, so the limit holds for retries
    and for requests made from different code paths alike.
    """

    def __init__(
        self,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Start with a free slot."""
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = float("-inf")

    def wait(self) -> None:
        """Block until the next slot, then claim it."""
        with self._lock:
            delay = self._next_slot - self._clock()
            if delay > 0:
                self._sleep(delay)
            self._next_slot = self._clock() + self.interval
