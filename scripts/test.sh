#!/usr/bin/env bash
# Runs everything CI runs: starts PostgreSQL and Redis if needed, then formatting, clippy, the
# whole test suite against them, schemathesis against a running server, and the tests of what
# lives in Redis once more against a Redis Cluster of three masters on loopback.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/services.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib/api_fuzz.sh"
cd "$NODEGRID_ROOT"

ensure_cargo
ensure_postgres
ensure_redis
ensure_mosquitto
ensure_promtool
ensure_chromium
ensure_faketime

say "module import cycles"
command -v python3 >/dev/null 2>&1 || apt_install python3
python3 scripts/lib/module_cycles.py
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "cargo test"
cargo test --workspace --locked "$@"
say "API fuzzing"
run_api_fuzz
# The tests of everything that lives in Redis, again on a Redis Cluster of three masters.
say "streaming on a Redis Cluster"
start_redis_cluster
trap stop_redis_cluster EXIT
NODEGRID_TEST_REDIS_URL=$NODEGRID_CLUSTER_URL cargo test -p nodegrid --test api --locked -- \
  "${CLUSTER_TEST_FILTERS[@]}"
