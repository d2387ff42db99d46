"""Export rows: one 55-key event for a user at an upload time, drawn from a seeded stream.

Rows follow docs/amplitude-api.md §2.3: every key present (``null`` for missing values),
space-separated timestamps without a zone, nested property bags.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from amplitude_simulator.data.values import (
    BUTTONS,
    CURRENCIES,
    DAY_MS,
    EVENT_TYPES,
    EXPERIMENTS,
    GROUPS,
    HOUR_MS,
    ITEMS,
    MINUTE_MS,
    P_BATCHED,
    P_CLOCK_SKEW,
    P_FIRST_VISIT,
    P_GROUPS,
    P_NO_FRACTION,
    P_PROPS_UPDATED,
    P_SERVER_SIDE,
    P_TRACKING_PLAN,
    PAGES,
    PLANS,
    REFERRERS,
    SEARCHES,
    SECOND_MS,
    SERVER_LIBRARY,
    SERVER_PLACE,
    TAGS,
    UTM_SOURCES,
    VARIANTS,
    between,
    cumulative,
    format_timestamp,
    one,
    pick,
    random_uuid,
    some,
)

if TYPE_CHECKING:
    import random

    from amplitude_simulator.data.users import UserProfile


class _EventTypes:
    """The event types that still occur, weighted, and which of them servers send."""

    def __init__(self) -> None:
        active = [entry for entry in EVENT_TYPES if entry[1] > 0]
        self.names = tuple(entry[0] for entry in active)
        self.server_side = frozenset(entry[0] for entry in active if entry[3])
        self.cumulative = cumulative([entry[1] for entry in active])

    def pick(self, rng: random.Random) -> str:
        return self.names[pick(self.cumulative, rng)]


_TYPES = _EventTypes()


def _event_properties(rng: random.Random, event_type: str) -> dict[str, Any]:
    """Ten to a dozen keys, with a nested object and a list, as product analytics has."""
    r = rng.random
    path, title = one(r, PAGES)
    props: dict[str, Any] = {
        "page_path": path,
        "page_title": title,
        "referrer": one(r, REFERRERS),
        "utm_source": one(r, UTM_SOURCES),
        "duration_ms": between(r, 15, 45000),
        "is_first_visit": r() < P_FIRST_VISIT,
        "experiment": {"id": one(r, EXPERIMENTS), "variant": one(r, VARIANTS)},
        "tags": some(r, TAGS, 2),
    }
    if event_type == "search_performed":
        props["query"] = one(r, SEARCHES)
        props["results"] = between(r, 0, 240)
    elif event_type in {"item_viewed", "item_added_to_cart", "checkout_started"}:
        sku, price = one(r, ITEMS)
        props["item_id"] = sku
        props["price"] = price
        props["qty"] = between(r, 1, 3)
    elif event_type in {"purchase_completed", "subscription_renewed"}:
        sku, price = one(r, ITEMS)
        props["item_id"] = sku
        props["revenue"] = round(price * between(r, 1, 3), 2)
        props["currency"] = one(r, CURRENCIES)
    else:
        props["button"] = one(r, BUTTONS)
        props["viewport"] = one(r, ("1440x900", "390x844", "1920x1080", "412x915"))
    return props


_PLAN = {"branch": "main", "source": "web", "version": "3"}


def make_event(  # noqa: PLR0913 - one row: every input matters
    app_id: int,
    rng: random.Random,
    profile: UserProfile,
    upload_ms: int,
    *,
    late: bool,
    anonymous: bool = False,
) -> dict[str, Any]:
    """One 55-key export row for ``profile`` whose server upload time is ``upload_ms``."""
    r = rng.random
    event_type = _TYPES.pick(rng)
    server_side = event_type in _TYPES.server_side or r() < P_SERVER_SIDE

    received = upload_ms - between(r, 1, 80)
    skew = between(r, -600, 600) * SECOND_MS if r() < P_CLOCK_SKEW else 0
    client_upload = received - between(r, 40, 900) + skew
    if late:
        delay = between(r, HOUR_MS, 3 * DAY_MS)
    elif profile.platform != "Web" and r() < P_BATCHED:
        delay = between(r, 30 * SECOND_MS, 10 * MINUTE_MS)  # mobile SDKs batch uploads
    else:
        delay = between(r, 150, 30 * SECOND_MS)
    client_event = client_upload - delay
    correction = received - client_upload
    event_time = client_event + correction if abs(correction) >= MINUTE_MS else client_event
    processed = upload_ms + between(r, 300, 6000)
    stamps = [client_event, client_upload, event_time, processed, received, upload_ms]
    formatted = [format_timestamp(ms) for ms in stamps]
    creation = profile.created_text
    if r() < P_NO_FRACTION:  # real exports sometimes drop the fraction from one timestamp
        which = between(r, 0, len(stamps))
        if which == len(stamps):
            creation = profile.created_text[:19]
        else:
            formatted[which] = format_timestamp(stamps[which], fraction=False)

    place = SERVER_PLACE if server_side else profile.place
    user_properties = dict(profile.properties)
    user_properties["sessions"] = between(r, 1, 400)
    groups: dict[str, Any] = {}
    group_properties: dict[str, Any] = {}
    if r() < P_GROUPS:
        group = one(r, GROUPS)
        groups = {"company_id": [group]}
        group_properties = {
            "company_id": {group: {"plan": one(r, PLANS), "seats": between(r, 2, 500)}}
        }
    path = "/2/httpapi" if server_side or profile.platform == "Web" else "/batch"
    mobile = not server_side and profile.platform != "Web"
    located = mobile and profile.has_location
    return {
        "$insert_id": random_uuid(rng),
        "$insert_key": None,
        "$schema": None,
        "adid": profile.adid if mobile else None,
        "amplitude_attribution_ids": None,
        "amplitude_event_type": None,
        "amplitude_id": profile.user.amplitude_id,
        "app": app_id,
        "city": place[2],
        "client_event_time": formatted[0],
        "client_upload_time": formatted[1],
        "country": place[0],
        "data": {
            "path": path,
            "user_properties_updated": r() < P_PROPS_UPDATED,
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
        "event_id": between(r, 1, 9999),
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
        "library": SERVER_LIBRARY if server_side else profile.library,
        "location_lat": round(place[4] + r() * 0.01, 6) if located else None,
        "location_lng": round(place[5] + r() * 0.01, 6) if located else None,
        "os_name": None if server_side else profile.os_name,
        "os_version": None if server_side else profile.os_version,
        "partner_id": None,
        "paying": True if profile.paying else None,
        "plan": dict(_PLAN) if r() < P_TRACKING_PLAN else {},
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
        "uuid": random_uuid(rng),
        "version_name": profile.version_name if mobile else None,
    }


def _session_start(profile: UserProfile, client_event_ms: int) -> int:
    """A session id shared by the user's events in the same half hour, without state."""
    return client_event_ms - (client_event_ms + profile.session_offset_ms) % _SESSION_MS


_SESSION_MS = 30 * MINUTE_MS
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(event: dict[str, Any]) -> bytes:
    """Compact JSON with raw UTF-8, one line, as the export files hold it."""
    return _ENCODER.encode(event).encode()
