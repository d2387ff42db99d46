"""The deletion lifecycle: ``delete --include-mapped``, ``cancel`` and ``verify``, end to end."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from amplitude_simulator import AmplitudeSimulator
from tests.test_privacy_cli import (
    audit_lines,
    deletion_posts,
    privacy,
    recent_dataset,
    write_config,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

REQUESTER = "dpo@example.com"


@pytest.fixture
def sim() -> Iterator[AmplitudeSimulator]:
    with AmplitudeSimulator(recent_dataset()) as simulator:
        simulator.deletions.min_interval_seconds = 0  # the client still spaces its requests
        yield simulator


def base(sim: AmplitudeSimulator, tmp_path: Path, command: str, **config: Any) -> list[str | Path]:
    return [command, "--config", write_config(sim, tmp_path, **config)]


def audit_of(tmp_path: Path) -> list[str | Path]:
    return ["--audit-log", tmp_path / "audit.jsonl"]


def removals(sim: AmplitudeSimulator) -> list[Any]:
    return [r for r in sim.requests if r.method == "DELETE"]


def today() -> date:
    return datetime.now(tz=timezone.utc).date()


# ----------------------------------------------------------------------------------------
# delete --include-mapped


def test_include_mapped_adds_mapped_users_and_the_dry_run_says_why(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = sim.dataset.user_list()
    alice, mapped = users[0], users[3]  # the simulator maps users[3] into users[0]
    args = [*base(sim, tmp_path, "delete"), "--requester", REQUESTER, *audit_of(tmp_path)]

    plain = privacy(capsys, *args, "--user-id", alice.user_id)
    assert plain.code == 0, plain.err
    (request,) = plain.lines()
    assert request["body"]["user_ids"] == [alice.user_id]

    dry = privacy(capsys, *args, "--amplitude-id", str(alice.amplitude_id), "--include-mapped")
    assert dry.code == 0, dry.err
    added, request = dry.lines()
    assert added["added"] == {"user_id": mapped.user_id}
    assert added["for"] == alice.user_id
    assert f"{mapped.user_id} is mapped into {alice.user_id}" in added["because"]
    assert request["body"]["amplitude_ids"] == [alice.amplitude_id]
    assert request["body"]["user_ids"] == [mapped.user_id]
    assert request["body"]["include_mapped_user_ids"] is True
    assert deletion_posts(sim) == []

    sent = privacy(capsys, *args, "--user-id", alice.user_id, "--include-mapped", "--yes")
    assert sent.code == 0, sent.err
    (body,) = sim.deletions.bodies
    assert body["user_ids"] == [alice.user_id, mapped.user_id]
    log = audit_lines(tmp_path / "audit.jsonl")
    (note,) = [e for e in log if e["event"] == "mapped-id-added"]
    assert note["user_ids"] == [mapped.user_id]
    assert note["for"] == alice.user_id
    (accepted,) = [e for e in log if e["event"] == "accepted"]
    assert accepted["user_ids"] == [alice.user_id, mapped.user_id]


# ----------------------------------------------------------------------------------------
# cancel


def test_cancel_takes_an_id_out_of_a_staging_job_and_refuses_locked_ones(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = sim.dataset.user_list()
    audit = tmp_path / "audit.jsonl"
    deleted = privacy(
        capsys,
        *base(sim, tmp_path, "delete"),
        "--user-id",
        users[0].user_id,
        "--requester",
        REQUESTER,
        *audit_of(tmp_path),
        "--yes",
    )
    assert deleted.code == 0, deleted.err
    day = deleted.lines()[0]["jobs"][0]["day"]
    cancel = [*base(sim, tmp_path, "cancel"), "--amplitude-id", str(users[0].amplitude_id)]
    cancel += ["--day", day, *audit_of(tmp_path)]

    dry = privacy(capsys, *cancel)
    assert dry.code == 0, dry.err
    (planned,) = dry.lines()
    assert planned["method"] == "DELETE"
    assert planned["path"] == f"/api/2/deletions/users/{users[0].amplitude_id}/{day}"
    assert removals(sim) == []

    done = privacy(capsys, *cancel, "--yes")
    assert done.code == 0, done.err
    assert len(removals(sim)) == 1
    assert sim.deletions.jobs.get(date.fromisoformat(day)) is None  # the job held only that id
    (cancelled,) = [e for e in audit_lines(audit) if e["event"] == "cancelled"]
    assert cancelled["amplitude_ids"] == [users[0].amplitude_id]
    assert cancelled["user_ids"] == [users[0].user_id]
    # verify no longer shows the user in that job (it used to, with the job's status).
    verified = privacy(
        capsys, *base(sim, tmp_path, "verify"), users[0].user_id, *audit_of(tmp_path)
    )
    assert [line["jobs"] for line in verified.lines()] == [[]]
    # No longer accepted: a new delete would send the user again.
    again = privacy(
        capsys,
        *base(sim, tmp_path, "delete"),
        "--user-id",
        users[0].user_id,
        "--requester",
        REQUESTER,
        *audit_of(tmp_path),
    )
    assert again.lines()[0]["body"]["user_ids"] == [users[0].user_id]

    # The seeded jobs: one submitted two days ago (users[-2]), one done (users[-1]).
    submitted_day = (today() - timedelta(days=2)).isoformat()
    done_day = sim.dataset.start.date().isoformat()
    for user, job_day, status in (
        (users[-2], submitted_day, "submitted"),
        (users[-1], done_day, "done"),
    ):
        refused = privacy(
            capsys,
            *base(sim, tmp_path, "cancel"),
            "--amplitude-id",
            str(user.amplitude_id),
            "--day",
            job_day,
            *audit_of(tmp_path),
            "--yes",
        )
        assert refused.code == 1
        (line,) = refused.err.strip().splitlines()
        assert f"already {status}" in line
        assert "nothing was changed" in line
        assert refused.out == ""
    assert len(removals(sim)) == 1  # refused ones never reached Amplitude's DELETE
    refusals = [e for e in audit_lines(audit) if e["event"] == "cancel-refused"]
    assert [e["day"] for e in refusals] == [submitted_day, done_day]
    assert audit.stat().st_mode & 0o777 == 0o600


# ----------------------------------------------------------------------------------------
# verify


def test_verify_fails_while_data_is_left_and_passes_once_the_job_is_done(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sim.dataset.user_list()[1]
    deleted = privacy(
        capsys,
        *base(sim, tmp_path, "delete"),
        "--user-id",
        user.user_id,
        "--requester",
        REQUESTER,
        *audit_of(tmp_path),
        "--yes",
    )
    assert deleted.code == 0, deleted.err
    day = deleted.lines()[0]["jobs"][0]["day"]
    verify = [*base(sim, tmp_path, "verify"), user.user_id, str(user.amplitude_id)]
    verify += audit_of(tmp_path)

    early = privacy(capsys, *verify)
    assert early.code == 1
    by_user_id, by_amplitude_id = early.lines()
    assert by_user_id["clean"] is False
    assert by_user_id["user_search_matches"] == 1
    assert by_user_id["profile_found"] is True
    assert by_user_id["jobs"] == [{"day": day, "status": "staging"}]
    assert by_amplitude_id["clean"] is False
    assert "still have data" in early.err

    sim.now = datetime.now(tz=timezone.utc) + timedelta(days=20)  # the job has run and is done
    late = privacy(capsys, *verify)
    assert late.code == 0, late.err
    for line in late.lines():
        assert line["clean"] is True
        assert line["user_search_matches"] == 0
    assert late.lines()[0]["profile_found"] is False
    assert late.lines()[0]["jobs"] == [{"day": day, "status": "done"}]

    others = privacy(capsys, *base(sim, tmp_path, "verify"), sim.dataset.user_list()[2].user_id)
    assert others.code == 1  # users not deleted are still there


def test_verify_in_the_eu_region_checks_user_search_only(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sim.dataset.user_list()[0]
    result = privacy(capsys, *base(sim, tmp_path, "verify", region="eu"), user.user_id)
    assert result.code == 1
    (line,) = result.lines()
    assert line["profile_found"] is None
    assert line["user_search_matches"] == 1
    assert "EU region" in result.err
    assert not [r for r in sim.requests if r.path == "/v1/userprofile"]


def test_the_audit_log_is_created_0600_and_an_existing_one_is_tightened(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = sim.dataset.user_list()
    audit = tmp_path / "audit.jsonl"
    args = [*base(sim, tmp_path, "delete"), "--requester", REQUESTER, *audit_of(tmp_path), "--yes"]
    old_umask = os.umask(0o022)
    try:
        first = privacy(capsys, *args, "--user-id", users[0].user_id)
        assert first.code == 0, first.err
        assert audit.stat().st_mode & 0o777 == 0o600
        audit.chmod(0o644)  # a log from an older version, readable by everyone
        second = privacy(capsys, *args, "--user-id", users[1].user_id)
        assert second.code == 0, second.err
    finally:
        os.umask(old_umask)
    assert audit.stat().st_mode & 0o777 == 0o600
    assert json.loads(audit.read_text().splitlines()[-1])["event"] == "accepted"
