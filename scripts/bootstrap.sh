# shellcheck shell=bash
# Sourced (never run) by scripts/demo.sh, scripts/test.sh and scripts/meltano.sh: finds a real
# uv executable, installing the pinned one when there is none, and never touches the network
# for Python interpreters.
#
#   source "$ROOT/scripts/bootstrap.sh"
#   find_uv "$ROOT"            # sets UV_BIN to the path of a uv executable, or fails
#   "$UV_BIN" sync --locked
#
# Where uv comes from, first match wins:
#   1. a `uv` executable on PATH (`type -P` sees files only, never functions or aliases);
#   2. $ROOT/.venv-tools/bin/uv, when it is the pinned version;
#   3. otherwise the pinned uv is installed there with pip: into a venv made with
#      `python3 -m venv` (works where PEP 668 forbids installing into the system Python), or,
#      where the venv module is missing, with `pip install --target`.
# Only python3 (3.10+ for the project itself) with pip is needed; nothing goes to HOME.

TAP_AMPLITUDE_UV_VERSION=0.13.9

# uv must use the Pythons of this machine: no interpreter downloads, only package registries.
export UV_PYTHON_DOWNLOADS=never

# shellcheck disable=SC2034  # UV_BIN is what the scripts sourcing this file read
find_uv() {
    local root=$1
    local tools="$root/.venv-tools"
    local found
    if found=$(type -P uv); then
        UV_BIN=$found
        return 0
    fi
    if [[ -x "$tools/bin/uv" \
        && "$("$tools/bin/uv" --version 2>/dev/null)" == "uv $TAP_AMPLITUDE_UV_VERSION"* ]]; then
        UV_BIN="$tools/bin/uv"
        return 0
    fi
    if ! type -P python3 >/dev/null; then
        echo "bootstrap: neither uv nor python3 is on PATH; install Python 3.10+ with pip" >&2
        return 1
    fi
    echo "bootstrap: installing uv $TAP_AMPLITUDE_UV_VERSION with pip into ${tools#"$root/"}" >&2
    rm -rf "$tools"
    export PIP_ROOT_USER_ACTION=ignore  # CI runs as root; the install goes to a private venv
    if python3 -m venv "$tools" >/dev/null 2>&1 && [[ -x "$tools/bin/python" ]]; then
        "$tools/bin/python" -m pip install --quiet --disable-pip-version-check \
            "uv==$TAP_AMPLITUDE_UV_VERSION" || return 1
    else
        # No venv module (Debian without python3-venv): pip's --target needs neither a venv nor
        # permission to change the system Python, and puts the executable in $tools/bin.
        rm -rf "$tools"
        python3 -m pip install --quiet --disable-pip-version-check --target "$tools" \
            "uv==$TAP_AMPLITUDE_UV_VERSION" || {
            echo "bootstrap: could not install uv with pip; install uv or python3-venv" >&2
            return 1
        }
    fi
    if ! "$tools/bin/uv" --version >/dev/null 2>&1; then
        echo "bootstrap: $tools/bin/uv does not run after installing it" >&2
        return 1
    fi
    UV_BIN="$tools/bin/uv"
}
