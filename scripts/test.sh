#!/usr/bin/env bash
# Set up everything the tests need and run the whole suite: lint, typing, unit and integration
# tests against the bundled simulator, and the Meltano end-to-end tests (DuckDB, and a local
# PostgreSQL that is installed and started on 127.0.0.1 if missing).
#
#   ./scripts/test.sh                    everything
#   ./scripts/test.sh -m "not e2e" -x    any pytest arguments narrow the pytest run
set -euo pipefail
cd "$(dirname "$0")/.."

export UV_PYTHON_DOWNLOADS=never
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet "uv==0.13.9" || python3 -m pip install --quiet --user "uv==0.13.9"
    export PATH="$HOME/.local/bin:$PATH"
fi

# PYTHON_VERSION=3.12 ./scripts/test.sh tests one interpreter; by default uv picks one >= 3.10.
uv sync --locked ${PYTHON_VERSION:+--python "$PYTHON_VERSION"}
uv run ruff check .
uv run ruff format --check .
uv run mypy
scripts/meltano.sh install
uv run pytest "$@"
