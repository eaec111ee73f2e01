#!/usr/bin/env bash
# Brings nodegrid up on this machine: PostgreSQL and Redis (started, or installed and started,
# when missing), the `nodegrid` database, a release build, the pRPC simulator (a demo pNode
# network of 9 seeds and 300 pods, polled every 10 s; unless NODEGRID_PNODE_SEEDS names real
# seeds), and `nodegrid serve` on http://127.0.0.1:8080 (NODEGRID_HTTP_ADDR to change it).
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

mkdir -p "$NODEGRID_DATA_DIR"
sim_pidfile=$NODEGRID_DATA_DIR/pnode-sim.pid
if [ -z "${NODEGRID_PNODE_SEEDS+set}" ]; then
  if ! { [ -f "$sim_pidfile" ] && kill -0 "$(cat "$sim_pidfile")" 2>/dev/null; }; then
    sim_log=$NODEGRID_DATA_DIR/pnode-sim.log
    : >"$sim_log"
    target/release/nodegrid sim pnodes --seeds 9 --pods 300 --round-secs 20 --base-port 0 \
      --timeout-seed 7 --timeout-delay-ms 5000 --legacy-seed 8 >>"$sim_log" 2>&1 &
    echo $! >"$sim_pidfile"
    for _ in $(seq 1 40); do grep -q '^NODEGRID_PNODE_SEEDS=' "$sim_log" && break; sleep 0.25; done
  fi
  seeds=$(grep -m1 '^NODEGRID_PNODE_SEEDS=' "$NODEGRID_DATA_DIR/pnode-sim.log" | cut -d= -f2 || true)
  [ -n "$seeds" ] || die "the pRPC simulator did not start (see $NODEGRID_DATA_DIR/pnode-sim.log)"
  export NODEGRID_PNODE_SEEDS=$seeds
  export NODEGRID_PNODE_INTERVAL=${NODEGRID_PNODE_INTERVAL:-10}
  say "demo pNode network: 9 simulated seeds (one slow, one legacy), polled every ${NODEGRID_PNODE_INTERVAL} s"
fi

if [ "$detach" -eq 0 ]; then
  say "starting nodegrid serve"
  stop_sim() { [ -f "$sim_pidfile" ] && kill "$(cat "$sim_pidfile")" 2>/dev/null; rm -f "$sim_pidfile"; }
  trap stop_sim EXIT
  target/release/nodegrid serve "${args[@]}" &
  server=$!
  trap 'kill -TERM "$server" 2>/dev/null' INT TERM
  wait "$server" || true
  wait "$server" 2>/dev/null || true
  exit 0
fi

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
    say "pNode analytics: curl http://$addr/api/xandeum/pnodes?limit=5 (first cycle within seconds)"
    say "web console: http://$addr/console${NODEGRID_ADMIN_USERNAME:+ ($NODEGRID_ADMIN_USERNAME / $NODEGRID_ADMIN_PASSWORD)}"
    exit 0
  fi
  kill -0 "$(cat "$pidfile")" 2>/dev/null || { tail -n 20 "$log" >&2; die "nodegrid exited"; }
  sleep 0.5
done
tail -n 20 "$log" >&2
die "nodegrid did not become ready within 30 s"
