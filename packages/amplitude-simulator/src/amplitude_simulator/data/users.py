"""The project's users: their ids, device, place and fixed user properties.

Each user is drawn from its own stream, seeded by ``(seed, app_id, user index)``, so a user
is the same whatever else the dataset holds.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amplitude_simulator.data.values import (
    ANDROID_DEVICES,
    CARRIERS,
    COMPANIES,
    DAY_MS,
    DOMAINS,
    FEATURES,
    FIRST_NAMES,
    HOUR_MS,
    IOS_DEVICES,
    MINUTE_MS,
    P_ADID,
    P_LIGHT_USER,
    P_LOCATED,
    P_MERGED,
    P_PAYING,
    P_TRIAL,
    PLACES,
    PLANS,
    ROLES,
    UTM_SOURCES,
    WEB_CLIENTS,
    WEB_LIBRARY,
    format_timestamp,
    to_ms,
)

if TYPE_CHECKING:
    from datetime import datetime


@dataclass(frozen=True)
class User:
    """The three identifiers Amplitude knows a user by."""

    user_id: str
    device_id: str
    amplitude_id: int


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
        os_name, os_version, family, device_type = rng.choice(WEB_CLIENTS)
        return _Device(str(raw), os_name, os_version, family, device_type, WEB_LIBRARY)
    if kind == "iOS":
        model, device_type = rng.choice(IOS_DEVICES)
        return _Device(
            device_id=str(raw).upper(),
            os_name="ios",
            os_version=rng.choice(("17.3.1", "17.4", "16.7.5")),
            family="Apple iPad" if model.startswith("iPad") else "Apple iPhone",
            device_type=device_type,
            library="amplitude-swift/1.4.3",
            manufacturer="Apple",
            model=model,
            carrier=rng.choice(CARRIERS),
            version_name=rng.choice(("4.12.0", "4.11.2")),
            start_version=rng.choice(("3.9.0", "4.2.0")),
        )
    brand, model, device_type = rng.choice(ANDROID_DEVICES)
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
        carrier=rng.choice(CARRIERS),
        version_name=rng.choice(("4.12.0", "4.10.1")),
        start_version="4.0.0",
        adid=str(uuid.UUID(int=rng.getrandbits(128), version=4)) if rng.random() < P_ADID else None,
    )


def make_profile(seed: int, app_id: int, start: datetime, end: datetime, index: int) -> UserProfile:
    """Draw one user's attributes from a stream seeded by (seed, app, user index)."""
    rng = random.Random(f"amplitude-sim|user|{seed}|{app_id}|{index}")  # noqa: S311
    if index % 3 == 0:
        name = FIRST_NAMES[(index // 3) % len(FIRST_NAMES)]
        lap = index // (3 * len(FIRST_NAMES))
        user_id = f"{name}{'.' + str(lap + 1) if lap else ''}@{DOMAINS[lap % len(DOMAINS)]}"
    else:
        user_id = f"user_{index:04d}"
    kind = rng.choices(("Web", "iOS", "Android"), weights=(5, 3, 2))[0]
    device = _make_device(rng, kind)
    place = rng.choice(PLACES)
    span_ms = max(to_ms(end) - to_ms(start), HOUR_MS)
    created_ms = to_ms(start) - rng.randrange(4 * DAY_MS, 400 * DAY_MS)
    last_seen_ms = to_ms(start) + rng.randrange(span_ms)
    if index == 0:
        activity_count = 2345  # enough to need three pages of useractivity
    elif rng.random() < P_LIGHT_USER:
        activity_count = rng.randint(1, 9)
    else:
        activity_count = rng.randint(20, 600)
    merged = (rng.randrange(10**11, 10**12),) if rng.random() < P_MERGED else ()
    paying = rng.random() < P_PAYING
    plan = rng.choice(PLANS) if paying else "free"
    properties: dict[str, Any] = {
        "plan": plan,
        "company": rng.choice(COMPANIES),
        "role": rng.choice(ROLES),
        "signup": format_timestamp(created_ms)[:10],
        "utm_source": rng.choice(UTM_SOURCES) or "EMPTY",
        "team_size": rng.choice((1, 3, 8, 12, 45, 230)),
        "features": rng.sample(FEATURES, rng.randint(0, 2)),
        "locale": rng.choice(("en-US", "en-GB", "de-DE", "fr-FR", "pt-BR", "ja-JP")),
        "theme": rng.choice(("light", "dark")),
        "is_trial": not paying and rng.random() < P_TRIAL,
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
        has_location=kind != "Web" and rng.random() < P_LOCATED,
        created_ms=created_ms,
        created_text=format_timestamp(created_ms),
        last_seen_ms=last_seen_ms,
        session_offset_ms=rng.randrange(30 * MINUTE_MS),
        activity_count=activity_count,
        merged_amplitude_ids=merged,
        paying=paying,
        properties=properties,
    )
