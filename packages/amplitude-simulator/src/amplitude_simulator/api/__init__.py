"""The APIs the simulator serves, one module per API family.

Each module exposes ``routes() -> list[Route]`` and imports only
:mod:`amplitude_simulator.protocol`, the data and the settings, never the server. Adding an
API is one more module in :data:`API_MODULES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from amplitude_simulator.api import (
    chart_annotations,
    charts,
    cohort_export,
    cohorts,
    deletions,
    dsar,
    event_types,
    export,
    profile,
    taxonomy,
    usermap,
    users,
)

if TYPE_CHECKING:
    from amplitude_simulator.protocol import Route


class ApiModule(Protocol):
    """What a module in :data:`API_MODULES` provides."""

    def routes(self) -> list[Route]:
        """The endpoints the module serves."""
        ...


#: Every API the simulator serves, in routing order.
API_MODULES: tuple[ApiModule, ...] = (
    export,
    event_types,
    users,
    charts,
    cohorts,
    chart_annotations,
    profile,
    deletions,
    dsar,
    usermap,
    taxonomy,
    cohort_export,
)


def all_routes() -> list[Route]:
    """Every route of every API module."""
    return [route for module in API_MODULES for route in module.routes()]
