"""Crash safety on the real stack: services SIGKILLed and restarted while workflows run."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from kflow.core.events import StepScheduled, StepSucceeded, WorkflowCompleted
from kflow.settings import Settings
from tests.runtime.conftest import Runtime
from tests.runtime.services import ServiceProcesses

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.topics(partitions=4, queues=("default",)),
]


@pytest.fixture
def processes(
    isolated_settings: Settings, redis_prefix: str, tmp_path: Path
) -> Iterator[ServiceProcesses]:
    procs = ServiceProcesses(
        isolated_settings.model_copy(update={"partitions": 4}), redis_prefix, tmp_path
    )
    yield procs
    procs.stop_all()


def chain_definition(redis_prefix: str, work_s: float) -> dict[str, object]:
    step = {
        "type": "test.count",
        "queue": "default",
        "input": {"redis_prefix": redis_prefix, "work_s": work_s},
    }
    return {
        "name": "crashy",
        "nodes": [
            {"id": "a", **step},
            {"id": "b", **step, "depends_on": ["a"]},
            {"id": "c", **step, "depends_on": ["a"]},
            {"id": "d", **step, "depends_on": ["b", "c"]},
        ],
    }


def effects(settings: Settings, redis_prefix: str) -> Counter[str]:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        raw: dict[bytes, bytes] = client.hgetall(f"{redis_prefix}effects")  # type: ignore[assignment]
    finally:
        client.close()
    return Counter({k.decode(): int(v) for k, v in raw.items()})


def check_log(runtime: Runtime, ids: list[str]) -> None:
    """Every workflow completed once, with gapless seq and each step applied once."""
    finals = runtime.wait_final(ids)
    for workflow_id, events in finals.items():
        seqs = [e.seq for e in events if e.seq]
        assert seqs == list(range(1, len(seqs) + 1)), f"{workflow_id}: seq {seqs}"
        assert sum(isinstance(e, WorkflowCompleted) for e in events) == 1, workflow_id
        succeeded = Counter(e.step_key for e in events if isinstance(e, StepSucceeded))
        assert len(succeeded) == 4 and set(succeeded.values()) == {1}, succeeded
        assert all(e.attempt == 1 for e in events if isinstance(e, StepScheduled))


def test_sigkill_orchestrator_and_processor_loses_nothing(
    runtime_factory: Runtime, processes: ServiceProcesses
) -> None:
    rt = runtime_factory
    rt.apply(chain_definition(rt.redis_prefix, work_s=0.01))
    processes.start("orchestrator-0")
    processes.start("processor-0")
    ids = [f"crash-{i:03d}" for i in range(500)]
    rng = random.Random(20261123)
    done = threading.Event()

    def chaos(name: str, kills: int) -> None:
        for _ in range(kills):
            if done.wait(rng.uniform(1.0, 3.0)):
                return
            processes.kill(name)
            processes.start(name)

    killers = [
        threading.Thread(target=chaos, args=("orchestrator-0", 3)),
        threading.Thread(target=chaos, args=("processor-0", 3)),
    ]
    for i, workflow_id in enumerate(ids):
        rt.start("crashy", workflow_id=workflow_id)
        if i == 50:
            for killer in killers:
                killer.start()
    try:
        check_log(rt, ids)
    finally:
        done.set()
        for killer in killers:
            killer.join()
    assert processes.restarts["orchestrator-0"] >= 1 and processes.restarts["processor-0"] >= 1
    counts = effects(rt.settings, rt.redis_prefix)
    step_keys = {f"{w}/{n}" for w in ids for n in "abcd"}
    assert set(counts) == step_keys  # every step's side effect ran
    repeated = {k: n for k, n in counts.items() if n > 1}
    # A repeat happens only when the processor died while running the step (or before its
    # result reached Kafka); then it ran again with the same key, at most once per kill,
    # at most `concurrency` steps per kill.
    print(f"restarts {processes.restarts}, steps run again after a processor kill: {len(repeated)}")
    assert sum(n - 1 for n in repeated.values()) <= processes.restarts["processor-0"] * 16


def test_two_of_each_share_work_and_survive_one_stopping(
    runtime_factory: Runtime, processes: ServiceProcesses
) -> None:
    rt = runtime_factory
    rt.apply(chain_definition(rt.redis_prefix, work_s=0.005))
    for name in ("orchestrator-0", "orchestrator-1", "processor-0", "processor-1"):
        processes.start(name)
    ids = [f"shared-{i:03d}" for i in range(200)]
    for workflow_id in ids[:100]:
        rt.start("crashy", workflow_id=workflow_id)
    rt.wait_final(ids[:10])
    processes.stop("orchestrator-1")
    processes.stop("processor-1")
    for workflow_id in ids[100:]:
        rt.start("crashy", workflow_id=workflow_id)
    check_log(rt, ids)
    assert set(effects(rt.settings, rt.redis_prefix).values()) == {1}
