"""The simulator's taxonomy, cohort download, annotations v3 and chart APIs over real HTTP."""

from __future__ import annotations

import csv
import gzip
import io
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pytest
import requests

from amplitude_simulator import AmplitudeSimulator, Dataset, Window
from amplitude_simulator.api.cohorts import cohort_list

if TYPE_CHECKING:
    from collections.abc import Iterator

DATASET = Dataset(
    start=datetime(2024, 3, 1, tzinfo=timezone.utc),
    end=datetime(2024, 3, 3, tzinfo=timezone.utc),
    events_per_hour=5,
    users=12,
)
TAXONOMY = "/api/2/taxonomy"


@pytest.fixture
def sim() -> Iterator[AmplitudeSimulator]:
    with AmplitudeSimulator(DATASET) as simulator:
        yield simulator


def get(sim: AmplitudeSimulator, path: str, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("auth", (sim.project.api_key, sim.project.secret_key))
    return requests.get(f"{sim.url}{path}", timeout=kwargs.pop("timeout", 10), **kwargs)


def send(sim: AmplitudeSimulator, method: str, path: str, body: Any) -> requests.Response:
    auth = (sim.project.api_key, sim.project.secret_key)
    return requests.request(method, f"{sim.url}{path}", json=body, auth=auth, timeout=10)


# --------------------------------------------------------------------------------------
# taxonomy


def test_taxonomy_envelope_deleted_hidden_and_parameters(sim: AmplitudeSimulator) -> None:
    categories = get(sim, f"{TAXONOMY}/category").json()
    assert categories["success"] is True
    assert {"id", "name"} == set(categories["data"][0])
    users = get(sim, f"{TAXONOMY}/user-property").json()["data"]
    with_deleted = get(sim, f"{TAXONOMY}/user-property", params={"showDeleted": "true"}).json()
    names = {u["user_property"] for u in users}
    assert "gp:legacy_segment" not in names
    assert {u["user_property"] for u in with_deleted["data"]} - names == {"gp:legacy_segment"}
    assert "gp:internal_flag" not in names  # hidden
    events = get(sim, f"{TAXONOMY}/event").json()["data"]
    assert "legacy_export_clicked" not in {e["event_type"] for e in events}
    # event_type from the query string or from a form body on the GET
    by_query = get(sim, f"{TAXONOMY}/event-property", params={"event_type": "search_performed"})
    by_body = get(sim, f"{TAXONOMY}/event-property", data={"event_type": "search_performed"})
    assert by_query.json() == by_body.json()
    assert {p["event_property"] for p in by_query.json()["data"]} >= {"query", "results"}
    shared = get(sim, f"{TAXONOMY}/event-property").json()["data"]
    assert {p["event_type"] for p in shared} == {None}
    groups = get(sim, f"{TAXONOMY}/group-property", params={"group_type": "org_id"}).json()
    assert [g["group_property"] for g in groups["data"]] == ["grp:region"]
    # single items, names URL-encoded; unknown: 400, or 404 for user properties
    assert get(sim, f"{TAXONOMY}/user-property/gp%3Aplan").json()["data"]["type"] == "enum"
    assert get(sim, f"{TAXONOMY}/event/Play%20Song").status_code == 400
    missing = get(sim, f"{TAXONOMY}/user-property/gp%3Anope")
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "errors": [{"message": "Not found"}]}


def test_taxonomy_plan_refusal_and_limits(sim: AmplitudeSimulator) -> None:
    sim.taxonomy.cost_per_window = 2
    sim.taxonomy.window_seconds = 30.0
    assert [get(sim, f"{TAXONOMY}/category").status_code for _ in range(3)] == [200, 200, 429]
    limited = get(sim, f"{TAXONOMY}/category")
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["success"] is False
    sim.taxonomy.enterprise = False
    assert get(sim, f"{TAXONOMY}/event").status_code == 404


# --------------------------------------------------------------------------------------
# cohort download


def _rows(body: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.decode())))


