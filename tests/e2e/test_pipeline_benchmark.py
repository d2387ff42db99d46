"""benchmarks/pipeline_benchmark.py at its smoke size: every pipeline runs and every load matches.

Not a timed test: it checks that the benchmark still runs end to end (simulator, PostgreSQL,
Meltano, both floors, the no-op runs) and that its verification passes, not how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.e2e.support import ROOT, clean_environ

if TYPE_CHECKING:
    from pathlib import Path

    from tests.e2e.support import Meltano

pytestmark = pytest.mark.e2e


def test_pipeline_benchmark_smoke(meltano_session: Meltano, tmp_path: Path) -> None:
    report_path, chart = tmp_path / "report.json", tmp_path / "chart.svg"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "pipeline_benchmark.py"),
            "--smoke",
            "--json",
            str(report_path),
            "--chart",
            str(chart),
        ],
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    report = json.loads(report_path.read_text())
    assert report["verified"], report["problems"]
    names = [r["configuration"] for r in report["results"]]
    for expected in (
        "tap alone, RECORD → /dev/null",
        "floor: tap | orjson→CSV | COPY",
        "floor: tap BATCH + DuckDB read_json",
        "meltano: tap-amplitude target-postgres (RECORD)",
        "meltano: tap-amplitude-batch target-postgres (BATCH)",
        "meltano: tap-amplitude-batch target-duckdb-batch (BATCH)",
    ):
        assert expected in names
    loads = [r["load"] for r in report["results"] if r["load"]]
    assert len(loads) == 7
    assert len({(load["rows"], load["uuids"], load["digest"]) for load in loads}) == 1
    assert loads[0]["rows"] > 1000
    assert "| configuration | wall s | events/s | × floor | peak RSS |" in result.stdout
    assert chart.read_text().startswith("<svg")
