#!/usr/bin/env bash
# A throw-away PostgreSQL server on loopback for the demo and the end-to-end tests.
#
#   scripts/postgres.sh start   install PostgreSQL if missing, initdb (first time), start,
#                               create the database, print connection settings
#   scripts/postgres.sh env     print the connection settings: after
#                               eval "$(scripts/postgres.sh env)", psql needs no arguments
#   scripts/postgres.sh status  exit 0 when the server runs
#   scripts/postgres.sh stop    stop the server (the data directory stays)
#   scripts/postgres.sh destroy stop the server and delete its directory
#   scripts/postgres.sh bindir  print the directory of psql, pg_ctl, ... (installing if missing)
#
# Settings (environment):
#   PG_DIR       where the cluster lives (default: $TMPDIR/tap-amplitude-postgres)
#   PG_PORT      TCP port on 127.0.0.1 (default: 55432)
#   PG_USER      superuser created by initdb (default: postgres)
#   PG_PASSWORD  its password; TCP connections need it (default: postgres)
#   PG_DATABASE  database created on start (default: amplitude)
#
# Runs as root (PostgreSQL refuses that) by handing the cluster to the `postgres` system user,
# which Debian's package creates. Local connections only: listen_addresses=127.0.0.1.
set -euo pipefail

PG_DIR=${PG_DIR:-${TMPDIR:-/tmp}/tap-amplitude-postgres}
PG_PORT=${PG_PORT:-55432}
PG_USER=${PG_USER:-postgres}
PG_PASSWORD=${PG_PASSWORD:-postgres}
PG_DATABASE=${PG_DATABASE:-amplitude}
DATA="$PG_DIR/data"
LOG="$PG_DIR/postgres.log"

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local dir
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
        if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

install_postgres() {
    log "PostgreSQL binaries not found; installing Debian's postgresql package"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo=(sudo)
    fi
    ${sudo[@]+"${sudo[@]}"} apt-get update -qq
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq postgresql >/dev/null
}

bindir() {
    local dir
    if ! dir=$(find_bindir); then
        install_postgres
        dir=$(find_bindir) || { log "no initdb/pg_ctl after installing postgresql"; exit 1; }
    fi
    echo "$dir"
}

# Run a PostgreSQL server program as a user it accepts (never root).
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

print_env() {
    cat <<EOF
export PGHOST=127.0.0.1
export PGPORT=$PG_PORT
export PGUSER=$PG_USER
export PGPASSWORD=$PG_PASSWORD
export PGDATABASE=$PG_DATABASE
EOF
}

is_running() {
    [[ -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
    mkdir -p "$PG_DIR"
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$PG_DIR"
    fi
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        local pwfile="$PG_DIR/.pwfile"
        printf '%s\n' "$PG_PASSWORD" >"$pwfile"
        if [[ $(id -u) -eq 0 ]]; then
            chown postgres: "$pwfile"
        fi
        as_owner "$BIN/initdb" -D "$DATA" -U "$PG_USER" --pwfile="$pwfile" -E UTF8 \
            --no-locale --auth-local=trust --auth-host=scram-sha-256 >"$PG_DIR/initdb.log"
        rm -f "$pwfile"
    fi
    if ! is_running; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off" \
            start >/dev/null || { log "start failed; see $LOG"; tail -n 20 "$LOG" >&2; exit 1; }
    fi
    # Create the database through the Unix socket (trusted), if it is not there yet.
    if ! as_owner "$BIN/psql" -h "$PG_DIR" -p "$PG_PORT" -U "$PG_USER" -d postgres -tAq \
        -c "select 1 from pg_database where datname = '$PG_DATABASE'" | grep -q 1; then
        as_owner "$BIN/createdb" -h "$PG_DIR" -p "$PG_PORT" -U "$PG_USER" "$PG_DATABASE"
    fi
    log "PostgreSQL $(cat "$DATA/PG_VERSION") runs on 127.0.0.1:$PG_PORT (data: $DATA)"
    print_env
}

stop() {
    if is_running; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
        log "stopped the server in $DATA"
    fi
}

BIN=$(bindir)
case "${1:-}" in
    start) start ;;
    stop) stop ;;
    destroy)
        stop
        rm -rf "$PG_DIR"
        ;;
    status) is_running ;;
    env) print_env ;;
    bindir) echo "$BIN" ;;
    *)
        sed -n '2,22p' "$0" >&2
        exit 2
        ;;
esac
