"""A local Amplitude API simulator: deterministic data, real HTTP, injectable failures.

Tests and the first-run demo talk to it instead of Amplitude::

    with AmplitudeSimulator(Dataset(start=..., end=...)) as sim:
        requests.get(f"{sim.url}/api/2/export", params=..., auth=(key, secret))
"""

from __future__ import annotations

from tap_amplitude.simulator.dataset import Dataset, Project, User
from tap_amplitude.simulator.faults import Fault
from tap_amplitude.simulator.server import (
    AmplitudeSimulator,
    RequestRecord,
    Route,
    SimRequest,
    SimResponse,
)

__all__ = [
    "AmplitudeSimulator",
    "Dataset",
    "Fault",
    "Project",
    "RequestRecord",
    "Route",
    "SimRequest",
    "SimResponse",
    "User",
]
