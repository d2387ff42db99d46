"""The Taxonomy API's read side, ``/api/2/taxonomy/…`` (docs/amplitude-api.md §10).

Every answer uses the ``{"success": …, "data": …}`` / ``{"success": false, "errors": […]}``
envelope. Lists leave out hidden events and user properties, and deleted ones unless
``showDeleted=true``; user-property items carry ``deleted``. ``event_type`` and ``group_type``
are read from the query string or a form body (the docs' curl sends a body on GET). Unknown
single items get 400, unknown user properties 404. Without the Enterprise plan
(``sim.taxonomy.enterprise = False``) every route answers ``sim.taxonomy.refusal_status``.
The per-key limits (4 cost in flight, 7,200 per hour, a GET costs 1) answer 429 beyond them.

Modelling choices (**Unverified** in §10): an uncategorised event has ``"category": null``;
``enum_values`` is a comma-separated string or null; shared event properties (listed without
``event_type``) carry ``"event_type": null``; with ``showDeleted=true`` event items carry
``deleted`` too; the refusal body is ``Not found``.
"""

from __future__ import annotations

import math
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from amplitude_simulator.data.values import EVENT_TYPES, PLANS
from amplitude_simulator.protocol import Route, SimResponse

if TYPE_CHECKING:
    from amplitude_simulator.protocol import Context, SimRequest
    from amplitude_simulator.settings import TaxonomySettings

BASE = "/api/2/taxonomy"
CATEGORIES: tuple[tuple[int, str], ...] = (
    (300_101, "Acquisition"),
    (300_102, "Engagement"),
    (300_103, "Revenue"),
    (300_104, "Account"),
)
_EVENT_CATEGORY = {
    "page_viewed": "Engagement",
    "button_clicked": "Engagement",
    "item_viewed": "Engagement",
    "search_performed": "Engagement",
    "login": "Account",
    "logout": "Account",
    "settings_updated": "Account",
    "signup_started": "Acquisition",
    "signup_completed": "Acquisition",
    "item_added_to_cart": "Revenue",
    "checkout_started": "Revenue",
    "purchase_completed": "Revenue",
    "subscription_renewed": "Revenue",
}
DELETED_EVENT = "legacy_export_clicked"
_CORE_WEIGHT = 10.0  # events at least this common are tagged "core"

