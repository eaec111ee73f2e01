#!/usr/bin/env bash
# Benchmarks the pNode analytics and writes the results into BENCHMARKS.md (between the
# "pnode-bench:start" and "pnode-bench:end" marks) with the date, commit, machine and commands:
#
#   1. the aggregation cycle for 10,000 pods gossiped by 9 simulated seeds, Postgres writes
#      included (the server's own cycle timer, read from its log);
#   0. the machine's floor: how late a thread wakes from a timed sleep, nothing else running
#      (`nodegrid bench --scenario wakeup`); every latency below holds at least two wake-ups;
#   2. GET /api/xandeum/pnodes?limit=100 at 10,000 nodes under load up to 10,000 requests/s,
#      with `nodegrid bench --scenario http` (open loop: latency from each request's scheduled
#      time), plain and with `Accept-Encoding: gzip`; each 20 s run spans two cycles, so the
#      tails include requests served while a cycle runs. The 10,000/s runs are made three
#      times each: one run's p99.9 is its 200 slowest requests, and a single stall moves it.
#
# The simulator stands in for nine seeds on other machines: it runs in the idle scheduling
# class (`chrt --idle 0`; nice 19 where chrt is missing) so that building their answers (about
# half a CPU-second a cycle) is not counted against the server's tail — at nice 19 it still
# took slices of a millisecond or more from the server's threads (seen with `perf sched`).
# The generator runs on one thread (`--threads 1`), a quarter less CPU taken from the server
# than on two. The server, PostgreSQL and Redis run as usual.
#
#   scripts/bench-pnodes.sh            the standard run (about five minutes)
#   scripts/bench-pnodes.sh --quick    a short run, for checking the tooling
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/services.sh"
cd "$NODEGRID_ROOT"
quick=0
[ "${1:-}" = "--quick" ] && quick=1
pods=10000
cycles=$([ "$quick" -eq 1 ] && echo 2 || echo 6)
seconds=$([ "$quick" -eq 1 ] && echo 3 || echo 20)

ensure_cargo
ensure_postgres
ensure_redis
cargo build --release --locked --bin nodegrid >&2

# The machine's own floor, before anything else runs: how late a thread wakes from a sleep.
say "nodegrid bench --scenario wakeup --rate 1000 --seconds $seconds"
floor=$(target/release/nodegrid bench --scenario wakeup --rate 1000 --seconds "$seconds" --markdown)
echo "$floor"

