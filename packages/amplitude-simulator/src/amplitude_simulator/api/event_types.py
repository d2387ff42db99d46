"""``/api/2/events/list``: the project's visible event types with this week's totals (§3.2)."""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING

from amplitude_simulator.protocol import Route, SimResponse

if TYPE_CHECKING:
    from amplitude_simulator.protocol import Context, SimRequest


def routes() -> list[Route]:
    """The event type listing."""
    return [Route("GET", "/api/2/events/list", events_list)]


def events_list(simulator: Context, _request: SimRequest) -> SimResponse:
    """Visible event types with this week's totals, wrapped in ``data``."""
    return SimResponse.json(HTTPStatus.OK, {"data": simulator.dataset.event_types()})
