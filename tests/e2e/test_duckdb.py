"""Meltano into the embedded database: BATCH files loaded by target-duckdb-batch."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.support import DAY, DUCKDB_QUERY, E2E_DATASET, ROOT, export_starts, iso

if TYPE_CHECKING:
    from pathlib import Path

    from amplitude_simulator import AmplitudeSimulator
    from tests.e2e.support import Meltano

pytestmark = pytest.mark.e2e

DUCKDB_PYTHON = ROOT / ".meltano" / "utilities" / "duckdb" / "venv" / "bin" / "python"
PIPELINE = ("tap-amplitude-batch", "target-duckdb-batch")
FIRST_END = E2E_DATASET.start + 2 * DAY
SECOND_END = E2E_DATASET.start + 3 * DAY


def query(env: dict[str, str], sql: str) -> list[dict[str, Any]]:
    """Rows from the DuckDB file, through the `duckdb` utility's interpreter and script."""
    result = subprocess.run(
        [str(DUCKDB_PYTHON), str(DUCKDB_QUERY), "query", sql],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def test_meltano_into_duckdb(
    meltano: Meltano, simulator: AmplitudeSimulator, tap_env: dict[str, str], tmp_path: Path
) -> None:
    batches = tmp_path / "batches"
    batch_config = {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": batches.as_uri(), "prefix": "e2e-"},
    }
    database = tmp_path / "warehouse.duckdb"
    env = {
        **tap_env,
        "TAP_AMPLITUDE_BATCH_BATCH_CONFIG": json.dumps(batch_config),
        "TARGET_DUCKDB_BATCH_DATABASE": str(database),
        "TARGET_DUCKDB_BATCH_DEFAULT_TARGET_SCHEMA": "amplitude",
        "DUCKDB_DATABASE": str(database),
        "DUCKDB_SCHEMA": "amplitude",
    }
    db_env = meltano.environ(env)
    meltano.run("run", *PIPELINE, env={**env, "TAP_AMPLITUDE_END_DATE": iso(FIRST_END)})
    first = E2E_DATASET.expected_events(E2E_DATASET.start, FIRST_END)
    assert len(query(db_env, "SELECT uuid FROM amplitude.export_events")) == len(first)

    simulator.clear_requests()
    meltano.run("run", *PIPELINE, env={**env, "TAP_AMPLITUDE_END_DATE": iso(SECOND_END)})
    new = E2E_DATASET.expected_events(FIRST_END, SECOND_END)
    expected = {event["uuid"]: event for event in first + new}

    # The incremental run asked only for hours after the bookmark.
    assert min(export_starts(simulator)) == FIRST_END.strftime("%Y%m%dT%H")
    state = meltano.state("dev:tap-amplitude-batch-to-target-duckdb-batch")
    bookmark = state["singer_state"]["bookmarks"]["export_events"]["replication_key_value"]
    assert bookmark.startswith(SECOND_END.strftime("%Y-%m-%dT%H:%M:%S"))

    rows = query(db_env, "SELECT * FROM amplitude.export_events")
    assert sorted(row["uuid"] for row in rows) == sorted(expected)  # each exactly once
    for row in rows:
        event = expected[row["uuid"]]
        assert row["event_properties"] == event["event_properties"]
        assert row["user_properties"] == event["user_properties"]
        assert row["event_type"] == event["event_type"]
        uploaded = datetime.fromisoformat(event["server_upload_time"]).replace(tzinfo=timezone.utc)
        assert datetime.fromisoformat(row["server_upload_time"]) == uploaded

    (types,) = query(
        db_env,
        "SELECT typeof(server_upload_time) AS upload, typeof(event_time) AS event, "
        "typeof(event_properties) AS props, typeof(amplitude_id) AS amplitude_id "
        "FROM amplitude.export_events LIMIT 1",
    )
    assert types == {
        "upload": "TIMESTAMP WITH TIME ZONE",
        "event": "TIMESTAMP WITH TIME ZONE",
        "props": "JSON",
        "amplitude_id": "BIGINT",
    }
    # event_types is a full-table stream keyed by `value`: two runs, one row per event type.
    event_types = query(db_env, "SELECT value FROM amplitude.event_types")
    assert sorted(row["value"] for row in event_types) == sorted(
        t["value"] for t in E2E_DATASET.event_types()
    )

    # Loading a range again (a retry, a backfill overlapping it) adds nothing: rows are
    # upserted on uuid, and replaced by the copy loaded last.
    meltano.run(
        "run",
        "--full-refresh",
        *PIPELINE,
        env={**env, "TAP_AMPLITUDE_END_DATE": iso(SECOND_END)},
    )
    (counts,) = query(
        db_env, "SELECT count(*) AS n, count(DISTINCT uuid) AS d FROM amplitude.export_events"
    )
    assert counts == {"n": len(expected), "d": len(expected)}
