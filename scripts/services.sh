#!/usr/bin/env bash
# Real servers for the tests: PostgreSQL, RabbitMQ, NATS (JetStream), moto
# (S3 + DynamoDB + SQS) and Azurite (Azure Blob/Queue/Table), installed if
# missing and run in the background on 127.0.0.1 and non-default ports, with
# everything they write under .services/ (ignored by git).
#
# Usage: scripts/services.sh up [NAME...]     install if missing, start, wait until ready
#        scripts/services.sh down [NAME...]   stop what `up` started (by PID)
#        scripts/services.sh env              print `export` lines for the running servers
#        scripts/services.sh status           which are running
#        scripts/services.sh running          names of the running ones, one a line
#        scripts/services.sh names            every known name, one a line
# NAME is one of: postgres rabbitmq nats moto azurite (default: all of them).
#
# Settings (environment):
#   EXACTLY_SERVICES_DURABLE=1     PostgreSQL with durable defaults (fsync and
#                                  synchronous_commit on) for benchmarks; the
#                                  default turns both off for fast tests
#   EXACTLY_SERVICES_TIMEOUT=SECS  readiness timeout for every server (default:
#                                  60 s, RabbitMQ 120 s)
#
# Tests read only the EXACTLY_TEST_* variables that `env` prints (and that
# `up` writes to .services/env), so where a Docker engine exists the same
# tests can run against containers instead: see docs/services.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SV="$ROOT/.services"
PIDS="$SV/pids"
LOGS="$SV/logs"
DATA="$SV/data"
CONF="$SV/conf"
NODE_DIR="$SV/node"
VENV="$SV/venv"
ENV_FILE="$SV/env"

ALL=(postgres rabbitmq nats moto azurite)

# Ports: "2" before each server's default port. They must stay below 32768,
# outside Linux's ephemeral range (32768-60999): a port in that range can be
# taken at any moment as the source port of some outgoing connection -- even
# by a readiness poll connecting to the not-yet-listening port itself (a TCP
# self-connect), which then makes the server fail with EADDRINUSE. Seen here
# with 5xxxx ports: 2 RabbitMQ starts out of 3 failed that way.
HOST=127.0.0.1
# EXACTLY_SERVICES_PORT_OFFSET (default 0) moves every port up by that much,
# so a second checkout (e.g. a CI run beside a working copy) can run its own
# servers on the same machine; keep the results below 32768.
OFF=${EXACTLY_SERVICES_PORT_OFFSET:-0}
PG_PORT=$((25432 + OFF))
RMQ_PORT=$((25672 + OFF))      # AMQP
RMQ_DIST_PORT=$((25673 + OFF)) # Erlang distribution (the CLI tools talk to the node here)
RMQ_EPMD_PORT=$((24369 + OFF)) # our own epmd, not the default 4369
NATS_PORT=$((24222 + OFF))
NATS_MON_PORT=$((28222 + OFF))
MOTO_PORT=$((25000 + OFF))
AZ_BLOB_PORT=$((25010 + OFF))
AZ_QUEUE_PORT=$((25011 + OFF))
AZ_TABLE_PORT=$((25012 + OFF))
ALL_PORTS=("$PG_PORT" "$RMQ_PORT" "$RMQ_DIST_PORT" "$RMQ_EPMD_PORT" "$NATS_PORT" "$NATS_MON_PORT"
  "$MOTO_PORT" "$AZ_BLOB_PORT" "$AZ_QUEUE_PORT" "$AZ_TABLE_PORT")

AZURITE_SPEC="azurite@3.35" # 3.35 is the newest azurite that runs on Node 20
AZURITE_MINOR="3.35."
MOTO_SPEC="moto[server]>=5,<6"
AZ_ACCOUNT=devstoreaccount1
# Azurite's published, well-known development key (not a secret).
AZ_KEY="Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

RMQ_BIN=/usr/lib/rabbitmq/bin

say() { echo "services: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

is_known() {
  local n
  for n in "${ALL[@]}"; do [ "$n" = "$1" ] && return 0; done
  return 1
}

now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- processes

# A PID is ours only if the process still has the start time recorded when we
# started it, so a reused PID is never signalled.
proc_start_time() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) } # drop "pid (comm) ", comm may hold spaces
  # shellcheck disable=SC2086
  set -- $stat
  echo "${20}" # field 22 of /proc/PID/stat: start time in clock ticks
}

