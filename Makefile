# kflow: two commands on a fresh Debian machine (root, or sudo without a password):
#   make demo   install everything, start Kafka/PostgreSQL/Redis, create topics, run the demo
#   make test   install everything, start the stack, run the whole test suite, ruff and mypy
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export DEBIAN_FRONTEND := noninteractive

VENV := .venv
PY := $(VENV)/bin/python
STACK := bash deploy/local/stack.sh
# A checkout keeps the local stack's data, logs and Kafka jars in .kflow/ (gitignored), as the
# lead's and CI's running stacks do; an installed kflow uses ~/.kflow (ADR 0004).
export KFLOW_HOME ?= $(CURDIR)/.kflow
LINT_PATHS := .
TYPED_PATHS := kflow

.PHONY: bootstrap up topics demo test lint typecheck image down status clean-data

bootstrap: $(VENV)/.installed  ## apt packages, the Python venv and the Kafka jars
	$(STACK) bootstrap

$(VENV)/.installed: pyproject.toml
	@command -v python3 >/dev/null || { echo "python3 is required (apt-get install python3)"; exit 1; }
	$(STACK) bootstrap
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

up: bootstrap  ## start (or reuse) the three servers
	$(STACK) up

topics: up  ## create the kflow topics (KFLOW_TOPIC_PREFIX, KFLOW_PARTITIONS)
	$(VENV)/bin/kflow topics create

demo: topics  ## the end-to-end demo (examples/demo.py)
	$(VENV)/bin/kflow demo

test: up  ## the whole suite against the real servers, then lint and type checks (all run; any failure fails)
	rc=0; $(VENV)/bin/pytest || rc=$$?; \
	$(MAKE) -k --no-print-directory lint typecheck || { [ $$rc -ne 0 ] || rc=1; }; \
	exit $$rc

lint:
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

typecheck:
	$(VENV)/bin/mypy $(TYPED_PATHS)

image:  ## the kflow container image kflow:local, without a Docker daemon (docs/deploy.md)
	PYTHON=$${PYTHON:-python3} bash deploy/docker/build.sh

status:
	$(VENV)/bin/kflow dev status

down:  ## stop the servers started by `make up` (data under $(KFLOW_HOME) is kept)
	$(STACK) down

clean-data: down  ## stop the servers and delete their data (the Kafka jar cache is kept)
	rm -rf "$(KFLOW_HOME)/kafka" "$(KFLOW_HOME)/postgres" "$(KFLOW_HOME)/redis" "$(KFLOW_HOME)/demo-logs"
