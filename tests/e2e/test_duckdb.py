"""Meltano into the embedded database: target-jsonl's files, then ``duckdb:load``."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.support import DAY, DUCKDB_LOAD, E2E_DATASET, ROOT, export_starts, iso

if TYPE_CHECKING:
    from pathlib import Path

    from amplitude_simulator import AmplitudeSimulator
    from tests.e2e.support import Meltano

pytestmark = pytest.mark.e2e

DUCKDB_PYTHON = ROOT / ".meltano" / "utilities" / "duckdb" / "venv" / "bin" / "python"
PIPELINE = ("tap-amplitude", "target-jsonl", "duckdb:load")
FIRST_END = E2E_DATASET.start + 2 * DAY
SECOND_END = E2E_DATASET.start + 3 * DAY


def query(env: dict[str, str], sql: str) -> list[dict[str, Any]]:
    """Rows from the DuckDB file, through the utility's own interpreter and script."""
    result = subprocess.run(
        [str(DUCKDB_PYTHON), str(DUCKDB_LOAD), "query", sql],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def uuids_in(path: Path) -> list[str]:
    """The uuid of every record in one of target-jsonl's files."""
    return [json.loads(line)["uuid"] for line in path.read_text().splitlines()]


def test_meltano_into_duckdb(
    meltano: Meltano, simulator: AmplitudeSimulator, tap_env: dict[str, str], tmp_path: Path
) -> None:
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    env = {
        **tap_env,
        "TARGET_JSONL_DESTINATION_PATH": str(jsonl),
        "DUCKDB_JSONL_DIR": str(jsonl),
        "DUCKDB_DATABASE": str(tmp_path / "warehouse.duckdb"),
        "DUCKDB_SCHEMA": "amplitude",
    }
    meltano.run("run", *PIPELINE, env={**env, "TAP_AMPLITUDE_END_DATE": iso(FIRST_END)})
    first = E2E_DATASET.expected_events(E2E_DATASET.start, FIRST_END)
    first_files = set(jsonl.glob("export_events-*.jsonl"))

    simulator.clear_requests()
    meltano.run("run", *PIPELINE, env={**env, "TAP_AMPLITUDE_END_DATE": iso(SECOND_END)})
    new = E2E_DATASET.expected_events(FIRST_END, SECOND_END)
    expected = {event["uuid"]: event for event in first + new}

    # The incremental run asked only for hours after the bookmark and wrote only new events.
    assert min(export_starts(simulator)) == FIRST_END.strftime("%Y%m%dT%H")
    (second_file,) = set(jsonl.glob("export_events-*.jsonl")) - first_files
    assert sorted(uuids_in(second_file)) == sorted(event["uuid"] for event in new)

    db_env = meltano.environ(env)
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
    # event_types is a full-table stream: two runs, two files, one row per event type.
    event_types = query(db_env, "SELECT value FROM amplitude.event_types")
    assert sorted(row["value"] for row in event_types) == sorted(
        t["value"] for t in E2E_DATASET.event_types()
    )
    assert len(list(jsonl.glob("event_types-*.jsonl"))) == 2
