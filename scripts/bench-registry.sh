#!/usr/bin/env bash
# Benchmarks the node registry over gRPC with `nodegrid sim nodes` (the seed's demo-sim) and
# writes the results into BENCHMARKS.md (between the "registry-bench:start" and
# "registry-bench:end" marks) with the date, commit, machine and the exact commands:
#
#   1. 10,000 nodes, 200 status changes a second, 50 watchers that must each see every change;
#   2. the same registry grown to 100,000 nodes: creation rate, changes, and a ListNodes page
#      at that size.
#
#   scripts/bench-registry.sh            the standard run (a few minutes)
#   scripts/bench-registry.sh --quick    a short run, for checking the tooling
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/services.sh"
cd "$NODEGRID_ROOT"
quick=0
[ "${1:-}" = "--quick" ] && quick=1

ensure_cargo
ensure_postgres
ensure_redis
cargo build --release --locked --bin nodegrid >&2

port=${NODEGRID_BENCH_PORT:-18093}
grpc_port=${NODEGRID_BENCH_GRPC_PORT:-18094}
database=nodegrid_rbench_$$
password=bench-$$-$RANDOM
psql "$NODEGRID_TEST_DATABASE_URL" -qc "CREATE DATABASE $database"
NODEGRID_DATABASE_URL="$NODEGRID_PG_BASE/$database" NODEGRID_REDIS_URL="$NODEGRID_TEST_REDIS_URL" \
  NODEGRID_REDIS_PREFIX="rbench-$$" NODEGRID_ADMIN_USERNAME=bench NODEGRID_ADMIN_PASSWORD="$password" \
  NODEGRID_AUTH_IP_PER_MINUTE=0 NODEGRID_AUTH_USERNAME_PER_MINUTE=0 NODEGRID_DATABASE_POOL_SIZE=16 \
  NODEGRID_LOG=warn target/release/nodegrid serve --http-addr "127.0.0.1:$port" --grpc-addr "127.0.0.1:$grpc_port" >&2 &
server=$!
cleanup() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  psql "$NODEGRID_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.5; done
admin=$(curl -fsS -X POST "http://127.0.0.1:$port/api/auth/login" -H 'Content-Type: application/json' \
  -d "{\"username\":\"bench\",\"password\":\"$password\"}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
token=$(curl -fsS -X POST "http://127.0.0.1:$port/api/admin/operator-tokens" -H "Authorization: Bearer $admin" \
  -H 'Content-Type: application/json' -d '{"name":"bench"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
export BACKEND_ADDR="127.0.0.1:$grpc_port" BACKEND_TOKEN="$token"

if [ "$quick" -eq 1 ]; then
  runs=("--nodes 500 --update-qps 100 --watchers 10 --duration 3s"
        "--nodes 2000 --update-qps 100 --watchers 5 --duration 3s")
else
  runs=("--nodes 10000 --update-qps 200 --watchers 50 --duration 30s"
        "--nodes 90000 --update-qps 300 --watchers 10 --duration 20s")
fi
rows=()
for run in "${runs[@]}"; do
  say "nodegrid sim nodes $run"
  # shellcheck disable=SC2086
  row=$(target/release/nodegrid sim nodes $run --markdown)
  echo "$row"
  rows+=("$row")
done
total=$(psql "$NODEGRID_PG_BASE/$database" -tAc "SELECT count(*) FROM nodes")

section=$(mktemp)
{
  echo "<!-- registry-bench:start (written by scripts/bench-registry.sh; do not edit by hand) -->"
  echo "### Node registry"
  echo
  echo "- **Date:** $(date -u +%Y-%m-%d) · **Commit:** \`$(git rev-parse --short HEAD)\`$( [ -n "$(git status --porcelain)" ] && echo ' (with uncommitted changes)') · **Machine:** $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB"
  echo "- **Command:** \`scripts/bench-registry.sh$( [ "$quick" -eq 1 ] && echo ' --quick')\`: one release server (pool 16), then, in order on the same registry:"
  for run in "${runs[@]}"; do echo "  - \`nodegrid sim nodes $run\`"; done
  echo "- The registry held $total nodes at the end. Each change is one \`UpdateNode\` (status) over gRPC; event latency is from the change's commit timestamp to the watcher's receipt; \`ListNodes\` is a filtered page of 100 (\`status=UP\`, the run's label)."
  echo
  echo "| nodes created | created/s | status changes acked | failed | change p50 / p99 ms | watchers | saw every change | event p50 / p99 ms | ListNodes(100) p50 / p99 ms |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo "<!-- registry-bench:end -->"
} >"$section"
write_bench_section registry-bench "$section"
rm -f "$section"
say "BENCHMARKS.md updated"
