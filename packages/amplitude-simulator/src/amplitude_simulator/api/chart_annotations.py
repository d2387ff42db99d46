"""Chart annotations: v2 ``/api/2/annotations``, and v3 with categories (docs/amplitude-api.md §12).

Both versions read one store (``sim.annotations``), seeded on first use with annotations
dated around the dataset. The v2 view shows ``date`` = the calendar date of ``start``.

v3 (§12.2, §12.3): list with ``category`` xor ``chart_id`` (both: 400), ``start``/``end``
as ISO 8601 (``+`` and ``%2B`` both accepted; a range annotation must end by ``end``); single
item; create, partial update (``null`` clears ``chart_id``/``end``) and delete; categories
with create (409 on a duplicate name), rename, delete and bulk assignment. The category
object is ``{"id", "name"}``, but ``{"id", "category"}`` in the rename answer and in bulk
answers, as in Amplitude's docs; ``category_key_is_category`` uses ``category`` everywhere.

Switches: ``v2_status`` (e.g. 404 or 410: v2 retired) and ``v3_status`` (e.g. 404: v3 not
offered). Modelling choices (**Unverified**): an uncategorised annotation has
``"category": null``; offsets are echoed as stored; errors use the §1.4 envelope.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from amplitude_simulator.protocol import Route, SimResponse

if TYPE_CHECKING:
    from amplitude_simulator.data.dataset import Dataset
    from amplitude_simulator.protocol import Context, SimRequest
    from amplitude_simulator.settings import AnnotationSettings

V3 = "/api/3/annotations"
CATEGORIES = "/api/3/annotation-categories"


def routes() -> list[Route]:
    """v2 listing; v3 annotations and categories."""
    return [
        Route("GET", "/api/2/annotations", handle_annotations),
        Route("GET", V3, list_v3),
        Route("POST", V3, create_annotation),
        Route("GET", V3 + "/{annotation_id}", one_v3),
        Route("PUT", V3 + "/{annotation_id}", update_annotation),
        Route("DELETE", V3 + "/{annotation_id}", delete_annotation),
        Route("GET", CATEGORIES, list_categories),
        Route("POST", CATEGORIES, create_category),
        Route("PUT", CATEGORIES + "/bulk/{category_id}", bulk_assign),
        Route("GET", CATEGORIES + "/{category_id}", one_category),
        Route("PUT", CATEGORIES + "/{category_id}", rename_category),
        Route("DELETE", CATEGORIES + "/{category_id}", delete_category),
    ]


_ANNOTATIONS = (
    ("Release 4.12.0", "New editor for everyone"),
    ("Spring campaign", "Paid social and newsletter launch"),
    ("Pricing page test", "A/B test exp-311 started"),
    ("Ingestion delay", "Events from iOS arrived up to 3 h late"),
)
SEED_CATEGORIES = {12345: "Releases", 6789: "Campaigns", 4521: "Experiments", 8810: "Alerts"}
# Per seeded annotation: category id, chart id, hour of start, days the range lasts (0: none).
_V3_FIELDS: tuple[tuple[int | None, str | None, int, int], ...] = (
    (12345, None, 9, 0),
    (6789, None, 7, 9),
    (4521, "abc123", 15, 0),
    (None, None, 22, 0),
)
_PLUS_ONE = timezone(timedelta(hours=1))


def annotation_list(dataset: Dataset) -> list[dict[str, Any]]:
    """The project's chart annotations as v2 shows them, dated around the dataset."""
    first = dataset.start.date()
    span = max(1, (dataset.end - dataset.start).days)
    items = []
    for index, (label, details) in enumerate(_ANNOTATIONS):
        day = first + timedelta(days=(index * 2) % (span + 1) - (1 if index == 0 else 0))
        items.append(
            {
                "id": 160_419 + index * 37,
                "date": day.isoformat(),
                "label": label,
                "details": details,
            }
        )
    return items


def v3_annotation_list(dataset: Dataset) -> list[dict[str, Any]]:
    """The same annotations as v3 stores them (before any change through the API)."""
    items = []
    for item, (category, chart_id, hour, days) in zip(
        annotation_list(dataset), _V3_FIELDS, strict=True
    ):
        day = datetime.fromisoformat(item["date"]).replace(hour=hour, tzinfo=timezone.utc)
        end = (day + timedelta(days=days)).astimezone(_PLUS_ONE).isoformat() if days else None
        items.append(
            {
                "id": item["id"],
                "start": day.isoformat(),
                "end": end,
                "label": item["label"],
                "details": item["details"],
                "category_id": category,
                "chart_id": chart_id,
            }
        )
    return items


