"""The README's commands on a machine without uv: how scripts/*.sh find or install it.

Each test runs the real scripts (copied into a temporary project root) under a PATH that holds
only stub programs and a few system tools, and no uv: ``python3`` is a stub whose ``-m venv``
and ``-m pip install uv==…`` write a stub ``uv`` executable, so nothing touches the network and
every call is logged. The fresh-machine run with the real tools is ``.ci/run``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
SHELL_SCRIPTS = [*sorted(SCRIPTS.glob("*.sh")), ROOT / ".ci" / "run"]
BOOTSTRAP = SCRIPTS / "bootstrap.sh"
UV_VERSION = re.search(
    r"^TAP_AMPLITUDE_UV_VERSION=(\S+)$",
    BOOTSTRAP.read_text() if BOOTSTRAP.exists() else "",
    re.MULTILINE,
)
PINNED_UV = UV_VERSION.group(1) if UV_VERSION else "0.0.0"  # tests fail on "missing"
MELTANO_VERSION = "4.4.1"
SYSTEM_TOOLS = ("bash", "env", "rm", "mkdir", "chmod", "cat", "cp", "dirname")

# `python3 -m venv DIR` makes DIR/bin/python; `python3 -m pip install --target DIR uv==V` puts
# uv in DIR/bin; a plain `python3 -m pip install` is refused as on a PEP 668 system Python.
PYTHON3 = r"""#!/usr/bin/env bash
echo "python3 $*" >>"$FAKE_LOG"
if [[ "$1 $2" == "-m venv" ]]; then
    [[ -z "${FAKE_NO_VENV:-}" ]] || { echo "No module named venv" >&2; exit 1; }
    dir=${*: -1}
    mkdir -p "$dir/bin"
    cp "$FAKE_TEMPLATES/venv-python" "$dir/bin/python"
    exit 0
fi
if [[ "$1 $2 $3" == "-m pip install" ]]; then
    args=("$@")
    for i in "${!args[@]}"; do
        if [[ "${args[$i]}" == --target ]]; then
            target=${args[$((i + 1))]}
            mkdir -p "$target/bin"
            cp "$FAKE_TEMPLATES/uv" "$target/bin/uv"
            exit 0
        fi
    done
    echo "error: externally-managed-environment" >&2
    exit 1
fi
echo "python3 stub: unexpected arguments: $*" >&2
exit 3
"""

# A venv's python: `-m pip install ... uv==V` installs the uv stub next to it.
VENV_PYTHON = r"""#!/usr/bin/env bash
echo "venv-python $*" >>"$FAKE_LOG"
if [[ "$1 $2 $3" == "-m pip install" && "${*: -1}" == "uv=="* ]]; then
    cp "$FAKE_TEMPLATES/uv" "$(dirname "$0")/uv"
    exit 0
fi
exit 3
"""

# uv: `venv DIR` makes DIR/bin/python, `pip install --python P meltano==V` puts Meltano next to
# P; `run ... pytest` exits with $FAKE_PYTEST_RC, `sync` with $FAKE_SYNC_RC.
UV = r"""#!/usr/bin/env bash
echo "$0 $*" >>"$FAKE_LOG"
case "$1" in
    --version) echo "uv @VERSION@ (stub)" ;;
    venv)
        mkdir -p "${*: -1}/bin"
        cp "$FAKE_TEMPLATES/venv-python" "${*: -1}/bin/python"
        ;;
    pip)
        args=("$@")
        for i in "${!args[@]}"; do
            [[ "${args[$i]}" == --python ]] && python=${args[$((i + 1))]}
        done
        cp "$FAKE_TEMPLATES/meltano" "$(dirname "$python")/meltano"
        ;;
    sync) exit "${FAKE_SYNC_RC:-0}" ;;
    run) [[ " $* " != *" pytest "* ]] || exit "${FAKE_PYTEST_RC:-0}" ;;
esac
"""

MELTANO = r"""#!/usr/bin/env bash
echo "meltano $*" >>"$FAKE_LOG"
if [[ "$1" == --version ]]; then echo "meltano, version @VERSION@"; exit 0; fi
echo "meltano $* | cwd=$PWD" \
    "stats=${MELTANO_SEND_ANONYMOUS_USAGE_STATS-unset}" \
    "check=${MELTANO_CLI_DISABLE_VERSION_CHECK-unset}"
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


