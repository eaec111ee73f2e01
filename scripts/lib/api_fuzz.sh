# shellcheck shell=bash
# API fuzzing with schemathesis (from PyPI) against the OpenAPI document of a real server: every
# documented operation, generated requests with an admin's token; not one 5xx, and every answer
# as documented (its status, its content type, its body's schema). Sourced by
# scripts/test.sh after the test suite (it uses the binary the tests built). Bounded and
# repeatable: a fixed seed and example count, a time limit, and only the phases whose requests
# do not depend on earlier answers (the stateful phase, which chains them, is run by hand:
# `st run … --phases stateful`).
#
# Request schemas state the ranges, lengths and patterns the server enforces, so generated
# requests reach the handlers. Schemathesis still warns about a few operations whose refusals no
# schema can state: whole-number floats (`1.0`) for integer ids, a plan id that must exist, an
# admin blocking themselves. Sockets (`/ws/`, `watch`, the admin feed, the control socket) are
# left out: they answer a plain GET with 400 by design.

ensure_schemathesis() {
  if ! command -v st >/dev/null 2>&1; then
    command -v pip3 >/dev/null 2>&1 || apt_install python3-pip
    say "installing schemathesis from PyPI"
    pip3 install -q schemathesis >&2 || pip3 install -q --break-system-packages schemathesis >&2
  fi
  command -v st >/dev/null 2>&1
}

run_api_fuzz() {
  local binary=$NODEGRID_ROOT/target/debug/nodegrid port=${NODEGRID_FUZZ_PORT:-18099}
  local database=nodegrid_fuzz_$$ work prefix=fuzz-$$ server sim token status=0
  [ -x "$binary" ] || die "build the tests first: $binary is missing"
  ensure_schemathesis || die "schemathesis could not be installed"
  work=$(mktemp -d)
  psql "$NODEGRID_TEST_DATABASE_URL" -qc "CREATE DATABASE $database"
  "$binary" sim pnodes --seeds 2 --pods 60 --base-port 0 >"$work/sim.log" 2>&1 &
  sim=$!
  for _ in $(seq 1 40); do grep -q '^NODEGRID_PNODE_SEEDS=' "$work/sim.log" && break; sleep 0.25; done
  NODEGRID_DATABASE_URL="$NODEGRID_PG_BASE/$database" NODEGRID_REDIS_URL="$NODEGRID_TEST_REDIS_URL" \
  NODEGRID_REDIS_PREFIX="$prefix" NODEGRID_JWT_SECRET=fuzz-secret-0123456789abcdef0123456789abcdef \
  NODEGRID_ADMIN_USERNAME=root NODEGRID_ADMIN_PASSWORD=fuzz-root-password \
  NODEGRID_PNODE_SEEDS="$(grep -m1 '^NODEGRID_PNODE_SEEDS=' "$work/sim.log" | cut -d= -f2)" \
  NODEGRID_PNODE_API_RATE_PER_SEC=0 NODEGRID_AUTH_IP_PER_MINUTE=100000 NODEGRID_AUTH_IP_BURST=100000 NODEGRID_LOG=warn \
    "$binary" serve --http-addr "127.0.0.1:$port" --grpc-addr 127.0.0.1:0 >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.5; done
  token=$(curl -fsS "http://127.0.0.1:$port/api/auth/login" -H 'Content-Type: application/json' \
    -d '{"username":"root","password":"fuzz-root-password"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  say "schemathesis: no 5xx, and every answer as documented"
  # Logging out would end the token's session mid-run; sockets and exports stream.
  # From the work folder: schemathesis keeps a cache in the current directory.
  (cd "$work" && timeout 600 st run "http://127.0.0.1:$port/api-docs/openapi.json" \
    -H "Authorization: Bearer $token" --checks not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance \
    --max-examples "${NODEGRID_FUZZ_EXAMPLES:-20}" --seed 1 --workers 1 \
    --phases "${NODEGRID_FUZZ_PHASES:-examples,coverage,fuzzing}" \
    --exclude-path-regex 'logout|/ws/|watch|export|/api/admin/live$|/api/child/control') >"$work/st.log" 2>&1 || status=$?
  tail -n 15 "$work/st.log" >&2
  if [ "$status" -ne 0 ]; then
    grep -B2 -A12 'FAILURES' "$work/st.log" >&2 || true
  fi
  kill -TERM "$server" "$sim" 2>/dev/null || true
  wait "$server" "$sim" 2>/dev/null || true
  psql "$NODEGRID_TEST_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null || true
  rm -rf "$work"
  return "$status"
}
