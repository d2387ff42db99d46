#!/usr/bin/env bash
# The project's pinned Meltano, in its own environment (.venv-meltano), run from the project root.
#
#   scripts/meltano.sh install                        install the plugins meltano.yml defines
#   scripts/meltano.sh run tap-amplitude target-jsonl duckdb:load
#
# The first call creates .venv-meltano with uv (installing uv with pip when it is missing).
# Meltano pins its own dependencies, so it never shares the project's .venv.
set -euo pipefail

MELTANO_VERSION=4.4.1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv-meltano"

uv() { if command -v uv >/dev/null 2>&1; then command uv "$@"; else python3 -m uv "$@"; fi; }

if [[ "$("$VENV/bin/meltano" --version 2>/dev/null)" != "meltano, version $MELTANO_VERSION" ]]; then
    if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
        echo "meltano.sh: installing uv with pip" >&2
        python3 -m pip install --quiet "uv==0.13.9"
    fi
    python=()
    if [[ -x "$ROOT/.venv/bin/python" ]]; then
        python=(--python "$ROOT/.venv/bin/python")  # the interpreter `uv sync` chose
    fi
    echo "meltano.sh: installing Meltano $MELTANO_VERSION into .venv-meltano" >&2
    uv venv --quiet --allow-existing ${python[@]+"${python[@]}"} "$VENV"
    uv pip install --quiet --compile-bytecode --python "$VENV/bin/python" "meltano==$MELTANO_VERSION"
fi

cd "$ROOT"
mkdir -p output  # where meltano.yml's loaders write by default (the directory must exist)
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=${MELTANO_SEND_ANONYMOUS_USAGE_STATS:-false}
export MELTANO_CLI_DISABLE_VERSION_CHECK=${MELTANO_CLI_DISABLE_VERSION_CHECK:-true}
exec "$VENV/bin/meltano" "$@"
