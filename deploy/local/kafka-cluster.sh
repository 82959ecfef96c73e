#!/usr/bin/env bash
# A three-broker Apache Kafka cluster (KRaft, three combined broker+controller nodes, a quorum
# of three) on this machine, from the same Maven Central jars as kafka.sh. For fail-over tests
# and to try kflow's topic policy (replication factor 3, min.insync.replicas 2) by hand.
#
#   kafka-cluster.sh up          format (first time) and start the three nodes; wait until served
#   kafka-cluster.sh down        stop every node (TERM, then KILL)
#   kafka-cluster.sh status      one line per node; exit 0 when all three run
#   kafka-cluster.sh kill N      SIGKILL node N (1-3): a crash, no clean shutdown
#   kafka-cluster.sh stop N      SIGTERM node N and wait
#   kafka-cluster.sh start N     start node N again and wait until it serves
#   kafka-cluster.sh bootstrap   print the bootstrap servers (for KFLOW_KAFKA_BOOTSTRAP)
#
# Settings: KFLOW_HOME (required; the jar cache), KFLOW_CLUSTER_DIR ($KFLOW_HOME/kafka-cluster),
# KFLOW_CLUSTER_PORT (19092): node N serves clients on PORT+N-1 and its controller on PORT+N+2,
# KFLOW_KAFKA_HEAP (384m per node), KFLOW_KAFKA_VERSION (as kafka.sh).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${KFLOW_HOME:?set KFLOW_HOME to the directory that holds the Kafka jar cache}"
KAFKA_VERSION="${KFLOW_KAFKA_VERSION:-4.4.0}"
LIB="$KFLOW_HOME/cache/kafka-$KAFKA_VERSION/lib"
DIR="${KFLOW_CLUSTER_DIR:-$KFLOW_HOME/kafka-cluster}"
BASE="${KFLOW_CLUSTER_PORT:-19092}"
HEAP="${KFLOW_KAFKA_HEAP:-384m}"
START_TIMEOUT="${KFLOW_KAFKA_START_TIMEOUT:-120}"
NODES=(1 2 3)

say() { echo "kafka-cluster: $*"; }
client_port() { echo $((BASE + $1 - 1)); }
controller_port() { echo $((BASE + $1 + 2)); }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
props() { echo "$DIR/n$1/server.properties"; }
log_of() { echo "$DIR/n$1/server.out"; }
pidfile() { echo "$DIR/n$1/kafka.pid"; }

bootstrap() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("127.0.0.1:$(client_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

node_pid() {  # pid of node N if it is ours and running
  local f pid
  f="$(pidfile "$1")"
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "kafka.Kafka $(props "$1")" || return 1
  echo "$pid"
}

JAVA_OPTS=(-Xms256m -Xmx"$HEAP" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
  -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$HERE/kafka/log4j2.properties")

write_props() {
  local n="$1" voters="" m
  for m in "${NODES[@]}"; do voters+="${voters:+,}$m@127.0.0.1:$(controller_port "$m")"; done
  mkdir -p "$DIR/n$n/data"
  {
    cat "$HERE/kafka/server.properties"
    echo
    echo "# --- written by kafka-cluster.sh: node $n of 3 ---"
    echo "node.id=$n"
    echo "listeners=PLAINTEXT://127.0.0.1:$(client_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")"
    echo "advertised.listeners=PLAINTEXT://127.0.0.1:$(client_port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")"
    echo "controller.quorum.voters=$voters"
    echo "log.dirs=$DIR/n$n/data"
    # Three replicas of everything, two in sync for a write: one node may be down.
    echo "default.replication.factor=3"
    echo "min.insync.replicas=2"
    echo "offsets.topic.replication.factor=3"
    echo "offsets.topic.num.partitions=3"
    echo "transaction.state.log.replication.factor=3"
    echo "transaction.state.log.min.isr=2"
    echo "transaction.state.log.num.partitions=3"
    echo "share.coordinator.state.topic.replication.factor=3"
    echo "share.coordinator.state.topic.min.isr=2"
    # Three JVMs on two cores: fewer threads; a dead node is noticed in 3 s, not 9.
    echo "num.io.threads=2"
    echo "background.threads=2"
    echo "broker.session.timeout.ms=3000"
    echo "broker.heartbeat.interval.ms=500"
  } >"$(props "$n")"
}

