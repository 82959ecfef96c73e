#!/usr/bin/env bash
# Run a single-node Apache Kafka (KRaft, broker+controller) from Maven Central jars, no Docker.
#
#   kafka.sh install   resolve the jars into $KFLOW_HOME/cache/kafka-<version>/lib (once)
#   kafka.sh up        format the data dir if new, start, wait until the broker serves clients
#   kafka.sh down      stop our broker (TERM, then KILL after KFLOW_KAFKA_STOP_TIMEOUT seconds)
#   kafka.sh status    exit 0 when our broker is running and its port is open
#
# Settings (environment): KFLOW_HOME (required; `kflow dev up` and the Makefile set it, ADR 0004),
# KFLOW_KAFKA_PORT (9092), KFLOW_KAFKA_CONTROLLER_PORT (port+1), KFLOW_KAFKA_DIR (KFLOW_HOME/kafka),
# KFLOW_KAFKA_VERSION, KFLOW_KAFKA_HEAP (512m), KFLOW_KAFKA_LOG_LEVEL (WARN),
# KFLOW_KAFKA_AUTO_CREATE_TOPICS (false; true only for tests that prove kflow's clients never
# create a topic on a broker that would let them).
#
# A secured broker: KFLOW_KAFKA_LISTENER=SASL_SSL serves clients only on a SASL_SSL listener
# (SCRAM-SHA-512, TLS with a throwaway CA made by openssl under $KFLOW_KAFKA_DIR/ssl; clients
# trust ssl/ca.crt). KFLOW_KAFKA_SCRAM_USERS="alice:alice-secret,bob:pw" are created when the
# data dir is formatted (StorageTool --add-scram; its output, which holds the salted
# credentials, goes to format.out, mode 0600, never to the console).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${KFLOW_HOME:?set KFLOW_HOME to the directory for data, logs and jars of the local stack; kflow dev up sets it}"
KAFKA_VERSION="${KFLOW_KAFKA_VERSION:-4.4.0}"
case "$KAFKA_VERSION" in   # log4j2 version each Kafka release is built with (its server POM)
  4.4.*) LOG4J2_VERSION=2.25.5 ;;
  4.2.* | 4.3.*) LOG4J2_VERSION=2.25.3 ;;
  4.0.* | 4.1.*) LOG4J2_VERSION=2.24.3 ;;
  *) echo "kafka.sh: unsupported KFLOW_KAFKA_VERSION=$KAFKA_VERSION (use 4.x)" >&2; exit 2 ;;
esac
LIB="$KFLOW_HOME/cache/kafka-$KAFKA_VERSION/lib"  # never under $HERE: that may be site-packages
PORT="${KFLOW_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KFLOW_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
DIR="${KFLOW_KAFKA_DIR:-$KFLOW_HOME/kafka}"
DATA="$DIR/data"
PIDFILE="$DIR/kafka.pid"
LOG="$DIR/server.out"
PROPS="$DIR/server.properties"
LISTENER="${KFLOW_KAFKA_LISTENER:-PLAINTEXT}"
AUTO_CREATE="${KFLOW_KAFKA_AUTO_CREATE_TOPICS:-false}"
case "$AUTO_CREATE" in
  true | false) ;;
  *) echo "kafka.sh: KFLOW_KAFKA_AUTO_CREATE_TOPICS must be true or false, got $AUTO_CREATE" >&2; exit 2 ;;
esac
SSL_DIR="$DIR/ssl"
case "$LISTENER" in
  PLAINTEXT | SASL_SSL) ;;
  *) echo "kafka.sh: KFLOW_KAFKA_LISTENER must be PLAINTEXT or SASL_SSL, got $LISTENER" >&2; exit 2 ;;
esac
START_TIMEOUT="${KFLOW_KAFKA_START_TIMEOUT:-120}"
STOP_TIMEOUT="${KFLOW_KAFKA_STOP_TIMEOUT:-30}"

say() { echo "kafka: $*"; }

install() {
  if compgen -G "$LIB/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null; then
    return 0
  fi
  say "resolving Kafka $KAFKA_VERSION jars from Maven Central into $LIB"
  command -v mvn >/dev/null || { echo "kafka.sh: mvn not found; run 'kflow dev up' (it installs maven)" >&2; exit 1; }
  local tmp="$LIB.tmp.$$"  # per process: the cache may be shared by several checkouts
  mkdir -p "$(dirname "$LIB")"
  rm -rf "$tmp"
  mvn -B -q -Dstyle.color=never -f "$HERE/kafka/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$KAFKA_VERSION" -Dlog4j2.version="$LOG4J2_VERSION" \
    -DincludeScope=runtime -DoutputDirectory="$tmp"
  mv -T "$tmp" "$LIB" 2>/dev/null || rm -rf "$tmp"  # another install finished first: keep its
}

