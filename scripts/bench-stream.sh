#!/usr/bin/env bash
# A first end-to-end streaming measurement on this machine: starts a release nodegrid on its own
# database and Redis prefix, runs the stream probe (actors/examples/stream_bench.rs) against it,
# and prints the probe's figures with the server's CPU seconds and peak memory.
#
#   scripts/bench-stream.sh [probe options]      e.g. --producers 100 --consumers 100 --per-consumer 10 --rate 100 --seconds 15
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/services.sh"
cd "$NODEGRID_ROOT"
ensure_cargo
ensure_postgres
ensure_redis

cargo build --release --locked --bin nodegrid --example stream_bench >&2
database=nodegrid_bench_$$
psql "$NODEGRID_TEST_DATABASE_URL" -qc "CREATE DATABASE $database"
port=${NODEGRID_BENCH_PORT:-18090}
NODEGRID_DATABASE_URL="$NODEGRID_PG_BASE/$database" NODEGRID_REDIS_URL="$NODEGRID_TEST_REDIS_URL" \
NODEGRID_REDIS_PREFIX="bench-$$" NODEGRID_AUTH_IP_PER_MINUTE=0 NODEGRID_AUTH_USERNAME_PER_MINUTE=0 \
NODEGRID_LOG=warn target/release/nodegrid serve --http-addr "127.0.0.1:$port" >&2 &
server=$!
cleanup() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  psql "$NODEGRID_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" || true
}
trap cleanup EXIT
for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.5; done

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
before=$(cpu)
target/release/examples/stream_bench --url "http://127.0.0.1:$port" "$@"
after=$(cpu)
echo "server_cpu_seconds: $(awk -v a="$after" -v b="$before" -v t="$ticks" 'BEGIN {printf "%.1f", (a - b) / t}')"
echo "server_peak_rss_mib: $(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$server/status")"
