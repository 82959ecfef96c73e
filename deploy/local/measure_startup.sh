#!/usr/bin/env bash
# Measure cold and warm start of the local stack without touching the running one:
# copies the work tree to a scratch dir, uses an empty Maven repository and other ports.
#   deploy/local/measure_startup.sh [scratch-dir]      (prints one line per step)
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SCRATCH="${1:-$(mktemp -d /tmp/kflow-startup.XXXXXX)}"
mkdir -p "$SCRATCH/repo"
tar -C "$REPO" --exclude=./.venv --exclude=./.kflow --exclude=./deploy/local/.cache --exclude=./.git \
  -cf - . | tar -xf - -C "$SCRATCH/repo"
cd "$SCRATCH/repo"
export MAVEN_OPTS="-Dmaven.repo.local=$SCRATCH/m2" PIP_CACHE_DIR="$SCRATCH/pip-cache"
export KFLOW_HOME="$SCRATCH/repo/.kflow"  # the Makefile's choice, also for the direct kflow calls
export KFLOW_KAFKA_PORT=29092 KFLOW_PG_PORT=25432 KFLOW_REDIS_PORT=26379
export KFLOW_KAFKA_BOOTSTRAP=127.0.0.1:29092 KFLOW_REDIS_URL=redis://127.0.0.1:26379/0
export KFLOW_DATABASE_URL=postgresql://kflow:kflow@127.0.0.1:25432/kflow

step() {  # step NAME CMD...: run CMD, print its wall time
  local name=$1 start end rc
  shift
  start=$(date +%s.%N)
  "$@" >>"$SCRATCH/steps.log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  printf '%-45s %6.1f s  (exit %d)\n' "$name" "$(echo "$end - $start" | bc)" "$rc"
}
step "cold make bootstrap (venv, jars)" make bootstrap
step "cold kflow dev up (format, initdb)" .venv/bin/kflow dev up
step "kflow dev down" .venv/bin/kflow dev down
step "warm make bootstrap" make bootstrap
step "warm kflow dev up (data kept)" .venv/bin/kflow dev up
step "kflow dev up (already running)" .venv/bin/kflow dev up
step "kflow dev down" .venv/bin/kflow dev down
echo "logs: $SCRATCH/steps.log (delete $SCRATCH when done)"
