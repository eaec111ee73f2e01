# shellcheck shell=bash
# Brings up what nodegrid needs on this machine, without Docker: PostgreSQL and Redis on
# loopback (the running ones when they answer, else started from Debian's packages, installed
# when missing), promtool for the metrics and alert-rule checks, and Chromium for the browser
# tests. Sourced by scripts/up.sh and
# scripts/test.sh; exports the URLs it settled on:
#   NODEGRID_PG_BASE            postgres://postgres@127.0.0.1:<port>   (no database name)
#   NODEGRID_TEST_DATABASE_URL  $NODEGRID_PG_BASE/postgres
#   NODEGRID_TEST_REDIS_URL     redis://127.0.0.1:<port>
#   NODEGRID_PROMTOOL           path of promtool (ensure_promtool)
#   NODEGRID_CHROMIUM           path of Debian's chromium (ensure_chromium)

NODEGRID_ROOT=${NODEGRID_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
NODEGRID_DATA_DIR=${NODEGRID_DATA_DIR:-$NODEGRID_ROOT/.data}
# Port of the private PostgreSQL cluster used when the machine's own does not let the
# `postgres` user in over TCP without a password.
NODEGRID_PRIVATE_PG_PORT=${NODEGRID_PRIVATE_PG_PORT:-54329}
NODEGRID_REDIS_PORT=${NODEGRID_REDIS_PORT:-6379}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $*"
  fi
}

_apt_updated=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
  if [ "$_apt_updated" -eq 0 ]; then
    say "apt-get update"
    as_root apt-get update -qq >&2
    _apt_updated=1
  fi
  say "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

pg_answers() { # port
  psql "postgres://postgres@127.0.0.1:$1/postgres" -Atqc 'SELECT 1' >/dev/null 2>&1
}

ensure_postgres() {
  local port=5432
  command -v psql >/dev/null 2>&1 || apt_install postgresql postgresql-client
  if ! pg_answers "$port"; then
    command -v pg_ctlcluster >/dev/null 2>&1 || apt_install postgresql
    # Start the machine's clusters if they are down; Debian's trust set-up lets us in.
    if command -v pg_lsclusters >/dev/null 2>&1; then
      while read -r version name _port status _rest; do
        if [ "$status" = "down" ]; then
          say "starting PostgreSQL cluster $version/$name"
          as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start >&2 || true
        fi
      done < <(pg_lsclusters --no-header 2>/dev/null)
    fi
    for _ in $(seq 1 20); do pg_answers "$port" && break; sleep 0.5; done
  fi
  if ! pg_answers "$port"; then
    port=$NODEGRID_PRIVATE_PG_PORT
    pg_answers "$port" || start_private_postgres "$port"
  fi
  export NODEGRID_PG_BASE="postgres://postgres@127.0.0.1:$port"
  export NODEGRID_TEST_DATABASE_URL="$NODEGRID_PG_BASE/postgres"
  say "PostgreSQL answers at 127.0.0.1:$port"
}

# A cluster of our own with trust authentication on loopback, for machines whose own cluster
# wants a password. PostgreSQL refuses to run as root, so as root it runs as `postgres`.
start_private_postgres() { # port
  local port=$1 bin datadir run=()
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$bin" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql"
  if [ "$(id -u)" -eq 0 ]; then
    datadir=/var/lib/postgresql/nodegrid-$port
    run=(runuser -u postgres --)
    install -d -o postgres -g postgres "$datadir"
  else
    datadir=$NODEGRID_DATA_DIR/postgres-$port
    mkdir -p "$datadir"
  fi
  if [ ! -f "$datadir/PG_VERSION" ]; then
    say "initialising a private PostgreSQL cluster in $datadir"
    "${run[@]}" "$bin/initdb" -D "$datadir" -U postgres -A trust >/dev/null
  fi
  say "starting the private PostgreSQL cluster on port $port"
  "${run[@]}" "$bin/pg_ctl" -D "$datadir" -w -l "$datadir/server.log" \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$datadir" start >&2
  pg_answers "$port" || die "PostgreSQL did not start (see $datadir/server.log)"
}

