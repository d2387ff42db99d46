"""target-duckdb-batch end to end in one process: Singer messages in, DuckDB tables out."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from target_duckdb_batch import TargetDuckDBBatch
from target_duckdb_batch import sink as sink_module
from target_duckdb_batch.sink import DuckDBSink, column_type

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "uuid": {"type": ["string"]},
        "event_type": {"type": ["string", "null"]},
        "server_upload_time": {"type": ["string", "null"], "format": "date-time"},
        "amplitude_id": {"type": ["integer", "null"]},
        "revenue": {"type": ["number", "null"]},
        "is_new": {"type": ["boolean", "null"]},
        "event_properties": {"type": ["object", "null"]},
        "tags": {"type": ["array", "null"], "items": {"type": "string"}},
        "paying": {"type": ["string", "number", "boolean", "null"]},
    },
}


def event(n: int, **changes: Any) -> dict[str, Any]:
    """One export row (Amplitude's zone-less timestamp format)."""
    row = {
        "uuid": f"uuid-{n:04d}",
        "event_type": "page_view",
        "server_upload_time": f"2024-03-01 {n % 24:02d}:00:00.123000",
        "amplitude_id": 10_000_000_000 + n,
        "revenue": n / 4,
        "is_new": n % 2 == 0,
        "event_properties": {"page": f"/p/{n}", "nested": {"depth": n}},
        "tags": ["a", "b"],
        "paying": [True, "yes", 3.5, None][n % 4],
    }
    row.update(changes)
    return row


def schema_message(stream: str = "export_events", **overrides: Any) -> dict[str, Any]:
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": overrides.get("schema", SCHEMA),
        "key_properties": overrides.get("key_properties", ["uuid"]),
    }


def batch_file(path: Path, rows: list[dict[str, Any]], *, compress: bool = True) -> str:
    """Write rows as a JSON-lines BATCH file; its file:// URL."""
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path.as_uri()


def batch_message(*urls: str, compression: str = "gzip") -> dict[str, Any]:
    return {
        "type": "BATCH",
        "stream": "export_events",
        "encoding": {"format": "jsonl", "compression": compression},
        "manifest": list(urls),
    }


def state(value: str) -> dict[str, Any]:
    return {"type": "STATE", "value": {"bookmarks": {"export_events": {"until": value}}}}


def record(row: dict[str, Any], stream: str = "export_events") -> dict[str, Any]:
    return {"type": "RECORD", "stream": stream, "record": row}


def run_target(database: Path, messages: list[dict[str, Any]], **config: Any) -> list[Any]:
    """Feed messages to a fresh target; the STATE values it wrote to stdout."""
    target = TargetDuckDBBatch(
        config={"database": str(database), "default_target_schema": "amplitude", **config},
        validate_config=True,
    )
    stdout = io.StringIO()
    lines = io.StringIO("".join(json.dumps(m) + "\n" for m in messages))
    original = sys.stdout
    sys.stdout = stdout
    try:
        target.listen(file_input=lines)
    finally:
        sys.stdout = original
    return [json.loads(line) for line in stdout.getvalue().splitlines()]


def rows(database: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(database)) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql).fetchall()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "db" / "warehouse.duckdb"


def test_batch_files_load_typed_and_state_follows(tmp_path: Path, database: Path) -> None:
    first = batch_file(tmp_path / "a.json.gz", [event(n) for n in range(5)])
    second = batch_file(tmp_path / "b.json.gz", [event(n) for n in range(5, 8)])
    states = run_target(
        database,
        [schema_message(), batch_message(first), state("h1"), batch_message(second), state("h2")],
    )

    assert states == [{"bookmarks": {"export_events": {"until": "h2"}}}]
    assert rows(database, "SELECT count(*), count(DISTINCT uuid) FROM amplitude.export_events") == [
        (8, 8)
    ]
    types = dict(
        rows(
            database,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'amplitude' AND table_name = 'export_events'",
        )
    )
    assert types == {
        "uuid": "VARCHAR",
        "event_type": "VARCHAR",
        "server_upload_time": "TIMESTAMP WITH TIME ZONE",
        "amplitude_id": "BIGINT",
        "revenue": "DOUBLE",
        "is_new": "BOOLEAN",
        "event_properties": "JSON",
        "tags": "JSON",
        "paying": "JSON",
    }
    ((uploaded, props, paying, amplitude_id),) = rows(
        database,
        "SELECT epoch_us(server_upload_time), CAST(event_properties AS VARCHAR), "
        "CAST(paying AS VARCHAR), amplitude_id FROM amplitude.export_events "
        "WHERE uuid = 'uuid-0001'",
    )
    assert uploaded == 1_709_254_800_123_000  # 2024-03-01 01:00:00.123 UTC
    assert json.loads(props) == {"page": "/p/1", "nested": {"depth": 1}}
    assert json.loads(paying) == "yes"  # mixed-type values are kept exactly, as JSON
    assert amplitude_id == 10_000_000_001
    # The files are read in place and left alone.
    assert (tmp_path / "a.json.gz").exists()


