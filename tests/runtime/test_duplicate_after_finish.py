"""A StartWorkflow repeated after the workflow finished is answered, never run again (ADR 0032).

The finished state is gone from memory (tiny capacity, then a new orchestrator instance),
so only the durable ``{prefix}.closed`` markers can recognise the duplicate.
"""

from __future__ import annotations

import time

import pytest
import redis

from kflow.core.events import DuplicateStartIgnored
from kflow.core.inputs import StartWorkflow
from kflow.orchestrator.closed import decode_marker
from tests.kafka_helpers import consume_all
from tests.runtime.conftest import TEST_QUEUES, Runtime, types_of

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=2, queues=TEST_QUEUES)]

WORKFLOW_IDS = ["order-1", "order-2", "order-3"]


def stop_orchestrators(rt: Runtime) -> None:
    for service, thread in rt.orchestrators:
        service.stop()
        thread.join(30)
        assert not thread.is_alive()
    rt.orchestrators.clear()


def duplicates(rt: Runtime, workflow_id: str, count: int) -> list[str]:
    """Event types of ``workflow_id`` once ``count`` DuplicateStartIgnored arrived."""
    events = rt.wait_for(workflow_id, "DuplicateStartIgnored")
    while types_of(events).count("DuplicateStartIgnored") < count:
        events = rt.wait_for(workflow_id, "DuplicateStartIgnored")
    return types_of(events)


def test_duplicate_start_after_finish_is_ignored_across_capacity_and_restart(
    runtime_factory: Runtime,
) -> None:
    rt = runtime_factory
    rt.start_orchestrator(finished_capacity=1)
    rt.start_processor("default")
    rt.apply(
        {
            "name": "once",
            "nodes": [
                {
                    "id": "only",
                    "type": "test.count",
                    "queue": "default",
                    "input": {"redis_prefix": rt.redis_prefix},
                }
            ],
        }
    )
    for workflow_id in WORKFLOW_IDS:
        rt.start("once", workflow_id=workflow_id)
    rt.wait_final(WORKFLOW_IDS)

    # order-1's finished state was evicted (capacity 1): the closed ids still know it.
    rt.start("once", workflow_id="order-1")
    assert duplicates(rt, "order-1", 1).count("WorkflowStarted") == 1

    # A new orchestrator instance knows nothing in memory; it loads the markers.
    stop_orchestrators(rt)
    restarted = rt.start_orchestrator(finished_capacity=1)
    for workflow_id in WORKFLOW_IDS:
        rt.start("once", workflow_id=workflow_id)
    for workflow_id in WORKFLOW_IDS:
        expected = 2 if workflow_id == "order-1" else 1
        types = duplicates(rt, workflow_id, expected)
        assert types.count("WorkflowStarted") == 1, types
        assert types.count("WorkflowCompleted") == 1, types
        assert types[-1] == "DuplicateStartIgnored"
    assert restarted.handler.stats.closed_restored == len(WORKFLOW_IDS)
    assert all(
        isinstance(e, DuplicateStartIgnored) and e.name == "once"
        for w in WORKFLOW_IDS
        for e in rt.events[w]
        if e.seq == 0
    )

    # No second run: one task per workflow ever, one side effect per step.
    bootstrap, names = rt.settings.kafka_bootstrap, rt.prefix
    tasks = consume_all(bootstrap, f"{names}.tasks.default")
    assert sorted(m.key() or b"" for m in tasks) == [f"{w}/only".encode() for w in WORKFLOW_IDS]
    effects = redis.Redis.from_url(rt.settings.redis_url).hgetall(f"{rt.redis_prefix}effects")
    assert effects == {f"{w}/only".encode(): b"1" for w in WORKFLOW_IDS}

    # One marker per workflow, in the partition of its commands.
    command_partition = {
        (m.key() or b"").decode(): m.partition()
        for m in consume_all(bootstrap, f"{names}.commands")
    }
    markers = consume_all(bootstrap, f"{names}.closed")
    assert len(markers) == len(WORKFLOW_IDS)
    for message in markers:
        workflow_id = (message.key() or b"").decode()
        marker = decode_marker(workflow_id, message.value() or b"")
        assert (marker.status, marker.name, marker.version) == ("completed", "once", 1)
        assert message.partition() == command_partition[workflow_id]


def test_duplicate_start_is_ignored_by_the_new_owner_after_a_rebalance(
    runtime_factory: Runtime,
) -> None:
    rt = runtime_factory
    first = rt.start_orchestrator(finished_capacity=1)
    rt.start_processor("default")
    rt.apply({"name": "echo", "nodes": [{"id": "a", "type": "echo", "queue": "default"}]})
    ids = [f"job-{n}" for n in range(8)]
    for workflow_id in ids:
        rt.start("echo", workflow_id=workflow_id)
    rt.wait_final(ids)
    owners = {
        m.partition() for m in consume_all(rt.settings.kafka_bootstrap, f"{rt.prefix}.closed")
    }
    assert owners == {0, 1}  # the ids above hash to both partitions

    second = rt.start_orchestrator("orchestrator-1", finished_capacity=1)
    deadline = time.monotonic() + 60  # a safety net against hangs, not a speed assertion
    while not (second.loop.assignment() and len(first.loop.assignment()) == 2):
        assert time.monotonic() < deadline, "the group did not rebalance"
        time.sleep(0.05)
    for workflow_id in ids:
        rt.start("echo", workflow_id=workflow_id)
    for workflow_id in ids:
        assert duplicates(rt, workflow_id, 1).count("WorkflowStarted") == 1
    assert second.handler.stats.closed_restored > 0
    tasks = consume_all(rt.settings.kafka_bootstrap, f"{rt.prefix}.tasks.default")
    assert len(tasks) == len(ids)


def test_a_start_for_a_new_id_still_runs_after_restart(runtime_factory: Runtime) -> None:
    rt = runtime_factory
    rt.start_orchestrator(finished_capacity=1)
    rt.start_processor("default")
    rt.apply({"name": "echo", "nodes": [{"id": "a", "type": "echo", "queue": "default"}]})
    rt.wait_final([rt.start("echo", workflow_id="first")])
    stop_orchestrators(rt)
    rt.start_orchestrator(finished_capacity=1)
    rt.send(StartWorkflow(workflow_id="second", name="echo", version=0))
    events = rt.wait_final(["second"])["second"]
    assert types_of(events)[0] == "WorkflowStarted"
    assert types_of(events)[-1] == "WorkflowCompleted"