our_pid() {  # prints the pid of our running broker, or fails
  [[ -f "$PIDFILE" ]] || return 1
  local pid
  pid="$(cat "$PIDFILE")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "kafka.Kafka $PROPS" || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

make_certs() {  # a throwaway CA and a broker certificate for localhost / 127.0.0.1 (once)
  [[ -f "$SSL_DIR/broker-keystore.pem" ]] && return 0
  command -v openssl >/dev/null || { echo "kafka.sh: openssl is needed for SASL_SSL" >&2; exit 1; }
  mkdir -p "$SSL_DIR"
  (
    cd "$SSL_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=kflow-test-ca"
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=localhost"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' >ext.cnf
    openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out broker.crt -days 30 -extfile ext.cnf
    cat broker.key broker.crt >broker-keystore.pem  # PEM keystore: key first, then the cert
  ) >"$SSL_DIR/openssl.out" 2>&1 || { echo "kafka.sh: openssl failed; see $SSL_DIR/openssl.out" >&2; exit 1; }
  chmod 600 "$SSL_DIR"/*.key "$SSL_DIR/broker-keystore.pem"
  chmod 755 "$SSL_DIR"  # clients of other users read ca.crt
  say "made a throwaway CA ($SSL_DIR/ca.crt) and broker certificate"
}

inter_broker_secret() {  # the broker's own SCRAM user, made once per data dir
  local f="$SSL_DIR/inter-broker.secret"
  [[ -s "$f" ]] || (umask 077; head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$f")
  cat "$f"
}

write_props() {
  mkdir -p "$DATA"
  {
    cat "$HERE/kafka/server.properties"
    echo
    echo "# --- written by kafka.sh ---"
    if [[ "$LISTENER" == SASL_SSL ]]; then
      echo "listeners=SASL_SSL://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT"
      echo "advertised.listeners=SASL_SSL://127.0.0.1:$PORT"
      echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"
      echo "inter.broker.listener.name=SASL_SSL"
      echo "sasl.enabled.mechanisms=SCRAM-SHA-512"
      echo "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512"
      echo "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"kflow-broker\" password=\"$(inter_broker_secret)\";"
      echo "ssl.keystore.type=PEM"
      echo "ssl.keystore.location=$SSL_DIR/broker-keystore.pem"
      echo "ssl.truststore.type=PEM"
      echo "ssl.truststore.location=$SSL_DIR/ca.crt"
      echo "ssl.client.auth=none"
    else
      echo "listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT"
      echo "advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT"
    fi
    echo "controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT"
    echo "auto.create.topics.enable=$AUTO_CREATE"
    echo "log.dirs=$DATA"
  } >"$PROPS"
  chmod 600 "$PROPS"  # holds the inter-broker secret when SASL_SSL
}

# kafka-run-class.sh's performance options, with a heap sized for tests.
JAVA_OPTS=(-Xms256m -Xmx"${KFLOW_KAFKA_HEAP:-512m}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
  -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties")

java_cmd() { java "${JAVA_OPTS[@]}" -cp "$LIB/*" "$@"; }

format_once() {
  [[ -f "$DATA/meta.properties" ]] && return 0
  local cluster_id
  # A Kafka Uuid: 22 chars of URL-safe base64; never starting with '-' (argparse would read an option).
  # 16 random bytes as URL-safe base64 without padding (no python3 needed outside a checkout).
  cluster_id=-
  while [[ "$cluster_id" == [-_]* ]]; do
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  done
  local scram=()
  if [[ "$LISTENER" == SASL_SSL ]]; then
    scram+=(--add-scram "SCRAM-SHA-512=[name=kflow-broker,password=$(inter_broker_secret)]")
    local user
    IFS=',' read -ra users <<<"${KFLOW_KAFKA_SCRAM_USERS:-}"
    for user in "${users[@]}"; do
      [[ "$user" == *:* ]] || { echo "kafka.sh: KFLOW_KAFKA_SCRAM_USERS entries are name:password" >&2; exit 2; }
      scram+=(--add-scram "SCRAM-SHA-512=[name=${user%%:*},password=${user#*:}]")
    done
  fi
  say "formatting $DATA (cluster id $cluster_id)"
  # format prints the bootstrap metadata, SCRAM salts and keys included: keep it private
  (umask 077; java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" --ignore-formatted \
    "${scram[@]}" >"$DIR/format.out" 2>&1) || { echo "kafka.sh: format failed; see $DIR/format.out" >&2; exit 1; }
}

up() {
  if pid="$(our_pid)"; then
    say "already running (pid $pid) on 127.0.0.1:$PORT; logs: $LOG"
    return 0
  fi
  if port_open "$PORT"; then
    say "127.0.0.1:$PORT is already served by another process; reusing it"
    return 0
  fi
  install
  [[ "$LISTENER" == SASL_SSL ]] && make_certs
  write_props
  [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.1"
  format_once
  # setsid: the broker outlives the shell (and the test session) that started it.
  setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PIDFILE" \
    java "${JAVA_OPTS[@]}" -cp "$LIB/*" kafka.Kafka "$PROPS" >>"$LOG" 2>&1 </dev/null &
  local waited=0
  until grep -q "Kafka Server started" "$LOG" 2>/dev/null && port_open "$PORT"; do
    if ((waited >= START_TIMEOUT * 2)); then
      echo "kafka.sh: broker did not start within ${START_TIMEOUT}s; last log lines ($LOG):" >&2
      tail -n 30 "$LOG" >&2
      exit 1
    fi
    if ((waited > 4)) && ! our_pid >/dev/null; then
      echo "kafka.sh: broker exited during start-up; last log lines ($LOG):" >&2
      tail -n 30 "$LOG" >&2
      exit 1
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  say "up (pid $(cat "$PIDFILE")) on $LISTENER 127.0.0.1:$PORT; data: $DATA; logs: $LOG"
}

down() {
  local pid
  if ! pid="$(our_pid)"; then
    rm -f "$PIDFILE"
    say "not running"
    return 0
  fi
  kill -TERM "$pid"
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= STOP_TIMEOUT * 2)); then
      say "did not stop within ${STOP_TIMEOUT}s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  rm -f "$PIDFILE"
  say "stopped (pid $pid)"
}

status() {
  local pid
  if pid="$(our_pid)" && port_open "$PORT"; then
    say "running (pid $pid) on 127.0.0.1:$PORT; logs: $LOG"
  elif port_open "$PORT"; then
    say "127.0.0.1:$PORT served by a process not started by kflow"
  else
    say "not running"
    return 1
  fi
}

case "${1:-}" in
  install) install ;;
  up | start) up ;;
  down | stop) down ;;
  status) status ;;
  *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
