"""Deterministic, realistic Amplitude data for the simulator.

Every hour is generated independently from ``(seed, app_id, hour)`` so any window can be
served without generating the hours before it, and the same :class:`Dataset` always yields
byte-identical rows. Rows follow amplitude-api.md §2.3: all 55 keys on every row, ``null``
for missing values, space-separated timestamps without a zone.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import json
import random
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

HOUR = timedelta(hours=1)
_EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001 - naive UTC, so isoformat() has no zone suffix
_EPOCH_AWARE = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = 1000  # microseconds per millisecond
_SECOND_MS = 1000
_MINUTE_MS = 60 * _SECOND_MS
_HOUR_MS = 60 * _MINUTE_MS
_DAY_MS = 24 * _HOUR_MS

#: The 55 keys of an export row, in the order the simulator writes them (amplitude-api.md §2.3).
EVENT_KEYS: tuple[str, ...] = (
    "$insert_id",
    "$insert_key",
    "$schema",
    "adid",
    "amplitude_attribution_ids",
    "amplitude_event_type",
    "amplitude_id",
    "app",
    "city",
    "client_event_time",
    "client_upload_time",
    "country",
    "data",
    "data_type",
    "device_brand",
    "device_carrier",
    "device_family",
    "device_id",
    "device_manufacturer",
    "device_model",
    "device_type",
    "dma",
    "event_id",
    "event_properties",
    "event_time",
    "event_type",
    "global_user_properties",
    "group_properties",
    "groups",
    "idfa",
    "ip_address",
    "is_attribution_event",
    "language",
    "library",
    "location_lat",
    "location_lng",
    "os_name",
    "os_version",
    "partner_id",
    "paying",
    "plan",
    "platform",
    "processed_time",
    "region",
    "sample_rate",
    "server_received_time",
    "server_upload_time",
    "session_id",
    "source_id",
    "start_version",
    "user_creation_time",
    "user_id",
    "user_properties",
    "uuid",
    "version_name",
)

#: Row keys holding Amplitude timestamps (``YYYY-MM-DD HH:MM:SS[.ffffff]``, UTC, no zone).
TIMESTAMP_KEYS: tuple[str, ...] = (
    "client_event_time",
    "client_upload_time",
    "event_time",
    "processed_time",
    "server_received_time",
    "server_upload_time",
    "user_creation_time",
)

# (name, relative frequency, display name, server-side?) — what events/list reports and
# what rows carry; the last entry never occurs any more, like a retired event.
_EVENT_TYPES: tuple[tuple[str, float, str, bool], ...] = (
    ("page_viewed", 30.0, "Page Viewed", False),
    ("button_clicked", 15.0, "Button Clicked", False),
    ("item_viewed", 10.0, "Item Viewed", False),
    ("search_performed", 8.0, "Search Performed", False),
    ("login", 6.0, "Login", False),
    ("item_added_to_cart", 5.0, "Item Added to Cart", False),
    ("file_uploaded", 3.0, "File Uploaded", False),
    ("signup_started", 2.0, "Signup Started", False),
    ("checkout_started", 2.0, "Checkout Started", False),
    ("settings_updated", 2.0, "Settings Updated", False),
    ("logout", 2.0, "Logout", False),
    ("signup_completed", 1.5, "Signup Completed", False),
    ("purchase_completed", 1.5, "Purchase Completed", False),
    ("subscription_renewed", 1.0, "Subscription Renewed", True),
    ("legacy_export_clicked", 0.0, "[Legacy] Export Clicked", False),
)

_FIRST_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoe",
)  # fmt: skip
_DOMAINS = ("example.com", "example.org", "example.net")

# country, region, city, dma, lat, lng, language, ip prefix (documentation ranges only)
_PLACES: tuple[tuple[str, str, str, str | None, float, float, str, str], ...] = (
    ("United States", "California", "San Francisco", "San Francisco-Oakland-San Jose, CA",
     37.7749, -122.4194, "English", "203.0.113."),
    ("United States", "New York", "New York", "New York, NY",
     40.7128, -74.006, "English", "198.51.100."),
    ("United States", "Texas", "Austin", "Austin, TX", 30.2672, -97.7431, "English", "192.0.2."),
    ("United States", "Washington", "Seattle", "Seattle-Tacoma, WA",
     47.6062, -122.3321, "English", "203.0.113."),
    ("Germany", "Bavaria", "München", None, 48.1351, 11.582, "German", "198.51.100."),
    ("France", "Île-de-France", "Paris", None, 48.8566, 2.3522, "French", "192.0.2."),
    ("United Kingdom", "England", "London", None, 51.5072, -0.1276, "English", "203.0.113."),
    ("Brazil", "São Paulo", "São Paulo", None, -23.5558, -46.6396, "Portuguese", "198.51.100."),
    ("Japan", "Tokyo", "Tokyo", None, 35.6762, 139.6503, "Japanese", "192.0.2."),
    ("India", "Karnataka", "Bengaluru", None, 12.9716, 77.5946, "English", "203.0.113."),
    ("Canada", "Ontario", "Toronto", None, 43.6532, -79.3832, "English", "198.51.100."),
    ("Switzerland", "Zurich", "Zürich", None, 47.3769, 8.5417, "German", "192.0.2."),
    ("Australia", "New South Wales", "Sydney", None, -33.8688, 151.2093, "English", "203.0.113."),
)  # fmt: skip
# Server-side events are located where the sender's servers are.
_SERVER_PLACE = (
    "United States", "Virginia", "Ashburn", "Washington, DC (Hagerstown, MD)",
    39.0438, -77.4874, "English", "",
)  # fmt: skip

_WEB_CLIENTS = (
    ("Chrome", "122", "Mac", "Mac"),
    ("Chrome", "123", "Windows", "Windows"),
    ("Safari", "17.3", "Mac", "Mac"),
    ("Firefox", "124.0", "Linux", "Linux"),
    ("Edge", "122", "Windows", "Windows"),
    ("Chrome", "121", "Chrome OS", "Chrome OS"),
)
_IOS_DEVICES = (
    ("iPhone15,2", "Apple iPhone 14 Pro"),
    ("iPhone14,5", "Apple iPhone 13"),
    ("iPhone16,1", "Apple iPhone 15 Pro"),
    ("iPad13,18", "Apple iPad 10th Gen"),
)
_ANDROID_DEVICES = (
    ("samsung", "SM-S918B", "Samsung Galaxy S23 Ultra"),
    ("Google", "Pixel 8", "Google Pixel 8"),
    ("OnePlus", "CPH2449", "OnePlus 11"),
    ("Xiaomi", "2201116SG", "Xiaomi Redmi Note 11 Pro"),
)
_CARRIERS = ("Verizon", "T-Mobile", "AT&T", "Vodafone", "Deutsche Telekom", "Orange", None)
_PLANS = ("free", "starter", "pro", "enterprise")
_COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark")
_ROLES = ("admin", "member", "viewer", "owner", "billing")
_REFERRERS = ("https://www.google.com/", "https://duckduckgo.com/", "https://t.co/", None, None)
_UTM_SOURCES = ("google", "newsletter", "linkedin", "partner", "twitter", None)
_UTM_CAMPAIGNS = ("spring_launch", "retargeting_q1", "webinar_0314", "brand", None)
_FEATURES = ("editor-v2", "ai", "bulk-export", "sso", "audit")
_PAGES = (
    ("/", "Home"), ("/pricing", "Pricing — Acme"), ("/docs/start", "Getting started"),
    ("/dashboard", "Dashboard"), ("/settings", "Settings"), ("/shoes", "Shoes"),
    ("/blog/launch", "Launch week"),
)  # fmt: skip
_BUTTONS = ("signup", "pricing", "save", "share", "export", "upgrade")
_SEARCHES = ("running shoes", "invoice template", "api keys", "größe 42", "dark mode", "sso setup")
_ITEMS = (("sku-1042", 59.99), ("sku-2210", 129.0), ("sku-0007", 9.5), ("sku-7781", 249.99))
_CURRENCIES = ("USD", "EUR", "GBP")
_EXPERIMENTS = ("exp-204", "exp-311", "exp-415")
_VARIANTS = ("control", "treatment-a", "treatment-b")
_TAGS = ("beta", "mobile", "returning", "intent", "churn", "promo")
_GROUPS = ("c-1042", "c-2077", "c-3001", "c-0420")
_WEB_LIBRARY = "amplitude-ts/2.5.0"

# How often things happen (probabilities), per user or per row.
_P_ADID = 0.4  # Android users with an advertising id
_P_LIGHT_USER = 0.3  # users with a handful of events only
_P_MERGED = 0.15  # users whose id absorbed another (merged_amplitude_ids)
_P_PAYING = 0.35
_P_TRIAL = 0.3  # of the non-paying
_P_LOCATED = 0.6  # mobile users sharing their location
_P_FIRST_VISIT = 0.1
_P_SERVER_SIDE = 0.03  # rows sent through the HTTP API by the customer's servers
_P_CLOCK_SKEW = 0.03  # devices whose clock is off by minutes (event_time gets corrected)
_P_BATCHED = 0.3  # mobile rows uploaded minutes after they happened
_P_NO_FRACTION = 0.05  # rows with one timestamp lacking its fraction ("1 in 20")
_P_GROUPS = 0.3
_P_PROPS_UPDATED = 0.4
_P_TRACKING_PLAN = 0.5
_P_LATE = 0.05  # rows uploaded hours to days after the event (late events)
_P_ANONYMOUS = 0.03  # rows before the user logged in: no user_id
_SERVER_LIBRARY = "http/2.0"


@dataclass(frozen=True)
class Project:
    """The Amplitude project the simulator impersonates, and the keys it accepts."""

    app_id: int = 187520
    api_key: str = "sim-api-key-0123456789"
    secret_key: str = "sim-secret-key-9876543210"  # noqa: S105 - simulator-only key


@dataclass(frozen=True)
class User:
    """The three identifiers Amplitude knows a user by."""

    user_id: str
    device_id: str
    amplitude_id: int


@dataclass(frozen=True)
class Dataset:
    """A deterministic project history; hours are generated lazily and independently.

    ``app_id`` is the project the rows belong to (the ``app`` column, the archive folder);
    :class:`~tap_amplitude.simulator.server.AmplitudeSimulator` aligns it with its
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
        start, end = _utc_hour(self.start, "start"), _utc_hour(self.end, "end")
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
        return _hour_count(self, _utc_hour(hour, "hour"))

    def events_for_hour(self, hour: datetime) -> list[dict[str, Any]]:
        """The rows uploaded in ``hour``, in archive order; ``[]`` for hours without data."""
        return [json.loads(line) for line in hour_lines(self, _utc_hour(hour, "hour")).lines]

    def expected_events(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Every row whose upload hour is in ``[start, end)``, as an export client sees them."""
        first, stop = _utc(start, "start"), _utc(end, "end")
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
        total_weight = sum(weight for _, weight, _, _ in _EVENT_TYPES)
        rng = random.Random(f"amplitude-sim|event-types|{self.seed}|{self.app_id}")  # noqa: S311
        items: list[dict[str, Any]] = []
        for index, (name, weight, display, _) in enumerate(_EVENT_TYPES):
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


def _utc(value: datetime, what: str) -> datetime:
    """An aware datetime in UTC; a naive one is refused rather than guessed at."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got {value!r}")
    return value.astimezone(timezone.utc)


