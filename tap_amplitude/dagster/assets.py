"""Dagster assets, jobs and schedules for one or more Amplitude projects.

* ``amplitude/<project>/export_events``: partitioned by *upload* hour (or day), the range the
  Export API selects on. One partition is one tap run for exactly [start, end) into the
  configured loader; loads are idempotent on ``uuid`` (target-postgres merges on the key), so a
  partition can be re-run at any time.
* ``amplitude/<project>/<stream>`` for every snapshot stream (no replication key):
  unpartitioned, refreshed together by one tap run on their own schedule.
* Every asset of a project runs in the Dagster concurrency pool ``amplitude-<project>``; its
  limit (set on the instance, :data:`DEFAULT_POOL_LIMIT`) caps the partitions that run at once.
* Failures are retried inside the run (``RetryPolicy``) and, with run retries enabled on the
  instance, as whole runs; the last failure says which hours, which error and what to do.
"""

# ruff: noqa: I002 - Dagster reads the context parameter's annotation at definition time, so
# annotations here must be real objects, not the strings `from __future__ import annotations`
# would make them.

import json
import typing as t
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg

from tap_amplitude.dagster.pipeline import (
    Loader,
    MeltanoJob,
    PipelineError,
    RunOutcome,
    TapRun,
    run_pipeline,
)
from tap_amplitude.streams import STREAM_TYPES
from tap_amplitude.timestamps import parse_datetime

# Amplitude allows 5 concurrent REST requests per project (docs/amplitude-api.md §3.1). A
# partition's tap run has one Export request in flight (an hourly or daily partition is one
# window; the next window's prefetch has nothing to fetch), so 3 partitions use 3 slots and
# leave 2 for the snapshot assets, amplitude-privacy and anyone else on the project.
DEFAULT_POOL_LIMIT = 3
HOURLY_FORMAT = "%Y-%m-%d-%H:%M"
DAILY_FORMAT = "%Y-%m-%d"
EXPORT_STREAM = "export_events"
SNAPSHOT_STREAMS: tuple[str, ...] = tuple(
    stream.name for stream in STREAM_TYPES if stream.replication_key is None
)
# Run retries (instance setting run_retries.enabled): re-launch a run that died as a whole.
RUN_RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"}

Granularity = t.Literal["hourly", "daily"]


@dataclass(frozen=True)
class AmplitudeProject:
    """One Amplitude project: where its tap settings are and where its rows go.

    ``tap_config_path`` is the tap's JSON config (keys, ``api_url``, ``rate_limits`` with a
    shared ``backend``, …); it is read by each run and never stored in Dagster. With a
    :class:`MeltanoJob` loader the settings come from the Meltano project instead.
    """

    name: str
    loader: Loader
    tap_config_path: Path | None = None
    partitions: Granularity = "hourly"
    start: datetime | None = None  # first partition; default: the config's start_date
    end: datetime | None = None  # end of the last partition (exclusive); default: open-ended
    export_lag_hours: int | None = None  # default: the config's export_lag_hours, else 2
    schedule_minute: int = 10  # minutes past the hour the export schedule ticks
    snapshot_cron: str = "0 3 * * *"
    retries: int = 3
    retry_delay_seconds: float = 60.0

    @property
    def pool(self) -> str:
        """The Dagster concurrency pool every asset of this project runs in."""
        return f"amplitude-{self.name}"

    @property
    def prefix(self) -> list[str]:
        """Asset key prefix."""
        return ["amplitude", self.name]

    def tap_config(self) -> dict[str, t.Any]:
        """The tap's settings file, or nothing for a Meltano loader."""
        if self.tap_config_path is None:
            return {}
        config: dict[str, t.Any] = json.loads(self.tap_config_path.read_text(encoding="utf-8"))
        return config

    def lag(self) -> timedelta:
        """How long after an upload hour ends its events can be exported."""
        hours = self.export_lag_hours
        if hours is None:
            hours = int(self.tap_config().get("export_lag_hours", 2))
        return timedelta(hours=hours)

    def first_partition(self) -> datetime:
        """Where partitions begin: ``start``, else the tap config's ``start_date``."""
        if self.start is not None:
            return self.start
        start_date = self.tap_config().get("start_date")
        if not start_date:
            msg = f"Amplitude project {self.name}: give start= or a start_date in the tap config"
            raise ValueError(msg)
        return parse_datetime(str(start_date))


