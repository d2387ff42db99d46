"""The privacy streams through the tap CLI, and the simulator's profile and deletion APIs."""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
import requests

from amplitude_simulator import AmplitudeSimulator, Dataset, Fault
from tap_amplitude.streams.privacy import UNKNOWN_USER_ERROR, DeletionJobsStream
from tap_amplitude.tap import TapAmplitude
from tests.helpers import run_tap, simulator_config

if TYPE_CHECKING:
    from collections.abc import Iterator

PROFILE = "/v1/userprofile"
DELETIONS = "/api/2/deletions/users"


def recent_dataset() -> Dataset:
    """Three days of data ending a week ago: the simulator's seeded job on its first day is done."""
    start = datetime.now(tz=timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start -= timedelta(days=10)
    return Dataset(start=start, end=start + timedelta(days=3), events_per_hour=1, users=12)


@pytest.fixture
def recent() -> Iterator[AmplitudeSimulator]:
    with AmplitudeSimulator(recent_dataset()) as sim:
        yield sim


def profile_requests(sim: AmplitudeSimulator) -> list[dict[str, str]]:
    return [r.params for r in sim.requests if r.path == PROFILE]


# ----------------------------------------------------------------------------------------
# user_profiles


def test_user_profiles_one_record_per_user_found_by_search(simulator: AmplitudeSimulator) -> None:
    users = simulator.dataset.user_list()
    config = simulator_config(
        simulator,
        # alice three ways (email, device id, Amplitude id), user 1 by Amplitude id, a stranger
        user_ids=[users[0].user_id, users[0].device_id, "nobody@nowhere.example"],
        amplitude_ids=[users[0].amplitude_id, users[1].amplitude_id],
        rec_id="rec-1,rec-2",
    )
    run = run_tap(config, streams=["user_profiles"])
    assert run.returncode == 0, run.stderr
    records = run.records("user_profiles")
    assert [r["user_id"] for r in records] == [users[0].user_id, users[1].user_id]
    alice = records[0]
    assert alice["device_id"] == users[0].device_id
    assert alice["amp_props"]["email"] == users[0].user_id
    assert alice["amp_props"]["first_used"] <= alice["amp_props"]["last_used"]
    assert alice["amp_props"]["comp-events-total"] == "2345.0"  # computations, as strings
    assert isinstance(alice["cohort_ids"], list)
    assert [rec["rec_id"] for rec in alice["recommendations"]] == ["rec-1", "rec-2"]
    schema = next(m for m in run.messages if m["type"] == "SCHEMA")
    assert schema["stream"] == "user_profiles"
    assert schema["key_properties"] == ["user_id"]

    asked = profile_requests(simulator)
    assert [p["user_id"] for p in asked] == [users[0].user_id, users[1].user_id]
    for params in asked:
        assert params["get_amp_props"] == "true"
        assert params["get_cohort_ids"] == "true"
        assert params["get_computations"] == "true"
        assert params["get_recs"] == "true"
        assert params["rec_id"] == "rec-1,rec-2"


def test_user_profiles_reuse_user_search_results(simulator: AmplitudeSimulator) -> None:
    users = simulator.dataset.user_list()
    config = simulator_config(
        simulator, user_ids=[users[2].user_id], amplitude_ids=[users[3].amplitude_id]
    )
    run = run_tap(config, streams=["user_search", "user_profiles", "user_activity"])
    assert run.returncode == 0, run.stderr
    searches = [r.params["user"] for r in simulator.requests if r.path == "/api/2/usersearch"]
    assert searches == [users[2].user_id, str(users[3].amplitude_id)]  # each term once
    assert [r["user_id"] for r in run.records("user_profiles")] == [
        users[2].user_id,
        users[3].user_id,
    ]
    assert len(run.records("user_search")) == 2
    assert run.records("user_activity")


def test_user_profiles_without_rec_id_has_null_recommendations(
    simulator: AmplitudeSimulator,
) -> None:
    user = simulator.dataset.user_list()[2]
    run = run_tap(simulator_config(simulator, user_ids=[user.user_id]), streams=["user_profiles"])
    assert run.returncode == 0, run.stderr
    (record,) = run.records("user_profiles")
    assert record["recommendations"] is None
    assert "get_recs" not in profile_requests(simulator)[0]


@pytest.mark.parametrize("status", [400, 200])
def test_unknown_profile_gives_no_record_and_an_info_log(
    simulator: AmplitudeSimulator, status: int
) -> None:
    users = simulator.dataset.user_list()
    simulator.add_fault(
        PROFILE,
        Fault.status(status, json.dumps({"error": UNKNOWN_USER_ERROR})),
        when=lambda params: params.get("user_id") == users[0].user_id,
    )
    config = simulator_config(simulator, user_ids=[users[0].user_id, users[1].user_id])
    run = run_tap(config, streams=["user_profiles"])
    assert run.returncode == 0, run.stderr
    assert [r["user_id"] for r in run.records("user_profiles")] == [users[1].user_id]
    assert f"Amplitude has no profile for user {users[0].user_id!r}" in run.stderr


def test_user_profiles_in_eu_is_skipped_with_one_warning(simulator: AmplitudeSimulator) -> None:
    users = simulator.dataset.user_list()
    config = simulator_config(simulator, region="eu", user_ids=[u.user_id for u in users[:5]])
    run = run_tap(config, streams=["user_profiles"])
    assert run.returncode == 0, run.stderr
    assert run.records("user_profiles") == []
    warnings = [line for line in run.stderr.splitlines() if "not available in the EU" in line]
    assert len(warnings) == 1
    assert "ERROR" not in run.stderr
    assert profile_requests(simulator) == []


def test_profile_api_auth_failure_is_one_line_naming_secret_key(
    simulator: AmplitudeSimulator,
) -> None:
    simulator.add_fault(PROFILE, Fault.status(401, "Invalid Api-Key"))
    user = simulator.dataset.user_list()[0]
    run = run_tap(simulator_config(simulator, user_ids=[user.user_id]), streams=["user_profiles"])
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "refused the credentials" in line]
    assert len(errors) == 1
    assert "check secret_key" in errors[0]
    assert "Invalid Api-Key" in errors[0]
    assert simulator.project.secret_key not in run.stderr + run.stdout
    assert simulator.project.api_key not in run.stderr + run.stdout


