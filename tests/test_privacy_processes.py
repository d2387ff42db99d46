"""``amplitude-privacy`` as a real process: signals, concurrent runs, a torn audit log.

Each test runs the console script (or the CLI in-process) against the real simulator and
checks what the simulator received, so "sent once" means one request body naming the id.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from amplitude_simulator import AmplitudeSimulator, Fault
from tap_amplitude.privacy import AuditLog, open_tap
from tests.test_privacy_cli import (
    DELETIONS,
    MANY_USERS,
    expected_ids,
    ids_args,
    privacy,
    sent_ids,
    write_config,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

SCRIPT = Path(sys.executable).parent / "amplitude-privacy"
SINGER_TYPES = {"STATE", "RECORD", "SCHEMA"}
REQUESTER = "dpo@example.com"


@pytest.fixture
def many_users() -> Iterator[AmplitudeSimulator]:
    with AmplitudeSimulator(MANY_USERS) as sim:
        yield sim


def start(args: list[str | Path], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(SCRIPT), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def events(audit: Path, event: str) -> list[dict[str, Any]]:
    if not audit.exists():
        return []
    found = []
    for line in audit.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if entry.get("event") == event:
            found.append(entry)
    return found


def accepted_ids(audit: Path) -> list[str]:
    return [
        str(value)
        for entry in events(audit, "accepted")
        for value in [*entry["amplitude_ids"], *entry["user_ids"]]
        if value not in entry["invalid_ids"]
    ]


def singer_messages(stdout: str) -> list[dict[str, Any]]:
    """Singer messages on stdout; every stdout line must be a whole JSON object."""
    parsed = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert all(isinstance(item, dict) for item in parsed)
    return [item for item in parsed if item.get("type") in SINGER_TYPES]


def delete_args(
    sim: AmplitudeSimulator, tmp_path: Path, audit: Path, count: int
) -> list[str | Path]:
    config = write_config(sim, tmp_path)
    args: list[str | Path] = ["delete", "--config", config, *ids_args(sim, count)]
    return [*args, "--requester", REQUESTER, "--audit-log", audit, "--yes"]


# ----------------------------------------------------------------------------------------
# signals


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_run_exits_130_in_one_line_and_the_rerun_sends_each_id_once(
    many_users: AmplitudeSimulator, tmp_path: Path, signum: signal.Signals
) -> None:
    many_users.add_fault(DELETIONS, Fault.delay(2), times=3)  # every batch takes a while
    audit = tmp_path / "audit.jsonl"
    args = delete_args(many_users, tmp_path, audit, 250)

    proc = start(args, tmp_path)
    try:
        wait_for(lambda: bool(events(audit, "accepted")), "the first batch to be accepted")
        proc.send_signal(signum)
    finally:
        out, err = finish(proc)

    assert proc.returncode == 130, err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    done = accepted_ids(audit)
    assert 100 <= len(done) < 250  # mid-run
    assert f"interrupted by {signum.name}" in line
    assert f"{len(done)} of 250 ids accepted" in line
    assert str(audit) in line
    assert "run the same command again" in line.lower()
    assert "not sent again" in line
    assert singer_messages(out) == []
    printed = [entry for entry in map(json.loads, out.splitlines()) if entry]
    assert printed == events(audit, "accepted")  # stdout and the log agree

    rerun = subprocess.run(
        [str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipping {len(done)} ids already accepted" in rerun.stderr
    assert singer_messages(rerun.stdout) == []
    bodies = many_users.deletions.bodies
    assert sorted(sent_ids(bodies)) == sorted(expected_ids(many_users, 250))  # each id once
    assert sorted(accepted_ids(audit)) == sorted(expected_ids(many_users, 250))


def test_the_tap_the_cli_builds_cannot_write_singer_messages(
    many_users: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = json.loads(write_config(many_users, tmp_path).read_text())
    with open_tap(config) as tap:
        tap.state_writer.write_state({"bookmarks": {"deletion_jobs": {"x": 1}}})
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------------------
# concurrent runs


def test_two_concurrent_runs_on_one_audit_log_send_each_id_once(
    many_users: AmplitudeSimulator, tmp_path: Path
) -> None:
    many_users.add_fault(DELETIONS, Fault.delay(2.5), times=6)  # the first run lasts a while
    audit = tmp_path / "audit.jsonl"
    args = delete_args(many_users, tmp_path, audit, 250)

    first = start(args, tmp_path)
    try:
        wait_for(lambda: bool(events(audit, "sending")), "the first run to start sending")
        second = start(args, tmp_path)
    finally:
        first_out, first_err = finish(first)
    second_out, second_err = finish(second)

    assert first.returncode == 0, first_err
    assert second.returncode == 0, second_err
    bodies = many_users.deletions.bodies
    assert sorted(sent_ids(bodies)) == sorted(expected_ids(many_users, 250))  # each id once
    assert sorted(accepted_ids(audit)) == sorted(expected_ids(many_users, 250))
    # The second run waited for the first, then found everything accepted.
    assert "waiting" in second_err
    assert "nothing to send" in second_err
    assert second_out == ""
    assert len(first_out.splitlines()) == 3


# ----------------------------------------------------------------------------------------
# a torn audit log


def test_a_torn_last_line_is_skipped_and_never_corrupts_the_next_entry(
    many_users: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = many_users.dataset.user_list()
    audit = tmp_path / "audit.jsonl"
    config = write_config(many_users, tmp_path)
    base: list[str | Path] = ["delete", "--config", config]
    base += ["--requester", REQUESTER, "--audit-log", audit, "--yes"]
    first = privacy(capsys, *base, "--user-id", users[0].user_id)
    assert first.code == 0, first.err

    # Power cut while an "accepted" line for users[1] was being written: half a line, no "\n".
    project = AuditLog(audit, many_users.project.api_key).project
    whole = json.dumps(
        {
            "event": "accepted",
            "project": project,
            "user_ids": [users[1].user_id],
            "amplitude_ids": [],
            "time": datetime.now(tz=timezone.utc).isoformat(),
            "batch": "1/1",
            "invalid_ids": [],
        }
    )
    torn = whole[: len(whole) - 30]
    with audit.open("a") as handle:
        handle.write(torn)

    second = privacy(capsys, *base, *["--user-id", users[0].user_id, "--user-id", users[1].user_id])
    assert second.code == 0, second.err
    assert f"{audit} line 3" in second.err  # the warning names the file and the line
    assert "skipping 1 ids already accepted" in second.err  # users[1] is not "accepted"

    lines = audit.read_text().split("\n")
    assert lines[-1] == ""  # the log ends with a whole line
    assert lines[2] == torn  # the torn line is left as it was, on its own
    entries = [json.loads(line) for line in lines[:2] + lines[3:-1]]
    assert [entry["event"] for entry in entries] == ["sending", "accepted"] * 2
    assert entries[-1]["user_ids"] == [users[1].user_id]
    assert sent_ids(many_users.deletions.bodies) == [
        users[0].user_id,
        users[1].user_id,
    ]