proc_alive() { # running and not a zombie
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ]
}

record_pid() { # KEY PID (a process already gone is not recorded)
  local t
  if t=$(proc_start_time "$2"); then
    echo "$2" >"$PIDS/$1.pid"
    echo "$t" >"$PIDS/$1.stamp"
  else
    forget_pid "$1"
  fi
}

forget_pid() { rm -f "$PIDS/$1.pid" "$PIDS/$1.stamp"; }

# Prints the PID recorded under KEY if that very process is still alive.
our_pid() {
  local pid stamp t
  [ -f "$PIDS/$1.pid" ] && [ -f "$PIDS/$1.stamp" ] || return 1
  pid=$(cat "$PIDS/$1.pid")
  stamp=$(cat "$PIDS/$1.stamp")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  proc_alive "$pid" || return 1
  t=$(proc_start_time "$pid") || return 1
  [ "$stamp" = "$t" ] || return 1
  echo "$pid"
}

# Stops the process recorded under KEY (if it is still ours) with SIGNAL,
# escalating to SIGKILL after TIMEOUT seconds; forgets the PID either way.
stop_key() { # KEY SIGNAL TIMEOUT
  local pid deadline
  if pid=$(our_pid "$1"); then
    kill -s "$2" "$pid" 2>/dev/null || true
    deadline=$(($(now_ms) + $3 * 1000))
    while proc_alive "$pid"; do
      if [ "$(now_ms)" -ge "$deadline" ]; then
        say "$1 (pid $pid) did not stop within $3 s: SIGKILL"
        kill -s KILL "$pid" 2>/dev/null || true
        sleep 0.2
        break
      fi
      sleep 0.1
    done
  fi
  forget_pid "$1"
}

# Starts a command in its own session, detached from the terminal, with its
# output in LOG (a fresh one); sets SPAWNED_PID.
SPAWNED_PID=
spawn() { # LOG CMD...
  local log=$1
  shift
  # fd 9 holds .services/lock: a server must not keep it
  setsid "$@" </dev/null >"$log" 2>&1 9>&- &
  SPAWNED_PID=$!
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

http_code() { # URL -> HTTP status ("000" when nothing answers)
  curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true
}

port_holder() {
  ss -ltnpH "sport = :$1" 2>/dev/null | sed 's/^/    /' || true
}

check_ports_free() { # NAME PORT...
  local name=$1 p
  shift
  for p in "$@"; do
    if port_open "$p"; then
      say "$name: port $p on $HOST is already taken by a process this script did not start:"
      port_holder "$p" >&2
      return 1
    fi
  done
}

# ---------------------------------------------------------------- installing

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
apt_install() {
  local log="$LOGS/apt.log"
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    as_root apt-get update >>"$log" 2>&1 || {
      tail -n 20 "$log" >&2
      die "apt-get update failed (log: $log)"
    }
    APT_UPDATED=1
  fi
  local t0
  t0=$(now_ms)
  say "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >>"$log" 2>&1 || {
    tail -n 20 "$log" >&2
    die "apt-get install $* failed (log: $log)"
  }
  say "  installed in $(secs_since "$t0") s"
}

# Newest /usr/lib/postgresql/N/bin with a server in it.
pg_bindir() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    if [ ! -x "$d/initdb" ] || [ ! -x "$d/pg_ctl" ]; then continue; fi
    if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -n 1)" = "$d" ]; then
      best=$d
    fi
  done
  if [ -z "$best" ] && command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    best=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
  fi
  [ -n "$best" ] && echo "$best"
}

pgbench_path() {
  local d
  if d=$(pg_bindir) && [ -x "$d/pgbench" ]; then
    echo "$d/pgbench"
  elif command -v pgbench >/dev/null; then
    command -v pgbench
  else
    return 1
  fi
}

epmd_path() {
  local e
  if command -v epmd >/dev/null; then
    command -v epmd
    return
  fi
  for e in /usr/lib/erlang/erts-*/bin/epmd /usr/lib/erlang/bin/epmd; do
    [ -x "$e" ] && {
      echo "$e"
      return
    }
  done
  return 1
}

