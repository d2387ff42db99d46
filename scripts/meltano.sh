#!/usr/bin/env bash
# The project's pinned Meltano, in its own environment (.venv-meltano), run from the project root.
#
#   scripts/meltano.sh install                        install the plugins meltano.yml defines
#   scripts/meltano.sh run tap-amplitude-batch target-duckdb-batch
#
# The first call creates .venv-meltano with uv (see scripts/bootstrap.sh: uv from PATH, or the
# pinned uv installed with pip into .venv-tools) and records the version it installed in
# .venv-meltano/tap-amplitude-meltano-version; later calls only read that file.
# Meltano pins its own dependencies, so it never shares the project's .venv.
#
# meltano.yml installs the tap from this directory as a package (`pip_url: .`), the way a
# released tap is installed, so that Meltano caches its catalog instead of running discovery on
# every run (it never caches for editable installs). Each call first checks whether anything
# under tap_amplitude/ (or pyproject.toml) changed since the tap was installed into Meltano's
# plugin environment; if so it reinstalls the tap there and drops the catalogs Meltano cached.
set -euo pipefail

MELTANO_VERSION=4.4.1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv-meltano"
STAMP="$VENV/tap-amplitude-meltano-version"

installed=
if [[ -x "$VENV/bin/meltano" && -x "$VENV/bin/python" && -f "$STAMP" ]]; then
    read -r installed <"$STAMP" || true
fi
if [[ "$installed" != "$MELTANO_VERSION" ]]; then
    # shellcheck source=scripts/bootstrap.sh
    source "$ROOT/scripts/bootstrap.sh"
    find_uv "$ROOT"
    python=()
    if [[ -x "$ROOT/.venv/bin/python" ]]; then
        python=(--python "$ROOT/.venv/bin/python")  # the interpreter `uv sync` chose
    fi
    echo "meltano.sh: installing Meltano $MELTANO_VERSION into .venv-meltano" >&2
    rm -f "$STAMP"
    "$UV_BIN" venv --quiet --allow-existing ${python[@]+"${python[@]}"} "$VENV"
    "$UV_BIN" pip install --quiet --compile-bytecode --python "$VENV/bin/python" \
        "meltano==$MELTANO_VERSION"
    if [[ "$("$VENV/bin/meltano" --version)" != "meltano, version $MELTANO_VERSION" ]]; then
        echo "meltano.sh: $VENV/bin/meltano is not Meltano $MELTANO_VERSION" >&2
        exit 1
    fi
    echo "$MELTANO_VERSION" >"$STAMP"
fi

# Reinstall the tap into Meltano's plugin environment when its sources changed (see above).
refresh_tap() {
    local sys_dir=${MELTANO_SYS_DIR_ROOT:-$ROOT/.meltano}
    local venv="$sys_dir/extractors/tap-amplitude/venv"
    local stamp="$venv/tap-amplitude-source-stamp"
    local since=$stamp
    [[ -f "$since" ]] || since="$venv/.meltano_plugin_fingerprint"
    [[ -f "$since" ]] || return 0 # not installed yet: `meltano install` (or `run`) installs it
    if [[ -z "$(find "$ROOT/tap_amplitude" "$ROOT/pyproject.toml" -type f ! -name '*.pyc' \
        -newer "$since" -print -quit)" ]]; then
        return 0
    fi
    echo "meltano.sh: tap_amplitude/ changed since it was installed; reinstalling it" >&2
    touch "$stamp.new"
    "$VENV/bin/uv" pip install --quiet --python "$venv/bin/python" \
        --reinstall-package tap-amplitude "$ROOT"
    rm -f "$sys_dir"/run/tap-amplitude*/tap.properties.cache_key
    mv "$stamp.new" "$stamp"
}

cd "$ROOT"
refresh_tap
mkdir -p output  # where meltano.yml's loaders write by default (the directory must exist)
export MELTANO_SEND_ANONYMOUS_USAGE_STATS=${MELTANO_SEND_ANONYMOUS_USAGE_STATS:-false}
export MELTANO_CLI_DISABLE_VERSION_CHECK=${MELTANO_CLI_DISABLE_VERSION_CHECK:-true}
exec "$VENV/bin/meltano" "$@"
