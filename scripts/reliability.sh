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
trap 'rm -rf "$reports" "$output"' EXIT
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
python3 scripts/lib/reliability.py "$output" "$reports" RELIABILITY.md
say "RELIABILITY.md written"
