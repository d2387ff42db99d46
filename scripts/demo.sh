#!/usr/bin/env bash
# First run: the whole pipeline on this machine, against the bundled Amplitude simulator.
#
#   scripts/demo.sh
#
# 1. uv (on PATH, or the pinned one installed with pip into .venv-tools, see scripts/bootstrap.sh)
#    and the project's environment (`uv sync`);
# 2. Meltano 4.4.1 in .venv-meltano, then the plugins meltano.yml defines;
# 3. the simulator on 127.0.0.1:8765 with 3 days of data from 2024-03-01 (stopped on exit);
# 4. meltano run tap-amplitude-batch target-duckdb-batch   -> output/warehouse.duckdb
#    (the tap writes gzipped JSON-lines BATCH files under output/batches; the project's DuckDB
#    target, packages/target-duckdb-batch, loads them with DuckDB's read_json)
# 5. what arrived: rows per stream, a few events, events per day.
#
# Run it again: Meltano keeps the bookmark, so the second run fetches no new events and the
# tables stay as they are. DEMO_PORT picks another port if 8765 is taken.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${DEMO_PORT:-8765}
START=2024-03-01  # the dev environment in meltano.yml reads 2024-03-01 .. 2024-03-04
DAYS=3

step() { printf '\n==> %s\n' "$*"; }

# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh

step "Project environment (uv sync)"
find_uv "$PWD"
"$UV_BIN" sync --locked --quiet

step "Meltano and the demo's plugins (scripts/meltano.sh install)"
# Only what the demo runs; `meltano run` installs any other plugin of meltano.yml on first use.
scripts/meltano.sh --log-level warning install tap-amplitude-batch target-duckdb-batch duckdb

step "Amplitude simulator on 127.0.0.1:$PORT"
mkdir -p output
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "Port $PORT is in use. Stop whatever listens there, or run DEMO_PORT=<port> $0" >&2
    exit 1
fi
.venv/bin/amplitude-simulator --port "$PORT" --start "$START" --days "$DAYS" \
    >output/simulator.log 2>&1 &
SIMULATOR=$!
trap 'kill "$SIMULATOR" 2>/dev/null || true; wait "$SIMULATOR" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    grep -q "Amplitude simulator at" output/simulator.log && break
    kill -0 "$SIMULATOR" 2>/dev/null || { cat output/simulator.log >&2; exit 1; }
    sleep 0.1
done
cat output/simulator.log
export TAP_AMPLITUDE_API_URL="http://127.0.0.1:$PORT" TAP_AMPLITUDE_PROFILE_API_URL="http://127.0.0.1:$PORT"

step "meltano run tap-amplitude-batch target-duckdb-batch"
scripts/meltano.sh run tap-amplitude-batch target-duckdb-batch

step "What arrived (meltano invoke duckdb:summary)"
scripts/meltano.sh --log-level warning invoke duckdb:summary

cat <<'EOF'

Done. The tables are in output/warehouse.duckdb (schema "amplitude"). Try:
  scripts/meltano.sh invoke duckdb:query "select event_type, count(*) from amplitude.export_events group by 1 order by 2 desc"
  scripts/meltano.sh state get dev:tap-amplitude-batch-to-target-duckdb-batch   # the bookmark
EOF
