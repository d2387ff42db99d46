"""Settings from files, the environment and Meltano: typed by what each setting means, and
every problem reported before any request, in one line that names the setting, variable or
file, never with a traceback and never with the value.
"""

from __future__ import annotations

import copy
import errno
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from amplitude_simulator import AmplitudeSimulator
from tap_amplitude import tap as tap_module
from tap_amplitude.client import AmplitudeStream
from tap_amplitude.settings import coerce_value, parse_text, read_json_file
from tap_amplitude.tap import TapAmplitude, report_failures
from tests.conftest import SMALL_DATASET
from tests.helpers import discovered_catalog, parse_messages, select_only, simulator_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim() -> Iterator[AmplitudeSimulator]:
    """One simulator for the module: most runs here must stop before asking it anything."""
    with AmplitudeSimulator(SMALL_DATASET) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _console_logging() -> Iterator[None]:
    """Each in-process ``TapAmplitude.cli`` adds a root handler on the current (captured)
    stderr; drop those of earlier tests, whose streams are closed, and this test's after it."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        stream = getattr(handler, "stream", None)
        if getattr(stream, "closed", False):
            root.removeHandler(handler)
    before, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TAP_AMPLITUDE_") and key not in {"TMPDIR", "TEMP", "TMP"}
    }
    return {**env, **extra}


def _cli(args: list[str], *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tap_amplitude", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=_clean_env(**(env or {})),
        cwd=ROOT,
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "| ERROR" in line]


def _assert_one_line(stderr: str, *names: str, absent: tuple[str, ...] = ()) -> str:
    """Exactly one ERROR line naming every ``names``; no traceback; no ``absent`` anywhere."""
    assert "Traceback" not in stderr, stderr
    errors = _error_lines(stderr)
    assert len(errors) == 1, stderr
    for name in names:
        assert name in errors[0], errors[0]
    for value in absent:
        assert value not in stderr, f"{value!r} leaked into stderr"
    return errors[0]


def _reported(
    caplog: pytest.LogCaptureFixture, failure: BaseException, level: int = logging.ERROR
) -> int | str | None:
    """Raise ``failure`` inside the CLI's failure reporting; the exit code it chose."""
    with (
        pytest.raises(SystemExit) as exit_info,
        caplog.at_level(level),
        report_failures(logging.getLogger("tap-amplitude-test")),
    ):
        raise failure
    return exit_info.value.code


def _write(path: Path, payload: Any) -> Path:
    path.write_text(json.dumps(payload))
    return path


# ----------------------------------------------------------------------------------------
# config, state and catalog files


def _bad_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.json"
    if kind == "not_json":
        path.write_text('{"api_key": "FILEKEY-0c1d", oops}')
    elif kind == "array":
        path.write_text('["FILEKEY-0c1d"]')
    elif kind == "empty":
        path.write_text("")
    elif kind == "not_utf8":
        path.write_bytes(b'{"api_key": "\xff\xfe"}')
    elif kind == "directory":
        path.mkdir()
    elif kind == "nested":
        path.write_text("[" * 100_000 + "]" * 100_000)
    return path  # "missing": never created


FILE_PROBLEMS = {
    "missing": "does not exist",
    "not_json": "is not valid JSON",
    "array": "must hold a JSON object",
    "empty": "is not valid JSON",
    "not_utf8": "is not UTF-8",
    "directory": "is a directory",
    "nested": "nests arrays or objects too deeply",
}


@pytest.mark.parametrize("which", ["config", "state", "catalog"])
@pytest.mark.parametrize("kind", ["missing", "not_json", "array"])
def test_bad_file_is_one_line_before_any_request(
    sim: AmplitudeSimulator, tmp_path: Path, which: str, kind: str
) -> None:
    config = _write(tmp_path / "good.json", simulator_config(sim))
    bad = _bad_file(tmp_path, kind)
    args = ["--config", str(bad)] if which == "config" else ["--config", str(config)]
    if which != "config":
        args += [f"--{which}", str(bad)]
    before = len(sim.requests)
    result = _cli(args)
    assert result.returncode == 1
    _assert_one_line(result.stderr, f"{which} file", str(bad), FILE_PROBLEMS[kind])
    assert "FILEKEY-0c1d" not in result.stderr
    assert result.stdout == ""
    assert len(sim.requests) == before


