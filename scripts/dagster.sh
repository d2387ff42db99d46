#!/usr/bin/env bash
# Dagster's UI on this machine, against the bundled Amplitude simulator, loading PostgreSQL.
#
#   scripts/dagster.sh            then open http://127.0.0.1:3000 (Ctrl-C stops everything)
#
# 1. uv (on PATH, or the pinned one installed with pip into .venv-tools, see scripts/bootstrap.sh)
#    and the project's environment (`uv sync`, which includes the `dagster` extra);
# 2. target-postgres from meltano.yml (scripts/meltano.sh install, only when missing);
# 3. PostgreSQL on 127.0.0.1 (scripts/postgres.sh start; it installs PostgreSQL if missing);
# 4. the simulator on 127.0.0.1 with 3 days of data from 2024-03-01 (stopped on exit);
# 5. the tap's and target's config files and a Dagster instance under output/dagster/
#    (pool limit 3 per Amplitude project, run retries on; the rate budget shared through the
#    same PostgreSQL: rate_limits.backend);
# 6. dagster dev -m tap_amplitude.dagster.definitions
#
# Settings (environment): DAGSTER_PORT (3000), DAGSTER_SIM_PORT (8766), and scripts/postgres.sh's
# PG_DIR, PG_PORT (55432), PG_USER, PG_PASSWORD, PG_DATABASE.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PORT=${DAGSTER_PORT:-3000}
SIM_PORT=${DAGSTER_SIM_PORT:-8766}
OUT=$ROOT/output/dagster

step() { printf '\n==> %s\n' "$*" >&2; }

# shellcheck source=scripts/bootstrap.sh
source scripts/bootstrap.sh

step "Project environment (uv sync, with the dagster extra)"
find_uv "$ROOT"
"$UV_BIN" sync --locked --quiet

TARGET_POSTGRES=$ROOT/.meltano/loaders/target-postgres/venv/bin/target-postgres
if [[ ! -x "$TARGET_POSTGRES" ]]; then
    step "target-postgres (scripts/meltano.sh install)"
    scripts/meltano.sh --log-level warning install --plugin-type loader target-postgres
fi

step "PostgreSQL (scripts/postgres.sh start)"
eval "$(scripts/postgres.sh start)"

for port in "$PORT" "$SIM_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "Port $port is in use: set DAGSTER_PORT / DAGSTER_SIM_PORT to free ports" >&2
        exit 1
    fi
done

step "Amplitude simulator on 127.0.0.1:$SIM_PORT"
mkdir -p "$OUT/home"
.venv/bin/amplitude-simulator --port "$SIM_PORT" --start 2024-03-01 --days 3 \
    >"$OUT/simulator.log" 2>&1 &
SIMULATOR=$!
trap 'kill "$SIMULATOR" 2>/dev/null || true; wait "$SIMULATOR" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    grep -q "Amplitude simulator at" "$OUT/simulator.log" && break
    kill -0 "$SIMULATOR" 2>/dev/null || { cat "$OUT/simulator.log" >&2; exit 1; }
    sleep 0.1
done

step "Config files and the Dagster instance under output/dagster/"
umask 077  # the files hold keys and passwords
PG_URL="postgresql://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$PGDATABASE"
cat >"$OUT/tap.json" <<JSON
{
  "api_url": "http://127.0.0.1:$SIM_PORT",
  "profile_api_url": "http://127.0.0.1:$SIM_PORT",
  "api_key": "sim-api-key-0123456789",
  "secret_key": "sim-secret-key-9876543210",
  "project_id": 187520,
  "start_date": "2024-03-01T00:00:00Z",
  "rate_limits": {"backend": "$PG_URL"}
}
JSON
cat >"$OUT/target-postgres.json" <<JSON
{
  "host": "$PGHOST", "port": $PGPORT, "user": "$PGUSER", "password": "$PGPASSWORD",
  "database": "$PGDATABASE", "default_target_schema": "amplitude", "use_copy": true
}
JSON
cat >"$OUT/home/dagster.yaml" <<'YAML'
# Written by scripts/dagster.sh. At most 3 partitions of one Amplitude project at once (README,
# "Dagster"); a run that fails as a whole is re-launched twice.
concurrency:
  pools:
    default_limit: 3
run_retries:
  enabled: true
  max_retries: 2
telemetry:
  enabled: false
YAML
umask 022

export DAGSTER_HOME=$OUT/home
export TAP_AMPLITUDE_DAGSTER_TAP_CONFIG=$OUT/tap.json
export TAP_AMPLITUDE_DAGSTER_TARGET="$TARGET_POSTGRES --config $OUT/target-postgres.json"
# The simulator's three days: 72 hourly partitions.
export TAP_AMPLITUDE_DAGSTER_START=${TAP_AMPLITUDE_DAGSTER_START:-2024-03-01T00:00:00Z}
export TAP_AMPLITUDE_DAGSTER_END=${TAP_AMPLITUDE_DAGSTER_END:-2024-03-04T00:00:00Z}

step "dagster dev on http://127.0.0.1:$PORT (Ctrl-C stops it)"
cat >&2 <<EOF
Open http://127.0.0.1:$PORT: Assets > amplitude/187520/export_events > Materialize, pick a
range of 2024-03-01 .. 2024-03-03 partitions, and watch each one's status. Or from a shell:
  DAGSTER_HOME=$OUT/home .venv/bin/dagster job backfill -m tap_amplitude.dagster.definitions \\
    -j amplitude_187520_export --partitions 2024-03-01-00:00,2024-03-01-01:00 --noprompt
Then: psql -c "select count(*) from amplitude.export_events"  (after eval "\$(scripts/postgres.sh env)")
EOF
.venv/bin/dagster dev -m tap_amplitude.dagster.definitions -h 127.0.0.1 -p "$PORT" &
DAGSTER=$!
stop() {
    kill "$DAGSTER" 2>/dev/null || true
    wait "$DAGSTER" 2>/dev/null || true
    kill "$SIMULATOR" 2>/dev/null || true
    wait "$SIMULATOR" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
wait "$DAGSTER"