# name, type, description, enum_values, is_array_type, is_required, is_hidden, classifications
_Spec = tuple[str, str, str | None, str | None, bool, bool, bool, tuple[str, ...]]
SHARED_EVENT_PROPERTIES: tuple[_Spec, ...] = (
    ("page_path", "string", "Path of the page", None, False, False, False, ()),
    ("page_title", "string", None, None, False, False, False, ()),
    ("referrer", "string", "Referring URL", None, False, False, False, ()),
    ("utm_source", "string", None, None, False, False, False, ()),
)
_COMMON_EVENT_PROPERTIES: tuple[_Spec, ...] = (
    ("duration_ms", "number", "Time on the page, ms", None, False, False, False, ()),
    ("is_first_visit", "boolean", None, None, False, False, False, ()),
    ("experiment", "any", "Experiment and variant", None, False, False, True, ()),
    ("tags", "string", None, None, True, False, False, ()),
)
_EXTRA_EVENT_PROPERTIES: dict[str, tuple[_Spec, ...]] = {
    "search_performed": (
        ("query", "string", "Search text", None, False, True, False, ("SENSITIVE",)),
        ("results", "number", None, None, False, False, False, ()),
    ),
    "item_viewed": (("item_id", "string", "SKU", None, False, True, False, ()),),
    "item_added_to_cart": (
        ("item_id", "string", "SKU", None, False, True, False, ()),
        ("qty", "number", None, None, False, False, False, ()),
    ),
    "purchase_completed": (
        ("revenue", "number", "Order total", None, False, True, False, ("REVENUE",)),
        ("currency", "enum", None, "USD, EUR, GBP", False, False, False, ()),
    ),
}
# name, type, description, enum_values, is_array_type, is_hidden, classifications, deleted
_UserSpec = tuple[str, str, str | None, str | None, bool, bool, tuple[str, ...], bool]
USER_PROPERTIES: tuple[_UserSpec, ...] = (
    ("device_id", "string", "Amplitude: the device", None, False, False, (), False),
    ("country", "string", "Amplitude: from the IP address", None, False, False, (), False),
    ("platform", "string", None, None, False, False, (), False),
    ("gp:plan", "enum", "Billing plan", ", ".join(PLANS), False, False, (), False),
    ("gp:company", "string", None, None, False, False, (), False),
    ("gp:role", "string", None, None, False, False, (), False),
    ("gp:team_size", "number", None, None, False, False, (), False),
    ("gp:features", "string", "Enabled features", None, True, False, (), False),
    ("gp:is_trial", "boolean", None, None, False, False, (), False),
    ("gp:lifetime_value", "number", None, None, False, False, ("REVENUE",), False),
    ("gp:email", "string", "Work email", None, False, False, ("PII",), False),
    ("gp:internal_flag", "boolean", "Staff only", None, False, True, (), False),
    ("gp:legacy_segment", "string", "Replaced by gp:plan", None, False, False, (), True),
)
# group_type, group_property, type, description, enum_values
GROUP_PROPERTIES: tuple[tuple[str, str, str, str | None, str | None], ...] = (
    ("company_id", "grp:plan", "enum", "The company's plan", ", ".join(PLANS)),
    ("company_id", "grp:seats", "number", None, None),
    ("company_id", "grp:industry", "any", None, None),
    ("org_id", "grp:region", "string", "Sales region", None),
)


def routes() -> list[Route]:
    """The ten GET routes."""
    return [
        Route("GET", f"{BASE}/category", list_categories),
        Route("GET", f"{BASE}/category/{{name}}", one_category),
        Route("GET", f"{BASE}/event", list_events),
        Route("GET", f"{BASE}/event/{{name}}", one_event),
        Route("GET", f"{BASE}/event-property", list_event_properties),
        Route("GET", f"{BASE}/event-property/{{name}}", one_event_property),
        Route("GET", f"{BASE}/user-property", list_user_properties),
        Route("GET", f"{BASE}/user-property/{{name}}", one_user_property),
        Route("GET", f"{BASE}/group-property", list_group_properties),
        Route("GET", f"{BASE}/group-property/{{name}}", one_group_property),
    ]


# --------------------------------------------------------------------------------------
# the tables


def categories() -> list[dict[str, Any]]:
    """Event categories."""
    return [{"id": category_id, "name": name} for category_id, name in CATEGORIES]


def events(*, show_deleted: bool) -> list[dict[str, Any]]:
    """Event types of the tracking plan; hidden ones never, deleted ones on request."""
    items = []
    for index, (name, weight, display, _) in enumerate(EVENT_TYPES):
        if name == DELETED_EVENT and not show_deleted:
            continue
        category = _EVENT_CATEGORY.get(name)
        item: dict[str, Any] = {
            "event_type": name,
            "category": {"name": category} if category else None,
            "description": f"{display} (tracked since v{index + 1})" if index % 3 else None,
            "display_name": display,
            "is_active": name != DELETED_EVENT,
            "is_hidden_from_dropdowns": False,
            "is_hidden_from_persona_results": name == "logout",
            "is_hidden_from_pathfinder": False,
            "is_hidden_from_timeline": name == "page_viewed",
            "tags": ["core"] if weight >= _CORE_WEIGHT else [],
            "owner": "pm@example.com" if index % 2 == 0 else None,
        }
        if show_deleted:
            item["deleted"] = name == DELETED_EVENT
        items.append(item)
    return items


