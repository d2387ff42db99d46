"""Look at the DuckDB database that target-duckdb-batch loads: a summary, or one query.

Meltano runs this as the ``duckdb`` utility (see meltano.yml), read-only::

    meltano run tap-amplitude-batch target-duckdb-batch
    meltano invoke duckdb:summary
    meltano invoke duckdb:query "select count(*) from amplitude.export_events"

Settings (Meltano passes them as environment variables): ``DUCKDB_DATABASE`` (the database
file), ``DUCKDB_SCHEMA``.
"""
# ruff: noqa: S608 - SQL text carries only identifiers from the database and settings

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import duckdb


def quoted(name: str) -> str:
    """An SQL identifier, double-quoted unless it is a plain lower-case name."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


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
    """Parse the command line and run ``summary`` or ``query``."""
    root = Path(os.environ.get("MELTANO_PROJECT_ROOT", "."))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["summary", "query"])
    parser.add_argument("sql", nargs="?", help="for query: a SELECT; rows print as JSON")
    args = parser.parse_args()
    database = os.environ.get("DUCKDB_DATABASE") or str(root / "output" / "warehouse.duckdb")
    schema = os.environ.get("DUCKDB_SCHEMA") or "amplitude"
    with duckdb.connect(database, read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        if args.command == "summary":
            summary(con, schema)
        else:  # to_json: exact values without Python types (TIMESTAMPTZ would need pytz)
            wrapped = f"SELECT CAST(to_json(q) AS VARCHAR) FROM ({args.sql}) AS q"
            rows = [json.loads(row) for (row,) in con.execute(wrapped).fetchall()]
            print(json.dumps(rows))


if __name__ == "__main__":
    main()
