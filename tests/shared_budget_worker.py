"""One tap process of tests/test_shared_budget.py: a real sync, with windows of seconds.

    python -m tests.shared_budget_worker CONFIG CATALOG SHORT_WINDOW_SECONDS LONG_WINDOW_SECONDS

Everything but the window lengths comes from the config's ``rate_limits`` setting (budgets,
``concurrent_requests``, ``backend``), exactly as a tap process reads it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

from tap_amplitude.client import AmplitudeStream, api_base_url
from tap_amplitude.ratelimit import ProjectLimiter, RateLimits
from tap_amplitude.tap import TapAmplitude


def main() -> None:
    logging.basicConfig(level=logging.INFO)  # the budget's wait lines are INFO
    config = json.loads(Path(sys.argv[1]).read_text())
    catalog = json.loads(Path(sys.argv[2]).read_text())
    limits = dataclasses.replace(
        RateLimits.from_config(config),
        short_window_seconds=float(sys.argv[3]),
        long_window_seconds=float(sys.argv[4]),
    )
    limiter = ProjectLimiter(limits, api_base_url(config), project="shared-budget-test")
    tap = TapAmplitude(config=config, catalog=catalog, parse_env_config=False)
    for stream in tap.streams.values():
        assert isinstance(stream, AmplitudeStream)
        stream.rate_limiter = limiter
    tap.sync_all()


if __name__ == "__main__":
    main()
