"""One tap run for a Dagster asset: ``tap-amplitude`` piped into a Singer target, or a Meltano job.

Nothing here imports Dagster; :mod:`tap_amplitude.dagster.definitions` turns a
:class:`PipelineError` into the failure the UI shows.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

TAIL_LINES = 40
_STREAM_NAME = re.compile(rb'"stream"\s*:\s*"([^"]+)"')
# Failures no retry can fix: the run stops at once and says what to change.
_PERMANENT = (
    "Invalid configuration",
    "refused the credentials",
    "is not Singer",
    "rate_limits.backend",
    "No such file",
)
_DISCOVERED: dict[str, t.Any] = {}
_DISCOVER_LOCK = threading.Lock()


@dataclass(frozen=True)
class SingerTarget:
    """Any Singer target, as the argv that starts it (``target-postgres --config t.json``)."""

    command: tuple[str, ...]


@dataclass(frozen=True)
class MeltanoJob:
    """``meltano run <extractor> <loader>`` with a per-partition state id suffix.

    The tap's settings come from the Meltano project; each partition overrides
    ``start_date``, ``end_date`` and the selected streams through the environment.
    """

    loader: str
    extractor: str = "tap-amplitude"
    meltano: tuple[str, ...] = ("meltano",)
    project_dir: str | None = None
    environment: str | None = None


Loader = SingerTarget | MeltanoJob


@dataclass(frozen=True)
class TapRun:
    """What one asset materialization extracts: streams, and the [start, end) upload range."""

    streams: tuple[str, ...]
    start: datetime | None = None
    end: datetime | None = None
    label: str = "snapshot"  # the partition key, for messages and Meltano's state id


@dataclass
class RunOutcome:
    """What a finished run moved."""

    records: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class PipelineError(Exception):
    """The tap or the loader failed: which one, its last error line, and whether to retry."""

    def __init__(self, process: str, exit_code: int | None, error: str) -> None:
        """Keep the parts the failure message is built from."""
        super().__init__(f"{process} exited {exit_code}: {error}")
        self.process = process
        self.exit_code = exit_code
        self.error = error
        self.permanent = any(marker in error for marker in _PERMANENT)


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC, as the tap's settings take it."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_pipeline(
    tap_config_path: Path | None,
    loader: Loader,
    run: TapRun,
    *,
    log: Callable[[str], None],
) -> RunOutcome:
    """Run one extraction to completion; raise :class:`PipelineError` when it fails."""
    started = time.monotonic()
    if isinstance(loader, MeltanoJob):
        outcome = _run_meltano(loader, run, log=log)
    else:
        if tap_config_path is None:
            raise PipelineError("tap-amplitude", None, "No such file: no tap config file given")
        outcome = _run_singer(tap_config_path, loader, run, log=log)
    outcome.seconds = time.monotonic() - started
    return outcome


def tap_config_for(base: Mapping[str, t.Any], run: TapRun) -> dict[str, t.Any]:
    """The tap's settings for ``run``: the base config with the partition's range."""
    config = dict(base)
    if run.start is not None:
        config["start_date"] = iso(run.start)
    if run.end is not None:
        config["end_date"] = iso(run.end)
    return config


def catalog_for(streams: tuple[str, ...]) -> dict[str, t.Any]:
    """The tap's catalog (as ``--discover`` prints it) with only ``streams`` selected.

    Discovery needs no credentials or network, so it runs here rather than in one more
    process; the signal handlers the SDK installs are put back (Dagster owns them).
    """
    with _DISCOVER_LOCK:
        if not _DISCOVERED:
            _DISCOVERED.update(_discover())
    catalog: dict[str, t.Any] = json.loads(json.dumps(_DISCOVERED))
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] in streams
    return catalog


def _discover() -> dict[str, t.Any]:
    from tap_amplitude.tap import TapAmplitude  # noqa: PLC0415 - the SDK, only when running

    main = threading.current_thread() is threading.main_thread()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    try:
        tap = TapAmplitude(
            config={"api_key": "-", "secret_key": "-", "start_date": "2000-01-01T00:00:00Z"},
            parse_env_config=False,
            validate_config=False,
            setup_mapper=False,
        )
        catalog: dict[str, t.Any] = json.loads(tap.catalog_json_text)
        return catalog
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _run_singer(
    tap_config_path: Path, target: SingerTarget, run: TapRun, *, log: Callable[[str], None]
) -> RunOutcome:
    """``tap-amplitude --config … --catalog … | <target>``, counting records on the way."""
    try:
        base = json.loads(tap_config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PipelineError(
            "tap-amplitude", None, f"No such file or not JSON: tap config {tap_config_path}"
        ) from exc
    with tempfile.TemporaryDirectory(prefix="tap-amplitude-dagster-") as workdir:
        config_file = Path(workdir) / "config.json"
        catalog_file = Path(workdir) / "catalog.json"
        config_file.touch(mode=0o600)
        config_file.write_text(json.dumps(tap_config_for(base, run)), encoding="utf-8")
        catalog_file.write_text(json.dumps(catalog_for(run.streams)), encoding="utf-8")
        tap_argv = [
            sys.executable,
            "-m",
            "tap_amplitude",
            "--config",
            str(config_file),
            "--catalog",
            str(catalog_file),
        ]
        log(f"{run.label}: tap-amplitude {' '.join(run.streams)} | {target.command[0]}")
        tap = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            tap_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            loader = subprocess.Popen(  # noqa: S603 - the target the operator configured
                list(target.command),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            tap.kill()
            tap.wait()
            raise PipelineError(
                target.command[0], None, f"No such file: cannot start the target ({exc.strerror})"
            ) from exc
        tails = {
            "tap-amplitude": _pump(tap.stderr),
            target.command[0]: _pump(loader.stderr),
        }
        records = _copy_records(tap, loader)
        tap_code, loader_code = tap.wait(), loader.wait()
        for thread, _ in tails.values():
            thread.join(timeout=10)
    if tap_code != 0:
        raise PipelineError("tap-amplitude", tap_code, _error_line(tails["tap-amplitude"][1]))
    if loader_code != 0:
        name = target.command[0]
        raise PipelineError(name, loader_code, _error_line(tails[name][1]))
    return RunOutcome(records=records)


def _copy_records(tap: subprocess.Popen[bytes], loader: subprocess.Popen[bytes]) -> dict[str, int]:
    """Copy the tap's messages to the loader line by line; count RECORDs per stream."""
    records: collections.Counter[str] = collections.Counter()
    assert tap.stdout is not None  # noqa: S101 - both pipes were requested
    assert loader.stdin is not None  # noqa: S101
    try:
        for line in tap.stdout:
            head = line[:200]
            if b'"RECORD"' in head:
                match = _STREAM_NAME.search(head)
                records[match.group(1).decode() if match else "?"] += 1
            loader.stdin.write(line)
    except BrokenPipeError:
        tap.kill()  # the loader died; its exit code and stderr say why
    finally:
        tap.stdout.close()
        with contextlib.suppress(BrokenPipeError):
            loader.stdin.close()
    return dict(records)


