"""Run tap-amplitude on Dagster: partitioned backfills, a concurrency pool, schedules, a UI.

Needs the extra: ``pip install 'tap-amplitude[dagster]'``. The core tap never imports this
package. ``dagster dev -m tap_amplitude.dagster.definitions`` serves the definitions that the
``TAP_AMPLITUDE_DAGSTER_*`` environment variables describe (README, "Dagster"); code that
needs more (several projects, a custom loader) calls :func:`build_definitions` itself.
"""

from __future__ import annotations

from tap_amplitude.dagster.assets import (
    DEFAULT_POOL_LIMIT,
    SNAPSHOT_STREAMS,
    AmplitudeProject,
    build_definitions,
    newest_closed_partition,
)
from tap_amplitude.dagster.pipeline import MeltanoJob, SingerTarget

__all__ = [
    "DEFAULT_POOL_LIMIT",
    "SNAPSHOT_STREAMS",
    "AmplitudeProject",
    "MeltanoJob",
    "SingerTarget",
    "build_definitions",
    "newest_closed_partition",
]
