#!/usr/bin/env bash
# Runs the standard benchmark set with `nodegrid bench`, nodegrid side by side with Mosquitto,
# and writes the results into BENCHMARKS.md (between the "bench:start" and "bench:end" marks)
# with the date, commit, machine and the exact commands.
#
#   scripts/bench.sh            the standard set (a few minutes)
#   scripts/bench.sh --quick    a short run of the same set, for checking the tooling
#
# The server runs on a database of its own with auth rate limits off, cheap password hashing
# (set-up registers thousands of users; hashing cost is not what is measured) and no producer
# rate cap (the `max` scenario raises the rate until delivery falls behind).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/services.sh"
cd "$NODEGRID_ROOT"
quick=0
[ "${1:-}" = "--quick" ] && quick=1

ensure_cargo
ensure_postgres
ensure_redis
ensure_mosquitto
cargo build --release --locked --bin nodegrid >&2

database=nodegrid_bench_$$
psql "$NODEGRID_TEST_DATABASE_URL" -qc "CREATE DATABASE $database"
port=${NODEGRID_BENCH_PORT:-18090}
NODEGRID_DATABASE_URL="$NODEGRID_PG_BASE/$database" NODEGRID_REDIS_URL="$NODEGRID_TEST_REDIS_URL" \
NODEGRID_REDIS_PREFIX="bench-$$" NODEGRID_AUTH_IP_PER_MINUTE=0 NODEGRID_AUTH_USERNAME_PER_MINUTE=0 \
NODEGRID_PASSWORD_MEMORY_KIB=1024 NODEGRID_PASSWORD_ITERATIONS=1 \
NODEGRID_PRODUCER_RATE_PER_SEC=1000000 NODEGRID_PRODUCER_BURST=1000000 NODEGRID_MAX_CONNECTIONS_PER_IP=0 \
NODEGRID_LOG=warn target/release/nodegrid serve --http-addr "127.0.0.1:$port" --grpc-addr 127.0.0.1:0 >&2 &
server=$!
cleanup() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  psql "$NODEGRID_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.5; done
broker=$(pgrep -x mosquitto | head -n 1 || true)

if [ "$quick" -eq 1 ]; then seconds=3; else seconds=15; fi
target="--target http://127.0.0.1:$port --server-pid $server"
compare="--compare $NODEGRID_TEST_MQTT_URL ${broker:+--compare-pid $broker}"
runs=(
  "--scenario fleet --producers 100 --consumers 100 --per-consumer 10 --rate 100 --seconds $seconds $compare"
  "--scenario broadcast --consumers 1000 --rate 100 --seconds $seconds $compare"
  "--scenario fleet --producers 1 --consumers 1 --rate 50000 --payload-bytes 92 --seconds $seconds"
  "--scenario connections --consumers $([ "$quick" -eq 1 ] && echo 500 || echo 5000) --source-addresses 4 --seconds 3"
  "--scenario max --producers 100 --consumers 100 --per-consumer 10 --rate 50 --seconds $([ "$quick" -eq 1 ] && echo 2 || echo 5) --max-p99-ms 50"
)
header=""
rows=()
commands=()
for run in "${runs[@]}"; do
  say "nodegrid bench $run"
  # shellcheck disable=SC2086
  output=$(target/release/nodegrid bench $target $run --markdown)
  echo "$output"
  header=$(echo "$output" | head -n 2)
  rows+=("$(echo "$output" | tail -n +3)")
  commands+=("nodegrid bench --target http://127.0.0.1:PORT --server-pid PID $(echo "$run" | sed -E "s#mqtt://[^ ]+#mqtt://127.0.0.1:1883#; s#--compare-pid [0-9]+#--compare-pid MOSQUITTO_PID#")")
done

section=$(mktemp)
{
  echo "<!-- bench:start (written by scripts/bench.sh; do not edit by hand) -->"
  echo "### Standard set"
  echo
  echo "- **Date:** $(date -u +%Y-%m-%d) · **Commit:** \`$(git rev-parse --short HEAD)\`$( [ -n "$(git status --porcelain)" ] && echo ' (with uncommitted changes)') · **Machine:** $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB; $(mosquitto -h 2>/dev/null | head -n 1 | cut -d' ' -f1-3)"
  echo "- **Command:** \`scripts/bench.sh$( [ "$quick" -eq 1 ] && echo ' --quick')\`, which ran:"
  for command in "${commands[@]}"; do echo "  - \`$command\`"; done
  echo "- Server, Redis, PostgreSQL, Mosquitto and the generator share the machine. Latency is"
  echo "  send to receipt on one clock. \`max\` reports the last rate step that kept up."
  echo
  echo "$header"
  printf '%s\n' "${rows[@]}"
  echo "<!-- bench:end -->"
} >"$section"
write_bench_section bench "$section"
rm -f "$section"
say "BENCHMARKS.md updated"
