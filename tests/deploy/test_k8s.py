"""deploy/k8s: valid against the Kubernetes schemas, and every workload deployed as documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.files import K8S, k8s_documents, load_yaml, pod_spec

KUBERNETES_VERSION = "1.30.0"
"""The oldest Kubernetes the manifests are checked against (the package's newest is checked too)."""


def _manifests() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("version", [KUBERNETES_VERSION, kubernetes_validate.latest_version()])
@pytest.mark.parametrize("path", _manifests(), ids=lambda p: p.name)
def test_manifest_is_valid_against_the_kubernetes_schemas(path: Path, version: str) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_a_misspelt_field() -> None:
    _, deployment = next((p, d) for p, d in k8s_documents() if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="httpGett"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert sorted(kustomization["resources"]) == sorted(p.name for p in _manifests())
    assert kustomization["namespace"] == "kflow"


def _workloads() -> list[dict[str, Any]]:
    return [d for _, d in k8s_documents() if d["kind"] in ("Deployment", "StatefulSet")]


def test_every_role_runs_as_a_workload() -> None:
    components = sorted(
        w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        for w in _workloads()
    )
    assert components == ["api", "orchestrator", "processor", "projector", "projector", "relay"]


def test_every_container_is_probed_limited_and_locked_down() -> None:
    for workload in _workloads():
        spec = pod_spec(workload)
        assert spec is not None
        name = workload["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 10001, name
        assert spec["automountServiceAccountToken"] is False, name
        (container,) = spec["containers"]
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True, name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        assert {"requests", "limits"} <= set(container["resources"]), name
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in [
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/healthz"),
        ]:
            get = container[probe]["httpGet"]
            assert get["path"] == path and get["port"] in ports, f"{name} {probe}"
        port = ports[container["readinessProbe"]["httpGet"]["port"]]
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == str(port), name
        args = container["args"]
        if "--metrics-port" in args:
            assert args[args.index("--metrics-port") + 1] == str(port), name
        assert {"configMapRef": {"name": "kflow-config"}} in container["envFrom"], name
        assert {"secretRef": {"name": "kflow-secrets"}} in container["envFrom"], name


def test_orchestrators_have_stable_distinct_instances_and_a_disruption_budget() -> None:
    docs = [d for _, d in k8s_documents() if d["metadata"]["name"] == "kflow-orchestrator"]
    kinds = {d["kind"]: d for d in docs}
    statefulset, pdb, service = kinds["StatefulSet"], kinds["PodDisruptionBudget"], kinds["Service"]
    assert statefulset["spec"]["replicas"] == 2
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--instance") + 1] == "$(POD_NAME)"
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in (
        container["env"]
    )


def test_the_api_service_selects_the_api_pods() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in k8s_documents()}
    service, api = docs[("Service", "kflow-api")], docs[("Deployment", "kflow-api")]
    assert service["spec"]["selector"].items() <= (
        api["spec"]["template"]["metadata"]["labels"].items()
    )
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"


def test_config_binds_metrics_and_api_to_every_interface() -> None:
    config = next(d for _, d in k8s_documents() if d["kind"] == "ConfigMap")
    assert config["data"]["KFLOW_METRICS_HOST"] == "0.0.0.0"
    assert config["data"]["KFLOW_API_HOST"] == "0.0.0.0"
    secret = next(d for _, d in k8s_documents() if d["kind"] == "Secret")
    assert {"KFLOW_DATABASE_URL", "KFLOW_REDIS_URL"} <= set(secret["stringData"])


def test_the_init_job_sets_up_before_it_applies_the_definition() -> None:
    job = next(d for _, d in k8s_documents() if d["kind"] == "Job")
    spec = job["spec"]["template"]["spec"]
    steps = [c["args"][:2] for c in spec["initContainers"]] + [spec["containers"][0]["args"][:2]]
    assert steps == [
        ["topics", "create"],
        ["db", "migrate"],
        ["outbox", "install"],
        ["definitions", "apply"],
    ]
    assert spec["restartPolicy"] == "OnFailure"