def test_cohort_download_flow_inline_and_redirected(sim: AmplitudeSimulator) -> None:
    cohort = cohort_list(sim.dataset, sync_info=False)[1]
    sim.cohort_export.polls_in_progress = 1
    accepted = get(
        sim,
        f"/api/5/cohorts/request/{cohort['id']}",
        params=[("props", "1"), ("propKeys", "plan"), ("propKeys", "country")],
    )
    assert accepted.status_code == 202
    request_id = accepted.json()["request_id"]
    assert len(request_id) == 6
    assert accepted.json()["cohort_id"] == cohort["id"]
    early = get(sim, f"/api/5/cohorts/request/{request_id}/file", allow_redirects=False)
    assert early.status_code == 400  # before completion
    first = get(sim, f"/api/5/cohorts/request-status/{request_id}")
    assert (first.status_code, first.json()["async_status"]) == (202, "JOB INPROGRESS")
    done = get(sim, f"/api/5/cohorts/request-status/{request_id}")
    assert (done.status_code, done.json()["async_status"]) == (200, "JOB COMPLETED")

    inline = get(sim, f"/api/5/cohorts/request/{request_id}/file", allow_redirects=False)
    assert inline.status_code == 200
    assert inline.headers["Content-Encoding"] == "gzip"  # requests decoded it
    rows = _rows(inline.content)
    assert rows[0] == ["amplitude_id", "user_id", "gp:plan", "country"]
    assert len(rows) - 1 == cohort["size"]

    sim.cohort_export.inline_max_members = 0
    moved = get(sim, f"/api/5/cohorts/request/{request_id}/file", allow_redirects=False)
    assert moved.status_code == 302
    location = moved.headers["Location"]
    assert "/cohort-downloads/" in location
    stored = requests.get(location, timeout=10, stream=True)  # pre-signed: no auth
    raw = stored.raw.read(decode_content=False)
    assert _rows(gzip.decompress(raw)) == rows
    assert (
        requests.get(location.replace("Signature=", "Signature=0"), timeout=10).status_code == 403
    )
    sim.cohort_export.link_ttl_seconds = -1.0
    expired = get(sim, f"/api/5/cohorts/request/{request_id}/file", allow_redirects=False)
    assert requests.get(expired.headers["Location"], timeout=10).status_code == 403


def test_cohort_quota_rate_unknown_and_revisions(sim: AmplitudeSimulator) -> None:
    cohorts = cohort_list(sim.dataset, sync_info=False)
    assert get(sim, "/api/5/cohorts/request/nope").status_code == 404
    assert get(sim, "/api/5/cohorts/request-status/nope").status_code == 404
    sim.cohort_export.monthly_quota = 1
    assert get(sim, f"/api/5/cohorts/request/{cohorts[0]['id']}").status_code == 202
    spent = get(sim, f"/api/5/cohorts/request/{cohorts[0]['id']}")
    assert spent.status_code == 429
    assert spent.json()["error"]["message"] == "Monthly cohort download quota exceeded"
    assert int(spent.headers["Retry-After"]) > 3600
    sim.cohort_export.monthly_quota = 100
    sim.cohort_export.requests_per_window = 2
    assert get(sim, f"/api/5/cohorts/request/{cohorts[0]['id']}").status_code == 202
    limited = get(sim, f"/api/5/cohorts/request/{cohorts[0]['id']}")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) <= 600

    before = {c["id"]: c for c in get(sim, "/api/3/cohorts").json()["cohorts"]}
    sim.cohort_export.revisions[cohorts[0]["id"]] = 1
    sim.cohort_export.epoch_ms = True
    after = {c["id"]: c for c in get(sim, "/api/3/cohorts").json()["cohorts"]}
    changed = after[cohorts[0]["id"]]
    assert changed["lastMod"] == (before[cohorts[0]["id"]]["lastMod"] + 3600) * 1000
    assert changed["size"] <= before[cohorts[0]["id"]]["size"]
    assert after[cohorts[1]["id"]]["lastMod"] == before[cohorts[1]["id"]]["lastMod"] * 1000


# --------------------------------------------------------------------------------------
# annotations v2 and v3


