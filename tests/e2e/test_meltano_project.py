"""meltano.yml describes the tap exactly as the tap describes itself (``--about``)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

from amplitude_simulator import Project
from amplitude_simulator.__main__ import DEFAULT_PORT
from tests.e2e.support import ROOT

if TYPE_CHECKING:
    from tests.e2e.support import Meltano

pytestmark = pytest.mark.e2e

MELTANO_PYTHON = ROOT / ".venv-meltano" / "bin" / "python"


def meltano_yml() -> dict[str, Any]:
    """meltano.yml, parsed by the YAML library Meltano itself uses."""
    code = "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)"
    result = subprocess.run(
        [str(MELTANO_PYTHON), "-c", code, str(ROOT / "meltano.yml")],
        capture_output=True,
        text=True,
        check=True,
    )
    project: dict[str, Any] = json.loads(result.stdout)
    return project


def about() -> dict[str, Any]:
    """``tap-amplitude --about --format json``."""
    result = subprocess.run(
        [sys.executable, "-m", "tap_amplitude", "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    info: dict[str, Any] = json.loads(result.stdout)
    return info


def plugin(project: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    """One plugin definition from meltano.yml."""
    (found,) = [p for p in project["plugins"][kind] if p["name"] == name]
    definition: dict[str, Any] = found
    return definition


def expected_kind(schema: dict[str, Any]) -> str:
    """The Meltano setting kind that matches a JSON-schema property."""
    if "enum" in schema:
        return "options"
    if schema.get("format") == "date-time":
        return "date_iso8601"
    types = set(schema.get("type", [])) - {"null"}
    kinds = {"string", "integer", "boolean", "array", "object"}
    (kind,) = types or {"object"}  # anyOf-only schemas (stream maps) are objects
    return kind if kind in kinds else "decimal"


def words(text: str | None) -> str:
    """Text with whitespace normalised (YAML folds long descriptions)."""
    return " ".join((text or "").split())


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return meltano_yml()


def test_extractor_settings_match_about(project: dict[str, Any]) -> None:
    info = about()
    properties: dict[str, dict[str, Any]] = info["settings"]["properties"]
    extractor = plugin(project, "extractors", "tap-amplitude")
    settings = {setting["name"]: setting for setting in extractor["settings"]}

    assert list(settings) == list(properties)
    for name, schema in properties.items():
        setting = settings[name]
        assert setting["kind"] == expected_kind(schema), name
        assert setting.get("sensitive", False) == schema.get("secret", False), name
        assert setting.get("label") == schema.get("title"), name
        assert words(setting.get("description")) == words(schema.get("description")), name
        if "enum" in schema:
            assert [option["value"] for option in setting["options"]] == schema["enum"], name
        assert setting.get("value") == schema.get("default"), name
    assert sorted(extractor["capabilities"]) == sorted(info["capabilities"])
    # The keys are required by the tap's config check unless only the bucket is read.
    required = info["settings"]["required"]
    assert extractor["settings_group_validation"] == [
        ["api_key", "secret_key", *required],
        ["storage_export_url", *required],
    ]


def test_dev_environment_points_at_the_simulator(project: dict[str, Any]) -> None:
    (dev,) = [env for env in project["environments"] if env["name"] == "dev"]
    config = plugin(dev["config"], "extractors", "tap-amplitude")["config"]
    simulator = Project()
    assert config["api_key"] == simulator.api_key
    assert config["secret_key"] == simulator.secret_key
    assert config["project_id"] == simulator.app_id
    assert config["api_url"] == f"http://127.0.0.1:{DEFAULT_PORT}"
    assert project["default_environment"] == "dev"


def test_meltano_treats_the_keys_as_secrets(meltano: Meltano, project: dict[str, Any]) -> None:
    printed = json.loads(meltano.run("config", "print", "tap-amplitude", "--format", "json").stdout)
    masked = {name for name, value in printed.items() if value == "*****"}
    properties = about()["settings"]["properties"]
    secret = {name for name, schema in properties.items() if schema.get("secret")}
    assert {"api_key", "secret_key", "org_api_key", "org_secret_key", "storage_options"} <= secret
    # the keys the dev environment sets are masked, and nothing that is not secret is
    assert {"api_key", "secret_key"} <= masked <= secret
    declared = {s["name"]: s for s in plugin(project, "extractors", "tap-amplitude")["settings"]}
    assert all(declared[name].get("sensitive") for name in secret)


def test_duckdb_target_is_described_as_it_describes_itself(project: dict[str, Any]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "target_duckdb_batch", "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(result.stdout)
    properties: dict[str, dict[str, Any]] = info["settings"]["properties"]
    loader = plugin(project, "loaders", "target-duckdb-batch")
    assert sorted(loader["capabilities"]) == sorted(info["capabilities"])
    for setting in loader["settings"]:
        schema = properties[setting["name"]]  # every setting is one the target knows
        assert setting["kind"] == expected_kind(schema), setting["name"]
        assert setting.get("value") == schema.get("default"), setting["name"]
    # The demo job and the recommended PostgreSQL job load BATCH files.
    jobs = {job["name"]: job["tasks"] for job in project["jobs"]}
    assert jobs["demo"] == ["tap-amplitude-batch target-duckdb-batch"]
    assert jobs["postgres"] == ["tap-amplitude-batch target-postgres"]
    targets = {p["name"]: p for p in project["plugins"]["loaders"]}
    assert targets["target-postgres"]["config"]["validate_records"] is False
