#!/usr/bin/env bash
# Stops a nodegrid started with `scripts/up.sh --detach` (gracefully: SIGTERM, then waits), and
# the pRPC simulator it started. PostgreSQL and Redis keep running.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/services.sh"
pidfile=$NODEGRID_DATA_DIR/nodegrid.pid
sim_pidfile=$NODEGRID_DATA_DIR/pnode-sim.pid
if [ -f "$sim_pidfile" ]; then
  kill -TERM "$(cat "$sim_pidfile")" 2>/dev/null || true
  rm -f "$sim_pidfile"
  say "pRPC simulator stopped"
fi
[ -f "$pidfile" ] || { say "no nodegrid started by scripts/up.sh --detach"; exit 0; }
pid=$(cat "$pidfile")
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 70); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && die "nodegrid (pid $pid) did not stop within 35 s"
fi
rm -f "$pidfile"
say "nodegrid stopped"
