#!/usr/bin/env bash
# Set up everything the tests need (uv, the locked environment) and run the whole suite:
# lint, typing, unit and integration tests against the bundled simulator.
set -euo pipefail
cd "$(dirname "$0")/.."

export UV_PYTHON_DOWNLOADS=never
if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
    python3 -m pip install --quiet "uv==0.13.9"
fi
uv() { if command -v uv >/dev/null 2>&1; then command uv "$@"; else python3 -m uv "$@"; fi; }

uv sync --locked --python "${PYTHON_VERSION:-3.11}"
uv run ruff check .
uv run ruff format --check .
uv run mypy
uv run pytest "$@"
