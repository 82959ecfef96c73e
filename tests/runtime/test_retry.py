"""RetryWorkflow on the real stack: a failed run reopens after a restart (ADR 0082)."""

from __future__ import annotations

import pytest
import redis

from kflow.core.events import InputRejected, StepScheduled, WorkflowRetried
from kflow.core.inputs import RetryWorkflow
from kflow.core.replay import verify
from tests.runtime.conftest import TEST_QUEUES, Runtime, types_of
from tests.runtime.test_duplicate_after_finish import stop_orchestrators

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=2, queues=TEST_QUEUES)]


def definition(rt: Runtime) -> dict[str, object]:
    io = {"redis_prefix": rt.redis_prefix}
    return {
        "name": "fixable",
        "nodes": [
            {"id": "a", "type": "test.count", "queue": "default", "input": io},
            {
                "id": "b",
                "type": "test.fail_until_fixed",
                "queue": "default",
                "depends_on": ["a"],
                "input": io,
            },
            {"id": "c", "type": "test.count", "queue": "default", "depends_on": ["b"], "input": io},
        ],
    }


def test_a_failed_run_is_retried_after_a_restart_without_rerunning_completed_steps(
    runtime_factory: Runtime,
) -> None:
    rt = runtime_factory
    rt.start_orchestrator(finished_capacity=1)
    rt.start_processor("default")
    rt.apply(definition(rt))
    workflow_id = rt.start("fixable")
    other = rt.start("fixable")  # evicts the first finished state (capacity 1)
    rt.wait_final([workflow_id, other])
    assert types_of(rt.events[workflow_id])[-1] == "WorkflowFailed"

    r = redis.Redis.from_url(rt.settings.redis_url)
    r.set(f"{rt.redis_prefix}fixed", 1)
    stop_orchestrators(rt)  # the new instance has nothing in memory: it reads the snapshot
    rt.start_orchestrator(finished_capacity=1)
    rt.send(RetryWorkflow(workflow_id=workflow_id, reason="fixed"))
    events = rt.wait_for(workflow_id, "WorkflowCompleted")

    retried = next(e for e in events if isinstance(e, WorkflowRetried))
    assert (retried.previous_status, retried.reason) == ("failed", "fixed")
    scheduled = [(e.step_key, e.attempt) for e in events if isinstance(e, StepScheduled)]
    key = f"{workflow_id}/"
    assert scheduled == [(key + "a", 1), (key + "b", 1), (key + "b", 2), (key + "c", 1)]
    effects = r.hgetall(f"{rt.redis_prefix}effects")
    assert int(effects[(key + "a").encode()]) == 1  # the completed step did not run again
    assert int(effects[(key + "b").encode()]) == 2
    assert r.hget(f"{rt.redis_prefix}keys", key + "b") == f"{key}b#2".encode()
    assert verify(events) is None  # the log re-derives itself, retry included


def test_a_retry_after_the_window_is_refused_with_the_reason(runtime_factory: Runtime) -> None:
    rt = runtime_factory
    rt.start_orchestrator(retry_window_ms=1)
    rt.start_processor("default")
    rt.apply(definition(rt))
    workflow_id = rt.start("fixable")
    rt.wait_final([workflow_id])
    rt.send(RetryWorkflow(workflow_id=workflow_id))
    events = rt.wait_for(workflow_id, "InputRejected")
    notice = events[-1]
    assert isinstance(notice, InputRejected)
    assert notice.code == "retry_window_passed"
    assert "retry window (1 ms)" in notice.reason
    assert "WorkflowRetried" not in types_of(events)
