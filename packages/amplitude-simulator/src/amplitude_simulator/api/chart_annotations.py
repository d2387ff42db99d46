"""The Chart Annotations API, ``/api/2/annotations`` (v2): annotations dated around the dataset."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from amplitude_simulator.protocol import Route, SimResponse

if TYPE_CHECKING:
    from amplitude_simulator.data.dataset import Dataset
    from amplitude_simulator.protocol import Context, SimRequest


def routes() -> list[Route]:
    """The annotation listing."""
    return [Route("GET", "/api/2/annotations", handle_annotations)]


_ANNOTATIONS = (
    ("Release 4.12.0", "New editor for everyone"),
    ("Spring campaign", "Paid social and newsletter launch"),
    ("Pricing page test", "A/B test exp-311 started"),
    ("Ingestion delay", "Events from iOS arrived up to 3 h late"),
)


def annotation_list(dataset: Dataset) -> list[dict[str, Any]]:
    """The project's chart annotations, dated around the dataset."""
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


def handle_annotations(sim: Context, request: SimRequest) -> SimResponse:
    """``/api/2/annotations`` (v2), optionally one ``id``."""
    items = annotation_list(sim.dataset)
    wanted = request.params.get("id")
    if wanted:
        items = [item for item in items if str(item["id"]) == wanted]
    return SimResponse.json(HTTPStatus.OK, {"data": items})
