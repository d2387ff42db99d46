"""The first thing the Singer and Meltano docs tell people to run, with no catalog and no ids.

``tap-amplitude --config config.json`` syncs every stream. Streams that fan out over
partitions (user lookups over ``user_ids``/``amplitude_ids``, deletion jobs over date windows)
may have none; the SDK then syncs them once with no context, which must mean "nothing".
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from amplitude_simulator import AmplitudeSimulator
from tap_amplitude.streams.users import NO_USERS_CONFIGURED
from tap_amplitude.tap import TapAmplitude
from tests.helpers import run_tap, simulator_config

USER_STREAMS = ("user_search", "user_activity", "user_profiles")


def _no_users_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "nothing to look up" in line]


def test_default_invocation_syncs_every_stream(simulator: AmplitudeSimulator) -> None:
    run = run_tap(simulator_config(simulator))  # no catalog: every stream, no user ids
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    streams = {m["stream"] for m in run.messages if m["type"] == "RECORD"}
    assert {"export_events", "event_types", "annotations", "active_users"} <= streams
    assert not streams & set(USER_STREAMS)
    said = _no_users_lines(run.stderr)
    assert len(said) == 1, run.stderr
    assert "| INFO" in said[0]
    assert "user_ids" in said[0]
    assert "amplitude_ids" in said[0]
    assert not [r for r in simulator.requests if "usersearch" in r.path]


def test_every_stream_with_nothing_to_read(simulator: AmplitudeSimulator) -> None:
    """start_date ahead of today: no export hours, no chart days, no deletion-job windows."""
    start = datetime.now(tz=timezone.utc).replace(microsecond=0) + timedelta(days=90)
    config = simulator_config(simulator, start_date=start.isoformat())
    del config["end_date"]
    run = run_tap(config)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "KeyError" not in run.stderr
    assert len(_no_users_lines(run.stderr)) == 1


@pytest.mark.parametrize("mode", ["--test", "--test=all"])
def test_test_modes_without_user_ids(simulator: AmplitudeSimulator, mode: str) -> None:
    run = run_tap(simulator_config(simulator), extra_args=[mode])
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert len(_no_users_lines(run.stderr)) == 1
    records = {m["stream"] for m in run.messages if m["type"] == "RECORD"}
    assert {"export_events", "event_types"} <= records
    # and the schema-only test still asks Amplitude nothing
    asked = len(simulator.requests)
    schema_run = run_tap(simulator_config(simulator), extra_args=["--test=schema"])
    assert schema_run.returncode == 0, schema_run.stderr
    schemas = {m["stream"] for m in schema_run.messages if m["type"] == "SCHEMA"}
    assert {"export_events", "user_search", "user_activity", "deletion_jobs"} <= schemas
    assert len(simulator.requests) == asked


# In-process: each partitioned stream asked for "no context" yields nothing and asks nothing.


def _tap(simulator: AmplitudeSimulator, **overrides: Any) -> TapAmplitude:
    return TapAmplitude(config=simulator_config(simulator, **overrides), setup_mapper=False)


def test_partitioned_streams_without_context_read_nothing(simulator: AmplitudeSimulator) -> None:
    future = (datetime.now(tz=timezone.utc) + timedelta(days=90)).date().isoformat()
    tap = _tap(simulator, start_date=future, end_date=None)
    assert tap.streams["deletion_jobs"].partitions == []
    for name in (*USER_STREAMS, "deletion_jobs"):
        stream = tap.streams[name]
        assert list(stream.get_records(None)) == [], name
        assert list(stream.get_records({})) == [], name
    assert simulator.requests == []


def test_no_users_is_said_once(
    simulator: AmplitudeSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    stream = _tap(simulator).streams["user_search"]
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert list(stream.get_records(None)) == []
    said = [r for r in caplog.records if r.getMessage() == NO_USERS_CONFIGURED]
    assert len(said) == 1
    assert said[0].levelno == logging.INFO