@pytest.mark.parametrize("kind", list(FILE_PROBLEMS))
@pytest.mark.parametrize(
    ("which", "mode"),
    [
        ("config", []),
        ("config", ["--discover"]),
        ("config", ["--test"]),
        ("config", ["--about"]),
        ("state", []),
        ("catalog", []),
    ],
)
def test_every_file_problem_in_every_mode(
    sim: AmplitudeSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    which: str,
    kind: str,
    mode: list[str],
) -> None:
    """In process (the same CLI code path): each problem, each file, each way of running."""
    config = _write(tmp_path / "good.json", simulator_config(sim))
    bad = _bad_file(tmp_path, kind)
    args = ["--config", str(bad)] if which == "config" else ["--config", str(config)]
    if which != "config":
        args += [f"--{which}", str(bad)]
    with pytest.raises(SystemExit) as exit_info:
        TapAmplitude.cli.main([*args, *mode], standalone_mode=False)
    assert exit_info.value.code == 1
    _assert_one_line(capsys.readouterr().err, f"{which} file", FILE_PROBLEMS[kind])


@pytest.mark.parametrize(
    ("which", "payload", "problem"),
    [
        ("state", {"bookmarks": ["export_events"]}, "'bookmarks' must be a JSON object"),
        ("state", {"bookmarks": {"export_events": 3}}, "'bookmarks' must be a JSON object"),
        ("state", {"bookmarks": {"export_events": {"partitions": "x"}}}, "partitions' must be"),
        ("state", {"bookmarks": {"gone": {"partitions": [1, None]}}}, "partitions' must be"),
        (
            "state",
            {"bookmarks": {"export_events": {"partitions": [{"context": "x"}]}}},
            "each with a 'context' object",
        ),
        ("catalog", {"streams": {"export_events": {}}}, "'streams' array"),
        ("catalog", {"streams": [{"stream": "x"}]}, "tap_stream_id"),
        ("catalog", {"streams": [{"tap_stream_id": "x", "metadata": 3}]}, "metadata"),
        ("catalog", {"streams": [{"tap_stream_id": "x", "metadata": []}]}, "needs 'schema'"),
    ],
)
def test_state_or_catalog_of_the_wrong_shape(
    sim: AmplitudeSimulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    which: str,
    payload: Any,
    problem: str,
) -> None:
    config = _write(tmp_path / "config.json", simulator_config(sim))
    bad = _write(tmp_path / f"{which}.json", payload)
    with pytest.raises(SystemExit) as exit_info:
        TapAmplitude.cli.main(
            ["--config", str(config), f"--{which}", str(bad)], standalone_mode=False
        )
    assert exit_info.value.code == 1
    _assert_one_line(capsys.readouterr().err, f"{which} file '{bad}'", problem)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{}")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who can read anything (root)")
        with pytest.raises(Exception, match=r"config file '.*' cannot be read") as info:
            read_json_file(str(path), "config")
        assert type(info.value).__name__ == "SettingsError"
    finally:
        path.chmod(0o600)


# ----------------------------------------------------------------------------------------
# keys: wrongly typed, blank, not sendable; the value never appears


@pytest.mark.parametrize("setting", ["api_key", "secret_key"])
@pytest.mark.parametrize(
    ("value", "marker", "problem"),
    [
        (["LISTKEY-5f1e9a"], "LISTKEY-5f1e9a", "expected a string, got an array"),
        (987654321987, "987654321987", "expected a string, got an integer"),
        (12345.678901, "12345.678901", "expected a string, got a number"),
        ({"OBJKEY-77e2": "OBJVAL-77e2"}, "OBJ", "expected a string, got an object"),
        (True, "True", "expected a string, got a boolean"),
        (None, "None", "expected a string, got null"),
        ("", "''", "is empty"),
        ("   \t ", "'   ", "is empty"),
        ("KEY-☃-SNOWMAN-4242", "SNOWMAN-4242", "outside Latin-1"),
        ("KEY-NEWLINE-8181\n", "NEWLINE-8181", "whitespace or control characters"),
    ],
)
def test_bad_key_is_one_line_without_the_value(
    sim: AmplitudeSimulator,
    tmp_path: Path,
    *,
    setting: str,
    value: Any,
    marker: str,
    problem: str,
) -> None:
    config = _write(tmp_path / "config.json", simulator_config(sim, **{setting: value}))
    before = len(sim.requests)
    result = _cli(["--config", str(config)])
    assert result.returncode == 1
    line = _assert_one_line(result.stderr, setting, problem, absent=(marker,))
    assert "Invalid configuration" in line
    assert marker not in result.stdout
    assert len(sim.requests) == before


