#!/usr/bin/env bash
# Runs the reliability tests (faults against private Redis and PostgreSQL, instance kills,
# concurrency, attacks at the boundary) and writes RELIABILITY.md from what they saw.
#
#   scripts/reliability.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/services.sh"
cd "$NODEGRID_ROOT"

ensure_cargo
ensure_postgres
ensure_redis
ensure_faketime

reports=$(mktemp -d)
output=$(mktemp)
cluster_output=$(mktemp)
trap 'rm -rf "$reports" "$output" "$cluster_output"; stop_redis_cluster' EXIT
tests=$(python3 - <<'PY'
import re
text = open("scripts/lib/reliability.py").read()
print(" ".join(re.findall(r'"((?:faults|clock|identity|streaming|stored|history|pnodes|lease|nodes|concurrency|security|authorization|sessions)::[a-z0-9_]+)"', text)))
PY
)
say "running the reliability tests"
# shellcheck disable=SC2086
NODEGRID_RELIABILITY_DIR=$reports cargo test --locked -p nodegrid --test api -- --exact $tests \
  2>&1 | tee "$output" | grep -E '^test |^test result' || true
say "the Redis tests on a Redis Cluster of three masters"
start_redis_cluster
NODEGRID_TEST_REDIS_URL=$NODEGRID_CLUSTER_URL cargo test --locked -p nodegrid --test api -- \
  "${CLUSTER_TEST_FILTERS[@]}" 2>&1 | tee "$cluster_output" | grep -E '^test result' || true
python3 scripts/lib/reliability.py "$output" "$reports" RELIABILITY.md "$cluster_output"
say "RELIABILITY.md written"
