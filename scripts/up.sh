#!/usr/bin/env bash
# Brings nodegrid up on this machine: PostgreSQL and Redis (started, or installed and started,
# when missing), the `nodegrid` database, a release build, and `nodegrid serve` on
# http://127.0.0.1:8080 (NODEGRID_HTTP_ADDR to change it).
#
#   scripts/up.sh            serve in the foreground (Ctrl-C stops it gracefully)
#   scripts/up.sh --detach   serve in the background, wait until ready; scripts/down.sh stops it
#
# Any other argument is passed to `nodegrid serve`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/services.sh"
cd "$NODEGRID_ROOT"

detach=0
args=()
for arg in "$@"; do
  if [ "$arg" = "--detach" ]; then detach=1; else args+=("$arg"); fi
done

ensure_cargo
ensure_postgres
ensure_redis

if [ -z "${NODEGRID_DATABASE_URL:-}" ]; then
  export NODEGRID_DATABASE_URL="$NODEGRID_PG_BASE/nodegrid"
  if [ "$(psql "$NODEGRID_TEST_DATABASE_URL" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'nodegrid'")" != "1" ]; then
    say "creating database nodegrid"
    psql "$NODEGRID_TEST_DATABASE_URL" -qc 'CREATE DATABASE nodegrid'
  fi
fi
export NODEGRID_REDIS_URL=${NODEGRID_REDIS_URL:-$NODEGRID_TEST_REDIS_URL}
# A local admin to try the admin API with; set both variables to choose your own.
if [ -z "${NODEGRID_ADMIN_USERNAME:-}" ] && [ -z "${NODEGRID_ADMIN_PASSWORD:-}" ]; then
  export NODEGRID_ADMIN_USERNAME=admin NODEGRID_ADMIN_PASSWORD=admin-password
  say "local admin: admin / admin-password"
fi

say "building nodegrid (release)"
cargo build --release --locked --bin nodegrid

if [ "$detach" -eq 0 ]; then
  say "starting nodegrid serve"
  exec target/release/nodegrid serve "${args[@]}"
fi

mkdir -p "$NODEGRID_DATA_DIR"
log=$NODEGRID_DATA_DIR/nodegrid.log
pidfile=$NODEGRID_DATA_DIR/nodegrid.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  die "nodegrid already runs (pid $(cat "$pidfile")); scripts/down.sh stops it"
fi
target/release/nodegrid serve "${args[@]}" >>"$log" 2>&1 &
echo $! >"$pidfile"
addr=${NODEGRID_HTTP_ADDR:-127.0.0.1:8080}
say "waiting for http://$addr/ready"
for _ in $(seq 1 60); do
  if curl -fsS "http://$addr/ready" >/dev/null 2>&1; then
    say "nodegrid is ready at http://$addr (pid $(cat "$pidfile"), log $log)"
    exit 0
  fi
  kill -0 "$(cat "$pidfile")" 2>/dev/null || { tail -n 20 "$log" >&2; die "nodegrid exited"; }
  sleep 0.5
done
tail -n 20 "$log" >&2
die "nodegrid did not become ready within 30 s"
