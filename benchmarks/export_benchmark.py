"""Benchmark export_events against the raw floor, in RECORD and BATCH mode, with peak memory.

    uv run python benchmarks/export_benchmark.py                # 50k and 200k events
    uv run python benchmarks/export_benchmark.py --sizes 20000 --repeat 1

For each size it builds an export of about N realistic events (55 keys, ~1.6 KB, nested
property bags) in the bundled simulator, serves it on 127.0.0.1, and measures:

* floor  - one process that unzips, gunzips, ``orjson.loads`` each line, ``orjson.dumps`` a
           RECORD envelope and writes it to /dev/null (no HTTP, no Singer SDK);
* record - ``tap-amplitude`` with only export_events selected, stdout to /dev/null;
* batch  - the same with ``batch_config`` (jsonl + gzip files in a temporary directory);
* startup - the tap on an empty hour (imports, catalog, one request): fixed cost per run.

Ratios are reported twice: the whole run's time over the floor's, and the same with the
measured start-up subtracted (the floor has no start-up: it runs inside this process).

It measures in ``--repeat`` rounds of one run of each (floor, startup, record, batch), so that
the machine's drifting speed moves every mode alike, and reports medians. Peak RSS is the tap process's own high-water mark
(VmHWM, sampled from /proc while it runs). It prints a table and writes a JSON file and an SVG
chart of events/s per mode.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import requests

from amplitude_simulator import AmplitudeSimulator, Dataset

ROOT = Path(__file__).resolve().parents[1]
DAY = datetime(2024, 3, 1, tzinfo=timezone.utc)
HOURS = 24


@dataclass
class Result:
    """One measured mode at one size."""

    size: int
    mode: str
    events: int
    seconds: float
    events_per_second: float
    ratio_to_floor: float
    ratio_without_startup: float
    peak_rss_mb: float | None


def build_dataset(target_events: int) -> Dataset:
    """One day of data with about ``target_events`` events (every hour has data)."""
    return Dataset(
        start=DAY,
        end=DAY + timedelta(hours=HOURS),
        events_per_hour=max(1, round(target_events / HOURS)),
        empty_hour_every=0,
        users=500,
    )


def download(sim: AmplitudeSimulator, into: Path) -> None:
    """Fetch the whole day once: warms the simulator's cache and gives the floor its input."""
    params = {"start": f"{DAY:%Y%m%dT%H}", "end": f"{DAY + timedelta(hours=HOURS - 1):%Y%m%dT%H}"}
    auth = (sim.project.api_key, sim.project.secret_key)
    with requests.get(
        f"{sim.url}/api/2/export", params=params, auth=auth, stream=True, timeout=600
    ) as response:
        response.raise_for_status()
        with into.open("wb") as out:
            for chunk in response.iter_content(1 << 20):
                out.write(chunk)


def floor(archive_path: Path) -> tuple[int, float]:
    """The raw floor: unzip, gunzip, parse, re-encode as RECORD, write to /dev/null."""
    events = 0
    started = time.perf_counter()
    with Path(os.devnull).open("wb") as sink, zipfile.ZipFile(archive_path) as archive:
        for name in archive.namelist():
            if not name.endswith(".gz"):
                continue
            with archive.open(name) as member, gzip.GzipFile(fileobj=member) as lines:
                for line in lines:
                    record = orjson.loads(line)
                    sink.write(
                        orjson.dumps(
                            {"type": "RECORD", "stream": "export_events", "record": record},
                            option=orjson.OPT_APPEND_NEWLINE,
                        ),
                    )
                    events += 1
    return events, time.perf_counter() - started


