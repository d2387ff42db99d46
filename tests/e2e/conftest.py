"""End-to-end fixtures: the pinned Meltano, a PostgreSQL server on loopback, the simulator.

Nothing here is mocked. Meltano runs from ``scripts/meltano.sh`` with the plugins of
``meltano.yml`` (installed once, then reused), PostgreSQL is started by
``scripts/postgres.sh`` (which installs it when the binaries are missing), and every tap
process reads the simulator over HTTP.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from filelock import FileLock

from amplitude_simulator import AmplitudeSimulator
from tests.e2e.support import (
    E2E_DATASET,
    POSTGRES_SH,
    ROOT,
    Meltano,
    Postgres,
    clean_environ,
    free_port,
    iso,
    plugins_installed,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

# Every end-to-end test uses the project's one Meltano installation (its run files, its
# catalog cache) and PostgreSQL: under ``pytest -n N`` they take turns, holding this lock.
E2E_LOCK = ROOT / ".meltano" / "e2e-tests.lock"


@pytest.fixture(autouse=True)
def one_e2e_test_at_a_time() -> Iterator[None]:
    """Run end-to-end tests one after another, whichever pytest-xdist worker has them."""
    E2E_LOCK.parent.mkdir(exist_ok=True)
    with FileLock(str(E2E_LOCK)):
        yield


@pytest.fixture(scope="session")
def meltano_session(tmp_path_factory: pytest.TempPathFactory) -> Meltano:
    """Meltano with every plugin installed (``.ci/run`` installs them before the tests).

    ``meltano install`` runs here only when a plugin has never been installed: it reinstalls
    and clears the plugins' run files, which would break a pipeline another session is running.
    Afterwards ``meltano run`` reinstalls a plugin by itself when its ``pip_url`` changed
    (Meltano's auto-install compares fingerprints).
    """
    env = clean_environ()
    env["MELTANO_ENVIRONMENT"] = "dev"
    meltano = Meltano(env, tmp_path_factory.mktemp("meltano-install"))
    if not plugins_installed():
        meltano.run("install", timeout=900)
    return meltano


@pytest.fixture
def meltano(meltano_session: Meltano, tmp_path: Path) -> Meltano:
    """Meltano with a fresh system database, so each test starts without state."""
    env = dict(meltano_session.env)
    env["MELTANO_DATABASE_URI"] = f"sqlite:///{tmp_path / 'meltano.db'}"
    logs = tmp_path / "logs"
    logs.mkdir()
    return Meltano(env, logs)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server on 127.0.0.1 (installed with apt-get when missing), per session.

    The cluster lives in a fresh directory under the system temp dir: when the tests run as
    root, the server runs as the ``postgres`` user, which must be able to reach it.
    """
    directory = Path(tempfile.mkdtemp(prefix="tap-amplitude-e2e-pg-"))
    env = {**clean_environ(), "PG_DIR": str(directory), "PG_PORT": str(free_port())}
    started = subprocess.run(
        [str(POSTGRES_SH), "start"], env=env, capture_output=True, text=True, check=False
    )
    assert started.returncode == 0, started.stderr
    exports = (line.removeprefix("export ") for line in started.stdout.splitlines())
    settings = dict(line.split("=", 1) for line in exports if "=" in line)
    bindir = subprocess.run(
        [str(POSTGRES_SH), "bindir"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield Postgres(Path(bindir), settings)
    finally:
        subprocess.run([str(POSTGRES_SH), "destroy"], env=env, capture_output=True, check=False)


@pytest.fixture
def simulator() -> Iterator[AmplitudeSimulator]:
    """The simulator serving the e2e dataset on a free port, one per test."""
    with AmplitudeSimulator(E2E_DATASET) as sim:
        yield sim


@pytest.fixture
def tap_env(simulator: AmplitudeSimulator) -> dict[str, str]:
    """Point the dev environment's tap-amplitude at this test's simulator."""
    return {
        "TAP_AMPLITUDE_API_URL": simulator.url,
        "TAP_AMPLITUDE_PROFILE_API_URL": simulator.url,
        "TAP_AMPLITUDE_START_DATE": iso(E2E_DATASET.start),
    }
