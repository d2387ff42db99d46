"""chart_results end to end (simulator): shapes kept whole, refusals, /csv, one record a run."""

from __future__ import annotations

import json

from amplitude_simulator import AmplitudeSimulator, Fault
from amplitude_simulator.api.charts import chart_csv, chart_payload
from tap_amplitude.ratelimit import COST_BUDGET, request_charge
from tap_amplitude.streams.charts import covered_days
from tests.helpers import run_tap, simulator_config, warning_lines

CHARTS = ["abc123", "fun456", "ret789", "tbl001"]
STREAM = ["chart_results"]


def _roundtrip(value: object) -> object:
    return json.loads(json.dumps(value))


def test_each_chart_once_per_run_kept_whole_and_refusals_named(
    simulator: AmplitudeSimulator,
) -> None:
    config = simulator_config(simulator, chart_ids=[*CHARTS, "nope42", "zzz999"])
    run = run_tap(config, streams=STREAM)
    assert run.returncode == 0, run.stderr
    records = run.records("chart_results")
    assert [r["chart_id"] for r in records] == CHARTS
    for record in records:
        payload = chart_payload(simulator, record["chart_id"])
        assert record["result"] == {"data": _roundtrip(payload)}
        assert record["endpoint"] == "query"
    assert len({r["run_at"] for r in records}) == 1
    assert records[0]["run_at"].endswith("Z")
    days = {r["chart_id"]: (r["range_start"], r["range_end"]) for r in records}
    assert days["abc123"] == ("2024-03-01", "2024-03-03")  # segmentation: xValues
    assert days["fun456"] == days["abc123"]  # funnel: dayFunnels.xValues
    assert days["ret789"] == days["abc123"]  # retention: series[].dates
    assert days["tbl001"] == (None, None)  # a data table has no days
    warnings = warning_lines(run.stderr)
    assert len(warnings) == 2, warnings
    assert "'nope42' was not found (HTTP 404" in warnings[0]
    assert "'zzz999' is not allowed (HTTP 403" in warnings[1]
    probes = [r for r in simulator.requests if r.path == "/api/2/events/list"]
    assert len(probes) == 1  # a 403 could be bad keys: checked once

    second = run_tap(config, streams=STREAM, state=run.final_state())
    assert second.returncode == 0, second.stderr
    again = second.records("chart_results")
    assert [r["chart_id"] for r in again] == CHARTS  # a new snapshot every run
    assert again[0]["run_at"] > records[0]["run_at"]
    bookmark = second.final_state()["bookmarks"]["chart_results"]
    assert bookmark["replication_key_value"] == again[0]["run_at"]


def test_csv_is_read_where_query_is_refused(simulator: AmplitudeSimulator) -> None:
    simulator.charts.query_status = 410
    run = run_tap(simulator_config(simulator, chart_ids=["abc123", "nope42"]), streams=STREAM)
    assert run.returncode == 0, run.stderr
    (record,) = run.records("chart_results")
    assert record["endpoint"] == "csv"
    assert record["result"] == {"data": chart_csv(simulator, "abc123")}
    assert (record["range_start"], record["range_end"]) == ("2024-03-01", "2024-03-03")
    warnings = warning_lines(run.stderr)
    assert len(warnings) == 1
    assert "nope42" in warnings[0]

    simulator.charts.csv_bare = True  # bare text/csv, as one client saw it
    bare = run_tap(simulator_config(simulator, chart_ids=["abc123"]), streams=STREAM)
    assert bare.returncode == 0, bare.stderr
    assert bare.records("chart_results")[0]["result"] == {"data": chart_csv(simulator, "abc123")}


def test_no_chart_ids_reads_nothing(simulator: AmplitudeSimulator) -> None:
    run = run_tap(simulator_config(simulator), streams=STREAM)
    assert run.returncode == 0, run.stderr
    assert run.records("chart_results") == []
    assert "no chart_ids set" in run.stderr
    assert simulator.requests == []


def test_chart_queries_draw_dashboard_cost_and_days_come_from_any_shape() -> None:
    charge = request_charge("/api/3/chart/abc123/query", {})
    assert charge is not None
    assert (charge.budget, charge.amount) == (COST_BUDGET, 1)
    assert covered_days({"data": {"labels": [], "values": []}}) == (None, None)
    assert covered_days({"data": [{"dayFunnels": {"xValues": ["2024-01-02", "2024-01-01"]}}]}) == (
        "2024-01-01",
        "2024-01-02",
    )


def test_a_page_that_is_not_json_is_never_stored_as_a_result(
    simulator: AmplitudeSimulator,
) -> None:
    # (An HTML page is retried first, like any 200 with an HTML page: test_cli.)
    page = Fault.status(200, "<error>maintenance</error>", {"Content-Type": "application/xml"})
    simulator.add_fault("/api/3/chart/abc123/query", page, times=100)
    run = run_tap(simulator_config(simulator, chart_ids=["abc123"]), streams=STREAM)
    assert run.returncode == 1
    assert run.records("chart_results") == []
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, run.stderr
    assert "chart 'abc123': /query answered HTTP 200 with a body that is neither JSON" in errors[0]
    assert "Traceback" not in run.stderr