# ----------------------------------------------------------------------------------------
# deletion_jobs


def test_deletion_jobs_reads_windows_to_30_days_ahead(recent: AmplitudeSimulator) -> None:
    today = datetime.now(tz=timezone.utc).date()
    user = recent.dataset.user_list()[0]
    response = requests.post(
        f"{recent.url}{DELETIONS}",
        json={"user_ids": [user.user_id], "requester": "dpo@example.com"},
        auth=(recent.project.api_key, recent.project.secret_key),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    recent.deletions.last_served = None  # the tap's first GET may follow at once
    start = today - timedelta(days=200)
    config = simulator_config(recent, start_date=start.isoformat(), end_date=None)
    run = run_tap(config, streams=["deletion_jobs"])
    assert run.returncode == 0, run.stderr

    jobs = run.records("deletion_jobs")
    assert [job["status"] for job in jobs] == ["done", "submitted", "staging"]
    staging = jobs[2]
    assert staging["app"] == recent.project.app_id
    assert date.fromisoformat(staging["day"]) > today
    assert staging["amplitude_ids"] == [
        {
            "amplitude_id": user.amplitude_id,
            "requester": "dpo@example.com",
            "requested_on_day": today.isoformat(),
            "user_id": user.user_id,
        }
    ]
    assert jobs[0]["active_scrub_done_date"] is not None
    assert staging["active_scrub_done_date"] is None
    schema = next(m for m in run.messages if m["type"] == "SCHEMA")
    assert schema["key_properties"] == ["day", "app"]

    gets = [r for r in recent.requests if r.method == "GET" and r.path == DELETIONS]
    assert [r.status for r in gets] == [200, 200]  # rate-limited by the tap, not by 429s
    assert gets[1].at - gets[0].at >= 1.0
    windows = [(r.params["start_day"], r.params["end_day"]) for r in gets]
    assert windows == [
        (start.isoformat(), (start + timedelta(days=179)).isoformat()),
        ((start + timedelta(days=180)).isoformat(), (today + timedelta(days=30)).isoformat()),
    ]


def test_deletion_jobs_end_date_is_exclusive() -> None:
    tap = TapAmplitude(
        config={
            "api_key": "k",
            "secret_key": "s",
            "start_date": "2024-01-01T00:00:00Z",
            "end_date": "2024-03-01T00:00:00Z",
        },
        setup_mapper=False,
    )
    stream = DeletionJobsStream(tap=tap)
    assert stream.partitions == [{"start_day": "2024-01-01", "end_day": "2024-02-29"}]
    tap.http_session.close()


def test_deletion_jobs_auth_failure_is_one_line(simulator: AmplitudeSimulator) -> None:
    config = simulator_config(simulator, secret_key="not-the-secret", end_date=None)
    run = run_tap(config, streams=["deletion_jobs"])
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "refused the credentials" in line]
    assert len(errors) == 1
    assert "not-the-secret" not in run.stderr


# ----------------------------------------------------------------------------------------
# the simulator's profile API (docs/amplitude-api.md §7)


def _profile(sim: AmplitudeSimulator, auth: str | None, **params: str) -> requests.Response:
    headers = {"Authorization": auth} if auth is not None else {}
    return requests.get(f"{sim.url}{PROFILE}", params=params, headers=headers, timeout=10)


