"""Prometheus config, alert rules and their unit tests, and the Grafana dashboard, by promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.files import (
    GRAFANA,
    JOBS,
    PROMETHEUS,
    alert_rules,
    dashboard,
    dashboard_exprs,
    dashboard_panels,
    dashboard_variable_queries,
    load_yaml,
)

DATASOURCE_UID = "kflow-prometheus"


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed (`make bootstrap` adds prometheus)")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_compose_scrape_config_and_its_rules_are_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def kubernetes_config_with_static_discovery(targets: dict[str, str]) -> dict[str, Any]:
    """prometheus-kubernetes.yml with pod discovery replaced by static targets that carry the
    ``__meta_kubernetes_*`` labels discovery would give (Debian's Prometheus has no kubernetes_sd,
    and this is also how the relabelling is exercised against real services)."""
    config: dict[str, Any] = load_yaml(PROMETHEUS / "prometheus-kubernetes.yml")
    (job,) = config["scrape_configs"]
    assert job.pop("kubernetes_sd_configs")[0]["role"] == "pod"
    job["static_configs"] = [
        {
            "targets": [
                f"{address.split(':')[0]}:1"
            ],  # the pod IP; the port comes from annotations
            "labels": {
                "__meta_kubernetes_namespace": "kflow",
                "__meta_kubernetes_pod_name": f"kflow-{component}-0",
                "__meta_kubernetes_pod_phase": "Running",
                "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
                "__meta_kubernetes_pod_annotation_prometheus_io_port": address.split(":")[1],
                "__meta_kubernetes_pod_annotation_prometheus_io_path": "/metrics",
                "__meta_kubernetes_pod_label_app_kubernetes_io_component": component.split("-")[0],
            },
        }
        for component, address in targets.items()
    ]
    return config


def test_kubernetes_scrape_config_is_valid(tmp_path: Path) -> None:
    config = kubernetes_config_with_static_discovery(
        {"orchestrator": "10.0.0.1:9100", "api": "10.0.0.2:8080"}
    )
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_jobs_are_one_per_role() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    jobs = {j["job_name"] for j in config["scrape_configs"]} - {"prometheus"}
    assert jobs == JOBS


def test_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_sees_it_fire() -> None:
    tests = load_yaml(PROMETHEUS / "alerts_test.yml")["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == {rule["alert"] for rule in alert_rules()}


def test_every_alert_says_what_is_wrong_and_how_bad() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_dashboard_structure() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 15
    for panel in graphs:
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == DATASOURCE_UID, variable["name"]


def test_dashboard_has_the_panels_operators_asked_for() -> None:
    text = " ".join(dashboard_exprs())
    for needed in [
        "histogram_quantile(0.99, sum by (node_type, le) (rate(kflow_step_latency_seconds_bucket",
        "kflow_workflow_duration_seconds_bucket",
        "kflow_workflow_duration_seconds_count",
        "kflow_step_retries_total",
        "kflow_dlq_records_total",
        "max by (group, topic, partition) (kflow_consumer_lag",
        "kflow_projection_delay_seconds_bucket",
    ]:
        assert needed in text, needed


def test_provisioning_points_the_dashboard_at_its_datasource() -> None:
    (source,) = load_yaml(GRAFANA / "provisioning" / "datasources" / "kflow.yml")["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus"
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "kflow.yml")["providers"]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"


def label_values_as_promql(query: str) -> str:
    """Grafana's ``label_values(selector, label)`` as the PromQL query it stands for."""
    match = re.fullmatch(r"label_values\((.+), *([a-zA-Z_][a-zA-Z0-9_]*)\)", query)
    assert match, f"not a label_values query: {query}"
    return f"count by ({match[2]}) ({match[1]})"


def _as_recording_rules(exprs: list[str]) -> str:
    rules = [{"record": f"dashboard_expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    return json.dumps({"groups": [{"name": "dashboard", "rules": rules}]})  # JSON is YAML


def test_dashboard_expressions_are_valid_promql(tmp_path: Path) -> None:
    exprs = dashboard_exprs() + [label_values_as_promql(q) for q in dashboard_variable_queries()]
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text(_as_recording_rules(exprs))
    result = promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_the_promql_check_catches_a_broken_expression(tmp_path: Path) -> None:
    rules = tmp_path / "broken.yml"
    rules.write_text(_as_recording_rules(["sum(rate(kflow_events_in_total[5m])"]))
    result = promtool("check", "rules", str(rules))
    assert result.returncode == 1
    assert "unclosed left parenthesis" in result.stdout + result.stderr
