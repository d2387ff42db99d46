"""The simulator's privacy APIs over real HTTP: DSAR, user mapping, job removal, erasure."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
import requests

from amplitude_simulator import AmplitudeSimulator, Dataset
from amplitude_simulator.api.cohorts import cohort_list, members_of

if TYPE_CHECKING:
    from collections.abc import Iterator

DSAR = "/api/2/dsar/requests"
START = datetime.now(tz=timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
DATASET = Dataset(start=START - timedelta(days=10), end=START - timedelta(days=7), users=8)


@pytest.fixture
def sim() -> Iterator[AmplitudeSimulator]:
    with AmplitudeSimulator(DATASET) as simulator:
        yield simulator


def auth(sim: AmplitudeSimulator) -> tuple[str, str]:
    return (sim.project.api_key, sim.project.secret_key)


def ask(sim: AmplitudeSimulator, body: dict[str, Any], **kwargs: Any) -> requests.Response:
    kwargs.setdefault("auth", auth(sim))
    return requests.post(f"{sim.url}{DSAR}", json=body, timeout=10, **kwargs)


def status(sim: AmplitudeSimulator, request_id: int) -> dict[str, Any]:
    response = requests.get(f"{sim.url}{DSAR}/{request_id}", auth=auth(sim), timeout=10)
    assert response.status_code == 200
    payload: dict[str, Any] = response.json()
    return payload


def test_dsar_lifecycle_outputs_and_expiring_links(sim: AmplitudeSimulator) -> None:
    user = sim.dataset.user_list()[0]
    created = ask(
        sim, {"amplitudeId": user.amplitude_id, "startDate": "2000-01-01", "endDate": "2100-01-01"}
    )
    assert created.status_code == 202
    request_id = created.json()["requestId"]
    assert [status(sim, request_id)["status"] for _ in range(3)] == ["staging", "submitted", "done"]
    done = status(sim, request_id)
    assert done["failReason"] is None
    assert done["expires"] == (START.date() + timedelta(days=2)).isoformat()
    rows: list[dict[str, Any]] = []
    for url in done["urls"]:
        link = requests.get(url, auth=auth(sim), allow_redirects=False, timeout=10)
        assert link.status_code == 302
        body = requests.get(link.headers["Location"], timeout=10)  # pre-signed: no auth
        assert body.status_code == 200
        rows += [json.loads(line) for line in gzip.decompress(body.content).splitlines()]
    assert {row["uuid"] for row in rows} == {
        e["uuid"] for e in sim.dataset.user_activity(user.amplitude_id)
    }
    assert {row["amplitude_id"] for row in rows} == {user.amplitude_id}

    sim.dsar.link_ttl_seconds = -1
    stale = requests.get(done["urls"][0], auth=auth(sim), timeout=10)
    assert stale.status_code == 403
    assert b"Request has expired" in stale.content
    sim.now = datetime.now(tz=timezone.utc) + timedelta(days=3)
    gone = requests.get(done["urls"][0], auth=auth(sim), allow_redirects=False, timeout=10)
    assert gone.status_code == 410


def test_dsar_validation_failure_keys_and_cost_budget(sim: AmplitudeSimulator) -> None:
    user = sim.dataset.user_list()[1]
    assert ask(sim, {"amplitudeId": user.amplitude_id}).status_code == 400
    assert (
        ask(
            sim,
            {"userId": "a", "amplitudeId": 1, "startDate": "2024-01-01", "endDate": "2024-01-02"},
        ).status_code
        == 400
    )
    sim.dsar.fail_reason = "too many events"
    failed = ask(sim, {"userId": user.user_id, "startDate": "2024-01-01", "endDate": "2030-01-01"})
    request_id = failed.json()["requestId"]
    assert [status(sim, request_id)["status"] for _ in range(3)][-1] == "failed"
    assert status(sim, request_id)["failReason"] == "too many events"

    sim.dsar.refuse_project_keys = True
    body = {"userId": user.user_id, "startDate": "2024-01-01", "endDate": "2024-02-01"}
    assert ask(sim, body).status_code == 403
    assert ask(sim, body, auth=("wrong", "keys")).status_code == 403
    org = (sim.dsar.org_api_key, sim.dsar.org_secret_key)
    assert ask(sim, body, auth=org).status_code == 202

    sim.dsar.cost_per_window = 8  # one POST per window
    sim.dsar.spent.clear()
    assert ask(sim, body, auth=org).status_code == 202
    limited = ask(sim, body, auth=org)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("variant", ["form", "json", "query", "repeated-query", "wrapped"])
def test_usermap_lookup_variants(sim: AmplitudeSimulator, variant: str) -> None:
    users = sim.dataset.user_list()
    asked = [users[0].user_id, users[3].user_id, "nobody"]
    sim.usermap.wrap_in_mappings = variant == "wrapped"
    url = f"{sim.url}/api/2/usermap"
    if variant == "json":
        response = requests.get(url, json={"user_ids": asked}, auth=auth(sim), timeout=10)
    elif variant == "query":
        response = requests.get(
            url, params={"user_ids": ",".join(asked)}, auth=auth(sim), timeout=10
        )
    elif variant == "repeated-query":  # user_ids=a&user_ids=b&…, every one counts (§15.5)
        response = requests.get(url, params={"user_ids": asked}, auth=auth(sim), timeout=10)
    else:
        response = requests.get(url, data={"user_ids": asked}, auth=auth(sim), timeout=10)
    assert response.status_code == 200
    answer = response.json()
    if variant == "wrapped":
        answer = answer["mappings"]
    assert answer[users[0].user_id]["mapped_from"] == [
        {"amplitude_id": users[3].amplitude_id, "user_id": users[3].user_id}
    ]
    assert answer[users[3].user_id]["mapped_to"][0]["user_id"] == users[0].user_id
    assert answer["nobody"] == {}
    assert set(answer) == set(asked)
    assert requests.get(url, auth=auth(sim), timeout=10).status_code == 400
    too_many = {"user_ids": [f"u{n}" for n in range(101)]}
    assert requests.get(url, params=too_many, auth=auth(sim), timeout=10).status_code == 400


def _cohort_sizes(sim: AmplitudeSimulator) -> dict[str, int]:
    listed = requests.get(f"{sim.url}/api/3/cohorts", auth=auth(sim), timeout=10).json()
    return {cohort["id"]: cohort["size"] for cohort in listed["cohorts"]}


def _cohort_file(sim: AmplitudeSimulator, cohort_id: str) -> list[dict[str, str]]:
    base = f"{sim.url}/api/5/cohorts"
    job = requests.get(f"{base}/request/{cohort_id}", auth=auth(sim), timeout=10).json()
    while (
        requests.get(
            f"{base}/request-status/{job['request_id']}", auth=auth(sim), timeout=10
        ).status_code
        != 200
    ):
        pass
    body = requests.get(f"{base}/request/{job['request_id']}/file", auth=auth(sim), timeout=10)
    return list(csv.DictReader(io.StringIO(body.text)))


def test_the_job_delay_is_configurable(sim: AmplitudeSimulator) -> None:
    """How Amplitude picks a job's day is undocumented (§17.3): the delay is a setting."""
    sim.deletions.job_delay_days = 9  # the 2018 draft's example
    user = sim.dataset.user_list()[1]
    accepted = requests.post(
        f"{sim.url}/api/2/deletions/users",
        json={"user_ids": [user.user_id], "requester": "r"},
        auth=auth(sim),
        timeout=10,
    )
    assert (
        accepted.json()["day"]
        == (datetime.now(tz=timezone.utc).date() + timedelta(days=9)).isoformat()
    )
    assert accepted.json()["status"] == "staging"


