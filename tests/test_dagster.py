"""The Dagster integration, fast parts: schedules, partitions, failure messages, one real run.

The parallel, retried, idempotent materializations into PostgreSQL are in
tests/e2e/test_dagster.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from amplitude_simulator import AmplitudeSimulator, Fault
from tap_amplitude.dagster import (
    AmplitudeProject,
    MeltanoJob,
    SingerTarget,
    build_definitions,
    newest_closed_partition,
)
from tap_amplitude.dagster.assets import export_cron, failure_message
from tap_amplitude.dagster.pipeline import (
    PipelineError,
    TapRun,
    meltano_command,
    run_pipeline,
)
from tests.helpers import simulator_config

UTC = timezone.utc
START = datetime(2024, 3, 1, tzinfo=UTC)


def _project(tmp_path: Path, **overrides: Any) -> AmplitudeProject:
    config = tmp_path / "tap.json"
    config.write_text(json.dumps({"start_date": "2024-03-01T00:00:00Z", "export_lag_hours": 2}))
    settings: dict[str, Any] = {
        "name": "web",
        "loader": SingerTarget(("target-jsonl",)),
        "tap_config_path": config,
    }
    settings.update(overrides)
    return AmplitudeProject(**settings)


def _tick(defs: dg.Definitions, name: str, when: datetime) -> list[dg.RunRequest]:
    schedule = defs.resolve_schedule_def(name)
    with dg.build_schedule_context(
        scheduled_execution_time=when, repository_def=defs.get_repository_def()
    ) as context:
        data = schedule.evaluate_tick(context)
    return list(data.run_requests or [])


def test_an_hourly_tick_requests_the_newest_exportable_hour(tmp_path: Path) -> None:
    project = _project(tmp_path)
    defs = build_definitions(project)
    assert export_cron(project) == "10 * * * *"
    # At 10:10 with a 2 h lag, 08:00 is the newest exportable end: the 07:00 hour.
    requests = _tick(
        defs, "amplitude_web_export_schedule", datetime(2024, 3, 5, 10, 10, tzinfo=UTC)
    )
    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("2024-03-05-07:00", "2024-03-05-07:00")
    ]
    # the partition exists, and the next one does not yet (end_offset = -lag)
    job = defs.resolve_job_def("amplitude_web_export")
    partitions = job.partitions_def
    assert partitions is not None
    keys = partitions.get_partition_keys(current_time=datetime(2024, 3, 5, 10, 10, tzinfo=UTC))
    assert keys[-1] == "2024-03-05-07:00"
    assert keys[0] == "2024-03-01-00:00"


def test_a_daily_tick_requests_yesterday_once_the_lag_has_passed(tmp_path: Path) -> None:
    project = _project(tmp_path, partitions="daily", name="app")
    defs = build_definitions(project)
    assert export_cron(project) == "10 2 * * *"
    requests = _tick(defs, "amplitude_app_export_schedule", datetime(2024, 3, 5, 2, 10, tzinfo=UTC))
    assert [r.partition_key for r in requests] == ["2024-03-04"]
    # before the lag has passed, the day before is the newest closed one
    assert newest_closed_partition(project, datetime(2024, 3, 5, 1, 59, tzinfo=UTC)) == (
        "2024-03-03"
    )


def test_partitions_end_where_the_project_says(tmp_path: Path) -> None:
    project = _project(tmp_path, end=datetime(2024, 3, 4, tzinfo=UTC))
    defs = build_definitions(project)
    partitions = defs.resolve_job_def("amplitude_web_export").partitions_def
    assert partitions is not None
    keys = partitions.get_partition_keys(current_time=datetime(2026, 1, 1, tzinfo=UTC))
    assert (len(keys), keys[-1]) == (72, "2024-03-03-23:00")
    assert newest_closed_partition(project, datetime(2024, 3, 4, 2, 10, tzinfo=UTC)) == (
        "2024-03-03-23:00"
    )
    assert newest_closed_partition(project, datetime(2024, 3, 4, 3, 10, tzinfo=UTC)) is None


def test_no_partition_before_the_first_one_closes(tmp_path: Path) -> None:
    project = _project(tmp_path)
    defs = build_definitions(project)
    requests = _tick(defs, "amplitude_web_export_schedule", datetime(2024, 3, 1, 2, 30, tzinfo=UTC))
    assert requests == []
    assert newest_closed_partition(project, datetime(2024, 3, 1, 3, 0, tzinfo=UTC)) == (
        "2024-03-01-00:00"
    )


def test_assets_pool_and_snapshot_schedule(tmp_path: Path) -> None:
    defs = build_definitions(_project(tmp_path), _project(tmp_path, name="mobile"))
    dg.Definitions.validate_loadable(defs)  # what `dagster dev` loads: no name clashes
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert "amplitude/web/export_events" in keys
    assert {"amplitude/web/event_types", "amplitude/web/cohorts", "amplitude/web/annotations"} <= (
        keys
    )
    export = graph.get(dg.AssetKey(["amplitude", "web", "export_events"]))
    snapshot = graph.get(dg.AssetKey(["amplitude", "web", "event_types"]))
    assert export.pools == {"amplitude-web"}
    assert snapshot.pools == {"amplitude-web"}
    assert snapshot.partitions_def is None
    schedule = defs.resolve_schedule_def("amplitude_web_snapshot_schedule")
    assert schedule.cron_schedule == "0 3 * * *"


def test_the_final_failure_says_which_hour_which_error_and_what_to_do(tmp_path: Path) -> None:
    project = _project(tmp_path)
    error = PipelineError("tap-amplitude", 1, "export_events: HTTP 500 from Amplitude")
    what = "upload hour 2024-03-01 05:00–06:00 UTC (partition 2024-03-01-05:00)"
    rerun = "materialize partition 2024-03-01-05:00 again"
    early = failure_message(project, what, error, attempt=1, attempts=4, rerun=rerun)
    assert "Attempt 1 of 4; Dagster retries it." in early
    final = failure_message(project, what, error, attempt=4, attempts=4, rerun=rerun)
    assert "upload hour 2024-03-01 05:00–06:00 UTC" in final
    assert "HTTP 500 from Amplitude" in final
    assert "Failed 4 times" in final
    assert "What to do:" in final
    assert rerun in final
    permanent = PipelineError("tap-amplitude", 1, "Invalid configuration: api_key: is empty")
    assert permanent.permanent
    message = failure_message(project, what, permanent, attempt=1, attempts=4, rerun=rerun)
    assert "Not retried" in message
    assert str(project.tap_config_path) in message


def test_meltano_jobs_get_a_state_id_per_partition() -> None:
    job = MeltanoJob(loader="target-postgres", meltano=("scripts/meltano.sh",), environment="prod")
    run = TapRun(
        ("export_events",),
        datetime(2024, 3, 1, 5, tzinfo=UTC),
        datetime(2024, 3, 1, 6, tzinfo=UTC),
        "2024-03-01-05:00",
    )
    argv, env = meltano_command(job, run)
    assert argv == [
        "scripts/meltano.sh",
        "--environment",
        "prod",
        "run",
        "--state-id-suffix",
        "dagster-2024-03-01-05-00",
        "tap-amplitude",
        "target-postgres",
    ]
    assert env == {
        "TAP_AMPLITUDE__SELECT": '["export_events.*"]',
        "TAP_AMPLITUDE_START_DATE": "2024-03-01T05:00:00Z",
        "TAP_AMPLITUDE_END_DATE": "2024-03-01T06:00:00Z",
    }


_WRITE_STDIN = "import sys; open(sys.argv[1], 'wb').write(sys.stdin.buffer.read())"


def test_one_partition_run_extracts_exactly_its_hour(
    simulator: AmplitudeSimulator, tmp_path: Path
) -> None:
    config = tmp_path / "tap.json"
    config.write_text(json.dumps(simulator_config(simulator)))
    out = tmp_path / "out.jsonl"
    target = SingerTarget((sys.executable, "-c", _WRITE_STDIN, str(out)))
    run = TapRun(
        ("export_events",),
        datetime(2024, 3, 1, 5, tzinfo=UTC),
        datetime(2024, 3, 1, 6, tzinfo=UTC),
        "2024-03-01-05:00",
    )
    outcome = run_pipeline(config, target, run, log=lambda _: None)
    records = [
        json.loads(line)["record"]
        for line in out.read_text().splitlines()
        if json.loads(line)["type"] == "RECORD"
    ]
    assert outcome.records == {"export_events": len(records)}
    assert records
    assert {r["server_upload_time"][:13] for r in records} == {"2024-03-01T05"}
    exports = [r.params for r in simulator.requests if r.path == "/api/2/export"]
    assert exports == [{"start": "20240301T05", "end": "20240301T05"}]


def test_a_failed_run_names_the_tap_error(simulator: AmplitudeSimulator, tmp_path: Path) -> None:
    config = tmp_path / "tap.json"
    config.write_text(json.dumps(simulator_config(simulator, secret_key="wrong")))
    target = SingerTarget((sys.executable, "-c", "import sys; sys.stdin.buffer.read()"))
    run = TapRun(("export_events",), START, START.replace(hour=1), "2024-03-01-00:00")
    with pytest.raises(PipelineError) as failed:
        run_pipeline(config, target, run, log=lambda _: None)
    assert failed.value.process == "tap-amplitude"
    assert "refused the credentials" in failed.value.error
    assert failed.value.permanent
    assert "wrong" not in str(failed.value)


def test_a_server_error_is_not_permanent(simulator: AmplitudeSimulator, tmp_path: Path) -> None:
    simulator.add_fault("/api/2/export", Fault.status(400), times=1)
    config = tmp_path / "tap.json"
    config.write_text(json.dumps(simulator_config(simulator)))
    target = SingerTarget((sys.executable, "-c", "import sys; sys.stdin.buffer.read()"))
    run = TapRun(("export_events",), START, START.replace(hour=1), "2024-03-01-00:00")
    with pytest.raises(PipelineError) as failed:
        run_pipeline(config, target, run, log=lambda _: None)
    assert not failed.value.permanent, failed.value.error


def test_the_core_tap_never_imports_dagster() -> None:
    code = (
        "import sys, tap_amplitude.tap, tap_amplitude.ratelimit, tap_amplitude.shared_slots; "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'dagster'], 'dagster imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


SECRET = "s3cr3t-never-shown"  # noqa: S105 - a marker to look for, not a credential


@pytest.mark.parametrize(
    ("config_text", "env", "named"),
    [
        (None, {}, "TAP_CONFIG names"),  # the file does not exist
        (f'{{"secret_key": "{SECRET}", ', {}, "TAP_CONFIG names"),  # not JSON
        ("[1, 2]", {}, "TAP_CONFIG names"),
        (f'{{"secret_key": "{SECRET}", "start_date": "13/2024"}}', {}, "START is not set"),
        ('{"start_date": "2024-03-01", "export_lag_hours": "two"}', {}, "TAP_CONFIG names"),
        ('{"start_date": "2024-03-01"}', {"START": "yesterday"}, "START is not an ISO 8601"),
        ('{"start_date": "2024-03-01"}', {"END": "2024-02-01"}, "END must be after"),
        ('{"start_date": "2024-03-01"}', {"RETRIES": "three"}, "RETRIES must be"),
        ('{"start_date": "2024-03-01"}', {"RETRIES": "-1"}, "RETRIES must be"),
        ('{"start_date": "2024-03-01"}', {"RETRY_DELAY": "nan"}, "RETRY_DELAY must be"),
    ],
)
def test_definitions_from_a_bad_environment_fail_in_one_line_naming_the_variable(
    tmp_path: Path, config_text: str | None, env: dict[str, str], named: str
) -> None:
    """A code location that cannot load says which variable to fix (was a bare ValueError)."""
    config = tmp_path / "tap.json"
    if config_text is not None:
        config.write_text(config_text)
    environ = {
        "PATH": "/usr/bin:/bin",
        "TAP_AMPLITUDE_DAGSTER_TAP_CONFIG": str(config),
        "TAP_AMPLITUDE_DAGSTER_TARGET": "target-jsonl",
        **{f"TAP_AMPLITUDE_DAGSTER_{name}": value for name, value in env.items()},
    }
    result = subprocess.run(
        [sys.executable, "-c", "import tap_amplitude.dagster.definitions"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"RuntimeError: TAP_AMPLITUDE_DAGSTER_{named}"), result.stderr
    assert SECRET not in result.stderr
