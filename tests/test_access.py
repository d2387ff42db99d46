"""``amplitude-privacy access``: access packages through the DSAR API, end to end.

Every test runs the CLI (in-process, or as a real process for signals) against the real
simulator; DSAR requests move one state per status read there, so packages finish in seconds.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from amplitude_simulator import AmplitudeSimulator
from tap_amplitude.privacy import dsar as dsar_module
from tap_amplitude.privacy.dsar import DsarBudget
from tests.test_privacy_cli import privacy, recent_dataset, write_config
from tests.test_privacy_processes import SCRIPT, finish, singer_messages, start, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterator

DSAR = "/api/2/dsar/requests"


@pytest.fixture
def sim() -> Iterator[AmplitudeSimulator]:
    with AmplitudeSimulator(recent_dataset()) as simulator:
        yield simulator


def access_args(
    sim: AmplitudeSimulator, tmp_path: Path, *ids: str, **config: Any
) -> list[str | Path]:
    return [
        "access",
        "--config",
        write_config(sim, tmp_path, **config),
        *ids,
        "--out",
        tmp_path / "out",
        "--audit-log",
        tmp_path / "audit.jsonl",
    ]


def manifest(tmp_path: Path, person: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((tmp_path / "out" / person / "manifest.json").read_text())
    return loaded


def dsar_posts(sim: AmplitudeSimulator) -> list[Any]:
    """DSAR requests Amplitude accepted (a 429 made none)."""
    return [r for r in sim.requests if r.method == "POST" and r.path == DSAR and r.status == 202]


def audit_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def event_rows(folder: Path, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for entry in entries:
        if entry["path"].startswith("events/"):
            with gzip.open(folder / entry["path"], "rt") as lines:
                rows += [json.loads(line) for line in lines if line.strip()]
    return rows


def expected_events(sim: AmplitudeSimulator, amplitude_id: int, asked: dict[str, Any]) -> set[str]:
    return {
        event["uuid"]
        for event in sim.dataset.user_activity(amplitude_id)
        if asked["start_day"] <= event["event_time"][:10] <= asked["end_day"]
    }


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# ----------------------------------------------------------------------------------------


def test_an_interrupted_access_run_resumes_without_asking_twice(  # noqa: PLR0915 - one story
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sim.dataset.user_list()[0]
    sim.dsar.polls_per_state = 10_000  # the request stays pending while the first run polls
    args = access_args(sim, tmp_path, user.user_id)
    audit = tmp_path / "audit.jsonl"

    def requested() -> bool:
        return audit.exists() and '"dsar-requested"' in audit.read_text()

    proc = start([*args, "--wait", "60"], tmp_path)
    try:
        wait_for(requested, "the DSAR request to be recorded")
        wait_for(lambda: any(r.path.startswith(f"{DSAR}/") for r in sim.requests), "a poll")
        proc.send_signal(signal.SIGTERM)
    finally:
        out, err = finish(proc)
    assert proc.returncode == 130, err
    (line,) = err.strip().splitlines()
    assert "interrupted by SIGTERM" in line
    assert str(audit) in line
    assert "nothing is requested twice" in line
    assert singer_messages(out) == []
    assert manifest(tmp_path, user.user_id)["status"] == "pending"

    sim.dsar.polls_per_state = 1  # Amplitude finishes the job meanwhile
    resumed = privacy(capsys, *args, "--wait", "30")
    assert resumed.code == 0, resumed.err
    (summary,) = resumed.lines()
    assert summary["status"] == "complete"
    assert len(dsar_posts(sim)) == 1  # resumed polling: nothing requested twice
    package = manifest(tmp_path, user.user_id)
    (request,) = package["dsar_requests"]
    assert request["status"] == "done"
    assert summary["dsar_requests"] == [request["request_id"]]
    requested_lines = [e for e in audit_events(audit) if e["event"] == "dsar-requested"]
    assert [e["request_id"] for e in requested_lines] == [request["request_id"]]

    # What was asked, from where, and every event of the person within the days.
    assert package["asked"]["id"] == user.user_id
    assert package["asked"]["events_source"] == "dsar"
    assert package["project"]["region"] == "us"
    assert package["project"]["host"] == sim.url
    folder = tmp_path / "out" / user.user_id
    uuids = [row["uuid"] for row in event_rows(folder, package["files"])]
    assert len(uuids) == len(set(uuids))
    assert set(uuids) == expected_events(sim, user.amplitude_id, package["asked"])
    profiles = json.loads((folder / "profiles.json").read_text())
    assert profiles[0]["user_id"] == user.user_id
    assert isinstance(profiles[0]["cohort_ids"], list)
    identities = json.loads((folder / "identities.json").read_text())
    assert identities["mapped_users"][0]["user_id"] == sim.dataset.user_list()[3].user_id

    # Personal data: readable by its owner only.
    assert mode(tmp_path / "out") == 0o700
    assert {mode(p) for p in folder.rglob("*") if p.is_dir()} | {mode(folder)} == {0o700}
    assert {mode(p) for p in folder.rglob("*") if p.is_file()} == {0o600}
    assert mode(audit) == 0o600
    everything = out + err + resumed.out + resumed.err + audit.read_text()
    assert sim.project.secret_key not in everything
    assert sim.project.api_key not in everything


def test_manifest_checksums_and_row_counts_match_the_files_even_after_a_damaged_download(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sim.dataset.user_list()[1]
    sim.dsar.corrupt_downloads = 1  # the first download has a bad gzip CRC
    result = privacy(capsys, *access_args(sim, tmp_path, user.user_id), "--wait", "30")
    assert result.code == 0, result.err
    package = manifest(tmp_path, user.user_id)
    assert package["status"] == "complete"
    folder = tmp_path / "out" / user.user_id
    files = package["files"]
    assert {"user_search.json", "identities.json", "profiles.json"} <= {f["path"] for f in files}
    assert any(f["path"].startswith("events/dsar-") for f in files)
    for entry in files:
        data = (folder / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]
        assert len(data) == entry["bytes"]
        if entry["path"].endswith(".json.gz"):
            rows = [line for line in gzip.decompress(data).splitlines() if line.strip()]
            assert all(isinstance(json.loads(row), dict) for row in rows)
        else:
            document = json.loads(data)
            rows = document if isinstance(document, list) else []
        if not entry["path"].startswith("identities"):
            assert len(rows) == entry["rows"], entry["path"]
    assert sorted(p.name for p in folder.rglob("*.partial")) == []
    downloads = [r for r in sim.requests if r.path.startswith("/dsar-downloads/")]
    assert len(downloads) == len([f for f in files if f["path"].startswith("events/")]) + 1


def test_project_keys_refused_asks_for_org_keys_in_one_line(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sim.dataset.user_list()[0]
    sim.dsar.refuse_project_keys = True
    refused = privacy(capsys, *access_args(sim, tmp_path, user.user_id))
    assert refused.code == 1
    (line,) = refused.err.strip().splitlines()[-1:]
    assert "org_api_key" in line
    assert "org_secret_key" in line
    assert "Traceback" not in refused.err
    assert sim.project.secret_key not in refused.err + refused.out

    org = {"org_api_key": sim.dsar.org_api_key, "org_secret_key": sim.dsar.org_secret_key}
    accepted = privacy(capsys, *access_args(sim, tmp_path, user.user_id, **org), "--wait", "20")
    assert accepted.code == 0, accepted.err
    assert manifest(tmp_path, user.user_id)["status"] == "complete"
    requested = [
        e for e in audit_events(tmp_path / "audit.jsonl") if e["event"] == "dsar-requested"
    ]
    assert [e["dsar_keys"] for e in requested] == ["organization"]
    assert sim.dsar.org_secret_key not in accepted.out + accepted.err


def test_access_in_the_eu_region_has_events_but_no_profiles_and_says_why(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sim.dataset.user_list()[2]
    args = access_args(sim, tmp_path, user.user_id, region="eu")
    result = privacy(capsys, *args, "--wait", "20")
    assert result.code == 0, result.err
    assert "EU region" in result.err
    package = manifest(tmp_path, user.user_id)
    assert package["project"]["region"] == "eu"
    assert package["status"] == "complete"
    assert "profiles.json" not in {f["path"] for f in package["files"]}
    (excluded,) = [e for e in package["not_included"] if e["what"] == "profiles"]
    assert "EU region" in excluded["why"]
    assert not [r for r in sim.requests if r.path == "/v1/userprofile"]
    folder = tmp_path / "out" / user.user_id
    assert event_rows(folder, package["files"])


def test_events_from_activity_match_the_dsar_events_without_a_dsar_request(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sim.dataset.user_list()[4]
    days = ["--start-day", "2020-01-01", "--end-day", "2030-12-31"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    via_dsar = privacy(
        capsys, *access_args(sim, tmp_path / "a", user.user_id), *days, "--wait", "20"
    )
    assert via_dsar.code == 0, via_dsar.err
    sim.clear_requests()
    via_activity = privacy(
        capsys, *access_args(sim, tmp_path / "b", user.user_id), *days, "--events-from-activity"
    )
    assert via_activity.code == 0, via_activity.err
    assert not [r for r in sim.requests if r.path.startswith(DSAR)]
    dsar_package = manifest(tmp_path / "a", user.user_id)
    activity_package = manifest(tmp_path / "b", user.user_id)
    assert activity_package["status"] == "complete"
    assert activity_package["asked"]["events_source"] == "user_activity"
    assert any("User Activity" in e["why"] for e in activity_package["not_included"])
    dsar_rows = event_rows(tmp_path / "a" / "out" / user.user_id, dsar_package["files"])
    activity_rows = event_rows(tmp_path / "b" / "out" / user.user_id, activity_package["files"])
    assert {r["uuid"] for r in activity_rows} == {r["uuid"] for r in dsar_rows}
    assert len(activity_rows) == len(dsar_rows) > 0


def test_expired_outputs_are_reported_and_new_request_asks_again(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sim.dataset.user_list()[1]
    sim.dsar.expires_days = -1  # already expired when done
    args = access_args(sim, tmp_path, user.user_id)
    first = privacy(capsys, *args, "--wait", "20")
    assert first.code == 0, first.err
    package = manifest(tmp_path, user.user_id)
    assert package["dsar_requests"][0]["status"] == "expired"
    assert any("expired" in e["why"] for e in package["not_included"])
    again = privacy(capsys, *args, "--wait", "20")  # same command: nothing asked again
    assert again.code == 0, again.err
    assert len(dsar_posts(sim)) == 1

    sim.dsar.expires_days = 2
    renewed = privacy(capsys, *args, "--wait", "20", "--new-request")
    assert renewed.code == 0, renewed.err
    assert len(dsar_posts(sim)) == 2
    package = manifest(tmp_path, user.user_id)
    assert package["dsar_requests"][0]["status"] == "done"
    assert not [e for e in package["not_included"] if "expired" in e["why"]]


def test_the_dsar_cost_budget_is_respected_and_a_429_is_ridden_out(
    sim: AmplitudeSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Client side: POST 8 + GET 1 + GET 1 fill a budget of 10; the next GET waits a window.
    budget = DsarBudget(limit=10, window=2.0)
    started = time.monotonic()
    for cost in (8, 1, 1):
        budget.take(cost)
    assert time.monotonic() - started < 1.5  # no wait (a wide margin for a loaded machine)
    budget.take(1)
    assert time.monotonic() - started >= 1.9

    # The CLI pays every DSAR request from its budget, so it never meets the server's 429.
    monkeypatch.setattr(dsar_module, "DSAR_COST_PER_HOUR", 10)
    monkeypatch.setattr(dsar_module, "DSAR_WINDOW_SECONDS", 1.0)
    sim.dsar.cost_per_window, sim.dsar.window_seconds = 10, 1.0
    users = sim.dataset.user_list()
    paced = privacy(capsys, *access_args(sim, tmp_path, users[0].user_id), "--wait", "30")
    assert paced.code == 0, paced.err
    assert manifest(tmp_path, users[0].user_id)["status"] == "complete"
    dsar_calls = [r for r in sim.requests if r.path.startswith(DSAR)]
    assert len(dsar_calls) > 3  # more than one window's worth: the client had to wait
    assert not [r for r in dsar_calls if r.status == 429]

    # Another client spent the server's budget meanwhile: the 429 is retried.
    sim.dsar.spent.append((time.monotonic(), 10))
    other = privacy(capsys, *access_args(sim, tmp_path, users[1].user_id), "--wait", "30")
    assert other.code == 0, other.err
    assert any(r.status == 429 and r.path.startswith(DSAR) for r in sim.requests)
    assert manifest(tmp_path, users[1].user_id)["status"] == "complete"
    assert len(dsar_posts(sim)) == 2


def test_a_lost_package_folder_reuses_the_request_recorded_in_the_audit_log(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = sim.dataset.user_list()[0]
    args = access_args(sim, tmp_path, user.user_id)
    first = privacy(capsys, *args)
    assert first.code == 0, first.err
    assert first.lines()[0]["status"] == "pending"
    shutil.rmtree(tmp_path / "out")  # the package is lost; the audit log is not
    resumed = privacy(capsys, *args, "--wait", "20")
    assert resumed.code == 0, resumed.err
    assert resumed.lines()[0]["status"] == "complete"
    assert len(dsar_posts(sim)) == 1
    assert resumed.lines()[0]["dsar_requests"] == first.lines()[0]["dsar_requests"]


def test_an_unknown_person_gets_a_complete_package_saying_why_there_are_no_events(
    sim: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = privacy(capsys, *access_args(sim, tmp_path, "nobody@nowhere.example"))
    assert result.code == 0, result.err
    package = manifest(tmp_path, "nobody@nowhere.example")
    assert package["status"] == "complete"
    assert any(e["what"] == "events" for e in package["not_included"])
    assert dsar_posts(sim) == []


def test_access_as_a_console_script_writes_no_singer_messages(
    sim: AmplitudeSimulator, tmp_path: Path
) -> None:
    user = sim.dataset.user_list()[0]
    args = access_args(sim, tmp_path, user.user_id)
    done = subprocess.run(
        [str(SCRIPT), *map(str, [*args, "--wait", "20"])],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert singer_messages(done.stdout) == []
    assert json.loads(done.stdout)["status"] == "complete"
