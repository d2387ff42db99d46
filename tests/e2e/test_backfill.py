"""A backfill split into three date ranges loaded in parallel, then one incremental job.

The commands are the ones docs/readme-pipelines.md gives under "Backfilling large projects":
``meltano run --state-id-suffix <range>`` per range, ``meltano state copy`` to seed the
incremental job with the newest range's bookmark.
"""
# ruff: noqa: S608 - the SQL is built from this module's own schema name

from __future__ import annotations

import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from tests.e2e.support import DAY, E2E_DATASET, export_starts, iso

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from amplitude_simulator import AmplitudeSimulator
    from tests.e2e.support import Meltano, Postgres

pytestmark = pytest.mark.e2e

STATE_ID = "dev:tap-amplitude-to-target-postgres"
START = E2E_DATASET.start
RANGES = (  # disjoint, together [start, start + 5 days)
    ("backfill-1", START, START + 2 * DAY),
    ("backfill-2", START + 2 * DAY, START + 4 * DAY),
    ("backfill-3", START + 4 * DAY, START + 5 * DAY),
)
INCREMENTAL_END = START + 6 * DAY


def table_exists(postgres: Postgres, table: str) -> bool:
    """Whether ``schema.table`` exists yet."""
    (row,) = postgres.query(f"SELECT to_regclass('{table}') IS NOT NULL AS found")
    return bool(row["found"])


def test_parallel_backfill_then_incremental(
    meltano: Meltano,
    simulator: AmplitudeSimulator,
    tap_env: dict[str, str],
    postgres: Postgres,
    tmp_path: Path,
) -> None:
    schema = "e2e_backfill"
    env = {**tap_env, **postgres.target_env(schema)}
    # Concurrent runs of one extractor must not share a Meltano system directory: each run
    # writes the extractor's catalog to .meltano/run/tap-amplitude/. Each job gets its own
    # (Meltano installs the plugins there on first use); the state stays in the shared system
    # database the fixture configured (MELTANO_DATABASE_URI). That database is created first:
    # jobs starting together on a missing database race to create its tables and fail.
    meltano.run("state", "list")

    def start_range(suffix: str, first: datetime, last: datetime) -> subprocess.Popen[str]:
        return meltano.start(
            "run",
            "--state-id-suffix",
            suffix,
            "tap-amplitude",
            "target-postgres",
            env={
                **env,
                "MELTANO_SYS_DIR_ROOT": str(tmp_path / suffix),
                "TAP_AMPLITUDE__SELECT": '["export_events.*"]',
                "TAP_AMPLITUDE_START_DATE": iso(first),
                "TAP_AMPLITUDE_END_DATE": iso(last),
            },
        )

    # target-postgres creates the table when its stream starts; loaders racing to create the
    # same table can fail, so the other ranges start once the first has created it.
    table = f"{schema}.export_events"
    jobs = [start_range(*RANGES[0])]
    deadline = time.monotonic() + 300
    while not table_exists(postgres, table):
        ended = jobs[0].poll() is not None
        assert not ended or table_exists(postgres, table), "the first range created no table"
        assert time.monotonic() < deadline, "the first range never created the table"
        time.sleep(0.5)
    jobs += [start_range(*job) for job in RANGES[1:]]
    assert [job.wait(timeout=600) for job in jobs] == [0, 0, 0]

    backfilled = E2E_DATASET.expected_events(START, RANGES[-1][2])
    rows = postgres.query(f"SELECT uuid FROM {schema}.export_events")
    assert sorted(row["uuid"] for row in rows) == sorted(e["uuid"] for e in backfilled)
    # The regular job continues from the newest range: seed its state, then run it as usual.
    meltano.run("state", "copy", "--force", f"{STATE_ID}:{RANGES[-1][0]}", STATE_ID)
    postgres.psql(f"UPDATE {schema}.export_events SET event_type = 'sentinel'")
    simulator.clear_requests()
    meltano.run(
        "run",
        "tap-amplitude",
        "target-postgres",
        env={**env, "TAP_AMPLITUDE_END_DATE": iso(INCREMENTAL_END)},
    )

    assert min(export_starts(simulator)) == RANGES[-1][2].strftime("%Y%m%dT%H")
    new = {e["uuid"] for e in E2E_DATASET.expected_events(RANGES[-1][2], INCREMENTAL_END)}
    rows = postgres.query(f"SELECT uuid, event_type FROM {schema}.export_events")
    assert len(rows) == len({row["uuid"] for row in rows}) == len(backfilled) + len(new)
    assert {row["uuid"] for row in rows if row["event_type"] != "sentinel"} == new
    state = meltano.state(STATE_ID)
    bookmark = state["singer_state"]["bookmarks"]["export_events"]["replication_key_value"]
    assert bookmark.startswith(INCREMENTAL_END.strftime("%Y-%m-%dT%H:%M:%S")), bookmark