def test_removal_from_a_staging_job_only_and_lookups_empty_once_done(
    sim: AmplitudeSimulator,
) -> None:
    sim.deletions.min_interval_seconds = 0
    user = sim.dataset.user_list()[2]
    path = f"{sim.url}/api/2/deletions/users"
    accepted = requests.post(
        path, json={"user_ids": [user.user_id], "requester": "r"}, auth=auth(sim), timeout=10
    )
    day = accepted.json()["day"]
    assert day == (datetime.now(tz=timezone.utc).date() + timedelta(days=7)).isoformat()
    seeded = sim.dataset.user_list()[-2]  # in the seeded submitted job
    submitted_day = (START.date() - timedelta(days=2)).isoformat()
    refused = requests.delete(
        f"{path}/{seeded.amplitude_id}/{submitted_day}", auth=auth(sim), timeout=10
    )
    assert refused.status_code == 400
    assert "submitted" in refused.json()["error"]
    missing = requests.delete(f"{path}/{seeded.amplitude_id}/{day}", auth=auth(sim), timeout=10)
    assert missing.status_code == 400

    search = f"{sim.url}/api/2/usersearch"
    assert requests.get(search, params={"user": user.user_id}, auth=auth(sim), timeout=10).json()[
        "matches"
    ]
    cohorts_before = _cohort_sizes(sim)
    sim.now = datetime.now(tz=timezone.utc) + timedelta(days=20)
    assert (
        requests.get(search, params={"user": user.user_id}, auth=auth(sim), timeout=10).json()[
            "matches"
        ]
        == []
    )
    profile = requests.get(
        f"{sim.url}/v1/userprofile",
        params={"user_id": user.user_id},
        headers={"Authorization": f"Api-Key {sim.project.secret_key}"},
        timeout=10,
    )
    assert profile.json() == {"error": "User id and device id not seen before"}
    activity = requests.get(
        f"{sim.url}/api/2/useractivity",
        params={"user": str(user.amplitude_id)},
        auth=auth(sim),
        timeout=10,
    ).json()
    assert activity["events"] == []  # the job deleted them (§17.3): an unknown user's answer
    assert activity["userData"]["num_events"] == 0
    assert activity["userData"]["user_id"] is None
    # ... and in no cohort: sizes drop by one where the user was, the file leaves them out.
    holding = {
        cohort["id"]
        for index, cohort in enumerate(cohort_list(DATASET, sync_info=False))
        if user.amplitude_id in {p.user.amplitude_id for p in members_of(DATASET, index)}
    }
    assert holding
    assert _cohort_sizes(sim) == {
        cohort_id: size - (cohort_id in holding) for cohort_id, size in cohorts_before.items()
    }
    members = _cohort_file(sim, min(holding))
    assert str(user.amplitude_id) not in {row["amplitude_id"] for row in members}
    assert len(members) == cohorts_before[min(holding)] - 1
    # The job deleted the user's events (§17.3): the Export API no longer has them.
    window = {
        "start": f"{DATASET.start:%Y%m%dT%H}",
        "end": f"{DATASET.end - timedelta(hours=1):%Y%m%dT%H}",
    }
    archive = requests.get(f"{sim.url}/api/2/export", params=window, auth=auth(sim), timeout=30)
    assert archive.status_code == 200
    unzipped = zipfile.ZipFile(io.BytesIO(archive.content))
    exported = [
        json.loads(line)
        for name in unzipped.namelist()
        for line in gzip.decompress(unzipped.read(name)).splitlines()
    ]
    all_rows = DATASET.expected_events(DATASET.start, DATASET.end)
    assert any(row["amplitude_id"] == user.amplitude_id for row in all_rows)
    assert [r["uuid"] for r in exported] == [
        r["uuid"] for r in all_rows if r["amplitude_id"] != user.amplitude_id
    ]
    sim.now = None
    removed = requests.delete(f"{path}/{user.amplitude_id}/{day}", auth=auth(sim), timeout=10)
    assert removed.status_code == 200
    assert removed.json()["amplitude_id"] == user.amplitude_id
    assert (
        requests.get(
            path, params={"start_day": day, "end_day": day}, auth=auth(sim), timeout=10
        ).json()
        == []
    )
