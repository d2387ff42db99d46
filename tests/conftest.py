"""Shared fixtures: a small deterministic dataset served by the real simulator."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from amplitude_simulator import AmplitudeSimulator, Dataset

# Three days of data, far enough in the past that every hour is exportable.
SMALL_DATASET = Dataset(
    start=datetime(2024, 3, 1, tzinfo=timezone.utc),
    end=datetime(2024, 3, 4, tzinfo=timezone.utc),
    events_per_hour=20,
    users=12,
)


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    """The dataset most tests read."""
    return SMALL_DATASET


@pytest.fixture
def simulator(dataset: Dataset) -> Iterator[AmplitudeSimulator]:
    """A fresh simulator per test, so faults and request logs never leak between tests."""
    with AmplitudeSimulator(dataset) as sim:
        yield sim