def peak_rss_mb(pid: int) -> float | None:
    """The process's memory high-water mark so far, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def run_tap(config: dict[str, Any], catalog: Path, workdir: Path) -> tuple[float, float | None]:
    """Run the tap once; wall seconds and peak RSS (MB)."""
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config))
    command = [
        sys.executable,
        "-m",
        "tap_amplitude",
        "--config",
        str(config_path),
        "--catalog",
        str(catalog),
    ]
    peak: float | None = None
    started = time.perf_counter()
    with Path(os.devnull).open("wb") as sink, (workdir / "tap.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=sink, stderr=log)
        while process.poll() is None:
            peak = max(peak or 0.0, peak_rss_mb(process.pid) or 0.0)
            time.sleep(0.02)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        tail = (workdir / "tap.log").read_text()[-2000:]
        raise SystemExit(f"tap failed ({process.returncode}):\n{tail}")
    return seconds, peak


def select_only_export(discovered: str) -> str:
    """The ``--discover`` output with only export_events selected."""
    catalog = json.loads(discovered)
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"] == []:
                metadata["metadata"]["selected"] = entry["tap_stream_id"] == "export_events"
    return json.dumps(catalog)


def export_only_catalog(workdir: Path) -> Path:
    """A catalog with only export_events selected."""
    discovered = subprocess.run(
        [sys.executable, "-m", "tap_amplitude", "--discover"],
        capture_output=True,
        check=True,
        text=True,
    )
    path = workdir / "catalog.json"
    path.write_text(select_only_export(discovered.stdout))
    return path


def measure(size: int, repeat: int) -> list[Result]:
    """Every mode at one size."""
    dataset = build_dataset(size)
    with tempfile.TemporaryDirectory() as tmp, AmplitudeSimulator(dataset) as sim:
        workdir = Path(tmp)
        archive = workdir / "export.zip"
        download(sim, archive)
        catalog = export_only_catalog(workdir)
        config = {
            "api_key": sim.project.api_key,
            "secret_key": sim.project.secret_key,
            "api_url": sim.url,
            "start_date": DAY.isoformat(),
            "end_date": (DAY + timedelta(hours=HOURS)).isoformat(),
            "export_window_hours": 6,
        }
        empty_hour = {
            **config,
            "start_date": "2023-01-01T00:00:00Z",
            "end_date": "2023-01-01T01:00:00Z",
        }
        batch_dir = workdir / "batches"
        batch_config = {
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": f"file://{batch_dir}"},
            "batch_size": 50_000,
        }
        modes = {"record": config, "batch": {**config, "batch_config": batch_config}}
        # Rounds of one run of each, so that the machine's speed drifting (it does, on shared
        # hardware) moves every mode alike rather than whichever happened to run then.
        floors: list[float] = []
        startups: list[float] = []
        runs: dict[str, list[tuple[float, float | None]]] = {mode: [] for mode in modes}
        events = 0
        for _ in range(repeat):
            events, seconds = floor(archive)
            floors.append(seconds)
            startups.append(run_tap(empty_hour, catalog, workdir)[0])
            for mode, mode_config in modes.items():
                batch_dir.mkdir(exist_ok=True)
                runs[mode].append(run_tap(mode_config, catalog, workdir))
                for leftover in batch_dir.glob("*"):
                    leftover.unlink()
        floor_seconds = statistics.median(floors)
        startup = statistics.median(startups)
        results = [
            Result(size, "floor", events, floor_seconds, events / floor_seconds, 1.0, 1.0, None),
            Result(size, "startup", 0, startup, 0.0, startup / floor_seconds, 0.0, None),
        ]
        for mode, measured in runs.items():
            seconds = statistics.median(seconds for seconds, _ in measured)
            peak = max((rss for _, rss in measured if rss is not None), default=None)
            ratio, net = seconds / floor_seconds, (seconds - startup) / floor_seconds
            results.append(Result(size, mode, events, seconds, events / seconds, ratio, net, peak))
    return results


def svg_chart(results: list[Result]) -> str:
    """Grouped bars of events/s per mode, per size."""
    modes = ["floor", "record", "batch"]
    colors = {"floor": "#9aa5b1", "record": "#2b6cb0", "batch": "#2f855a"}
    sizes = sorted({r.size for r in results})
    best = max(r.events_per_second for r in results if r.mode in modes)
    width, height, left, bottom, top = 640, 360, 70, 50, 40
    plot_h = height - bottom - top
    group_w = (width - left - 20) / len(sizes)
    bar_w = group_w / (len(modes) + 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14">export_events throughput (events/s, higher is better)</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#333"/>',
    ]
    for tick in range(5):
        value = best * tick / 4
        y = top + plot_h - plot_h * tick / 4
        parts.append(
            f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{value / 1000:.0f}k</text>'
        )
        parts.append(f'<line x1="{left}" y1="{y}" x2="{width - 10}" y2="{y}" stroke="#eee"/>')
    for index, size in enumerate(sizes):
        x0 = left + index * group_w + bar_w / 2
        for position, mode in enumerate(modes):
            match = next((r for r in results if r.size == size and r.mode == mode), None)
            if match is None:
                continue
            bar_h = plot_h * match.events_per_second / best
            x = x0 + position * bar_w
            y = top + plot_h - bar_h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.9:.1f}" height="{bar_h:.1f}" fill="{colors[mode]}"/>'
            )
            parts.append(
                f'<text x="{x + bar_w * 0.45:.1f}" y="{y - 4:.1f}" text-anchor="middle">{match.events_per_second / 1000:.1f}k</text>'
            )
        parts.append(
            f'<text x="{x0 + bar_w * 1.5:.1f}" y="{top + plot_h + 18}" text-anchor="middle">{size:,} events</text>'
        )
    for position, mode in enumerate(modes):
        x = left + position * 110
        parts.append(
            f'<rect x="{x}" y="{height - 18}" width="12" height="12" fill="{colors[mode]}"/>'
        )
        parts.append(f'<text x="{x + 16}" y="{height - 8}">{mode}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> None:
    """Measure, print the table, write JSON and the chart."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "benchmark.json")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "benchmark.svg")
    args = parser.parse_args()

    results: list[Result] = []
    for size in args.sizes:
        results += measure(size, args.repeat)

    header = ("events", "mode", "seconds", "events/s", "x floor", "x floor*", "peak RSS")
    print("{:>9} {:>8} {:>8} {:>10} {:>8} {:>8} {:>9}".format(*header))
    for r in results:
        rss = f"{r.peak_rss_mb:.0f} MB" if r.peak_rss_mb is not None else "-"
        rate = f"{r.events_per_second:,.0f}" if r.events else "-"
        net = f"{r.ratio_without_startup:.2f}" if r.events else "-"
        print(
            f"{r.events:>9,} {r.mode:>8} {r.seconds:>8.2f} {rate:>10} "
            f"{r.ratio_to_floor:>8.2f} {net:>8} {rss:>9}"
        )
    print("x floor: the run's time over the floor's; x floor*: the same without the start-up")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    args.chart.write_text(svg_chart(results))
    print(f"wrote {args.json} and {args.chart}")


if __name__ == "__main__":
    main()
