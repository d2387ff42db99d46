"""The cloud-storage export writer: Amplitude's bucket layout, jobs, markers, backfills."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from amplitude_simulator import Dataset
from amplitude_simulator.__main__ import main
from amplitude_simulator.bucket import BucketExport, FolderSink, Schedule
from amplitude_simulator.data.dataset import hour_lines, hour_members

START = datetime(2024, 3, 1, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
DATASET = Dataset(start=START, end=START + timedelta(hours=30), events_per_hour=10, users=8)


def test_layout_names_and_bytes_match_amplitude_and_the_export_api(tmp_path: Path) -> None:
    export = BucketExport(DATASET, FolderSink(tmp_path), prefix="pre/fix", org_id=42)
    export.run_all()
    app = tmp_path / "pre" / "fix" / str(DATASET.app_id)
    hour = START + 10 * HOUR
    parts = sorted(app.glob(f"{DATASET.app_id}_2024-03-01_10#*.json.gz"))
    assert [p.read_bytes() for p in parts] == list(hour_members(DATASET, hour))
    assert (app / f"{DATASET.app_id}_2024-03-01_1_complete").read_bytes() == b""  # not "01"
    assert (app / f"{DATASET.app_id}_2024-03-01_6_complete").exists()  # an empty hour too
    assert not list(app.glob(f"{DATASET.app_id}_2024-03-01_6#*"))
    lines = [
        json.loads(line)
        for path in sorted((tmp_path / "pre" / "fix" / "-42").glob("-42_*.json.gz"))
        for line in gzip.decompress(path.read_bytes()).splitlines()
    ]
    assert sorted(line["amplitude_id"] for line in lines) == sorted(
        merge.amplitude_id for merge in export.merges()
    )
    assert {line["scope"] for line in lines} == {-42}
    assert len(export.exported) == 30


def test_jobs_run_on_the_clock_late_and_several_hours_at_once(tmp_path: Path) -> None:
    schedule = Schedule(delay_hours=1, hours_per_job=3, late_every=4, late_by_hours=5)
    export = BucketExport(DATASET, FolderSink(tmp_path), schedule=schedule)
    assert export.run_until(START + HOUR) == []
    jobs = export.run_until(START + 9 * HOUR)
    assert all(len(job) >= 1 for job in jobs)
    assert START + 3 * HOUR not in export.exported  # every 4th hour is late
    assert START + 4 * HOUR in export.exported
    export.run_all()
    assert export.exported == set(DATASET.hours())
    assert any(job != sorted(job) for job in export.jobs)  # newest first within a job


def test_backfill_rewrites_objects_with_new_bytes_and_the_same_rows(tmp_path: Path) -> None:
    export = BucketExport(DATASET, FolderSink(tmp_path))
    export.run_all()
    hour = START + 2 * HOUR
    app = tmp_path / str(DATASET.app_id)
    before = {p.name: p.read_bytes() for p in app.glob("*_2024-03-01_2#*")}
    written = export.backfill([hour], at=START + 40 * HOUR)
    after = {p.name: p.read_bytes() for p in app.glob("*_2024-03-01_2#*")}
    assert len(written) == len(after) == len(before) + 1
    assert all(after[name] != data for name, data in before.items())
    rows = sorted(line for data in after.values() for line in gzip.decompress(data).splitlines())
    assert rows == sorted(hour_lines(DATASET, hour).lines)


def test_write_bucket_command(tmp_path: Path, capsys: object) -> None:
    target = tmp_path / "bucket"
    code = main(
        [
            "write-bucket",
            str(target),
            "--days",
            "1",
            "--events-per-hour",
            "5",
            "--backfill-hours",
            "1",
        ]
    )
    assert code == 0
    assert len(list((target / "187520").glob("*_complete"))) == 24
    assert list((target / "-189524").glob("*.json.gz"))