def _pump(stream: t.IO[bytes] | None) -> tuple[threading.Thread, collections.deque[str]]:
    """Forward a child's stderr to ours (Dagster captures it per step); keep its last lines."""
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def pump() -> None:
        if stream is None:
            return
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            tail.append(line)
            sys.stderr.write(line + "\n")
        stream.close()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread, tail


def _error_line(tail: collections.deque[str]) -> str:
    """The child's own explanation: its last ERROR line, else its last line."""
    lines = [line for line in tail if line.strip()]
    errors = [line for line in lines if "ERROR" in line or "Error" in line]
    chosen = (errors or lines or ["(no output)"])[-1]
    return chosen.rsplit(" | ", 1)[-1].strip()


def meltano_command(job: MeltanoJob, run: TapRun) -> tuple[list[str], dict[str, str]]:
    """The argv and extra environment of the Meltano job for ``run``."""
    argv = [*job.meltano]
    if job.environment:
        argv += ["--environment", job.environment]
    argv += ["run", "--state-id-suffix", _state_suffix(run.label), job.extractor, job.loader]
    prefix = job.extractor.upper().replace("-", "_")
    env = {f"{prefix}__SELECT": json.dumps([f"{stream}.*" for stream in run.streams])}
    if run.start is not None:
        env[f"{prefix}_START_DATE"] = iso(run.start)
    if run.end is not None:
        env[f"{prefix}_END_DATE"] = iso(run.end)
    return argv, env


def _state_suffix(label: str) -> str:
    """A Meltano state id suffix for a partition key (``2024-03-01-05:00`` → ``…-05-00``)."""
    return "dagster-" + re.sub(r"[^A-Za-z0-9_-]", "-", label)


def _run_meltano(job: MeltanoJob, run: TapRun, *, log: Callable[[str], None]) -> RunOutcome:
    argv, extra = meltano_command(job, run)
    log(f"{run.label}: {' '.join(argv)}")
    process = subprocess.Popen(  # noqa: S603 - the Meltano the operator configured
        argv,
        cwd=job.project_dir,
        env={**os.environ, **extra},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    thread, tail = _pump(process.stderr)
    code = process.wait()
    thread.join(timeout=10)
    if code != 0:
        raise PipelineError("meltano", code, _error_line(tail))
    return RunOutcome()
