"""A local Amplitude API simulator: deterministic data, real HTTP, injectable failures.

Tests and demos talk to it instead of Amplitude::

    with AmplitudeSimulator(Dataset(start=..., end=...)) as sim:
        requests.get(f"{sim.url}/api/2/export", params=..., auth=(key, secret))

Per-simulator switches live in settings objects on the instance: ``sim.export``,
``sim.analytics``, ``sim.deletions``, ``sim.limits`` and ``sim.faults``.
"""

from __future__ import annotations

from amplitude_simulator.data.dataset import Dataset, Project, User
from amplitude_simulator.faults import Fault
from amplitude_simulator.limits import RateLimits, Window
from amplitude_simulator.protocol import Context, RequestRecord, Route, SimRequest, SimResponse
from amplitude_simulator.server import AmplitudeSimulator
from amplitude_simulator.settings import (
    AnalyticsSettings,
    DeletionSettings,
    ExportSettings,
    NetworkSettings,
)

__all__ = [
    "AmplitudeSimulator",
    "AnalyticsSettings",
    "Context",
    "Dataset",
    "DeletionSettings",
    "ExportSettings",
    "Fault",
    "NetworkSettings",
    "Project",
    "RateLimits",
    "RequestRecord",
    "Route",
    "SimRequest",
    "SimResponse",
    "User",
    "Window",
]