def _utc_hour(value: datetime, what: str) -> datetime:
    """Amplitude hours are UTC and whole; refuse anything else rather than guess."""
    value = _utc(value, what)
    if value.minute or value.second or value.microsecond:
        raise ValueError(f"{what} must be on an hour boundary, got {value.isoformat()}")
    return value


def _ms(value: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (exact, no float rounding)."""
    return (value - _EPOCH_AWARE) // timedelta(milliseconds=1)


def format_timestamp(ms: int, *, fraction: bool = True) -> str:
    """Amplitude's ``YYYY-MM-DD HH:MM:SS.ffffff`` (or without the fraction), UTC, no zone."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.isoformat(" ", "microseconds" if fraction else "seconds")


def _uuid(rng: random.Random) -> str:
    """A version-4 UUID from the seeded stream, so it is unique yet reproducible."""
    # What uuid.UUID(int=..., version=4) does, without its validation (this is a hot path).
    bits = (rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (0x4000 << 64)
_T = TypeVar("_T")


def _between(random_: Callable[[], float], low: int, high: int) -> int:
    """``randint`` in one call frame; the generator draws a dozen of these per row."""
    return low + int(random_() * (high - low + 1))


def _one(random_: Callable[[], float], options: Sequence[_T]) -> _T:
    """``choice`` in one call frame."""
    return options[int(random_() * len(options))]


def _some(random_: Callable[[], float], options: Sequence[_T], most: int) -> list[_T]:
    """Up to ``most`` distinct consecutive options (a cheap stand-in for ``sample``)."""
    first = int(random_() * len(options))
    return list(options[first : first + int(random_() * (most + 1))])


# --------------------------------------------------------------------------------------
# users


@dataclass(frozen=True)
class UserProfile:
    """A user's fixed attributes: ids, device, place, and base user properties."""

    user: User
    index: int
    platform: str
    os_name: str
    os_version: str
    device_family: str
    device_type: str
    device_brand: str | None
    device_manufacturer: str | None
    device_model: str | None
    carrier: str | None
    library: str
    version_name: str | None
    start_version: str | None
    adid: str | None
    place: tuple[str, str, str, str | None, float, float, str, str]
    ip_address: str
    has_location: bool
    created_ms: int
    created_text: str
    last_seen_ms: int
    session_offset_ms: int
    activity_count: int
    merged_amplitude_ids: tuple[int, ...]
    paying: bool
    properties: dict[str, Any] = field(hash=False, compare=False)


@dataclass(frozen=True)
class _Device:
    device_id: str
    os_name: str
    os_version: str
    family: str
    device_type: str
    library: str
    brand: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    carrier: str | None = None
    version_name: str | None = None
    start_version: str | None = None
    adid: str | None = None


def _make_device(rng: random.Random, kind: str) -> _Device:
    """The user's one device: a browser, an iPhone/iPad, or an Android phone."""
    raw = uuid.UUID(int=rng.getrandbits(128), version=4)
    if kind == "Web":
        os_name, os_version, family, device_type = rng.choice(_WEB_CLIENTS)
        return _Device(str(raw), os_name, os_version, family, device_type, _WEB_LIBRARY)
    if kind == "iOS":
        model, device_type = rng.choice(_IOS_DEVICES)
        return _Device(
            device_id=str(raw).upper(),
            os_name="ios",
            os_version=rng.choice(("17.3.1", "17.4", "16.7.5")),
            family="Apple iPad" if model.startswith("iPad") else "Apple iPhone",
            device_type=device_type,
            library="amplitude-swift/1.4.3",
            manufacturer="Apple",
            model=model,
            carrier=rng.choice(_CARRIERS),
            version_name=rng.choice(("4.12.0", "4.11.2")),
            start_version=rng.choice(("3.9.0", "4.2.0")),
        )
    brand, model, device_type = rng.choice(_ANDROID_DEVICES)
    return _Device(
        device_id=f"{raw}R",  # Amplitude's Android SDK marks random device ids with R
        os_name="android",
        os_version=rng.choice(("14", "13", "12")),
        family=device_type,
        device_type=device_type,
        library="amplitude-android-kotlin/1.16.0",
        brand=brand,
        manufacturer=brand,
        model=model,
        carrier=rng.choice(_CARRIERS),
        version_name=rng.choice(("4.12.0", "4.10.1")),
        start_version="4.0.0",
        adid=str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if rng.random() < _P_ADID
        else None,
    )


def _make_profile(dataset: Dataset, index: int) -> UserProfile:
    """Draw one user's attributes from a stream seeded by (seed, app, user index)."""
    rng = random.Random(f"amplitude-sim|user|{dataset.seed}|{dataset.app_id}|{index}")  # noqa: S311
    if index % 3 == 0:
        name = _FIRST_NAMES[(index // 3) % len(_FIRST_NAMES)]
        lap = index // (3 * len(_FIRST_NAMES))
        user_id = f"{name}{'.' + str(lap + 1) if lap else ''}@{_DOMAINS[lap % len(_DOMAINS)]}"
    else:
        user_id = f"user_{index:04d}"
    kind = rng.choices(("Web", "iOS", "Android"), weights=(5, 3, 2))[0]
    device = _make_device(rng, kind)
    place = rng.choice(_PLACES)
    span_ms = max(_ms(dataset.end) - _ms(dataset.start), _HOUR_MS)
    created_ms = _ms(dataset.start) - rng.randrange(4 * _DAY_MS, 400 * _DAY_MS)
    last_seen_ms = _ms(dataset.start) + rng.randrange(span_ms)
    if index == 0:
        activity_count = 2345  # enough to need three pages of useractivity
    elif rng.random() < _P_LIGHT_USER:
        activity_count = rng.randint(1, 9)
    else:
        activity_count = rng.randint(20, 600)
    merged = (rng.randrange(10**11, 10**12),) if rng.random() < _P_MERGED else ()
    paying = rng.random() < _P_PAYING
    plan = rng.choice(_PLANS) if paying else "free"
    properties: dict[str, Any] = {
        "plan": plan,
        "company": rng.choice(_COMPANIES),
        "role": rng.choice(_ROLES),
        "signup": format_timestamp(created_ms)[:10],
        "utm_source": rng.choice(_UTM_SOURCES) or "EMPTY",
        "team_size": rng.choice((1, 3, 8, 12, 45, 230)),
        "features": rng.sample(_FEATURES, rng.randint(0, 2)),
        "locale": rng.choice(("en-US", "en-GB", "de-DE", "fr-FR", "pt-BR", "ja-JP")),
        "theme": rng.choice(("light", "dark")),
        "is_trial": not paying and rng.random() < _P_TRIAL,
        "lifetime_value": round(rng.uniform(0, 2400), 2) if paying else 0,
    }
    if "@" in user_id:
        properties["email"] = user_id
    user = User(user_id, device.device_id, amplitude_id=rng.randrange(10**11, 10**12))
    return UserProfile(
        user=user,
        index=index,
        platform=kind,
        os_name=device.os_name,
        os_version=device.os_version,
        device_family=device.family,
        device_type=device.device_type,
        device_brand=device.brand,
        device_manufacturer=device.manufacturer,
        device_model=device.model,
        carrier=device.carrier,
        library=device.library,
        version_name=device.version_name,
        start_version=device.start_version,
        adid=device.adid,
        place=place,
        ip_address=f"{place[7]}{rng.randint(2, 254)}",
        has_location=kind != "Web" and rng.random() < _P_LOCATED,
        created_ms=created_ms,
        created_text=format_timestamp(created_ms),
        last_seen_ms=last_seen_ms,
        session_offset_ms=rng.randrange(30 * _MINUTE_MS),
        activity_count=activity_count,
        merged_amplitude_ids=merged,
        paying=paying,
        properties=properties,
    )


class _Factory:
    """Per-dataset tables shared by every hour: users, weights, event-type choices."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.profiles = tuple(_make_profile(dataset, i) for i in range(dataset.users))
        self.by_amplitude_id = {p.user.amplitude_id: p for p in self.profiles}
        # A few heavy users and a long tail, like real products.
        weights = [1.0 / (i + 1) ** 0.8 for i in range(dataset.users)]
        self.user_cum = _cumulative(weights)
        active = [entry for entry in _EVENT_TYPES if entry[1] > 0]
        self.event_names = tuple(entry[0] for entry in active)
        self.server_side = frozenset(entry[0] for entry in active if entry[3])
        self.event_cum = _cumulative([entry[1] for entry in active])

    def pick_user(self, rng: random.Random) -> UserProfile:
        return self.profiles[_pick(self.user_cum, rng)]

    def pick_event_type(self, rng: random.Random) -> str:
        return self.event_names[_pick(self.event_cum, rng)]


def _cumulative(weights: list[float]) -> list[float]:
    """Normalised cumulative weights for :func:`_pick`."""
    total = sum(weights)
    running, out = 0.0, []
    for weight in weights:
        running += weight
        out.append(running / total)
    out[-1] = 1.0
    return out


def _pick(cumulative: list[float], rng: random.Random) -> int:
    """Weighted choice with one draw (random.choices rebuilds its table every call)."""
    return bisect.bisect_right(cumulative, rng.random())


@functools.lru_cache(maxsize=32)
def _factory(dataset: Dataset) -> _Factory:
    return _Factory(dataset)


# --------------------------------------------------------------------------------------
# rows


def _event_properties(rng: random.Random, event_type: str) -> dict[str, Any]:
    """Ten to a dozen keys, with a nested object and a list, as product analytics has."""
    r = rng.random
    path, title = _one(r, _PAGES)
    props: dict[str, Any] = {
        "page_path": path,
        "page_title": title,
        "referrer": _one(r, _REFERRERS),
        "utm_source": _one(r, _UTM_SOURCES),
        "duration_ms": _between(r, 15, 45000),
        "is_first_visit": r() < _P_FIRST_VISIT,
        "experiment": {"id": _one(r, _EXPERIMENTS), "variant": _one(r, _VARIANTS)},
        "tags": _some(r, _TAGS, 2),
    }
    if event_type == "search_performed":
        props["query"] = _one(r, _SEARCHES)
        props["results"] = _between(r, 0, 240)
    elif event_type in {"item_viewed", "item_added_to_cart", "checkout_started"}:
        sku, price = _one(r, _ITEMS)
        props["item_id"] = sku
        props["price"] = price
        props["qty"] = _between(r, 1, 3)
    elif event_type in {"purchase_completed", "subscription_renewed"}:
        sku, price = _one(r, _ITEMS)
        props["item_id"] = sku
        props["revenue"] = round(price * _between(r, 1, 3), 2)
        props["currency"] = _one(r, _CURRENCIES)
    else:
        props["button"] = _one(r, _BUTTONS)
        props["viewport"] = _one(r, ("1440x900", "390x844", "1920x1080", "412x915"))
    return props


_PLAN = {"branch": "main", "source": "web", "version": "3"}


def _make_event(  # noqa: PLR0913 - one row: every input matters
    factory: _Factory,
    rng: random.Random,
    profile: UserProfile,
    upload_ms: int,
    *,
    late: bool,
    anonymous: bool = False,
) -> dict[str, Any]:
    """One 55-key export row for ``profile`` whose server upload time is ``upload_ms``."""
    r = rng.random
    event_type = factory.pick_event_type(rng)
    server_side = event_type in factory.server_side or r() < _P_SERVER_SIDE

    received = upload_ms - _between(r, 1, 80)
    skew = _between(r, -600, 600) * _SECOND_MS if r() < _P_CLOCK_SKEW else 0
    client_upload = received - _between(r, 40, 900) + skew
    if late:
        delay = _between(r, _HOUR_MS, 3 * _DAY_MS)
    elif profile.platform != "Web" and r() < _P_BATCHED:
        delay = _between(r, 30 * _SECOND_MS, 10 * _MINUTE_MS)  # mobile SDKs batch uploads
    else:
        delay = _between(r, 150, 30 * _SECOND_MS)
    client_event = client_upload - delay
    correction = received - client_upload
    event_time = client_event + correction if abs(correction) >= _MINUTE_MS else client_event
    processed = upload_ms + _between(r, 300, 6000)
    stamps = [client_event, client_upload, event_time, processed, received, upload_ms]
    formatted = [format_timestamp(ms) for ms in stamps]
    creation = profile.created_text
    if r() < _P_NO_FRACTION:  # real exports sometimes drop the fraction from one timestamp
        which = _between(r, 0, len(stamps))
        if which == len(stamps):
            creation = profile.created_text[:19]
        else:
            formatted[which] = format_timestamp(stamps[which], fraction=False)

    place = _SERVER_PLACE if server_side else profile.place
    user_properties = dict(profile.properties)
    user_properties["sessions"] = _between(r, 1, 400)
    groups: dict[str, Any] = {}
    group_properties: dict[str, Any] = {}
    if r() < _P_GROUPS:
        group = _one(r, _GROUPS)
        groups = {"company_id": [group]}
        group_properties = {
            "company_id": {group: {"plan": _one(r, _PLANS), "seats": _between(r, 2, 500)}}
        }
    path = "/2/httpapi" if server_side or profile.platform == "Web" else "/batch"
    mobile = not server_side and profile.platform != "Web"
    located = mobile and profile.has_location
    return {
        "$insert_id": _uuid(rng),
        "$insert_key": None,
        "$schema": None,
        "adid": profile.adid if mobile else None,
        "amplitude_attribution_ids": None,
        "amplitude_event_type": None,
        "amplitude_id": profile.user.amplitude_id,
        "app": factory.dataset.app_id,
        "city": place[2],
        "client_event_time": formatted[0],
        "client_upload_time": formatted[1],
        "country": place[0],
        "data": {
            "path": path,
            "user_properties_updated": r() < _P_PROPS_UPDATED,
            "group_first_event": {},
            "group_ids": {},
        },
        "data_type": "event",
        "device_brand": profile.device_brand if mobile else None,
        "device_carrier": profile.carrier if mobile else None,
        "device_family": None if server_side else profile.device_family,
        "device_id": profile.user.device_id,
        "device_manufacturer": profile.device_manufacturer if mobile else None,
        "device_model": profile.device_model if mobile else None,
        "device_type": None if server_side else profile.device_type,
        "dma": place[3],
        "event_id": _between(r, 1, 9999),
        "event_properties": _event_properties(rng, event_type),
        "event_time": formatted[2],
        "event_type": event_type,
        "global_user_properties": None,
        "group_properties": group_properties,
        "groups": groups,
        "idfa": None,
        "ip_address": None if server_side else profile.ip_address,
        "is_attribution_event": None,
        "language": place[6],
        "library": _SERVER_LIBRARY if server_side else profile.library,
        "location_lat": round(place[4] + r() * 0.01, 6) if located else None,
        "location_lng": round(place[5] + r() * 0.01, 6) if located else None,
        "os_name": None if server_side else profile.os_name,
        "os_version": None if server_side else profile.os_version,
        "partner_id": None,
        "paying": True if profile.paying else None,
        "plan": dict(_PLAN) if r() < _P_TRACKING_PLAN else {},
        "platform": None if server_side else profile.platform,
        "processed_time": formatted[3],
        "region": place[1],
        "sample_rate": None,
        "server_received_time": formatted[4],
        "server_upload_time": formatted[5],
        "session_id": -1 if server_side else _session_start(profile, client_event),
        "source_id": None,
        "start_version": profile.start_version if mobile else None,
        "user_creation_time": creation,
        "user_id": None if anonymous else profile.user.user_id,
        "user_properties": user_properties,
        "uuid": _uuid(rng),
        "version_name": profile.version_name if mobile else None,
    }


def _session_start(profile: UserProfile, client_event_ms: int) -> int:
    """A session id shared by the user's events in the same half hour, without state."""
    return client_event_ms - (client_event_ms + profile.session_offset_ms) % _SESSION_MS


_SESSION_MS = 30 * _MINUTE_MS
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _dumps(event: dict[str, Any]) -> bytes:
    """Compact JSON with raw UTF-8, one line, as the export files hold it."""
    return _ENCODER.encode(event).encode()


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
    base = _ms(hour)
    draw = rng.random
    uploads = sorted(base + int(draw() * _HOUR_MS) for _ in range(count))
    rows = [
        _dumps(
            _make_event(
                factory,
                rng,
                factory.pick_user(rng),
                upload,
                late=draw() < _P_LATE,
                anonymous=draw() < _P_ANONYMOUS,
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
    factory = _factory(dataset)
    uploads: list[int] = []
    moment = profile.last_seen_ms
    for position in range(profile.activity_count):
        uploads.append(moment)
        # Sessions of events seconds apart, separated by hours or days.
        gap = rng.randint(4, 240) * _SECOND_MS
        if position % rng.randint(5, 25) == 0:
            gap += rng.randint(2 * _HOUR_MS, 3 * _DAY_MS)
        moment -= gap
    lines = tuple(
        _dumps(_make_event(factory, rng, profile, upload, late=False)) for upload in uploads
    )
    _ACTIVITY_CACHE.put(key, lines, sum(map(len, lines)))
    return lines
