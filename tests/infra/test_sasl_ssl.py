"""kflow over SASL_SSL only: a workflow end to end, and one clear line for each bad setting.

A private broker (``kafka.sh`` with ``KFLOW_KAFKA_LISTENER=SASL_SSL``: SCRAM-SHA-512 users made
by Kafka's StorageTool, a throwaway CA and broker certificate made by openssl) serves no
plaintext listener, so every client of every service must use the security settings.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from kflow.bus.probe import KafkaConnectError
from kflow.cli.run import service_command
from kflow.client import Client
from kflow.settings import Settings
from tests.infra.secured import PASSWORD, SaslSslKafka
from tests.runtime.services import REPO

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PORTS = range(19502, 19520)
"""This suite's ports (the kafka area has 19500-19559; the cluster test uses 19520-19525)."""
WAIT_S = 120.0  # a guard against hangs, not a speed assertion


def _free(count: int, step: int = 1) -> list[int]:
    found: list[int] = []
    for port in PORTS:
        if any(port in range(f, f + step) for f in found):
            continue
        try:
            for p in range(port, port + step):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        found.append(port)
        if len(found) == count:
            return found
    raise AssertionError(f"no {count} free ports in {PORTS}")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, stack: Settings) -> Iterator[SaslSslKafka]:
    (port,) = _free(1, step=2)
    b = SaslSslKafka(port, tmp_path_factory.mktemp("sasl"))
    b.start()  # refuses a foreign broker on the port
    yield b
    b.run("down")