format_all() {
  [[ -f "$DIR/n1/data/meta.properties" ]] && return 0
  local cid=- n
  while [[ "$cid" == [-_]* ]]; do
    cid="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
  done
  say "formatting three nodes under $DIR (cluster id $cid)"
  for n in "${NODES[@]}"; do
    java -cp "$LIB/*" kafka.tools.StorageTool format -t "$cid" -c "$(props "$n")" --ignore-formatted \
      >"$DIR/n$n/format.out" 2>&1 || { echo "kafka-cluster.sh: format of node $n failed; see $DIR/n$n/format.out" >&2; exit 1; }
  done
}

launch() {
  local n="$1"
  if node_pid "$n" >/dev/null; then return 0; fi
  if port_open "$(client_port "$n")"; then
    echo "kafka-cluster.sh: port $(client_port "$n") is taken by another process" >&2
    exit 1
  fi
  [[ -f "$(log_of "$n")" ]] && mv -f "$(log_of "$n")" "$(log_of "$n").1"
  setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$(pidfile "$n")" \
    java "${JAVA_OPTS[@]}" -cp "$LIB/*" kafka.Kafka "$(props "$n")" >>"$(log_of "$n")" 2>&1 </dev/null &
}

wait_served() {
  local n waited=0
  for n in "$@"; do
    until grep -q "Kafka Server started" "$(log_of "$n")" 2>/dev/null && port_open "$(client_port "$n")"; do
      if ((waited >= START_TIMEOUT * 2)); then
        echo "kafka-cluster.sh: node $n did not start within ${START_TIMEOUT}s; last lines of $(log_of "$n"):" >&2
        tail -n 20 "$(log_of "$n")" >&2
        exit 1
      fi
      if ((waited > 6)) && ! node_pid "$n" >/dev/null; then
        echo "kafka-cluster.sh: node $n exited during start-up; last lines of $(log_of "$n"):" >&2
        tail -n 20 "$(log_of "$n")" >&2
        exit 1
      fi
      sleep 0.5
      waited=$((waited + 1))
    done
  done
}

up() {
  bash "$HERE/kafka.sh" install
  local n
  for n in "${NODES[@]}"; do write_props "$n"; done
  format_all
  for n in "${NODES[@]}"; do launch "$n"; done
  wait_served "${NODES[@]}"
  say "up: $(bootstrap); data: $DIR"
}

stop_node() {  # stop_node N SIGNAL
  local pid waited=0
  pid="$(node_pid "$1")" || { say "node $1 not running"; return 0; }
  kill "-$2" "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    if ((waited >= 60)); then kill -KILL "$pid" 2>/dev/null || true; fi
    sleep 0.5
    waited=$((waited + 1))
  done
  rm -f "$(pidfile "$1")"
  say "node $1 stopped ($2, pid $pid)"
}

node_arg() {
  [[ "${1:-}" =~ ^[123]$ ]] || { echo "usage: $0 kill|stop|start 1|2|3" >&2; exit 2; }
}

case "${1:-}" in
  up | start-all) up ;;
  down)
    for n in "${NODES[@]}"; do stop_node "$n" TERM & done
    wait
    ;;
  status)
    rc=0
    for n in "${NODES[@]}"; do
      if pid="$(node_pid "$n")"; then say "node $n running (pid $pid) on 127.0.0.1:$(client_port "$n")"
      else say "node $n not running"; rc=1; fi
    done
    exit $rc
    ;;
  kill) node_arg "${2:-}"; stop_node "$2" KILL ;;
  stop) node_arg "${2:-}"; stop_node "$2" TERM ;;
  start) node_arg "${2:-}"; launch "$2"; wait_served "$2"; say "node $2 up on 127.0.0.1:$(client_port "$2")" ;;
  bootstrap) bootstrap ;;
  *) echo "usage: $0 up|down|status|kill N|stop N|start N|bootstrap" >&2; exit 2 ;;
esac