# --------------------------------------------------------------------------------------
# v2


def handle_annotations(sim: Context, request: SimRequest) -> SimResponse:
    """``/api/2/annotations`` (v2), optionally one ``id``; ``v2_status`` when retired."""
    settings = sim.annotations
    if settings.v2_status is not None:
        return SimResponse.error(settings.v2_status, "This API version is no longer available")
    with settings.lock:
        stored = list(_store(sim).values())
    items = [
        {
            "id": item["id"],
            "date": item["start"][:10],
            "label": item["label"],
            "details": item["details"],
        }
        for item in stored
    ]
    wanted = request.params.get("id")
    if wanted:
        items = [item for item in items if str(item["id"]) == wanted]
    return SimResponse.json(HTTPStatus.OK, {"data": items})


# --------------------------------------------------------------------------------------
# v3 annotations


def list_v3(sim: Context, request: SimRequest) -> SimResponse:
    """``GET /api/3/annotations`` with its filters."""
    refused = _refused(sim)
    if refused is not None:
        return refused
    params = request.params
    if params.get("category") and params.get("chart_id"):
        return SimResponse.error(
            HTTPStatus.BAD_REQUEST, "Invalid request", details="Use category or chart_id, not both"
        )
    try:
        start = _moment(params.get("start"))
        end = _moment(params.get("end"))
    except ValueError:
        return SimResponse.error(
            HTTPStatus.BAD_REQUEST, "Invalid request", details="start and end must be ISO 8601"
        )
    settings = sim.annotations
    with settings.lock:
        names = _categories(sim)
        items = [_v3(settings, item, names) for item in _store(sim).values()]
    if params.get("category"):
        key = _key(settings)
        items = [i for i in items if (i["category"] or {}).get(key) == params["category"]]
    if params.get("chart_id"):
        items = [i for i in items if i["chart_id"] == params["chart_id"]]
    if start is not None:
        items = [i for i in items if _parse(i["start"]) >= start]
    if end is not None:
        items = [i for i in items if _parse(i["end"] or i["start"]) <= end]
    return SimResponse.json(HTTPStatus.OK, {"data": items})


def one_v3(sim: Context, request: SimRequest) -> SimResponse:
    """``GET /api/3/annotations/{id}``."""
    refused = _refused(sim)
    if refused is not None:
        return refused
    settings = sim.annotations
    with settings.lock:
        item = _find(sim, request.path_params["annotation_id"])
        if isinstance(item, SimResponse):
            return item
        return SimResponse.json(HTTPStatus.OK, {"data": _v3(settings, item, _categories(sim))})


def create_annotation(sim: Context, request: SimRequest) -> SimResponse:
    """``POST /api/3/annotations``: ``label`` and ``start`` required."""
    refused = _refused(sim)
    if refused is not None:
        return refused
    body = _body(request)
    if not isinstance(body, dict) or not body.get("label") or not body.get("start"):
        return SimResponse.error(
            HTTPStatus.BAD_REQUEST, "Invalid field", details="label and start are required"
        )
    invalid = _invalid_times(body)
    if invalid is not None:
        return invalid
    settings = sim.annotations
    with settings.lock:
        names = _categories(sim)
        category_id = None
        if body.get("category"):
            category_id = next((k for k, v in names.items() if v == body["category"]), None)
            if category_id is None:
                return SimResponse.error(HTTPStatus.NOT_FOUND, "Category not found")
        settings.next_id += 1
        item = {
            "id": settings.next_id,
            "start": body["start"],
            "end": body.get("end"),
            "label": body["label"],
            "details": body.get("details"),
            "category_id": category_id,
            "chart_id": body.get("chart_id"),
        }
        _store(sim)[item["id"]] = item
        return SimResponse.json(HTTPStatus.OK, {"data": _v3(settings, item, names)})


