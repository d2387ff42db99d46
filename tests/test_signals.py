"""SIGTERM and SIGINT end a run between two whole Singer messages, with a non-zero exit.

The tap's stdout is a pipe this test stops reading, so the tap is blocked in the middle of a
write when the signal arrives: the case where a message used to be cut in two.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from pathlib import Path

import pytest

from amplitude_simulator import AmplitudeSimulator
from tests.helpers import TapRun, run_tap, simulator_config, tap_command

if t.TYPE_CHECKING:
    from collections.abc import Iterator

STREAM = "export_events"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_write_leaves_whole_messages_and_a_resumable_state(
    simulator: AmplitudeSimulator, signum: signal.Signals, code: int
) -> None:
    config = simulator_config(simulator, export_window_hours=24)
    with tempfile.TemporaryDirectory() as tmp:
        command = tap_command(config, Path(tmp), streams=[STREAM])
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            assert process.stdout is not None
            assert process.stderr is not None
            head = process.stdout.read(150_000)  # then stop reading: the tap blocks in a write
            time.sleep(0.5)
            process.send_signal(signum)
            time.sleep(0.5)
            rest = process.stdout.read()
            stderr = process.stderr.read().decode()
            process.wait(timeout=30)

    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert f"Interrupted by {signal.Signals(signum).name}" in stderr
    output = (head + rest).decode()
    assert output.endswith("\n")
    messages = [json.loads(line) for line in output.splitlines()]  # every line is whole
    first = TapRun(process.returncode, output, stderr, messages)
    expected = {
        e["uuid"]
        for e in simulator.dataset.expected_events(simulator.dataset.start, simulator.dataset.end)
    }
    assert 0 < len(first.records(STREAM)) < len(expected)  # it really stopped mid-export

    resumed = run_tap(config, streams=[STREAM], state=first.final_state())
    assert resumed.returncode == 0, resumed.stderr
    got = {r["uuid"] for r in first.records(STREAM)} | {r["uuid"] for r in resumed.records(STREAM)}
    assert got == expected


@contextlib.contextmanager
def _silent_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A port that accepts connections and never answers, like an export still being built."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        listener.close()
        for connection in accepted:
            connection.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("server", ["never answers", "refuses connections"])
def test_a_signal_while_downloads_wait_ends_the_run_at_once(
    simulator: AmplitudeSimulator, server: str
) -> None:
    """Downloads run on worker threads: neither a pending answer nor retries hold the exit."""
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        if server == "never answers":
            port, accepted = stack.enter_context(_silent_server())
        else:
            port, accepted = _free_port(), []
        config = simulator_config(
            simulator, api_url=f"http://127.0.0.1:{port}", export_window_hours=24
        )
        command = tap_command(config, Path(tmp), streams=[STREAM])
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            deadline = time.monotonic() + 30
            while server == "never answers" and not accepted and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(3)  # downloads waiting for an answer, or between retries
            assert process.poll() is None
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            try:
                stdout, stderr_bytes = process.communicate(timeout=20)
            finally:
                process.kill()
            took = time.monotonic() - signalled
    stderr = stderr_bytes.decode()
    assert process.returncode == 143, stderr
    assert took < 10, f"exit took {took:.1f} s after SIGTERM"
    assert "Interrupted by SIGTERM" in stderr
    assert "Traceback" not in stderr
    assert all(json.loads(line) for line in stdout.decode().splitlines())


@pytest.mark.parametrize("delay", [0.25, 0.5])
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_while_the_tap_starts_is_one_line_and_the_signal_code(
    simulator: AmplitudeSimulator, signum: signal.Signals, code: int, delay: float
) -> None:
    """Imports take most of a second; a signal meanwhile is handled like one mid-run."""
    executable = str(Path(sys.executable).with_name("tap-amplitude"))
    with tempfile.TemporaryDirectory() as tmp:
        command = [executable, *tap_command(simulator_config(simulator), Path(tmp))[3:]]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
            time.sleep(delay)
            process.send_signal(signum)
            stdout, stderr_bytes = process.communicate(timeout=30)
    stderr = stderr_bytes.decode()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    name = signal.Signals(signum).name
    assert f"interrupted by {name} while starting" in stderr or f"Interrupted by {name}" in stderr
    assert all(json.loads(line) for line in stdout.decode().splitlines())
