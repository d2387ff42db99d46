"""The tables the simulated data is drawn from, and the primitives that draw from them.

Everything here is fixed: names, places, devices, products, how often things happen
(probabilities) and Amplitude's timestamp format. :mod:`.users` and :mod:`.events` combine
them into users and rows; :mod:`.dataset` indexes those by hour.
"""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Sequence

HOUR = timedelta(hours=1)
EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001 - naive UTC, so isoformat() has no zone suffix
EPOCH_AWARE = datetime(1970, 1, 1, tzinfo=timezone.utc)
MS = 1000  # microseconds per millisecond
SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

#: The 55 keys of an export row, in the simulator's order (docs/amplitude-api.md §2.3).
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
EVENT_TYPES: tuple[tuple[str, float, str, bool], ...] = (
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

FIRST_NAMES = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoe",
)  # fmt: skip
DOMAINS = ("example.com", "example.org", "example.net")

# country, region, city, dma, lat, lng, language, ip prefix (documentation ranges only)
PLACES: tuple[tuple[str, str, str, str | None, float, float, str, str], ...] = (
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
SERVER_PLACE = (
    "United States", "Virginia", "Ashburn", "Washington, DC (Hagerstown, MD)",
    39.0438, -77.4874, "English", "",
)  # fmt: skip

WEB_CLIENTS = (
    ("Chrome", "122", "Mac", "Mac"),
    ("Chrome", "123", "Windows", "Windows"),
    ("Safari", "17.3", "Mac", "Mac"),
    ("Firefox", "124.0", "Linux", "Linux"),
    ("Edge", "122", "Windows", "Windows"),
    ("Chrome", "121", "Chrome OS", "Chrome OS"),
)
IOS_DEVICES = (
    ("iPhone15,2", "Apple iPhone 14 Pro"),
    ("iPhone14,5", "Apple iPhone 13"),
    ("iPhone16,1", "Apple iPhone 15 Pro"),
    ("iPad13,18", "Apple iPad 10th Gen"),
)
ANDROID_DEVICES = (
    ("samsung", "SM-S918B", "Samsung Galaxy S23 Ultra"),
    ("Google", "Pixel 8", "Google Pixel 8"),
    ("OnePlus", "CPH2449", "OnePlus 11"),
    ("Xiaomi", "2201116SG", "Xiaomi Redmi Note 11 Pro"),
)
CARRIERS = ("Verizon", "T-Mobile", "AT&T", "Vodafone", "Deutsche Telekom", "Orange", None)
PLANS = ("free", "starter", "pro", "enterprise")
COMPANIES = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark")
ROLES = ("admin", "member", "viewer", "owner", "billing")
REFERRERS = ("https://www.google.com/", "https://duckduckgo.com/", "https://t.co/", None, None)
UTM_SOURCES = ("google", "newsletter", "linkedin", "partner", "twitter", None)
UTM_CAMPAIGNS = ("spring_launch", "retargeting_q1", "webinar_0314", "brand", None)
FEATURES = ("editor-v2", "ai", "bulk-export", "sso", "audit")
PAGES = (
    ("/", "Home"), ("/pricing", "Pricing — Acme"), ("/docs/start", "Getting started"),
    ("/dashboard", "Dashboard"), ("/settings", "Settings"), ("/shoes", "Shoes"),
    ("/blog/launch", "Launch week"),
)  # fmt: skip
BUTTONS = ("signup", "pricing", "save", "share", "export", "upgrade")
SEARCHES = ("running shoes", "invoice template", "api keys", "größe 42", "dark mode", "sso setup")
ITEMS = (("sku-1042", 59.99), ("sku-2210", 129.0), ("sku-0007", 9.5), ("sku-7781", 249.99))
CURRENCIES = ("USD", "EUR", "GBP")
EXPERIMENTS = ("exp-204", "exp-311", "exp-415")
VARIANTS = ("control", "treatment-a", "treatment-b")
TAGS = ("beta", "mobile", "returning", "intent", "churn", "promo")
GROUPS = ("c-1042", "c-2077", "c-3001", "c-0420")
WEB_LIBRARY = "amplitude-ts/2.5.0"

# How often things happen (probabilities), per user or per row.
P_ADID = 0.4  # Android users with an advertising id
P_LIGHT_USER = 0.3  # users with a handful of events only
P_MERGED = 0.15  # users whose id absorbed another (merged_amplitude_ids)
P_PAYING = 0.35
P_TRIAL = 0.3  # of the non-paying
P_LOCATED = 0.6  # mobile users sharing their location
P_FIRST_VISIT = 0.1
P_SERVER_SIDE = 0.03  # rows sent through the HTTP API by the customer's servers
P_CLOCK_SKEW = 0.03  # devices whose clock is off by minutes (event_time gets corrected)
P_BATCHED = 0.3  # mobile rows uploaded minutes after they happened
P_NO_FRACTION = 0.05  # rows with one timestamp lacking its fraction ("1 in 20")
P_GROUPS = 0.3
P_PROPS_UPDATED = 0.4
P_TRACKING_PLAN = 0.5
P_LATE = 0.05  # rows uploaded hours to days after the event (late events)
P_ANONYMOUS = 0.03  # rows before the user logged in: no user_id
SERVER_LIBRARY = "http/2.0"


def utc(value: datetime, what: str) -> datetime:
    """An aware datetime in UTC; a naive one is refused rather than guessed at."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got {value!r}")
    return value.astimezone(timezone.utc)


def utc_hour(value: datetime, what: str) -> datetime:
    """Amplitude hours are UTC and whole; refuse anything else rather than guess."""
    value = utc(value, what)
    if value.minute or value.second or value.microsecond:
        raise ValueError(f"{what} must be on an hour boundary, got {value.isoformat()}")
    return value


def to_ms(value: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (exact, no float rounding)."""
    return (value - EPOCH_AWARE) // timedelta(milliseconds=1)


def epoch_ms(value: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    return to_ms(utc(value, "value"))


def parse_timestamp_ms(text: str) -> int:
    """An Amplitude timestamp (zone-less UTC, with or without fraction) as epoch ms."""
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(milliseconds=1)


#: Rows whose ``event_time`` is this close after their upload keep the device's time (§2.3).
FUTURE_TOLERANCE_MS = MINUTE_MS


def visible(event: dict[str, Any], now_ms: int) -> bool:
    """Whether Amplitude reports ``event`` at ``now_ms``: it was uploaded and has happened."""
    return (
        parse_timestamp_ms(event["server_upload_time"]) <= now_ms
        and parse_timestamp_ms(event["event_time"]) <= now_ms
    )


def format_timestamp(ms: int, *, fraction: bool = True) -> str:
    """Amplitude's ``YYYY-MM-DD HH:MM:SS.ffffff`` (or without the fraction), UTC, no zone."""
    moment = EPOCH + timedelta(milliseconds=ms)
    return moment.isoformat(" ", "microseconds" if fraction else "seconds")


def random_uuid(rng: random.Random) -> str:
    """A version-4 UUID from the seeded stream, so it is unique yet reproducible."""
    # What uuid.UUID(int=..., version=4) does, without its validation (this is a hot path).
    bits = (rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET
    text = f"{bits:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (0x4000 << 64)
_T = TypeVar("_T")


def between(random_: Callable[[], float], low: int, high: int) -> int:
    """``randint`` in one call frame; the generator draws a dozen of these per row."""
    return low + int(random_() * (high - low + 1))


def one(random_: Callable[[], float], options: Sequence[_T]) -> _T:
    """``choice`` in one call frame."""
    return options[int(random_() * len(options))]


def some(random_: Callable[[], float], options: Sequence[_T], most: int) -> list[_T]:
    """Up to ``most`` distinct consecutive options (a cheap stand-in for ``sample``)."""
    first = int(random_() * len(options))
    return list(options[first : first + int(random_() * (most + 1))])


def cumulative(weights: list[float]) -> list[float]:
    """Normalised cumulative weights for :func:`pick`."""
    total = sum(weights)
    running, out = 0.0, []
    for weight in weights:
        running += weight
        out.append(running / total)
    out[-1] = 1.0
    return out


def pick(cumulative: list[float], rng: random.Random) -> int:
    """Weighted choice with one draw (random.choices rebuilds its table every call)."""
    return bisect.bisect_right(cumulative, rng.random())
