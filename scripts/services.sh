#!/usr/bin/env bash
# Start the real services the tests use, each private to this checkout, on
# loopback only. Source it: `source scripts/services.sh; start_postgres`.
# Installs missing Debian packages with apt-get when running as root.
set -euo pipefail

OMOPS_SERVICES_DIR="${OMOPS_SERVICES_DIR:-$(pwd)/.omops-test/services}"
OMOPS_PG_PORT="${OMOPS_PG_PORT:-54329}"

_apt_install() {
  if [ "$(id -u)" != "0" ]; then
    echo "missing Debian package(s) $*; install them (sudo apt-get install $*)" >&2
    return 1
  fi
  if [ -z "${_APT_UPDATED:-}" ]; then
    apt-get update -qq >/dev/null
    _APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

_pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  echo "$dir"
}

# Run a command as the unprivileged owner of the service data (postgres
# refuses to run as root).
_as_service_user() {
  local user="$1"; shift
  if [ "$(id -u)" = "0" ]; then
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}

start_postgres() {
  local bin
  bin=$(_pg_bin)
  if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    _apt_install postgresql
    bin=$(_pg_bin)
  fi
  local data="$OMOPS_SERVICES_DIR/postgres"
  local user
  user=$([ "$(id -u)" = "0" ] && echo postgres || id -un)
  mkdir -p "$OMOPS_SERVICES_DIR"
  if [ ! -f "$data/PG_VERSION" ]; then
    rm -rf "$data"
    mkdir -p "$data"
    [ "$(id -u)" = "0" ] && chown -R postgres: "$data"
    _as_service_user "$user" "$bin/initdb" -D "$data" -U omops --auth=trust -E UTF8 >/dev/null
  fi
  [ "$(id -u)" = "0" ] && chown -R postgres: "$data"
  if ! _as_service_user "$user" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    _as_service_user "$user" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
      -o "-p $OMOPS_PG_PORT -c listen_addresses=127.0.0.1 -k /tmp -c max_connections=200 -c fsync=off" \
      start >/dev/null
  fi
  "$bin/psql" -h 127.0.0.1 -p "$OMOPS_PG_PORT" -U omops -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='omops_test'" | grep -q 1 ||
    "$bin/createdb" -h 127.0.0.1 -p "$OMOPS_PG_PORT" -U omops omops_test
  export OMOPS_TEST_POSTGRES="postgresql://omops@127.0.0.1:$OMOPS_PG_PORT/omops_test"
  echo "PostgreSQL ready: $OMOPS_TEST_POSTGRES"
}

stop_postgres() {
  local bin data="$OMOPS_SERVICES_DIR/postgres"
  bin=$(_pg_bin)
  local user
  user=$([ "$(id -u)" = "0" ] && echo postgres || id -un)
  [ -f "$data/PG_VERSION" ] && _as_service_user "$user" "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
}

OMOPS_AMQP_PORT="${OMOPS_AMQP_PORT:-56729}"
OMOPS_REDIS_PORT="${OMOPS_REDIS_PORT:-63799}"

_port_open() {
  (echo > "/dev/tcp/127.0.0.1/$1") >/dev/null 2>&1
}

start_rabbitmq() {
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || _apt_install rabbitmq-server
  local base="$OMOPS_SERVICES_DIR/rabbitmq"
  if ! _port_open "$OMOPS_AMQP_PORT"; then
    mkdir -p "$base"
    echo "[]." > "$base/enabled_plugins"
    printf 'loopback_users = none\nlisteners.tcp.default = 127.0.0.1:%s\n' "$OMOPS_AMQP_PORT" \
      > "$base/rabbitmq.conf"
    [ "$(id -u)" = "0" ] && chown -R rabbitmq: "$base"
    # The server binary directly: Debian's rabbitmq-server wrapper resets HOME.
    _as_service_user rabbitmq env HOME="$base" RABBITMQ_NODENAME="omops-test@localhost" \
      RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$OMOPS_AMQP_PORT" \
      RABBITMQ_DIST_PORT=$((OMOPS_AMQP_PORT - 10000)) RABBITMQ_MNESIA_BASE="$base/mnesia" \
      RABBITMQ_LOG_BASE="$base/log" RABBITMQ_PID_FILE="$base/rabbitmq.pid" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" RABBITMQ_CONFIG_FILE="$base/rabbitmq" \
      /usr/lib/rabbitmq/bin/rabbitmq-server -detached >/dev/null 2>&1
    for _ in $(seq 1 240); do _port_open "$OMOPS_AMQP_PORT" && break; sleep 0.5; done
    _port_open "$OMOPS_AMQP_PORT" || { echo "RabbitMQ did not start; see $base/log" >&2; return 1; }
  fi
  export OMOPS_TEST_BROKER="amqp://guest:guest@127.0.0.1:$OMOPS_AMQP_PORT//"
  echo "RabbitMQ ready: $OMOPS_TEST_BROKER"
}

stop_rabbitmq() {
  local pidfile="$OMOPS_SERVICES_DIR/rabbitmq/rabbitmq.pid"
  if [ -f "$pidfile" ]; then
    kill "$(cat "$pidfile")" >/dev/null 2>&1 || true
    rm -f "$pidfile"
  fi
}

start_redis() {
  command -v redis-server >/dev/null 2>&1 || _apt_install redis-server
  local base="$OMOPS_SERVICES_DIR/redis"
  mkdir -p "$base"
  if ! redis-cli -p "$OMOPS_REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --port "$OMOPS_REDIS_PORT" --bind 127.0.0.1 --daemonize yes --dir "$base" \
      --save "" --appendonly no --logfile "$base/redis.log" --pidfile "$base/redis.pid" >/dev/null
    for _ in $(seq 1 50); do redis-cli -p "$OMOPS_REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  export OMOPS_TEST_REDIS="redis://127.0.0.1:$OMOPS_REDIS_PORT/0"
  echo "Redis ready: $OMOPS_TEST_REDIS"
}

stop_redis() {
  redis-cli -p "$OMOPS_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}
