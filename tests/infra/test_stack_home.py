"""Where the local stack keeps its state (ADR 0004), and the scripts' refusals."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from kflow.settings import Settings, SettingsError
from kflow.stack import ROOT_HOME, STACK_SCRIPT, kflow_home, server_ports, stack_env


def test_kflow_home_is_the_variable_when_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KFLOW_HOME", str(tmp_path))
    assert kflow_home() == tmp_path
    assert stack_env()["KFLOW_HOME"] == str(tmp_path)


def test_kflow_home_defaults_to_the_users_home_and_var_lib_for_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KFLOW_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert kflow_home() == tmp_path / ".kflow"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert kflow_home() == ROOT_HOME == Path("/var/lib/kflow")
    monkeypatch.setenv("KFLOW_HOME", "")  # empty counts as unset
    assert kflow_home() == ROOT_HOME


def test_stack_script_refuses_to_guess_its_home() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KFLOW_HOME"}
    result = subprocess.run(
        ["bash", str(STACK_SCRIPT), "status"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "set KFLOW_HOME" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_up_fails_first_when_postgres_cannot_enter_kflow_home(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)  # like /root
    env = {
        **stack_env(),
        "KFLOW_HOME": str(private / "home"),
        "KFLOW_PG_PORT": str(_free_port()),
        # If the check were missing, install would stop here instead of starting Kafka.
        "KFLOW_KAFKA_VERSION": "0.0.0",
    }
    result = subprocess.run(
        ["bash", str(STACK_SCRIPT), "up"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"user postgres cannot enter {private / 'home'}" in result.stderr
    assert "set KFLOW_HOME" in result.stderr
    assert not (private / "home" / "kafka").exists()


@pytest.mark.integration
def test_up_reuses_servers_another_checkout_started(stack: Settings, tmp_path: Path) -> None:
    """A second KFLOW_HOME (another checkout, or an install) reuses the running servers."""
    home = tmp_path / "home"
    home.mkdir()
    jars = kflow_home() / "cache"
    if jars.is_dir():  # spare the test a Maven resolve
        (home / "cache").symlink_to(jars)
    env = {**stack_env(), "KFLOW_HOME": str(home)}
    result = subprocess.run(
        ["bash", str(STACK_SCRIPT), "up"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is already served by another process; reusing it" in result.stdout  # Kafka
    assert "is already served by another server; reusing it" in result.stdout  # PostgreSQL, Redis
    assert not (home / "postgres" / "data").exists() and not (home / "kafka" / "data").exists()


def _ports(monkeypatch: pytest.MonkeyPatch, **values: str) -> dict[str, str]:
    for name in ("KFLOW_KAFKA_PORT", "KFLOW_PG_PORT", "KFLOW_REDIS_PORT"):
        monkeypatch.delenv(name, raising=False)
    return server_ports(Settings.model_validate(values))


def test_the_stack_starts_its_servers_where_the_settings_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _ports(monkeypatch) == {
        "KFLOW_KAFKA_PORT": "9092",
        "KFLOW_PG_PORT": "5432",
        "KFLOW_REDIS_PORT": "6379",
    }
    assert _ports(
        monkeypatch,
        kafka_bootstrap="localhost:19092",
        database_url="postgresql://kflow:kflow@127.0.0.1:15432/kflow",
        redis_url="redis://127.0.0.1:16379/0",
    ) == {"KFLOW_KAFKA_PORT": "19092", "KFLOW_PG_PORT": "15432", "KFLOW_REDIS_PORT": "16379"}


def test_the_stack_refuses_servers_it_cannot_run_without_showing_passwords(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SettingsError) as refused:
        _ports(
            monkeypatch,
            kafka_bootstrap="10.0.0.1:9092,10.0.0.2:9092",
            database_url="postgresql://kflow:s3cret@db.internal:5432/kflow",
        )
    message = str(refused.value)
    assert "KFLOW_KAFKA_BOOTSTRAP points at 10.0.0.1:9092,10.0.0.2:9092" in message
    assert "KFLOW_DATABASE_URL points at db.internal:5432" in message
    assert "s3cret" not in message and "KFLOW_REDIS_URL" not in message
