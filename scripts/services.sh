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
