#!/usr/bin/env bash
# Private PostgreSQL, RabbitMQ, Redis, S3 (moto), Azure Blob (Azurite) and MariaDB
# instances for the tests, on loopback,
# each run with its own free ports, its own directory and its own RabbitMQ node
# name, so that any number of runs can share a machine. A run only ever stops
# the processes it started itself (recorded by pid and start time), never one
# that merely answers on a port. Missing Debian packages are installed with
# apt-get when running as root.
#
# Sourced (what scripts/test.sh does, and what developers can do):
#   source scripts/services.sh
#   start_services postgres rabbitmq redis moto azurite mariadb   # in parallel; or start_postgres, ...
#   services_env                              # the export lines of this run
#   stop_services                             # stops this run's processes, removes its dir
#   stop_services_on_exit                     # (scripts/test.sh) stop_services on any exit
#   ensure_debian_packages "${OMOPS_R_PACKAGES[@]}"  # (scripts/test.sh) R for the r.model tests
#   ensure_debian_packages "${OMOPS_BROWSER_PACKAGES[@]}"  # (scripts/test.sh) Chromium for tests/browser
# Executed, for manual use (the services keep running after it returns):
#   bash scripts/services.sh start [postgres rabbitmq redis moto azurite mariadb]   # prints the run dir and env
#   bash scripts/services.sh env [RUN_DIR]    # export lines of one run, or of every live run
#   bash scripts/services.sh stop RUN_DIR
#
# The run directory is $OMOPS_SERVICES_DIR, by default
# .omops-test/run-<pid>-<random> in this checkout. It holds <service>/ (data and
# logs), <service>.pid ("pid start-time"), <service>.env (export line) and env.
# OMOPS_PG_PORT, OMOPS_AMQP_PORT, OMOPS_AMQP_DIST_PORT, OMOPS_REDIS_PORT,
# OMOPS_S3_PORT, OMOPS_MARIADB_PORT pin a port instead of picking a free one (a
# pinned port in use is an error). moto (the S3 server) is no Debian package: it comes with the
# test extra, `moto_server` in .venv/bin (or $OMOPS_MOTO_SERVER, or on PATH).
# Azurite (Azure Blob Storage) is an npm package, installed on first use into
# .omops-test/node (or $OMOPS_AZURITE names its azurite-blob); it runs in
# memory with telemetry off. OMOPS_AZURE_PORT pins its port. MariaDB runs on a
# private datadir (mariadb-install-db) with its own socket in the run dir.

_OMOPS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OMOPS_SERVICES_DIR="${OMOPS_SERVICES_DIR:-$_OMOPS_ROOT/.omops-test/run-$$-$RANDOM$RANDOM}"
_OMOPS_STARTERS=()

_svc_die() {
  echo "services.sh: $*" >&2
  return 1
}

# ---------------------------------------------------------------- packages

