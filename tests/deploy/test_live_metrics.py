"""Every metric that an alert or a dashboard panel reads is exported by the running services.

The services run as docker-compose.yml runs them (its command lines, with this test's metrics
ports), a few workflows go through, and each /metrics is scraped. Then a real Prometheus scrapes
them through the Kubernetes relabelling of prometheus-kubernetes.yml, loads alerts.yml, and every
dashboard expression answers with data. Last, every line each service wrote to stdout/stderr,
from start-up to shutdown, is a JSON log record (as a log collector reads them), the API's
access record of a request included.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kflow.client import Client
from kflow.core.definition import parse_definition
from kflow.core.events import StepScheduled
from kflow.registry.topic import publish_definition
from kflow.settings import Settings
from tests.deploy.files import (
    JOBS,
    PROMETHEUS,
    REPO,
    alert_rules,
    compose,
    compose_commands,
    dashboard_exprs,
    dashboard_variable_queries,
    metric_names,
)
from tests.deploy.test_commands import IMAGE_EXAMPLES
from tests.deploy.test_prometheus import kubernetes_config_with_static_discovery
from tests.kafka_helpers import produce

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=2, queues=("docpipe",))]

PORTS = range(19300, 19400)
"""The ports this suite may bind (shared machines give each area a range)."""
WAIT_S = 120.0  # a guard against hangs, not a speed assertion
PROMETHEUS_SYNTHESIZED = {"up"}
"""Names Prometheus makes itself (not exported by kflow)."""
COMPOSE_METRICS_PORT = "9100"
LOG_RECORD_KEYS = {"time", "level", "logger", "message"}
"""What every line of kflow.observability.logging.JsonFormatter has."""
ROLES = {
    # compose service -> Prometheus job
    "orchestrator": "kflow-orchestrator",
    "processor-docpipe": "kflow-processor",
    "projector-postgres": "kflow-projector",
    "projector-redis": "kflow-projector",
    "api": "kflow-api",
    "relay": "kflow-relay",
}


def free_ports(count: int) -> list[int]:
    found: list[int] = []
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise AssertionError(f"fewer than {count} free ports in {PORTS}")


def eventually(check: Callable[[], bool], what: str, limit_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


@dataclass
class System:
    """The kflow services of docker-compose.yml, running here as subprocesses."""

    settings: Settings
    env: dict[str, str]
    log_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def kflow(self, *args: str) -> subprocess.CompletedProcess[str]:
        from kflow.cli.run import service_command

        return subprocess.run(
            service_command(*args),
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def start(self, name: str, args: list[str]) -> None:
        from kflow.cli.run import service_command

        with (self.log_dir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                service_command(*args), env=self.env, cwd=REPO, stdout=log, stderr=log
            )

    def metrics_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}/metrics"

    def scrape(self, name: str) -> dict[str, list[dict[str, str]]]:
        """Sample name -> the label sets of its samples, from one service's /metrics."""
        status, text = http_get(self.metrics_url(name))
        assert status == 200, f"{name}: GET /metrics -> {status} {text[:200]}"
        samples: dict[str, list[dict[str, str]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append(dict(sample.labels))
        return samples

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]

    def log_records(self, name: str) -> tuple[list[dict[str, Any]], list[str]]:
        """One service's stdout/stderr lines: the JSON log records, and every other line."""
        records: list[dict[str, Any]] = []
        other: list[str] = []
        for line in (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and record.keys() >= LOG_RECORD_KEYS:
                records.append(record)
            else:
                other.append(line)
        return records, other

    def serving(self, name: str) -> bool:
        self.check_alive()
        return http_get(self.metrics_url(name))[0] == 200

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited {proc.returncode}:\n{self.log(name)}"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _with_port(args: list[str], port: int) -> list[str]:
    out = list(args)
    if "--metrics-port" in out:
        assert out[out.index("--metrics-port") + 1] == COMPOSE_METRICS_PORT
        out[out.index("--metrics-port") + 1] = str(port)
    return out


@pytest.fixture
def running(
    isolated_settings: Settings, pg_dsn: str, redis_prefix: str, tmp_path: Path
) -> Iterator[System]:
    """docker-compose.yml's init, then its kflow services, on this test's topics, db and keys."""
    ports = free_ports(len(ROLES))
    api_port = ports[list(ROLES).index("api")]
    env = {
        **os.environ,
        **{k: str(v) for k, v in compose()["x-kflow"]["environment"].items()},
        "KFLOW_KAFKA_BOOTSTRAP": isolated_settings.kafka_bootstrap,
        "KFLOW_DATABASE_URL": pg_dsn,
        "KFLOW_REDIS_URL": isolated_settings.redis_url,
        "KFLOW_TOPIC_PREFIX": isolated_settings.topic_prefix,
        "KFLOW_PARTITIONS": "2",
        "KFLOW_DB_SCHEMA": f"deploy_{uuid.uuid4().hex[:8]}",
        "KFLOW_REDIS_PREFIX": redis_prefix,
        "KFLOW_METRICS_HOST": "127.0.0.1",
        "KFLOW_API_HOST": "127.0.0.1",
        "KFLOW_API_PORT": str(api_port),
        # compose's init saves the relay's key there and the relay signs with it (no other)
        "KFLOW_API_KEY_FILE": str(tmp_path / "keys" / "relay"),
    }
    env.pop("KFLOW_API_KEY", None)
    system = System(isolated_settings, env, tmp_path)
    commands = compose_commands()
    for args in commands.pop("init"):
        local = [a.replace(IMAGE_EXAMPLES, f"{REPO}/examples/") for a in args]
        result = system.kflow(*local)
        assert result.returncode == 0, f"kflow {' '.join(local)}:\n{result.stdout}{result.stderr}"
    assert set(commands) == set(ROLES)
    relay_key = tmp_path / "keys" / "relay"
    assert stat.S_IMODE(relay_key.stat().st_mode) == 0o600, "init saved no key for the relay"
    try:
        for (name, (args,)), port in zip(commands.items(), ports, strict=True):
            system.ports[name] = port
            if name == "processor-docpipe":  # plus a node type that fails, for failed workflows
                args = [*args, "--nodes", "tests.runtime.nodes"]
            system.start(name, _with_port(args, port))
        for name in system.ports:
            eventually(partial(system.serving, name), f"{name} to serve /metrics")
        yield system
    finally:
        system.stop()


def _run_workflows(system: System) -> None:
    settings = system.settings
    prefix, bootstrap = settings.topic_prefix, settings.kafka_bootstrap
    failing = parse_definition(
        {"name": "deploy-fail", "nodes": [{"id": "bad", "type": "test.fail", "queue": "docpipe"}]}
    )
    publish_definition(bootstrap, prefix, failing)
    with Client(settings, actor="deploy-test") as client:
        handles = [
            client.start("docpipe", {"doc_id": wid, "sections": 2, "failure_rate": 0.7}, id=wid)
            for wid in (f"doc-{uuid.uuid4().hex[:8]}" for _ in range(3))
        ]
        handles.append(client.start("deploy-fail", {}, id=f"bad-{uuid.uuid4().hex[:8]}"))
        names = [f"{prefix}.commands", f"{prefix}.tasks.docpipe", f"{prefix}.events"]
        for name in names:
            produce(bootstrap, name, [(b"poison", b"not avro")])
        for handle in handles:
            for event in handle.events(follow=True, timeout=WAIT_S):
                system.check_alive()
                if isinstance(event, StepScheduled) and event.kind == "approval":
                    handle.signal(event.node_id, {"approved": True, "by": "test"})


def _break_projector_connection(system: System) -> None:
    """A PostgreSQL outage as the projector sees it: its connections are terminated."""
    dbname = psycopg.conninfo.conninfo_to_dict(system.env["KFLOW_DATABASE_URL"])["dbname"]
    with psycopg.connect(system.env["KFLOW_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [dbname],
        )


def _needed_names() -> dict[str, set[str]]:
    """Metric name -> where it is read (alert names, dashboard)."""
    needed: dict[str, set[str]] = {}
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            needed.setdefault(name, set()).add(f"alert {rule['alert']}")
    for expr in [*dashboard_exprs(), *dashboard_variable_queries()]:
        for name in metric_names(expr):
            needed.setdefault(name, set()).add("dashboard")
    return needed


def _labels_of(samples: dict[str, list[dict[str, str]]], name: str, label: str) -> set[str]:
    return {s[label] for s in samples.get(name, []) if label in s}


def test_every_metric_in_an_alert_or_a_panel_is_exported(running: System, tmp_path: Path) -> None:
    _run_workflows(running)
    _break_projector_connection(running)
    with Client(running.settings, actor="deploy-test") as client:
        client.start("deploy-fail", {}, id=f"after-{uuid.uuid4().hex[:6]}")
    status, _ = http_get(f"http://127.0.0.1:{running.ports['api']}/healthz")
    assert status == 200
    access_status, _ = http_get(f"http://127.0.0.1:{running.ports['api']}/workflows/no-key")
    assert access_status == 401  # no bearer key: still a request the access log records
    prefix = running.settings.topic_prefix

    def scraped() -> dict[str, list[dict[str, str]]]:
        merged: dict[str, list[dict[str, str]]] = {}
        for name in running.ports:
            for sample, label_sets in running.scrape(name).items():
                merged.setdefault(sample, []).extend(label_sets)
        return merged

    def complete(samples: dict[str, list[dict[str, str]]]) -> bool:
        groups = _labels_of(samples, "kflow_consumer_lag", "group")
        return bool(
            {f"{prefix}.orchestrator", f"{prefix}.projector.postgres"} <= groups
            and _labels_of(samples, "kflow_projection_errors_total", "projection")
            and _labels_of(samples, "kflow_projection_delay_seconds_bucket", "projection")
        )

    eventually(lambda: complete(scraped()), "lag, projection delay and projection error series")
    samples = scraped()
    needed = _needed_names()
    missing = {
        name: sorted(where)
        for name, where in needed.items()
        if name not in PROMETHEUS_SYNTHESIZED and name not in samples
    }
    # the label values the panels split by
    assert "docpipe.classify" in _labels_of(
        samples, "kflow_step_latency_seconds_bucket", "node_type"
    )
    assert "docpipe.classify" in _labels_of(samples, "kflow_step_retries_total", "node_type")
    assert {"completed", "failed"} <= _labels_of(
        samples, "kflow_workflow_duration_seconds_count", "outcome"
    )
    assert {"orchestrator", "processor", "projector-postgres"} <= _labels_of(
        samples, "kflow_dlq_records_total", "component"
    )
    assert any(
        g.startswith(f"{prefix}.processor")
        for g in _labels_of(samples, "kflow_consumer_lag", "group")
    )
    _check_with_prometheus(running, tmp_path)
    # last, so that what is still to be added does not hide the checks above
    unhealthy = _failing_health_checks(running)
    running.stop()  # the logs up to and including each service's shutdown
    not_json = {name: running.log_records(name)[1] for name in running.ports}
    not_json = {name: lines[:5] for name, lines in not_json.items() if lines}
    access = [
        (r["method"], r["route"], r["status"])
        for r in running.log_records("api")[0]
        if r["logger"] == "kflow.api.access" and r.get("path") == "/workflows/no-key"
    ]
    assert not missing and not unhealthy and not not_json, (
        f"read by alerts/dashboard but not exported by any service: {missing}; "
        f"compose healthchecks / Kubernetes probes failing: {unhealthy}; "
        f"log lines that are not JSON records: {not_json}"
    )
    assert access == [("GET", "/workflows/{workflow_id}", access_status)], access


def _failing_health_checks(system: System) -> dict[str, str]:
    """Each service's compose healthcheck, run as compose runs it (the probe URL on this test's
    port), and the Kubernetes probe paths (/healthz, /readyz) on the same port."""
    failing: dict[str, str] = {}
    services = compose()["services"]
    for name, port in system.ports.items():
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        url = test[-1].replace(f"127.0.0.1:{COMPOSE_METRICS_PORT}/", f"127.0.0.1:{port}/")
        url = url.replace("127.0.0.1:8080/", f"127.0.0.1:{port}/")
        probe = subprocess.run(
            [sys.executable, *test[2:-1], url], capture_output=True, text=True, timeout=30
        )
        if probe.returncode != 0:
            failing[name] = f"{url}: {probe.stderr.strip().splitlines()[-1:]}"
        for path in ("/healthz", "/readyz"):
            status, body = http_get(f"http://127.0.0.1:{port}{path}")
            # prometheus_client's server answers every path with the metrics: that is no probe
            if status != 200 or "# TYPE " in body:
                failing[f"{name} {path}"] = f"{status} {body[:60]!r}"
    return failing


def _check_with_prometheus(system: System, work: Path) -> None:
    """A real Prometheus: Kubernetes relabelling gives the jobs, the rules load and evaluate,
    and every dashboard expression returns data."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (`make bootstrap` adds it)"
    (port,) = free_ports(1)
    config = kubernetes_config_with_static_discovery(
        {name.replace("-docpipe", ""): f"127.0.0.1:{p}" for name, p in system.ports.items()}
    )
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(PROMETHEUS / "alerts.yml", work / "alerts.yml")
    with (work / "prometheus.log").open("wb") as log:
        server = subprocess.Popen(
            [
                binary,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
        )
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(expr: str) -> list[Any]:
        status, body = http_get(f"{api}/query?{urllib.parse.urlencode({'query': expr})}")
        assert status == 200, f"{expr}: {status} {body[:300]}"
        result: list[Any] = json.loads(body)["data"]["result"]
        return result

    try:

        def all_up() -> bool:
            assert server.poll() is None, (work / "prometheus.log").read_text()[-2000:]
            status, body = http_get(f"{api}/targets")
            if status != 200:
                return False
            active = json.loads(body)["data"]["activeTargets"]
            return len(active) == len(system.ports) and all(t["health"] == "up" for t in active)

        eventually(all_up, "Prometheus to scrape every kflow service")
        jobs = {r["metric"]["job"] for r in query('up{job=~"kflow-.+"} == 1')}
        assert jobs == JOBS
        empty: list[str] = []

        def answered() -> bool:
            empty.clear()
            empty.extend(e for e in dashboard_exprs() if not query(e))
            return not empty

        try:
            eventually(answered, "every dashboard expression to return data", 60)
        except AssertionError as e:
            raise AssertionError(f"no data for: {empty}") from e
        eventually(
            lambda: len(_rule_health(api)) == len(alert_rules()), "the alert rules to be evaluated"
        )
        assert set(_rule_health(api).values()) == {"ok"}, _rule_health(api)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def _rule_health(api: str) -> dict[str, str]:
    status, body = http_get(f"{api}/rules")
    assert status == 200
    return {
        r["name"]: r["health"]
        for g in json.loads(body)["data"]["groups"]
        for r in g["rules"]
        if r.get("lastEvaluation", "").startswith("2") and r["health"] != "unknown"
    }
