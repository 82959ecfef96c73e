#!/usr/bin/env bash
# The local kflow stack without Docker: Kafka (from Maven jars), PostgreSQL and Redis (Debian packages).
#
#   stack.sh install     apt packages the servers need (only the missing ones) + Kafka jars
#   stack.sh bootstrap   install, plus what a checkout needs (python3-venv, the test suite's tools)
#   stack.sh up          install if needed, start the three servers, create the kflow role and database
#   stack.sh down        stop the servers this script started (never ones it found running)
#   stack.sh status      one line per server; exit 0 when all three answer
#
# Data, logs and the Kafka jars live under KFLOW_HOME, which must be set (`kflow dev up` passes
# $KFLOW_HOME, else ~/.kflow, else /var/lib/kflow for root; the Makefile <checkout>/.kflow; ADR 0004).
# This directory may be inside site-packages: nothing is written here.
# Ports: KFLOW_KAFKA_PORT (9092), KFLOW_PG_PORT (5432), KFLOW_REDIS_PORT (6379).
# A server already answering on its port is reused.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${KFLOW_HOME:?set KFLOW_HOME to the directory for data, logs and jars of the local stack; kflow dev up sets it}"
export KFLOW_HOME
PG_PORT="${KFLOW_PG_PORT:-5432}"
REDIS_PORT="${KFLOW_REDIS_PORT:-6379}"
PG_DIR="$KFLOW_HOME/postgres"
REDIS_DIR="$KFLOW_HOME/redis"
export DEBIAN_FRONTEND=noninteractive

say() { echo "$1: ${*:2}"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }

pg_bin() {  # the newest installed PostgreSQL's bin directory
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [[ -n "$d" ]] || { echo "stack.sh: PostgreSQL is not installed; run '$0 install'" >&2; return 1; }
  echo "$d"
}

