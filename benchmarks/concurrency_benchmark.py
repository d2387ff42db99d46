"""Concurrent Export API downloads over a slow network: ``export_concurrency`` 1 against 4.

    uv run python benchmarks/concurrency_benchmark.py                 # 7 days, preset "amplitude"
    uv run python benchmarks/concurrency_benchmark.py --days 2 --network slow

The simulator (its own process, so building archives never competes with this script) serves a
week of data with its latency model on: a time to first byte that grows with the window's data,
and a bandwidth cap per connection (see the simulator's README). The tap exports it in 24-hour
windows, once per concurrency, writing RECORD messages to a file.
The script prints wall time, events/s, speed-up over concurrency 1 and peak RSS, and checks that
every run wrote the same records in the same order and ended on the same STATE.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from export_benchmark import export_only_catalog, peak_rss_mb  # shared with the export benchmark

START = datetime(2024, 3, 1, tzinfo=timezone.utc)


def run(config: dict[str, Any], catalog: Path, workdir: Path) -> dict[str, Any]:
    """One tap run; its time, peak memory, records digest and final STATE."""
    config_path = workdir / f"config-{config['export_concurrency']}.json"
    config_path.write_text(json.dumps(config))
    output = workdir / f"out-{config['export_concurrency']}.jsonl"
    command = [sys.executable, "-m", "tap_amplitude", "--config", str(config_path)]
    command += ["--catalog", str(catalog)]
    peak = 0.0
    started = time.perf_counter()
    with output.open("wb") as sink, (workdir / "tap.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=sink, stderr=log)
        while process.poll() is None:
            peak = max(peak, peak_rss_mb(process.pid) or 0.0)
            time.sleep(0.05)
    seconds = time.perf_counter() - started
    if process.returncode:
        sys.exit(f"tap failed ({process.returncode}); see {workdir / 'tap.log'}")
    digest = hashlib.sha256()
    events = 0
    final_state: dict[str, Any] = {}
    with output.open("rb") as lines:
        for line in lines:
            message = json.loads(line)
            if message["type"] == "RECORD":
                digest.update(json.dumps(message["record"], sort_keys=True).encode())
                events += 1
            elif message["type"] == "STATE":
                final_state = message["value"]
    return {
        "seconds": seconds,
        "events": events,
        "peak_rss_mb": peak,
        "digest": digest.hexdigest(),
        "state": final_state,
    }


def main() -> None:
    """Run each concurrency once, print the table, check the outputs agree."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--events-per-hour", type=int, default=600)
    parser.add_argument("--network", default="amplitude", help="simulator preset")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()

    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "amplitude_simulator",
            "--port=0",
            f"--start={START:%Y-%m-%d}",
            f"--days={args.days}",
            f"--events-per-hour={args.events_per_hour}",
            f"--network={args.network}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if simulator.stdout is None:
            raise RuntimeError("no simulator output")
        words = simulator.stdout.readline().split()  # "Amplitude simulator at URL api_key=…"
        banner = dict(word.split("=", 1) for word in words if "=" in word)
        url = next(word for word in words if word.startswith("http://"))
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            catalog = export_only_catalog(workdir)
            base = {
                "api_key": banner["api_key"],
                "secret_key": banner["secret_key"],
                "api_url": url,
                "start_date": START.isoformat(),
                "end_date": (START + timedelta(days=args.days)).isoformat(),
                "export_window_hours": 24,
            }
            results = {
                n: run({**base, "export_concurrency": n}, catalog, workdir)
                for n in args.concurrency
            }
    finally:
        simulator.terminate()
        simulator.wait()

    first = results[args.concurrency[0]]
    print(
        f"{args.days} days, {first['events']:,} events, 24-hour windows, network preset {args.network!r}"
    )
    print(
        f"{'concurrency':>11} | {'wall s':>7} | {'events/s':>9} | {'speed-up':>8} | {'peak RSS':>8}"
    )
    for n, result in results.items():
        print(
            f"{n:>11} | {result['seconds']:7.1f} | {result['events'] / result['seconds']:9,.0f} | "
            f"{first['seconds'] / result['seconds']:7.2f}x | {result['peak_rss_mb']:6.0f} MB"
        )
    same = all(
        r["digest"] == first["digest"] and r["state"] == first["state"] for r in results.values()
    )
    print("records and final STATE identical across runs:", "yes" if same else "NO")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