@pytest.mark.parametrize(
    ("setting", "wrong"),
    [
        ("api_key", ["MARK-aa11"]),
        ("secret_key", {"MARK-aa11": 1}),
        ("start_date", "MARK-aa11"),
        ("end_date", ["MARK-aa11"]),
        ("region", "MARK-aa11"),
        ("api_url", "MARK-aa11"),
        ("profile_api_url", "ftp://MARK-aa11"),
        ("user_ids", "MARK-aa11"),
        ("user_ids", ["ok", {"MARK-aa11": 1}]),
        ("amplitude_ids", ["MARK-aa11"]),
        ("export_window_hours", "MARK-aa11"),
        ("export_lag_hours", -1),
        ("project_id", "MARK-aa11"),
        ("request_timeout", "MARK-aa11"),
        ("request_timeout", 0),
        ("request_timeout", float("nan")),  # NaN passes JSON-schema's minimum
        ("request_timeout", 1e10),  # beyond what sockets accept
        ("rec_id", ["MARK-aa11"]),
        ("active_users_group_by_country", "MARK-aa11"),
        ("rate_limits", "MARK-aa11"),
        ("rate_limits", {"cost_per_hour": "MARK-aa11"}),
        ("rate_limits", {"cost_per_hour": 10.5}),
        ("flattening_enabled", "MARK-aa11"),
        ("flattening_max_depth", "MARK-aa11"),
        ("stream_maps", "MARK-aa11"),
    ],
)
def test_every_setting_is_named_never_echoed(
    sim: AmplitudeSimulator, setting: str, wrong: Any
) -> None:
    """In process, the whole class: whatever the setting, the error names it, not its value."""
    config = simulator_config(sim, **{setting: wrong})
    with pytest.raises(Exception, match="Invalid configuration") as info:
        TapAmplitude(config=config, setup_mapper=False)
    message = str(info.value)
    assert setting in message
    assert "MARK-aa11" not in message
    assert "MARK-aa11" not in repr(getattr(info.value, "errors", ""))
    assert "\n" not in message


# ----------------------------------------------------------------------------------------
# numbers as Meltano and JSON send them


def test_floats_for_integer_and_number_settings(tmp_path: Path) -> None:
    with AmplitudeSimulator(SMALL_DATASET) as simulator:
        users = simulator.dataset.user_list()
        config = simulator_config(
            simulator,
            export_window_hours=24.0,  # Meltano's kind: decimal
            export_lag_hours=2.0,
            request_timeout=30.5,
            project_id=float(simulator.project.app_id),
            amplitude_ids=[float(users[0].amplitude_id)],
            rate_limits={"cost_per_5_minutes": 1000.0, "user_lookups_per_hour": 360.0},
        )
        catalog = select_only(
            ["event_types", "user_search"], json.loads(_cli(["--discover"]).stdout)
        )
        result = _cli(
            [
                "--config",
                str(_write(tmp_path / "config.json", config)),
                "--catalog",
                str(_write(tmp_path / "catalog.json", catalog)),
            ]
        )
    assert result.returncode == 0, result.stderr
    messages = parse_messages(result.stdout)
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert records
    assert {record["app"] for record in records} == {simulator.project.app_id}
    assert all(isinstance(record["app"], int) for record in records)
    assert any(m.get("stream") == "user_search" for m in messages if m["type"] == "RECORD")


def test_fractional_request_timeout_reaches_requests(sim: AmplitudeSimulator) -> None:
    from decimal import Decimal

    tap = TapAmplitude(
        config=simulator_config(sim, request_timeout=Decimal("30.5"), export_window_hours=24.0),
        setup_mapper=False,
    )
    assert tap.config["export_window_hours"] == 24
    assert isinstance(tap.config["export_window_hours"], int)
    stream = tap.streams["event_types"]
    assert isinstance(stream, AmplitudeStream)
    assert stream.timeout == 30.5


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("export_window_hours", 24.5),
        ("export_lag_hours", 0.25),
        ("project_id", 1.5),
        ("amplitude_ids", [1.5]),
        ("rate_limits", {"cost_per_hour": 100.5}),
    ],
)
def test_fraction_for_an_integer_setting_is_an_error(
    sim: AmplitudeSimulator, setting: str, value: Any
) -> None:
    with pytest.raises(Exception, match="Invalid configuration") as info:
        TapAmplitude(config=simulator_config(sim, **{setting: value}), setup_mapper=False)
    assert f"{setting}" in str(info.value)
    assert "whole number" in str(info.value)


# ----------------------------------------------------------------------------------------
# the environment (--config ENV)


def _env_for(simulator: AmplitudeSimulator, **extra: str) -> dict[str, str]:
    base = {
        f"TAP_AMPLITUDE_{key.upper()}": str(value)
        for key, value in simulator_config(simulator).items()
    }
    return {**base, **extra}