_pg_bin() {
  local dirs=(/usr/lib/postgresql/*/bin)
  [ -d "${dirs[0]}" ] && printf '%s\n' "${dirs[@]}" | sort -V | tail -n 1
}

_svc_missing_package() {
  case "$1" in
    postgres) local bin; bin=$(_pg_bin); [ -n "$bin" ] && [ -x "$bin/initdb" ] || echo postgresql ;;
    rabbitmq) [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || echo rabbitmq-server ;;
    redis) command -v redis-server >/dev/null 2>&1 || echo redis-server ;;
    moto) ;;  # a Python package (the test extra), not a Debian one: see _moto_bin
    azurite) command -v npm >/dev/null 2>&1 || [ -n "${OMOPS_AZURITE:-}" ] || echo npm ;;
    mariadb) [ -x /usr/sbin/mariadbd ] && command -v mariadb-install-db >/dev/null 2>&1 ||
      echo mariadb-server ;;
    *) _svc_die "unknown service '$1' (known: postgres rabbitmq redis moto azurite mariadb)" ;;
  esac
}

# Install the Debian packages the given services need, in one apt-get call
# (parallel starters must not race for the dpkg lock).
ensure_packages() {
  local svc pkg missing=()
  for svc in "$@"; do
    pkg=$(_svc_missing_package "$svc") || return 1
    [ -n "$pkg" ] && missing+=("$pkg")
  done
  [ "${#missing[@]}" = 0 ] && return 0
  if [ "$(id -u)" != "0" ]; then
    _svc_die "missing Debian package(s) ${missing[*]}: install them (sudo apt-get install ${missing[*]}) or run as root"
    return 1
  fi
  echo "installing ${missing[*]} with apt-get" >&2
  if ! { apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    _svc_die "apt-get install ${missing[*]} failed"
  fi
}

# Debian packages the model-framework tests need besides the services: R for
# the r.model plugin (rpy2 builds against it) and the R packages of the models
# the tests train.
OMOPS_R_PACKAGES=(r-base-core r-cran-randomforest)
# Debian's Chromium for the dashboard's browser tests (tests/browser, driven by
# Playwright with executable_path=/usr/bin/chromium: no browser is downloaded),
# and a font for its pages and screenshots.
OMOPS_BROWSER_PACKAGES=(chromium fonts-dejavu-core)

# Install the given Debian packages that are not installed yet, without their
# recommended packages, in one apt-get call.
ensure_debian_packages() {
  local pkg missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$pkg")
  done
  [ "${#missing[@]}" = 0 ] && return 0
  if [ "$(id -u)" != "0" ]; then
    _svc_die "missing Debian package(s) ${missing[*]}: install them (sudo apt-get install ${missing[*]}) or run as root"
    return 1
  fi
  echo "installing ${missing[*]} with apt-get" >&2
  if ! { apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null; }; then
    _svc_die "apt-get install ${missing[*]} failed"
  fi
}

# ---------------------------------------------------------------- ports

# Print N distinct ports that are free on 127.0.0.1 now. They are drawn at
# random below the kernel's ephemeral range (so outgoing connections never take
# them) and checked by binding; a port taken in the moment before the service
# binds it makes the service fail with "address in use", and its start retries.
_free_ports() {
  python3 - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except OSError:
    low = 32768
top = low - 1 if low > 21000 else 65535
held, ports = [], []
while len(ports) < n:
    port = random.randint(20000, top)
    if port in ports:
        continue
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        continue
    held.append(sock)
    ports.append(port)
print(" ".join(map(str, ports)))
EOF
}

# ---------------------------------------------------------------- processes

# "pid start-time": the start time (clock ticks since boot) tells a recycled
# pid from ours.
_proc_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  # shellcheck disable=SC2086
  set -- $stat
  [ "$1" != Z ] || return 1  # a zombie has exited already
  echo "${20}"
}

_svc_record() {  # service pid
  local start
  start=$(_proc_start "$2") || start=gone
  echo "$2 $start" >"$OMOPS_SERVICES_DIR/$1.pid"
}

# Is the process recorded for a service alive and still the one we started?
# (A record without a start time was written by the child itself, moments ago.)
_svc_alive() {  # service [run-dir]
  local file="${2:-$OMOPS_SERVICES_DIR}/$1.pid" pid start now
  [ -f "$file" ] || return 1
  read -r pid start <"$file" || [ -n "$pid" ] || return 1
  now=$(_proc_start "$pid") || return 1
  [ -z "$start" ] || [ "$now" = "$start" ]
}

# Run a command detached from the terminal (its own session: a Ctrl-C in the
# shell never reaches it) as the unprivileged service user when root
# (postgres refuses to run as root), stdin closed, output to a log file.
# The child records its own pid before it execs the server (setsid, setpriv,
# env and the server scripts all exec, so that pid is the server's): a starter
# interrupted right after the fork still leaves a record for stop_services.
# Launched from a subshell: no job control noise, no child of the calling shell.
_svc_launch() {  # service user log cmd...
  (_svc_launch_here "$@")
}

_svc_launch_here() {
  local svc="$1" user="$2" log="$3" pid=
  shift 3
  if [ "$(id -u)" = "0" ] && [ "$user" != root ]; then
    set -- setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"
  fi
  rm -f "$OMOPS_SERVICES_DIR/$svc.pid"
  # shellcheck disable=SC2016  # expanded by the child
  setsid bash -c 'echo "$$" >"$0"; exec "$@"' "$OMOPS_SERVICES_DIR/$svc.pid" "$@" \
    </dev/null >>"$log" 2>&1 &
  # Add the start time once the child has written its record (its own pid,
  # right even if setsid had to fork).
  for _ in $(seq 1 250); do
    read -r pid 2>/dev/null <"$OMOPS_SERVICES_DIR/$svc.pid" && break
    sleep 0.02
  done
  [ -n "$pid" ] || { _svc_die "$svc did not launch"; return 1; }
  _svc_record "$svc" "$pid"
}

_svc_log_tail() {  # service
  find "$OMOPS_SERVICES_DIR/$1" -name '*.log' -type f -exec sh -c \
    'for f; do echo "--- last lines of $f:"; tail -n 25 "$f"; done' _ {} + >&2 2>/dev/null
}

# Poll a readiness check until it passes; fail early when the server died.
_svc_wait() {  # service seconds check...
  local svc="$1" deadline=$((SECONDS + $2))
  shift 2
  while ! "$@"; do
    if ! _svc_alive "$svc"; then
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      _svc_die "$svc did not become ready in time"
      return 1
    fi
    sleep 0.1
  done
}

# Is the listening socket on 127.0.0.1:port our server's? (Then what answers
# there is ours: a server that failed to bind must never look ready because
# another one answers on its port.)
_svc_listens() {  # service port
  local pid inode
  read -r pid _ <"$OMOPS_SERVICES_DIR/$1.pid" || [ -n "$pid" ] || return 1
  inode=$(awk -v addr="$(printf '0100007F:%04X' "$2")" \
    '$2 == addr && $4 == "0A" {print $10; exit}' /proc/net/tcp)
  [ -n "$inode" ] && [ "$inode" != 0 ] || return 1
  # shellcheck disable=SC2010  # fd names are numbers; one ls beats a readlink per fd
  ls -l "/proc/$pid/fd" 2>/dev/null | grep -qF "socket:[$inode]"
}

# Did the server exit because its port was taken (worth another port)?
_svc_port_clash() {
  grep -rqiE 'address already in use|eaddrinuse' "$OMOPS_SERVICES_DIR/$1" 2>/dev/null
}

_svc_failed() {  # service
  echo "services.sh: $1 failed to start (run dir $OMOPS_SERVICES_DIR)" >&2
  _svc_log_tail "$1"
  _svc_stop "$1" 5
  return 1
}

# Stop the recorded process of a service and wait until it is gone: INT for
# PostgreSQL (its fast shutdown), TERM for Redis, KILL for RabbitMQ (its data is
# thrown away, and a graceful stop takes a second); KILL after the grace period.
# Never touches a process it did not start.
_svc_stop() {  # service grace-seconds
  local file="$OMOPS_SERVICES_DIR/$1.pid" pid start deadline sig=TERM
  [ -f "$file" ] || return 0
  read -r pid start <"$file" || true
  case "$1" in postgres) sig=INT ;; rabbitmq) sig=KILL ;; esac
  if _svc_alive "$1"; then
    kill -"$sig" "$pid" 2>/dev/null || true
    deadline=$((SECONDS + $2))
    while _svc_alive "$1" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if _svc_alive "$1"; then
      echo "services.sh: $1 (pid $pid) ignored SIG$sig for $2 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      while _svc_alive "$1"; do sleep 0.1; done
    fi
  fi
  rm -f "$file" "$OMOPS_SERVICES_DIR/$1.env"
}

_svc_export() {  # service VAR url
  export "$2=$3"
  echo "export $2=$3" >"$OMOPS_SERVICES_DIR/$1.env"
  echo "$1 ready: $3"
}

_svc_prepare() {  # service
  pkg=$(_svc_missing_package "$1") || return 1
  [ -z "$pkg" ] || ensure_packages "$1" || return 1
  mkdir -p "$OMOPS_SERVICES_DIR" || return 1
  if _svc_alive "$1"; then
    _svc_die "$1 already runs for $OMOPS_SERVICES_DIR; stop_$1 first"
    return 1
  fi
  rm -rf "${OMOPS_SERVICES_DIR:?}/$1"
  mkdir -p "$OMOPS_SERVICES_DIR/$1"
}

# ---------------------------------------------------------------- PostgreSQL

_svc_user() {  # the user a service runs as when we are root
  if [ "$(id -u)" = "0" ]; then echo "$1"; else id -un; fi
}

_pg_ready() {  # bin port
  _svc_listens postgres "$2" && "$1/pg_isready" -q -h 127.0.0.1 -p "$2" -U omops -d postgres
}

start_postgres() {
  local pkg bin data port user try
  _svc_prepare postgres || return 1
  bin=$(_pg_bin)
  data="$OMOPS_SERVICES_DIR/postgres/data"
  user=$(_svc_user postgres)
  mkdir -p "$data" && chmod 700 "$data" && chown "$user" "$data" || return 1
  (cd / && if [ "$(id -u)" = "0" ]; then runuser -u "$user" -- "$bin/initdb" -D "$data" \
    -U omops --auth=trust -E UTF8 --no-sync; else "$bin/initdb" -D "$data" -U omops \
    --auth=trust -E UTF8 --no-sync; fi) >"$OMOPS_SERVICES_DIR/postgres/initdb.log" 2>&1 ||
    { _svc_failed postgres; return 1; }
  touch "$OMOPS_SERVICES_DIR/postgres/server.log"
  chown "$user" "$OMOPS_SERVICES_DIR/postgres/server.log"
  for try in 1 2 3; do
    port="${OMOPS_PG_PORT:-$(_free_ports 1)}"
    # No unix socket (-k ''): nothing shared in /tmp, TCP on loopback only.
    _svc_launch postgres "$user" "$OMOPS_SERVICES_DIR/postgres/server.log" \
      "$bin/postgres" -D "$data" -p "$port" -k '' -c listen_addresses=127.0.0.1 \
      -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off
    _svc_wait postgres 60 _pg_ready "$bin" "$port" && break
    if [ -n "${OMOPS_PG_PORT:-}" ] || [ "$try" = 3 ] || ! _svc_port_clash postgres; then
      _svc_failed postgres
      return 1
    fi
    _svc_stop postgres 5
    : >"$OMOPS_SERVICES_DIR/postgres/server.log"
  done
  "$bin/createdb" -h 127.0.0.1 -p "$port" -U omops omops_test || { _svc_failed postgres; return 1; }
  _svc_export postgres OMOPS_TEST_POSTGRES "postgresql://omops@127.0.0.1:$port/omops_test"
}

stop_postgres() {
  _svc_stop postgres 30
  rm -rf "${OMOPS_SERVICES_DIR:?}/postgres"
}

# ---------------------------------------------------------------- RabbitMQ

start_rabbitmq() {
  local pkg base user node ports amqp dist try
  _svc_prepare rabbitmq || return 1
  base="$OMOPS_SERVICES_DIR/rabbitmq"
  user=$(_svc_user rabbitmq)
  # A node name of its own: two nodes named alike on one host refuse to start.
  node="omops-test-$$-$RANDOM$RANDOM@localhost"
  echo "[]." >"$base/enabled_plugins"
  echo "loopback_users = none" >"$base/rabbitmq.conf"
  touch "$base/stdout.log"
  chown -R "$user" "$base" || return 1
  for try in 1 2 3; do
    ports=$(_free_ports 2)
    amqp="${OMOPS_AMQP_PORT:-${ports% *}}"
    dist="${OMOPS_AMQP_DIST_PORT:-${ports#* }}"
    # The server script itself, not Debian's wrapper (it resets HOME, where the
    # Erlang cookie goes). ALLOW_INPUT makes it exec the VM (so the recorded pid
    # is the VM's) instead of staying as a signal-forwarding parent; -noinput
    # and +B i put back what that mode drops. epmd is started on demand and
    # shared by every Erlang node of the machine: it is never ours to stop.
    _svc_launch rabbitmq "$user" "$base/stdout.log" env HOME="$base" \
      RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
      RABBITMQ_NODE_PORT="$amqp" RABBITMQ_DIST_PORT="$dist" \
      RABBITMQ_MNESIA_BASE="$base/mnesia" RABBITMQ_LOG_BASE="$base/log" \
      RABBITMQ_PID_FILE="$base/rabbitmq.pid" RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" \
      RABBITMQ_CONFIG_FILE="$base/rabbitmq" RABBITMQ_ADVANCED_CONFIG_FILE="$base/advanced.config" \
      RABBITMQ_ALLOW_INPUT=1 \
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-noinput +B i -kernel inet_dist_use_interface {127,0,0,1}" \
      /usr/lib/rabbitmq/bin/rabbitmq-server
    # The AMQP listener opens last in RabbitMQ's boot.
    _svc_wait rabbitmq 120 _svc_listens rabbitmq "$amqp" && break
    if [ -n "${OMOPS_AMQP_PORT:-}${OMOPS_AMQP_DIST_PORT:-}" ] || [ "$try" = 3 ] ||
      ! _svc_port_clash rabbitmq; then
      _svc_failed rabbitmq
      return 1
    fi
    _svc_stop rabbitmq 10
    rm -rf "$base/mnesia" "$base/log"
  done
  echo "$node $dist" >"$base/node"
  _svc_export rabbitmq OMOPS_TEST_BROKER "amqp://guest:guest@127.0.0.1:$amqp//"
}

stop_rabbitmq() {
  _svc_stop rabbitmq 30
  rm -rf "${OMOPS_SERVICES_DIR:?}/rabbitmq"
}

# ---------------------------------------------------------------- Redis

_redis_ready() {  # port
  _svc_listens redis "$1" && redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG
}

start_redis() {
  local pkg base port try
  _svc_prepare redis || return 1
  base="$OMOPS_SERVICES_DIR/redis"
  for try in 1 2 3; do
    port="${OMOPS_REDIS_PORT:-$(_free_ports 1)}"
    : >"$base/redis.log"
    _svc_launch redis root "$base/redis.log" redis-server --port "$port" --bind 127.0.0.1 \
      --daemonize no --dir "$base" --save "" --appendonly no --logfile "$base/redis.log"
    _svc_wait redis 20 _redis_ready "$port" && break
    if [ -n "${OMOPS_REDIS_PORT:-}" ] || [ "$try" = 3 ] || ! _svc_port_clash redis; then
      _svc_failed redis
      return 1
    fi
    _svc_stop redis 5
  done
  _svc_export redis OMOPS_TEST_REDIS "redis://127.0.0.1:$port/0"
}

stop_redis() {
  _svc_stop redis 10
  rm -rf "${OMOPS_SERVICES_DIR:?}/redis"
}

# ---------------------------------------------------------------- S3 (moto)

_moto_bin() {
  local found
  for found in "${OMOPS_MOTO_SERVER:-}" "$_OMOPS_ROOT/.venv/bin/moto_server" \
    "$(command -v moto_server 2>/dev/null)"; do
    [ -n "$found" ] && [ -x "$found" ] && { echo "$found"; return 0; }
  done
  _svc_die "moto_server not found: pip install -e '.[test]' (it brings moto[server])"
}

start_moto() {
  local pkg base bin port try
  _svc_prepare moto || return 1
  bin=$(_moto_bin) || return 1
  base="$OMOPS_SERVICES_DIR/moto"
  for try in 1 2 3; do
    port="${OMOPS_S3_PORT:-$(_free_ports 1)}"
    : >"$base/moto.log"
    # An in-memory S3 (and more) on loopback; its state goes with the process.
    _svc_launch moto root "$base/moto.log" "$bin" -H 127.0.0.1 -p "$port"
    _svc_wait moto 60 _svc_listens moto "$port" && break
    if [ -n "${OMOPS_S3_PORT:-}" ] || [ "$try" = 3 ] || ! _svc_port_clash moto; then
      _svc_failed moto
      return 1
    fi
    _svc_stop moto 5
  done
  _svc_export moto OMOPS_TEST_S3 "http://127.0.0.1:$port"
}

stop_moto() {
  _svc_stop moto 10
  rm -rf "${OMOPS_SERVICES_DIR:?}/moto"
}

# ---------------------------------------------------------------- Azure Blob (Azurite)

# azurite-blob from npm, installed once per checkout (runs started together
# take turns to install it).
_azurite_bin() {
  local prefix="$_OMOPS_ROOT/.omops-test/node" bin
  if [ -n "${OMOPS_AZURITE:-}" ]; then echo "$OMOPS_AZURITE"; return 0; fi
  bin="$prefix/node_modules/.bin/azurite-blob"
  mkdir -p "$prefix" || return 1
  (
    flock 8
    [ -x "$bin" ] || npm install --prefix "$prefix" --no-audit --no-fund --silent azurite@3 >&2
  ) 8>"$prefix/.install.lock" || { _svc_die "npm install azurite failed"; return 1; }
  [ -x "$bin" ] || { _svc_die "azurite-blob not found after npm install"; return 1; }
  echo "$bin"
}

start_azurite() {
  local pkg base bin port try
  _svc_prepare azurite || return 1
  bin=$(_azurite_bin) || return 1
  base="$OMOPS_SERVICES_DIR/azurite"
  for try in 1 2 3; do
    port="${OMOPS_AZURE_PORT:-$(_free_ports 1)}"
    : >"$base/azurite.log"
    # In memory, telemetry off (it would try to reach the internet), any API version.
    _svc_launch azurite root "$base/azurite.log" "$bin" --blobHost 127.0.0.1 \
      --blobPort "$port" --inMemoryPersistence --disableTelemetry \
      --skipApiVersionCheck --loose
    _svc_wait azurite 60 _svc_listens azurite "$port" && break
    if [ -n "${OMOPS_AZURE_PORT:-}" ] || [ "$try" = 3 ] || ! _svc_port_clash azurite; then
      _svc_failed azurite
      return 1
    fi
    _svc_stop azurite 5
  done
  # Azurite's one account, with its documented, public development key.
  _svc_export azurite OMOPS_TEST_AZURE "http://127.0.0.1:$port/devstoreaccount1"
}

stop_azurite() {
  _svc_stop azurite 10
  rm -rf "${OMOPS_SERVICES_DIR:?}/azurite"
}

# ---------------------------------------------------------------- MariaDB

_mariadb_sql() {  # port sql
  mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -P "$1" -u root -e "$2"
}

_mariadb_ready() {  # port
  _svc_listens mariadb "$1" &&
    mariadb-admin --no-defaults --protocol=tcp -h 127.0.0.1 -P "$1" -u root ping >/dev/null 2>&1
}

start_mariadb() {
  local pkg base data port user try
  _svc_prepare mariadb || return 1
  base="$OMOPS_SERVICES_DIR/mariadb"
  data="$base/data"
  user=$(_svc_user mysql)
  mkdir -p "$data" "$base/tmp" && chown -R "$user" "$base" || return 1
  # A datadir of our own; root logs in without a password (loopback only, as
  # PostgreSQL's trust), so the tests can create users with passwords.
  (cd / && mariadb-install-db --no-defaults --datadir="$data" --user="$user" \
    --auth-root-authentication-method=normal --skip-test-db) \
    >"$base/install.log" 2>&1 || { _svc_failed mariadb; return 1; }
  for try in 1 2 3; do
    port="${OMOPS_MARIADB_PORT:-$(_free_ports 1)}"
    : >"$base/server.log"
    chown "$user" "$base/server.log"
    # Its own socket and pid file in the run dir: nothing shared with a system server.
    _svc_launch mariadb "$user" "$base/server.log" /usr/sbin/mariadbd --no-defaults \
      --datadir="$data" --socket="$base/mariadbd.sock" --pid-file="$base/mariadbd.pid" \
      --tmpdir="$base/tmp" --port="$port" --bind-address=127.0.0.1 --skip-name-resolve \
      --log-error="$base/server.log" --innodb-buffer-pool-size=64M \
      --innodb-flush-log-at-trx-commit=0 --innodb-use-native-aio=0 --max-connections=200
    _svc_wait mariadb 60 _mariadb_ready "$port" && break
    if [ -n "${OMOPS_MARIADB_PORT:-}" ] || [ "$try" = 3 ] || ! _svc_port_clash mariadb; then
      _svc_failed mariadb
      return 1
    fi
    _svc_stop mariadb 10
  done
  _mariadb_sql "$port" "CREATE DATABASE omops_test; CREATE USER 'omops'@'127.0.0.1';
    GRANT ALL PRIVILEGES ON *.* TO 'omops'@'127.0.0.1' WITH GRANT OPTION;" ||
    { _svc_failed mariadb; return 1; }
  _svc_export mariadb OMOPS_TEST_MARIADB "mysql+pymysql://omops@127.0.0.1:$port/omops_test"
}

stop_mariadb() {
  _svc_stop mariadb 30
  rm -rf "${OMOPS_SERVICES_DIR:?}/mariadb"
}

# ---------------------------------------------------------------- together

# Start services in parallel (RabbitMQ's ~5 s boot dominates), export their
# variables here, write $OMOPS_SERVICES_DIR/env. On any failure print what
# failed, with its log tail, and return non-zero (stop_services cleans up).
start_services() {
  local svc i rc=0 pids=()
  [ "$#" -gt 0 ] || set -- postgres rabbitmq redis moto azurite mariadb
  ensure_packages "$@" || return 1
  mkdir -p "$OMOPS_SERVICES_DIR" || return 1
  for svc in "$@"; do
    ("start_$svc") >"$OMOPS_SERVICES_DIR/$svc.start.log" 2>&1 &
    pids+=($!)
    _OMOPS_STARTERS+=($!)
  done
  for i in "${!pids[@]}"; do
    svc=${*:i+1:1}
    if wait "${pids[$i]}"; then
      cat "$OMOPS_SERVICES_DIR/$svc.start.log"
      # shellcheck disable=SC1090
      source "$OMOPS_SERVICES_DIR/$svc.env"
    else
      cat "$OMOPS_SERVICES_DIR/$svc.start.log" >&2
      rc=1
    fi
    rm -f "$OMOPS_SERVICES_DIR/$svc.start.log"
  done
  _OMOPS_STARTERS=()
  services_env >"$OMOPS_SERVICES_DIR/env"
  return "$rc"
}

# The export lines of the services running for $OMOPS_SERVICES_DIR (or the
# given run dir), to paste into another shell or `source <run dir>/env`.
services_env() {
  local dir="${1:-$OMOPS_SERVICES_DIR}" svc
  echo "export OMOPS_SERVICES_DIR=$dir"
  for svc in postgres rabbitmq redis moto azurite mariadb; do
    if _svc_alive "$svc" "$dir" && [ -f "$dir/$svc.env" ]; then
      cat "$dir/$svc.env"
    fi
  done
}

# Stop everything this run started (starters still running first, so none
# launches a server after we looked), then remove the run dir.
stop_services() {
  local pid svc
  for pid in "${_OMOPS_STARTERS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  _OMOPS_STARTERS=()
  # In parallel, in a subshell: no job control chatter, no waiting on other jobs.
  (
    for svc in redis postgres rabbitmq moto azurite mariadb; do _svc_stop "$svc" 30 & done
    wait
  )
  # Only what a run creates: a mistaken OMOPS_SERVICES_DIR loses nothing else.
  for svc in postgres rabbitmq redis moto azurite mariadb; do
    rm -rf "${OMOPS_SERVICES_DIR:?}/$svc"
    rm -f "$OMOPS_SERVICES_DIR/$svc".{pid,env,start.log}
  done
  rm -f "$OMOPS_SERVICES_DIR/env"
  # (.omops-test/ itself stays: another run may be creating its dir in it.)
  rmdir "$OMOPS_SERVICES_DIR" 2>/dev/null || true
}

# Stop this run's services whenever the shell exits: normally, on an error
# under `set -e`, on Ctrl-C, SIGTERM or SIGHUP.
stop_services_on_exit() {
  trap stop_services EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}

# ---------------------------------------------------------------- executed

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  case "${1:-}" in
    start)
      shift
      start_services "$@" || { stop_services; exit 1; }
      echo "# services keep running; stop them with: bash $0 stop $OMOPS_SERVICES_DIR"
      echo "# or load them into a shell with: source $OMOPS_SERVICES_DIR/env"
      cat "$OMOPS_SERVICES_DIR/env"
      ;;
    env)
      if [ -n "${2:-}" ]; then
        services_env "$2"
      else
        for dir in "$_OMOPS_ROOT"/.omops-test/run-*/; do
          lines=$(services_env "${dir%/}")
          # Only runs with a live service (the first line names the dir).
          [ "$(echo "$lines" | wc -l)" -le 1 ] || printf '%s\n\n' "$lines"
        done
      fi
      ;;
    stop)
      [ -n "${2:-}" ] || { echo "usage: bash $0 stop RUN_DIR" >&2; exit 2; }
      [ -d "$2" ] || { echo "services.sh: no run dir $2 (already stopped?)" >&2; exit 1; }
      OMOPS_SERVICES_DIR="$(cd "$2" && pwd)"
      stop_services
      ;;
    *)
      echo "usage: bash $0 start [postgres rabbitmq redis moto azurite mariadb] | env [RUN_DIR] | stop RUN_DIR" >&2
      exit 2
      ;;
  esac
fi
