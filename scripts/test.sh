#!/usr/bin/env bash
# Set up everything the tests need and run the whole suite: lint, typing, unit and integration
# tests against the bundled simulator, and the Meltano end-to-end tests (DuckDB, and a local
# PostgreSQL that is installed and started on 127.0.0.1 if missing).
#
#   ./scripts/test.sh                    everything
#   ./scripts/test.sh -m "not e2e" -x    any pytest arguments narrow the pytest run
#
# Needs only python3 with pip: uv comes from PATH or is installed into .venv-tools
# (scripts/bootstrap.sh), Meltano into .venv-meltano (scripts/meltano.sh).
# pytest's own exit status is this script's: 5 when no test was collected, never 0.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh
find_uv "$PWD"

# PYTHON_VERSION=3.12 ./scripts/test.sh tests one interpreter; by default uv picks one >= 3.10.
"$UV_BIN" sync --locked ${PYTHON_VERSION:+--python "$PYTHON_VERSION"}
"$UV_BIN" run --locked ruff check .
"$UV_BIN" run --locked ruff format --check .
"$UV_BIN" run --locked mypy
scripts/meltano.sh install
# Three workers: most tests wait on processes and sockets, not the CPU. Each file stays on one
# worker; the end-to-end tests take turns (a lock in tests/e2e/conftest.py), since they share
# one Meltano installation.
"$UV_BIN" run --locked pytest -n 3 --dist loadfile "$@"