def export_partitions(project: AmplitudeProject) -> dg.TimeWindowPartitionsDefinition:
    """Upload-time partitions; hourly ones appear once the export lag has passed."""
    start = project.first_partition().astimezone(timezone.utc)
    end = project.end.astimezone(timezone.utc) if project.end else None
    if project.partitions == "hourly":
        lag_hours = int(project.lag().total_seconds() // 3600)
        return dg.HourlyPartitionsDefinition(
            start_date=start.strftime(HOURLY_FORMAT),
            end_date=end.strftime(HOURLY_FORMAT) if end else None,
            timezone="UTC",
            end_offset=-lag_hours,
        )
    return dg.DailyPartitionsDefinition(
        start_date=start.strftime(DAILY_FORMAT),
        end_date=end.strftime(DAILY_FORMAT) if end else None,
        timezone="UTC",
    )


def newest_closed_partition(project: AmplitudeProject, tick: datetime) -> str | None:
    """The newest partition whose upload range ended at least the export lag before ``tick``."""
    ready = tick.astimezone(timezone.utc) - project.lag()
    if project.partitions == "hourly":
        end = ready.replace(minute=0, second=0, microsecond=0)
        start, fmt = end - timedelta(hours=1), HOURLY_FORMAT
    else:
        end = ready.replace(hour=0, minute=0, second=0, microsecond=0)
        start, fmt = end - timedelta(days=1), DAILY_FORMAT
    if start < project.first_partition() or (project.end is not None and end > project.end):
        return None
    return start.strftime(fmt)


def export_cron(project: AmplitudeProject) -> str:
    """Hourly: every hour at ``schedule_minute``; daily: once the lag after midnight has passed."""
    if project.partitions == "hourly":
        return f"{project.schedule_minute} * * * *"
    lag_hours = int(project.lag().total_seconds() // 3600)
    return f"{project.schedule_minute} {lag_hours % 24} * * *"


def describe_range(start: datetime, end: datetime) -> str:
    """``upload hours 2024-03-01 05:00–06:00 UTC``."""
    if end - start <= timedelta(hours=1):
        return f"upload hour {start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC"
    return f"upload hours {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"


def failure_message(  # noqa: PLR0913 - every part is one part of the message
    project: AmplitudeProject,
    what: str,
    error: PipelineError,
    *,
    attempt: int,
    attempts: int,
    rerun: str,
) -> str:
    """What failed, why, and what to do: the text Dagster's UI shows for a failed step."""
    head = f"Amplitude project {project.name}, {what}: {error.process} exited {error.exit_code}"
    head += f": {error.error}"
    if error.permanent:
        return (
            f"{head}. Not retried: this needs a fix, not another try. What to do: correct "
            f"the tap config ({project.tap_config_path or 'the Meltano project'}) or the "
            f"target's settings as the error says, then {rerun}."
        )
    if attempt < attempts:
        return f"{head}. Attempt {attempt} of {attempts}; Dagster retries it."
    return (
        f"{head}. Failed {attempts} times, so this is not a passing glitch. What to do: check "
        "Amplitude's status and the target database (its log is in this step's stderr), then "
        f"{rerun}. Re-running is safe: rows are merged on uuid, so nothing is loaded twice."
    )


def _run(
    context: dg.AssetExecutionContext,
    project: AmplitudeProject,
    run: TapRun,
    what: str,
    rerun: str,
) -> RunOutcome:
    """Run the pipeline; turn a failure into a Dagster Failure that reads well in the UI."""
    attempts = project.retries + 1
    try:
        return run_pipeline(project.tap_config_path, project.loader, run, log=context.log.info)
    except PipelineError as exc:
        message = failure_message(
            project, what, exc, attempt=context.retry_number + 1, attempts=attempts, rerun=rerun
        )
        context.log.error(message)  # noqa: TRY400 - the message is the whole story
        raise dg.Failure(
            description=message,
            metadata={
                "what": what,
                "process": exc.process,
                "error": exc.error,
                "attempt": f"{context.retry_number + 1} of {attempts}",
            },
            allow_retries=not exc.permanent,
        ) from None


def project_definitions(project: AmplitudeProject) -> dg.Definitions:
    """The assets, jobs and schedules of one Amplitude project."""
    partitions_def = export_partitions(project)
    retry = dg.RetryPolicy(
        max_retries=project.retries,
        delay=project.retry_delay_seconds,
        backoff=dg.Backoff.EXPONENTIAL,
    )
    group = f"amplitude_{project.name}".replace("-", "_")
    export_key = dg.AssetKey([*project.prefix, EXPORT_STREAM])

    @dg.asset(
        key=export_key,
        partitions_def=partitions_def,
        pool=project.pool,
        retry_policy=retry,
        group_name=group,
        kinds={"python"},
        description=(
            "Raw events from Amplitude's Export API; one partition is one upload-time range, "
            "loaded idempotently on uuid."
        ),
    )
    def export_events(context: dg.AssetExecutionContext) -> dg.MaterializeResult[t.Any]:
        window = context.partition_time_window
        start, end = window.start.astimezone(timezone.utc), window.end.astimezone(timezone.utc)
        what = f"{describe_range(start, end)} (partition {context.partition_key})"
        exportable = datetime.now(tz=timezone.utc) - project.lag()
        if end > exportable:
            raise dg.Failure(
                description=(
                    f"Amplitude project {project.name}, {what}: not exportable before "
                    f"{end + project.lag():%Y-%m-%d %H:%M} UTC (Amplitude needs about "
                    f"{project.lag()} after an hour ends); the schedule loads it then."
                ),
                allow_retries=False,
            )
        rerun = (
            f"materialize partition {context.partition_key} of "
            f"{export_key.to_user_string()} again (UI: the asset's Partitions tab)"
        )
        run = TapRun((EXPORT_STREAM,), start, end, context.partition_key)
        outcome = _run(context, project, run, what, rerun)
        events = outcome.records.get(EXPORT_STREAM, 0)
        context.log.info("%s: %d events in %.1f s", what, events, outcome.seconds)
        return dg.MaterializeResult(
            metadata={
                "events": events,
                "seconds": round(outcome.seconds, 2),
                "upload_start": start.isoformat(),
                "upload_end": end.isoformat(),
            }
        )

    snapshot_specs = [
        dg.AssetSpec(
            [*project.prefix, stream],
            skippable=True,
            group_name=group,
            kinds={"python"},
            description=f"Amplitude {stream}: a full snapshot on every run.",
        )
        for stream in SNAPSHOT_STREAMS
    ]

    @dg.multi_asset(
        specs=snapshot_specs,
        name=f"{group}_snapshot_streams",
        can_subset=True,
        pool=project.pool,
        retry_policy=retry,
    )
    def snapshots(context: dg.AssetExecutionContext) -> t.Iterator[dg.MaterializeResult[t.Any]]:
        keys = sorted(context.selected_asset_keys, key=lambda key: key.path[-1])
        streams = tuple(key.path[-1] for key in keys)
        what = f"snapshot streams {', '.join(streams)}"
        rerun = "materialize these assets again"
        outcome = _run(context, project, TapRun(streams), what, rerun)
        for key in keys:
            yield dg.MaterializeResult(
                asset_key=key, metadata={"records": outcome.records.get(key.path[-1], 0)}
            )

    export_job = dg.define_asset_job(
        f"{group}_export",
        selection=[export_key],
        tags=RUN_RETRY_TAGS,
    )
    snapshot_job = dg.define_asset_job(
        f"{group}_snapshots", selection=[spec.key for spec in snapshot_specs], tags=RUN_RETRY_TAGS
    )

    @dg.schedule(
        name=f"{group}_export_schedule",
        cron_schedule=export_cron(project),
        job=export_job,
        execution_timezone="UTC",
        description="Loads the newest upload range once Amplitude's export lag has passed.",
    )
    def export_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> dg.RunRequest | dg.SkipReason:
        tick = context.scheduled_execution_time
        key = newest_closed_partition(project, tick)
        if key is None:
            return dg.SkipReason("no partition has closed yet")
        return dg.RunRequest(run_key=key, partition_key=key)

    snapshot_schedule = dg.ScheduleDefinition(
        name=f"{group}_snapshot_schedule",
        job=snapshot_job,
        cron_schedule=project.snapshot_cron,
        execution_timezone="UTC",
    )
    return dg.Definitions(
        assets=[export_events, snapshots],
        jobs=[export_job, snapshot_job],
        schedules=[export_schedule, snapshot_schedule],
    )


def build_definitions(
    *projects: AmplitudeProject, executor: dg.ExecutorDefinition | None = None
) -> dg.Definitions:
    """Definitions for every project, run by ``executor`` (default: the multiprocess one).

    On Kubernetes pass ``dagster_k8s.k8s_job_executor`` to run each step in its own pod.
    """
    return dg.Definitions.merge(
        *(project_definitions(project) for project in projects),
        dg.Definitions(executor=executor or dg.multiprocess_executor),
    )


__all__ = [
    "DEFAULT_POOL_LIMIT",
    "SNAPSHOT_STREAMS",
    "AmplitudeProject",
    "MeltanoJob",
    "build_definitions",
    "newest_closed_partition",
]