def test_annotations_v3_filters_crud_and_the_v2_view(sim: AmplitudeSimulator) -> None:
    items = get(sim, "/api/3/annotations").json()["data"]
    assert len(items) == 4
    assert set(items[0]) == {"id", "start", "end", "label", "details", "category", "chart_id"}
    both = get(sim, "/api/3/annotations", params={"category": "Releases", "chart_id": "abc123"})
    assert both.status_code == 400
    releases = get(sim, "/api/3/annotations", params={"category": "Releases"}).json()["data"]
    assert [i["category"]["name"] for i in releases] == ["Releases"]
    on_chart = get(sim, "/api/3/annotations", params={"chart_id": "abc123"}).json()["data"]
    assert [i["chart_id"] for i in on_chart] == ["abc123"]
    start = "2024-03-01T00:00:00+00:00"
    encoded = get(sim, "/api/3/annotations", params={"start": start}).json()["data"]
    raw = requests.get(
        f"{sim.url}/api/3/annotations?start={start}",  # '+' unencoded, as the docs' curl
        auth=(sim.project.api_key, sim.project.secret_key),
        timeout=10,
    ).json()["data"]
    assert encoded == raw
    assert 0 < len(encoded) < 4

    created = send(sim, "POST", "/api/3/annotations", {"label": "Launch", "start": start})
    new_id = created.json()["data"]["id"]
    assert created.json()["data"]["category"] is None
    assert send(sim, "POST", "/api/3/annotations", {"label": "x"}).status_code == 400
    # A start or end that is not ISO 8601 is an invalid field (400), and is not stored.
    for bad in ({"label": "x", "start": "yesterday"}, {"label": "x", "start": start, "end": 5}):
        refused = send(sim, "POST", "/api/3/annotations", bad)
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == "Invalid field"
    assert send(sim, "PUT", f"/api/3/annotations/{new_id}", {"end": "soon"}).status_code == 400
    assert send(sim, "PUT", f"/api/3/annotations/{new_id}", {"start": None}).status_code == 400
    assert get(sim, "/api/3/annotations", params={"start": start}).status_code == 200
    moved = send(sim, "PUT", f"/api/3/annotations/{new_id}", {"category": "Alerts"})
    assert moved.json()["data"]["category"]["name"] == "Alerts"
    v2 = get(sim, "/api/2/annotations", params={"id": str(new_id)}).json()["data"]
    assert v2 == [{"id": new_id, "date": "2024-03-01", "label": "Launch", "details": None}]
    assert send(sim, "DELETE", f"/api/3/annotations/{new_id}", None).json() == {"success": True}
    assert get(sim, f"/api/3/annotations/{new_id}").status_code == 404

    duplicate = send(sim, "POST", "/api/3/annotation-categories", {"category": "Releases"})
    assert duplicate.status_code == 409
    made = send(sim, "POST", "/api/3/annotation-categories", {"category": "Ops"}).json()["data"]
    renamed = send(sim, "PUT", f"/api/3/annotation-categories/{made['id']}", {"category": "Ops2"})
    assert renamed.json()["data"] == {"id": made["id"], "category": "Ops2"}  # the other key
    bulk = send(
        sim,
        "PUT",
        f"/api/3/annotation-categories/bulk/{made['id']}",
        {"annotation_ids": [items[0]["id"]]},
    )
    assert bulk.json()["data"][0]["category"] == {"id": made["id"], "category": "Ops2"}
    assert get(sim, "/api/3/annotation-categories/999").status_code == 404

    sim.annotations.v2_status = 410
    assert get(sim, "/api/2/annotations").status_code == 410
    sim.annotations.v3_status = 404
    assert get(sim, "/api/3/annotation-categories").status_code == 404


# --------------------------------------------------------------------------------------
# saved charts


def test_saved_chart_shapes_csv_and_refusals(sim: AmplitudeSimulator) -> None:
    segmentation = get(sim, "/api/3/chart/abc123/query").json()["data"]
    assert set(segmentation) == {"series", "seriesLabels", "seriesCollapsed", "xValues"}
    funnel = get(sim, "/api/3/chart/fun456/query").json()["data"]
    assert isinstance(funnel, list)
    assert "stepByStep" in funnel[0]
    retention = get(sim, "/api/3/chart/ret789/query").json()["data"]
    assert "dates" in retention["series"][0]
    table = get(sim, "/api/3/chart/tbl001/query").json()["data"]
    assert table["values"][0] == table["labels"]
    text = get(sim, "/api/3/chart/abc123/csv").json()["data"]
    assert '"Segment","\t2024-03-01"' in text
    assert '"\tAll Users"' in text
    sim.charts.csv_bare = True
    bare = get(sim, "/api/3/chart/abc123/csv")
    assert bare.headers["Content-Type"] == "text/csv"
    assert bare.text == text
    assert get(sim, "/api/3/chart/nope/query").status_code == 404
    assert get(sim, "/api/3/chart/zzz999/query").status_code == 403
    sim.limits.cost = (Window(3, 30.0),)  # chart queries draw the Dashboard cost
    sim.limits.chart_cost = 2
    assert get(sim, "/api/3/chart/abc123/query").status_code == 200
    assert get(sim, "/api/3/chart/abc123/query").status_code == 429