def event_properties(event_type: str | None) -> list[dict[str, Any]]:
    """An event's own properties; the shared ones when ``event_type`` is None."""
    if event_type is None:
        specs = SHARED_EVENT_PROPERTIES
    else:
        specs = _COMMON_EVENT_PROPERTIES + _EXTRA_EVENT_PROPERTIES.get(event_type, ())
    return [
        {
            "event_property": name,
            "event_type": event_type,
            "description": description,
            "type": kind,
            "regex": "^/[a-z0-9/_-]*$" if name == "page_path" else None,
            "enum_values": enum_values,
            "is_array_type": is_array,
            "is_required": required,
            "is_hidden": hidden,
            "classifications": list(classes),
        }
        for name, kind, description, enum_values, is_array, required, hidden, classes in specs
    ]


def user_properties(*, show_deleted: bool) -> list[dict[str, Any]]:
    """User properties; hidden ones never, deleted ones on request."""
    return [
        _user_property(spec)
        for spec in USER_PROPERTIES
        if not spec[5] and (show_deleted or not spec[7])
    ]


def _user_property(spec: _UserSpec) -> dict[str, Any]:
    name, kind, description, enum_values, is_array, hidden, classes, deleted = spec
    return {
        "user_property": name,
        "description": description,
        "type": kind,
        "enum_values": enum_values,
        "regex": None,
        "is_array_type": is_array,
        "is_hidden": hidden,
        "classifications": list(classes),
        "deleted": deleted,
    }


def group_properties(group_type: str | None) -> list[dict[str, Any]]:
    """Group properties, of one group type or all."""
    return [
        {
            "group_type": kind_of_group,
            "group_property": name,
            "description": description,
            "type": kind,
            "enum_values": enum_values,
            "regex": None,
            "is_array_type": False,
            "is_hidden": False,
            "classifications": [],
        }
        for kind_of_group, name, kind, description, enum_values in GROUP_PROPERTIES
        if group_type is None or kind_of_group == group_type
    ]


# --------------------------------------------------------------------------------------
# handlers


def list_categories(sim: Context, request: SimRequest) -> SimResponse:  # noqa: ARG001
    """``GET /category``."""
    return _answer(sim, lambda: _ok(categories()))


def one_category(sim: Context, request: SimRequest) -> SimResponse:
    """``GET /category/{name}``; 400 if unknown."""
    name = _path_name(request)
    found = [item for item in categories() if item["name"] == name]
    return _answer(sim, lambda: _ok(found[0]) if found else _not_found(HTTPStatus.BAD_REQUEST))


def list_events(sim: Context, request: SimRequest) -> SimResponse:
    """``GET /event`` (``showDeleted``)."""
    return _answer(sim, lambda: _ok(events(show_deleted=_show_deleted(request))))


def one_event(sim: Context, request: SimRequest) -> SimResponse:
    """``GET /event/{event_type}``; 400 if unknown."""
    name = _path_name(request)
    found = [item for item in events(show_deleted=True) if item["event_type"] == name]
    return _answer(sim, lambda: _ok(found[0]) if found else _not_found(HTTPStatus.BAD_REQUEST))


def list_event_properties(sim: Context, request: SimRequest) -> SimResponse:
    """``GET /event-property`` (``event_type``: that event's; without it the shared ones)."""
    event_type = _param(request, "event_type")
    known = {name for name, *_ in EVENT_TYPES}
    if event_type is not None and event_type not in known:
        return _answer(sim, lambda: _not_found(HTTPStatus.BAD_REQUEST))
    return _answer(sim, lambda: _ok(event_properties(event_type)))


def one_event_property(sim: Context, request: SimRequest) -> SimResponse:
    """``GET /event-property/{name}``; 400 if unknown."""
    name, event_type = _path_name(request), _param(request, "event_type")
    pool = event_properties(event_type) if event_type else event_properties(None)
    if not event_type:
        for other, *_ in EVENT_TYPES:
            pool += event_properties(other)
    found = [item for item in pool if item["event_property"] == name]
    return _answer(sim, lambda: _ok(found[0]) if found else _not_found(HTTPStatus.BAD_REQUEST))