def _kflow(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        service_command(*args),
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_broker_serves_no_plaintext_and_creates_no_topic_implicitly(
    broker: SaslSslKafka, tmp_path: Path
) -> None:
    props = (broker.dir / "kafka" / "server.properties").read_text()
    assert "PLAINTEXT://" not in props.replace("CONTROLLER:PLAINTEXT", "")
    assert "auto.create.topics.enable=false" in props
    assert PASSWORD not in (broker.dir / "kafka" / "server.out").read_text()


def test_a_workflow_runs_end_to_end_over_sasl_ssl(
    broker: SaslSslKafka, pg_dsn: str, redis_prefix: str, tmp_path: Path
) -> None:
    prefix = f"sasl-{uuid.uuid4().hex[:8]}"
    (api_port,) = _free(1)
    env = {
        **os.environ,
        **broker.client_env(),
        "KFLOW_TOPIC_PREFIX": prefix,
        "KFLOW_PARTITIONS": "2",
        "KFLOW_DATABASE_URL": pg_dsn,
        "KFLOW_DB_SCHEMA": f"sasl_{uuid.uuid4().hex[:8]}",
        "KFLOW_REDIS_PREFIX": redis_prefix,
        "KFLOW_API_HOST": "127.0.0.1",
        "KFLOW_API_PORT": str(api_port),
    }
    definition = tmp_path / "sasl.yaml"
    definition.write_text(
        "name: sasl-e2e\nnodes:\n"
        "  - {id: first, type: delay, queue: default, input: {seconds: 0}}\n"
        "  - {id: second, type: delay, queue: default, depends_on: [first], input: {seconds: 0}}\n"
    )
    for args in (
        ["topics", "create", "--queue", "default"],
        ["db", "migrate"],
        ["definitions", "apply", str(definition)],
    ):
        done = _kflow(env, *args)
        assert done.returncode == 0, f"kflow {args}: {done.stdout}{done.stderr}"
    key = _kflow(
        env, "apikey", "create", "--name", "t", "--tenant", "default",
        "--scope", "read", "--scope", "write",
    )  # fmt: skip
    assert key.returncode == 0, key.stderr
    token = next(ln.split()[-1] for ln in key.stdout.splitlines() if ln.startswith("api key:"))

    services = {
        "orchestrator": ["run", "orchestrator", "--log-level", "info"],
        "processor": ["run", "processor", "--queue", "default", "--log-level", "info"],
        "projector": ["run", "projector", "--target", "postgres"],
        "api": ["run", "api"],
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {name: tmp_path / f"{name}.log" for name in services}
    try:
        for name, args in services.items():
            with logs[name].open("ab") as log:
                procs[name] = subprocess.Popen(
                    service_command(*args), env=env, cwd=REPO, stdout=log, stderr=log
                )
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + WAIT_S
        started = None
        status = ""
        with httpx.Client(base_url=base, headers=headers, timeout=5) as http:
            while status != "completed":
                for name, proc in procs.items():
                    assert proc.poll() is None, f"{name} exited:\n{logs[name].read_text()}"
                assert time.monotonic() < deadline, f"workflow stuck in {status!r}"
                time.sleep(0.3)
                try:
                    if started is None:
                        answer = http.post(
                            "/workflows", json={"name": "sasl-e2e", "input": {"seconds": 0}}
                        )
                        if answer.status_code == 202:
                            started = answer.json()["workflow_id"]
                        continue
                    row = http.get(f"/workflows/{started}")
                except httpx.TransportError:
                    continue  # the API is still starting
                if row.status_code == 200:
                    status = row.json()["status"]
            steps = http.get(f"/workflows/{started}").json()["steps"]
        assert sorted(s["node_id"] for s in steps) == ["first", "second"]
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    for name, log in logs.items():
        assert PASSWORD not in log.read_text(errors="replace"), f"{name} logged the password"


@pytest.mark.parametrize("case", ["wrong password", "untrusted CA"])
def test_bad_credentials_or_ca_give_one_clear_line(
    broker: SaslSslKafka, tmp_path: Path, case: str
) -> None:
    if case == "wrong password":
        client = broker.client_env(password="not-the-" + PASSWORD)
        expected = "rejected the SCRAM-SHA-512 login of 'alice'"
    else:
        other = tmp_path / "other"
        other.mkdir()
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(other / "ca.key"), "-out", str(other / "ca.crt"), "-subj", "/CN=x"],
            check=True, capture_output=True,
        )  # fmt: skip
        client = broker.client_env(ca=other / "ca.crt")
        expected = "is not trusted: set KFLOW_KAFKA_SSL_CA_LOCATION"
    env = {**os.environ, **client, "KFLOW_TOPIC_PREFIX": f"bad-{uuid.uuid4().hex[:6]}"}
    for args in (["run", "orchestrator"], ["topics", "list"], ["dev", "status"]):
        began = time.monotonic()
        done = _kflow(env, *args, timeout=60)
        took = time.monotonic() - began
        assert done.returncode == 1, f"{args}: {done.stdout}{done.stderr}"
        assert expected in done.stdout + done.stderr, f"{args}: {done.stdout}{done.stderr}"
        assert "Traceback" not in done.stderr
        assert PASSWORD not in done.stdout + done.stderr
        if args[0] != "dev":
            errors = [ln for ln in done.stderr.splitlines() if ln.strip()]
            assert len(errors) == 1, errors  # one line, not librdkafka's retry log
        assert took < 30, f"{args} took {took:.0f} s"  # a hang guard, not a speed assertion


def test_client_connects_with_the_settings_it_is_given(broker: SaslSslKafka) -> None:
    """kflow.Client(settings) uses that object's security settings (this process's
    environment has none), and bad credentials fail its first call with one clear error."""
    prefix = f"sasl-client-{uuid.uuid4().hex[:6]}"
    client_env = broker.client_env()
    made = _kflow({**os.environ, **client_env, "KFLOW_TOPIC_PREFIX": prefix}, "topics", "create")
    assert made.returncode == 0, made.stderr
    fields = {k.removeprefix("KFLOW_").lower(): v for k, v in client_env.items()}
    good = Settings.model_validate({**fields, "topic_prefix": prefix})
    with Client(good, actor="sasl-test") as client:
        handle = client.start("no-such-definition", {}, id=f"wf-{uuid.uuid4().hex[:6]}")
        assert handle.workflow_id
    bad = good.model_copy(
        update={"kafka_sasl_password_file": None, "kafka_sasl_password": SecretStr("wrong")}
    )
    began = time.monotonic()
    with Client(bad, actor="sasl-test") as client, pytest.raises(KafkaConnectError) as caught:
        client.start("no-such-definition", {})
    assert "rejected the SCRAM-SHA-512 login of 'alice'" in str(caught.value)
    assert time.monotonic() - began < 30  # a hang guard, not a speed assertion
