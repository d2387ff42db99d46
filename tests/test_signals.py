"""SIGTERM and SIGINT end a run between two whole Singer messages, with a non-zero exit.

The tap's stdout is a pipe this test stops reading, so the tap is blocked in the middle of a
write when the signal arrives: the case where a message used to be cut in two.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from amplitude_simulator import AmplitudeSimulator
from tests.helpers import TapRun, run_tap, simulator_config, tap_command

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
