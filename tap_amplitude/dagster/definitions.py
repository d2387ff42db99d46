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
import math
import os
import shlex
import typing as t
from pathlib import Path

from tap_amplitude.dagster.assets import AmplitudeProject, build_definitions
from tap_amplitude.dagster.pipeline import Loader, MeltanoJob, SingerTarget
from tap_amplitude.settings import is_timestamp
from tap_amplitude.timestamps import parse_datetime

if t.TYPE_CHECKING:
    from datetime import datetime

PREFIX = "TAP_AMPLITUDE_DAGSTER_"


def _setting(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(PREFIX + name, "").strip()
    return value or default


def _problem(name: str, what: str) -> RuntimeError:
    """One line naming the variable (never its value) and what it must be."""
    return RuntimeError(f"{PREFIX}{name} {what}; see README.md, 'Dagster'")


def _time(name: str) -> datetime | None:
    value = _setting(name)
    if value is None:
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        msg = "is not an ISO 8601 date or date-time (e.g. 2024-03-01 or 2024-03-01T00:00:00Z)"
        raise _problem(name, msg) from None


def _number(name: str, default: str, *, whole: bool) -> float:
    value = _setting(name, default) or default
    what = f"must be a {'whole ' if whole else ''}number of 0 or more"
    try:
        number = int(value) if whole else float(value)
    except ValueError:
        raise _problem(name, what) from None
    if not 0 <= number < math.inf:
        raise _problem(name, what)
    return number


def _tap_config(path: Path) -> dict[str, t.Any]:
    """The tap's config file, for project_id and start_date; one line if it cannot be read."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise _problem("TAP_CONFIG", f"names {path}, which cannot be read ({reason})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise _problem("TAP_CONFIG", f"names {path}, which is not JSON{where}") from None
    if not isinstance(config, dict):
        raise _problem("TAP_CONFIG", f"names {path}, which must hold a JSON object")
    lag = config.get("export_lag_hours")
    if lag is not None and not (isinstance(lag, int) or str(lag).strip().isdigit()):
        what = f"names {path}, whose export_lag_hours is not a whole number of hours"
        raise _problem("TAP_CONFIG", what)
    return config


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
    config = _tap_config(path) if path else {}
    start, end = _time("START"), _time("END")
    first = start
    if start is None and path is not None:
        start_date = config.get("start_date")
        if not is_timestamp(start_date):
            what = f"is not set and {path} has no start_date that is an ISO 8601 date-time"
            raise _problem("START", what)
        first = parse_datetime(start_date)
    if first is not None and end is not None and end <= first:
        raise _problem("END", f"must be after {PREFIX}START (or the config's start_date)")
    partitions = _setting("PARTITIONS", "hourly")
    if partitions not in {"hourly", "daily"}:
        msg = f"{PREFIX}PARTITIONS must be hourly or daily"
        raise RuntimeError(msg)
    return AmplitudeProject(
        name=_setting("PROJECT", str(config.get("project_id") or "default")) or "default",
        loader=loader,
        tap_config_path=path,
        partitions="hourly" if partitions == "hourly" else "daily",
        start=start,
        end=end,
        retries=int(_number("RETRIES", "3", whole=True)),
        retry_delay_seconds=_number("RETRY_DELAY", "60", whole=False),
    )


defs = build_definitions(project_from_environment())
