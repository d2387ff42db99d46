"""Dagster end to end: partitions materialized in parallel into a real PostgreSQL, and the UI.

The runs go through Dagster's own execution API (``execute_job``, multiprocess executor) on a
persistent instance whose pool allows 2 partitions of the project at once; every step runs
the real tap against the simulator, piped into target-postgres from meltano.yml, with the
rate budget shared through the same PostgreSQL (``rate_limits.backend``).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import pytest

from amplitude_simulator import AmplitudeSimulator, Fault
from tests.e2e.support import (
    MELTANO_SH,
    ROOT,
    Postgres,
    clean_environ,
    free_port,
)

pytestmark = pytest.mark.e2e

TARGET_POSTGRES = (
    ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"
)
DEFINITIONS = "tap_amplitude.dagster.definitions"
PROJECT = "e2e"
POOL = f"amplitude-{PROJECT}"
POOL_LIMIT = 2
HOURS = [datetime(2024, 3, 1, hour, tzinfo=timezone.utc) for hour in (7, 8, 9)]
KEYS = [hour.strftime("%Y-%m-%d-%H:%M") for hour in HOURS]
WARM_UP_KEY = datetime(2024, 3, 1, 5, tzinfo=timezone.utc).strftime("%Y-%m-%d-%H:%M")
FAILING = HOURS[1]  # its first attempt gets a 400 the tap cannot get past on its own


@pytest.fixture(scope="module")
def target_postgres() -> Path:
    """target-postgres as meltano.yml pins it (.ci/run installs every plugin first)."""
    if not TARGET_POSTGRES.exists():
        subprocess.run(
            [
                str(MELTANO_SH),
                "--log-level",
                "warning",
                "install",
                "--plugin-type",
                "loader",
                "target-postgres",
            ],
            env={**clean_environ(), "MELTANO_ENVIRONMENT": "dev"},
            check=True,
            timeout=900,
        )
    return TARGET_POSTGRES


def _pg_url(postgres: Postgres) -> str:
    s = postgres.settings
    return f"postgresql://{s['PGUSER']}:{s['PGPASSWORD']}@{s['PGHOST']}:{s['PGPORT']}/{s['PGDATABASE']}"


@pytest.fixture
def dagster_env(
    simulator: AmplitudeSimulator,
    postgres: Postgres,
    target_postgres: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """The TAP_AMPLITUDE_DAGSTER_* settings, and a Dagster instance directory (returned)."""
    schema = "dagster_e2e"
    postgres.psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    tap = {
        "api_key": simulator.project.api_key,
        "secret_key": simulator.project.secret_key,
        "api_url": simulator.url,
        "profile_api_url": simulator.url,
        "start_date": "2024-03-01T00:00:00Z",
        "rate_limits": {"backend": _pg_url(postgres)},
    }
    target = {
        "host": postgres.settings["PGHOST"],
        "port": int(postgres.settings["PGPORT"]),
        "user": postgres.settings["PGUSER"],
        "password": postgres.settings["PGPASSWORD"],
        "database": postgres.settings["PGDATABASE"],
        "default_target_schema": schema,
        "use_copy": True,
    }
    (tmp_path / "tap.json").write_text(json.dumps(tap))
    (tmp_path / "target.json").write_text(json.dumps(target))
    home = tmp_path / "dagster-home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    for name, value in {
        "TAP_CONFIG": str(tmp_path / "tap.json"),
        "TARGET": f"{target_postgres} --config {tmp_path / 'target.json'}",
        "PROJECT": PROJECT,
        "END": "2024-03-07T00:00:00Z",  # the e2e dataset's days only
        "RETRIES": "2",
        "RETRY_DELAY": "0",
    }.items():
        monkeypatch.setenv(f"TAP_AMPLITUDE_DAGSTER_{name}", value)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def _materialize(home: Path, keys: list[str]) -> list[tuple[bool, str]]:
    """One run per partition, all at once: ``dagster asset materialize`` in its own process.

    Each is Dagster's own execution path (``execute_job`` with the definitions' multiprocess
    executor) on the shared instance; (success, run id) per partition, in order.
    """
    argv = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", DEFINITIONS]
    argv += ["--select", f"amplitude/{PROJECT}/export_events", "--partition"]
    logs = [home.parent / f"materialize-{key.replace(':', '')}.log" for key in keys]
    processes = []
    for key, log in zip(keys, logs, strict=True):
        with log.open("w") as out:
            processes.append(
                subprocess.Popen([*argv, key], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            )
    for process in processes:
        process.wait(timeout=240)
    outcomes = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for key, process, log in zip(keys, processes, logs, strict=True):
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": key}), limit=1)
            assert runs, log.read_text()[-3000:]
            success = process.returncode == 0 and runs[0].status == dg.DagsterRunStatus.SUCCESS
            outcomes.append((success, runs[0].run_id))
    return outcomes


def _step_intervals(instance: Any, run_ids: list[str]) -> list[tuple[float, float]]:
    """(start, end) of every step attempt of the runs, from Dagster's event log."""
    intervals = []
    for run_id in run_ids:
        started = None
        for record in instance.all_logs(run_id):
            event = record.dagster_event
            if event is None:
                continue
            kind = event.event_type_value
            if kind in {"STEP_START", "STEP_RESTARTED"}:
                started = record.timestamp
            elif kind in {"STEP_SUCCESS", "STEP_FAILURE", "STEP_UP_FOR_RETRY"} and started:
                intervals.append((started, record.timestamp))
                started = None
    return intervals


