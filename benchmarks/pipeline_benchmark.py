r"""Benchmark whole pipelines: Meltano into PostgreSQL and DuckDB, against their floors.

    uv run python benchmarks/pipeline_benchmark.py             # 100,000 events, median of 3
    uv run python benchmarks/pipeline_benchmark.py --smoke     # 2,000 events, once (CI)

It starts the simulator (one day of realistic events), a local PostgreSQL
(``scripts/postgres.sh``) and Meltano itself (``scripts/meltano.sh``, the plugins of
meltano.yml in the project's ``.meltano``, or ``MELTANO_SYS_DIR_ROOT``), then runs, side by
side, with only ``export_events`` selected:

* ``tap alone``: the tap, RECORD messages to /dev/null;
* ``meltano: tap-amplitude target-postgres``: RECORD messages, meltano.yml's target settings;
* ``meltano: tap-amplitude-batch target-postgres``: BATCH files, the recommended pipeline;
* ``meltano: tap-amplitude-batch target-duckdb-batch``: the embedded default (the demo);
* ``floor: tap | orjson→CSV | COPY``: the tap's RECORD messages, turned into CSV by a small
  orjson filter and copied by ``psql \\copy`` into a typed table keyed on uuid;
* ``floor: tap BATCH + DuckDB read_json``: the tap's BATCH files, then one
  ``CREATE TABLE AS SELECT * FROM read_json(files, columns = <the catalog's types>)``;
* ``no-op``: a Meltano run with nothing new to export, and the same tap | target run directly
  (the tap with the state Meltano saved, piped into the target Meltano installed).

Times are wall seconds, medians of ``--repeat`` runs, each from a fresh table; each Meltano
pipeline run starts without saved state (Meltano's state cleared beforehand, untimed), as a
pipeline's first run does, with the catalog Meltano cached (``--full-refresh`` would also rerun
the tap's discovery, which scheduled runs never do). ``× floor``
compares each pipeline with its floor (PostgreSQL or DuckDB) and each Meltano no-op with the
direct no-op. Peak RSS is the highest sampled sum of resident memory over the measured process
tree (Meltano, tap, target; not the PostgreSQL server); ``CPU s`` is the median user + system
time of that tree, which other work on the machine inflates much less than wall time. Every
load is verified: row count,
distinct uuids and one content hash over uuid, event type, both timestamps, ids and the nested
property bags, which must be equal for the tap's RECORD output, its BATCH files, every
PostgreSQL table and every DuckDB table.

When the tap's sources changed since scripts/meltano.sh last installed it into Meltano's plugin
environment, an untimed ``scripts/meltano.sh --version`` reinstalls it before the next Meltano
run, so that no measured run includes a reinstall.
Child processes run without ``PYTHONDONTWRITEBYTECODE`` (as on a user's machine, Python caches
bytecode), so every measured run after the first imports from compiled modules. The machine's
load average is recorded with the results: other work on the machine slows every row.
"""
# ruff: noqa: S608 - the SQL is built from the catalog's property names and this module's names

from __future__ import annotations

import argparse
import base64
import csv
import gzip
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import duckdb
import orjson
from export_benchmark import build_dataset, select_only_export  # shared with that benchmark

from amplitude_simulator import AmplitudeSimulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

ROOT = Path(__file__).resolve().parents[1]
MELTANO_SH = ROOT / "scripts" / "meltano.sh"
POSTGRES_SH = ROOT / "scripts" / "postgres.sh"
DAY = datetime(2024, 3, 1, tzinfo=timezone.utc)
HOURS = 24
STREAM = "export_events"
# The columns the content hash covers (timestamps as UTC microseconds, bags as sorted JSON).
HASHED = (
    "uuid",
    "event_type",
    "server_upload_time",
    "event_time",
    "user_id",
    "amplitude_id",
    "event_properties",
    "user_properties",
)
TIMESTAMPS = {"server_upload_time", "event_time"}
BAGS = {"event_properties", "user_properties"}
_LEAKY_PREFIXES = ("TAP_AMPLITUDE", "TARGET_", "DUCKDB_", "MELTANO_", "PG")


@dataclass
class Load:
    """What a load left behind: rows, distinct uuids, content hash."""

    rows: int
    uuids: int
    digest: str