install() {  # install [--dev]
  local missing=()
  ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  if [[ "${1:-}" == --dev ]]; then  # what a checkout's venv, tests and checks need besides
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    # headless browser of the console tests (tests/console, driven by Playwright; no download)
    command -v chromium >/dev/null || missing+=(chromium)
    fc-list 2>/dev/null | grep -q . || missing+=(fonts-dejavu-core)
    # the deploy checks (tests/deploy): promtool and prometheus, docker-compose v1 for `config -q`,
    # setpriv to run the image's install step as a non-root user
    command -v promtool >/dev/null || missing+=(prometheus)
    command -v docker-compose >/dev/null || missing+=(docker-compose)
    command -v setpriv >/dev/null || missing+=(util-linux)
  fi
  if ((${#missing[@]})); then
    echo "stack: installing ${missing[*]} (apt)"
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
  fi
  bash "$HERE/kafka.sh" install
}

# --- PostgreSQL -------------------------------------------------------------------------------
pg_ours() {  # our server (data dir under KFLOW_HOME) is running
  [[ -f "$PG_DIR/data/postmaster.pid" ]] || return 1
  local pid
  pid="$(head -n 1 "$PG_DIR/data/postmaster.pid")"
  [[ -r "/proc/$pid/cmdline" ]] && grep -q postgres "/proc/$pid/cmdline"
}

pg_reachable() {  # the server runs as user postgres: it must be able to enter KFLOW_HOME
  local dir="$KFLOW_HOME"
  [[ $EUID -eq 0 ]] && id -u postgres >/dev/null 2>&1 || return 0  # pg_up checks again after install
  mkdir -p "$dir"
  if ! runuser -u postgres -- test -x "$dir" 2>/dev/null; then
    say postgres "user postgres cannot enter $dir (a parent directory is private, e.g. /root is" \
      "0700): set KFLOW_HOME to a directory others can enter, e.g. KFLOW_HOME=/var/lib/kflow" >&2
    exit 1
  fi
}

pg_psql() {  # superuser psql over the Unix socket of the server on PG_PORT
  local sock="$PG_DIR/run"
  pg_ours || sock=/var/run/postgresql
  runuser -u postgres -- "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$PG_PORT" -d postgres "$@"
}

pg_role_ready() {  # role and database kflow answer over TCP, e.g. on a server another home started
  PGPASSWORD=kflow PGCONNECT_TIMEOUT=3 "$(pg_bin)/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U kflow \
    -d kflow -tAc 'SELECT 1' >/dev/null 2>&1
}

pg_ensure_role() {
  pg_role_ready && return 0
  if [[ $EUID -ne 0 ]]; then
    say postgres "not root: assuming role and database kflow exist"
    return 0
  fi
  pg_psql <<'SQL' || { say postgres "could not create role kflow (create it: CREATEDB, password kflow)"; return 1; }
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'kflow') THEN
    CREATE ROLE kflow LOGIN CREATEDB PASSWORD 'kflow';
  END IF;
END $$;
SQL
  if [[ "$(pg_psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'kflow'")" != 1 ]]; then
    pg_psql -c "CREATE DATABASE kflow OWNER kflow"
  fi
}

pg_up() {
  local bin
  bin="$(pg_bin)"
  if pg_ours; then
    say postgres "already running on 127.0.0.1:$PG_PORT; logs: $PG_DIR/postgres.log"
  elif port_open "$PG_PORT"; then
    say postgres "127.0.0.1:$PG_PORT is already served by another server; reusing it"
  else
    pg_reachable
    mkdir -p "$PG_DIR/run"
    chown postgres:postgres "$PG_DIR" "$PG_DIR/run"
    if [[ ! -f "$PG_DIR/data/PG_VERSION" ]]; then
      say postgres "initdb $PG_DIR/data"
      runuser -u postgres -- "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth-local=peer \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; exit 1; }
    fi
    # setsid: the server outlives the shell or test session that started it.
    setsid runuser -u postgres -- "$bin/pg_ctl" start -w -t 60 -D "$PG_DIR/data" \
      -l "$PG_DIR/postgres.log" -o "-c listen_addresses=127.0.0.1 -p $PG_PORT \
      -c unix_socket_directories=$PG_DIR/run -c max_connections=200 -c shared_buffers=256MB \
      -c synchronous_commit=off -c log_min_messages=warning" </dev/null >/dev/null \
      || { tail -n 20 "$PG_DIR/postgres.log" >&2; exit 1; }
    say postgres "up on 127.0.0.1:$PG_PORT; data: $PG_DIR/data; logs: $PG_DIR/postgres.log"
  fi
  pg_ensure_role
}

pg_down() {
  if pg_ours; then
    runuser -u postgres -- "$(pg_bin)/pg_ctl" stop -D "$PG_DIR/data" -m fast -w -t 60 >/dev/null
    say postgres "stopped"
  else
    say postgres "not running (ours)"
  fi
}

# --- Redis ------------------------------------------------------------------------------------
redis_pid() {
  [[ -f "$REDIS_DIR/redis.pid" ]] || return 1
  local pid
  pid="$(cat "$REDIS_DIR/redis.pid")"
  [[ -r "/proc/$pid/cmdline" ]] && grep -q redis-server "/proc/$pid/cmdline" && echo "$pid"
}

redis_up() {
  if redis_pid >/dev/null; then
    say redis "already running on 127.0.0.1:$REDIS_PORT; logs: $REDIS_DIR/redis.log"
    return 0
  fi
  if port_open "$REDIS_PORT"; then
    say redis "127.0.0.1:$REDIS_PORT is already served by another server; reusing it"
    return 0
  fi
  mkdir -p "$REDIS_DIR"
  setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" --daemonize yes \
    --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" --save 60 1000 \
    --appendonly no --protected-mode yes </dev/null
  local waited=0
  until redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; do
    ((waited++ < 60)) || { tail -n 20 "$REDIS_DIR/redis.log" >&2; exit 1; }
    sleep 0.25
  done
  say redis "up on 127.0.0.1:$REDIS_PORT; data: $REDIS_DIR; logs: $REDIS_DIR/redis.log"
}

redis_down() {
  local pid
  if pid="$(redis_pid)"; then
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    rm -f "$REDIS_DIR/redis.pid"
    say redis "stopped"
  else
    say redis "not running (ours)"
  fi
}

# --- all ----------------------------------------------------------------------------------------
status() {
  local rc=0
  bash "$HERE/kafka.sh" status || rc=1
  if "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; then
    say postgres "running on 127.0.0.1:$PG_PORT$(pg_ours && echo "; logs: $PG_DIR/postgres.log")"
  else
    say postgres "not running"; rc=1
  fi
  if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
    say redis "running on 127.0.0.1:$REDIS_PORT$(redis_pid >/dev/null && echo "; logs: $REDIS_DIR/redis.log")"
  else
    say redis "not running"; rc=1
  fi
  return "$rc"
}

locked() {  # one up/down at a time per KFLOW_HOME (parallel test sessions may all call `up`)
  mkdir -p "$KFLOW_HOME"
  exec 9>"$KFLOW_HOME/stack.lock"
  flock -w 300 9 || { echo "stack.sh: another stack.sh held $KFLOW_HOME/stack.lock for 300 s" >&2; exit 1; }
}

case "${1:-}" in
  install) install ;;
  bootstrap) install --dev ;;
  up)
    pg_ours || port_open "$PG_PORT" || pg_reachable  # fail before installing or starting anything
    install
    locked
    bash "$HERE/kafka.sh" up 9>&-; pg_up 9>&-; redis_up 9>&-  # servers must not inherit the lock
    ;;
  down) locked; bash "$HERE/kafka.sh" down; pg_down; redis_down ;;
  status) status ;;
  *) echo "usage: $0 install|bootstrap|up|down|status" >&2; exit 2 ;;
esac
