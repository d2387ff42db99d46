"""``amplitude-simulator``: serve a demo Amplitude project locally until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

from tap_amplitude.simulator.dataset import Dataset
from tap_amplitude.simulator.server import AmplitudeSimulator

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

DEFAULT_PORT = 8765


def _default_start() -> date:
    return (datetime.now(timezone.utc) - timedelta(days=7)).date()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options; every one has a default so a bare run gives a working demo."""
    parser = argparse.ArgumentParser(
        prog="amplitude-simulator",
        description="Serve a local, deterministic imitation of Amplitude's Export and "
        "Dashboard REST APIs (for tests and demos; no data leaves this machine).",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="default: %(default)s; 0 picks a free port"
    )
    parser.add_argument(
        "--start",
        type=date.fromisoformat,
        default=None,
        help="first day with data, YYYY-MM-DD (default: 7 days ago, 00:00 UTC)",
    )
    parser.add_argument("--days", type=int, default=3, help="days of data (default: %(default)s)")
    parser.add_argument(
        "--events-per-hour",
        type=int,
        default=40,
        help="mean events per hour (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1, help="dataset seed (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    if args.events_per_hour < 0:
        parser.error("--events-per-hour must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Start the simulator, print where it is and which keys it takes, serve until a signal."""
    args = parse_args(argv)
    first_day = args.start or _default_start()
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=timezone.utc)
    dataset = Dataset(
        start=start,
        end=start + timedelta(days=args.days),
        events_per_hour=args.events_per_hour,
        seed=args.seed,
    )
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    with AmplitudeSimulator(dataset, host=args.host, port=args.port) as simulator:
        project = simulator.project
        sys.stdout.write(
            f"Amplitude simulator at {simulator.url} api_key={project.api_key} "
            f"secret_key={project.secret_key} (simulator-only keys: they work here, never "
            f"against Amplitude; {args.days} days of data from {dataset.start:%Y-%m-%d})\n"
        )
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
