"""The fast export path writes exactly what the SDK's own record path would.

The oracle is the SDK path itself: the same tap, in-process, with a record cap set (which
routes export_events through singer-sdk's per-record pipeline: deselection walk, type
conformance, stream maps). The fast path runs through the real CLI, in RECORD and BATCH mode.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from singer_sdk.streams import Stream

from amplitude_simulator import AmplitudeSimulator
from tap_amplitude.tap import TapAmplitude
from tests.helpers import discovered_catalog, parse_messages, run_tap, select_only, simulator_config

STREAM = "export_events"
# Variations a user can configure; each must come out identical on both paths.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "deselected": {"deselect": ["city", "event_properties", "ip_address"]},
    "stream-map": {
        "config": {
            "stream_maps": {
                STREAM: {
                    "__filter__": "event_type != 'session_start'",
                    "event_type_upper": "event_type.upper()",
                    "ip_address": "__NULL__",
                },
            },
        },
    },
    "flattened": {"config": {"flattening_enabled": True, "flattening_max_depth": 1}},
}


def _catalog(deselect: list[str]) -> dict[str, Any]:
    catalog = select_only([STREAM], discovered_catalog())
    for entry in catalog["streams"]:
        for metadata in entry["metadata"]:
            if metadata["breadcrumb"][-1:] and metadata["breadcrumb"][-1] in deselect:
                metadata["metadata"]["selected"] = False
    return catalog


def _sdk_path_messages(
    config: dict[str, Any], catalog: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, Any]]:
    """Messages of the SDK's own per-record pipeline, proven to have run.

    Every record must pass through ``Stream._process_record`` once: if the fast path ever
    took this run, the count would be zero and the comparison would be with itself.
    """
    tap = TapAmplitude(config=config, catalog=catalog, parse_env_config=False)
    tap.streams[STREAM].ABORT_AT_RECORD_COUNT = 10**9  # never reached; selects the SDK path
    processed: list[str] = []
    per_record = Stream._process_record

    def counted(self: Stream, record: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        processed.append(record["uuid"])
        per_record(self, record, *args, **kwargs)

    monkeypatch.setattr(Stream, "_process_record", counted)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tap.sync_all()
    monkeypatch.undo()
    messages = parse_messages(out.getvalue())
    rows = [m for m in messages if m["type"] == "RECORD"]
    assert len(processed) >= len(rows) > 100  # filters drop rows after processing
    return messages


def _bookmarks(messages: list[dict[str, Any]]) -> list[str]:
    return [
        m["value"]["bookmarks"][STREAM]["replication_key_value"]
        for m in messages
        if m["type"] == "STATE" and STREAM in m["value"].get("bookmarks", {})
    ]


def _assert_same_state(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Same final STATE; every checkpoint of the SDK path (window ends) also on the fast path.

    The fast path also checkpoints at each new upload hour, so it may have more, in order.
    """
    final = [m["value"] for m in actual if m["type"] == "STATE"][-1]
    assert final == [m["value"] for m in expected if m["type"] == "STATE"][-1]
    fast = _bookmarks(actual)
    assert fast == sorted(fast)
    assert set(_bookmarks(expected)) <= set(fast)


def _records(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m["record"] for m in messages if m["type"] == "RECORD"]


def _schema(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return next(m["schema"] for m in messages if m["type"] == "SCHEMA")


def _cli_run(
    config: dict[str, Any], catalog: dict[str, Any], tmp_path: Path
) -> list[dict[str, Any]]:
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(json.dumps(catalog))
    run = run_tap(config, extra_args=["--catalog", str(catalog_path)])
    assert run.returncode == 0, run.stderr
    return run.messages


def _batch_records(messages: list[dict[str, Any]], batch_size: int) -> list[dict[str, Any]]:
    """Rows of every BATCH file, each opened as its message's encoding says."""
    records: list[dict[str, Any]] = []
    for message in messages:
        if message["type"] == "BATCH":
            gzipped = message["encoding"]["compression"] == "gzip"
            for url in message["manifest"]:
                path = urlsplit(url).path
                assert path.endswith(".json.gz" if gzipped else ".jsonl")
                opener = gzip.open if gzipped else open
                with opener(path, "rt") as lines:
                    rows = [json.loads(line) for line in lines]
                assert 0 < len(rows) <= batch_size
                records += rows
    return records


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_record_mode_matches_sdk_path(
    simulator: AmplitudeSimulator, tmp_path: Path, variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = VARIANTS[variant]
    config = simulator_config(simulator, **spec.get("config", {}))
    catalog = _catalog(spec.get("deselect", []))

    expected = _sdk_path_messages(config, catalog, monkeypatch)
    actual = _cli_run(config, catalog, tmp_path)

    assert _schema(actual) == _schema(expected)
    assert _records(actual) == _records(expected)
    _assert_same_state(actual, expected)
    assert len(_records(actual)) > 100
    for record in _records(actual):
        if variant != "flattened":  # free-form bags flatten into keys no schema can declare
            assert set(record) <= set(_schema(actual)["properties"])
        for name in spec.get("deselect", []):
            assert name not in record


@pytest.mark.parametrize(
    ("variant", "compression"),
    [
        ("plain", "gzip"),
        ("deselected", "gzip"),
        ("stream-map", "gzip"),
        ("flattened", "gzip"),
        ("plain", "none"),  # plain .jsonl files, as the BATCH message says
    ],
)
def test_batch_mode_matches_sdk_record_path(
    simulator: AmplitudeSimulator,
    tmp_path: Path,
    variant: str,
    compression: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = VARIANTS[variant]
    config = simulator_config(simulator, **spec.get("config", {}))
    catalog = _catalog(spec.get("deselect", []))
    expected = _sdk_path_messages(config, catalog, monkeypatch)

    batch_dir = tmp_path / "batches"
    batch_dir.mkdir()
    config["batch_config"] = {
        "encoding": {"format": "jsonl", "compression": compression},
        "storage": {"root": f"file://{batch_dir}", "prefix": "amp-"},
        "batch_size": 500,
    }
    actual = _cli_run(config, catalog, tmp_path)

    assert _schema(actual) == _schema(expected)
    assert not _records(actual)  # rows travel in files, not RECORD messages
    assert _batch_records(actual, 500) == _records(expected)
    # STATE still follows the data: the final bookmark is the end of the range
    final = [m for m in actual if m["type"] == "STATE"][-1]["value"]
    assert final["bookmarks"][STREAM]["replication_key_value"] == "2024-03-04T00:00:00.000000Z"
    _assert_same_state(actual, expected)
