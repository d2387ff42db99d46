"""Meltano into PostgreSQL through MeltanoLabs' target-postgres, with RECORD and BATCH messages."""
# ruff: noqa: S608 - the SQL is built from this module's own schema names

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest

from tap_amplitude.timestamps import EVENT_TIMESTAMP_FIELDS
from tests.e2e.support import DAY, E2E_DATASET, export_starts, iso

if TYPE_CHECKING:
    from pathlib import Path

    from amplitude_simulator import AmplitudeSimulator
    from tests.e2e.support import Meltano, Postgres

pytestmark = pytest.mark.e2e

TIMESTAMP_COLUMNS = EVENT_TIMESTAMP_FIELDS
FIRST_END = E2E_DATASET.start + 3 * DAY
SECOND_END = E2E_DATASET.start + 4 * DAY


def utc(value: str) -> datetime:
    """A timestamp from Amplitude (zone-less UTC) or PostgreSQL's JSON (either kind)."""
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def loaded_events(postgres: Postgres, schema: str) -> dict[str, dict[str, Any]]:
    """The export_events rows by uuid, failing on a duplicate uuid."""
    rows = postgres.query(f"SELECT * FROM {schema}.export_events")
    by_uuid = {row["uuid"]: row for row in rows}
    assert len(by_uuid) == len(rows), "a uuid was loaded more than once"
    return by_uuid


def assert_loaded_as_exported(
    postgres: Postgres, schema: str, expected: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Every expected event exactly once, nested bags as jsonb, timestamps as timestamps."""
    loaded = loaded_events(postgres, schema)
    assert set(loaded) == {event["uuid"] for event in expected}
    for event in expected:
        row = loaded[event["uuid"]]
        assert row["event_type"] == event["event_type"]
        assert row["event_properties"] == event["event_properties"]
        assert row["user_properties"] == event["user_properties"]
        assert row["app"] == E2E_DATASET.app_id
        for column in TIMESTAMP_COLUMNS:
            assert utc(row[column]) == utc(event[column]), column
    types = {
        row["column_name"]: row["data_type"]
        for row in postgres.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = '{schema}' AND table_name = 'export_events'"
        )
    }
    assert types["event_properties"] == "jsonb"
    assert types["user_properties"] == "jsonb"
    for column in TIMESTAMP_COLUMNS:
        assert types[column].startswith("timestamp"), (column, types[column])
    (key,) = postgres.query(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        f"WHERE i.indrelid = '{schema}.export_events'::regclass AND i.indisprimary"
    )
    assert key["attname"] == "uuid"
    return loaded


def mark_loaded_rows(postgres: Postgres, schema: str) -> None:
    """Tag every row loaded so far; a later run that rewrites one of them clears the tag."""
    postgres.psql(f"UPDATE {schema}.export_events SET event_type = 'sentinel:' || event_type")


@dataclass(frozen=True)
class Case:
    """One way of loading: the Meltano pipeline, its environment, the target schema."""

    pipeline: tuple[str, str]
    env: dict[str, str]
    schema: str


def run_twice(
    meltano: Meltano, simulator: AmplitudeSimulator, postgres: Postgres, case: Case
) -> None:
    """A first run up to FIRST_END, then an incremental run up to SECOND_END."""
    pipeline, env, schema = case.pipeline, case.env, case.schema
    meltano.run("run", *pipeline, env={**env, "TAP_AMPLITUDE_END_DATE": iso(FIRST_END)})
    first = E2E_DATASET.expected_events(E2E_DATASET.start, FIRST_END)
    assert_loaded_as_exported(postgres, schema, first)
    event_types = postgres.query(f"SELECT value, app FROM {schema}.event_types")
    assert {row["value"] for row in event_types} == {t["value"] for t in E2E_DATASET.event_types()}
    # Amplitude's events/list has no project id: `app` comes from the project_id setting.
    assert {row["app"] for row in event_types} == {E2E_DATASET.app_id}

    mark_loaded_rows(postgres, schema)
    simulator.clear_requests()
    meltano.run("run", *pipeline, env={**env, "TAP_AMPLITUDE_END_DATE": iso(SECOND_END)})

    # The second run asked only for hours after the bookmark...
    starts = export_starts(simulator)
    assert starts, "the incremental run sent no export request"
    assert min(starts) == FIRST_END.strftime("%Y%m%dT%H")
    # ...and loaded exactly the new events, leaving every earlier row untouched.
    new = E2E_DATASET.expected_events(FIRST_END, SECOND_END)
    rows = postgres.query(f"SELECT uuid, event_type FROM {schema}.export_events")
    untouched = {r["uuid"] for r in rows if r["event_type"].startswith("sentinel:")}
    assert untouched == {event["uuid"] for event in first}
    assert {r["uuid"] for r in rows} - untouched == {event["uuid"] for event in new}
    postgres.psql(
        f"UPDATE {schema}.export_events SET event_type = substr(event_type, 10) "
        "WHERE event_type LIKE 'sentinel:%'"
    )
    assert_loaded_as_exported(postgres, schema, first + new)


def test_record_messages_into_postgres(
    meltano: Meltano, simulator: AmplitudeSimulator, tap_env: dict[str, str], postgres: Postgres
) -> None:
    schema = "e2e_records"
    env = {**tap_env, **postgres.target_env(schema)}
    run_twice(meltano, simulator, postgres, Case(("tap-amplitude", "target-postgres"), env, schema))
    state = meltano.state("dev:tap-amplitude-to-target-postgres")
    bookmark = state["singer_state"]["bookmarks"]["export_events"]["replication_key_value"]
    assert utc(bookmark) == SECOND_END
    # RECORD messages go through the target's metadata columns.
    (row,) = postgres.query(
        f"SELECT count(*) AS n FROM {schema}.export_events WHERE _sdc_extracted_at IS NULL"
    )
    assert row["n"] == 0


def test_batch_messages_into_postgres(
    meltano: Meltano,
    simulator: AmplitudeSimulator,
    tap_env: dict[str, str],
    postgres: Postgres,
    tmp_path: Path,
) -> None:
    schema = "e2e_batches"
    batches = tmp_path / "batches"
    batch_config = {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": batches.as_uri(), "prefix": "e2e-"},
    }
    env = {  # the inherited extractor reads TAP_AMPLITUDE_* too (its namespace)
        **tap_env,
        "TAP_AMPLITUDE_BATCH_BATCH_CONFIG": json.dumps(batch_config),
        **postgres.target_env(schema),
    }
    case = Case(("tap-amplitude-batch", "target-postgres"), env, schema)
    run_twice(meltano, simulator, postgres, case)

    # The rows really travelled as BATCH files: raw records, gzipped JSON lines.
    files = sorted(batches.glob("e2e-*export_events*.json.gz"))
    assert files, f"no batch files in {batches}: {sorted(batches.iterdir())}"
    in_files: set[str] = set()
    for path in files:
        with gzip.open(path, "rt") as lines:
            in_files.update(json.loads(line)["uuid"] for line in lines)
    everything = E2E_DATASET.expected_events(E2E_DATASET.start, SECOND_END)
    assert in_files == {event["uuid"] for event in everything}
    # target-postgres inserts BATCH records as they are: no _sdc_* metadata columns are filled.
    (row,) = postgres.query(
        f"SELECT count(*) AS n FROM {schema}.export_events WHERE _sdc_extracted_at IS NOT NULL"
    )
    assert row["n"] == 0