def test_simulated_profile_api_auth_and_sections(simulator: AmplitudeSimulator) -> None:
    user = simulator.dataset.user_list()[0]
    good = f"Api-Key {simulator.project.secret_key}"
    missing = _profile(simulator, None, user_id=user.user_id)
    assert (missing.status_code, missing.text) == (401, "Missing Api-Key in Authorization header")
    wrong = _profile(simulator, "Api-Key nope", user_id=user.user_id)
    assert (wrong.status_code, wrong.text) == (401, "Invalid Api-Key")

    bare = _profile(simulator, good, user_id=user.user_id)
    assert bare.status_code == 200
    assert bare.json() == {
        "userData": {
            "recommendations": None,
            "user_id": user.user_id,
            "device_id": user.device_id,
            "amp_props": None,
            "cohort_ids": None,
        }
    }
    computations_only = _profile(simulator, good, device_id=user.device_id, get_computations="true")
    props = computations_only.json()["userData"]["amp_props"]
    assert props == {"comp-events-total": "2345.0", "comp-ltv": props["comp-ltv"]}
    assert isinstance(props["comp-ltv"], str)

    no_rec_id = _profile(simulator, good, user_id=user.user_id, get_recs="true")
    assert no_rec_id.status_code == 400

    # Propensity (§7): one prediction id gives propensity = its prop; several give null.
    one = _profile(
        simulator, good, user_id=user.user_id, get_propensity="true", prediction_id="0x10x"
    ).json()["userData"]
    (entry,) = one["propensities"]
    assert entry["pred_id"] == "0x10x"
    assert entry["prop_type"] == "score"
    assert 0 <= entry["prop"] <= 1
    assert one["propensity"] == entry["prop"]
    several = _profile(
        simulator,
        good,
        user_id=user.user_id,
        get_propensity="true",
        prediction_id="0x10x,0x20y",
        propensity_type="pct",
    ).json()["userData"]
    assert several["propensity"] is None
    assert [(p["pred_id"], p["prop_type"]) for p in several["propensities"]] == [
        ("0x10x", "pct"),
        ("0x20y", "pct"),
    ]
    unknown = _profile(simulator, good, user_id="never-seen")
    assert unknown.status_code == 400
    assert unknown.json() == {"error": UNKNOWN_USER_ERROR}


# ----------------------------------------------------------------------------------------
# the simulator's deletion API (docs/amplitude-api.md §8)


class _Client:
    """Basic-auth calls to the deletion API, spaced to respect its 1 request/second limit."""

    def __init__(self, sim: AmplitudeSimulator) -> None:
        self.sim = sim
        self.first = True

    def __call__(self, method: str, **kwargs: Any) -> requests.Response:
        if not self.first:
            self.sim.deletions.last_served = None  # skip the wait, not the check
        self.first = False
        return requests.request(
            method,
            f"{self.sim.url}{DELETIONS}",
            auth=(self.sim.project.api_key, self.sim.project.secret_key),
            timeout=10,
            **kwargs,
        )


def test_simulated_deletion_api_validates_like_amplitude(simulator: AmplitudeSimulator) -> None:
    call = _Client(simulator)
    users = simulator.dataset.user_list()
    too_many = call("POST", json={"user_ids": [f"u{i}" for i in range(101)], "requester": "r"})
    assert too_many.status_code == 400
    assert "at most 100" in too_many.json()["error"]

    unknown = call("POST", json={"user_ids": [users[0].user_id, "ghost"], "requester": "r"})
    assert unknown.status_code == 400
    assert unknown.json()["invalid_ids"] == ["ghost"]
    assert simulator.deletions.bodies == []

    for spelling, value in itertools.product(
        ("ignore_invalid_id", "ignore_invalid_ids"), (True, "true", "True")
    ):
        ok = call(
            "POST",
            json={"amplitude_ids": [users[1].amplitude_id, 5], spelling: value, "requester": "r"},
        )
        assert ok.status_code == 200, (spelling, value, ok.text)
        assert ok.json()["invalid_ids"] == [5]
        assert ok.json()["status"] == "staging"
    not_ignored = call("POST", json={"amplitude_ids": [5], "ignore_invalid_id": "False"})
    assert not_ignored.status_code == 400
    nonsense = call("POST", json={"amplitude_ids": [5], "ignore_invalid_id": "maybe"})
    assert nonsense.status_code == 400

    org = call("POST", json={"user_ids": [users[2].user_id, "ghost"], "delete_from_org": "True"})
    assert org.status_code == 200
    (job,) = org.json()
    assert job["app"] == simulator.project.app_id
    assert job["invalid_ids"] == ["ghost"]


def test_simulated_deletion_jobs_window_and_rate_limit(simulator: AmplitudeSimulator) -> None:
    call = _Client(simulator)
    six_months = call("GET", params={"start_day": "2024-01-31", "end_day": "2024-07-31"})
    assert six_months.status_code == 200
    assert isinstance(six_months.json(), list)
    longer = call("GET", params={"start_day": "2024-01-31", "end_day": "2024-08-01"})
    assert longer.status_code == 400
    assert "6 months" in longer.json()["error"]
    bad_format = call("GET", params={"start_day": "20240131", "end_day": "2024-02-01"})
    assert bad_format.status_code == 400

    auth = (simulator.project.api_key, simulator.project.secret_key)
    params = {"start_day": "2024-01-01", "end_day": "2024-01-02"}
    statuses = []
    simulator.deletions.last_served = None
    for _ in range(2):  # back to back: the second is inside the same second
        response = requests.get(f"{simulator.url}{DELETIONS}", params=params, auth=auth, timeout=10)
        statuses.append((response.status_code, response.headers.get("Retry-After")))
    assert statuses == [(200, None), (429, "1")]
