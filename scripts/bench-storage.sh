#!/usr/bin/env bash
# What keeping messages costs: the same runs with history off, with history on (the default:
# 1,000 messages per producer in Redis), and with history on and every message stored in
# Postgres. Writes the results into BENCHMARKS.md (between the "storage-bench:start" and
# "storage-bench:end" marks) with the date, commit, machine and the exact commands.
#
#   scripts/bench-storage.sh            the standard run (a few minutes)
#   scripts/bench-storage.sh --quick    a short run, for checking the tooling
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/services.sh"
cd "$NODEGRID_ROOT"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
seconds=$([ "$quick" -eq 1 ] && echo 3 || echo 10)

ensure_cargo
ensure_postgres
ensure_redis
cargo build --release --locked --bin nodegrid >&2

port=${NODEGRID_BENCH_PORT:-18091}
server=""
database=""
stop_server() {
  if [ -n "$server" ]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
  if [ -n "$database" ]; then
    psql "$NODEGRID_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true
    database=""
  fi
}
trap stop_server EXIT

# Starts a server with the given extra environment (NAME=value ...), on a database of its own.
start_server() {
  database=nodegrid_sbench_$$_$RANDOM
  psql "$NODEGRID_TEST_DATABASE_URL" -qc "CREATE DATABASE $database"
  env "$@" NODEGRID_DATABASE_URL="$NODEGRID_PG_BASE/$database" NODEGRID_REDIS_URL="$NODEGRID_TEST_REDIS_URL" \
    NODEGRID_REDIS_PREFIX="sbench-$$-$RANDOM" NODEGRID_AUTH_IP_PER_MINUTE=0 NODEGRID_AUTH_USERNAME_PER_MINUTE=0 \
    NODEGRID_PASSWORD_MEMORY_KIB=1024 NODEGRID_PASSWORD_ITERATIONS=1 \
    NODEGRID_PRODUCER_RATE_PER_SEC=1000000 NODEGRID_PRODUCER_BURST=1000000 NODEGRID_MAX_CONNECTIONS_PER_IP=0 \
    NODEGRID_LOG=warn target/release/nodegrid serve --http-addr "127.0.0.1:$port" --grpc-addr 127.0.0.1:0 >&2 &
  server=$!
  for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.5; done
}

# A counter's value from the server's /metrics (0 when absent).
metric() {
  curl -fsS "http://127.0.0.1:$port/metrics" | awk -v name="$1" '$1 == name { print $2; found = 1 } END { if (!found) print 0 }'
}

configs=(
  "history off|NODEGRID_HISTORY_MESSAGES=0"
  "history on (default)|NODEGRID_HISTORY_MESSAGES=1000"
  "history on + stored data|NODEGRID_HISTORY_MESSAGES=1000 NODEGRID_STORE_DATA=true"
)
runs=(
  "--scenario fleet --producers 1 --consumers 1 --rate 50000 --payload-bytes 92 --seconds $seconds"
  "--scenario fleet --producers 100 --consumers 100 --per-consumer 10 --rate 100 --seconds $seconds"
  "--scenario max --producers 100 --consumers 100 --per-consumer 10 --rate 50 --seconds $([ "$quick" -eq 1 ] && echo 2 || echo 5) --max-p99-ms 50"
)
header=""
rows=()
notes=()
for config in "${configs[@]}"; do
  name=${config%%|*}
  environment=${config#*|}
  # shellcheck disable=SC2086
  start_server $environment
  for run in "${runs[@]}"; do
    say "[$name] nodegrid bench $run"
    # shellcheck disable=SC2086
    output=$(target/release/nodegrid bench --target "http://127.0.0.1:$port" --server-pid "$server" $run --markdown)
    echo "$output"
    header=$(echo "$output" | head -n 2)
    rows+=("$(echo "$output" | tail -n +3 | sed -E "s/^\| nodegrid \|/| nodegrid, $name |/")")
  done
  # Let the writer finish, then read what it stored and dropped.
  sleep 2
  stored=$(metric nodegrid_data_rows_stored_total)
  dropped=$(metric nodegrid_data_rows_dropped_total)
  notes+=("- **$name** (\`$environment\`): stored rows $stored, dropped $dropped.")
  stop_server
done

section=$(mktemp)
{
  echo "<!-- storage-bench:start (written by scripts/bench-storage.sh; do not edit by hand) -->"
  echo "### History and stored data"
  echo
  echo "- **Date:** $(date -u +%Y-%m-%d) · **Commit:** \`$(git rev-parse --short HEAD)\`$( [ -n "$(git status --porcelain)" ] && echo ' (with uncommitted changes)') · **Machine:** $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "- **Command:** \`scripts/bench-storage.sh$( [ "$quick" -eq 1 ] && echo ' --quick')\`: a fresh server per configuration, each running:"
  for run in "${runs[@]}"; do echo "  - \`nodegrid bench --target http://127.0.0.1:PORT --server-pid PID $run\`"; done
  printf '%s\n' "${notes[@]}"
  echo
  echo "$header"
  printf '%s\n' "${rows[@]}"
  echo "<!-- storage-bench:end -->"
} >"$section"
write_bench_section storage-bench "$section"
rm -f "$section"
say "BENCHMARKS.md updated"