def list_user_properties(sim: Context, request: SimRequest) -> SimResponse:
    """``GET /user-property`` (``showDeleted``)."""
    return _answer(sim, lambda: _ok(user_properties(show_deleted=_show_deleted(request))))


def one_user_property(sim: Context, request: SimRequest) -> SimResponse:
    """``GET /user-property/{name}``; 404 if unknown (or deleted without ``showDeleted``)."""
    name = _path_name(request)
    pool = user_properties(show_deleted=_show_deleted(request))
    found = [item for item in pool if item["user_property"] == name]
    return _answer(sim, lambda: _ok(found[0]) if found else _not_found(HTTPStatus.NOT_FOUND))


def list_group_properties(sim: Context, request: SimRequest) -> SimResponse:
    """``GET /group-property`` (``group_type``)."""
    return _answer(sim, lambda: _ok(group_properties(_param(request, "group_type"))))


def one_group_property(sim: Context, request: SimRequest) -> SimResponse:
    """``GET /group-property/{name}``; 400 if unknown."""
    name = _path_name(request)
    pool = group_properties(_param(request, "group_type"))
    found = [item for item in pool if item["group_property"] == name]
    return _answer(sim, lambda: _ok(found[0]) if found else _not_found(HTTPStatus.BAD_REQUEST))


# --------------------------------------------------------------------------------------
# helpers


def _answer(sim: Context, build: Any) -> SimResponse:
    """The plan check and the per-key limits around one answer."""
    settings = sim.taxonomy
    if not settings.enterprise:
        return _not_found(settings.refusal_status)
    refused = _admit(settings)
    if refused is not None:
        return refused
    try:
        response: SimResponse = build()
        return response
    finally:
        with settings.lock:
            settings.in_flight -= 1


def _admit(settings: TaxonomySettings) -> SimResponse | None:
    """Take one cost unit, or a 429 with ``Retry-After``."""
    now = time.monotonic()
    with settings.lock:
        window = settings.window_seconds
        settings.spent[:] = [at for at in settings.spent if at > now - window]
        if settings.in_flight >= settings.max_in_flight:
            return _too_many(
                f"Too many concurrent requests: at most {settings.max_in_flight} cost at once", 1
            )
        if len(settings.spent) >= settings.cost_per_window:
            wait = settings.spent[0] + window - now
            return _too_many(
                f"Exceeded the taxonomy limit of {settings.cost_per_window} cost per {window:g} s",
                wait,
            )
        settings.spent.append(now)
        settings.in_flight += 1
    return None


def _too_many(message: str, wait: float) -> SimResponse:
    response = SimResponse.json(
        HTTPStatus.TOO_MANY_REQUESTS, {"success": False, "errors": [{"message": message}]}
    )
    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return response


def _ok(data: Any) -> SimResponse:
    return SimResponse.json(HTTPStatus.OK, {"success": True, "data": data})


def _not_found(status: int) -> SimResponse:
    return SimResponse.json(status, {"success": False, "errors": [{"message": "Not found"}]})


def _path_name(request: SimRequest) -> str:
    """The URL-decoded name in the path (``Play%20Song``, ``gp%3Aplan``)."""
    return unquote(request.path_params["name"])


def _param(request: SimRequest, name: str) -> str | None:
    """A parameter from the query string or a form-encoded body."""
    value = request.params.get(name)
    if value is None and request.body:
        form = dict(parse_qsl(request.body.decode(errors="replace"), keep_blank_values=True))
        value = form.get(name)
    return value or None


def _show_deleted(request: SimRequest) -> bool:
    return (_param(request, "showDeleted") or "").lower() == "true"