moto_usable() { # PATH
  if [[ "$1" == */shims/* ]] && command -v pyenv >/dev/null; then
    # a pyenv shim exists if any Python version has the script: ask pyenv
    # (fast) whether the active one does
    pyenv which moto_server >/dev/null 2>&1
  else
    "$1" --help >/dev/null 2>&1 # slow (imports moto), but certain
  fi
}

MOTO_CMD=
moto_cmd() { # prints the moto_server to run
  local p
  if [ -z "$MOTO_CMD" ]; then
    if p=$(command -v moto_server) && moto_usable "$p"; then
      MOTO_CMD=$p
    elif [ -x "$VENV/bin/moto_server" ]; then
      MOTO_CMD="$VENV/bin/moto_server"
    else
      return 1
    fi
  fi
  echo "$MOTO_CMD"
}

azurite_installed() {
  local v
  [ -f "$NODE_DIR/node_modules/azurite/package.json" ] || return 1
  v=$(node -p 'require(process.argv[1]).version' "$NODE_DIR/node_modules/azurite/package.json" 2>/dev/null) || return 1
  [[ "$v" == "$AZURITE_MINOR"* ]]
}

install_missing() { # NAME...
  local n pkgs=() log="$LOGS/install.log" t0
  command -v curl >/dev/null || pkgs+=(curl)
  command -v setsid >/dev/null && command -v flock >/dev/null || pkgs+=(util-linux)
  command -v ss >/dev/null || pkgs+=(iproute2)
  for n in "$@"; do
    case "$n" in
      postgres) pg_bindir >/dev/null || pkgs+=(postgresql postgresql-client) ;;
      rabbitmq) [ -x "$RMQ_BIN/rabbitmq-server" ] || pkgs+=(rabbitmq-server) ;;
      nats) command -v nats-server >/dev/null || pkgs+=(nats-server) ;;
      moto) moto_cmd >/dev/null || command -v python3 >/dev/null || pkgs+=(python3 python3-venv) ;;
      azurite) azurite_installed || command -v npm >/dev/null || pkgs+=(nodejs npm) ;;
    esac
  done
  if [ "${#pkgs[@]}" -gt 0 ]; then apt_install "${pkgs[@]}"; fi

  for n in "$@"; do
    case "$n" in
      moto)
        if ! moto_cmd >/dev/null; then
          # Into a project-local virtualenv: nothing global changes, and it
          # works where the system Python is "externally managed".
          say "pip install $MOTO_SPEC (into .services/venv)"
          t0=$(now_ms)
          { python3 -m venv "$VENV" && "$VENV/bin/python" -m pip install --quiet "$MOTO_SPEC"; } >>"$log" 2>&1 || {
            tail -n 20 "$log" >&2
            die "pip install $MOTO_SPEC failed (log: $log)"
          }
          say "  installed in $(secs_since "$t0") s"
        fi
        ;;
      azurite)
        if ! azurite_installed; then
          say "npm install $AZURITE_SPEC (into .services/node)"
          t0=$(now_ms)
          mkdir -p "$NODE_DIR"
          [ -f "$NODE_DIR/package.json" ] || echo '{"name":"exactly-services","private":true}' >"$NODE_DIR/package.json"
          npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error "$AZURITE_SPEC" >>"$log" 2>&1 || {
            tail -n 20 "$log" >&2
            die "npm install $AZURITE_SPEC failed (log: $log)"
          }
          azurite_installed || die "npm installed an azurite that is not $AZURITE_MINOR*"
          say "  installed in $(secs_since "$t0") s"
        fi
        ;;
    esac
  done
}

# ---------------------------------------------------------------- postgres

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The cluster lives under .services/data/postgres when the postgres user can
# reach it, else (a checkout under a private home, say) under /tmp.
pg_base() {
  local base="$DATA/postgres"
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$DATA"
    if ! runuser -u postgres -- test -x "$DATA" 2>/dev/null; then
      base="${TMPDIR:-/tmp}/exactly-services-$(printf %s "$ROOT" | md5sum | cut -c1-8)/postgres"
    fi
  fi
  echo "$base"
}

pg_durability_conf() {
  if [ "${EXACTLY_SERVICES_DURABLE:-0}" = 1 ]; then
    printf '%s\n' "# durable (EXACTLY_SERVICES_DURABLE=1): the defaults" "fsync = on" "synchronous_commit = on"
  else
    printf '%s\n' "# fast tests: no flushes to disk" "fsync = off" "synchronous_commit = off"
  fi
}

start_postgres() {
  local bindir base
  bindir=$(pg_bindir) || die "postgres: no PostgreSQL server binaries found"
  base=$(pg_base)
  rm -rf "$base"
  mkdir -p "$base"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$base"; fi
  chmod 700 "$base"
  echo "$base/data" >"$PIDS/postgres.datadir"
  ln -sfn "$base/postgres.log" "$LOGS/postgres.log"
  as_pg "$bindir/initdb" -D "$base/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync \
    >"$base/initdb.log" 2>&1 || {
    tail -n 20 "$base/initdb.log" >&2
    say "postgres: initdb failed"
    return 1
  }
  as_pg tee -a "$base/data/postgresql.conf" >/dev/null <<EOF

# scripts/services.sh
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 200
include_if_exists = 'exactly_durability.conf'
EOF
  pg_durability_conf | as_pg tee "$base/data/exactly_durability.conf" >/dev/null
  # pg_ctl forks the postmaster into its own session and returns at once.
  as_pg "$bindir/pg_ctl" -D "$base/data" -l "$base/postgres.log" -W start >/dev/null 2>&1 9>&- || {
    say "postgres: pg_ctl start failed"
    return 1
  }
}

ready_postgres() {
  local bindir datadir pid
  bindir=$(pg_bindir) || return 1
  "$bindir/pg_isready" -q -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -t 2 || return 1
  datadir=$(cat "$PIDS/postgres.datadir" 2>/dev/null) || return 1
  if ! our_pid postgres >/dev/null; then
    pid=$(head -n 1 "$datadir/postmaster.pid" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    record_pid postgres "$pid"
  fi
}

# A running server switched between durable and fast settings: both are
# reloadable, so no restart (and no lost data) is needed.
adjust_postgres() {
  local datadir bindir want have
  datadir=$(cat "$PIDS/postgres.datadir") || return 0
  want=$(pg_durability_conf)
  have=$(cat "$datadir/exactly_durability.conf" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    bindir=$(pg_bindir)
    say "postgres: switching durability settings (reload)"
    echo "$want" | as_pg tee "$datadir/exactly_durability.conf" >/dev/null
    as_pg "$bindir/pg_ctl" -D "$datadir" reload >/dev/null
  fi
}

stop_postgres() {
  local datadir bindir pid
  datadir=$(cat "$PIDS/postgres.datadir" 2>/dev/null || true)
  if pid=$(our_pid postgres); then
    if [ -n "$datadir" ] && bindir=$(pg_bindir) && [ -f "$datadir/postmaster.pid" ] &&
      [ "$(head -n 1 "$datadir/postmaster.pid")" = "$pid" ]; then
      as_pg "$bindir/pg_ctl" -D "$datadir" stop -m fast -w -t 30 >/dev/null 2>&1 || true
    fi
    stop_key postgres INT 30 # no-op when pg_ctl stopped it
  elif [ -n "$datadir" ] && [ ! -f "$PIDS/postgres.pid" ] && [ -f "$datadir/postmaster.pid" ] &&
    bindir=$(pg_bindir); then
    # started by an `up` that was interrupted before it recorded the PID
    as_pg "$bindir/pg_ctl" -D "$datadir" stop -m fast -w -t 30 >/dev/null 2>&1 || true
  fi
  forget_pid postgres
  rm -f "$PIDS/postgres.datadir"
}

# ---------------------------------------------------------------- rabbitmq

rmq_env() { # the environment for rabbitmq-server and its CLI tools
  local d="$DATA/rabbitmq"
  echo "HOME=$d/home"
  echo "RABBITMQ_NODENAME=rabbit@localhost"
  echo "RABBITMQ_NODE_IP_ADDRESS=$HOST"
  echo "RABBITMQ_NODE_PORT=$RMQ_PORT"
  echo "RABBITMQ_DIST_PORT=$RMQ_DIST_PORT"
  echo "ERL_EPMD_PORT=$RMQ_EPMD_PORT"
  echo "ERL_EPMD_ADDRESS=$HOST"
  echo "RABBITMQ_MNESIA_BASE=$d/mnesia"
  echo "RABBITMQ_LOG_BASE=$LOGS/rabbitmq"
  echo "RABBITMQ_PID_FILE=$d/rabbit.pid"
  echo "RABBITMQ_CONFIG_FILE=$CONF/rabbitmq.conf"
  echo "RABBITMQ_ADVANCED_CONFIG_FILE=$CONF/rabbitmq-advanced.config"
  echo "RABBITMQ_CONF_ENV_FILE=$CONF/rabbitmq-env.conf"
  echo "RABBITMQ_ENABLED_PLUGINS_FILE=$CONF/rabbitmq-enabled-plugins"
  echo "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
}

rmq() { # runs a command with rmq_env
  local vars=()
  mapfile -t vars < <(rmq_env)
  env "${vars[@]}" "$@" 9>&-
}

start_rabbitmq() {
  local d="$DATA/rabbitmq" epmd deadline vars=()
  epmd=$(epmd_path) || die "rabbitmq: epmd not found"
  rm -rf "$d" "$LOGS/rabbitmq"
  mkdir -p "$d/home" "$d/mnesia" "$LOGS/rabbitmq"
  cat >"$CONF/rabbitmq.conf" <<EOF
# scripts/services.sh
listeners.tcp.default = $HOST:$RMQ_PORT
loopback_users = none
EOF
  : >"$CONF/rabbitmq-env.conf" # not /etc/rabbitmq/rabbitmq-env.conf
  echo '[].' >"$CONF/rabbitmq-enabled-plugins"

  # Our own epmd, in the foreground so that its PID is known (the one the
  # Erlang VM would start itself daemonizes); the VM finds it on the port.
  spawn "$LOGS/rabbitmq-epmd.log" env ERL_EPMD_ADDRESS="$HOST" "$epmd" -port "$RMQ_EPMD_PORT"
  record_pid rabbitmq-epmd "$SPAWNED_PID"
  deadline=$(($(now_ms) + 10000))
  # (ss, not a connect: epmd logs every connection that sends nothing)
  until ss -ltnH "sport = :$RMQ_EPMD_PORT" | grep -q .; do
    if [ "$(now_ms)" -ge "$deadline" ] || ! proc_alive "$SPAWNED_PID"; then
      tail -n 20 "$LOGS/rabbitmq-epmd.log" >&2
      say "rabbitmq: epmd did not start on port $RMQ_EPMD_PORT"
      return 1
    fi
    sleep 0.05
  done

  # The wrapper script (its PID recorded) runs beam.smp as its child and turns
  # a SIGTERM into a clean shutdown of the node.
  mapfile -t vars < <(rmq_env)
  spawn "$LOGS/rabbitmq.log" env "${vars[@]}" "$RMQ_BIN/rabbitmq-server"
  record_pid rabbitmq "$SPAWNED_PID"
}

# A Connection.Start frame in answer to the AMQP 0-9-1 protocol header: the
# broker's listener is up and speaking AMQP, not merely accepting TCP.
amqp_answers() {
  python3 - "$HOST" "$RMQ_PORT" <<'EOF' 2>/dev/null
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
s.settimeout(2)
s.sendall(b"AMQP\x00\x00\x09\x01")
head = b""
while len(head) < 7:
    chunk = s.recv(7 - len(head))
    if not chunk:
        sys.exit(1)
    head += chunk
# frame type 1 (method) on channel 0; class 10 method 10 follows
body = s.recv(4)
sys.exit(0 if head[0] == 1 and body[:4] == b"\x00\x0a\x00\x0a" else 1)
EOF
}

ready_rabbitmq() {
  local beam
  port_open "$RMQ_PORT" || return 1
  amqp_answers || return 1
  # The node must also have finished booting: the listener opens 40-60 ms
  # before the end of the boot. Its log says so (fast); failing that, ask the
  # node as an operator would (~0.7 s: the CLI is an Erlang VM too).
  grep -q 'Server startup complete' "$LOGS/rabbitmq/rabbit@localhost.log" 2>/dev/null ||
    rmq "$RMQ_BIN/rabbitmq-diagnostics" -q -n rabbit@localhost --timeout 10 check_running >/dev/null 2>&1 ||
    return 1
  if ! our_pid rabbitmq-beam >/dev/null; then
    beam=$(cat "$DATA/rabbitmq/rabbit.pid" 2>/dev/null) || return 1
    [[ "$beam" =~ ^[0-9]+$ ]] && record_pid rabbitmq-beam "$beam"
  fi
}

stop_rabbitmq() {
  # SIGTERM to the Erlang VM is a clean shutdown; the wrapper then exits.
  stop_key rabbitmq-beam TERM 30
  stop_key rabbitmq TERM 30
  stop_key rabbitmq-epmd TERM 10
}

# ---------------------------------------------------------------- nats

start_nats() {
  rm -rf "$DATA/nats"
  mkdir -p "$DATA/nats"
  spawn "$LOGS/nats.log" nats-server -a "$HOST" -p "$NATS_PORT" -m "$NATS_MON_PORT" \
    -js -sd "$DATA/nats"
  record_pid nats "$SPAWNED_PID"
}

ready_nats() {
  [ "$(http_code "http://$HOST:$NATS_MON_PORT/healthz?js-enabled-only=true")" = 200 ]
}

stop_nats() { stop_key nats TERM 15; }

# ---------------------------------------------------------------- moto

start_moto() {
  local cmd
  cmd=$(moto_cmd) || die "moto: moto_server not found"
  # moto keeps everything in memory: a restart is a clean slate.
  spawn "$LOGS/moto.log" "$cmd" -H "$HOST" -p "$MOTO_PORT"
  record_pid moto "$SPAWNED_PID"
}

ready_moto() {
  [ "$(http_code "http://$HOST:$MOTO_PORT/moto-api/")" = 200 ]
}

stop_moto() { stop_key moto TERM 15; }

# ---------------------------------------------------------------- azurite

start_azurite() {
  rm -rf "$DATA/azurite"
  mkdir -p "$DATA/azurite"
  spawn "$LOGS/azurite.log" node "$NODE_DIR/node_modules/.bin/azurite" \
    --blobHost "$HOST" --blobPort "$AZ_BLOB_PORT" \
    --queueHost "$HOST" --queuePort "$AZ_QUEUE_PORT" \
    --tableHost "$HOST" --tablePort "$AZ_TABLE_PORT" \
    -l "$DATA/azurite" --silent --skipApiVersionCheck --disableTelemetry
  record_pid azurite "$SPAWNED_PID"
}

ready_azurite() {
  local c
  port_open "$AZ_QUEUE_PORT" && port_open "$AZ_TABLE_PORT" || return 1
  # unauthenticated: any HTTP answer (403) means the blob service is up
  c=$(http_code "http://$HOST:$AZ_BLOB_PORT/$AZ_ACCOUNT?comp=list")
  [ "$c" != 000 ]
}

stop_azurite() { stop_key azurite TERM 15; }

# ---------------------------------------------------------------- common

timeout_for() {
  if [ -n "${EXACTLY_SERVICES_TIMEOUT:-}" ]; then
    echo "$EXACTLY_SERVICES_TIMEOUT"
    return
  fi
  case "$1" in
    rabbitmq) echo 120 ;;
    *) echo 60 ;;
  esac
}

is_running() { our_pid "$1" >/dev/null; }

ports_of() {
  case "$1" in
    postgres) echo "$PG_PORT" ;;
    rabbitmq) echo "$RMQ_PORT $RMQ_DIST_PORT $RMQ_EPMD_PORT" ;;
    nats) echo "$NATS_PORT $NATS_MON_PORT" ;;
    moto) echo "$MOTO_PORT" ;;
    azurite) echo "$AZ_BLOB_PORT $AZ_QUEUE_PORT $AZ_TABLE_PORT" ;;
  esac
}

log_files() {
  case "$1" in
    rabbitmq) echo "$LOGS/rabbitmq.log" "$LOGS/rabbitmq-epmd.log" "$LOGS"/rabbitmq/*.log ;;
    *) echo "$LOGS/$1.log" ;;
  esac
}

show_log_tail() {
  local f
  for f in $(log_files "$1"); do
    [ -s "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 30 "$f" >&2
  done
}

secs_since() { awk -v ms=$(($(now_ms) - $1)) 'BEGIN { printf "%.1f", ms / 1000 }'; }

# Still alive (or, for PostgreSQL, possibly still coming up)?
alive_or_starting() {
  if [ "$1" = postgres ]; then postgres_starting; else is_running "$1"; fi
}

# Polls every NAME together until each answers, dies or times out; the times
# printed are from its start. Sets WAIT_FAILED to the names that did not come
# up (already stopped, their log tails shown).
declare -A STARTED_MS=()
WAIT_FAILED=()
wait_all() { # NAME...
  local n pending=("$@") next since
  local -A deadline=()
  WAIT_FAILED=()
  for n in "$@"; do
    since=${STARTED_MS[$n]:-$(now_ms)}
    STARTED_MS[$n]=$since
    deadline[$n]=$((since + $(timeout_for "$n") * 1000))
  done
  while [ "${#pending[@]}" -gt 0 ]; do
    next=()
    for n in "${pending[@]}"; do
      if "ready_$n"; then
        say "$n ready in $(secs_since "${STARTED_MS[$n]}") s"
        continue
      fi
      if ! alive_or_starting "$n"; then
        say "$n: its process exited before it was ready"
      elif [ "$(now_ms)" -ge "${deadline[$n]}" ]; then
        say "$n: not ready after $(timeout_for "$n") s"
      else
        next+=("$n")
        continue
      fi
      show_log_tail "$n"
      "stop_$n"
      WAIT_FAILED+=("$n")
    done
    pending=("${next[@]}")
    if [ "${#pending[@]}" -gt 0 ]; then sleep 0.1; fi
  done
  [ "${#WAIT_FAILED[@]}" = 0 ]
}

# Until the postmaster has written its PID file, pg_ctl's child may still be
# starting: give it the benefit of the doubt, for 15 s.
postgres_starting() {
  local datadir pid
  is_running postgres && return 0
  datadir=$(cat "$PIDS/postgres.datadir" 2>/dev/null) || return 1
  if [ ! -f "$datadir/postmaster.pid" ]; then
    [ $(($(now_ms) - ${STARTED_MS[postgres]:-0})) -lt 15000 ]
    return
  fi
  pid=$(head -n 1 "$datadir/postmaster.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] && proc_alive "$pid"
}

running_names() {
  local n
  for n in "${ALL[@]}"; do is_running "$n" && echo "$n"; done
  return 0
}

env_lines() {
  local running pgbench
  running=$(running_names | paste -sd ' ' -)
  echo "# written by scripts/services.sh; running: ${running:-none}"
  running=" $running "
  if [[ "$running" == *" postgres "* ]]; then
    echo "export EXACTLY_TEST_POSTGRES_URL='postgres://postgres@$HOST:$PG_PORT/postgres'"
  fi
  if pgbench=$(pgbench_path); then
    echo "export EXACTLY_TEST_PGBENCH='$pgbench'"
  fi
  if [[ "$running" == *" rabbitmq "* ]]; then
    echo "export EXACTLY_TEST_RABBITMQ_URL='amqp://guest:guest@$HOST:$RMQ_PORT/%2f'"
  fi
  if [[ "$running" == *" nats "* ]]; then
    echo "export EXACTLY_TEST_NATS_URL='nats://$HOST:$NATS_PORT'"
  fi
  if [[ "$running" == *" moto "* ]]; then
    echo "export EXACTLY_TEST_S3_URL='http://$HOST:$MOTO_PORT'"
    echo "export EXACTLY_TEST_DYNAMODB_URL='http://$HOST:$MOTO_PORT'"
    echo "export EXACTLY_TEST_SQS_URL='http://$HOST:$MOTO_PORT'"
    echo "export AWS_ACCESS_KEY_ID='testing'"
    echo "export AWS_SECRET_ACCESS_KEY='testing'"
    echo "export AWS_REGION='us-east-1'"
    echo "export AWS_DEFAULT_REGION='us-east-1'" # boto3 and the AWS CLI read this one
    echo "export AWS_EC2_METADATA_DISABLED='true'"
  fi
  if [[ "$running" == *" azurite "* ]]; then
    echo "export EXACTLY_TEST_AZURE_BLOB_URL='http://$HOST:$AZ_BLOB_PORT/$AZ_ACCOUNT'"
    echo "export EXACTLY_TEST_AZURE_QUEUE_URL='http://$HOST:$AZ_QUEUE_PORT/$AZ_ACCOUNT'"
    echo "export EXACTLY_TEST_AZURE_TABLE_URL='http://$HOST:$AZ_TABLE_PORT/$AZ_ACCOUNT'"
    echo "export EXACTLY_TEST_AZURE_ACCOUNT='$AZ_ACCOUNT'"
    echo "export EXACTLY_TEST_AZURE_KEY='$AZ_KEY'"
  fi
}

write_env_file() {
  env_lines >"$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

NAMES=()
set_names() { # validates NAMEs into NAMES; all of them when none given
  local n
  if [ "$#" = 0 ]; then
    NAMES=("${ALL[@]}")
    return
  fi
  for n in "$@"; do
    is_known "$n" || die "unknown server '$n' (known: ${ALL[*]})"
  done
  NAMES=("$@")
}

lock() {
  exec 9>"$SV/lock"
  flock -w 600 9 || die "another scripts/services.sh kept .services/lock for 600 s"
}

prepare_dirs() { mkdir -p "$SV" "$PIDS" "$LOGS" "$DATA" "$CONF"; }

warn_ephemeral_ports() {
  local lo hi p
  read -r lo hi </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || return 0
  for p in "${ALL_PORTS[@]}"; do
    if [ "$p" -ge "$lo" ] && [ "$p" -le "$hi" ]; then
      say "warning: port $p lies in this machine's ephemeral port range ($lo-$hi); a server may fail to bind it now and then"
    fi
  done
}

# ---------------------------------------------------------------- commands

cmd_up() {
  local n to_start=() started=() failed=() t0
  set_names "$@"
  t0=$(now_ms)
  prepare_dirs
  lock
  warn_ephemeral_ports

  for n in "${NAMES[@]}"; do
    if is_running "$n"; then
      if "ready_$n"; then
        if [ "$n" = postgres ]; then adjust_postgres; fi
        say "$n already running (pid $(our_pid "$n"))"
        continue
      fi
      # ours and alive but not answering (yet): give it its timeout
      if wait_all "$n"; then continue; fi
      say "$n: starting it again"
    fi
    "stop_$n" # clears leftovers of a dead or interrupted run
    to_start+=("$n")
  done

  if [ "${#to_start[@]}" -gt 0 ]; then
    install_missing "${to_start[@]}"
    # Start them all, slowest first, then wait for each: the waits overlap.
    for n in rabbitmq azurite postgres moto nats; do
      [[ " ${to_start[*]} " == *" $n "* ]] || continue
      # shellcheck disable=SC2046
      if ! check_ports_free "$n" $(ports_of "$n"); then
        failed+=("$n")
        continue
      fi
      STARTED_MS[$n]=$(now_ms)
      if "start_$n"; then started+=("$n"); else
        show_log_tail "$n"
        "stop_$n"
        failed+=("$n")
      fi
    done
    if [ "${#started[@]}" -gt 0 ] && ! wait_all "${started[@]}"; then
      failed+=("${WAIT_FAILED[@]}")
    fi
  fi

  write_env_file
  if [ "${#failed[@]}" -gt 0 ]; then
    die "not started: ${failed[*]} (logs in .services/logs/)"
  fi
  say "up: ${NAMES[*]} in $(secs_since "$t0") s; source .services/env"
}

cmd_down() {
  local n
  set_names "$@"
  [ -d "$PIDS" ] || {
    say "nothing to stop"
    return 0
  }
  lock
  for n in "${NAMES[@]}"; do
    if is_running "$n"; then
      say "stopping $n (pid $(our_pid "$n"))"
    fi
    "stop_$n"
  done
  write_env_file
}

cmd_status() {
  local n pid
  for n in "${ALL[@]}"; do
    if pid=$(our_pid "$n"); then
      if "ready_$n"; then
        echo "$n: running (pid $pid), ready"
      else
        echo "$n: running (pid $pid), not answering"
      fi
    else
      echo "$n: stopped"
    fi
  done
}

main() {
  local cmd=${1:-}
  [ "$#" -gt 0 ] && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    env) env_lines ;;
    status) cmd_status ;;
    running) running_names ;;
    names) printf '%s\n' "${ALL[@]}" ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' ;;
    *)
      echo "usage: scripts/services.sh up|down|env|status|running|names [NAME...]" >&2
      exit 2
      ;;
  esac
}

main "$@"
