#!/usr/bin/env bash
# Runs the standard benchmark set with `nodegrid bench`, nodegrid side by side with Mosquitto
# over WebSocket (a broker of the run's own, on loopback), and writes the results into
# BENCHMARKS.md (between the "bench:start" and "bench:end" marks) with the date, commit,
# machine, the exact commands and each comparison's ratios: delivered rate, deliveries per
# server CPU-second (Redis's CPU reported beside nodegrid's) and p99.
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
command -v mosquitto >/dev/null 2>&1 || apt_install mosquitto
cargo build --release --locked --bin nodegrid >&2

# A Mosquitto of the run's own with a WebSocket listener (the transport nodegrid's sockets use):
# Mosquitto 2.0 opens a WebSocket listener only beside a plain one, and takes an interface name
# (`lo`: loopback only) rather than an address for it.
broker_dir=$(mktemp -d)
broker_tcp_port=${NODEGRID_BENCH_MQTT_PORT:-18883}
broker_ws_port=${NODEGRID_BENCH_MQTT_WS_PORT:-18884}
printf 'listener %s 127.0.0.1\nlistener %s lo\nprotocol websockets\nallow_anonymous true\npersistence false\n' \
  "$broker_tcp_port" "$broker_ws_port" >"$broker_dir/mosquitto.conf"
mosquitto -c "$broker_dir/mosquitto.conf" >"$broker_dir/log" 2>&1 &
broker=$!

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
  kill -TERM "$server" "$broker" 2>/dev/null || true
  wait "$server" "$broker" 2>/dev/null || true
  rm -rf "$broker_dir"
  psql "$NODEGRID_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.5; done
for _ in $(seq 1 40); do { exec 8<>"/dev/tcp/127.0.0.1/$broker_ws_port"; } 2>/dev/null && break; sleep 0.25; done
exec 8>&-
redis_pid=$(redis-cli -u "$NODEGRID_TEST_REDIS_URL" info server | tr -d '\r' | awk -F: '/^process_id:/ {print $2}')

# Sockets per process are capped by the open-file limit (the generator holds one per socket,
# the server one per socket plus its own): the connections run holds what fits.
open_files=$(ulimit -n)
idle_sockets=$(( open_files > 60000 ? 50000 : open_files * 3 / 4 ))
if [ "$quick" -eq 1 ]; then seconds=3; step=2; idle_sockets=500; else seconds=15; step=5; fi
target="--target http://127.0.0.1:$port --server-pid $server ${redis_pid:+--redis-pid $redis_pid}"
compare="--compare mqtt+ws://127.0.0.1:$broker_ws_port/mqtt --compare-pid $broker"
runs=(
  "--scenario fleet --producers 1000 --consumers 1000 --per-consumer 5 --rate 60 --seconds $seconds --source-addresses 4 $compare"
  "--scenario max --producers 1 --consumers 1000 --per-consumer 1 --rate 20 --seconds $step --max-p99-ms 50 $compare"
  "--scenario max --producers 1 --consumers 1000 --per-consumer 1 --rate 20 --seconds $step --max-p99-ms 50 --batch"
  "--scenario fleet --producers 1 --consumers 1 --rate 50000 --payload-bytes 92 --seconds $seconds"
  "--scenario connections --consumers $idle_sockets --source-addresses 4 --seconds 3"
)
header=""
rows=()
ratios=()
commands=()
for run in "${runs[@]}"; do
  say "nodegrid bench $run"
  # shellcheck disable=SC2086
  output=$(target/release/nodegrid bench $target $run --markdown)
  echo "$output"
  header=$(echo "$output" | head -n 2)
  rows+=("$(echo "$output" | tail -n +3 | grep -v '^RATIO ')")
  while IFS= read -r line; do ratios+=("${line#RATIO }"); done < <(echo "$output" | grep '^RATIO ' || true)
  commands+=("nodegrid bench --target http://127.0.0.1:PORT --server-pid PID --redis-pid REDIS_PID $(echo "$run" | sed -E "s#mqtt\+ws://127.0.0.1:[0-9]+#mqtt+ws://127.0.0.1:WS_PORT#; s#--compare-pid [0-9]+#--compare-pid MOSQUITTO_PID#")")
done
rss_after=$(awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$server/status")
rss_peak=$(awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$server/status")

section=$(mktemp)
{
  echo "<!-- bench:start (written by scripts/bench.sh; do not edit by hand) -->"
  echo "### Standard set"
  echo
  echo "- **Date:** $(date -u +%Y-%m-%d) · **Commit:** \`$(git rev-parse --short HEAD)\`$( [ -n "$(git status --porcelain)" ] && echo ' (with uncommitted changes)') · **Machine:** $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, open-file limit $open_files; $(mosquitto -h 2>/dev/null | head -n 1 | cut -d' ' -f1-3) over WebSocket"
  echo "- **Command:** \`scripts/bench.sh$( [ "$quick" -eq 1 ] && echo ' --quick')\`, which ran:"
  for command in "${commands[@]}"; do echo "  - \`$command\`"; done
  echo "- Server, Redis, PostgreSQL, Mosquitto and the generator share the machine. Latency is"
  echo "  send to receipt on one clock. \`max\` reports the last rate step that kept up (no loss,"
  echo "  no refusal, p99 ≤ 50 ms). CPU is counted over sending and delivering, not set-up."
  echo "- Server RSS after the set: $rss_after MiB (peak $rss_peak MiB)."
  echo
  echo "$header"
  printf '%s\n' "${rows[@]}"
  echo
  echo "Side by side, in the same run:"
  echo
  for ratio in "${ratios[@]}"; do echo "- $ratio"; done
  echo "<!-- bench:end -->"
} >"$section"
write_bench_section bench "$section"
rm -f "$section"
say "BENCHMARKS.md updated"
