"""``defs`` for ``dagster dev -m tap_amplitude.dagster.definitions``, from the environment.

=====================================  ==================================================
``TAP_AMPLITUDE_DAGSTER_TAP_CONFIG``   the tap's JSON config file (required for a target)
``TAP_AMPLITUDE_DAGSTER_TARGET``       the Singer target command, e.g.
                                       ``target-postgres --config target.json``
``TAP_AMPLITUDE_DAGSTER_MELTANO_JOB``  instead of a target: ``<extractor> <loader>`` run by
                                       Meltano with a per-partition state id
``TAP_AMPLITUDE_DAGSTER_MELTANO``      the Meltano command (default ``meltano``)
``TAP_AMPLITUDE_DAGSTER_MELTANO_ENVIRONMENT``, ``..._MELTANO_PROJECT``: its environment
                                       and project directory
``TAP_AMPLITUDE_DAGSTER_PROJECT``      name in asset keys and the pool (default: the
                                       config's project_id, else ``default``)
``TAP_AMPLITUDE_DAGSTER_PARTITIONS``   ``hourly`` (default) or ``daily``
``TAP_AMPLITUDE_DAGSTER_START``        first partition (default: the config's start_date)
``TAP_AMPLITUDE_DAGSTER_END``          end of the last partition, exclusive (default: none)
``TAP_AMPLITUDE_DAGSTER_RETRIES``      retries of a failed partition (default 3)
``TAP_AMPLITUDE_DAGSTER_RETRY_DELAY``  seconds before the first retry (default 60; then 3x, 7x)
=====================================  ==================================================
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from tap_amplitude.dagster.assets import AmplitudeProject, build_definitions
from tap_amplitude.dagster.pipeline import Loader, MeltanoJob, SingerTarget
from tap_amplitude.timestamps import parse_datetime

PREFIX = "TAP_AMPLITUDE_DAGSTER_"


def _setting(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(PREFIX + name, "").strip()
    return value or default


def project_from_environment() -> AmplitudeProject:
    """The project the ``TAP_AMPLITUDE_DAGSTER_*`` variables describe."""
    config_path = _setting("TAP_CONFIG")
    loader: Loader
    meltano_job = _setting("MELTANO_JOB")
    target = _setting("TARGET")
    if meltano_job:
        extractor, _, loader_name = meltano_job.partition(" ")
        loader = MeltanoJob(
            loader=loader_name.strip(),
            extractor=extractor,
            meltano=tuple(shlex.split(_setting("MELTANO", "meltano") or "meltano")),
            project_dir=_setting("MELTANO_PROJECT"),
            environment=_setting("MELTANO_ENVIRONMENT"),
        )
    elif target and config_path:
        loader = SingerTarget(tuple(shlex.split(target)))
    else:
        msg = (
            f"set {PREFIX}TAP_CONFIG (the tap's config file) and {PREFIX}TARGET (a Singer "
            f"target command), or {PREFIX}MELTANO_JOB; see README.md, 'Dagster'"
        )
        raise RuntimeError(msg)
    path = Path(config_path) if config_path else None
    config = json.loads(path.read_text(encoding="utf-8")) if path else {}
    start, end = _setting("START"), _setting("END")
    partitions = _setting("PARTITIONS", "hourly")
    if partitions not in {"hourly", "daily"}:
        msg = f"{PREFIX}PARTITIONS must be hourly or daily"
        raise RuntimeError(msg)
    return AmplitudeProject(
        name=_setting("PROJECT", str(config.get("project_id") or "default")) or "default",
        loader=loader,
        tap_config_path=path,
        partitions="hourly" if partitions == "hourly" else "daily",
        start=parse_datetime(start) if start else None,
        end=parse_datetime(end) if end else None,
        retries=int(_setting("RETRIES", "3") or 3),
        retry_delay_seconds=float(_setting("RETRY_DELAY", "60") or 60),
    )


defs = build_definitions(project_from_environment())