def update_annotation(sim: Context, request: SimRequest) -> SimResponse:
    """``PUT /api/3/annotations/{id}``: a partial update."""
    refused = _refused(sim)
    if refused is not None:
        return refused
    body = _body(request)
    if not isinstance(body, dict):
        return SimResponse.error(HTTPStatus.BAD_REQUEST, "Invalid field")
    invalid = _invalid_times(body)
    if invalid is not None:
        return invalid
    settings = sim.annotations
    with settings.lock:
        item = _find(sim, request.path_params["annotation_id"])
        if isinstance(item, SimResponse):
            return item
        names = _categories(sim)
        for key in ("start", "end", "label", "details", "chart_id"):
            if key in body:
                item[key] = body[key]
        if "category" in body:
            found = next((k for k, v in names.items() if v == body["category"]), None)
            if body["category"] is not None and found is None:
                return SimResponse.error(HTTPStatus.NOT_FOUND, "Category not found")
            item["category_id"] = found
        return SimResponse.json(HTTPStatus.OK, {"data": _v3(settings, item, names)})


def delete_annotation(sim: Context, request: SimRequest) -> SimResponse:
    """``DELETE /api/3/annotations/{id}``."""
    refused = _refused(sim)
    if refused is not None:
        return refused
    with sim.annotations.lock:
        item = _find(sim, request.path_params["annotation_id"])
        if isinstance(item, SimResponse):
            return item
        del _store(sim)[item["id"]]
    return SimResponse.json(HTTPStatus.OK, {"success": True})


# --------------------------------------------------------------------------------------
# categories


def list_categories(sim: Context, request: SimRequest) -> SimResponse:
    """``GET /api/3/annotation-categories`` (``?category=`` filters by name)."""
    refused = _refused(sim)
    if refused is not None:
        return refused
    settings = sim.annotations
    wanted = request.params.get("category")
    with settings.lock:
        names = _categories(sim)
    items = [_category(settings, k, v) for k, v in names.items() if wanted in {None, v}]
    return SimResponse.json(HTTPStatus.OK, {"data": items})


def one_category(sim: Context, request: SimRequest) -> SimResponse:
    """``GET /api/3/annotation-categories/{id}``."""
    refused = _refused(sim)
    if refused is not None:
        return refused
    settings = sim.annotations
    with settings.lock:
        found = _find_category(sim, request.path_params["category_id"])
        if isinstance(found, SimResponse):
            return found
        return SimResponse.json(
            HTTPStatus.OK, {"data": _category(settings, found, _categories(sim)[found])}
        )


def create_category(sim: Context, request: SimRequest) -> SimResponse:
    """``POST /api/3/annotation-categories``: 409 when the name exists."""
    refused = _refused(sim)
    if refused is not None:
        return refused
    body = _body(request)
    if not isinstance(body, dict) or not isinstance(body.get("category"), str):
        return SimResponse.error(HTTPStatus.BAD_REQUEST, "Invalid field", details="category")
    settings = sim.annotations
    with settings.lock:
        names = _categories(sim)
        if body["category"] in names.values():
            return SimResponse.error(HTTPStatus.CONFLICT, "Category already exists")
        settings.next_id += 1
        names[settings.next_id] = body["category"]
        return SimResponse.json(
            HTTPStatus.OK, {"data": _category(settings, settings.next_id, body["category"])}
        )


def rename_category(sim: Context, request: SimRequest) -> SimResponse:
    """``PUT /api/3/annotation-categories/{id}``; answers ``{"id", "category"}`` (§12.2)."""
    refused = _refused(sim)
    if refused is not None:
        return refused
    body = _body(request)
    if not isinstance(body, dict) or not isinstance(body.get("category"), str):
        return SimResponse.error(HTTPStatus.BAD_REQUEST, "Invalid field", details="category")
    with sim.annotations.lock:
        found = _find_category(sim, request.path_params["category_id"])
        if isinstance(found, SimResponse):
            return found
        names = _categories(sim)
        if body["category"] in names.values() and names[found] != body["category"]:
            return SimResponse.error(HTTPStatus.CONFLICT, "Category already exists")
        names[found] = body["category"]
    return SimResponse.json(HTTPStatus.OK, {"data": {"id": found, "category": body["category"]}})


