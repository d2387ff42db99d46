"""annotations (v3, falling back to v2) and annotation_categories, end to end (simulator)."""

from __future__ import annotations

from datetime import datetime

from amplitude_simulator import AmplitudeSimulator
from amplitude_simulator.api.chart_annotations import (
    SEED_CATEGORIES,
    annotation_list,
    v3_annotation_list,
)
from tap_amplitude.timestamps import normalize
from tests.helpers import run_tap, simulator_config, warning_lines

STREAMS = ["annotations", "annotation_categories"]


def _paths(sim: AmplitudeSimulator) -> list[str]:
    return [r.path for r in sim.requests]


def test_v3_annotations_with_categories_chart_ids_and_ranges(
    simulator: AmplitudeSimulator,
) -> None:
    run = run_tap(simulator_config(simulator), streams=STREAMS)
    assert run.returncode == 0, run.stderr
    assert warning_lines(run.stderr) == []
    assert "read 4 annotations from v3" in run.stderr
    assert "/api/2/annotations" not in _paths(simulator)

    records = run.records("annotations")
    stored = v3_annotation_list(simulator.dataset)
    v2 = annotation_list(simulator.dataset)
    # The key and the v2 fields stay as they were; v3 adds start, end, category, chart_id.
    assert [{k: r[k] for k in ("id", "date", "label", "details")} for r in records] == v2
    for record, item in zip(records, stored, strict=True):
        assert record["api_version"] == "v3"
        assert record["start"] == normalize(item["start"])
        assert record["end"] == (normalize(item["end"]) if item["end"] else None)
        assert record["chart_id"] == item["chart_id"]
        category = item["category_id"]
        expected = {"id": category, "name": SEED_CATEGORIES[category]} if category else None
        assert record["category"] == expected
    ranged = next(r for r in records if r["end"])
    assert ranged["end"].endswith("Z")  # served as +01:00, written as UTC
    start = datetime.fromisoformat(ranged["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(ranged["end"].replace("Z", "+00:00"))
    assert (end - start).days == 9
    assert any(r["chart_id"] for r in records)
    assert any(r["category"] is None for r in records)

    categories = run.records("annotation_categories")
    assert {c["id"]: c["name"] for c in categories} == SEED_CATEGORIES


def test_where_v3_is_refused_v2_is_read_and_said(simulator: AmplitudeSimulator) -> None:
    simulator.annotations.v3_status = 404
    run = run_tap(simulator_config(simulator), streams=[*STREAMS, "event_categories"])
    assert run.returncode == 0, run.stderr
    records = run.records("annotations")
    assert [{k: r[k] for k in ("id", "date", "label", "details")} for r in records] == (
        annotation_list(simulator.dataset)
    )
    assert {r["api_version"] for r in records} == {"v2"}
    assert all(r["start"] is None and r["category"] is None for r in records)
    said = [line for line in run.stderr.splitlines() if "refused the v3 API" in line]
    assert len(said) == 1
    assert "| INFO" in said[0]
    assert "read 4 annotations from v2" in run.stderr
    warnings = warning_lines(run.stderr)
    assert len(warnings) == 1, warnings  # annotation_categories, which v2 lacks
    assert "annotation_categories: skipped" in warnings[0]
    assert run.records("annotation_categories") == []
    assert run.records("event_categories")


def test_v2_retired_is_no_matter_while_v3_answers(simulator: AmplitudeSimulator) -> None:
    simulator.annotations.v2_status = 410
    simulator.annotations.category_key_is_category = True  # the other key name (§12.2)
    run = run_tap(simulator_config(simulator), streams=STREAMS)
    assert run.returncode == 0, run.stderr
    assert {r["api_version"] for r in run.records("annotations")} == {"v3"}
    names = {c["name"] for c in run.records("annotation_categories")}
    assert names == set(SEED_CATEGORIES.values())
    assert {r["category"]["name"] for r in run.records("annotations") if r["category"]} <= names
