"""Per-simulator settings: the switches tests and demos turn, and the state they govern.

Each :class:`~amplitude_simulator.server.AmplitudeSimulator` holds one of each
(``sim.export``, ``sim.analytics``, ``sim.deletions``; rate limits are ``sim.limits`` and
injected faults ``sim.faults``). Nothing is kept in module globals, so simulators running side
by side never share anything but the (immutable) generated data.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, timedelta, timezone, tzinfo
from http import HTTPStatus
from typing import Any

#: Exports estimated bigger than this are written to a temporary file and streamed.
SPOOL_THRESHOLD_BYTES = 4 << 20

MB = 1_000_000  # the network model counts decimal megabytes (and megabits: 10**6 bits)


@dataclass
class NetworkSettings:
    """A latency model for ``/api/2/export``: Amplitude builds the zip, then it crosses a WAN.

    * **Time to first byte** = ``ttfb_base_seconds + ttfb_seconds_per_mb × archive MB``
      (decimal MB of the zip). It counts from the moment the export handler starts, so the
      simulator's own time spent building the archive is part of it, not added to it. The
      handler thread of that one request sleeps (one thread per connection); the request
      holds its concurrency slot (``sim.limits``) meanwhile, as a request Amplitude is
      working on.
    * **Bandwidth**: at most ``bandwidth_bytes_per_second`` per response, paced in chunks
      while the body streams, so N concurrent downloads get N times the throughput of one.

    Only successful archives (200 with a zip) are slowed; 400/404/504 answers and injected
    ``status``/``not_zip`` faults stay immediate. A ``delay`` fault adds to the TTFB; a
    ``truncated`` body is paced too. Everything is off by default (``NetworkSettings()``), so
    tests run at full speed unless they ask; :meth:`preset` gives the documented presets.
    """

    #: Seconds before the first byte of any archive (0: none).
    ttfb_base_seconds: float = 0.0
    #: Seconds more per decimal MB of archive (0: TTFB does not grow with the data).
    ttfb_seconds_per_mb: float = 0.0
    #: Bytes per second per response (``None`` or 0: as fast as the loopback goes).
    bandwidth_bytes_per_second: float | None = None

    @classmethod
    def preset(cls, name: str) -> NetworkSettings:
        """A fresh copy of one of :data:`NETWORK_PRESETS` (``off``, ``amplitude``, ``slow``)."""
        try:
            base, per_mb, mbit = NETWORK_PRESETS[name]
        except KeyError:
            known = ", ".join(NETWORK_PRESETS)
            raise ValueError(f"unknown network preset {name!r} (known: {known})") from None
        return cls(base, per_mb, mbit * MB / 8 if mbit else None)

    @property
    def enabled(self) -> bool:
        """Whether any part of the model slows answers down."""
        return bool(self.ttfb_base_seconds or self.ttfb_seconds_per_mb or self.bandwidth)

    @property
    def bandwidth(self) -> float | None:
        """The per-response cap in bytes per second, ``None`` when uncapped."""
        rate = self.bandwidth_bytes_per_second
        return float(rate) if rate else None

    def ttfb_seconds(self, body_bytes: int) -> float:
        """Time to first byte for an archive of ``body_bytes``."""
        return max(0.0, self.ttfb_base_seconds + self.ttfb_seconds_per_mb * body_bytes / MB)

    def describe(self) -> str:
        """One line for logs and the CLI banner."""
        if not self.enabled:
            return "network model off"
        rate = self.bandwidth
        cap = "uncapped" if rate is None else f"{rate * 8 / MB:g} Mbit/s per connection"
        return (
            f"export TTFB {self.ttfb_base_seconds:g} s + {self.ttfb_seconds_per_mb:g} s/MB, {cap}"
        )


#: Presets as ``(ttfb_base_seconds, ttfb_seconds_per_mb, bandwidth in Mbit/s or 0)``.
#: Amplitude publishes no latency figures; these are estimates from users' reports
#: (docs/amplitude-api.md §2.5 and §9, ../shared/reference/peers.md): a 3-day window of a
#: small project took ~10 s with curl (airbytehq/airbyte#13496), peers set 120–600 s read
#: timeouts and big windows end in 504s. ``amplitude`` is a well-connected machine in the
#: same region; ``slow`` a distant or congested link.
NETWORK_PRESETS: dict[str, tuple[float, float, float]] = {
    "off": (0.0, 0.0, 0.0),
    "amplitude": (4.0, 0.5, 40.0),
    "slow": (10.0, 2.0, 8.0),
}


@dataclass
class ExportSettings:
    """How ``/api/2/export`` answers (docs/amplitude-api.md §2)."""

    #: Hours Amplitude needs before an upload hour can be exported.
    lag_hours: int = 2
    #: More events than this in the window: 400 "too large" (``None``: no limit).
    max_events: int | None = None
    #: Windows of more hours than this: 504 Gateway Timeout (``None``: never).
    timeout_hours: int | None = None
    #: Add the ``<app>_<day>_<hour>_complete`` marker entries the S3 export writes.
    include_marker: bool = False
    #: Archives estimated above this many bytes are spooled to a temporary file (0: always).
    spool_threshold_bytes: int = SPOOL_THRESHOLD_BYTES
    #: Time to first byte and bandwidth per connection (off by default; see NetworkSettings).
    network: NetworkSettings = field(default_factory=NetworkSettings)


@dataclass
class AnalyticsSettings:
    """How the simulated project answers the chart and cohort endpoints.

    Switches reproduce what real projects do: no Behavioral Cohorts add-on
    (``cohorts_addon``), a group-by the project refuses (``group_by_supported``, the 400 of
    airbytehq/airbyte#46712).
    """

    #: False: ``/api/3/cohorts`` is refused, as for a plan without the add-on.
    cohorts_addon: bool = True
    #: Status of that refusal (403 or 400; Amplitude does not document which).
    cohorts_refusal_status: int = HTTPStatus.FORBIDDEN
    #: False: any ``g=`` group-by gets 400 ``Invalid chart definition``.
    group_by_supported: bool = True
    #: The project's time zone: the days of every chart, and what "today" is.
    timezone: tzinfo = field(default=timezone.utc)


JOB_DELAY_DAYS = 7  # a new job runs this many days after the request
LOCK_DAYS = 3  # a job is locked ("submitted") this many days before it runs
SCRUB_DAYS = 1  # the scrub finishes the day after the job runs
BACKUP_DAYS = 5  # then Amplitude waits for backups to clear before "done"


@dataclass
class Job:
    """One project's deletion job for one day.

    Once ``done``, its users are gone from user search, the Profile API, DSAR outputs and
    the Export API's rows uploaded before ``day`` (``erases``); the jobs a fresh simulator is
    seeded with do not erase, so every test dataset keeps all its users.
    """

    day: date
    entries: list[dict[str, Any]] = field(default_factory=list)
    erases: bool = True

    def status(self, today: date) -> str:
        """The status on ``today``: staging, then submitted, then done."""
        if today < self.day - timedelta(days=LOCK_DAYS):
            return "staging"
        if today < self.day + timedelta(days=SCRUB_DAYS + BACKUP_DAYS):
            return "submitted"
        return "done"

    def scrub_done(self, today: date) -> str | None:
        """The day the data became inaccessible, once it has."""
        scrubbed = self.day + timedelta(days=SCRUB_DAYS)
        return scrubbed.isoformat() if today >= scrubbed else None


@dataclass
class DeletionSettings:
    """The deletion API (docs/amplitude-api.md §8): its rate limit, jobs and accepted bodies.

    Set ``last_served = None`` to let the next request through at once (the limit itself
    stays), or ``min_interval_seconds = 0`` to turn the limit off.
    """

    #: At most one request per this many seconds, across every method of the endpoint.
    min_interval_seconds: float = 1.0
    #: A new job runs this many days after the request (Amplitude's rule is undocumented;
    #: its 2018 draft shows 9, docs/amplitude-api.md §17.3).
    job_delay_days: int = JOB_DELAY_DAYS
    #: Jobs by the day they run; a fresh simulator holds a done and a submitted one.
    jobs: dict[date, Job] = field(default_factory=dict)
    #: Every accepted request body, oldest first.
    bodies: list[dict[str, Any]] = field(default_factory=list)
    #: ``time.monotonic()`` of the last request served (``None``: none yet).
    last_served: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def erased(self, today: date) -> set[int]:
        """Amplitude ids whose deletion job is ``done`` on ``today``: lookups find nothing."""
        return set(self.erasures(today))

    def erasures(self, today: date) -> dict[int, date]:
        """Those ids and the day their job ran: their events uploaded before it are gone."""
        with self.lock:
            found: dict[int, date] = {}
            for job in self.jobs.values():
                if job.erases and job.status(today) == "done":
                    for entry in job.entries:
                        amplitude_id = int(entry["amplitude_id"])
                        found[amplitude_id] = max(job.day, found.get(amplitude_id, job.day))
            return found


@dataclass
class DsarRequest:
    """One DSAR request (docs/amplitude-api.md §14.3) and where it is in its lifecycle."""

    request_id: int
    user_id: str | None
    amplitude_id: int | None
    start: date
    end: date
    #: Status reads so far; the status moves on every ``DsarSettings.polls_per_state`` reads.
    polls: int = 0
    fail_reason: str | None = None
    #: The day it became ``done`` (outputs expire ``DsarSettings.expires_days`` later).
    done_on: date | None = None
    #: Gzip JSON-lines bodies of the outputs, fixed when the request is done.
    outputs: list[bytes] = field(default_factory=list)


@dataclass
class DsarSettings:
    """The DSAR API (docs/amplitude-api.md §14): keys, lifecycle, outputs and cost budget.

    The lifecycle runs on status reads rather than on days, so tests finish in seconds: a
    request is ``staging`` for ``polls_per_state`` reads, ``submitted`` for as many more,
    then ``done`` (or ``failed`` with ``fail_reason`` if that is set when it is created).
    """

    #: The organisation's key pair, which the DSAR API always accepts.
    org_api_key: str = "sim-org-api-key-1357913579"
    org_secret_key: str = "sim-org-secret-key-2468024680"  # noqa: S105 - simulator-only key
    #: True: project keys are refused with ``refusal_status`` (§14.2 leaves it open).
    refuse_project_keys: bool = False
    refusal_status: int = HTTPStatus.FORBIDDEN
    #: Status reads a request spends in ``staging``, then in ``submitted``.
    polls_per_state: int = 1
    #: Set: requests created from now on end ``failed`` with this ``failReason``.
    fail_reason: str | None = None
    #: Outputs can be downloaded until this many days after the request is done (§14.5).
    expires_days: int = 2
    #: Pre-signed download links work for this many seconds after they are handed out.
    link_ttl_seconds: float = 300.0
    #: The next this many downloads are damaged gzip (a bad CRC), as a flaky store would serve.
    corrupt_downloads: int = 0
    #: Cost budget shared by every DSAR endpoint: POST costs 8, GET 1 (§14.5).
    cost_per_window: int = 14_400
    window_seconds: float = 3600.0
    #: Requests by id, and the id the next one gets.
    requests: dict[int, DsarRequest] = field(default_factory=dict)
    next_id: int = 53367
    #: ``(time.monotonic(), cost)`` of what the budget admitted, oldest first.
    spent: list[tuple[float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


@dataclass
class UserMapSettings:
    """User mapping (docs/amplitude-api.md §15): which user id maps into which global one.

    A fresh simulator maps the dataset's fourth user into its first, when it has five or
    more users, so the lookup has something to find.
    """

    #: ``user_id`` → the ``global_user_id`` it is mapped into.
    mappings: dict[str, str] = field(default_factory=dict)
    #: True: answers are wrapped in ``{"mappings": ...}``, as the doc's table (not its
    #: example) shows.
    wrap_in_mappings: bool = False


@dataclass
class TaxonomySettings:
    """The Taxonomy API (docs/amplitude-api.md §10): plan, limits and the 429 beyond them.

    The limits are per API key: at most ``max_in_flight`` cost at the same time and
    ``cost_per_window`` per ``window_seconds`` (a GET costs 1).
    """

    #: False: the project's plan lacks the Taxonomy API; every route answers ``refusal_status``.
    enterprise: bool = True
    #: 404 as the docs say (its "404 Bad Request"); 403 as for a non-primary environment's keys.
    refusal_status: int = HTTPStatus.NOT_FOUND
    max_in_flight: int = 4
    cost_per_window: int = 7200
    window_seconds: float = 3600.0
    #: ``time.monotonic()`` of every admitted request, oldest first, and those in flight.
    spent: list[float] = field(default_factory=list)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


@dataclass
class CohortJob:
    """One asynchronous cohort export (docs/amplitude-api.md §11.2)."""

    request_id: str
    cohort_id: str
    prop_keys: tuple[str, ...] | None  # None: no properties; (): every property
    created: float  # time.time()
    polls: int = 0
    done: bool = False


@dataclass
class CohortExportSettings:
    """Cohort download (docs/amplitude-api.md §11): jobs, quota, redirects, revisions.

    A job answers ``JOB INPROGRESS`` (202) for its first ``polls_in_progress`` status reads,
    and for as long as its cohort is in ``computing``. Files of cohorts with more members
    than ``inline_max_members`` come by a 302 to a pre-signed link on this server.
    """

    #: Step-1 requests allowed per calendar month (UTC) and those used so far.
    monthly_quota: int = 500
    used_this_month: int = 0
    #: Step-1 requests per ``rate_window_seconds`` (Amplitude: 60 per 10 minutes).
    requests_per_window: int = 60
    rate_window_seconds: float = 600.0
    polls_in_progress: int = 1
    #: Cohort ids whose jobs stay ``JOB INPROGRESS`` until removed from the set.
    computing: set[str] = field(default_factory=set)
    #: Bigger cohorts are served by a 302 to ``/cohort-downloads/…`` (0: always a redirect).
    inline_max_members: int = 1000
    #: Pre-signed links work this many seconds; the ``/file`` link this many days.
    link_ttl_seconds: float = 60.0
    job_ttl_days: int = 7
    #: The next this many pre-signed links are handed out already expired (S3's 403).
    expired_links: int = 0
    #: Header prefix of custom user-property columns (Amplitude's is undocumented).
    property_prefix: str = "gp:"
    #: Cohort id → revision: each one moves ``lastMod``/``lastComputed`` and changes members.
    revisions: dict[str, int] = field(default_factory=dict)
    #: Cohort id → synthetic members added to the real ones (for large-cohort tests).
    extra_members: dict[str, int] = field(default_factory=dict)
    #: True: ``/api/3/cohorts`` gives its times in epoch milliseconds (§11.5), not seconds.
    epoch_ms: bool = False
    jobs: dict[str, CohortJob] = field(default_factory=dict)
    requested: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


@dataclass
class AnnotationSettings:
    """Chart annotations v2 and v3 and their categories (docs/amplitude-api.md §12).

    One store serves both versions; it is seeded from the dataset on first use.
    """

    #: Set: every ``/api/2/annotations`` request answers this status (404 or 410).
    v2_status: int | None = None
    #: Set: every ``/api/3/annotations…`` and ``/api/3/annotation-categories…`` request
    #: answers this status (e.g. 404 where v3 is not offered).
    v3_status: int | None = None
    #: True: category objects use ``category`` instead of ``name`` everywhere (§12.2).
    category_key_is_category: bool = False
    annotations: dict[int, dict[str, Any]] | None = None
    categories: dict[int, str] | None = None
    next_id: int = 170_000
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


@dataclass
class ChartSettings:
    """Saved-chart results (docs/amplitude-api.md §13)."""

    #: True: ``/csv`` answers bare ``text/csv`` rather than JSON holding a CSV string.
    csv_bare: bool = False
    #: Set: ``/query`` answers this status for every chart (as if retired in favour of /csv).
    query_status: int | None = None