def test_environment_values_are_typed(sim: AmplitudeSimulator, tmp_path: Path) -> None:
    users = sim.dataset.user_list()
    env = _env_for(
        sim,
        TAP_AMPLITUDE_EXPORT_WINDOW_HOURS="24.0",
        TAP_AMPLITUDE_EXPORT_LAG_HOURS="2",
        TAP_AMPLITUDE_REQUEST_TIMEOUT="30.5",
        TAP_AMPLITUDE_PROJECT_ID=str(sim.project.app_id),
        TAP_AMPLITUDE_ACTIVE_USERS_GROUP_BY_COUNTRY="true",
        TAP_AMPLITUDE_USER_IDS=json.dumps([users[1].user_id]),
        TAP_AMPLITUDE_AMPLITUDE_IDS=json.dumps([users[0].amplitude_id]),
        TAP_AMPLITUDE_RATE_LIMITS=json.dumps({"cost_per_5_minutes": 1000.0}),
        TAP_AMPLITUDE_FLATTENING_ENABLED="false",
    )
    catalog = select_only(["user_search", "active_users"], json.loads(_cli(["--discover"]).stdout))
    result = _cli(
        ["--config", "ENV", "--catalog", str(_write(tmp_path / "catalog.json", catalog))],
        env=env,
    )
    assert result.returncode == 0, result.stderr
    records = [m for m in parse_messages(result.stdout) if m["type"] == "RECORD"]
    searched = {m["record"]["search_term"] for m in records if m["stream"] == "user_search"}
    assert searched == {users[1].user_id, str(users[0].amplitude_id)}
    grouped = [m["record"] for m in records if m["stream"] == "active_users"]
    assert grouped
    assert {record["group_by"] for record in grouped} == {"country"}
    assert {record["app"] for record in grouped} == {sim.project.app_id}


@pytest.mark.parametrize(
    ("variable", "text", "expected"),
    [
        ("EXPORT_WINDOW_HOURS", "ENVVAL-abc", "expected an integer"),
        ("EXPORT_WINDOW_HOURS", "24.5", "expected an integer"),
        ("REQUEST_TIMEOUT", "ENVVAL-soon", "expected a number"),
        ("REQUEST_TIMEOUT", "nan", "expected a number"),
        ("ACTIVE_USERS_GROUP_BY_COUNTRY", "ENVVAL-maybe", "expected true or false"),
        ("USER_IDS", '["ENVVAL-unclosed"', "expected an array"),
        ("AMPLITUDE_IDS", "ENVVAL-x,ENVVAL-y", "expected an array"),
        ("RATE_LIMITS", '["ENVVAL-list"]', "expected an object"),
        ("PROJECT_ID", "ENVVAL-p", "expected an integer"),
    ],
)
def test_bad_environment_value_is_one_line(
    sim: AmplitudeSimulator, variable: str, text: str, expected: str
) -> None:
    before = len(sim.requests)
    result = _cli(["--config", "ENV"], env=_env_for(sim, **{f"TAP_AMPLITUDE_{variable}": text}))
    assert result.returncode == 1
    _assert_one_line(
        result.stderr, f"TAP_AMPLITUDE_{variable}", variable.lower(), expected, absent=("ENVVAL",)
    )
    assert len(sim.requests) == before