@dataclass
class Result:
    """One configuration: medians over its runs, and its verified load."""

    configuration: str
    kind: str  # postgres | duckdb | tap | noop
    floor: bool
    command: str
    seconds: float
    runs: list[float]
    events: int
    events_per_second: float | None
    ratio: float | None = None
    ratio_to: str | None = None
    peak_rss_mb: float | None = None
    load: Load | None = None
    cpu_seconds: float | None = None  # user + system, the whole process tree (median)


@dataclass
class Bench:
    """Everything the runs share: directories, environments, the simulator and PostgreSQL."""

    work: Path
    sim_url: str
    api_key: str
    secret_key: str
    app_id: int
    pg: dict[str, str]
    pg_bin: Path
    repeat: int
    env: dict[str, str] = field(default_factory=dict)
    catalog: Path = Path()
    meltano_dir: Path = Path()

    # -- processes ---------------------------------------------------------------------------

    def child_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of every measured process."""
        return {**self.env, **(extra or {})}

    def meltano(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run a Meltano command (not measured); its stdout."""
        result = subprocess.run(
            [str(MELTANO_SH), *args],
            env=self.child_env(env),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"meltano {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def psql(self, sql: str) -> str:
        """One statement through psql; its unaligned output."""
        result = subprocess.run(
            [str(self.pg_bin / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            env={**self.env, **self.pg},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"psql failed: {result.stderr}")
        return result.stdout

    def plugin_bin(self, kind: str, name: str, executable: str) -> str:
        """An executable of a plugin Meltano installed."""
        return str(self.meltano_dir / kind / name / "venv" / "bin" / executable)

    # -- configuration files ------------------------------------------------------------------

    def tap_config(self, batch_dir: Path | None = None) -> Path:
        """The tap's config as Meltano's dev environment passes it, pointed at the simulator."""
        config: dict[str, Any] = {
            "api_key": self.api_key,
            "secret_key": self.secret_key,
            "api_url": self.sim_url,
            "profile_api_url": self.sim_url,
            "project_id": self.app_id,
            "start_date": DAY.isoformat(),
            "end_date": (DAY + timedelta(hours=HOURS)).isoformat(),
        }
        name = "tap.json"
        if batch_dir is not None:
            config["batch_config"] = batch_config(batch_dir)
            name = "tap-batch.json"
        path = self.work / name
        path.write_text(json.dumps(config))
        return path

    def postgres_config(self, schema: str) -> Path:
        """target-postgres's config, as meltano.yml sets it, for one schema."""
        config = {
            "host": self.pg["PGHOST"],
            "port": int(self.pg["PGPORT"]),
            "user": self.pg["PGUSER"],
            "password": self.pg["PGPASSWORD"],
            "database": self.pg["PGDATABASE"],
            "default_target_schema": schema,
            "use_copy": True,
            "validate_records": False,
        }
        path = self.work / f"target-postgres-{schema}.json"
        path.write_text(json.dumps(config))
        return path

    def duckdb_config(self, database: Path) -> Path:
        """target-duckdb-batch's config, as meltano.yml sets it."""
        config = {
            "database": str(database),
            "default_target_schema": "amplitude",
            "validate_records": False,
        }
        path = self.work / "target-duckdb-batch.json"
        path.write_text(json.dumps(config))
        return path


def batch_config(directory: Path) -> dict[str, Any]:
    """meltano.yml's batch_config for tap-amplitude-batch, writing into ``directory``."""
    return {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": directory.as_uri(), "prefix": "bench-"},
    }


# -- measuring -------------------------------------------------------------------------------


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        pending += [int(child) for child in children]
    return total / 1024


def timed(
    command: list[str] | str,
    env: dict[str, str],
    log: Path,
    *,
    stdout: IO[bytes] | None = None,
) -> tuple[float, float]:
    """Run one command (a shell pipeline when a string); wall seconds and peak tree RSS."""
    peak = 0.0
    with log.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            shell=isinstance(command, str),
            executable="/bin/bash" if isinstance(command, str) else None,
            env=env,
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,  # its own process group, stopped whole if we are stopped
        )
        try:
            while process.poll() is None:
                peak = max(peak, tree_rss_mb(process.pid))
                time.sleep(0.05)
        except BaseException:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            raise
        seconds = time.perf_counter() - started
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"failed ({process.returncode}): {command}\n{tail}")
    return seconds, peak


def slug(text: str) -> str:
    """A file-name-safe version of a configuration's name."""
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")[:60]


# -- verifying -------------------------------------------------------------------------------


def epoch_us(value: str) -> int:
    """Microseconds since the epoch of a timestamp string (zone-less means UTC)."""
    moment = datetime.fromisoformat(value.replace(" ", "T").replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def canonical(row: dict[str, Any]) -> bytes:
    """The hashed columns of one row, normalised (timestamps may be ints or strings)."""
    values: list[Any] = []
    for column in HASHED:
        value = row.get(column)
        if column in TIMESTAMPS and isinstance(value, str):
            value = epoch_us(value)
        elif column in BAGS and isinstance(value, str):
            value = json.loads(value)
        elif column == "amplitude_id" and value is not None:
            value = int(value)
        values.append(value)
    return orjson.dumps(values, option=orjson.OPT_SORT_KEYS)


def summarize(rows: Iterable[dict[str, Any]]) -> Load:
    """Row count, distinct uuids and the content hash (order-independent) of rows."""
    lines = []
    uuids = set()
    for row in rows:
        uuids.add(row["uuid"])
        lines.append(canonical(row))
    lines.sort()
    digest = hashlib.sha256(b"\n".join(lines)).hexdigest()[:16]
    return Load(len(lines), len(uuids), digest)


def record_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a file of Singer messages."""
    with path.open("rb") as lines:
        for line in lines:
            message = orjson.loads(line)
            if message.get("type") == "RECORD" and message.get("stream") == STREAM:
                yield message["record"]


def batch_rows(directory: Path) -> Iterator[dict[str, Any]]:
    """The rows of every BATCH file in a directory."""
    for path in sorted(directory.glob(f"*{STREAM}*.json.gz")):
        with gzip.open(path, "rb") as lines:
            yield from (orjson.loads(line) for line in lines)


def postgres_rows(bench: Bench, schema: str) -> Iterator[dict[str, Any]]:
    """The hashed columns of a PostgreSQL table (timestamps as UTC microseconds)."""
    columns = ", ".join(
        f"(extract(epoch from {c}) * 1000000)::bigint AS {c}" if c in TIMESTAMPS else c
        for c in HASHED
    )
    out = bench.psql(
        f"SELECT coalesce(json_agg(q), '[]') FROM (SELECT {columns} FROM {schema}.{STREAM}) q"
    )
    yield from json.loads(out)


def duckdb_rows(database: Path, table: str) -> Iterator[dict[str, Any]]:
    """The hashed columns of a DuckDB table (timestamps as UTC microseconds)."""
    columns = ", ".join(
        f"epoch_us({c}) AS {c}"
        if c in TIMESTAMPS
        else f"CAST({c} AS VARCHAR) AS {c}"
        if c in BAGS
        else c
        for c in HASHED
    )
    with duckdb.connect(str(database), read_only=True) as con:
        cursor = con.execute(f"SELECT {columns} FROM {table}")
        names = [d[0] for d in cursor.description or []]
        for values in cursor.fetchall():
            yield dict(zip(names, values, strict=True))


# -- the floors -------------------------------------------------------------------------------


def postgres_check(bench: Bench, schema: str) -> Callable[[], Load]:
    """Verify a PostgreSQL schema's export_events table."""
    return lambda: summarize(postgres_rows(bench, schema))


def tap_sources_changed(meltano_dir: Path) -> bool:
    """Whether scripts/meltano.sh would reinstall the tap before its next command."""
    venv = meltano_dir / "extractors" / "tap-amplitude" / "venv"
    stamp = venv / "tap-amplitude-source-stamp"
    if not stamp.exists():
        stamp = venv / ".meltano_plugin_fingerprint"
    if not stamp.exists():
        return False
    since = stamp.stat().st_mtime
    sources = [ROOT / "pyproject.toml", *(ROOT / "tap_amplitude").rglob("*")]
    return any(p.is_file() and p.suffix != ".pyc" and p.stat().st_mtime > since for p in sources)


def pg_type(schema: dict[str, Any]) -> str:
    """The PostgreSQL type target-postgres gives a JSON-schema property (for the floor)."""
    declared = schema.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    types.discard("null")
    if len(types) != 1:
        return "jsonb"
    (kind,) = types
    if kind == "string":
        return "timestamp" if schema.get("format") == "date-time" else "text"
    return {"integer": "bigint", "number": "double precision", "boolean": "boolean"}.get(
        kind, "jsonb"
    )


def duck_type(schema: dict[str, Any]) -> str:
    """The DuckDB type of a JSON-schema property (as target-duckdb-batch types it)."""
    from target_duckdb_batch.sink import column_type  # noqa: PLC0415 - the target's own mapping

    return column_type(schema)


def csv_filter(columns_file: str) -> None:
    """Read RECORD messages on stdin, write CSV rows (in the table's column order) to stdout."""
    columns: list[tuple[str, bool]] = json.loads(Path(columns_file).read_text())
    out = csv.writer(sys.stdout, lineterminator="\n")
    for line in sys.stdin.buffer:
        message = orjson.loads(line)
        if message.get("type") != "RECORD":
            continue
        record = message["record"]
        row = []
        for column, is_json in columns:
            value = record.get(column)
            if value is None:
                row.append("")
            elif is_json or isinstance(value, (dict, list, bool, int, float)):
                row.append(orjson.dumps(value).decode())
            else:
                row.append(value)
        out.writerow(row)


def duckdb_floor_load(database: str, batch_dir: str, columns_file: str) -> None:
    """CREATE TABLE AS SELECT * FROM read_json(the BATCH files, columns = the catalog's types)."""
    columns = json.loads(Path(columns_file).read_text())
    files = sorted(str(p) for p in Path(batch_dir).glob("*.json.gz"))
    with duckdb.connect(database) as con:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(
            f"CREATE OR REPLACE TABLE {STREAM} AS SELECT * FROM "
            "read_json(?, format = 'newline_delimited', columns = ?)",
            [files, columns],
        )


# -- the run ----------------------------------------------------------------------------------


def start_postgres(work: Path) -> tuple[dict[str, str], Path, dict[str, str]]:
    """scripts/postgres.sh start on a free port; settings, bin dir, the script's environment."""
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pg_dir = Path(tempfile.mkdtemp(prefix="tap-amplitude-bench-pg-"))
    env = {**clean_environ(), "PG_DIR": str(pg_dir), "PG_PORT": str(port)}
    started = subprocess.run(
        [str(POSTGRES_SH), "start"], env=env, capture_output=True, text=True, check=False
    )
    if started.returncode != 0:
        raise SystemExit(f"scripts/postgres.sh start failed:\n{started.stderr}")
    exports = (line.removeprefix("export ") for line in started.stdout.splitlines())
    settings = dict(line.split("=", 1) for line in exports if "=" in line)
    bindir = subprocess.run(
        [str(POSTGRES_SH), "bindir"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    del work
    return settings, Path(bindir), env


def warm_up(sim: AmplitudeSimulator) -> None:
    """Fetch the whole day once, so that the simulator has built (and cached) its export."""
    start = DAY.strftime("%Y%m%dT%H")
    end = (DAY + timedelta(hours=HOURS - 1)).strftime("%Y%m%dT%H")
    request = urllib.request.Request(  # noqa: S310 - the simulator's own http:// URL
        f"{sim.url}/api/2/export?start={start}&end={end}",
        headers={
            "Authorization": "Basic "
            + base64.b64encode(f"{sim.project.api_key}:{sim.project.secret_key}".encode()).decode()
        },
    )
    with urllib.request.urlopen(request, timeout=600) as response:  # noqa: S310
        while response.read(1 << 20):
            pass


def clean_environ() -> dict[str, str]:
    """This process's environment without settings that would leak into the pipelines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_PREFIXES)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if "MELTANO_SYS_DIR_ROOT" in os.environ:  # where the plugins are installed: keep it
        env["MELTANO_SYS_DIR_ROOT"] = os.environ["MELTANO_SYS_DIR_ROOT"]
    return env


def export_only_catalog(bench: Bench, tap: str) -> Path:
    """The tap's catalog with only export_events selected."""
    discovered = subprocess.run(
        [tap, "--config", str(bench.tap_config()), "--discover"],
        env=bench.child_env(),
        capture_output=True,
        check=True,
        text=True,
    )
    path = bench.work / "catalog.json"
    path.write_text(select_only_export(discovered.stdout))
    return path


def stream_schema(catalog: Path) -> dict[str, dict[str, Any]]:
    """The JSON-schema properties of export_events."""
    for entry in json.loads(catalog.read_text())["streams"]:
        if entry["tap_stream_id"] == STREAM:
            properties: dict[str, dict[str, Any]] = entry["schema"]["properties"]
            return properties
    raise SystemExit("export_events is not in the catalog")


def run(args: argparse.Namespace) -> list[Result]:
    """Set everything up, measure every configuration, verify every load."""
    work = Path(tempfile.mkdtemp(prefix="tap-amplitude-pipeline-bench-"))
    (work / "logs").mkdir()
    dataset = build_dataset(args.events)
    pg_env: dict[str, str] = {}
    try:
        with AmplitudeSimulator(dataset) as sim:
            print(f"simulator at {sim.url}; building its export", file=sys.stderr, flush=True)
            warm_up(sim)
            print("PostgreSQL starting", file=sys.stderr, flush=True)
            pg, pg_bin, pg_env = start_postgres(work)
            bench = Bench(
                work=work,
                sim_url=sim.url,
                api_key=sim.project.api_key,
                secret_key=sim.project.secret_key,
                app_id=sim.project.app_id,
                pg=pg,
                pg_bin=pg_bin,
                repeat=args.repeat,
            )
            return measure_all(bench, args)
    finally:
        if pg_env:
            subprocess.run(
                [str(POSTGRES_SH), "destroy"], env=pg_env, capture_output=True, check=False
            )
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


@dataclass
class Config:
    """One measured configuration: how to run it, reset before it, and check its load."""

    name: str
    kind: str  # postgres | duckdb | tap | noop
    command: list[str] | str
    shown: str  # the command as the table's readers would type it
    env: dict[str, str]
    floor: bool = False
    before: Callable[[], None] | None = None
    check: Callable[[], Load] | None = None  # after its last run
    per_event: bool = True
    runs: list[float] = field(default_factory=list)
    peak: float = 0.0
    cpu: list[float] = field(default_factory=list)
    load: Load | None = None


def measure_all(bench: Bench, args: argparse.Namespace) -> list[Result]:  # noqa: C901, PLR0912, PLR0915
    """Every configuration, in rounds: one run of each per round, so load spreads evenly."""
    del args
    work = bench.work
    base_env = clean_environ()
    bench.meltano_dir = Path(base_env.get("MELTANO_SYS_DIR_ROOT") or ROOT / ".meltano")
    batch_dir = work / "batches"
    batch_dir.mkdir()
    duck_path = work / "warehouse.duckdb"
    floor_db = work / "floor.duckdb"
    bench.env = {
        **base_env,
        "MELTANO_ENVIRONMENT": "dev",
        "MELTANO_DATABASE_URI": f"sqlite:///{work / 'meltano.db'}",
        "TAP_AMPLITUDE_API_URL": bench.sim_url,
        "TAP_AMPLITUDE_PROFILE_API_URL": bench.sim_url,
        "TAP_AMPLITUDE_START_DATE": DAY.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "TAP_AMPLITUDE_END_DATE": (DAY + timedelta(hours=HOURS)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "TAP_AMPLITUDE__SELECT": json.dumps([f"{STREAM}.*"]),
        "TAP_AMPLITUDE_BATCH__SELECT": json.dumps([f"{STREAM}.*"]),
        "TAP_AMPLITUDE_BATCH_BATCH_CONFIG": json.dumps(batch_config(batch_dir)),
        "TARGET_POSTGRES_HOST": bench.pg["PGHOST"],
        "TARGET_POSTGRES_PORT": bench.pg["PGPORT"],
        "TARGET_POSTGRES_USER": bench.pg["PGUSER"],
        "TARGET_POSTGRES_PASSWORD": bench.pg["PGPASSWORD"],
        "TARGET_POSTGRES_DATABASE": bench.pg["PGDATABASE"],
        "TARGET_DUCKDB_BATCH_DATABASE": str(duck_path),
    }
    print("installing Meltano's plugins (if missing)", file=sys.stderr, flush=True)
    for kind, name in (
        ("extractor", "tap-amplitude"),
        ("loader", "target-postgres"),
        ("loader", "target-duckdb-batch"),
    ):
        if not Path(bench.plugin_bin(f"{kind}s", name, name)).exists():
            bench.meltano("install", kind, name)
    for extractor in ("tap-amplitude", "tap-amplitude-batch"):  # cache their catalogs, untimed
        bench.meltano("invoke", "--dump=catalog", extractor)
    tap = bench.plugin_bin("extractors", "tap-amplitude", "tap-amplitude")
    target_postgres = bench.plugin_bin("loaders", "target-postgres", "target-postgres")
    target_duckdb = bench.plugin_bin("loaders", "target-duckdb-batch", "target-duckdb-batch")
    python, me = sys.executable, str(Path(__file__).resolve())
    bench.catalog = export_only_catalog(bench, tap)
    properties = stream_schema(bench.catalog)
    tap_json, tap_batch_json = bench.tap_config(), bench.tap_config(batch_dir)
    catalog = str(bench.catalog)
    env = bench.child_env()

    def clear_batches() -> None:
        for leftover in batch_dir.glob("*"):
            leftover.unlink()

    def fresh_schema(schema: str, pipeline: tuple[str, str] | None = None) -> Callable[[], None]:
        def reset() -> None:
            clear_batches()
            if pipeline:
                forget_state(pipeline)
            bench.psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

        return reset

    def forget_state(pipeline: tuple[str, str]) -> None:
        # A first run of the pipeline, not `--full-refresh`: that also makes Meltano run the
        # tap's discovery again (about a second), which scheduled runs never do.
        bench.meltano("state", "clear", "--force", f"dev:{pipeline[0]}-to-{pipeline[1]}")

    def fresh_duckdb(path: Path, pipeline: tuple[str, str] | None = None) -> Callable[[], None]:
        def reset() -> None:
            clear_batches()
            if pipeline:
                forget_state(pipeline)
            for leftover in (path, path.with_name(path.name + ".wal")):
                leftover.unlink(missing_ok=True)

        return reset

    # The floors' inputs: the PostgreSQL table definition, the DuckDB column types.
    columns = list(properties)
    columns_file = work / "columns.json"
    columns_file.write_text(json.dumps([[c, pg_type(properties[c]) == "jsonb"] for c in columns]))
    definitions = ", ".join(f'"{c}" {pg_type(properties[c])}' for c in columns)
    column_list = ", ".join(f'"{c}"' for c in columns)
    copy = f"\\copy floor.{STREAM} ({column_list}) FROM STDIN WITH (FORMAT csv)"
    duck_columns = work / "duck-columns.json"
    duck_columns.write_text(json.dumps({c: duck_type(p) for c, p in properties.items()}))

    def fresh_floor_table() -> None:
        bench.psql(
            "DROP SCHEMA IF EXISTS floor CASCADE; CREATE SCHEMA floor; "
            f"CREATE TABLE floor.{STREAM} ({definitions}, PRIMARY KEY (uuid))"
        )

    def batch_files_then_floor() -> Load:
        batch_load.append(summarize(batch_rows(batch_dir)))
        return summarize(duckdb_rows(floor_db, STREAM))

    batch_load: list[Load] = []
    tap_cmd = [tap, "--config", str(tap_json), "--catalog", catalog]
    configs = [
        Config(
            "tap alone, RECORD → /dev/null",
            "tap",
            tap_cmd,
            "tap-amplitude --config … --catalog … > /dev/null",
            env,
        ),
        Config(
            "floor: tap | orjson→CSV | COPY",
            "postgres",
            f"set -o pipefail; {tap} --config {tap_json} --catalog {catalog} 2>/dev/null "
            f"| {python} {me} --csv-filter {columns_file} "
            f"| {bench.pg_bin / 'psql'} -X -q -v ON_ERROR_STOP=1 -c '{copy}'",
            "tap-amplitude | orjson → CSV | psql \\copy (typed table, primary key uuid)",
            {**env, **bench.pg},
            floor=True,
            before=fresh_floor_table,
            check=lambda: summarize(postgres_rows(bench, "floor")),
        ),
        Config(
            "floor: tap BATCH + DuckDB read_json",
            "duckdb",
            f"set -e; {tap} --config {tap_batch_json} --catalog {catalog} >/dev/null 2>&1; "
            f"{python} {me} --duckdb-floor {floor_db} {batch_dir} {duck_columns}",
            "tap-amplitude (BATCH files); CREATE TABLE AS SELECT * FROM read_json(files, columns)",
            env,
            floor=True,
            before=fresh_duckdb(floor_db),
            check=batch_files_then_floor,
        ),
    ]
    for name, kind, schema, pipeline in (
        (
            "meltano: tap-amplitude target-postgres (RECORD)",
            "postgres",
            "records",
            ("tap-amplitude", "target-postgres"),
        ),
        (
            "meltano: tap-amplitude-batch target-postgres (BATCH)",
            "postgres",
            "batches",
            ("tap-amplitude-batch", "target-postgres"),
        ),
    ):
        configs.append(
            Config(
                name,
                kind,
                [str(MELTANO_SH), "run", *pipeline],
                "scripts/meltano.sh run " + " ".join(pipeline),
                {**env, "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema},
                before=fresh_schema(schema, pipeline),
                check=postgres_check(bench, schema),
            )
        )
    pipeline = ("tap-amplitude-batch", "target-duckdb-batch")
    configs.append(
        Config(
            "meltano: tap-amplitude-batch target-duckdb-batch (BATCH)",
            "duckdb",
            [str(MELTANO_SH), "run", *pipeline],
            "scripts/meltano.sh run " + " ".join(pipeline),
            env,
            before=fresh_duckdb(duck_path, pipeline),
            check=lambda: summarize(duckdb_rows(duck_path, f"amplitude.{STREAM}")),
        )
    )
    # No-op incremental runs, after the full runs of each round: Meltano with the state it just
    # saved, and the same tap | target directly, the tap reading that state from a file.
    noops = []
    for target_name, pipeline, target_cmd in (
        (
            "target-postgres",
            ("tap-amplitude-batch", "target-postgres"),
            f"{target_postgres} --config {bench.postgres_config('batches')}",
        ),
        (
            "target-duckdb-batch",
            ("tap-amplitude-batch", "target-duckdb-batch"),
            f"{target_duckdb} --config {bench.duckdb_config(duck_path)}",
        ),
    ):
        state_file = work / f"state-{target_name}.json"
        state_id = f"dev:{pipeline[0]}-to-{pipeline[1]}"

        def save_state(state_id: str = state_id, state_file: Path = state_file) -> None:
            if not state_file.exists():
                state = json.loads(bench.meltano("state", "get", state_id))["singer_state"]
                state_file.write_text(json.dumps(state))

        meltano_noop = Config(
            f"no-op: scripts/meltano.sh run {' '.join(pipeline)}",
            "noop",
            [str(MELTANO_SH), "run", *pipeline],
            f"scripts/meltano.sh run {' '.join(pipeline)}",
            {**env, "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": "batches"},
            per_event=False,
            before=save_state,
        )
        direct_noop = Config(
            f"no-op: tap | {target_name}, directly",
            "noop",
            f"set -o pipefail; {tap} --config {tap_batch_json} --catalog {catalog} "
            f"--state {state_file} 2>/dev/null | {target_cmd} >/dev/null",
            f"tap-amplitude --state … | {target_name}",
            env,
            floor=True,
            per_event=False,
            before=save_state,
        )
        noops.append((meltano_noop, direct_noop))
        configs += [direct_noop, meltano_noop]

    for round_index in range(bench.repeat):
        last = round_index == bench.repeat - 1
        for config in configs:
            if config.before is not None:
                config.before()
            if isinstance(config.command, list) and tap_sources_changed(bench.meltano_dir):
                bench.meltano("--version")  # untimed: scripts/meltano.sh reinstalls the tap
            log = work / "logs" / f"{slug(config.name)}-{round_index}.log"
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            seconds, rss = timed(config.command, config.env, log)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            config.runs.append(round(seconds, 3))
            config.cpu.append(
                round(after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime, 3)
            )
            config.peak = max(config.peak, rss)
            print(
                f"  round {round_index + 1}: {config.name}: {seconds:.2f} s",
                file=sys.stderr,
                flush=True,
            )
            if last and config.check is not None:
                config.load = config.check()

    # The tap's RECORD output (not timed): the reference for every content hash.
    records = work / "records.jsonl"
    with records.open("wb") as out:
        subprocess.run(tap_cmd, env=env, stdout=out, stderr=subprocess.DEVNULL, check=True)
    configs[0].load = summarize(record_rows(records))
    records.unlink()
    events = configs[0].load.rows

    results = []
    for config in configs:
        seconds = statistics.median(config.runs)
        results.append(
            Result(
                config.name,
                config.kind,
                config.floor,
                config.shown,
                seconds,
                config.runs,
                events if config.per_event else 0,
                events / seconds if config.per_event else None,
                peak_rss_mb=config.peak,
                load=config.load,
                cpu_seconds=statistics.median(config.cpu),
            )
        )
    by_name = {r.configuration: r for r in results}
    floors = {r.kind: r for r in results if r.floor and r.kind in {"postgres", "duckdb"}}
    for result in results:
        if result.kind in floors:
            result.ratio_to = floors[result.kind].configuration
        elif result.kind == "tap":
            result.ratio_to = floors["postgres"].configuration
        if result.ratio_to:
            result.ratio = result.seconds / by_name[result.ratio_to].seconds
    for meltano_noop, direct_noop in noops:
        result = by_name[meltano_noop.name]
        result.ratio_to = direct_noop.name
        result.ratio = result.seconds / by_name[direct_noop.name].seconds
    if batch_load:
        results.append(
            Result(
                "tap BATCH files (content check only)",
                "batch-files",
                False,  # noqa: FBT003
                "",
                0.0,
                [],
                batch_load[0].rows,
                None,
                load=batch_load[0],
            )
        )
    return results


def verify(results: list[Result]) -> list[str]:
    """Problems with the loads: every one must equal the tap's RECORD output."""
    loads = [(r.configuration, r.load) for r in results if r.load is not None]
    reference = loads[0][1]
    problems = []
    for name, load in loads:
        if load.rows != reference.rows or load.uuids != reference.rows:
            problems.append(
                f"{name}: {load.rows} rows, {load.uuids} uuids, expected {reference.rows}"
            )
        if load.digest != reference.digest:
            problems.append(f"{name}: content hash {load.digest} != {reference.digest}")
    return problems


def table(results: list[Result]) -> str:
    """The one table: configuration, wall s, events/s, × floor, peak RSS."""
    lines = [
        "| configuration | wall s | events/s | × floor | peak RSS | CPU s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.kind == "batch-files":
            continue
        rate = f"{r.events_per_second:,.0f}" if r.events_per_second else "–"
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else ("1.00" if r.floor else "–")
        rss = f"{r.peak_rss_mb:.0f} MB" if r.peak_rss_mb else "–"
        name = r.configuration.replace("|", "\\|")
        cpu = f"{r.cpu_seconds:.1f}" if r.cpu_seconds is not None else "–"
        lines.append(f"| {name} | {r.seconds:.2f} | {rate} | {ratio} | {rss} | {cpu} |")
    return "\n".join(lines)


def svg_chart(results: list[Result], events: int) -> str:
    """Horizontal bars of wall seconds per configuration, floors in grey."""
    shown = [r for r in results if r.kind != "batch-files"]
    colors = {"postgres": "#2b6cb0", "duckdb": "#2f855a", "tap": "#805ad5", "noop": "#b7791f"}
    width, bar_h, gap, left, top = 960, 20, 8, 500, 40
    height = top + len(shown) * (bar_h + gap) + 30
    longest = max(r.seconds for r in shown)
    scale = (width - left - 70) / longest
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            'font-family="sans-serif" font-size="12">'
        ),
        (
            f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">Pipelines at '
            f"{events:,} events: wall seconds (shorter is better; grey = floor)</text>"
        ),
    ]
    for index, r in enumerate(shown):
        y = top + index * (bar_h + gap)
        color = "#9aa5b1" if r.floor else colors.get(r.kind, "#4a5568")
        label = r.configuration.replace("&", "&amp;").replace("<", "&lt;")
        parts.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{label}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{max(1.0, r.seconds * scale):.1f}" '
            f'height="{bar_h}" fill="{color}"/>'
        )
        ratio = f"  ×{r.ratio:.2f}" if r.ratio is not None else ""
        parts.append(
            f'<text x="{left + r.seconds * scale + 6:.1f}" y="{y + 14}">{r.seconds:.1f} s{ratio}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    """Measure, verify, print the table, write JSON and the chart."""
    if sys.argv[1:2] == ["--csv-filter"]:  # the floor's CSV filter
        csv_filter(sys.argv[2])
        return
    if sys.argv[1:2] == ["--duckdb-floor"]:  # the floor's DuckDB load
        duckdb_floor_load(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="2,000 events, once (for CI)")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "pipeline_benchmark.json")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "pipeline_benchmark.svg")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.repeat = 2_000, 1
    # A SIGTERM (or Ctrl-C) still stops PostgreSQL and removes the work directory.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_before = os.getloadavg()
    started = time.time()
    results = run(args)
    problems = verify(results)
    print(table(results))
    loads = [r for r in results if r.load is not None]
    print(f"\nverified {len(loads)} loads: ", end="")
    if problems:
        print("FAILED")
        for problem in problems:
            print(f"  {problem}")
    elif (ref := loads[0].load) is not None:
        print(f"{ref.rows:,} rows, {ref.uuids:,} distinct uuids, content hash {ref.digest} in each")
    report = {
        "events": results[0].events,
        "repeat": args.repeat,
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "seconds_total": round(time.time() - started, 1),
        "verified": not problems,
        "problems": problems,
        "results": [asdict(r) for r in results],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    args.chart.write_text(svg_chart(results, results[0].events))
    print(f"wrote {args.json} and {args.chart}")
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
