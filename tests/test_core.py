"""The SDK's standard tap and stream tests, run against a live simulator."""

from __future__ import annotations

import atexit

from singer_sdk.testing import SuiteConfig, get_tap_test_class

from amplitude_simulator import AmplitudeSimulator
from tap_amplitude.tap import TapAmplitude
from tests.conftest import SMALL_DATASET
from tests.helpers import simulator_config

# The generated test class needs its config at import time, so this module owns a simulator
# for its whole life (function-scoped HTTP mocks would not cover the class-scoped runner).
_SIMULATOR = AmplitudeSimulator(SMALL_DATASET).start()
atexit.register(_SIMULATOR.stop)

_USERS = _SIMULATOR.dataset.user_list()

TestTapAmplitude = get_tap_test_class(
    tap_class=TapAmplitude,
    config=simulator_config(
        _SIMULATOR,
        user_ids=[_USERS[1].user_id, _USERS[2].device_id],
        amplitude_ids=[_USERS[0].amplitude_id],
        project_id=_SIMULATOR.project.app_id,
        chart_ids=["abc123", "fun456", "ret789", "tbl001"],  # the simulator's saved charts
        cohort_member_properties=["plan", "country"],
    ),
    # merged_ids reads only Amplitude's cloud-storage export (storage_export_url), which this
    # suite does not configure; tests/test_storage.py covers it, SDK path included.
    suite_config=SuiteConfig(max_records_limit=100, ignore_no_records_for_streams=["merged_ids"]),
    parse_env_config=False,
)