def test_environment_key_problem_names_the_variable(
    sim: AmplitudeSimulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in _env_for(sim, TAP_AMPLITUDE_SECRET_KEY="  ").items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as exit_info:
        TapAmplitude.cli.main(["--config", "ENV"], standalone_mode=False)
    assert exit_info.value.code == 1
    _assert_one_line(capsys.readouterr().err, "secret_key", "TAP_AMPLITUDE_SECRET_KEY", "empty")


@pytest.mark.parametrize(
    ("text", "schema", "value"),
    [
        ("24", {"type": ["integer", "null"]}, 24),
        (" 24.0 ", {"type": "integer"}, 24),
        ("30.5", {"type": ["number", "null"]}, 30.5),
        ("300", {"type": "number"}, 300),
        ("TRUE", {"type": "boolean"}, True),
        ("off", {"type": ["boolean", "null"]}, False),
        ('["a", "b"]', {"type": "array", "items": {"type": "string"}}, ["a", "b"]),
        ("a,b", {"type": "array", "items": {"type": "string"}}, ["a", "b"]),
        ("[1.0, 2]", {"type": "array", "items": {"type": "integer"}}, [1, 2]),
        ("1, 2", {"type": "array", "items": {"type": "integer"}}, [1, 2]),
        (
            '{"cost_per_hour": 5.0}',
            _rate := TapAmplitude.config_jsonschema["properties"]["rate_limits"],
            {"cost_per_hour": 5},
        ),
        (" x ", {"type": "string"}, " x "),
    ],
)
def test_environment_text_by_type(text: str, schema: dict[str, Any], value: Any) -> None:
    typed = coerce_value(parse_text(text, schema), schema)
    assert typed == value
    assert type(typed) is type(value)


@pytest.mark.parametrize(
    ("text", "schema"),
    [
        ("abc", {"type": "integer"}),
        ("1e-3", {"type": "integer"}),
        ("inf", {"type": "number"}),
        ("maybe", {"type": "boolean"}),
        ('{"a": 1}', {"type": "array"}),
        ('{"a": 1}', {"type": "array", "items": {"type": "string"}}),
        ("[1]", {"type": "object"}),
        ("a,b", {"type": "array", "items": {"type": "integer"}}),
    ],
)
def test_environment_text_that_is_not_the_type(text: str, schema: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is not shown to users
        parse_text(text, schema)


# ----------------------------------------------------------------------------------------
# the temporary directory (export downloads are spooled there)


def _tmpdir_case(tmp_path: Path, case: str) -> str:
    if case == "missing":
        return str(tmp_path / "no-such-dir")
    if case == "file":
        path = tmp_path / "a-file"
        path.write_text("")
        return str(path)
    return "/sys"  # read-only even for root in a container; checked below


def _writable(directory: str) -> bool:
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


@pytest.mark.parametrize(
    ("case", "problem"),
    [("missing", "does not exist"), ("file", "is not a directory"), ("unwritable", "writ")],
)
def test_unusable_tmpdir_is_one_line_before_any_request(
    sim: AmplitudeSimulator, tmp_path: Path, case: str, problem: str
) -> None:
    tmpdir = _tmpdir_case(tmp_path, case)
    if case == "unwritable" and _writable(tmpdir):
        pytest.skip(f"{tmpdir} is writable here")
    config = _write(tmp_path / "config.json", simulator_config(sim))
    before = len(sim.requests)
    result = _cli(["--config", str(config)], env={"TMPDIR": tmpdir})
    assert result.returncode == 1
    _assert_one_line(result.stderr, "TMPDIR", tmpdir, problem)
    assert len(sim.requests) == before


def test_tmpdir_is_not_needed_without_export_events(
    sim: AmplitudeSimulator, tmp_path: Path
) -> None:
    catalog = select_only(["event_types"], json.loads(_cli(["--discover"]).stdout))
    config = _write(tmp_path / "config.json", simulator_config(sim))
    result = _cli(
        ["--config", str(config), "--catalog", str(_write(tmp_path / "catalog.json", catalog))],
        env={"TMPDIR": str(tmp_path / "no-such-dir")},
    )
    assert result.returncode == 0, result.stderr


class _FullDisk:
    """A temporary file on a full disk: every write fails with ENOSPC."""

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_mid_run_is_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    real = tempfile.TemporaryFile

    def temporary_file(*args: Any, **kwargs: Any) -> Any:
        if "dir" in kwargs:  # the start-up check still finds a healthy directory
            return real(*args, **kwargs)
        return _FullDisk()

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)
    catalog = _write(
        tmp_path / "catalog.json", select_only(["export_events"], discovered_catalog())
    )
    with AmplitudeSimulator(SMALL_DATASET) as simulator:
        config = _write(tmp_path / "config.json", simulator_config(simulator))
        with pytest.raises(SystemExit) as exit_info:
            TapAmplitude.cli.main(
                ["--config", str(config), "--catalog", str(catalog)], standalone_mode=False
            )
        asked_export = any("/api/2/export" in r.path for r in simulator.requests)
    assert asked_export
    assert exit_info.value.code == 1
    line = _assert_one_line(capsys.readouterr().err, tempfile.gettempdir())
    assert "space" in line


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.ENOSPC, "no space left"),
        (errno.EDQUOT, "quota"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_disk_errors_reaching_the_cli_are_one_line(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    reason: str,
) -> None:
    # The temporary directory is the one at fault (else a file-less error is stdout's).
    monkeypatch.setattr(tap_module, "temp_dir_problem", lambda: "the temporary directory is full")
    assert _reported(caplog, OSError(code, os.strerror(code))) == 1
    [record] = caplog.records
    assert tempfile.gettempdir() in record.getMessage()
    assert reason in record.getMessage()
    assert "\n" not in record.getMessage()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EPIPE])
