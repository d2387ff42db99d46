"""The Export API's network model: time to first byte that grows with the data, bandwidth per
connection, off by default. Timed with a real HTTP client; margins allow a loaded 2-core box.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
import requests

from amplitude_simulator import AmplitudeSimulator, Dataset, Fault, Project
from amplitude_simulator.__main__ import network_settings, parse_args
from amplitude_simulator.settings import MB, NETWORK_PRESETS, NetworkSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

UTC = timezone.utc
HOUR = timedelta(hours=1)
START = datetime(2024, 3, 1, tzinfo=UTC)
# ~1.2 MB of archive over six hours, ~0.2 MB in one.
DATASET = Dataset(start=START, end=START + 6 * HOUR, events_per_hour=700, users=40)
AUTH = (Project().api_key, Project().secret_key)
EXPORT = "/api/2/export"


@pytest.fixture
def sim() -> Iterator[AmplitudeSimulator]:
    with AmplitudeSimulator(DATASET) as simulator:
        _get(simulator, START, START + 5 * HOUR)  # generate (and cache) the data at full speed
        yield simulator


def _get(
    sim: AmplitudeSimulator, first: datetime, last: datetime, **kwargs: Any
) -> requests.Response:
    params = {"start": f"{first:%Y%m%dT%H}", "end": f"{last:%Y%m%dT%H}"}
    return requests.get(f"{sim.url}{EXPORT}", params=params, auth=AUTH, timeout=30, **kwargs)


def _timed(sim: AmplitudeSimulator, first: datetime, last: datetime) -> tuple[float, float, bytes]:
    """Seconds to the response headers, seconds to the last byte, and the body."""
    began = time.monotonic()
    with _get(sim, first, last, stream=True) as response:
        assert response.status_code == 200
        headers_at = time.monotonic() - began
        body = response.content
    return headers_at, time.monotonic() - began, body


def test_the_model_is_off_by_default_and_adds_no_delay(sim: AmplitudeSimulator) -> None:
    assert sim.export.network == NetworkSettings()
    assert not sim.export.network.enabled
    assert NetworkSettings.preset("off") == NetworkSettings()
    _, total, body = _timed(sim, START, START + 5 * HOUR)
    assert len(body) > MB
    assert total < 1.0, total  # 1.2 MB over loopback, already generated


def test_time_to_first_byte_grows_with_the_windows_data(sim: AmplitudeSimulator) -> None:
    sim.export.network = NetworkSettings(ttfb_base_seconds=0.2, ttfb_seconds_per_mb=1.0)
    small_ttfb, _, small = _timed(sim, START, START)
    big_ttfb, _, big = _timed(sim, START, START + 5 * HOUR)
    assert len(big) > 4 * len(small)
    expected_small = 0.2 + len(small) / MB
    expected_big = 0.2 + len(big) / MB
    assert expected_small - 0.02 <= small_ttfb < expected_small + 1.5
    assert expected_big - 0.02 <= big_ttfb < expected_big + 1.5
    assert big_ttfb - small_ttfb > 0.5 * (expected_big - expected_small)


@pytest.mark.parametrize("spooled", [False, True])
def test_bandwidth_caps_the_body(sim: AmplitudeSimulator, spooled: bool) -> None:
    full = _get(sim, START, START + 5 * HOUR).content
    if spooled:
        sim.export.spool_threshold_bytes = 0  # streamed from a temporary file
    sim.export.network = NetworkSettings(bandwidth_bytes_per_second=2 * MB)
    ttfb, total, body = _timed(sim, START, START + 5 * HOUR)
    assert body == full
    floor = len(full) / (2 * MB)  # ~0.6 s
    assert ttfb < 0.5 * floor  # no TTFB asked for: the headers come at once
    assert 0.9 * floor <= total < floor + 1.5


def test_concurrent_downloads_each_get_their_own_cap(sim: AmplitudeSimulator) -> None:
    sim.export.network = NetworkSettings(bandwidth_bytes_per_second=1 * MB)
    sizes: list[int] = []
    durations: list[float] = []
    lock = threading.Lock()

    def download() -> None:
        _, total, body = _timed(sim, START, START + 5 * HOUR)
        with lock:
            sizes.append(len(body))
            durations.append(total)

    threads = [threading.Thread(target=download) for _ in range(3)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - began
    one = sizes[0] / MB  # ~1.2 s for one download at the cap
    assert len(durations) == 3
    assert all(duration >= 0.9 * one for duration in durations), durations
    assert wall < 2 * one, (wall, one)  # a shared cap would need 3 × one


def test_a_download_in_its_ttfb_does_not_hold_other_requests(sim: AmplitudeSimulator) -> None:
    sim.export.network = NetworkSettings(ttfb_base_seconds=3.0)
    slow = threading.Thread(target=_get, args=(sim, START, START + 5 * HOUR))
    slow.start()
    deadline = time.monotonic() + 5
    while sim.limits.in_flight() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    listed = requests.get(f"{sim.url}/api/2/events/list", auth=AUTH, timeout=10)
    assert listed.status_code == 200
    assert time.monotonic() - began < 2.0  # not held for the export's 3 s (loaded machine)
    assert sim.limits.in_flight() == 1  # the export is still waiting for its first byte
    slow.join()


def test_a_request_holds_its_concurrency_slot_through_the_ttfb(sim: AmplitudeSimulator) -> None:
    sim.limits.concurrent = 1
    sim.export.network = NetworkSettings(ttfb_base_seconds=1.0)
    statuses: list[int] = []
    slow = threading.Thread(
        target=lambda: statuses.append(_get(sim, START, START + 5 * HOUR).status_code)
    )
    slow.start()
    deadline = time.monotonic() + 5
    while sim.limits.in_flight() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    refused = _get(sim, START, START)
    slow.join()
    assert refused.status_code == 429
    assert statuses == [200]


def test_faults_combine_with_the_model(sim: AmplitudeSimulator) -> None:
    # The TTFB is long enough that "at once" keeps a wide margin on a loaded machine.
    sim.export.network = NetworkSettings(ttfb_base_seconds=1.2, bandwidth_bytes_per_second=2 * MB)
    # A delay fault comes on top of the modelled TTFB.
    sim.add_fault(EXPORT, Fault.delay(0.3))
    ttfb, _, _ = _timed(sim, START, START)
    assert ttfb >= 1.48
    # An injected status answers at once: no archive is built, nothing to wait for.
    sim.add_fault(EXPORT, Fault.status(503))
    began = time.monotonic()
    assert _get(sim, START, START).status_code == 503
    assert time.monotonic() - began < 0.8
    # A truncated body is paced too, then cut off.
    sim.add_fault(EXPORT, Fault.truncated())
    began = time.monotonic()
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        _get(sim, START, START + 5 * HOUR)
    assert time.monotonic() - began >= 1.2 + 0.9 * 0.25  # TTFB, then ~0.6 MB at 2 MB/s
    # Errors of the Export API itself are immediate.
    began = time.monotonic()
    assert _get(sim, START + 6 * HOUR, START + 7 * HOUR).status_code == 404
    assert time.monotonic() - began < 0.8


def test_presets_and_command_line_flags() -> None:
    assert network_settings(parse_args([])) == NetworkSettings()
    amplitude = network_settings(parse_args(["--network", "amplitude"]))
    base, per_mb, mbit = NETWORK_PRESETS["amplitude"]
    assert amplitude == NetworkSettings(base, per_mb, mbit * MB / 8)
    assert amplitude.ttfb_seconds(2 * MB) == pytest.approx(base + 2 * per_mb)
    tuned = network_settings(
        parse_args(["--network", "slow", "--ttfb-base-ms", "250", "--bandwidth-mbps", "16"])
    )
    assert tuned.ttfb_base_seconds == pytest.approx(0.25)
    assert tuned.ttfb_seconds_per_mb == NETWORK_PRESETS["slow"][1]
    assert tuned.bandwidth == pytest.approx(2 * MB)
    uncapped = network_settings(parse_args(["--network", "slow", "--bandwidth-mbps", "0"]))
    assert uncapped.bandwidth is None
    with pytest.raises(ValueError, match="unknown network preset"):
        NetworkSettings.preset("dial-up")
    with pytest.raises(SystemExit):
        parse_args(["--ttfb-ms-per-mb", "-1"])
