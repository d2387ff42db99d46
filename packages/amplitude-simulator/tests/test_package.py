"""The package's boundaries: no import of the tap, no import cycles, no shared state."""

from __future__ import annotations

import ast
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from amplitude_simulator import AmplitudeSimulator, Dataset

SOURCE = Path(__file__).resolve().parents[1] / "src" / "amplitude_simulator"
START = datetime(2024, 3, 1, tzinfo=timezone.utc)


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, type-checking-only imports included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def sources() -> list[Path]:
    paths = sorted(SOURCE.rglob("*.py"))
    assert len(paths) > 10
    return paths


def test_the_package_never_imports_the_tap() -> None:
    for path in sources():
        offending = {
            name for name in imported_modules(path) if name.split(".")[0] == "tap_amplitude"
        }
        assert not offending, f"{path.relative_to(SOURCE)} imports {sorted(offending)}"
        assert "tap_amplitude" not in path.read_text(encoding="utf-8"), path


def test_it_runs_where_the_tap_cannot_be_imported() -> None:
    code = (
        "import sys\n"
        "sys.modules['tap_amplitude'] = None  # any import of the tap now fails\n"
        "from datetime import datetime, timezone\n"
        "import urllib.request, base64\n"
        "from amplitude_simulator import AmplitudeSimulator, Dataset\n"
        "start = datetime(2024, 3, 1, tzinfo=timezone.utc)\n"
        "with AmplitudeSimulator(Dataset(start, start.replace(hour=3))) as sim:\n"
        "    token = base64.b64encode(f'{sim.project.api_key}:{sim.project.secret_key}'.encode())\n"
        "    auth = {'Authorization': 'Basic ' + token.decode()}\n"
        "    request = urllib.request.Request(sim.url + '/api/2/events/list', headers=auth)\n"
        "    print(urllib.request.urlopen(request, timeout=10).status)\n"
        "print(sorted(name for name in sys.modules if name.startswith('tap_amplitude')))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["200", "['tap_amplitude']"]  # only the blocker itself


def test_internal_imports_form_no_cycle_and_apis_never_import_the_server() -> None:
    modules = {module_name(path): path for path in sources()}
    graph = {
        name: {
            other
            for other in imported_modules(path)
            if other in modules and other != name and not name.startswith(f"{other}.")
        }
        for name, path in modules.items()
    }
    for name, targets in graph.items():
        if name.startswith("amplitude_simulator.api"):
            assert "amplitude_simulator.server" not in targets, name
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        assert state.get(name) != "active", " -> ".join([*trail, name])
        state[name] = "active"
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        state[name] = "done"

    for name in sorted(graph):
        visit(name, [])


def test_simulators_share_no_settings_or_state() -> None:
    dataset = Dataset(start=START, end=START + timedelta(hours=3))
    first, second = AmplitudeSimulator(dataset), AmplitudeSimulator(dataset)
    for name in ("export", "analytics", "deletions", "limits", "faults"):
        assert getattr(first, name) is not getattr(second, name), name
    first.export.max_events = 1
    first.deletions.bodies.append({"user_ids": ["x"]})
    assert second.export.max_events is None
    assert second.deletions.bodies == []
    assert first.deletions.jobs == second.deletions.jobs  # both seeded alike
    assert first.deletions.jobs is not second.deletions.jobs