def test_a_range_loaded_twice_adds_nothing_and_newer_rows_replace(
    tmp_path: Path, database: Path
) -> None:
    url = batch_file(tmp_path / "a.json.gz", [event(n) for n in range(6)])
    run_target(database, [schema_message(), batch_message(url), state("h1")])
    run_target(database, [schema_message(), batch_message(url), state("h1")])
    assert rows(database, "SELECT count(*) FROM amplitude.export_events") == [(6,)]

    changed = batch_file(tmp_path / "b.json.gz", [event(2, event_type="purchase"), event(6)])
    run_target(database, [schema_message(), batch_message(changed), state("h2")])
    assert rows(database, "SELECT count(*) FROM amplitude.export_events") == [(7,)]
    assert rows(
        database, "SELECT event_type FROM amplitude.export_events WHERE uuid = 'uuid-0002'"
    ) == [("purchase",)]


def test_a_key_twice_in_one_load_is_kept_once(tmp_path: Path, database: Path) -> None:
    # Amplitude exports the same event twice now and then: the copies share the uuid.
    first = batch_file(tmp_path / "1.json.gz", [event(1), event(2)])
    second = batch_file(tmp_path / "2.json.gz", [event(1), event(3), event(3)])
    run_target(database, [schema_message(), batch_message(first, second), state("h")])
    assert rows(database, "SELECT uuid FROM amplitude.export_events ORDER BY 1") == [
        ("uuid-0001",),
        ("uuid-0002",),
        ("uuid-0003",),
    ]


