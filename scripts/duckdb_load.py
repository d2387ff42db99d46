"""Turn target-jsonl's files into typed DuckDB tables, and query them.

Meltano runs this as the ``duckdb`` utility (see meltano.yml)::

    meltano run tap-amplitude target-jsonl duckdb:load
    meltano invoke duckdb:summary
    meltano invoke duckdb:query "select count(*) from amplitude.export_events"

Column types and keys come from the tap's catalog (``tap-amplitude --discover``): date-times
become ``TIMESTAMPTZ``, nested objects and mixed-type fields ``JSON``. Every load rebuilds each
table from all files of its stream; when a key occurs more than once, the newest file wins, so
re-runs and overlapping windows never duplicate rows.

Settings (Meltano passes them as environment variables): ``DUCKDB_DATABASE`` (the database
file), ``DUCKDB_JSONL_DIR`` (target-jsonl's ``destination_path``), ``DUCKDB_SCHEMA``.
"""
# ruff: noqa: S608 - SQL text carries only identifiers from the catalog and settings

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb

# target-jsonl names files <stream>-<YYYYmmddTHHMMSS>.jsonl (one per stream and run).
FILE_NAME = re.compile(r"^(?P<stream>.+)-\d{8}T\d{6}\.jsonl$")
SCALARS = {"integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}
STRING_FORMATS = {"date-time": "TIMESTAMPTZ", "date": "DATE"}


def column_type(schema: dict[str, Any]) -> str:
    """The DuckDB type for one JSON-schema property."""
    declared = schema.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    types.discard("null")
    if len(types) != 1:  # anyOf, or several types: keep the value exactly as JSON
        return "JSON"
    (kind,) = types
    if kind == "string":
        return STRING_FORMATS.get(schema.get("format", ""), "VARCHAR")
    return SCALARS.get(kind, "JSON")


def quoted(name: str) -> str:
    """An SQL identifier, double-quoted unless it is a plain lower-case name."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def discover() -> dict[str, dict[str, Any]]:
    """Catalog entries by stream name, from the tap installed next to this interpreter."""
    tap = Path(sys.executable).with_name("tap-amplitude")
    result = subprocess.run([tap, "--discover"], capture_output=True, text=True, check=True)
    return {entry["tap_stream_id"]: entry for entry in json.loads(result.stdout)["streams"]}


def stream_files(jsonl_dir: Path) -> dict[str, list[str]]:
    """target-jsonl's files, grouped by stream, oldest first."""
    files: dict[str, list[str]] = {}
    for path in sorted(jsonl_dir.glob("*.jsonl")):
        match = FILE_NAME.match(path.name)
        if match:
            files.setdefault(match["stream"], []).append(str(path))
    return files


def load(con: duckdb.DuckDBPyConnection, jsonl_dir: Path, schema: str) -> None:
    """(Re)build one table per stream that has files."""
    catalog = discover()
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted(schema)}")
    for stream, files in stream_files(jsonl_dir).items():
        entry = catalog.get(stream)
        if entry is None:
            print(f"duckdb_load: skipping {stream}: not in the tap's catalog", file=sys.stderr)
            continue
        properties = entry["schema"]["properties"]
        columns = {name: column_type(prop) for name, prop in properties.items()}
        keys = entry.get("key_properties") or []
        dedupe = ""
        if keys:
            partition = ", ".join(quoted(key) for key in keys)
            dedupe = (
                f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY filename DESC) = 1"
            )
        table = f"{quoted(schema)}.{quoted(stream)}"
        con.execute(
            f"CREATE OR REPLACE TABLE {table} AS SELECT * EXCLUDE (filename) "
            "FROM read_json(?, format = 'newline_delimited', columns = ?, filename = true) "
            f"{dedupe}",
            [files, columns],
        )
        (count,) = con.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
        print(f"duckdb_load: {table}: {count} rows from {len(files)} file(s)", file=sys.stderr)


def show(con: duckdb.DuckDBPyConnection, title: str, sql: str) -> None:
    """Print a query, then its result as a table."""
    print(f"\n-- {title}\n{sql.strip()}")
    con.sql(sql).show(max_width=140)


def summary(con: duckdb.DuckDBPyConnection, schema: str) -> None:
    """What arrived: rows per table, a few events, events per day."""
    tables = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? ORDER BY table_name",
        [schema],
    ).fetchall()
    counts = " UNION ALL ".join(
        f"SELECT '{name}' AS stream, count(*) AS rows FROM {quoted(schema)}.{quoted(name)}"
        for (name,) in tables
    )
    show(con, "rows per stream", counts or "SELECT 'no tables yet' AS stream")
    events = f"{quoted(schema)}.export_events"
    show(
        con,
        "a few events",
        "SELECT server_upload_time, event_type, user_id, country, "
        "event_properties->>'page_path' AS page_path "
        f"FROM {events} ORDER BY server_upload_time LIMIT 5",
    )
    show(
        con,
        "events per day (UTC)",
        "SELECT CAST(timezone('UTC', server_upload_time) AS DATE) AS day, count(*) AS events, "
        "count(DISTINCT user_id) AS users "
        f"FROM {events} GROUP BY ALL ORDER BY day",
    )


def main() -> None:
    """Parse the command line and run ``load``, ``summary`` or ``query``."""
    root = Path(os.environ.get("MELTANO_PROJECT_ROOT", "."))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["load", "summary", "query"])
    parser.add_argument("sql", nargs="?", help="for query: a SELECT; rows print as JSON")
    args = parser.parse_args()
    database = os.environ.get("DUCKDB_DATABASE") or str(root / "output" / "warehouse.duckdb")
    jsonl_dir = Path(os.environ.get("DUCKDB_JSONL_DIR") or root / "output" / "jsonl")
    schema = os.environ.get("DUCKDB_SCHEMA") or "amplitude"
    with duckdb.connect(database, read_only=args.command != "load") as con:
        con.execute("SET TimeZone = 'UTC'")
        if args.command == "load":
            load(con, jsonl_dir, schema)
        elif args.command == "summary":
            summary(con, schema)
        else:  # to_json: exact values without Python types (TIMESTAMPTZ would need pytz)
            wrapped = f"SELECT CAST(to_json(q) AS VARCHAR) FROM ({args.sql}) AS q"
            rows = [json.loads(row) for (row,) in con.execute(wrapped).fetchall()]
            print(json.dumps(rows))


if __name__ == "__main__":
    main()
