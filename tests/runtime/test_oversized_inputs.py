"""Oversized inputs never stop a partition (issue 11 defect 1, ADR 0027).

Oversized records for unknown workflows go to every partition, so each workflow that
must keep going shares a partition with one. Inputs are written as another producer
could write them: up to the topics' 4 MiB limit.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka.admin import ConfigEntry, ConfigResource, ConfigSource, ResourceType

from kflow.bus.admin import admin_client, create_topics, delete_topics, topic_config
from kflow.bus.clients import make_producer
from kflow.bus.codec import AvroCodec
from kflow.bus.contracts import EnvelopeMeta, encode_input
from kflow.bus.credentials import command_signer
from kflow.bus.dead_letter import DeadLetter, decode_dead_letter
from kflow.bus.layout import TopicLayoutError, check_layout
from kflow.bus.topics import MAX_RECORD_BYTES, TopicSpec, topic_names
from kflow.core.events import InputRejected, StepFailed
from kflow.core.inputs import CancelWorkflow, Input, SignalWorkflow, StepHeartbeat, StepResult
from kflow.processor.registry import node
from tests.kafka_helpers import consume_all
from tests.runtime.conftest import TEST_QUEUES, Runtime, types_of

PARTITIONS = 2
pytestmark = [
    pytest.mark.integration,
    pytest.mark.topics(partitions=PARTITIONS, queues=TEST_QUEUES),
]

BIG = 3 * 1024 * 1024
"""Over the producer's old 2 MB limit and the 1 MB payload limit, under the topics' 4 MiB."""


@node("test.huge_output")
def huge_output(value: Any) -> dict[str, str]:
    """Returns three megabytes of JSON."""
    return {"blob": "x" * BIG}


def _chain(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "nodes": [
            {"id": "a", "type": "echo", "queue": "default", "input": {"n": 1}},
            {"id": "b", "type": "echo", "queue": "default", "depends_on": ["a"]},
        ],
    }


GATED = {
    "name": "gated",
    "nodes": [
        {"id": "gate", "type": "approval"},
        {"id": "after", "type": "echo", "queue": "default", "depends_on": ["gate"]},
    ],
}


def _send_raw(runtime: Runtime, topic: str, inputs: list[Input], partition: int = -1) -> None:
    """Write envelopes as any producer allowed by the topic limit could (no kflow checks),
    signed with the session's key."""
    signer = command_signer(runtime.settings)
    assert signer is not None
    producer = make_producer(
        runtime.settings.kafka_bootstrap, overrides={"message.max.bytes": MAX_RECORD_BYTES}
    )
    errors: list[str] = []
    for value in inputs:
        meta = EnvelopeMeta(event_id=str(uuid.uuid4()), occurred_at=1, actor="test")
        encoded = encode_input(value, meta)
        producer.produce(
            topic,
            encoded,
            value.workflow_id,
            headers=list(signer.headers(value.workflow_id, encoded).items()),
            partition=partition,
            on_delivery=lambda err, _m: errors.append(err.str()) if err else None,
        )
    assert producer.flush(30) == 0 and not errors, errors


def _letters(runtime: Runtime, count: int) -> list[DeadLetter]:
    names = topic_names(runtime.prefix)
    records = consume_all(runtime.settings.kafka_bootstrap, names.dlq, min_records=count)
    return [decode_dead_letter(bytes(m.value() or b""), AvroCodec()) for m in records]


def _aborts(runtime: Runtime) -> int:
    return sum(service.loop.stats.aborts for service, _ in runtime.orchestrators)


def test_an_oversized_result_for_an_unknown_workflow_gets_a_small_notice(
    runtime: Runtime,
) -> None:
    runtime.apply(_chain("chain"))
    ghosts = _send_ghosts(runtime)
    live = [runtime.start("chain") for _ in range(4)]  # behind them on their partitions
    finals = runtime.wait_final(live)
    assert {types_of(e)[-1] for e in finals.values()} == {"WorkflowCompleted"}

    for ghost in ghosts:
        (notice,) = runtime.wait_for(ghost, "InputRejected")
        assert isinstance(notice, InputRejected) and notice.code == "unknown_workflow"
        assert notice.cause is not None
        assert notice.cause["output"] is None and notice.cause["elided"] == ["output"]
        assert notice.cause["sizes"]["output"] > BIG  # the summary says what was left out
        assert notice.cause["step_key"] == f"{ghost}/a"
    assert _aborts(runtime) == 0  # no batch failed


def _send_ghosts(runtime: Runtime) -> list[str]:
    """A 3 MB StepResult of an unknown workflow on each results partition; their ids."""
    ghosts = []
    for partition in range(PARTITIONS):
        ghost = f"ghost-{uuid.uuid4().hex[:8]}"
        big = StepResult(workflow_id=ghost, step_key=f"{ghost}/a", attempt=1, output="y" * BIG)
        _send_raw(runtime, topic_names(runtime.prefix).results, [big], partition)
        ghosts.append(ghost)
    return ghosts


