"""What the end-to-end tests share: the dataset, and thin wrappers around Meltano and psql."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from amplitude_simulator import AmplitudeSimulator, Dataset

ROOT = Path(__file__).resolve().parents[2]
MELTANO_SH = ROOT / "scripts" / "meltano.sh"
POSTGRES_SH = ROOT / "scripts" / "postgres.sh"
DUCKDB_QUERY = ROOT / "scripts" / "duckdb_query.py"
PLUGINS = (
    "extractors/tap-amplitude",
    "loaders/target-jsonl",
    "loaders/target-postgres",
    "loaders/target-duckdb-batch",
)
UTILITIES = ("utilities/duckdb",)

DAY = timedelta(days=1)
# Six days, far enough in the past that every hour is exportable; small enough to run fast.
E2E_DATASET = Dataset(
    start=datetime(2024, 3, 1, tzinfo=timezone.utc),
    end=datetime(2024, 3, 7, tzinfo=timezone.utc),
    events_per_hour=12,
    users=10,
)

# Settings from the developer's shell (or CI) must not leak into the pipelines under test.
_LEAKY_PREFIXES = ("TAP_AMPLITUDE", "TARGET_", "DUCKDB_", "MELTANO_", "PG")


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC, as Meltano settings take it."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Meltano:
    """``scripts/meltano.sh`` with an isolated system database (so isolated state)."""

    env: dict[str, str]
    log_dir: Path
    runs: int = 0

    def command(self, *args: str) -> list[str]:
        """The argv of one Meltano command."""
        return [str(MELTANO_SH), *args]

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The process environment for one command."""
        return {**self.env, **(extra or {})}

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion; fail the test with Meltano's log tail if it fails."""
        self.runs += 1
        log = self.log_dir / f"meltano-{self.runs:02d}.log"
        with log.open("w") as out:
            result = subprocess.run(
                self.command(*args),
                env=self.environ(env),
                stdout=subprocess.PIPE,
                stderr=out,
                text=True,
                timeout=timeout,
                check=False,
            )
        if result.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-40:])
            pytest.fail(f"meltano {' '.join(args)} exited {result.returncode}:\n{tail}")
        return result

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start a command in the background (stderr to a log file next to the others)."""
        self.runs += 1
        with (self.log_dir / f"meltano-{self.runs:02d}.log").open("w") as log:
            return subprocess.Popen(
                self.command(*args),
                env=self.environ(env),
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )

    def state(self, state_id: str) -> dict[str, Any]:
        """The state Meltano saved under ``state_id``."""
        result = self.run("state", "get", state_id)
        state: dict[str, Any] = json.loads(result.stdout)
        return state


@dataclass
class Postgres:
    """A running server: connection settings and a psql-based query helper."""

    bindir: Path
    settings: dict[str, str] = field(default_factory=dict)

    def target_env(self, schema: str) -> dict[str, str]:
        """Environment that points target-postgres at this server and ``schema``."""
        return {
            "TARGET_POSTGRES_HOST": self.settings["PGHOST"],
            "TARGET_POSTGRES_PORT": self.settings["PGPORT"],
            "TARGET_POSTGRES_USER": self.settings["PGUSER"],
            "TARGET_POSTGRES_PASSWORD": self.settings["PGPASSWORD"],
            "TARGET_POSTGRES_DATABASE": self.settings["PGDATABASE"],
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
        }

    def psql(self, sql: str) -> str:
        """Run one statement over TCP with password authentication; return psql's output."""
        result = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            env={**os.environ, **self.settings},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a SELECT, as JSON objects (jsonb stays nested, timestamps become text)."""
        wrapped = f"SELECT coalesce(json_agg(q), '[]'::json) FROM ({sql}) AS q"  # noqa: S608
        rows: list[dict[str, Any]] = json.loads(self.psql(wrapped))
        return rows


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_PREFIXES)}


def plugins_installed() -> bool:
    venvs = ROOT / ".meltano"
    return all(
        (venvs / plugin / "venv" / ".meltano_plugin_fingerprint").exists()
        for plugin in (*PLUGINS, *UTILITIES)
    )


def export_starts(simulator: AmplitudeSimulator) -> list[str]:
    """The ``start`` parameter of every Export API request the simulator answered."""
    return [r.params["start"] for r in simulator.requests if r.path == "/api/2/export"]
