"""A three-broker KRaft cluster (deploy/local/kafka-cluster.sh) losing a broker under load.

Topics get the cluster policy (replication factor 3, min.insync.replicas 2, asked of the
cluster); an orchestrator and a processor run as subprocesses and are never restarted.
Checked after each run: every workflow ended, seq is gapless (no committed event lost), each
step succeeded once in the log and its side effect ran once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kflow.bus.admin import admin_client, create_topics, describe_topics
from kflow.bus.topics import topic_names, topic_specs
from kflow.processor.registry import load_node_modules
from kflow.settings import Settings
from kflow.stack import DEVSTACK, stack_env
from tests.conftest import publish_session_key
from tests.runtime.conftest import Runtime
from tests.runtime.services import ServiceProcesses
from tests.runtime.test_crash import chain_definition, check_log, effects

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLUSTER_SCRIPT = DEVSTACK / "kafka-cluster.sh"
BASE_PORT = int(os.environ.get("KFLOW_TEST_CLUSTER_PORT", "19520"))
"""Nodes serve clients on BASE_PORT..+2, controllers on +3..+5 (19520-19525 by default)."""
PARTITIONS = 4


class Cluster:
    """``kafka-cluster.sh`` with its own data dir on this suite's ports."""

    def __init__(self, home: Path) -> None:
        self.env = {
            **stack_env(),
            "KFLOW_CLUSTER_DIR": str(home),
            "KFLOW_CLUSTER_PORT": str(BASE_PORT),
        }
        self.bootstrap = ",".join(f"127.0.0.1:{BASE_PORT + i}" for i in range(3))

    def run(self, *args: str) -> str:
        done = subprocess.run(
            ["bash", str(CLUSTER_SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kafka-cluster.sh {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def leader_of(self, topic: str, partition: int) -> int:
        metadata = admin_client(self.bootstrap).list_topics(topic, timeout=10)
        return int(metadata.topics[topic].partitions[partition].leader)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, stack: Settings) -> Iterator[Cluster]:
    for port in range(BASE_PORT, BASE_PORT + 6):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"port {port} is in use: stop what serves it", pytrace=False)
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    c.run("up")
    yield c
    c.run("down")


@pytest.fixture
def system(
    cluster: Cluster, stack: Settings, redis_prefix: str, tmp_path: Path
) -> Iterator[tuple[Runtime, ServiceProcesses]]:
    prefix = f"cluster-{uuid.uuid4().hex[:8]}"
    settings = stack.model_copy(
        update={"kafka_bootstrap": cluster.bootstrap, "topic_prefix": prefix, "partitions": 4}
    )
    specs = topic_specs(prefix, PARTITIONS, ("default",))
    create_topics(cluster.bootstrap, specs)  # the policy is asked of the cluster
    publish_session_key(cluster.bootstrap, prefix)  # what the tests' commands are signed with
    states = describe_topics(cluster.bootstrap, [s.name for s in specs])
    assert {(s.replication_factor, s.config["min.insync.replicas"]) for s in states.values()} == {
        (3, "2")
    }
    load_node_modules([])
    rt = Runtime(settings, redis_prefix)
    procs = ServiceProcesses(settings, redis_prefix, tmp_path)
    rt.apply(chain_definition(redis_prefix, work_s=0.02))
    procs.start("orchestrator-0")
    procs.start("processor-0")
    yield rt, procs
    for name, proc in procs.procs.items():
        assert proc.poll() is None, (
            f"{name} exited {proc.returncode}:\n"
            + ((tmp_path / f"{name}.log").read_text(errors="replace")[-3000:])
        )
    assert procs.restarts == {"orchestrator-0": 0, "processor-0": 0}  # never restarted
    procs.stop_all()
    rt.stop()


def _dump_stacks(procs: ServiceProcesses) -> None:
    """Each live service writes its threads' stacks to its log (SIGUSR1, faulthandler)."""
    for proc in procs.procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGUSR1)
    time.sleep(1)  # let them write before the logs are read


def _run_with_broker_down(
    cluster: Cluster,
    system: tuple[Runtime, ServiceProcesses],
    count: int,
    down_s: float,
    tag: str,
) -> list[str]:
    """Start ``count`` workflows; after a quarter, SIGKILL the broker leading the event
    log's partition 0, keep it down ``down_s`` while the rest start, then bring it back."""
    rt, procs = system
    victim = cluster.leader_of(topic_names(rt.prefix).events, 0)
    ids = [f"{tag}-{i:03d}" for i in range(count)]
    restarted = threading.Event()

    def bring_back() -> None:
        cluster.run("start", str(victim))
        restarted.set()

    for i, workflow_id in enumerate(ids):
        rt.start("crashy", workflow_id=workflow_id)
        if i == 0:
            rt.wait_final(ids[:1])  # the services are up and working
        if i == count // 4:
            cluster.run("kill", str(victim))
            threading.Timer(down_s, bring_back).start()
    try:
        check_log(rt, ids)
    except AssertionError as e:
        _dump_stacks(procs)
        tails = "".join(
            f"\n--- {name}.log ---\n"
            + (procs.log_dir / f"{name}.log").read_text(errors="replace")[-6000:]
            for name in procs.procs
        )
        raise AssertionError(f"{e}{tails}") from None
    assert restarted.wait(180), "the killed broker did not come back"
    return ids


def test_sigkill_one_broker_while_200_workflows_run(
    cluster: Cluster, system: tuple[Runtime, ServiceProcesses]
) -> None:
    rt, _procs = system
    ids = _run_with_broker_down(cluster, system, 200, down_s=5.0, tag="kill")
    counts = effects(rt.settings, rt.redis_prefix)
    assert set(counts) == {f"{w}/{n}" for w in ids for n in "abcd"}
    assert set(counts.values()) == {1}, {k: n for k, n in counts.items() if n > 1}


@pytest.mark.chaos
def test_a_broker_down_longer_than_the_transaction_timeout(
    cluster: Cluster, system: tuple[Runtime, ServiceProcesses]
) -> None:
    """Down for 40 s, above the orchestrator's transaction.timeout.ms (30 s): transactions
    open on it are aborted by the broker and redone; nothing is lost or applied twice."""
    rt, _procs = system
    ids = _run_with_broker_down(cluster, system, 200, down_s=40.0, tag="long")
    counts = effects(rt.settings, rt.redis_prefix)
    assert set(counts) == {f"{w}/{n}" for w in ids for n in "abcd"}
    assert set(counts.values()) == {1}, {k: n for k, n in counts.items() if n > 1}
