"""deploy/k8s: valid against the Kubernetes schemas, and every workload deployed as documented."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kflow.bus.clients import connection_config
from kflow.settings import Settings, env_name
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


_REF = re.compile(r"\$\(([A-Z0-9_]+)\)")
"""A ``$(VAR)`` reference in a container's args."""


def _config_and_secrets() -> tuple[dict[str, str], dict[str, str]]:
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in k8s_documents()}
    config: dict[str, str] = docs[("ConfigMap", "kflow-config")]["data"]
    secrets: dict[str, str] = docs[("Secret", "kflow-secrets")]["stringData"]
    return config, secrets


def _containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(object/container, container, pod spec) of every pod template, init containers too."""
    out = []
    for _, doc in k8s_documents():
        spec = pod_spec(doc)
        if spec is not None:
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                out.append((f"{doc['metadata']['name']}/{c['name']}", c, spec))
    return out


def test_every_variable_of_the_config_and_secrets_is_a_kflow_setting() -> None:
    config, secrets = _config_and_secrets()
    fields = {env_name(f) for f in Settings.model_fields}
    expanded = {  # $(VAR) in a command line, expanded by Kubernetes, not read by kflow
        ref for _, c, _ in _containers() for a in c.get("args", []) for ref in _REF.findall(a)
    }
    unknown = sorted(
        name
        for name in (set(config) | set(secrets)) - fields - expanded
        if not name.startswith("OTEL_")  # read by the OpenTelemetry SDK (docs/deploy.md#trace)
    )
    assert not unknown, f"not a kflow setting (services/settings.py): {unknown}"


def test_every_pod_mounts_the_kafka_ca_where_the_config_points() -> None:
    config, _ = _config_and_secrets()
    ca = PurePosixPath(config["KFLOW_KAFKA_SSL_CA_LOCATION"])
    for name, container, spec in _containers():
        assert {"configMapRef": {"name": "kflow-config"}} in container["envFrom"], name
        assert {"secretRef": {"name": "kflow-secrets"}} in container["envFrom"], name
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(ca.parent)]
        assert mount["readOnly"] is True, name
        (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"] == {
            "secretName": "kflow-kafka-ca",
            "optional": True,  # a PLAINTEXT cluster needs none
        }, name


def test_the_shipped_config_connects_in_plaintext_and_a_secured_cluster_is_one_change(
    tmp_path: Path,
) -> None:
    """As shipped, PLAINTEXT (the SASL and CA values unused); with SASL_SSL in the ConfigMap,
    every client logs in with the Secret's user and password and trusts the mounted CA."""
    config, secrets = _config_and_secrets()

    def settings(env: dict[str, str]) -> Settings:
        return Settings(**{k.removeprefix("KFLOW_").lower(): v for k, v in env.items()})

    shipped = connection_config(settings({**config, **secrets}))
    assert shipped["security.protocol"] == "PLAINTEXT"
    assert not {k for k in shipped if k.startswith(("sasl.", "ssl."))}, shipped

    ca = tmp_path / "ca.crt"  # stands in for the mounted Secret's key
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert PurePosixPath(config["KFLOW_KAFKA_SSL_CA_LOCATION"]).name == ca.name
    secured = {
        **config,
        **secrets,
        "KFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KFLOW_KAFKA_SSL_CA_LOCATION": str(ca),
    }
    client = connection_config(settings(secured))
    assert {k: client[k] for k in ("security.protocol", "sasl.mechanism", "ssl.ca.location")} == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": config["KFLOW_KAFKA_SASL_MECHANISM"],
        "ssl.ca.location": str(ca),
    }
    assert client["sasl.username"] == secrets["KFLOW_KAFKA_SASL_USERNAME"]
    assert client["sasl.password"] == secrets["KFLOW_KAFKA_SASL_PASSWORD"]