def test_record_messages_load_like_batch_files(tmp_path: Path, database: Path) -> None:
    events = [event(n) for n in range(10)]
    url = batch_file(tmp_path / "a.json", events, compress=False)
    batch_db = tmp_path / "batch.duckdb"
    run_target(batch_db, [schema_message(), batch_message(url, compression="none"), state("h")])
    changed = event(3, event_type="purchase")
    messages = [schema_message(), record(changed), *(record(e) for e in events), state("h")]
    states = run_target(database, messages, batch_size_rows=4)

    assert states == [{"bookmarks": {"export_events": {"until": "h"}}}]
    query = (
        "SELECT uuid, event_type, epoch_us(server_upload_time), amplitude_id, revenue, is_new, "
        "CAST(event_properties AS VARCHAR), CAST(tags AS VARCHAR), CAST(paying AS VARCHAR) "
        "FROM amplitude.export_events ORDER BY uuid"
    )
    loaded = rows(database, query)
    assert len(loaded) == 10

    def normalised(found: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [(*r[:6], *(None if v is None else json.loads(v) for v in r[6:])) for r in found]

    assert normalised(loaded) == normalised(rows(batch_db, query))


def test_properties_a_new_schema_adds_become_columns(tmp_path: Path, database: Path) -> None:
    run_target(database, [schema_message(), record(event(1)), state("h1")])
    wider = {**SCHEMA, "properties": {**SCHEMA["properties"], "country": {"type": ["string"]}}}
    run_target(
        database,
        [schema_message(schema=wider), record(event(2, country="NL")), state("h2")],
    )
    assert rows(database, "SELECT uuid, country FROM amplitude.export_events ORDER BY 1") == [
        ("uuid-0001", None),
        ("uuid-0002", "NL"),
    ]


def test_keys_the_schema_lacks_are_ignored(tmp_path: Path, database: Path) -> None:
    url = batch_file(tmp_path / "a.json.gz", [event(1, unknown_key={"x": 1})])
    run_target(database, [schema_message(), batch_message(url), state("h")])
    assert rows(database, "SELECT count(*) FROM amplitude.export_events") == [(1,)]


def test_streams_without_keys_are_appended(tmp_path: Path, database: Path) -> None:
    schema = {"type": "object", "properties": {"day": {"type": "string", "format": "date"}}}
    messages = [
        schema_message("daily", schema=schema, key_properties=[]),
        record({"day": "2024-03-01"}, "daily"),
        state("h"),
    ]
    run_target(database, messages)
    run_target(database, messages)
    assert rows(database, "SELECT CAST(day AS VARCHAR) FROM amplitude.daily") == [
        ("2024-03-01",),
        ("2024-03-01",),
    ]


def test_no_state_when_a_load_fails(tmp_path: Path, database: Path) -> None:
    good = batch_file(tmp_path / "a.json.gz", [event(1)])
    broken = tmp_path / "b.json.gz"
    broken.write_bytes(gzip.compress(b'{"uuid": "x", "amplitude_id": "not a number"}\n'))
    with pytest.raises(duckdb.Error):
        run_target(
            database,
            [schema_message(), batch_message(good), state("h1"), batch_message(broken.as_uri())],
        )
    # Nothing of that load was committed (both files were one transaction).
    assert rows(database, "SELECT count(*) FROM amplitude.export_events") == [(0,)]


def test_column_types() -> None:
    assert column_type({"type": ["string", "null"], "format": "date-time"}) == "TIMESTAMPTZ"
    assert column_type({"type": "string", "format": "date"}) == "DATE"
    assert column_type({"type": ["integer", "null"]}) == "BIGINT"
    assert column_type({"anyOf": [{"type": "string"}, {"type": "null"}]}) == "JSON"
    assert column_type({"type": ["integer", "string", "null"]}) == "JSON"
    assert column_type({"type": ["object"]}) == "JSON"


def test_the_command_line_describes_the_target() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "target_duckdb_batch", "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    about = json.loads(result.stdout)
    assert about["name"] == "target-duckdb-batch"
    assert "batch" in about["capabilities"]
    assert about["settings"]["required"] == ["database"]


def primary_key(database: Path) -> list[tuple[Any, ...]]:
    return rows(
        database,
        "SELECT constraint_column_names FROM duckdb_constraints() "
        "WHERE table_name = 'export_events' AND constraint_type = 'PRIMARY KEY'",
    )


@pytest.mark.parametrize("copies", [1, 2], ids=["distinct", "a-key-twice"])
def test_a_new_table_gets_its_key_with_the_first_load(
    tmp_path: Path, database: Path, copies: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first load inserts into a keyless table and adds the key after; a load holding a key
    # twice cannot take the key that way and is loaded the usual way instead.
    inserts: list[str] = []
    insert = DuckDBSink._insert

    def spy(sink: DuckDBSink, verb: str, paths: list[str], compression: str) -> int:
        inserts.append(verb)
        return insert(sink, verb, paths, compression)

    monkeypatch.setattr(DuckDBSink, "_insert", spy)
    url = batch_file(tmp_path / "a.json.gz", [event(n) for n in range(5) for _ in range(copies)])
    run_target(database, [schema_message(), batch_message(url), state("h")])
    fast = ["INSERT INTO"]
    assert inserts == (fast if copies == 1 else [*fast, "INSERT OR REPLACE INTO"])
    assert primary_key(database) == [(["uuid"],)]
    assert rows(database, "SELECT count(*), count(DISTINCT uuid) FROM amplitude.export_events") == [
        (5, 5)
    ]
    changed = batch_file(tmp_path / "b.json.gz", [event(1, event_type="purchase")])
    run_target(database, [schema_message(), batch_message(changed), state("h2")])
    assert rows(database, "SELECT count(*) FROM amplitude.export_events") == [(5,)]


def test_a_schema_change_within_a_run_loads_the_pending_files_first(
    tmp_path: Path, database: Path
) -> None:
    # A SCHEMA message that adds a property starts a new sink for the same table while the old
    # one still holds files to load; the first time, into a table that has no key yet.
    wider = {**SCHEMA, "properties": {**SCHEMA["properties"], "country": {"type": ["string"]}}}
    widest = {**SCHEMA, "properties": {**wider["properties"], "city": {"type": ["string"]}}}
    for schemas, new_rows in (
        ((SCHEMA, wider), ([event(1), event(2)], [event(3, country="NL")])),  # new table
        ((wider, widest), ([event(4)], [event(5, city="Delft"), event(1, city="Utrecht")])),
    ):
        first, second = (
            batch_file(tmp_path / f"{i}-{len(schemas[1]['properties'])}.json.gz", found)
            for i, found in enumerate(new_rows)
        )
        messages = [
            schema_message(schema=schemas[0]),
            batch_message(first),
            schema_message(schema=schemas[1]),
            batch_message(second),
            state("h"),
        ]
        assert run_target(database, messages) == [{"bookmarks": {"export_events": {"until": "h"}}}]
    assert rows(
        database, "SELECT uuid, country, city FROM amplitude.export_events ORDER BY uuid"
    ) == [
        ("uuid-0001", None, "Utrecht"),
        ("uuid-0002", None, None),
        ("uuid-0003", "NL", None),
        ("uuid-0004", None, None),
        ("uuid-0005", None, "Delft"),
    ]
    assert primary_key(database) == [(["uuid"],)]


def test_streams_load_side_by_side(tmp_path: Path, database: Path) -> None:
    # BATCH messages of two streams interleave: new tables the first time, upserts the second.
    def messages(version: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = [schema_message("a"), schema_message("b")]
        for n in range(3):
            for stream in ("a", "b"):
                one = [event(n, event_type=f"{stream}-{version}")]
                url = batch_file(tmp_path / f"{stream}{n}{version}.json.gz", one)
                found.append({**batch_message(url), "stream": stream})
        return [*found, state(version)]

    run_target(database, messages("1"))
    run_target(database, messages("2"))
    for stream in ("a", "b"):
        query = "SELECT count(*), min(event_type), max(event_type) FROM amplitude." + stream  # noqa: S608
        assert rows(database, query) == [(3, f"{stream}-2", f"{stream}-2")]


def test_pending_files_load_once_there_are_enough(
    tmp_path: Path, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "MAX_PENDING_FILES", 2)
    loads: list[int] = []
    load = DuckDBSink.load_files

    def counted(sink: DuckDBSink, paths: list[str], *, compression: str) -> int:
        loads.append(len(paths))
        return load(sink, paths, compression=compression)

    monkeypatch.setattr(DuckDBSink, "load_files", counted)
    urls = [batch_file(tmp_path / f"{n}.json.gz", [event(n)]) for n in range(5)]
    run_target(database, [schema_message(), *map(batch_message, urls), state("h")])
    assert loads == [2, 2, 1]
    assert rows(database, "SELECT count(*) FROM amplitude.export_events") == [(5,)]


def test_a_table_without_rows_still_gets_its_key(database: Path) -> None:
    run_target(database, [schema_message(), state("h")])
    assert primary_key(database) == [(["uuid"],)]


def test_a_keyless_table_left_by_a_stopped_run_gets_its_key(tmp_path: Path, database: Path) -> None:
    database.parent.mkdir(parents=True)
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE SCHEMA amplitude")
        con.execute("CREATE TABLE amplitude.export_events (uuid VARCHAR, event_type VARCHAR)")
    url = batch_file(tmp_path / "a.json.gz", [event(1), event(1, event_type="purchase")])
    run_target(database, [schema_message(), batch_message(url), state("h")])
    assert primary_key(database) == [(["uuid"],)]
    assert rows(database, "SELECT count(*) FROM amplitude.export_events") == [(1,)]


def _run_cli(database: Path, messages: list[dict[str, Any]], **config: Any) -> Any:
    config_path = database.parent / "config.json"
    database.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps({"database": str(database), **config}))
    return subprocess.run(
        [sys.executable, "-m", "target_duckdb_batch", "--config", str(config_path)],
        input="".join(json.dumps(m) + "\n" for m in messages),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_a_database_locked_by_another_process_is_waited_for(database: Path) -> None:
    database.parent.mkdir(parents=True)
    hold = (
        f"import duckdb, time; c = duckdb.connect({str(database)!r}); "
        "print('held', flush=True); time.sleep(3)"
    )
    with subprocess.Popen(
        [sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        result = _run_cli(database, [schema_message(), record(event(1)), state("h1")])
    assert result.returncode == 0, result.stderr
    assert "another process holds its lock" in result.stderr
    assert rows(database, "SELECT count(*) FROM main.export_events") == [(1,)]


def test_a_lock_held_too_long_and_a_bad_file_are_one_line(tmp_path: Path, database: Path) -> None:
    database.parent.mkdir(parents=True)
    with duckdb.connect(str(database)):
        locked = _run_cli(database, [schema_message(), record(event(1))], lock_timeout_seconds=1)
    assert locked.returncode == 1
    assert "Traceback" not in locked.stderr
    assert "still locked by another process after 1 s" in locked.stderr

    broken = tmp_path / "b.json.gz"
    broken.write_bytes(gzip.compress(b'{"uuid": "x", "amplitude_id": "not a number"}\n'))
    failed = _run_cli(database, [schema_message(), batch_message(broken.as_uri())])
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    [error] = [line for line in failed.stderr.splitlines() if "ERROR" in line]
    assert "run the pipeline again to resume" in error