def _peak(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def test_partitions_in_parallel_retried_idempotent(
    simulator: AmplitudeSimulator, postgres: Postgres, dagster_env: Path
) -> None:
    with dg.DagsterInstance.from_config(str(dagster_env)) as instance:
        instance.event_log_storage.set_concurrency_slots(POOL, POOL_LIMIT)
    simulator.add_fault(
        "/api/2/export",
        Fault.status(400),
        times=1,
        when=lambda params: params.get("start") == FAILING.strftime("%Y%m%dT%H"),
    )
    # A first load creates the target's table and the shared budget's tables; partitions that
    # start together on an empty database race on that DDL (one fails and is retried). Warm
    # up with an hour outside the test, then empty the table, as after any first load.
    assert _materialize(dagster_env, [WARM_UP_KEY]) == [(True, mock.ANY)]
    postgres.psql("DELETE FROM dagster_e2e.export_events")
    results = _materialize(dagster_env, KEYS)
    assert [success for success, _ in results] == [True, True, True]

    rows = postgres.query(
        "SELECT uuid::text AS uuid, server_upload_time::text AS uploaded "
        "FROM dagster_e2e.export_events"
    )
    uuids = [row["uuid"] for row in rows]
    assert len(uuids) == len(set(uuids)), "a uuid landed twice"
    expected = {
        str(event["uuid"]) for hour in HOURS for event in simulator.dataset.events_for_hour(hour)
    }
    assert all(simulator.dataset.events_for_hour(hour) for hour in HOURS)  # none is empty
    assert set(uuids) == expected  # every event of the three hours, nothing else
    uploaded = sorted({row["uploaded"][:13] for row in rows})
    assert uploaded == [f"2024-03-01 0{h.hour}" for h in HOURS], (uploaded, len(rows))

    with dg.DagsterInstance.from_config(str(dagster_env)) as instance:
        run_ids = [run_id for _, run_id in results]
        logs = {run_id: instance.all_logs(run_id) for run_id in run_ids}
        retried = [
            run_id
            for run_id, records in logs.items()
            if any(
                r.dagster_event and r.dagster_event.event_type_value == "STEP_UP_FOR_RETRY"
                for r in records
            )
        ]
        assert retried == [run_ids[1]]  # the failing hour, and only it, was retried, then landed
        failure = next(
            r.dagster_event
            for r in logs[run_ids[1]]
            if r.dagster_event and r.dagster_event.event_type_value == "STEP_UP_FOR_RETRY"
        )
        assert "upload hour 2024-03-01 08:00–09:00 UTC" in str(failure.event_specific_data)
        peak = _peak(_step_intervals(instance, run_ids))
        assert 2 <= peak <= POOL_LIMIT  # in parallel, never more than the pool allows

    # The shared rate budget lives in the same PostgreSQL: every tap process used it.
    tables = postgres.psql("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'ratelimit___%'")
    assert int(tables) >= 1

    # A second materialization of a partition adds nothing (in process this time: quicker).
    definitions = importlib.import_module(DEFINITIONS)
    defs = importlib.reload(definitions).defs
    asset = defs.resolve_assets_def(dg.AssetKey(["amplitude", PROJECT, "export_events"]))
    with dg.DagsterInstance.from_config(str(dagster_env)) as instance:
        again = dg.materialize([asset], partition_key=KEYS[1], instance=instance)
    assert again.success
    count = postgres.psql("SELECT count(*) FROM dagster_e2e.export_events")
    assert int(count) == len(expected)


def test_the_readme_command_serves_the_dagster_ui(target_postgres: Path, tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    # scripts/dagster.sh starts its own PostgreSQL (scripts/postgres.sh) in a directory the
    # postgres system user can reach, on a free port; destroyed afterwards.
    pg_dir = tempfile.mkdtemp(prefix="tap-amplitude-e2e-dagster-pg-")
    env = {
        **clean_environ(),
        "DAGSTER_PORT": str(port),
        "DAGSTER_SIM_PORT": str(sim_port),
        "PG_DIR": pg_dir,
        "PG_PORT": str(free_port()),
    }
    log = tmp_path / "dagster.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "dagster.sh")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        info, assets = _wait_for_ui(port, process, deadline=time.monotonic() + 150)
        output = log.read_text()
        assert "dagster_webserver_version" in info, output[-3000:]
        assert "amplitude/187520/export_events" in assets, output[-3000:]
        assert "amplitude/187520/event_types" in assets
        assert "sim-secret-key" not in output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        subprocess.run(
            [str(ROOT / "scripts" / "postgres.sh"), "destroy"],
            env=env,
            capture_output=True,
            check=False,
        )


def _wait_for_ui(
    port: int, process: subprocess.Popen[bytes], *, deadline: float
) -> tuple[dict[str, Any], list[str]]:
    """The webserver's /server_info and the asset keys its GraphQL API lists, once it serves."""
    info: dict[str, Any] = {}
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as r:
                info = json.loads(r.read())
            query = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/graphql",
                data=query,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 - http://127.0.0.1
                nodes = json.loads(r.read())["data"]["assetNodes"]
            assets = ["/".join(node["assetKey"]["path"]) for node in nodes]
            if assets:
                return info, assets
        except (OSError, KeyError, TypeError, ValueError):
            pass
        time.sleep(1)
    return info, []