def test_a_write_error_without_a_file_with_a_usable_temp_dir_is_stdout(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Output the SDK prints itself (--discover, --about) fails like this on a full stdout."""
    monkeypatch.setattr(tap_module, "silence_stdout", lambda: None)
    assert _reported(caplog, OSError(code, os.strerror(code))) == 1
    [record] = caplog.records
    assert record.getMessage().startswith("Could not write to standard output")
    assert "TMPDIR" not in record.getMessage()


def test_other_os_errors_are_not_disguised(caplog: pytest.LogCaptureFixture) -> None:
    assert _reported(caplog, OSError(errno.ENOTCONN, "Transport endpoint is not connected")) == 1
    [record] = caplog.records
    assert "unexpected OSError ([Errno 107] Transport endpoint" in record.getMessage()
    assert "TMPDIR" not in record.getMessage()


def test_an_unforeseen_failure_is_still_one_line(caplog: pytest.LogCaptureFixture) -> None:
    assert _reported(caplog, RuntimeError("x" * 1000), level=logging.DEBUG) == 1
    [error] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert "unexpected RuntimeError (xxx" in error.getMessage()
    assert "TAP_AMPLITUDE_LOGLEVEL=DEBUG" in error.getMessage()
    assert len(error.getMessage()) < 700  # the text is cut, not echoed whole
    assert error.exc_info is None
    [debug] = [record for record in caplog.records if record.levelno == logging.DEBUG]
    assert debug.exc_info is not None  # the traceback, for who asks for DEBUG


def _state(value: Any, *, partition: bool = False) -> dict[str, Any]:
    bookmark = {"replication_key": "server_upload_time", "replication_key_value": value}
    if partition:
        bookmark = {"partitions": [{"context": {}, **bookmark}]}
    return {"bookmarks": {"export_events": bookmark}}


@pytest.mark.parametrize(
    "state",
    [
        _state("garbage"),
        _state(12345),
        _state(["2026-01-01"]),
        _state("32 May", partition=True),
        _state("2999-01-01T00:00:00Z"),  # in the future: would skip every hour up to it
        _state("2999-01-01", partition=True),
        # labelled with another key: event_time is not a point the upload-hour export resumes at
        {
            "bookmarks": {
                "export_events": {
                    "replication_key": "event_time",
                    "replication_key_value": "2024-03-02T00:00:00Z",
                }
            }
        },
    ],
)
def test_a_bookmark_that_is_not_a_date_time_is_one_line_before_any_request(
    sim: AmplitudeSimulator, tmp_path: Path, state: dict[str, Any]
) -> None:
    config = _write(tmp_path / "config.json", simulator_config(sim))
    state_path = _write(tmp_path / "state.json", state)
    catalog = _write(
        tmp_path / "catalog.json", select_only(["export_events"], discovered_catalog())
    )
    before = len(sim.requests)
    args = ["--config", str(config), "--state", str(state_path), "--catalog", str(catalog)]
    result = _cli(args)
    assert result.returncode == 1
    _assert_one_line(
        result.stderr, f"state file '{state_path}'", "bookmark of 'export_events'", "start_date"
    )
    assert len(sim.requests) == before


def _catalog_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    catalog = select_only(["export_events"], copy.deepcopy(discovered_catalog()))
    change(catalog)
    return catalog


def _drop_replication_key(catalog: dict[str, Any]) -> None:
    for entry in catalog["streams"]:
        if entry["tap_stream_id"] == "export_events":
            del entry["schema"]["properties"]["server_upload_time"]


def _select_unknown_stream(catalog: dict[str, Any]) -> None:
    catalog["streams"].append(
        {
            "tap_stream_id": "no_such_stream",
            "schema": {"type": "object", "properties": {}},
            "metadata": [{"breadcrumb": [], "metadata": {"selected": True}}],
        }
    )


def test_a_catalog_without_the_replication_key_is_one_line(
    sim: AmplitudeSimulator, tmp_path: Path
) -> None:
    config = _write(tmp_path / "config.json", simulator_config(sim))
    catalog = _write(tmp_path / "catalog.json", _catalog_with(_drop_replication_key))
    result = _cli(["--config", str(config), "--catalog", str(catalog)])
    assert result.returncode == 1
    _assert_one_line(result.stderr, "catalog does not fit", "server_upload_time", "--discover")


def _edit_entry(stream: str, **changes: Any) -> Callable[[dict[str, Any]], None]:
    """Set Singer fields (replication_key, replication_method, key_properties) on one entry."""
    metadata_keys = {
        "replication_key": "replication-key",
        "replication_method": "forced-replication-method",
        "key_properties": "table-key-properties",
    }

    def change(catalog: dict[str, Any]) -> None:
        [entry] = [e for e in catalog["streams"] if e["tap_stream_id"] == stream]
        entry.update(changes)
        [root] = [m for m in entry["metadata"] if m["breadcrumb"] == []]
        root["metadata"].update({metadata_keys[key]: value for key, value in changes.items()})

    return change


def _select_too(stream: str) -> Callable[[dict[str, Any]], None]:
    def change(catalog: dict[str, Any]) -> None:
        [entry] = [e for e in catalog["streams"] if e["tap_stream_id"] == stream]
        [root] = [m for m in entry["metadata"] if m["breadcrumb"] == []]
        root["metadata"]["selected"] = True

    return change


@pytest.mark.parametrize(
    ("stream", "changes", "named"),
    [
        ("export_events", {"replication_key": "event_time"}, "can only resume on"),
        ("export_events", {"replication_method": "FULL_TABLE"}, "--full-refresh"),
        ("export_events", {"replication_method": "LOG_BASED"}, "remove replication-method"),
        ("export_events", {"key_properties": ["uuid", "no_such"]}, "(no_such)"),
        ("event_types", {"replication_method": "INCREMENTAL"}, "has no replication key"),
        ("event_types", {"replication_key": "value"}, "it is read in full"),
    ],
)
def test_a_replication_edit_the_stream_cannot_honour_is_refused(
    sim: AmplitudeSimulator, tmp_path: Path, stream: str, changes: dict[str, Any], named: str
) -> None:
    """A changed key or method used to run anyway, labelling STATE with what it does not hold."""

    def change(catalog: dict[str, Any]) -> None:
        _select_too(stream)(catalog)
        _edit_entry(stream, **changes)(catalog)

    config = _write(tmp_path / "config.json", simulator_config(sim))
    catalog = _write(tmp_path / "catalog.json", _catalog_with(change))
    before = len(sim.requests)
    result = _cli(["--config", str(config), "--catalog", str(catalog)])
    assert result.returncode == 1
    _assert_one_line(result.stderr, "The catalog", f"stream '{stream}'", named)
    assert len(sim.requests) == before


def test_replication_edits_that_change_nothing_read_are_accepted(
    sim: AmplitudeSimulator, tmp_path: Path
) -> None:
    """Other key properties of the schema, the stream's own method, edits to unselected streams."""

    def change(catalog: dict[str, Any]) -> None:
        keyed_by_insert_id = _edit_entry(
            "export_events", replication_method="INCREMENTAL", key_properties=["$insert_id"]
        )
        keyed_by_insert_id(catalog)
        _edit_entry("event_types", replication_method="INCREMENTAL")(catalog)  # not selected

    config = _write(tmp_path / "config.json", simulator_config(sim))
    catalog = _write(tmp_path / "catalog.json", _catalog_with(change))
    result = _cli(["--config", str(config), "--catalog", str(catalog)])
    assert result.returncode == 0, result.stderr
    schemas = [json.loads(line) for line in result.stdout.splitlines() if '"SCHEMA"' in line]
    assert [m["key_properties"] for m in schemas if m["stream"] == "export_events"] == [
        ["$insert_id"]
    ]


def test_a_selected_stream_the_tap_lacks_is_named(sim: AmplitudeSimulator, tmp_path: Path) -> None:
    config = _write(tmp_path / "config.json", simulator_config(sim))
    catalog = _write(tmp_path / "catalog.json", _catalog_with(_select_unknown_stream))
    result = _cli(["--config", str(config), "--catalog", str(catalog)])
    assert result.returncode == 0, result.stderr
    [warning] = [line for line in result.stderr.splitlines() if "| WARNING" in line]
    assert "'no_such_stream'" in warning
    assert "--discover" in warning


@pytest.mark.parametrize(
    ("stream_map", "named"),
    [
        ({"x": "1 +* 2"}, "Failed to parse expression"),
        ({"x": "record['no_such_property']"}, "KeyError: 'no_such_property'"),
        ({"__filter__": "int('abc') > 0"}, "ValueError: invalid literal"),
    ],
)
def test_a_broken_stream_map_is_one_line(
    sim: AmplitudeSimulator, tmp_path: Path, stream_map: dict[str, str], named: str
) -> None:
    config = _write(
        tmp_path / "config.json",
        simulator_config(sim, stream_maps={"export_events": stream_map}),
    )
    catalog = _write(tmp_path / "catalog.json", _catalog_with(lambda _: None))
    result = _cli(["--config", str(config), "--catalog", str(catalog)])
    assert result.returncode == 1
    _assert_one_line(result.stderr, "stream_maps:", named, "record.get('name')")


@pytest.mark.parametrize(
    "failure",
    [
        UnicodeEncodeError("latin-1", "KEY-☃-LEAK-5150", 4, 5, "ordinal not in range(256)"),
        requests.exceptions.InvalidHeader("Invalid header value b'Api-Key LEAK-5150\\n'"),
    ],
)
def test_unsendable_values_that_slip_through_are_not_echoed(
    caplog: pytest.LogCaptureFixture, failure: Exception
) -> None:
    assert _reported(caplog, failure) == 1
    [record] = caplog.records
    assert "LEAK-5150" not in record.getMessage()
    assert "api_key" in record.getMessage()


@pytest.mark.parametrize("stdout", ["closed", "/dev/full"])
def test_unwritable_standard_output_is_one_line_and_a_failure(
    sim: AmplitudeSimulator, tmp_path: Path, stdout: str
) -> None:
    # `tap >&-` and a full disk behind stdout: not a traceback, nor a misleading TMPDIR hint.
    config = tmp_path / "config.json"
    config.write_text(json.dumps(simulator_config(sim)))
    argv = [sys.executable, "-m", "tap_amplitude", "--config", str(config)]
    with Path(os.devnull if stdout == "closed" else stdout).open("wb") as out:
        result = subprocess.run(
            argv,
            stdout=subprocess.DEVNULL if stdout == "closed" else out,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=120,
            env=_clean_env(),
            cwd=ROOT,
            close_fds=True,
            preexec_fn=(lambda: os.close(1)) if stdout == "closed" else None,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    # A closed stdout is refused at start (a plain line); a full one mid-run is an ERROR line.
    errors = [line for line in result.stderr.splitlines() if "rite to standard output" in line]
    assert len(errors) == 1, result.stderr
    assert "ould not write to standard output" in errors[0]
    assert "TMPDIR" not in result.stderr


@pytest.mark.parametrize(
    ("batch_config", "named"),
    [
        (
            {
                "encoding": {"format": "jsonl", "compression": "gzip"},
                "storage": {"root": "file:///proc/none"},
            },
            "batch_config.storage.root file:///proc/none (FileNotFoundError",
        ),
        ({"encoding": {"format": "jsonl"}}, "batch_config needs 'encoding'"),
        pytest.param(
            {"encoding": {"format": "parquet"}, "storage": {"root": "file:///tmp"}},
            "'parquet' needs pyarrow",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("pyarrow") is not None, reason="pyarrow is installed"
            ),
        ),
    ],
)
def test_batch_files_that_cannot_be_written_are_one_line_before_any_request(
    sim: AmplitudeSimulator, tmp_path: Path, batch_config: dict[str, Any], named: str
) -> None:
    config = _write(tmp_path / "config.json", simulator_config(sim, batch_config=batch_config))
    catalog = _write(tmp_path / "catalog.json", _catalog_with(lambda _: None))
    before = len(sim.requests)
    result = _cli(["--config", str(config), "--catalog", str(catalog)])
    assert result.returncode == 1
    _assert_one_line(result.stderr, named, absent=("TMPDIR",))
    assert len(sim.requests) == before


def test_discovery_with_an_invalid_config_names_the_problems(tmp_path: Path) -> None:
    """Discovery needs no valid settings, so it goes on; the warning says what a sync lacks."""
    config = _write(tmp_path / "config.json", {"api_key": 5})
    result = _cli(["--config", str(config), "--discover"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["streams"]
    [warning] = [line for line in result.stderr.splitlines() if "| WARNING" in line]
    assert "api_key: expected a string" in warning
    assert "start_date" in warning


def test_a_404_for_an_api_url_with_a_path_says_so(sim: AmplitudeSimulator, tmp_path: Path) -> None:
    config = _write(
        tmp_path / "config.json", simulator_config(sim, api_url=f"{sim.url}/amplitude/v2")
    )
    catalog = _write(tmp_path / "catalog.json", _catalog_with(lambda _: None))
    result = _cli(["--config", str(config), "--catalog", str(catalog)])
    assert result.returncode == 1
    _assert_one_line(result.stderr, "HTTP 404", "it ends in a path (/amplitude/v2)")


@pytest.mark.parametrize("args", [["--help"], ["--about"], ["--about", "--format", "json"]])
def test_output_click_prints_into_a_full_stdout_is_one_line(
    tmp_path: Path, args: list[str]
) -> None:
    """Help, about and catalog text reach stdout at the last flush: a failure there counts."""
    executable = str(Path(sys.executable).with_name("tap-amplitude"))
    with Path("/dev/full").open("wb") as full:
        result = subprocess.run(
            [executable, *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=60,
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},  # as bare as `env -i`
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Exception ignored" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "rite to standard output" in line]
    assert len(lines) == 1, result.stderr
    assert "TMPDIR" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("TAP_AMPLITUDE_LOGLEVEL", "BOGUS", "TAP_AMPLITUDE_LOGLEVEL is not a log level"),
        ("LOGLEVEL", "5", "LOGLEVEL is not a log level"),
        ("SINGER_SDK_LOG_CONFIG", "{bad", "is not a YAML logging configuration"),
    ],
)
@pytest.mark.parametrize("program", ["tap-amplitude", "amplitude-privacy"])
def test_log_settings_the_sdk_would_fail_on_are_one_line(
    tmp_path: Path, program: str, variable: str, value: str, named: str
) -> None:
    if variable == "SINGER_SDK_LOG_CONFIG":
        (tmp_path / "logging.yml").write_text(value)
        value = str(tmp_path / "logging.yml")
    executable = str(Path(sys.executable).with_name(program))
    args = ["--about"] if program == "tap-amplitude" else ["lookup", "someone"]
    result = subprocess.run(
        [executable, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=_clean_env(**{variable: value}),
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"{program}: ")
    assert named in line


def test_a_dotenv_file_in_the_working_directory_fills_in_what_the_environment_lacks(
    sim: AmplitudeSimulator, tmp_path: Path
) -> None:
    config = simulator_config(sim)
    lines = [f"TAP_AMPLITUDE_{key.upper()}={value}" for key, value in config.items()]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    executable = str(Path(sys.executable).with_name("tap-amplitude"))

    def connection_test(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [executable, "--config", "ENV", "--test"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env=_clean_env(**env),
            cwd=tmp_path,
        )

    run = connection_test()
    assert run.returncode == 0, run.stderr
    wrong = connection_test(TAP_AMPLITUDE_SECRET_KEY="set-in-the-shell-wins")
    assert wrong.returncode == 1
    assert "refused the credentials" in wrong.stderr
