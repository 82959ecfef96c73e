"""End-to-end workflows on the real Kafka and Redis: orchestrator and processor threads."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from kflow.bus.codec import AvroCodec
from kflow.bus.contracts import decode
from kflow.bus.dead_letter import decode_dead_letter
from kflow.bus.reader import read_key
from kflow.bus.topics import topic_names
from kflow.core.events import (
    DuplicateStartIgnored,
    Event,
    StepEvent,
    StepScheduled,
    StepSucceeded,
    WorkflowRejected,
    WorkflowStarted,
)
from kflow.core.inputs import (
    CancelWorkflow,
    PauseWorkflow,
    ResumeWorkflow,
    SignalWorkflow,
    StartWorkflow,
)
from kflow.observability.lag import LagRow, consumer_lag
from tests.kafka_helpers import consume_all, produce
from tests.runtime.conftest import TEST_QUEUES, Runtime, types_of

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=2, queues=TEST_QUEUES)]

FAST_RETRY = {"max_attempts": 3, "initial_delay_ms": 10, "multiplier": 2.0, "jitter": 0.0}


def task(node_id: str, type_: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "queue": "default", **extra}


def assert_gapless(events: list[Event]) -> None:
    seqs = [e.seq for e in events if e.seq]
    assert seqs == list(range(1, len(seqs) + 1))


def last(events: list[Event]) -> Event:
    return events[-1]


def test_diamond_runs_branches_after_root_and_join_after_both(runtime: Runtime) -> None:
    runtime.apply(
        {
            "name": "diamond",
            "nodes": [
                task("a", input={"x": "$input.x"}),
                task("b", depends_on=["a"], input={"from_a": "$steps.a.output.x"}),
                task("c", depends_on=["a"], input={"y": 2}),
                task(
                    "d",
                    depends_on=["b", "c"],
                    input={"b": "$steps.b.output", "c": "$steps.c.output"},
                ),
            ],
        }
    )
    wid = runtime.start("diamond", {"x": 7})
    events = runtime.wait_final([wid])[wid]
    assert types_of(events)[-1] == "WorkflowCompleted"
    assert_gapless(events)
    done = [e.step_key.rsplit("/", 1)[1] for e in events if isinstance(e, StepSucceeded)]
    assert done[0] == "a" and done[-1] == "d" and set(done[1:3]) == {"b", "c"}
    assert last(events).output == {"d": {"b": {"from_a": 7}, "c": {"y": 2}}}  # type: ignore[attr-defined]
    started = events[0]
    assert isinstance(started, WorkflowStarted)  # the verified key, then the envelope's actor
    assert started.actor is not None and started.actor.endswith(":test-session as test")


def test_chain_runs_in_order(runtime: Runtime) -> None:
    nodes = [task("s0", input={"i": 0})]
    nodes += [task(f"s{i}", depends_on=[f"s{i - 1}"], input={"i": i}) for i in range(1, 6)]
    runtime.apply({"name": "chain", "nodes": nodes})
    wid = runtime.start("chain")
    events = runtime.wait_final([wid])[wid]
    assert_gapless(events)
    scheduled = [e.node_id for e in events if isinstance(e, StepScheduled)]
    assert scheduled == [f"s{i}" for i in range(6)]
    assert types_of(events)[-1] == "WorkflowCompleted"


def test_map_runs_one_child_per_item_and_keeps_order(runtime: Runtime) -> None:
    runtime.apply(
        {
            "name": "mapper",
            "nodes": [
                task("each", for_each="$input.items", input={"v": "$item", "i": "$index"}),
                task("total", depends_on=["each"], input={"all": "$steps.each.output"}),
            ],
        }
    )
    wid = runtime.start("mapper", {"items": ["a", "b", "c", "d"]})
    events = runtime.wait_final([wid])[wid]
    assert types_of(events)[-1] == "WorkflowCompleted"
    children = sorted(
        e.step_key for e in events if isinstance(e, StepScheduled) and e.index is not None
    )
    assert children == [f"{wid}/each[{i}]" for i in range(4)]
    assert last(events).output == {  # type: ignore[attr-defined]
        "total": {"all": [{"v": v, "i": i} for i, v in enumerate("abcd")]}
    }


def test_condition_false_skips_the_node(runtime: Runtime) -> None:
    runtime.apply(
        {
            "name": "cond",
            "nodes": [
                task("check", input={"go": "$input.go"}),
                task("maybe", depends_on=["check"], when="$steps.check.output.go"),
                task("always", depends_on=["check"]),
            ],
        }
    )
    skipped, ran = runtime.start("cond", {"go": False}), runtime.start("cond", {"go": True})
    finals = runtime.wait_final([skipped, ran])
    assert "StepSkipped" in types_of(finals[skipped])
    assert "StepSkipped" not in types_of(finals[ran])
    assert types_of(finals[skipped])[-1] == types_of(finals[ran])[-1] == "WorkflowCompleted"


def test_transient_failures_are_retried_until_success(runtime: Runtime) -> None:
    runtime.apply(
        {
            "name": "retry",
            "nodes": [task("f", "flaky", input={"fail_attempts": 2}, retry=FAST_RETRY)],
        }
    )
    wid = runtime.start("retry")
    events = runtime.wait_final([wid])[wid]
    assert types_of(events).count("StepRetryScheduled") == 2
    assert types_of(events)[-1] == "WorkflowCompleted"
    assert last(events).output == {"f": {"attempt": 3}}  # type: ignore[attr-defined]
    attempts = [e.attempt for e in events if isinstance(e, StepScheduled)]
    assert attempts == [1, 2, 3]


def test_exhausted_retries_fail_the_workflow(runtime: Runtime) -> None:
    runtime.apply(
        {
            "name": "hopeless",
            "nodes": [task("f", "flaky", input={"fail_attempts": 9}, retry=FAST_RETRY)],
        }
    )
    wid = runtime.start("hopeless")
    events = runtime.wait_final([wid])[wid]
    assert types_of(events).count("StepScheduled") == 3
    assert types_of(events)[-2:] == ["StepFailed", "WorkflowFailed"]


def test_permanent_error_fails_at_once(runtime: Runtime) -> None:
    runtime.apply(
        {
            "name": "perm",
            "nodes": [
                task("bad", "test.fail", input={"message": "no such invoice"}, retry=FAST_RETRY),
                task("after", depends_on=["bad"]),
            ],
        }
    )
    wid = runtime.start("perm")
    events = runtime.wait_final([wid])[wid]
    failed = [e for e in events if type(e).__name__ == "StepFailed"]
    assert len(failed) == 1 and failed[0].attempt == 1  # type: ignore[attr-defined]
    assert failed[0].error_class == "permanent"  # type: ignore[attr-defined]
    assert "no such invoice" in failed[0].message  # type: ignore[attr-defined]
    assert types_of(events)[-1] == "WorkflowFailed"
    assert not any(isinstance(e, StepScheduled) and e.node_id == "after" for e in events)


def test_pause_holds_new_steps_until_resume(runtime: Runtime) -> None:
    runtime.apply(
        {
            "name": "pausable",
            "nodes": [
                task("slow", "delay", input={"seconds": 0.5}),
                task("next", depends_on=["slow"]),
            ],
        }
    )
    wid = runtime.start("pausable")
    runtime.wait_for(wid, "StepScheduled")
    runtime.send(PauseWorkflow(workflow_id=wid, reason="test"))
    runtime.wait_for(wid, "WorkflowPaused")
    events = runtime.wait_for(wid, "StepSucceeded")  # the running step still finishes
    assert not any(isinstance(e, StepScheduled) and e.node_id == "next" for e in events)
    runtime.send(ResumeWorkflow(workflow_id=wid))
    events = runtime.wait_final([wid])[wid]
    names = types_of(events)
    resumed = names.index("WorkflowResumed")
    next_at = next(
        i for i, e in enumerate(events) if isinstance(e, StepScheduled) and e.node_id == "next"
    )
    assert next_at > resumed and names[-1] == "WorkflowCompleted"
    assert_gapless(events)


def test_cancel_ends_a_waiting_workflow(runtime: Runtime) -> None:
    runtime.apply(
        {
            "name": "napper",
            "nodes": [
                {"id": "nap", "type": "sleep", "input": {"duration_ms": 600_000}},
                task("never", depends_on=["nap"]),
            ],
        }
    )
    wid = runtime.start("napper")
    runtime.wait_for(wid, "StepScheduled")
    runtime.send(CancelWorkflow(workflow_id=wid, reason="not needed"))
    events = runtime.wait_final([wid])[wid]
    assert types_of(events)[-2:] == ["StepCancelled", "WorkflowCancelled"]
    assert last(events).reason == "not needed"  # type: ignore[attr-defined]


APPROVAL = {
    "name": "approve",
    "nodes": [
        task("prepare", input={"amount": "$input.amount"}),
        {"id": "review", "type": "approval", "depends_on": ["prepare"]},
        task("pay", depends_on=["review"], input={"by": "$steps.review.output.by"}),
    ],
}


def test_approval_approved_by_signal_continues(runtime: Runtime) -> None:
    runtime.apply(APPROVAL)
    wid = runtime.start("approve", {"amount": 10})
    runtime.wait_for(wid, "StepScheduled")
    events = runtime.wait_for(wid, "StepSucceeded")
    runtime.send(
        SignalWorkflow(workflow_id=wid, name="review", payload={"approved": True, "by": "ana"})
    )
    events = runtime.wait_final([wid])[wid]
    assert "WorkflowSignalled" in types_of(events)
    assert last(events).output == {"pay": {"by": "ana"}}  # type: ignore[attr-defined]


def test_approval_rejected_by_signal_fails(runtime: Runtime) -> None:
    runtime.apply(APPROVAL)
    wid = runtime.start("approve", {"amount": 10})
    runtime.wait_for(wid, "StepSucceeded")
    runtime.send(
        SignalWorkflow(
            workflow_id=wid, name="review", payload={"approved": False, "comment": "too much"}
        )
    )
    events = runtime.wait_final([wid])[wid]
    assert types_of(events)[-1] == "WorkflowFailed"
    assert "too much" in last(events).reason  # type: ignore[attr-defined]


def test_needs_review_waits_for_a_signal_with_output(runtime: Runtime) -> None:
    runtime.apply({"name": "reviewed", "nodes": [task("check", "test.review")]})
    wid = runtime.start("reviewed")
    runtime.wait_for(wid, "StepAwaitingReview")
    runtime.send(
        SignalWorkflow(
            workflow_id=wid, name="check", payload={"approved": True, "output": {"ok": 1}}
        )
    )
    events = runtime.wait_final([wid])[wid]
    assert last(events).output == {"check": {"ok": 1}}  # type: ignore[attr-defined]


def test_duplicate_start_is_answered_not_run_twice(runtime: Runtime) -> None:
    runtime.apply(
        {
            "name": "once",
            "nodes": [task("only", "test.count", input={"redis_prefix": runtime.redis_prefix})],
        }
    )
    wid = runtime.start("once", workflow_id="order-42")
    runtime.start("once", workflow_id="order-42")  # while it may still run
    runtime.wait_final([wid])
    runtime.start("once", workflow_id="order-42")  # after it finished
    events = runtime.wait_for(wid, "DuplicateStartIgnored")
    while types_of(runtime.events[wid]).count("DuplicateStartIgnored") < 2:
        events = runtime.wait_for(wid, "DuplicateStartIgnored")
    assert types_of(events).count("WorkflowStarted") == 1
    assert all(isinstance(e, DuplicateStartIgnored) for e in events if e.seq == 0)
    assert types_of(events).count("WorkflowCompleted") == 1


def test_unknown_workflow_and_invalid_input_are_rejected(runtime: Runtime) -> None:
    runtime.apply(
        {
            "name": "typed",
            "input_schema": {
                "type": "object",
                "required": ["n"],
                "properties": {"n": {"type": "integer"}},
            },
            "nodes": [task("a")],
        }
    )
    unknown = runtime.start("no-such-workflow")
    invalid = runtime.start("typed", {"n": "seven"})
    oversized = f"big-{unknown}"
    runtime.send(
        StartWorkflow(
            workflow_id=oversized, name="typed", version=0, input={"n": 1, "pad": "x" * 1_100_000}
        )
    )
    finals = runtime.wait_final([unknown, invalid, oversized])
    codes = {w: e[-1].code for w, e in finals.items() if isinstance(e[-1], WorkflowRejected)}
    assert codes == {
        unknown: "unknown_definition",
        invalid: "invalid_input",
        oversized: "payload_too_large",
    }
    assert "input['n']" in finals[invalid][-1].reason  # type: ignore[attr-defined]


def test_steps_are_applied_once(runtime: Runtime) -> None:
    runtime.apply(
        {
            "name": "fan",
            "nodes": [
                task(f"n{i}", "test.count", input={"redis_prefix": runtime.redis_prefix})
                for i in range(5)
            ],
        }
    )
    ids = [runtime.start("fan") for _ in range(10)]
    finals = runtime.wait_final(ids)
    for events in finals.values():
        succeeded = [
            e.step_key
            for e in events
            if isinstance(e, StepEvent) and type(e).__name__ == "StepSucceeded"
        ]
        assert len(succeeded) == len(set(succeeded)) == 5


def test_heartbeats_keep_a_long_step_alive(runtime: Runtime) -> None:
    runtime.apply(
        {
            "name": "beating",
            # the first heartbeat must reach the orchestrator within the timeout of the step's
            # scheduling (through two transactions): 2 s leaves room on a loaded machine
            "nodes": [task("long", "delay", input={"seconds": 4.5}, heartbeat_timeout_ms=2000)],
        }
    )
    wid = runtime.start("beating")
    events = runtime.wait_final([wid])[wid]
    assert "StepHeartbeatRecorded" in types_of(events)
    assert "StepTimedOut" not in types_of(events)
    assert types_of(events)[-1] == "WorkflowCompleted"


def test_a_step_past_its_timeout_is_timed_out_and_retried(runtime: Runtime) -> None:
    retry_once = {"max_attempts": 2, "initial_delay_ms": 10, "jitter": 0.0}
    runtime.apply(
        {
            "name": "stuck",
            "nodes": [
                task("hang", "delay", input={"seconds": 3}, timeout_ms=200, retry=retry_once)
            ],
        }
    )
    wid = runtime.start("stuck")
    events = runtime.wait_final([wid])[wid]
    assert types_of(events).count("StepTimedOut") == 2
    assert types_of(events)[-1] == "WorkflowFailed"


def test_running_workflows_keep_their_definition_version(runtime: Runtime) -> None:
    v1 = {
        "name": "versioned",
        "version": 1,
        "nodes": [
            {"id": "gate", "type": "approval"},
            task("v1_step", depends_on=["gate"]),
        ],
    }
    runtime.apply(v1)
    old = runtime.start("versioned")
    runtime.wait_for(old, "StepScheduled")
    runtime.apply({**v1, "version": 2, "nodes": [task("v2_step")]})
    # An explicit version the orchestrator has not seen yet makes it read the registry again.
    new = "versioned-v2"
    runtime.send(StartWorkflow(workflow_id=new, name="versioned", version=2))
    runtime.send(SignalWorkflow(workflow_id=old, name="gate", payload={"approved": True}))
    finals = runtime.wait_final([old, new])
    assert set(last(finals[old]).output.value) == {"v1_step"}  # type: ignore[attr-defined]
    assert set(last(finals[new]).output.value) == {"v2_step"}  # type: ignore[attr-defined]
    started = [e for e in finals[new] if type(e).__name__ == "WorkflowStarted"]
    assert started[0].version == 2  # type: ignore[attr-defined]


def test_poison_task_goes_to_the_dlq_and_the_queue_moves_on(runtime: Runtime) -> None:
    names = topic_names(runtime.prefix)
    produce(runtime.settings.kafka_bootstrap, names.tasks("default"), [(b"k", b"not avro")])
    runtime.apply({"name": "after-poison", "nodes": [task("a")]})
    wid = runtime.start("after-poison")
    assert types_of(runtime.wait_final([wid])[wid])[-1] == "WorkflowCompleted"
    records = consume_all(runtime.settings.kafka_bootstrap, names.dlq, min_records=1)
    letters = [decode_dead_letter(bytes(m.value() or b""), AvroCodec()) for m in records]
    assert [(d.topic, d.reason, d.original_value) for d in letters] == [
        (names.tasks("default"), "not_single_object", b"not avro")
    ]


def test_reading_one_workflows_partition_finds_all_its_events(runtime: Runtime) -> None:
    runtime.apply({"name": "small", "nodes": [task("a"), task("b", depends_on=["a"])]})
    ids = [runtime.start("small") for _ in range(6)]
    finals = runtime.wait_final(ids)
    events_topic = topic_names(runtime.prefix).events
    for workflow_id in ids:
        records = read_key(runtime.settings.kafka_bootstrap, events_topic, workflow_id)
        found = [decode(r.value).body for r in records if r.value]
        assert found == finals[workflow_id]


def committed_behind(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Per partition: records of ``topic`` past the group's committed offset."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 3})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        behind = {}
        for tp in committed:
            high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            behind[tp.partition] = high - max(tp.offset, 0)
        return behind
    finally:
        consumer.close()


def test_processor_offsets_keep_advancing_across_a_rebalance(runtime_factory: Runtime) -> None:
    rt = runtime_factory
    rt.start_orchestrator()
    rt.start_processor("default")
    rt.apply(
        {
            "name": "steps",
            "nodes": [task(f"n{i}", "delay", input={"seconds": 0.05}) for i in range(4)],
        }
    )
    first = [rt.start("steps") for _ in range(20)]
    rt.start_processor("default")  # joins the group: partitions move while tasks run
    second = [rt.start("steps") for _ in range(20)]
    rt.wait_final(first + second)
    group = f"{rt.prefix}.processor.default"
    topic = topic_names(rt.prefix).tasks("default")
    deadline = time.monotonic() + 30
    # The orchestrator writes tasks in transactions: each partition ends with one commit
    # marker that consumers never see, so "done" is at most one offset behind the end.
    while True:
        behind = committed_behind(rt.settings.kafka_bootstrap, group, topic)
        if all(n <= 1 for n in behind.values()):
            break
        assert time.monotonic() < deadline, f"offsets stuck behind the log end: {behind}"
        time.sleep(0.2)


def test_an_idle_processor_group_shows_no_lag_on_the_transactional_tasks_topic(
    runtime: Runtime,
) -> None:
    runtime.apply({"name": "pair", "nodes": [task("a"), task("b", depends_on=["a"])]})
    runtime.wait_final([runtime.start("pair") for _ in range(6)])
    group = f"{runtime.prefix}.processor.default"
    prefix_groups = runtime.prefix

    def tasks_lag() -> list[LagRow]:
        rows = consumer_lag(runtime.settings.kafka_bootstrap, prefix_groups)
        return [r for r in rows if r.group == group and r.topic.endswith(".tasks.default")]

    # Every task partition ends with a commit marker no consumer is given: a group that
    # commits "offset + 1 of the last task" shows a lag of 1 there for ever.
    deadline = time.monotonic() + 30
    while not tasks_lag() or any(r.lag for r in tasks_lag()):
        assert time.monotonic() < deadline, f"processor lag stays {tasks_lag()}"
        time.sleep(0.2)
