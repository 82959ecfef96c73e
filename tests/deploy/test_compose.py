"""docker-compose.yml: valid by the compose schema and docker-compose, and wired as documented."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.files import COMPOSE, KFLOW_IMAGE, PROMETHEUS, REPO, compose, load_yaml

CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def _schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _broken_copy(tmp_path: Path) -> Path:
    data = compose()
    data["services"]["api"]["ports"] = [{"published": 8080, "targett": 8080}]
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(data))
    return broken


def test_compose_matches_the_compose_spec_schema(tmp_path: Path) -> None:
    ok = _schema_check(COMPOSE)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    broken = _schema_check(_broken_copy(tmp_path))
    assert broken.returncode == 1 and "services.api.ports" in broken.stdout, broken.stdout


def test_docker_compose_v1_accepts_the_file(tmp_path: Path) -> None:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed (`make bootstrap` adds it)")
    ok = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    broken = subprocess.run(
        ["docker-compose", "-f", str(_broken_copy(tmp_path)), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert broken.returncode != 0 and "services.api.ports" in broken.stderr, broken.stderr


def _kflow_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose()["services"].items() if s.get("image") == KFLOW_IMAGE}


def _metrics_port(service: dict[str, Any]) -> str:
    command = service["command"]
    return command[command.index("--metrics-port") + 1] if "--metrics-port" in command else "8080"


def test_every_long_running_kflow_service_is_health_checked_on_its_metrics_port() -> None:
    services = _kflow_services()
    long_running = {n: s for n, s in services.items() if n != "init"}
    assert set(long_running) == {
        "orchestrator",
        "processor-docpipe",
        "projector-postgres",
        "projector-redis",
        "api",
        "relay",
    }
    for name, service in long_running.items():
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], name
        assert test[4] == f"http://127.0.0.1:{_metrics_port(service)}/readyz", name
        assert service["environment"]["KFLOW_METRICS_HOST"] == "0.0.0.0", name
        assert service["depends_on"]["init"] == {"condition": "service_completed_successfully"}
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name


def test_every_dependency_is_waited_for_until_healthy() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            wanted = "service_completed_successfully" if dependency == "init" else "service_healthy"
            assert condition == {"condition": wanted}, f"{name} -> {dependency}"
            assert dependency == "init" or "healthcheck" in services[dependency], dependency
    assert set(services["init"]["depends_on"]) == {"kafka", "postgres"}


def test_kafka_is_reachable_from_the_other_containers_and_from_the_host() -> None:
    kafka = compose()["services"]["kafka"]["environment"]
    assert "INTERNAL://kafka:29092" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    assert "EXTERNAL://127.0.0.1:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"]
    for name, service in _kflow_services().items():
        assert service["environment"]["KFLOW_KAFKA_BOOTSTRAP"] == "kafka:29092", name


def test_prometheus_scrapes_every_kflow_service_where_it_serves_metrics() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    targets = {
        target
        for job in config["scrape_configs"]
        if job["job_name"].startswith("kflow-")
        for static in job["static_configs"]
        for target in static["targets"]
    }
    expected = {f"{n}:{_metrics_port(s)}" for n, s in _kflow_services().items() if n != "init"}
    assert targets == expected


def test_grafana_and_prometheus_mount_the_files_in_this_repository() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).is_dir(), f"{name}: {source} does not exist"
