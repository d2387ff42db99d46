"""The CLI as users meet it: discovery, --about, config errors, auth errors, secrets."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from amplitude_simulator import AmplitudeSimulator, Fault, Project
from tap_amplitude.client import AmplitudeStream
from tap_amplitude.tap import TapAmplitude
from tests.conftest import SMALL_DATASET
from tests.helpers import discovered_catalog, iter_waits, run_tap, select_only, simulator_config

ROOT = Path(__file__).resolve().parents[1]
ALL_STREAMS = ["event_types", "export_events", "user_activity", "user_search"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tap_amplitude", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},  # no TAP_AMPLITUDE_* variables, no credentials
    )


def test_discover_needs_no_credentials_or_network() -> None:
    result = _cli("--discover")
    assert result.returncode == 0, result.stderr
    catalog = json.loads(result.stdout)
    streams = {entry["tap_stream_id"]: entry for entry in catalog["streams"]}
    assert set(ALL_STREAMS) <= set(streams)
    export = streams["export_events"]
    assert export["key_properties"] == ["uuid"]
    assert len(export["schema"]["properties"]) == 55
    replication = next(m for m in export["metadata"] if m["breadcrumb"] == [])["metadata"]
    assert replication["valid-replication-keys"] == ["server_upload_time"]


def test_about_reports_version_and_settings() -> None:
    result = _cli("--about", "--format", "json")
    assert result.returncode == 0, result.stderr
    about = json.loads(result.stdout)
    assert about["version"] == "0.1.0"
    settings = about["settings"]["properties"]
    for secret in ("api_key", "secret_key"):
        assert settings[secret].get("secret") is True
    # The keys are required by the config check, except for reading storage_export_url alone.
    assert set(about["settings"]["required"]) == {"start_date"}


def _settings_rows(markdown: str) -> list[str]:
    """The first table after the Settings heading."""
    lines = markdown.split("## Settings", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i, line in enumerate(lines[start:], start) if not line.startswith("|")), None)
    return [line.strip() for line in lines[start:end]]


def test_readme_settings_table_matches_about() -> None:
    about = _cli("--about", "--format", "markdown")
    assert about.returncode == 0, about.stderr
    readme = (ROOT / "README.md").read_text()
    assert _settings_rows(readme) == _settings_rows(about.stdout)


def _run_with(config: dict[str, Any]) -> Any:
    return run_tap(config, streams=["export_events"], timeout=60)


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"start_date": "2024-03-02T00:00:00Z", "end_date": "2024-03-01T00:00:00Z"}, "end_date"),
        ({"start_date": "yesterday"}, "start_date"),
        ({"region": "mars"}, "region"),
        ({"api_url": "127.0.0.1:8765"}, "api_url"),
        ({"export_window_hours": 0}, "export_window_hours"),
    ],
)
def test_invalid_config_fails_before_any_request(change: dict[str, Any], setting: str) -> None:
    with AmplitudeSimulator(SMALL_DATASET) as sim:
        run = _run_with(simulator_config(sim, **change))
        assert run.returncode == 1
        assert setting in run.stderr
        assert sim.requests == []


def test_missing_required_setting_is_named() -> None:
    with AmplitudeSimulator(SMALL_DATASET) as sim:
        config = simulator_config(sim)
        del config["secret_key"]
        run = _run_with(config)
        assert run.returncode == 1
        assert "secret_key" in run.stderr
        assert sim.requests == []


@pytest.mark.parametrize(
    "change",
    [{"secret_key": "wrong-secret"}, {"api_key": "another-projects-key"}],
)
def test_wrong_keys_stop_with_one_line(change: dict[str, str]) -> None:
    with AmplitudeSimulator(SMALL_DATASET) as sim:
        run = _run_with(simulator_config(sim, **change))
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1, run.stderr
    assert "check api_key and secret_key" in errors[0]
    assert "region 'us'" in errors[0]
    assert "Traceback" not in run.stderr


def test_unreachable_host_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with AmplitudeSimulator(SMALL_DATASET) as sim:
        config = simulator_config(sim)
    # the simulator is stopped now: nothing listens on that port. Same retries, no real waiting:
    monkeypatch.setattr(AmplitudeStream, "backoff_wait_generator", lambda _self: iter_waits(0.0))
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    with pytest.raises(SystemExit) as exit_info:
        TapAmplitude.cli.main(["--config", str(config_path)], standalone_mode=False)
    assert exit_info.value.code == 1
    stderr = capsys.readouterr().err
    port = config["api_url"].rsplit(":", 1)[1]
    errors = [line for line in stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, stderr  # not the backoff library's "Giving up" line as well
    assert f"Could not reach http://127.0.0.1:{port} (connection refused)" in errors[0]
    assert "check api_url/region and the network" in errors[0]
    assert "Backing off" not in stderr
    assert "Traceback" not in stderr


def test_https_to_a_plain_http_server_fails_at_once_with_one_line(
    simulator: AmplitudeSimulator,
) -> None:
    """A lasting TLS failure is not retried ten times: it names the URL and what to check."""
    config = simulator_config(simulator, api_url=simulator.url.replace("http://", "https://"))
    run = run_tap(config, streams=["export_events"])
    assert run.returncode == 1, run.stderr
    errors = [line for line in run.stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, run.stderr
    assert "Could not open a secure connection to https://127.0.0.1:" in errors[0]
    assert "answers plain HTTP, not HTTPS" in errors[0]
    assert "retrying" not in run.stderr
    assert "Traceback" not in run.stderr


SECRET_PROJECT = Project(api_key="SIMKEY-7f3a9c0d5e", secret_key="SIMSECRET-b2e8d41f66")


def _assert_no_secrets(text: str) -> None:
    import base64

    basic = base64.b64encode(
        f"{SECRET_PROJECT.api_key}:{SECRET_PROJECT.secret_key}".encode()
    ).decode()
    for secret in (SECRET_PROJECT.api_key, SECRET_PROJECT.secret_key, basic):
        assert secret not in text
    assert not re.search(r"Authorization['\"]?\s*[:=]\s*['\"]?(Basic|Api-Key)\s", text)


@pytest.mark.parametrize("scenario", ["success", "wrong-secret", "server-errors"])
def test_keys_never_appear_in_any_output(scenario: str) -> None:
    from amplitude_simulator import Fault

    with AmplitudeSimulator(SMALL_DATASET, SECRET_PROJECT) as sim:
        config = simulator_config(sim, user_ids=["user_0001"], export_window_hours=24)
        if scenario == "wrong-secret":
            config["secret_key"] = SECRET_PROJECT.secret_key + "x"
        if scenario == "server-errors":
            sim.add_fault("/api/2/export", Fault.status(500, headers={"Retry-After": "0"}), times=2)
            sim.add_fault("/api/2/usersearch", Fault.status(429, headers={"Retry-After": "0"}))
        run = run_tap(
            config,
            streams=ALL_STREAMS,
            env={"TAP_AMPLITUDE_LOGLEVEL": "DEBUG", "LOGLEVEL": "DEBUG"},
        )
    assert run.returncode == (1 if scenario == "wrong-secret" else 0), run.stderr
    assert "DEBUG" in run.stderr
    _assert_no_secrets(run.stdout + run.stderr)


def test_an_html_page_instead_of_json_is_retried_then_one_line(
    simulator: AmplitudeSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    simulator.add_fault("/api/2/events/list", Fault.not_zip(), times=100)
    monkeypatch.setattr(AmplitudeStream, "backoff_wait_generator", lambda _self: iter_waits(0.0))
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(simulator_config(simulator)))
    catalog_path = tmp_path / "catalog.json"
    catalog_path.write_text(json.dumps(select_only(["event_types"], discovered_catalog())))
    with pytest.raises(SystemExit) as exit_info:
        TapAmplitude.cli.main(
            ["--config", str(config_path), "--catalog", str(catalog_path)], standalone_mode=False
        )
    assert exit_info.value.code == 1
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if "| ERROR" in line]
    assert len(errors) == 1, stderr
    assert "GET /api/2/events/list brought an HTML page, not Amplitude's data" in errors[0]
    assert len([r for r in simulator.requests if r.path == "/api/2/events/list"]) == 10
    assert "retrying after event_types: HTTP 200 for GET /api/2/events/list brought" in stderr
