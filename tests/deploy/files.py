"""The deploy files the tests read: compose, Kubernetes manifests, Prometheus and Grafana."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
BUILD_SH = REPO / "deploy" / "docker" / "build.sh"
INSTALL_SH = REPO / "deploy" / "docker" / "install.sh"
K8S = REPO / "deploy" / "k8s"
PROMETHEUS = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "kflow.json"

KFLOW_IMAGE = "kflow:local"
JOBS = {"kflow-orchestrator", "kflow-processor", "kflow-projector", "kflow-api", "kflow-relay"}
"""The Prometheus job of each kflow role, the same in compose and on Kubernetes."""


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object in deploy/k8s (kustomization.yaml excluded)."""
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path, doc


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod template's spec of a workload object, else None."""
    if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
        spec = doc["spec"]["template"]["spec"]
        assert isinstance(spec, dict)
        return spec
    return None


def _kflow_args(argv: list[str]) -> list[list[str]]:
    """The kflow command lines in one argv: ``kflow ...`` itself, or the lines of ``sh -c``."""
    if argv[:1] == ["kflow"]:
        return [argv[1:]]
    if argv[:1] == ["sh"] and len(argv) == 3 and argv[1] in ("-c", "-ec", "-ceu", "-euc"):
        lines = [shlex.split(line) for line in argv[2].splitlines() if line.strip()]
        assert all(line[0] == "kflow" for line in lines), f"not only kflow commands: {argv}"
        return [line[1:] for line in lines]
    raise AssertionError(f"not a kflow command line: {argv}")


def compose_commands() -> dict[str, list[list[str]]]:
    """Service name -> the kflow argument lists it runs (the image's entrypoint is ``kflow``)."""
    out: dict[str, list[list[str]]] = {}
    for name, service in compose()["services"].items():
        if service.get("image") != KFLOW_IMAGE:
            continue
        entrypoint = service.get("entrypoint", ["kflow"])
        command = service.get("command", [])
        out[name] = _kflow_args([*entrypoint, *command])
    return out


def k8s_commands() -> dict[str, list[list[str]]]:
    """``<object>/<container>`` -> the kflow argument lists it runs."""
    out: dict[str, list[list[str]]] = {}
    for _, doc in k8s_documents():
        spec = pod_spec(doc)
        if spec is None:
            continue
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            assert c["image"] == KFLOW_IMAGE, c["name"]
            argv = [*c.get("command", ["kflow"]), *c.get("args", [])]
            out[f"{doc['metadata']['name']}/{c['name']}"] = _kflow_args(argv)
    return out


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    out: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$workflow": ".*",
    "$node_type": ".*",
    "$group": ".*",
}


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced by plain PromQL values."""
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr.replace("$1", ""), f"unknown Grafana variable in {expr}"
    return expr


def dashboard_exprs() -> list[str]:
    """Every target expression of the dashboard, variables replaced."""
    return [grafana_to_promql(t["expr"]) for p in dashboard_panels() for t in p.get("targets", [])]


def dashboard_variable_queries() -> list[str]:
    return [v["query"]["query"] for v in dashboard()["templating"]["list"]]


def alert_rules() -> list[dict[str, Any]]:
    data = load_yaml(PROMETHEUS / "alerts.yml")
    return [rule for group in data["groups"] for rule in group["rules"]]


_NAME = re.compile(r"\b(kflow_[a-z0-9_]+|up)\b")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (kflow_* and Prometheus' own ``up``)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(_NAME.findall(without_strings))
