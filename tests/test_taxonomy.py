"""Taxonomy streams end to end (simulator): every field, deleted items, the plan, the limits."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import requests

from amplitude_simulator import AmplitudeSimulator
from amplitude_simulator.api import taxonomy as taxonomy_api
from tap_amplitude.ratelimit import (
    TAXONOMY_BUDGET,
    ProjectLimiter,
    RateLimits,
    request_charge,
)
from tests.helpers import run_tap, simulator_config, warning_lines

TAXONOMY = ["event_categories", "event_properties", "user_properties", "group_properties"]


def _taxonomy_calls(sim: AmplitudeSimulator) -> list[Any]:
    return [r for r in sim.requests if r.path.startswith("/api/2/taxonomy/")]


def test_every_item_and_field_with_deleted_ones_flagged(simulator: AmplitudeSimulator) -> None:
    run = run_tap(simulator_config(simulator, project_id=187520), streams=TAXONOMY)
    assert run.returncode == 0, run.stderr
    assert warning_lines(run.stderr) == []

    categories = run.records("event_categories")
    assert [{k: c[k] for k in ("id", "name")} for c in categories] == taxonomy_api.categories()
    assert all(c["app"] == 187520 for c in categories)

    users = run.records("user_properties")
    served = taxonomy_api.user_properties(show_deleted=True)
    assert [{k: u[k] for k in served[0]} for u in users] == served  # every field, unchanged
    deleted = {u["user_property"] for u in users if u["deleted"]}
    assert deleted == {"gp:legacy_segment"}
    assert "gp:internal_flag" not in {u["user_property"] for u in users}  # hidden: not listed

    groups = run.records("group_properties")
    assert [{k: g[k] for k in ("group_type", "group_property", "type")} for g in groups] == [
        {k: g[k] for k in ("group_type", "group_property", "type")}
        for g in taxonomy_api.group_properties(None)
    ]
    assert {g["group_type"] for g in groups} == {"company_id", "org_id"}

    props = run.records("event_properties")
    shared = [p for p in props if p["shared"]]
    assert [p["event_property"] for p in shared] == [
        p["event_property"] for p in taxonomy_api.event_properties(None)
    ]
    assert {p["event_type"] for p in shared} == {""}
    every_event = taxonomy_api.events(show_deleted=True)
    for event in every_event:
        own = [p for p in props if p["event_type"] == event["event_type"]]
        expected = taxonomy_api.event_properties(event["event_type"])
        assert [{k: p[k] for k in expected[0] if k != "event_type"} for p in own] == [
            {k: e[k] for k in e if k != "event_type"} for e in expected
        ]
        assert {p["event_deleted"] for p in own} == {event["event_type"] == "legacy_export_clicked"}
    keys = [(p["event_type"], p["event_property"]) for p in props]
    assert len(keys) == len(set(keys))  # the primary key is unique
    purchase = {p["event_property"]: p for p in props if p["event_type"] == "purchase_completed"}
    assert purchase["revenue"]["classifications"] == ["REVENUE"]
    assert purchase["currency"]["enum_values"] == "USD, EUR, GBP"

    calls = _taxonomy_calls(simulator)
    assert {r.params.get("showDeleted") for r in calls if r.path.endswith("/user-property")} == {
        None,
        "true",
    }
    per_event = [r.params["event_type"] for r in calls if "event_type" in r.params]
    assert per_event == [e["event_type"] for e in every_event]
    assert all(r.status == 200 for r in calls)


def test_deleted_flag_is_derived_when_amplitude_omits_it(
    simulator: AmplitudeSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = taxonomy_api._user_property

    def without_flag(spec: Any) -> dict[str, Any]:
        item = original(spec)
        del item["deleted"]
        return item

    monkeypatch.setattr(taxonomy_api, "_user_property", without_flag)
    run = run_tap(simulator_config(simulator), streams=["user_properties"])
    assert run.returncode == 0, run.stderr
    flags = {u["user_property"]: u["deleted"] for u in run.records("user_properties")}
    assert flags["gp:legacy_segment"] is True
    assert sum(flags.values()) == 1


@pytest.mark.parametrize("status", [404, 403])
def test_no_enterprise_plan_warns_once_and_the_run_goes_on(
    simulator: AmplitudeSimulator, status: int
) -> None:
    simulator.taxonomy.enterprise = False
    simulator.taxonomy.refusal_status = status
    run = run_tap(simulator_config(simulator), streams=[*TAXONOMY, "annotations"])
    assert run.returncode == 0, run.stderr
    warnings = warning_lines(run.stderr)
    assert len(warnings) == 1, warnings
    assert f"HTTP {status}: Not found" in warnings[0]
    assert "Enterprise plan" in warnings[0]
    for stream in TAXONOMY:
        assert run.records(stream) == []
        assert stream in warnings[0]
    assert len(run.records("annotations")) == 4
    assert len(_taxonomy_calls(simulator)) == 1  # the later streams ask nothing
    probes = [r for r in simulator.requests if r.path == "/api/2/events/list"]
    assert len(probes) == (1 if status == 403 else 0)  # a 403 could be bad keys: checked


def test_a_429_beyond_taxonomys_limit_is_waited_out(simulator: AmplitudeSimulator) -> None:
    simulator.taxonomy.cost_per_window = 14  # event_properties asks 18 times
    simulator.taxonomy.window_seconds = 1.0
    run = run_tap(simulator_config(simulator), streams=["event_properties"])
    assert run.returncode == 0, run.stderr
    statuses = [r.status for r in _taxonomy_calls(simulator)]
    assert 429 in statuses
    assert len(run.records("event_properties")) > 50


# --------------------------------------------------------------------------------------
# taxonomy's own budget in the tap (ratelimit.py)


def test_taxonomy_requests_draw_their_own_budget() -> None:
    charge = request_charge("/api/2/taxonomy/event-property", {"event_type": "x"})
    assert charge is not None
    assert (charge.budget, charge.amount) == (TAXONOMY_BUDGET, 1)
    assert RateLimits.from_config({}).taxonomy_cost_per_long_window == 7200
    assert RateLimits.from_config({}).taxonomy_concurrent_requests == 4
    limits = RateLimits.from_config(
        {"rate_limits": {"taxonomy_cost_per_hour": 10, "taxonomy_concurrent_requests": 2}}
    )
    assert (limits.taxonomy_cost_per_long_window, limits.taxonomy_concurrent_requests) == (10, 2)


def _prepared(url: str) -> requests.PreparedRequest:
    return requests.Request("GET", url).prepare()


def test_the_taxonomy_budget_and_slots_hold_requests_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = RateLimits(
        taxonomy_cost_per_long_window=2,
        taxonomy_concurrent_requests=1,
        short_window_seconds=0.5,
        long_window_seconds=1.0,
    )
    limiter = ProjectLimiter(limits, "http://127.0.0.1:1")
    url = "http://127.0.0.1:1/api/2/taxonomy/category"
    logger = logging.getLogger("test-taxonomy")
    caplog.set_level(logging.INFO, logger="test-taxonomy")
    started = time.monotonic()
    for _ in range(3):
        with limiter.admitted(_prepared(url), stream="event_categories", logger=logger):
            pass
    assert time.monotonic() - started >= 0.9  # the third waited for the window
    assert "taxonomy cost budget" in caplog.text

    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with limiter.admitted(_prepared(url), stream="a", logger=logger):
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=hold)
    time.sleep(1.1)  # a fresh budget window
    worker.start()
    assert inside.wait(5)
    acquired = limiter.taxonomy_slots.acquire(blocking=False)
    assert not acquired  # the one taxonomy slot is held
    release.set()
    worker.join(5)
    assert limiter.taxonomy_slots.acquire(blocking=False)
    limiter.taxonomy_slots.release()
