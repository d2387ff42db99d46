"""``amplitude-privacy`` under input users get wrong: one stderr line, the right exit code.

Whatever the user causes (a closed or full stdout, a bad config, blank or huge ids, files
nested too deep, a full disk) ends in one line saying what happened and what to do: never
a traceback, never a secret, never exit 0 when output was lost, exit 2 for usage errors.
Process-level behaviour (stdout, argv bytes, file size limits) runs the console script;
argument checks run in-process (the same ``run``, without the interpreter's start-up).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from amplitude_simulator import AmplitudeSimulator
from tests.test_privacy_cli import Outcome, privacy, recent_dataset, write_config
from tests.test_privacy_processes import SCRIPT

if TYPE_CHECKING:
    from collections.abc import Iterator

REQUESTER = "dpo@example.com"
STDOUT_LOST = "could not write to standard output"


@pytest.fixture
def sim() -> Iterator[AmplitudeSimulator]:
    """Recent data: deletions land in a job that is still staging (``cancel`` works)."""
    with AmplitudeSimulator(recent_dataset()) as simulator:
        yield simulator


def script(
    args: list[str | bytes | Path], cwd: Path, *, stdout: str = "pipe", limit_files: bool = False
) -> Outcome:
    """Run the console script; ``stdout`` is ``pipe``, ``closed`` or ``full`` (/dev/full).

    ``limit_files`` stops every regular file it writes at 512 bytes (a full disk, as far as
    the process can tell: writes fail with EFBIG).
    """
    command: list[str | bytes | Path] = [SCRIPT, *args]
    prefix = ""
    if stdout == "closed":
        prefix += "exec >&-; "
    if limit_files:
        prefix += "trap '' XFSZ; ulimit -f 1; "
    if prefix:
        command = ["sh", "-c", f'{prefix}exec "$0" "$@"', *command]
    with Path("/dev/full").open("wb") as full:
        done = subprocess.run(
            command,
            stdout=full if stdout == "full" else subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            timeout=60,
            check=False,
        )
    out = done.stdout.decode() if done.stdout else ""
    return Outcome(done.returncode, out, done.stderr.decode(errors="replace"))


def one_line(outcome: Outcome) -> str:
    """The only stderr line; no traceback."""
    assert "Traceback" not in outcome.err, outcome.err
    (line,) = outcome.err.strip().splitlines()
    return line


# ----------------------------------------------------------------------------------------
# a standard output that takes nothing


@pytest.mark.parametrize(
    ("args", "stdout"),
    [
        (["lookup"], "closed"),
        (["lookup"], "full"),
        (["lookup", "--help"], "full"),
        (["lookup", "--help"], "closed"),
    ],
    ids=["closed", "full", "help", "help-closed"],
)
def test_output_that_cannot_be_written_is_one_line_and_exit_1(
    sim: AmplitudeSimulator, tmp_path: Path, args: list[str], stdout: str
) -> None:
    config = write_config(sim, tmp_path)
    user = sim.dataset.user_list()[0].user_id

    result = script([*args, "--config", config, user], tmp_path, stdout=stdout)

    assert result.code == 1
    line = one_line(result)
    reason = "Bad file descriptor" if stdout == "closed" else "No space left on device"
    assert line.startswith(f"amplitude-privacy: error: {STDOUT_LOST} ({reason})")
    assert line.endswith("nothing was changed in Amplitude. Run the same command again.")


def test_a_closed_output_stops_a_deletion_before_it_is_sent(
    sim: AmplitudeSimulator, tmp_path: Path
) -> None:
    """Its answer (what Amplitude accepted) could not be shown, so nothing is sent."""
    config = write_config(sim, tmp_path)
    user = sim.dataset.user_list()[0].user_id
    args: list[str | bytes | Path] = ["delete", "--yes", "--config", config]
    args += ["--requester", REQUESTER, "--user-id", user]

    result = script(args, tmp_path, stdout="closed")

    assert result.code == 1
    line = one_line(result)
    assert line.endswith("nothing was changed in Amplitude. Run the same command again.")
    assert sim.requests == []


@contextlib.contextmanager
def lost_stdout(how: str) -> Iterator[str]:
    """In-process stdout as Python sets it up for ``>&-`` (None) or ``>/dev/full``.

    Set inside the test itself: capsys puts its own stdout back when the test starts.
    """
    saved = sys.stdout
    try:
        if how == "closed":
            sys.stdout = None
            yield "Bad file descriptor"
        else:
            with Path("/dev/full").open("w", encoding="utf-8") as full:
                sys.stdout = full
                yield "No space left on device"
    finally:
        sys.stdout = saved


@pytest.mark.parametrize("how", ["closed", "full"])
@pytest.mark.parametrize("command", ["jobs", "verify", "delete", "access"])
def test_every_command_that_prints_reports_lost_output(
    sim: AmplitudeSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    how: str,
    command: str,
) -> None:
    user = sim.dataset.user_list()[0].user_id
    commands: dict[str, list[str | Path]] = {
        "jobs": [],
        "verify": ["nobody@example.com"],  # nothing found: exit 0 if the line were lost
        "delete": ["--user-id", user, "--requester", REQUESTER],  # a dry run
        "access": ["--out", tmp_path / "out", "--events-from-activity", user],
    }
    args = commands[command]

    with lost_stdout(how) as reason:
        result = privacy(capsys, command, "--config", write_config(sim, tmp_path), *args)

    assert result.code == 1
    line = one_line(result)
    assert line.startswith(f"amplitude-privacy: error: {STDOUT_LOST} ({reason})")
    if command == "access":  # the packages are on disk: running again resumes
        assert line.endswith("Run the same command again to resume; nothing is requested twice.")
    else:
        assert "nothing was changed in Amplitude" in line


def test_lost_output_of_sending_runs_says_what_amplitude_accepted(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sim.dataset.user_list()[0]
    config = write_config(sim, tmp_path)
    audit = tmp_path / "audit.jsonl"
    deleting: list[str | bytes | Path] = ["delete", "--config", config, "--user-id", user.user_id]
    deleting += ["--audit-log", audit]

    deleted = script([*deleting, "--requester", REQUESTER, "--yes"], tmp_path, stdout="full")

    assert deleted.code == 1
    line = one_line(deleted)
    assert STDOUT_LOST in line
    assert f"1 of 1 ids accepted so far, recorded in {audit}" in line
    assert "in flight" not in line  # the answer is on disk, not unknown
    (accepted,) = [
        entry
        for entry in map(json.loads, audit.read_text().splitlines())
        if entry["event"] == "accepted"
    ]
    day = accepted["jobs"][0]["day"]

    cancelling: list[str | Path] = [
        "cancel",
        "--config",
        config,
        "--amplitude-id",
        str(user.amplitude_id),
    ]
    with lost_stdout("full"):
        cancelled = privacy(capsys, *cancelling, "--day", day, "--audit-log", audit, "--yes")

    assert cancelled.code == 1
    assert "Traceback" not in cancelled.err
    line = cancelled.err.strip().splitlines()[-1]  # after retries of the 1-per-second API
    assert STDOUT_LOST in line
    assert f"Amplitude id {user.amplitude_id} was taken out of the job on {day}" in line
    assert "nothing was changed in Amplitude" not in line
    assert sim.deletions.jobs.get(date.fromisoformat(day)) is None  # it held only that id


# ----------------------------------------------------------------------------------------
# config


def test_an_unreachable_rate_limits_backend_is_one_line_without_its_password(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sim.dataset.user_list()[0].user_id
    postgres = write_config(
        sim, tmp_path, rate_limits={"backend": "postgresql://u:secretpw@127.0.0.1:1/db"}
    )
    in_a_process = script(["lookup", "--config", postgres, user], tmp_path)
    redis = write_config(sim, tmp_path, rate_limits={"backend": "redis://:secretpw@127.0.0.1:1"})
    in_process = privacy(capsys, "lookup", "--config", redis, user)

    for result in (in_a_process, in_process):
        assert result.code == 1
        line = one_line(result)
        assert line.startswith("amplitude-privacy: error: rate_limits.backend ")
        assert ":***@127.0.0.1:1" in line
        assert "check that the server runs, the URL and its credentials" in line
        assert "secretpw" not in result.err
    assert sim.requests == []  # it fails before any request


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"rate_limits": "fast"}, "rate_limits: expected an object"),
        ({"rate_limits": {"backend": "ftp://u:secretpw@h/x"}}, "rate_limits.backend: must match"),
        ({"api_key": "ключ-secretpw"}, "api_key: contains characters outside Latin-1"),
        ({"region": ["us"]}, "region must be one of us, eu"),
    ],
    ids=["rate_limits-shape", "backend-scheme", "api_key-charset", "region-type"],
)
def test_settings_the_tap_refuses_are_config_errors_naming_the_file(
    sim: AmplitudeSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    settings: dict[str, Any],
    expected: str,
) -> None:
    config = write_config(sim, tmp_path, **settings)

    result = privacy(capsys, "lookup", "--config", config, "someone")

    assert result.code == 2
    line = one_line(result)
    assert line.startswith(f"amplitude-privacy: error: config file {config}: ")
    assert expected in line
    assert "secretpw" not in line
    assert sim.requests == []


def test_files_nested_too_deep_are_one_line_or_skipped(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    nested = tmp_path / "nested.json"
    nested.write_text(deep)

    config_error = privacy(capsys, "jobs", "--config", nested)

    assert config_error.code == 2
    assert f"config file {nested} is not valid JSON" in one_line(config_error)

    audit = tmp_path / "audit.jsonl"
    audit.write_text(deep + "\n")
    config = write_config(sim, tmp_path)
    user = sim.dataset.user_list()[0].user_id
    deleting: list[str | Path] = ["delete", "--config", config, "--user-id", user]
    deleting += ["--requester", REQUESTER]
    dry_run = privacy(capsys, *deleting, "--audit-log", audit)

    assert dry_run.code == 0, dry_run.err
    assert f"{audit} line 1 is not a whole JSON entry" in dry_run.err
    assert [line["body"]["user_ids"] for line in dry_run.lines()] == [[user]]

    out = tmp_path / "packages"
    packing: list[str | Path] = [
        "access",
        "--config",
        config,
        "--out",
        out,
        "--events-from-activity",
        user,
    ]
    first = privacy(capsys, *packing, "--audit-log", audit)
    assert first.code == 0, first.err
    manifest = out / user / "manifest.json"
    manifest.write_text(deep)
    again = privacy(capsys, *packing, "--audit-log", audit)

    assert again.code == 0, again.err  # an unreadable manifest is built again
    assert json.loads(manifest.read_text())["status"] == "complete"


# ----------------------------------------------------------------------------------------
# ids and other arguments


@pytest.mark.parametrize(
    "args",
    [
        ["lookup", ""],
        ["verify", "  "],
        ["access", "--out", "OUT", "\t"],
        ["delete", "--user-id", "", "--user-id", "someone", "--requester", REQUESTER],
    ],
    ids=["lookup", "verify", "access", "delete"],
)
def test_blank_ids_are_usage_errors_and_send_nothing(
    sim: AmplitudeSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    config = write_config(sim, tmp_path)
    args = [str(tmp_path / "packages") if arg == "OUT" else arg for arg in args]

    result = privacy(capsys, *args, "--config", config)

    assert result.code == 2
    line = one_line(result)
    assert line.startswith(f"amplitude-privacy {args[0]}: error: Invalid value for ")
    assert "an id must not be empty or blank" in line
    assert result.out == ""
    assert sim.requests == []


def test_ids_the_terminal_could_not_decode_are_usage_errors(
    sim: AmplitudeSimulator, tmp_path: Path
) -> None:
    config = write_config(sim, tmp_path)

    result = script(["lookup", "--config", config, b"caf\xe9"], tmp_path)

    assert result.code == 2
    assert "an id 'caf\\udce9' is not valid UTF-8 text" in one_line(result)
    assert sim.requests == []


def test_a_huge_id_is_cut_short_in_the_error_line(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(sim, tmp_path)
    huge = "a" * 100_000

    refused = script(["lookup", "--config", config, huge], tmp_path)  # Amplitude: HTTP 414

    assert refused.code == 1
    line = one_line(refused)
    assert "HTTP 414" in line
    assert "characters)" in line
    assert len(line) < 1000

    for args in (
        ["jobs", "--start-day", huge],
        ["cancel", "--day", "2024-03-01", "--amplitude-id", huge],
    ):
        usage = privacy(capsys, *args, "--config", config)
        assert usage.code == 2
        line = one_line(usage)
        assert "… (100002 characters)" in line  # the value as click quotes it
        assert len(line) < 300


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01"])
@pytest.mark.parametrize("command", ["jobs", "cancel"])
def test_days_out_of_range_are_usage_errors(
    sim: AmplitudeSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    day: str,
) -> None:
    """Far ahead overflows date arithmetic; far back would send thousands of job requests."""
    config = write_config(sim, tmp_path)
    args = {
        "jobs": ["--start-day", day, "--end-day", day],
        "cancel": ["--amplitude-id", "5", "--day", day],
    }[command]

    result = privacy(capsys, command, "--config", config, *args)

    assert result.code == 2
    assert "is out of range: days go from 2000-01-01 to 2999-12-31" in one_line(result)
    assert sim.requests == []


def test_an_id_file_that_is_not_utf8_names_the_fix(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"caf\xe9\n")
    config = write_config(sim, tmp_path)

    result = privacy(
        capsys, "delete", "--config", config, "--from-file", ids, "--requester", REQUESTER
    )

    assert result.code == 2
    assert f"{ids} is not UTF-8 text; save it as UTF-8, one id per line" in one_line(result)


# ----------------------------------------------------------------------------------------
# a full disk


def test_an_access_package_that_cannot_be_written_is_one_line(
    sim: AmplitudeSimulator, tmp_path: Path
) -> None:
    config = write_config(sim, tmp_path)
    user = sim.dataset.user_list()[0].user_id
    out = tmp_path / "packages"
    args: list[str | bytes | Path] = ["access", "--config", config, "--out", out, user]

    result = script([*args, "--events-from-activity"], tmp_path, limit_files=True)

    assert result.code == 1
    line = one_line(result)
    assert f"cannot write the access package in {out}" in line
    assert "File too large" in line
    assert "run the same command again to resume" in line


@pytest.mark.parametrize("wait", ["nan", "inf"])
def test_a_wait_that_is_not_finite_is_a_usage_error(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], wait: str
) -> None:
    config = write_config(sim, tmp_path)
    result = privacy(
        capsys, "access", "--config", config, "--out", str(tmp_path / "pkg"), "--wait", wait, "u1"
    )
    assert result.code == 2
    assert "must be a finite number of seconds" in one_line(result)
    assert sim.requests == []