@dataclass
class Machine:
    """A project root and a PATH without uv, with a stub python3 that can install one."""

    root: Path
    path: str
    log: Path
    templates: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": self.path,
            "HOME": str(self.root.parent / "home"),
            "FAKE_LOG": str(self.log),
            "FAKE_TEMPLATES": str(self.templates),
            **extra,
        }

    def run(self, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            cwd=self.root,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def bootstrap(self, before: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
        """Source scripts/bootstrap.sh, run find_uv, print what UV_BIN is and what it says."""
        script = f"""set -euo pipefail
{before}
source scripts/bootstrap.sh
find_uv "$PWD"
echo "UV_BIN=$UV_BIN"
echo "type=$(type -t "$UV_BIN")"
echo "version=$("$UV_BIN" --version)"
echo "downloads=$UV_PYTHON_DOWNLOADS"
"""
        return self.run("bash", "-c", script, **extra)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    for script in ("bootstrap.sh", "meltano.sh", "demo.sh", "test.sh"):
        if (SCRIPTS / script).exists():
            shutil.copy2(SCRIPTS / script, root / "scripts" / script)
    (tmp_path / "home").mkdir()
    templates = tmp_path / "templates"
    _write(templates / "uv", UV.replace("@VERSION@", PINNED_UV))
    _write(templates / "venv-python", VENV_PYTHON)
    _write(templates / "meltano", MELTANO.replace("@VERSION@", MELTANO_VERSION))
    stubs = tmp_path / "stubs"
    _write(stubs / "python3", PYTHON3)
    system = tmp_path / "system"  # only these tools, so a uv in /usr/bin cannot leak in
    system.mkdir()
    for tool in SYSTEM_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run the scripts"
        (system / tool).symlink_to(found)
    return Machine(root, f"{stubs}:{system}", tmp_path / "calls.log", templates)


def _fields(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda path: path.name)
def test_no_script_defines_a_function_named_uv(script: Path) -> None:
    # A function named uv makes `command -v uv` succeed, so uv was never installed (issue #9).
    definition = re.compile(r"^\s*(function\s+uv\b|uv\s*\(\s*\))", re.MULTILINE)
    assert not definition.search(script.read_text())


def test_bootstrap_installs_the_pinned_uv_into_a_tools_venv(machine: Machine) -> None:
    assert UV_VERSION, "scripts/bootstrap.sh pins no uv version"
    # Even with a shell function named uv defined, find_uv must land on an executable file.
    result = machine.bootstrap(before='uv() { echo "a shell function"; }')
    assert result.returncode == 0, result.stderr
    fields = _fields(result.stdout)
    tools_uv = machine.root / ".venv-tools" / "bin" / "uv"
    assert fields["UV_BIN"] == str(tools_uv)
    assert fields["type"] == "file"
    assert fields["version"] == f"uv {PINNED_UV} (stub)"
    assert fields["downloads"] == "never"
    assert machine.calls()[:2] == [
        f"python3 -m venv {machine.root}/.venv-tools",
        f"venv-python -m pip install --quiet --disable-pip-version-check uv=={PINNED_UV}",
    ]


def test_bootstrap_falls_back_to_pip_target_without_the_venv_module(machine: Machine) -> None:
    result = machine.bootstrap(FAKE_NO_VENV="1")
    assert result.returncode == 0, result.stderr
    assert _fields(result.stdout)["UV_BIN"] == str(machine.root / ".venv-tools" / "bin" / "uv")
    assert f"--target {machine.root}/.venv-tools uv=={PINNED_UV}" in machine.calls()[1]


def test_bootstrap_reuses_the_tools_venv_and_replaces_another_version(machine: Machine) -> None:
    tools_uv = machine.root / ".venv-tools" / "bin" / "uv"
    _write(tools_uv, (machine.templates / "uv").read_text())
    result = machine.bootstrap()
    assert result.returncode == 0, result.stderr
    assert _fields(result.stdout)["UV_BIN"] == str(tools_uv)
    assert not [call for call in machine.calls() if call.startswith("python3")]

    _write(tools_uv, '#!/usr/bin/env bash\necho "uv 0.1.0"\n')
    result = machine.bootstrap()
    assert result.returncode == 0, result.stderr
    assert _fields(result.stdout)["version"] == f"uv {PINNED_UV} (stub)"
    assert f"python3 -m venv {machine.root}/.venv-tools" in machine.calls()


def test_bootstrap_prefers_a_uv_on_path(machine: Machine, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    _write(elsewhere / "uv", (machine.templates / "uv").read_text())
    result = machine.bootstrap(PATH=f"{elsewhere}:{machine.path}")
    assert result.returncode == 0, result.stderr
    assert _fields(result.stdout)["UV_BIN"] == str(elsewhere / "uv")
    assert not (machine.root / ".venv-tools").exists()


def test_bootstrap_fails_loudly_when_pip_cannot_install(machine: Machine) -> None:
    stubs = Path(machine.path.split(":")[0])
    _write(stubs / "python3", "#!/usr/bin/env bash\nexit 1\n")
    result = machine.bootstrap()
    assert result.returncode != 0
    assert "could not install uv with pip" in result.stderr
    assert "UV_BIN=" not in result.stdout


def test_meltano_sh_installs_meltano_without_uv_on_path(machine: Machine) -> None:
    result = machine.run("scripts/meltano.sh", "install")
    assert result.returncode == 0, result.stderr
    tools_uv = f"{machine.root}/.venv-tools/bin/uv"
    venv = f"{machine.root}/.venv-meltano"
    calls = machine.calls()
    assert f"{tools_uv} venv --quiet --allow-existing {venv}" in calls
    assert any(
        call.startswith(f"{tools_uv} pip install") and f"meltano=={MELTANO_VERSION}" in call
        for call in calls
    )
    stamp = machine.root / ".venv-meltano" / "tap-amplitude-meltano-version"
    assert stamp.read_text().strip() == MELTANO_VERSION
    assert result.stdout.startswith(f"meltano install | cwd={machine.root} ")


def test_meltano_sh_trusts_its_stamp_and_skips_meltano_version(machine: Machine) -> None:
    venv = machine.root / ".venv-meltano"
    _write(venv / "bin" / "python", "#!/usr/bin/env bash\n")
    _write(venv / "bin" / "meltano", (machine.templates / "meltano").read_text())
    (venv / "tap-amplitude-meltano-version").write_text(f"{MELTANO_VERSION}\n")
    result = machine.run("scripts/meltano.sh", "state", "list")
    assert result.returncode == 0, result.stderr
    expected = f"meltano state list | cwd={machine.root} stats=false check=true"
    assert result.stdout.strip() == expected
    assert machine.calls() == ["meltano state list"]  # no `meltano --version`, no installs

    # The user's own choices for Meltano's telemetry and version check are kept.
    result = machine.run(
        "scripts/meltano.sh",
        "run",
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="true",
        MELTANO_CLI_DISABLE_VERSION_CHECK="false",
    )
    assert result.stdout.strip().endswith("stats=true check=false")


def test_test_sh_runs_every_step_with_the_installed_uv(machine: Machine) -> None:
    _write(
        machine.root / "scripts" / "meltano.sh",
        '#!/usr/bin/env bash\necho "meltano.sh $*" >>"$FAKE_LOG"\n',
    )
    result = machine.run("scripts/test.sh", "-m", "not e2e")
    assert result.returncode == 0, result.stderr
    tools_uv = f"{machine.root}/.venv-tools/bin/uv"
    steps = [call for call in machine.calls() if not call.startswith(("python3", "venv-python"))]
    assert steps == [
        f"{tools_uv} --version",
        f"{tools_uv} sync --locked",
        f"{tools_uv} run --locked ruff check .",
        f"{tools_uv} run --locked ruff format --check .",
        f"{tools_uv} run --locked mypy",
        "meltano.sh install",
        f"{tools_uv} run --locked pytest -n 3 --dist loadfile -m not e2e",
    ]


@pytest.mark.parametrize("status", [1, 5])  # 5: pytest collected no tests
def test_test_sh_fails_when_pytest_does(machine: Machine, status: int) -> None:
    _write(machine.root / "scripts" / "meltano.sh", "#!/usr/bin/env bash\n")
    result = machine.run("scripts/test.sh", "-k", "nothing", FAKE_PYTEST_RC=str(status))
    assert result.returncode == status


def test_demo_sh_syncs_the_project_with_the_installed_uv(machine: Machine) -> None:
    # The stub's `uv sync` fails on purpose: the demo must stop there, with its status.
    result = machine.run("scripts/demo.sh", FAKE_SYNC_RC="42")
    assert result.returncode == 42, result.stderr
    assert "command not found" not in result.stderr
    assert f"{machine.root}/.venv-tools/bin/uv sync --locked --quiet" in machine.calls()


def test_scripts_are_executable_bash() -> None:
    for script in SHELL_SCRIPTS:
        first = script.read_text().splitlines()[0]
        if script.name == "bootstrap.sh":
            assert first == "# shellcheck shell=bash"  # sourced, never executed
        else:
            assert first == "#!/usr/bin/env bash", script
            assert os.access(script, os.X_OK), f"{script} is not executable"
