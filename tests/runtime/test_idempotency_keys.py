"""The envelope's idempotency_key is honoured for every command kind on the real stack
(issue 11, defect 10; ADR 0018): a command repeating an applied one's key is answered with a
``duplicate_command`` notice and changes nothing, also after an orchestrator restart."""

from __future__ import annotations

import time
from typing import Any

import pytest

import kflow
from kflow.bus.commands import CommandPublisher
from kflow.bus.credentials import command_signer
from kflow.bus.envelope import envelope_meta
from kflow.core.events import Event, InputRejected, WorkflowPaused, WorkflowSignalled
from kflow.core.inputs import Input, PauseWorkflow, ResumeWorkflow, SignalWorkflow
from tests.runtime.conftest import WAIT_S, Runtime, types_of

pytestmark = pytest.mark.integration

GATED = {
    "name": "gated",
    "nodes": [
        {"id": "a", "type": "echo", "queue": "default"},
        {"id": "gate", "type": "approval", "depends_on": ["a"]},
    ],
}


def _publish(runtime: Runtime, command: Input, key: str) -> None:
    with_key = envelope_meta(command, actor="raw-producer", idempotency_key=key)
    publisher = CommandPublisher(
        runtime.settings.kafka_bootstrap,
        runtime.prefix,
        timeout_s=30,
        component="test",
        signer=command_signer(runtime.settings),
    )
    try:
        publisher.publish(command, with_key)
    finally:
        publisher.close()


def _notices(events: list[Event], code: str) -> list[InputRejected]:
    return [e for e in events if isinstance(e, InputRejected) and e.code == code]


def _wait_count(runtime: Runtime, wid: str, code: str, count: int) -> list[Event]:
    deadline = time.monotonic() + WAIT_S  # a hang guard, not a speed assertion
    while True:
        events = runtime.wait_for(wid, "WorkflowStarted")
        if len(_notices(events, code)) >= count:
            return events
        assert time.monotonic() < deadline, f"no {count}x {code}: {types_of(events)}"
        time.sleep(0.1)


def test_repeated_keyed_commands_are_applied_once_even_after_a_restart(runtime: Runtime) -> None:
    runtime.apply(GATED)
    wid = runtime.start("gated")
    runtime.wait_for(wid, "StepScheduled")
    pause = PauseWorkflow(workflow_id=wid, reason="vendor")
    _publish(runtime, pause, "pause-1")
    runtime.wait_for(wid, "WorkflowPaused")
    _publish(runtime, ResumeWorkflow(workflow_id=wid), "resume-1")
    runtime.wait_for(wid, "WorkflowResumed")
    _publish(runtime, pause, "pause-1")  # a producer's retry of the first pause
    events = _wait_count(runtime, wid, "duplicate_command", 1)
    assert sum(isinstance(e, WorkflowPaused) for e in events) == 1
    assert "already applied at seq" in _notices(events, "duplicate_command")[0].reason

    # the keys live in the workflow's state: a restarted orchestrator restores them
    orchestrator, thread = runtime.orchestrators.pop()
    orchestrator.stop()
    thread.join(30)
    runtime.start_orchestrator()
    _publish(runtime, pause, "pause-1")
    events = _wait_count(runtime, wid, "duplicate_command", 2)
    assert sum(isinstance(e, WorkflowPaused) for e in events) == 1

    signal: dict[str, Any] = {"approved": True, "by": "ops"}
    _publish(runtime, SignalWorkflow(workflow_id=wid, name="gate", payload=signal), "sig-1")
    runtime.wait_final([wid])
    with kflow.Client(runtime.settings, actor="test") as client:
        answer = client.get_handle(wid).signal("gate", signal, wait=WAIT_S, idempotency_key="sig-1")
        assert isinstance(answer, InputRejected) and answer.code == "duplicate_command"
        with pytest.raises(kflow.CommandRejected, match="workflow_finished"):
            client.get_handle(wid).signal("gate", signal, wait=WAIT_S, idempotency_key="sig-2")
    events = runtime.wait_for(wid, "WorkflowCompleted")
    assert sum(isinstance(e, WorkflowSignalled) for e in events) == 1
