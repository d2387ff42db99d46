"""Running the tap the way users do (its CLI, in a subprocess) and reading what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amplitude_simulator import AmplitudeSimulator


@dataclass
class TapRun:
    """Parsed output of one tap process."""

    returncode: int
    stdout: str
    stderr: str
    messages: list[dict[str, Any]] = field(default_factory=list)

    def records(self, stream: str) -> list[dict[str, Any]]:
        """RECORD payloads of one stream, in order."""
        return [
            m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream
        ]

    def states(self) -> list[dict[str, Any]]:
        """Every STATE value, in order."""
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    def final_state(self) -> dict[str, Any]:
        """The last STATE value."""
        states = self.states()
        assert states, f"no STATE message; stderr:\n{self.stderr}"
        return states[-1]


def parse_messages(stdout: str) -> list[dict[str, Any]]:
    """Every Singer message on stdout (one JSON object per line)."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def simulator_config(simulator: AmplitudeSimulator, **overrides: Any) -> dict[str, Any]:
    """A config that points every API at the simulator, covering its whole dataset."""
    config: dict[str, Any] = {
        "api_key": simulator.project.api_key,
        "secret_key": simulator.project.secret_key,
        "api_url": simulator.url,
        "profile_api_url": simulator.url,
        "start_date": simulator.dataset.start.isoformat(),
        "end_date": simulator.dataset.end.isoformat(),
    }
    config.update(overrides)
    return config


def select_only(streams: list[str], catalog: dict[str, Any]) -> dict[str, Any]:
    """Mark only the named streams selected in a discovered catalog."""
    for entry in catalog["streams"]:
        chosen = entry["tap_stream_id"] in streams
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = chosen
    return catalog


_DISCOVERED: dict[str, Any] = {}


def discovered_catalog() -> dict[str, Any]:
    """The tap's catalog from ``--discover`` (run once per test session)."""
    if not _DISCOVERED:
        result = subprocess.run(
            [sys.executable, "-m", "tap_amplitude", "--discover"],
            capture_output=True,
            text=True,
            check=True,
        )
        _DISCOVERED.update(json.loads(result.stdout))
    copy: dict[str, Any] = json.loads(json.dumps(_DISCOVERED))
    return copy


def tap_command(
    config: dict[str, Any],
    workdir: Path,
    *,
    streams: list[str] | None = None,
    state: dict[str, Any] | None = None,
    extra_args: list[str] | None = None,
) -> list[str]:
    """Write config/catalog/state files and return the CLI invocation."""
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config))
    command = [sys.executable, "-m", "tap_amplitude", "--config", str(config_path)]
    if streams is not None:
        catalog_path = workdir / "catalog.json"
        catalog_path.write_text(json.dumps(select_only(streams, discovered_catalog())))
        command += ["--catalog", str(catalog_path)]
    if state is not None:
        state_path = workdir / "state.json"
        state_path.write_text(json.dumps(state))
        command += ["--state", str(state_path)]
    return command + (extra_args or [])


def run_tap(
    config: dict[str, Any],
    *,
    streams: list[str] | None = None,
    state: dict[str, Any] | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> TapRun:
    """Run ``tap-amplitude`` to completion and parse its stdout."""
    with tempfile.TemporaryDirectory() as tmp:
        command = tap_command(
            config, Path(tmp), streams=streams, state=state, extra_args=extra_args
        )
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
    messages = parse_messages(result.stdout) if result.returncode == 0 else []
    return TapRun(result.returncode, result.stdout, result.stderr, messages)


def iter_waits(seconds: float) -> Generator[float, Any, None]:
    """A backoff wait generator that never waits long (for in-process retry tests)."""
    yield  # type: ignore[misc]  # primed by backoff with send(None)
    while True:
        yield seconds


def warning_lines(stderr: str) -> list[str]:
    """The tap's WARNING log lines, minus the SDK's notice about an end-of-life Python."""
    return [
        line
        for line in stderr.splitlines()
        if "WARNING" in line and "SingerSDKPythonEOLWarning" not in line
    ]