redis_answers() { # port
  local reply
  { exec 9<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&9
  IFS= read -r -t 2 reply <&9 || reply=
  exec 9>&-
  [ "${reply%$'\r'}" = "+PONG" ]
}

ensure_redis() {
  local port=$NODEGRID_REDIS_PORT
  if ! redis_answers "$port"; then
    command -v redis-server >/dev/null 2>&1 || apt_install redis-server
    mkdir -p "$NODEGRID_DATA_DIR/redis"
    say "starting Redis on 127.0.0.1:$port"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
      --dir "$NODEGRID_DATA_DIR/redis" --logfile "$NODEGRID_DATA_DIR/redis/redis.log" >&2
    for _ in $(seq 1 20); do redis_answers "$port" && break; sleep 0.25; done
    redis_answers "$port" || die "Redis did not start (see $NODEGRID_DATA_DIR/redis/redis.log)"
  fi
  export NODEGRID_TEST_REDIS_URL="redis://127.0.0.1:$port"
  say "Redis answers at 127.0.0.1:$port"
}

port_in_use() { # port
  { exec 8<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  exec 8>&-
}

# A Redis Cluster of three masters on free loopback ports (each port and its cluster bus port,
# +10000, unused), in a directory of its own, without persistence. Sets NODEGRID_CLUSTER_URL (the
# fred URL) and NODEGRID_CLUSTER_DIR; stop_redis_cluster stops it and removes the directory.
start_redis_cluster() {
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  command -v redis-cli >/dev/null 2>&1 || apt_install redis-tools
  NODEGRID_CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/nodegrid-cluster.XXXXXX")
  local port=${NODEGRID_CLUSTER_BASE_PORT:-7301} ports=() node
  while [ "${#ports[@]}" -lt 3 ]; do
    if ! port_in_use "$port" && ! port_in_use $((port + 10000)); then ports+=("$port"); fi
    port=$((port + 1))
  done
  for port in "${ports[@]}"; do
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
      --cluster-config-file "$NODEGRID_CLUSTER_DIR/nodes-$port.conf" --cluster-node-timeout 5000 \
      --save "" --appendonly no --dir "$NODEGRID_CLUSTER_DIR" \
      --logfile "$NODEGRID_CLUSTER_DIR/redis-$port.log" --pidfile "$NODEGRID_CLUSTER_DIR/redis-$port.pid" >&2
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 40); do redis_answers "$port" && break; sleep 0.25; done
    redis_answers "$port" || die "cluster node $port did not start (see $NODEGRID_CLUSTER_DIR)"
  done
  say "creating a Redis Cluster on 127.0.0.1:${ports[*]}"
  redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >&2
  for port in "${ports[@]}"; do
    for _ in $(seq 1 80); do
      redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' && break
      sleep 0.25
    done
    redis-cli -p "$port" cluster info | grep -q '^cluster_state:ok' \
      || die "the cluster is not ready on $port"
  done
  NODEGRID_CLUSTER_URL="redis-cluster://127.0.0.1:${ports[0]}"
  for node in "${ports[@]:1}"; do
    NODEGRID_CLUSTER_URL="$NODEGRID_CLUSTER_URL$([ "$node" = "${ports[1]}" ] && echo '?' || echo '&')node=127.0.0.1:$node"
  done
  export NODEGRID_CLUSTER_URL NODEGRID_CLUSTER_DIR
}

# The tests of everything that lives in Redis, as `cargo test` filters, for a run against a
# cluster (the bridge's reconnect test kills one connection by id, which a cluster numbers per
# node: it is left out).
CLUSTER_TEST_FILTERS=(streaming:: publish:: history:: sessions:: ws:: bus:: lease:: motience::
  binary:: raw:: nodes:: children:: child_agent::
  --skip bus::the_bridge_resubscribes_after_its_connection_is_killed)

stop_redis_cluster() {
  [ -n "${NODEGRID_CLUSTER_DIR:-}" ] && [ -d "$NODEGRID_CLUSTER_DIR" ] || return 0
  local pidfile
  for pidfile in "$NODEGRID_CLUSTER_DIR"/*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 0.5
  rm -rf "$NODEGRID_CLUSTER_DIR"
}

# promtool checks the /metrics exposition in the tests. Debian ships it in the `prometheus`
# package; only the one binary is unpacked (installing the package would start a Prometheus).
ensure_promtool() {
  local tools=$NODEGRID_DATA_DIR/tools tmp
  if command -v promtool >/dev/null 2>&1; then
    NODEGRID_PROMTOOL=$(command -v promtool)
  elif [ -x "$tools/promtool" ]; then
    NODEGRID_PROMTOOL=$tools/promtool
  else
    tmp=$(mktemp -d)
    say "fetching promtool from Debian's prometheus package"
    if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
      [ "$_apt_updated" -eq 1 ] || { as_root apt-get update -qq >&2 && _apt_updated=1; }
      (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) || true
    fi
    if ls "$tmp"/prometheus_*.deb >/dev/null 2>&1; then
      dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
      mkdir -p "$tools"
      cp "$tmp/x/usr/bin/promtool" "$tools/promtool"
      NODEGRID_PROMTOOL=$tools/promtool
    fi
    rm -rf "$tmp"
  fi
  if [ -n "${NODEGRID_PROMTOOL:-}" ]; then
    export NODEGRID_PROMTOOL NODEGRID_REQUIRE_PROMTOOL=1
    say "promtool: $NODEGRID_PROMTOOL"
  else
    say "warning: promtool is not available; /metrics is checked by the tests' own parser only"
  fi
}

# Debian's Chromium, the headless browser the tests drive the server's pages with (the GraphQL
# query page). Installed from Debian's packages when missing.
ensure_chromium() {
  local found
  found=$(command -v chromium || command -v chromium-browser || true)
  if [ -z "$found" ]; then
    apt_install chromium || true
    found=$(command -v chromium || true)
  fi
  if [ -n "$found" ]; then
    export NODEGRID_CHROMIUM=$found NODEGRID_REQUIRE_CHROMIUM=1
    say "chromium: $found"
  else
    say "warning: chromium is not available; the browser tests are skipped"
  fi
}

# libfaketime, which the clock-jump test runs one instance under (its wall clock ahead).
# Installed from Debian's packages when missing.
ensure_faketime() {
  local lib=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
  [ -f "$lib" ] || apt_install faketime || true
  if [ -f "$lib" ]; then
    export NODEGRID_REQUIRE_FAKETIME=1
    say "libfaketime: $lib"
  else
    say "warning: libfaketime is not available; the clock-jump test is skipped"
  fi
}

# Mosquitto, the MQTT broker `nodegrid bench --compare` measures nodegrid against.
ensure_mosquitto() {
  local port=${NODEGRID_MQTT_PORT:-1883} conf=$NODEGRID_DATA_DIR/mosquitto/mosquitto.conf
  if ! { exec 8<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
    command -v mosquitto >/dev/null 2>&1 || apt_install mosquitto
    mkdir -p "$NODEGRID_DATA_DIR/mosquitto"
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" >"$conf"
    say "starting Mosquitto on 127.0.0.1:$port"
    mosquitto -d -c "$conf"
    for _ in $(seq 1 20); do { exec 8<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null && break; sleep 0.25; done
  fi
  exec 8>&-
  export NODEGRID_TEST_MQTT_URL="mqtt://127.0.0.1:$port"
  say "Mosquitto answers at 127.0.0.1:$port"
}

ensure_cargo() {
  command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust 1.95 or newer (rustup.rs)"
}

# Puts the text of file $2 in BENCHMARKS.md in place of the section between the "<!-- $1:start"
# and "<!-- $1:end -->" marks (appended when there is none yet). The benchmark scripts use it.
write_bench_section() {
  local mark=$1 section=$2
  if grep -q "<!-- $mark:start" BENCHMARKS.md; then
    awk -v file="$section" -v start="<!-- $mark:start" -v end="<!-- $mark:end -->" '
      index($0, start) == 1 { while ((getline line < file) > 0) print line; skip = 1; next }
      index($0, end) == 1 { skip = 0; next }
      !skip { print }' BENCHMARKS.md >BENCHMARKS.md.new
    mv BENCHMARKS.md.new BENCHMARKS.md
  else
    { echo; cat "$section"; } >>BENCHMARKS.md
  fi
}
