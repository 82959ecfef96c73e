"""Issue 11 defect 3: an outage of kflow's own Redis never fails a workflow or spends retries.

The processor's ledger runs on a redis-server of this test's own (the shared one on 6379 is
never stopped); it is killed while many workflows run and started again a few seconds later.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from kflow.bus.admin import create_topics
from kflow.bus.topics import topic_specs
from kflow.core.events import (
    StepFailed,
    StepRetryScheduled,
    StepScheduled,
    WorkflowCompleted,
)
from kflow.observability.health import Health
from kflow.observability.metrics import DEPENDENCY_WAITS
from kflow.processor.registry import registry
from kflow.processor.service import ProcessorConfig, ProcessorService
from kflow.settings import get_settings
from tests.readside.conftest import free_port
from tests.readside.dedicated import DedicatedKafka, DedicatedRedis
from tests.runtime.conftest import Runtime

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.topics(partitions=2, queues=("default",)),
]

WORKFLOWS = 300
OUTAGE_S = 6.0
"""Longer than the default retry budget (attempts after 1 s and 2 s): on a processor that
counts ledger errors as the step's own, workflows fail within it."""
WAIT_S = 60.0  # a guard against hangs, not a speed assertion


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def own_redis() -> Iterator[DedicatedRedis]:
    server = DedicatedRedis(free_port())
    yield server
    server.destroy()


def test_a_redis_outage_delays_steps_but_fails_none(
    runtime_factory: Runtime, own_redis: DedicatedRedis
) -> None:
    rt = runtime_factory
    rt.start_orchestrator()
    health = Health("processor")
    processor = ProcessorService(
        ProcessorConfig(
            bootstrap=rt.settings.kafka_bootstrap,
            topic_prefix=rt.prefix,
            queue="default",
            redis_url=own_redis.url,
            concurrency=8,
            redis_key_prefix=f"outage-{uuid.uuid4().hex[:6]}",
        ),
        registry,
        health=health,
    )
    thread = threading.Thread(target=processor.run, name="processor-outage", daemon=True)
    thread.start()
    rt.processors.append((processor, thread))
    step = {"type": "echo", "queue": "default", "input": {"n": "$input.n"}}
    rt.apply(
        {
            "name": "outage-chain",
            "nodes": [
                {"id": "a", **step},
                {"id": "b", **step, "depends_on": ["a"]},
                {"id": "c", **step, "depends_on": ["b"]},
            ],
        }
    )
    eventually(lambda: health.ready, "the processor to be ready")
    waits = DEPENDENCY_WAITS.labels("processor", "redis")
    waits_before = waits._value.get()
    ids = [rt.start("outage-chain", {"n": i}) for i in range(WORKFLOWS)]

    def completed() -> int:
        rt._read()
        return sum(any(isinstance(e, WorkflowCompleted) for e in rt.events.get(w, [])) for w in ids)

    eventually(lambda: completed() > 0, "the first workflows to complete")
    own_redis.stop()
    assert completed() < WORKFLOWS, "all workflows ended before the outage: start more"
    eventually(lambda: not health.ready, "readiness to turn false during the outage")
    assert health.status()["checks"]["redis"] != "ok", health.status()
    time.sleep(OUTAGE_S)  # the outage lasts; this is not an assertion on speed
    assert thread.is_alive(), "the processor stopped during the outage"
    own_redis.start()

    finals = rt.wait_final(ids)
    eventually(lambda: health.ready, "readiness to come back after the outage")
    not_completed = {
        w: type(ev[-1]).__name__
        for w, ev in finals.items()
        if not any(isinstance(e, WorkflowCompleted) for e in ev)
    }
    assert not not_completed, (
        f"{len(not_completed)} workflows did not complete, e.g. {sorted(not_completed.items())[:3]}"
    )
    spent = [
        (w, type(e).__name__, e.step_key, e.attempt)
        for w, ev in finals.items()
        for e in ev
        if isinstance(e, StepRetryScheduled | StepFailed)
        or (isinstance(e, StepScheduled) and e.attempt != 1)
    ]
    assert not spent, f"the outage spent retry budget: {spent[:5]} ({len(spent)} in all)"
    assert waits._value.get() > waits_before, "the outage is not counted in the wait metric"


def test_a_processor_is_not_ready_while_no_broker_answers(
    topic_prefix: str, private_kafka: DedicatedKafka
) -> None:
    """A broker of its own, stopped and started: readiness names kafka, then recovers."""
    broker = private_kafka
    create_topics(broker.bootstrap, topic_specs(topic_prefix, 1, ("default",)))
    health = Health("processor")
    processor = ProcessorService(
        ProcessorConfig(
            bootstrap=broker.bootstrap,
            topic_prefix=topic_prefix,
            queue="default",
            redis_url=get_settings().redis_url,
            redis_key_prefix=f"kafka-outage-{uuid.uuid4().hex[:6]}",
        ),
        registry,
        health=health,
    )
    thread = threading.Thread(target=processor.run, name="processor-kafka", daemon=True)
    thread.start()
    try:
        eventually(lambda: health.ready, "the processor to be ready")
        broker.stop()
        eventually(lambda: not health.ready, "readiness to turn false without a broker")
        assert health.status()["checks"]["kafka"] != "ok", health.status()
        assert health.alive and thread.is_alive()
        broker.start()
        eventually(lambda: health.ready, "readiness to come back with the broker")
    finally:
        processor.stop()
        thread.join(30)
