#!/usr/bin/env bash
# Benchmarks children's heartbeats with `nodegrid bench --scenario heartbeats` against one
# release server and writes the results into BENCHMARKS.md (between the "children-bench:start"
# and "children-bench:end" marks) with the date, commit, machine and the exact commands.
#
# 100,000 children heartbeating every 30 s are 3,334 heartbeats a second: the runs offer that
# rate and more, each heartbeat signed by its child, each lease signed by the mother (one in
# ten verified by the generator).
#
#   scripts/bench-children.sh            the standard run (a few minutes)
#   scripts/bench-children.sh --quick    a short run, for checking the tooling
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/services.sh"
cd "$NODEGRID_ROOT"
quick=0
[ "${1:-}" = "--quick" ] && quick=1

ensure_cargo
ensure_postgres
ensure_redis
cargo build --release --locked --bin nodegrid >&2

port=${NODEGRID_BENCH_PORT:-18095}
database=nodegrid_cbench_$$
password=bench-$$-$RANDOM
psql "$NODEGRID_TEST_DATABASE_URL" -qc "CREATE DATABASE $database"
NODEGRID_DATABASE_URL="$NODEGRID_PG_BASE/$database" NODEGRID_REDIS_URL="$NODEGRID_TEST_REDIS_URL" \
  NODEGRID_REDIS_PREFIX="cbench-$$" NODEGRID_ADMIN_USERNAME=bench NODEGRID_ADMIN_PASSWORD="$password" \
  NODEGRID_DATABASE_POOL_SIZE=16 NODEGRID_LOG=warn \
  target/release/nodegrid serve --http-addr "127.0.0.1:$port" --grpc-addr 127.0.0.1:0 >&2 &
server=$!
cleanup() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  psql "$NODEGRID_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.5; done

if [ "$quick" -eq 1 ]; then
  runs=("--children 200 --rate 500 --seconds 3 --connections 16")
else
  runs=("--children 5000 --rate 3400 --seconds 30 --connections 64"
        "--children 5000 --rate 5000 --seconds 30 --connections 64"
        "--children 5000 --rate 7000 --seconds 20 --connections 96")
fi
rows=()
for run in "${runs[@]}"; do
  say "nodegrid bench --scenario heartbeats $run"
  # shellcheck disable=SC2086
  row=$(NODEGRID_BENCH_ADMIN_USERNAME=bench NODEGRID_BENCH_ADMIN_PASSWORD="$password" \
    target/release/nodegrid bench --target "http://127.0.0.1:$port" --scenario heartbeats $run \
    --server-pid "$server" --markdown | tail -n 1)
  echo "$row"
  rows+=("$row")
done

section=$(mktemp)
{
  echo "<!-- children-bench:start (written by scripts/bench-children.sh; do not edit by hand) -->"
  echo "### Children's heartbeats"
  echo
  echo "- **Date:** $(date -u +%Y-%m-%d) · **Commit:** \`$(git rev-parse --short HEAD)\`$( [ -n "$(git status --porcelain)" ] && echo ' (with uncommitted changes)') · **Machine:** $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB; server, Postgres, Redis and generator share it"
  echo "- **Command:** \`scripts/bench-children.sh$( [ "$quick" -eq 1 ] && echo ' --quick')\`: one release server (pool 16), then, in order (each run provisions its own children):"
  for run in "${runs[@]}"; do echo "  - \`nodegrid bench --scenario heartbeats $run\`"; done
  echo "- Each heartbeat is signed (HMAC) by its child and checked by the mother (key, skew, single-use nonce in Redis), written in one statement (the child's row, the next \`seq\`), and answered with an Ed25519-signed lease; latency is from each heartbeat's scheduled time (open loop). 100,000 children at the default 30 s interval need 3,334 heartbeats a second."
  echo
  echo "| target | asked/s | achieved/s | ok | errors | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | body bytes | server CPU s |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo "<!-- children-bench:end -->"
} >"$section"
write_bench_section children-bench "$section"
rm -f "$section"
say "BENCHMARKS.md updated"