def test_oversized_inputs_for_a_live_workflow_are_refused_and_it_carries_on(
    runtime: Runtime,
) -> None:
    runtime.apply(GATED)
    names = topic_names(runtime.prefix)
    wid = runtime.start("gated")
    runtime.wait_for(wid, "StepScheduled")
    blob = "z" * BIG
    _send_raw(
        runtime,
        names.results,
        [
            StepResult(workflow_id=wid, step_key=f"{wid}/nope", attempt=1, output={"b": blob}),
            StepHeartbeat(workflow_id=wid, step_key=f"{wid}/gate", attempt=1, details=blob),
        ],
    )
    _send_raw(
        runtime,
        names.commands,
        [
            SignalWorkflow(workflow_id=wid, name="gate", payload={"approved": True, "b": blob}),
            CancelWorkflow(workflow_id=wid, reason=blob),  # its event would be 3 MB
        ],
    )
    runtime.send(SignalWorkflow(workflow_id=wid, name="gate", payload={"approved": True}))
    events = runtime.wait_final([wid])[wid]
    assert types_of(events)[-1] == "WorkflowCompleted"  # the oversized cancel did nothing

    notices = {n.input_type: n for n in events if isinstance(n, InputRejected)}
    assert {t: n.code for t, n in notices.items()} == {
        "StepResult": "unknown_step",
        "StepHeartbeat": "not_a_task",
        "SignalWorkflow": "payload_too_large",
        "CancelWorkflow": "output_too_large",  # dead-lettered, and its sender is told
    }
    assert all(n.cause is not None and n.cause.get("elided") for n in notices.values())
    assert "limit is 1000000" in notices["SignalWorkflow"].reason
    assert "see the DLQ" in notices["CancelWorkflow"].reason

    (letter,) = _letters(runtime, 1)
    assert (letter.topic, letter.reason, letter.error_type) == (
        names.commands,
        "output_too_large",
        "RecordTooLarge",
    )
    assert f"record for {names.events} is over the" in letter.message
    assert letter.original_key == wid


def test_a_node_returning_too_large_an_output_fails_its_step_once(runtime: Runtime) -> None:
    retry = {"max_attempts": 3, "initial_delay_ms": 10, "multiplier": 2.0, "jitter": 0.0}
    runtime.apply(
        {
            "name": "huge",
            "nodes": [{"id": "h", "type": "test.huge_output", "queue": "default", "retry": retry}],
        }
    )
    wid = runtime.start("huge")
    events = runtime.wait_final([wid])[wid]
    assert types_of(events)[-1] == "WorkflowFailed"
    (failed,) = [e for e in events if isinstance(e, StepFailed)]
    assert failed.error_type == "PayloadTooLarge"
    assert "returned" in failed.message and "the limit is 1000000" in failed.message
    assert types_of(events).count("StepScheduled") == 1  # permanent: never retried


def test_restart_in_the_middle_keeps_every_workflow_and_one_answer_per_input(
    runtime_factory: Runtime,
) -> None:
    runtime = runtime_factory
    runtime.apply(_chain("chain"))
    runtime.start_processor("default")
    names = topic_names(runtime.prefix)
    before = [runtime.start("chain") for _ in range(5)]
    ghosts = _send_ghosts(runtime)
    _send_raw(runtime, names.commands, [CancelWorkflow(workflow_id=before[0], reason="c" * BIG)])
    after = [runtime.start("chain") for _ in range(5)]

    first = runtime.start_orchestrator()
    runtime.wait_for(before[1], "StepScheduled")
    first.stop()  # mid-way: some inputs done, maybe not the oversized ones
    runtime.orchestrators[0][1].join(30)
    runtime.start_orchestrator()  # same instance id: takes over from the committed offsets

    finals = runtime.wait_final(before + after)
    assert {types_of(e)[-1] for e in finals.values()} == {"WorkflowCompleted"}
    for ghost in ghosts:
        notices = runtime.wait_for(ghost, "InputRejected")
        assert [n.code for n in notices if isinstance(n, InputRejected)] == ["unknown_workflow"]
    letters = _letters(runtime, 1)
    assert [(d.original_key, d.reason) for d in letters] == [(before[0], "output_too_large")]


def test_a_task_topic_made_on_demand_accepts_what_kflow_produces(runtime: Runtime) -> None:
    names = topic_names(runtime.prefix)
    fresh = f"fresh{uuid.uuid4().hex[:6]}"
    runtime.apply({"name": "fresh", "nodes": [{"id": "a", "type": "echo", "queue": fresh}]})
    try:
        wid = runtime.start("fresh")
        runtime.wait_for(wid, "StepScheduled")  # the orchestrator created the task topic
        # Set on the topic itself: a stock broker's default (message.max.bytes) is 1 MB.
        entry = _topic_setting(runtime, names.tasks(fresh), "max.message.bytes")
        assert entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, entry
        assert entry.value == str(MAX_RECORD_BYTES)
    finally:
        delete_topics(runtime.settings.kafka_bootstrap, [names.tasks(fresh)])


def _topic_setting(runtime: Runtime, topic: str, name: str) -> ConfigEntry:
    admin = admin_client(runtime.settings.kafka_bootstrap)
    (future,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
    entries: dict[str, ConfigEntry] = future.result(30)
    return entries[name]


def test_services_refuse_topics_that_accept_less_than_kflow_produces(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    names = topic_names(topic_prefix)
    shrunk = TopicSpec(names.events, PARTITIONS, {"max.message.bytes": "1000000"})
    create_topics(kafka_bootstrap, [shrunk])  # as a topic made by hand could be
    deadline = time.monotonic() + 30  # the broker applies a config change a moment later
    while topic_config(kafka_bootstrap, names.events)["max.message.bytes"] != "1000000":
        assert time.monotonic() < deadline, "the broker never applied max.message.bytes"
        time.sleep(0.1)
    with pytest.raises(TopicLayoutError) as caught:
        check_layout(kafka_bootstrap, topic_prefix, [names.commands, names.events])
    message = str(caught.value)
    assert f"{names.events} has max.message.bytes=" in message
    assert "kflow topics create" in message
