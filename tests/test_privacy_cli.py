"""``amplitude-privacy``: data discovery, dry runs, rate-limited batched deletion, resumption."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from amplitude_simulator import AmplitudeSimulator, Dataset, Fault
from tap_amplitude.privacy import AuditLog, batch_bodies, read_id_file, run
from tap_amplitude.ratelimit import IntervalLimiter
from tap_amplitude.streams.privacy import DeletionJobsStream, job_windows
from tests.conftest import SMALL_DATASET

if TYPE_CHECKING:
    from collections.abc import Iterator

DELETIONS = "/api/2/deletions/users"
PROFILE = "/v1/userprofile"
# Enough users for 250 valid ids (3 batches); profiles are generated lazily and cheaply.
MANY_USERS = Dataset(start=SMALL_DATASET.start, end=SMALL_DATASET.end, events_per_hour=1, users=260)


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


@pytest.fixture
def recent() -> Iterator[AmplitudeSimulator]:
    with AmplitudeSimulator(recent_dataset()) as sim:
        yield sim


@pytest.fixture
def many_users() -> Iterator[AmplitudeSimulator]:
    with AmplitudeSimulator(MANY_USERS) as sim:
        yield sim


def recent_dataset() -> Dataset:
    """Three days of data ending a week ago: the simulator's seeded job on its first day is done."""
    start = datetime.now(tz=timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start -= timedelta(days=10)
    return Dataset(start=start, end=start + timedelta(days=3), events_per_hour=1, users=12)


def write_config(sim: AmplitudeSimulator, tmp_path: Path, **overrides: Any) -> Path:
    config = {
        "api_key": sim.project.api_key,
        "secret_key": sim.project.secret_key,
        "api_url": sim.url,
        "profile_api_url": sim.url,
        **overrides,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def privacy(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Outcome:
    """Run the CLI in-process (fast; the HTTP is still real) and capture what it printed."""
    code = run([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return Outcome(code, out, err)


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def deletion_posts(sim: AmplitudeSimulator) -> list[Any]:
    return [r for r in sim.requests if r.method == "POST" and r.path == DELETIONS]


def ids_args(sim: AmplitudeSimulator, count: int) -> list[str]:
    """``--user-id``/``--amplitude-id`` options for ``count`` real users, alternating kinds."""
    args: list[str] = []
    for index, user in enumerate(sim.dataset.user_list()[:count]):
        if index % 2:
            args += ["--amplitude-id", str(user.amplitude_id)]
        else:
            args += ["--user-id", user.user_id]
    return args


def expected_ids(sim: AmplitudeSimulator, count: int) -> list[str]:
    """The ids :func:`ids_args` names, as :func:`sent_ids` renders them."""
    users = sim.dataset.user_list()[:count]
    return [str(u.amplitude_id) if i % 2 else u.user_id for i, u in enumerate(users)]


def sent_ids(bodies: list[dict[str, Any]]) -> list[str]:
    return [str(v) for body in bodies for v in [*body["amplitude_ids"], *body["user_ids"]]]


# ----------------------------------------------------------------------------------------
# lookup


def test_lookup_reports_matches_and_profiles_per_person(
    simulator: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = simulator.dataset.user_list()
    config = write_config(simulator, tmp_path, rec_id="rec-7")
    result = privacy(
        capsys,
        "lookup",
        "--config",
        config,
        users[0].user_id,
        str(users[1].amplitude_id),
        users[2].device_id,
        "nobody@nowhere.example",
    )
    assert result.code == 0, result.err
    by_email, by_amplitude_id, by_device, unknown = result.lines()

    assert by_email["query"] == users[0].user_id
    assert by_email["found"] is True
    assert by_email["amplitude_ids"] == [users[0].amplitude_id]
    assert by_email["matches"][0]["match_type"] == "match_user_or_device_id"
    (profile,) = by_email["profiles"]
    assert profile["user_id"] == users[0].user_id
    assert profile["device_id"] == users[0].device_id
    assert profile["amp_props"]["email"] == users[0].user_id
    assert isinstance(profile["amp_props"]["comp-events-total"], str)  # computations: strings
    assert isinstance(profile["cohort_ids"], list)
    assert profile["recommendations"][0]["rec_id"] == "rec-7"

    assert by_amplitude_id["user_ids"] == [users[1].user_id]
    assert by_amplitude_id["matches"][0]["match_type"] == "match_amplitude_id"
    assert by_amplitude_id["profiles"][0]["user_id"] == users[1].user_id
    assert by_device["user_ids"] == [users[2].user_id]
    assert by_device["profiles"][0]["device_id"] == users[2].device_id

    assert unknown == {
        "query": "nobody@nowhere.example",
        "found": False,
        "matches": [],
        "amplitude_ids": [],
        "user_ids": [],
        "profiles": [],
    }
    assert result.err == ""
    assert not [r for r in simulator.requests if r.method != "GET"]  # lookup changes nothing


def test_lookup_in_eu_says_once_that_profiles_are_unavailable(
    simulator: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = simulator.dataset.user_list()
    config = write_config(simulator, tmp_path, region="eu")
    result = privacy(capsys, "lookup", "--config", config, users[0].user_id, users[3].user_id)
    assert result.code == 0, result.err
    assert [line["profiles"] for line in result.lines()] == [None, None]
    assert [line["found"] for line in result.lines()] == [True, True]
    assert result.err.count("not available in the EU region") == 1
    assert len(result.err.strip().splitlines()) == 1
    assert not [r for r in simulator.requests if r.path == PROFILE]


def test_lookup_profile_auth_failure_is_one_line_naming_secret_key(
    simulator: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.add_fault(PROFILE, Fault.status(401, "Invalid Api-Key"))
    config = write_config(simulator, tmp_path)
    user = simulator.dataset.user_list()[0]
    result = privacy(capsys, "lookup", "--config", config, user.user_id)
    assert result.code == 1
    (line,) = result.err.strip().splitlines()
    assert "User Profile API refused the credentials" in line
    assert "secret_key" in line
    assert "Invalid Api-Key" in line
    assert simulator.project.secret_key not in result.err + result.out


# ----------------------------------------------------------------------------------------
# delete


def test_dry_run_prints_the_batches_and_sends_nothing(
    many_users: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(many_users, tmp_path)
    audit = tmp_path / "audit.jsonl"
    result = privacy(
        capsys,
        "delete",
        "--config",
        config,
        *ids_args(many_users, 150),
        "--requester",
        "dpo@example.com",
        "--audit-log",
        audit,
    )
    assert result.code == 0, result.err
    first, second = result.lines()
    for line in (first, second):
        assert line["method"] == "POST"
        assert line["path"] == DELETIONS
        assert line["body"]["requester"] == "dpo@example.com"
        assert line["body"]["ignore_invalid_id"] is False
        assert line["body"]["delete_from_org"] is False
    assert len(sent_ids([first["body"], second["body"]])) == 150
    assert len(sent_ids([first["body"]])) == 100
    assert "nothing was sent" in result.err
    assert "--yes" in result.err
    assert many_users.requests == []
    assert not audit.exists()


def test_250_ids_go_out_in_three_rate_limited_batches_and_a_rerun_sends_nothing(
    many_users: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(many_users, tmp_path)
    audit = tmp_path / "audit.jsonl"
    args: list[str | Path] = [
        "delete",
        "--config",
        config,
        *ids_args(many_users, 250),
        "--requester",
        "dpo@example.com",
        "--audit-log",
        audit,
        "--yes",
    ]
    result = privacy(capsys, *args)
    assert result.code == 0, result.err

    posts = deletion_posts(many_users)
    assert [p.status for p in posts] == [200, 200, 200]  # the limiter, not 429s, spaced them
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert all(gap >= 1.0 for gap in gaps), gaps
    bodies = many_users.deletions.bodies
    assert [len(sent_ids([body])) for body in bodies] == [100, 100, 50]
    assert sorted(sent_ids(bodies)) == sorted(expected_ids(many_users, 250))

    accepted = [line for line in audit_lines(audit) if line["event"] == "accepted"]
    assert [line["batch"] for line in accepted] == ["1/3", "2/3", "3/3"]
    assert accepted == result.lines()
    for line in accepted:
        assert line["requester"] == "dpo@example.com"
        assert line["invalid_ids"] == []
        assert line["jobs"][0]["status"] == "staging"
        date.fromisoformat(line["jobs"][0]["day"])
        datetime.fromisoformat(line["time"])

    again = privacy(capsys, *args)
    assert again.code == 0, again.err
    assert "nothing to send" in again.err
    assert again.out == ""
    assert len(deletion_posts(many_users)) == 3


def test_an_interrupted_run_resumes_with_only_the_remaining_ids(
    many_users: AmplitudeSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(DeletionJobsStream, "backoff_max_tries", lambda _self: 2)
    calls = itertools.count()
    many_users.add_fault(  # the 2nd request and its retry fail; later requests are fine
        DELETIONS,
        Fault.status(500, headers={"Retry-After": "0"}),
        times=2,
        when=lambda _params: next(calls) >= 1,
    )
    config = write_config(many_users, tmp_path)
    audit = tmp_path / "audit.jsonl"
    args: list[str | Path] = [
        "delete",
        "--config",
        config,
        *ids_args(many_users, 250),
        "--requester",
        "dpo@example.com",
        "--audit-log",
        audit,
        "--yes",
    ]
    first = privacy(capsys, *args)
    assert first.code == 1
    (message,) = first.err.strip().splitlines()[-1:]
    assert "HTTP 500" in message
    assert "Batch 2/3 may not have been scheduled" in message
    assert "Run the same command again to resume" in message
    events = [(line["event"], line["batch"]) for line in audit_lines(audit)]
    assert events == [
        ("sending", "1/3"),
        ("accepted", "1/3"),
        ("sending", "2/3"),
        ("failed", "2/3"),
    ]

    state = many_users.deletions
    assert len(state.bodies) == 1
    second = privacy(capsys, *args)
    assert second.code == 0, second.err
    assert "skipping 100 ids already accepted" in second.err
    first_batch, *rest = state.bodies
    assert len(rest) == 2
    assert not set(sent_ids([first_batch])) & set(sent_ids(rest))
    assert sorted(sent_ids(state.bodies)) == sorted(expected_ids(many_users, 250))
    assert [line["batch"] for line in second.lines()] == ["1/2", "2/2"]


def test_unknown_ids_stop_the_run_unless_ignored(
    simulator: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = simulator.dataset.user_list()[0]
    config = write_config(simulator, tmp_path)
    audit = tmp_path / "audit.jsonl"
    args: list[str | Path] = [
        "delete",
        "--config",
        config,
        "--user-id",
        user.user_id,
        "--user-id",
        "ghost-user",
        "--requester",
        "dpo@example.com",
        "--audit-log",
        audit,
        "--yes",
    ]
    rejected = privacy(capsys, *args)
    assert rejected.code == 1
    (message,) = rejected.err.strip().splitlines()
    assert "rejected batch 1/1 (HTTP 400" in message
    assert "ghost-user" in message
    assert "nothing in it was scheduled" in message
    assert "--ignore-invalid-ids" in message
    assert [line["event"] for line in audit_lines(audit)] == ["sending", "rejected"]
    state = simulator.deletions
    scheduled = {e["amplitude_id"] for job in state.jobs.values() for e in job.entries}
    assert user.amplitude_id not in scheduled

    ignored = privacy(capsys, *args, "--ignore-invalid-ids")
    assert ignored.code == 0, ignored.err
    (accepted,) = ignored.lines()
    assert accepted["invalid_ids"] == ["ghost-user"]
    assert state.bodies[-1]["ignore_invalid_id"] is True
    scheduled = {e["amplitude_id"] for job in state.jobs.values() for e in job.entries}
    assert user.amplitude_id in scheduled
    assert "1 unknown to Amplitude and skipped" in ignored.err

    # The known id is done; the unknown one is asked about again on a re-run.
    done = AuditLog(audit, simulator.project.api_key).accepted(delete_from_org=False)
    assert done == {("user_id", user.user_id)}


def test_delete_from_org_records_the_job_of_each_project(
    simulator: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = simulator.dataset.user_list()[1]
    config = write_config(simulator, tmp_path)
    audit = tmp_path / "audit.jsonl"
    base: list[str | Path] = [
        "delete",
        "--config",
        config,
        "--amplitude-id",
        str(user.amplitude_id),
    ]
    base += ["--requester", "dpo@example.com", "--audit-log", audit, "--yes"]
    result = privacy(capsys, *base, "--delete-from-org")
    assert result.code == 0, result.err
    (line,) = result.lines()
    assert line["delete_from_org"] is True
    assert line["jobs"][0]["app"] == simulator.project.app_id
    assert line["jobs"][0]["status"] == "staging"
    # An org-wide deletion covers a later project-only request for the same id.
    again = privacy(capsys, *base)
    assert again.code == 0
    assert "nothing to send" in again.err


def test_auth_failure_is_recorded_and_reported_without_secrets(
    simulator: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong_secret = "wrong-secret-abcdef123456"  # noqa: S105 - a deliberately wrong key
    config = write_config(simulator, tmp_path, secret_key=wrong_secret)
    audit = tmp_path / "audit.jsonl"
    user = simulator.dataset.user_list()[0]
    result = privacy(
        capsys,
        "delete",
        "--config",
        config,
        "--user-id",
        user.user_id,
        "--requester",
        "dpo@example.com",
        "--audit-log",
        audit,
        "--yes",
    )
    assert result.code == 1
    (message,) = result.err.strip().splitlines()
    assert "refused the credentials" in message
    assert "api_key and secret_key" in message
    assert [line["event"] for line in audit_lines(audit)] == ["sending", "failed"]
    everything = result.out + result.err + audit.read_text()
    assert wrong_secret not in everything
    assert simulator.project.api_key not in everything


# ----------------------------------------------------------------------------------------
# jobs


def test_jobs_lists_every_status_and_splits_long_ranges(
    recent: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(recent, tmp_path)
    user = recent.dataset.user_list()[0]
    scheduled = privacy(
        capsys,
        *["delete", "--config", str(config), "--user-id", user.user_id],
        *["--requester", "dpo@example.com", "--audit-log", str(tmp_path / "a.jsonl"), "--yes"],
    )
    assert scheduled.code == 0, scheduled.err
    today = datetime.now(tz=timezone.utc).date()
    start = today - timedelta(days=400)
    result = privacy(capsys, "jobs", "--config", config, "--start-day", start.isoformat())
    assert result.code == 0, result.err
    jobs = result.lines()
    assert [job["status"] for job in jobs] == ["done", "submitted", "staging"]
    assert [job["day"] for job in jobs] == sorted(job["day"] for job in jobs)
    assert jobs[2]["amplitude_ids"][0]["user_id"] == user.user_id
    assert jobs[2]["amplitude_ids"][0]["requester"] == "dpo@example.com"
    assert jobs[1]["active_scrub_done_date"] is not None
    assert {job["app"] for job in jobs} == {recent.project.app_id}

    gets = [r for r in recent.requests if r.method == "GET" and r.path == DELETIONS]
    windows = [(r.params["start_day"], r.params["end_day"]) for r in gets if r.status == 200]
    assert windows[0][0] == start.isoformat()
    assert windows[-1][1] == (today + timedelta(days=30)).isoformat()
    assert len(windows) == 3
    for (_, end), (next_start, _) in itertools.pairwise(windows):
        assert date.fromisoformat(next_start) == date.fromisoformat(end) + timedelta(days=1)


def test_jobs_rejects_a_reversed_range_in_one_line(
    simulator: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(simulator, tmp_path)
    result = privacy(
        capsys,
        *["jobs", "--config", str(config), "--start-day", "2024-05-01", "--end-day", "2024-04-01"],
    )
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert "--end-day" in line
    assert simulator.requests == []


# ----------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read config file"),
        ("{not json", "is not valid JSON"),
        ('["a"]', "must hold a JSON object"),
        ('{"api_key": "k"}', "secret_key missing or empty"),
        ('{"api_key": "k", "secret_key": "s", "region": "mars"}', "region must be one of"),
        ('{"api_key": "k", "secret_key": "s", "request_timeout": NaN}', "request_timeout must"),
        ('{"api_key": "k", "secret_key": "s", "request_timeout": 1e10}', "at most 86400"),
        (
            '{"api_key": "k", "secret_key": "s", "api_url": "ftp://x"}',
            "api_url is not an http(s) URL",
        ),
        ('{"api_key": "k", "secret_key": "s", "api_url": " "}', "api_url is empty"),
    ],
)
def test_config_problems_are_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    config = tmp_path / "config.json"
    if content is not None:
        config.write_text(content)
    result = privacy(capsys, "jobs", "--config", config)
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert expected in line
    assert '"k"' not in line


def test_usage_errors_are_one_line_with_exit_code_2(
    simulator: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(simulator, tmp_path)
    missing = privacy(capsys, "delete", "--config", config, "--user-id", "x")
    assert missing.code == 2
    assert missing.err.strip() == (
        "amplitude-privacy delete: error: Missing option '--requester'. "
        "See 'amplitude-privacy delete --help'."
    )
    nothing = privacy(capsys, "delete", "--config", config, "--requester", "dpo@example.com")
    assert nothing.code == 2
    assert "nothing to delete" in nothing.err
    ids = tmp_path / "ids.txt"
    ids.write_text("amplitude_id:12ab\n")
    bad_file = privacy(
        capsys, "delete", "--config", config, "--from-file", ids, "--requester", "dpo@x.org"
    )
    assert bad_file.code == 2
    assert "line 1: Amplitude ids are numbers" in bad_file.err
    assert simulator.requests == []


def test_console_script_help_and_secrets_end_to_end(
    simulator: AmplitudeSimulator, tmp_path: Path
) -> None:
    script = Path(sys.executable).parent / "amplitude-privacy"
    config = write_config(simulator, tmp_path)
    user = simulator.dataset.user_list()[0]

    def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *map(str, args)],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            timeout=60,
        )

    for command, option in (("lookup", "ID..."), ("delete", "--yes"), ("jobs", "--start-day")):
        helped = cli(command, "--help")
        assert helped.returncode == 0
        assert option in helped.stdout
        assert "Exit codes" in helped.stdout
    runs = [
        cli("lookup", "--config", config, user.user_id),
        cli("delete", "--config", config, "--user-id", user.user_id, "--requester", "d@x.org"),
        cli(
            "delete",
            "--config",
            config,
            "--user-id",
            user.user_id,
            "--requester",
            "d@x.org",
            "--yes",
        ),
    ]
    assert [r.returncode for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    default_audit = tmp_path / "amplitude-deletions.jsonl"
    assert [line["event"] for line in audit_lines(default_audit)] == ["sending", "accepted"]
    everything = "".join(r.stdout + r.stderr for r in runs) + default_audit.read_text()
    assert simulator.project.api_key not in everything
    assert simulator.project.secret_key not in everything


# ----------------------------------------------------------------------------------------
# --config before or after the command name


def test_config_goes_before_or_after_the_command_name_for_every_command(
    simulator: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(simulator, tmp_path)
    user = simulator.dataset.user_list()[0]

    def each_order(command: str, *rest: str | Path) -> list[Outcome]:
        """The command with --config before its name, right after it, and at the end."""
        orders: list[list[str | Path]] = [
            ["--config", config, command, *rest],
            [command, "--config", config, *rest],
            [command, *rest, "--config", config],
        ]
        results = [privacy(capsys, *args) for args in orders]
        assert [r.code for r in results] == [0, 0, 0], [r.err for r in results]
        return results

    lookups = each_order("lookup", user.user_id)
    assert lookups[0].lines() == lookups[1].lines() == lookups[2].lines()
    assert lookups[0].lines()[0]["found"] is True

    jobs = each_order("jobs")
    assert jobs[0].lines()
    assert jobs[0].out == jobs[1].out == jobs[2].out

    delete = ["--user-id", user.user_id, "--requester", "dpo@example.com"]
    dry = each_order("delete", *delete, "--audit-log", tmp_path / "dry.jsonl")
    assert all(r.lines()[0]["body"]["user_ids"] == [user.user_id] for r in dry)
    assert all("nothing was sent" in r.err for r in dry)

    real = each_order("delete", *delete, "--audit-log", tmp_path / "audit.jsonl", "--yes")
    assert [len(r.lines()) for r in real] == [1, 0, 0]  # sent once, then already accepted
    assert all("nothing to send" in r.err for r in real[1:])
    assert len(simulator.deletions.bodies) == 1


def test_config_missing_or_given_twice_differently_is_a_usage_error(
    simulator: AmplitudeSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(simulator, tmp_path)
    other = tmp_path / "other.json"
    other.write_text(config.read_text())
    missing = privacy(capsys, "jobs")
    assert missing.code == 2
    (line,) = missing.err.strip().splitlines()
    assert line.startswith("amplitude-privacy jobs: error: Missing option '--config'")
    assert "before or after the command name" in line
    same = privacy(capsys, "--config", config, "jobs", "--config", config)
    assert same.code == 0, same.err
    twice = privacy(capsys, "--config", config, "jobs", "--config", other)
    assert twice.code == 2
    (line,) = twice.err.strip().splitlines()
    assert "give it once" in line
    assert [r.path for r in simulator.requests if r.method == "GET"] == [DELETIONS]


def test_help_shows_config_before_or_after_the_command_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for args in (["--help"], ["lookup", "--help"], ["delete", "--help"], ["jobs", "--help"]):
        helped = privacy(capsys, *args)
        assert helped.code == 0
        text = " ".join(helped.out.split())
        assert "--config FILE" in text
        assert "before or after the command name" in text
    assert "amplitude-privacy --config FILE delete" in " ".join(helped.out.split())


# ----------------------------------------------------------------------------------------
# units


def test_rate_limiter_spaces_calls_by_its_interval() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    limiter = IntervalLimiter(1.1, clock=lambda: now[0], sleep=sleep)
    limiter.wait()
    limiter.wait()
    now[0] += 0.5
    limiter.wait()
    now[0] += 5
    limiter.wait()
    assert sleeps == pytest.approx([1.1, 0.6])


def test_job_windows_cover_the_range_in_at_most_180_days() -> None:
    first, last = date(2024, 1, 1), date(2024, 12, 31)
    windows = job_windows(first, last)
    assert windows[0]["start_day"] == "2024-01-01"
    assert windows[-1]["end_day"] == "2024-12-31"
    spans = [
        (date.fromisoformat(w["end_day"]) - date.fromisoformat(w["start_day"])).days + 1
        for w in windows
    ]
    assert spans == [180, 180, 6]
    assert job_windows(last, first) == []


def test_id_file_and_batches(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# header\nalice@example.com\n\namplitude_id: 042\nuser_id:a:b\n")
    parsed = read_id_file(ids)
    assert parsed == [("user_id", "alice@example.com"), ("amplitude_id", "42"), ("user_id", "a:b")]
    bodies = batch_bodies(
        parsed * 70, requester="r", ignore_invalid_ids=True, delete_from_org=False
    )
    assert [len(b["amplitude_ids"]) + len(b["user_ids"]) for b in bodies] == [100, 100, 10]
    assert bodies[0]["amplitude_ids"][0] == 42
    assert bodies[0]["ignore_invalid_id"] is True