def delete_category(sim: Context, request: SimRequest) -> SimResponse:
    """``DELETE /api/3/annotation-categories/{id}``; its annotations become uncategorised."""
    refused = _refused(sim)
    if refused is not None:
        return refused
    with sim.annotations.lock:
        found = _find_category(sim, request.path_params["category_id"])
        if isinstance(found, SimResponse):
            return found
        del _categories(sim)[found]
        for item in _store(sim).values():
            if item["category_id"] == found:
                item["category_id"] = None
    return SimResponse.json(HTTPStatus.OK, {"success": True})


def bulk_assign(sim: Context, request: SimRequest) -> SimResponse:
    """``PUT …/bulk/{id}``: put annotations in a category; items use ``{"id", "category"}``."""
    refused = _refused(sim)
    if refused is not None:
        return refused
    body = _body(request)
    ids = body.get("annotation_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        return SimResponse.error(HTTPStatus.BAD_REQUEST, "Invalid annotation IDs")
    settings = sim.annotations
    with settings.lock:
        found = _find_category(sim, request.path_params["category_id"])
        if isinstance(found, SimResponse):
            return found
        store, names = _store(sim), _categories(sim)
        if any(i not in store for i in ids):
            return SimResponse.error(HTTPStatus.NOT_FOUND, "Annotation not found")
        items = []
        for annotation_id in ids:
            store[annotation_id]["category_id"] = found
            item = _v3(settings, store[annotation_id], names)
            item["category"] = {"id": found, "category": names[found]}
            items.append(item)
    return SimResponse.json(HTTPStatus.OK, {"data": items})


# --------------------------------------------------------------------------------------
# helpers (call with the settings' lock held where they touch the store)


def _refused(sim: Context) -> SimResponse | None:
    status = sim.annotations.v3_status
    return None if status is None else SimResponse.error(status, "Not found")


def _store(sim: Context) -> dict[int, dict[str, Any]]:
    settings = sim.annotations
    if settings.annotations is None:
        settings.annotations = {item["id"]: item for item in v3_annotation_list(sim.dataset)}
    return settings.annotations


def _categories(sim: Context) -> dict[int, str]:
    settings = sim.annotations
    if settings.categories is None:
        settings.categories = dict(SEED_CATEGORIES)
    return settings.categories


def _key(settings: AnnotationSettings) -> str:
    return "category" if settings.category_key_is_category else "name"


def _category(settings: AnnotationSettings, category_id: int, name: str) -> dict[str, Any]:
    return {"id": category_id, _key(settings): name}


def _v3(
    settings: AnnotationSettings, item: dict[str, Any], names: dict[int, str]
) -> dict[str, Any]:
    category_id = item["category_id"]
    category = None
    if category_id is not None and category_id in names:
        category = _category(settings, category_id, names[category_id])
    return {
        "id": item["id"],
        "start": item["start"],
        "end": item["end"],
        "label": item["label"],
        "details": item["details"],
        "category": category,
        "chart_id": item["chart_id"],
    }


def _find(sim: Context, raw: str) -> dict[str, Any] | SimResponse:
    if not raw.isdigit():
        return SimResponse.error(HTTPStatus.BAD_REQUEST, "Invalid annotation ID")
    item = _store(sim).get(int(raw))
    return item if item is not None else SimResponse.error(HTTPStatus.NOT_FOUND, "Not found")


def _find_category(sim: Context, raw: str) -> int | SimResponse:
    if not raw.isdigit():
        return SimResponse.error(HTTPStatus.BAD_REQUEST, "Invalid category ID")
    found = int(raw)
    if found not in _categories(sim):
        return SimResponse.error(HTTPStatus.NOT_FOUND, "Category not found")
    return found


def _body(request: SimRequest) -> Any:
    try:
        return request.json()
    except ValueError:
        return None


def _invalid_times(body: dict[str, Any]) -> SimResponse | None:
    """400 ``Invalid field`` if a given ``start``/``end`` is not ISO 8601 (``end`` may be null)."""
    for key in ("start", "end"):
        value = body.get(key)
        if key not in body or (key == "end" and value is None):
            continue
        try:
            valid = isinstance(value, str) and bool(_parse(value))
        except ValueError:
            valid = False
        if not valid:
            return SimResponse.error(
                HTTPStatus.BAD_REQUEST, "Invalid field", details=f"{key} must be ISO 8601"
            )
    return None


def _moment(value: str | None) -> datetime | None:
    """A query time; ``+`` decoded to a space (an unencoded offset) is put back."""
    if not value:
        return None
    return _parse(value.replace(" ", "+"))


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