work=$(mktemp -d)
database=nodegrid_pbench_$$
psql "$NODEGRID_TEST_DATABASE_URL" -qc "CREATE DATABASE $database"
below=(nice -n 19)
command -v chrt >/dev/null && chrt --idle 0 true 2>/dev/null && below=(chrt --idle 0)
"${below[@]}" target/release/nodegrid sim pnodes --seeds 9 --pods "$pods" --round-secs 30 --base-port 0 >"$work/sim.log" 2>&1 &
sim=$!
server=""
cleanup() {
  [ -n "$server" ] && { kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
  kill -TERM "$sim" 2>/dev/null || true
  psql "$NODEGRID_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 40); do grep -q '^NODEGRID_PNODE_SEEDS=' "$work/sim.log" && break; sleep 0.25; done
seeds=$(grep -m1 '^NODEGRID_PNODE_SEEDS=' "$work/sim.log" | cut -d= -f2)
port=${NODEGRID_BENCH_PORT:-18091}
NODEGRID_DATABASE_URL="$NODEGRID_PG_BASE/$database" NODEGRID_REDIS_URL="$NODEGRID_TEST_REDIS_URL" \
NODEGRID_REDIS_PREFIX="pbench-$$" NODEGRID_PNODE_SEEDS="$seeds" NODEGRID_PNODE_INTERVAL=10 \
NODEGRID_PNODE_API_RATE_PER_SEC=0 NODEGRID_MAX_CONNECTIONS_PER_IP=0 \
NODEGRID_LOG=warn,nodegrid_actors::pnodes::aggregator=info \
  target/release/nodegrid serve --http-addr "127.0.0.1:$port" --grpc-addr 127.0.0.1:0 >"$work/server.log" 2>&1 &
server=$!

say "waiting for $cycles aggregation cycles of $pods pods from 9 seeds"
for _ in $(seq 1 $((cycles * 25))); do
  [ "$(grep -c 'cycle written' "$work/server.log" || true)" -ge "$cycles" ] && break
  sleep 0.5
done
lines=$(grep 'cycle written' "$work/server.log" | head -n "$cycles")
[ -n "$lines" ] || { tail -n 20 "$work/server.log" >&2; die "no cycle was written"; }
echo "$lines" | sed 's/.*cycle written//' >&2
stat() { echo "$lines" | grep -o " $1=[0-9]*" | cut -d= -f2 | sort -n | awk '{v[NR]=$1; s+=$1} END {printf "%d / %d / %d", v[1], s/NR, v[NR]}'; }
stat_after() { lines=$(echo "$lines" | tail -n +2) stat "$1"; }
unique=$(echo "$lines" | tail -n 1 | grep -o ' pods=[0-9]*' | cut -d= -f2)
poll=$(curl -fsS "http://127.0.0.1:$port/metrics" | awk '/^nodegrid_pnode_poll_duration_seconds_sum/ {s+=$2} /^nodegrid_pnode_poll_duration_seconds_count/ {c+=$2} END {printf "%.0f", (c ? s/c*1000 : 0)}')

page="--scenario http --threads 1 --path /api/xandeum/pnodes?limit=100"
gzip="--header Accept-Encoding:gzip"
repeats=$([ "$quick" -eq 1 ] && echo 1 || echo 3)
runs=(
  "$page --rate 1000 --connections 16 --seconds $seconds"
  "$page --rate 3000 --connections 32 --seconds $seconds"
)
for _ in $(seq 1 "$repeats"); do runs+=("$page --rate 10000 --connections 64 --seconds $seconds"); done
runs+=("$page --rate 3000 --connections 32 --seconds $seconds $gzip")
for _ in $(seq 1 "$repeats"); do runs+=("$page --rate 10000 --connections 64 --seconds $seconds $gzip"); done
runs+=("--scenario http --threads 1 --path /api/xandeum/pnodes?limit=100&status=all&sort_by=uptime&search=10.0.1 --rate 1000 --connections 16 --seconds $seconds")
rows=()
commands=()
for run in "${runs[@]}"; do
  say "nodegrid bench $run"
  # shellcheck disable=SC2086
  output=$(target/release/nodegrid bench --target "http://127.0.0.1:$port" --server-pid "$server" $run --markdown)
  echo "$output"
  header=$(echo "$output" | head -n 2)
  rows+=("$(echo "$output" | tail -n +3)")
  commands+=("nodegrid bench --target http://127.0.0.1:PORT --server-pid PID $run")
done

section=$(mktemp)
{
  echo "<!-- pnode-bench:start (written by scripts/bench-pnodes.sh; do not edit by hand) -->"
  echo "### pNode analytics"
  echo
  echo "- **Date:** $(date -u +%Y-%m-%d) · **Commit:** \`$(git rev-parse --short HEAD)\`$( [ -n "$(git status --porcelain)" ] && echo ' (with uncommitted changes)') · **Machine:** $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "- **Command:** \`scripts/bench-pnodes.sh$( [ "$quick" -eq 1 ] && echo ' --quick')\`: \`${below[*]} nodegrid sim pnodes --seeds 9 --pods $pods --round-secs 30\`, \`nodegrid serve\` with \`NODEGRID_PNODE_INTERVAL=10\`, then:"
  printf '%s\n' "${commands[@]}" | awk '!seen[$0]++' | while read -r command; do echo "  - \`$command\`"; done
  echo "  (the 10,000/s runs $repeats times each, one row per run)"
  echo "- Server, simulator, PostgreSQL, Redis and the generator share the machine."
  echo
  echo "| aggregation cycle, $unique unique pods from 9 seeds ($cycles cycles) | min / mean / max |"
  echo "|---|---|"
  echo "| merge + scores + view + changes + Postgres transaction, ms (the first cycle of a new deployment writes every node) | $(stat ms) |"
  echo "| the same, after the first cycle | $(stat_after ms) |"
  echo "| of which the Postgres transaction, ms | $(stat write_ms) |"
  echo "| polling one seed (three calls, ~4,500 pods answered), mean ms | $poll |"
  echo
  echo "The machine's floor, measured first with nothing else running (\`nodegrid bench --scenario wakeup --rate 1000 --seconds $seconds\`): how late a thread wakes from a timed sleep."
  echo
  echo "$floor"
  echo
  echo "$header"
  printf '%s\n' "${rows[@]}"
  echo "<!-- pnode-bench:end -->"
} >"$section"
write_bench_section pnode-bench "$section"
rm -f "$section"
say "BENCHMARKS.md updated"
