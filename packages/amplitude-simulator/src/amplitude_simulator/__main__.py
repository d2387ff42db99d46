"""``amplitude-simulator``: serve a demo Amplitude project locally until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

from amplitude_simulator import bucket
from amplitude_simulator.data.dataset import Dataset
from amplitude_simulator.server import AmplitudeSimulator
from amplitude_simulator.settings import MB, NETWORK_PRESETS, NetworkSettings

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

DEFAULT_PORT = 8765
MAX_PORT = 65535
# Data of any year Amplitude could hold; the bounds keep every date computation in range.
FIRST_START, LAST_START = date(2000, 1, 1), date(2999, 1, 1)
MAX_DAYS = 3660


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
    network = parser.add_argument_group(
        "network model (Export API only)",
        "Time to first byte = base + per-MB × the archive's size (Amplitude builds the zip on "
        "request), then the body streams at most at the bandwidth, per connection. Presets "
        "(base s, s per MB, Mbit/s): "
        + "; ".join(
            f"{name} {base:g}, {per_mb:g}, {mbit:g}"
            for name, (base, per_mb, mbit) in NETWORK_PRESETS.items()
        )
        + " (0: uncapped). The flags below override the preset's values.",
    )
    network.add_argument(
        "--network",
        choices=list(NETWORK_PRESETS),
        default="off",
        help="latency preset (default: %(default)s, full speed)",
    )
    network.add_argument(
        "--ttfb-base-ms", type=float, metavar="MS", help="time to first byte of any archive, ms"
    )
    network.add_argument(
        "--ttfb-ms-per-mb",
        type=float,
        metavar="MS",
        help="more time to first byte per MB (10**6 bytes) of archive, ms",
    )
    network.add_argument(
        "--bandwidth-mbps",
        type=float,
        metavar="MBIT_S",
        help="cap per connection in Mbit/s (8 Mbit/s = 1 MB/s; 0: uncapped)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= MAX_PORT:
        parser.error(f"--port must be from 0 to {MAX_PORT}")
    if args.start is not None and not FIRST_START <= args.start <= LAST_START:
        parser.error(f"--start must be from {FIRST_START} to {LAST_START}")
    if not 1 <= args.days <= MAX_DAYS:
        parser.error(f"--days must be from 1 to {MAX_DAYS}")
    if args.events_per_hour < 0:
        parser.error("--events-per-hour must not be negative")
    for flag in ("ttfb_base_ms", "ttfb_ms_per_mb", "bandwidth_mbps"):
        if (getattr(args, flag) or 0) < 0:
            parser.error(f"--{flag.replace('_', '-')} must not be negative")
    return args


def network_settings(args: argparse.Namespace) -> NetworkSettings:
    """The ``--network`` preset with any of the individual flags applied over it."""
    settings = NetworkSettings.preset(args.network)
    if args.ttfb_base_ms is not None:
        settings.ttfb_base_seconds = args.ttfb_base_ms / 1000
    if args.ttfb_ms_per_mb is not None:
        settings.ttfb_seconds_per_mb = args.ttfb_ms_per_mb / 1000
    if args.bandwidth_mbps is not None:
        settings.bandwidth_bytes_per_second = args.bandwidth_mbps * MB / 8 or None
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    """Start the simulator, print where it is and which keys it takes, serve until a signal.

    ``amplitude-simulator write-bucket …`` writes the S3 / GCS export layout instead (bucket.py).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["write-bucket"]:
        return bucket.main(arguments[1:])
    args = parse_args(arguments)
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

    simulator = AmplitudeSimulator(dataset, host=args.host, port=args.port)
    simulator.export.network = network_settings(args)
    try:
        simulator.start()
    except OSError as exc:  # the port is taken, or the host is not an address of this machine
        sys.stderr.write(
            f"amplitude-simulator: cannot listen on {args.host}:{args.port} "
            f"({exc.strerror or exc}); pass another --host or --port (--port 0 picks a free "
            "one)\n"
        )
        return 1
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    with simulator:
        project = simulator.project
        sys.stdout.write(
            f"Amplitude simulator at {simulator.url} api_key={project.api_key} "
            f"secret_key={project.secret_key} (simulator-only keys: they work here, never "
            f"against Amplitude; {args.days} days of data from {dataset.start:%Y-%m-%d}; "
            f"{simulator.export.network.describe()})\n"
        )
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
