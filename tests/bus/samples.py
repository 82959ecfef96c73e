"""One realistic instance of every record type the bus carries (shared by tests and bench)."""

from __future__ import annotations

from typing import Any

from kflow.bus.contracts import Body
from kflow.bus.records import ExecuteStep
from kflow.core import events as ev
from kflow.core import inputs as inp
from kflow.core.definition import parse_definition
from kflow.core.errors import ErrorClass

WF = "order-42"
STEP = f"{WF}/charge"
DEFINITION = {
    "name": "orders",
    "version": 2,
    "nodes": [{"id": "charge", "type": "echo", "input": {"amount": "$.input.amount"}}],
}
PAYLOAD = {"amount": 12.5, "items": ["a", "b"], "note": "ünïcode ✓", "nested": {"ok": True}}
_STEP: dict[str, Any] = {"workflow_id": WF, "step_key": STEP, "attempt": 2}

SAMPLES: list[Body] = [
    inp.StartWorkflow(
        workflow_id=WF,
        name="orders",
        version=2,
        input=PAYLOAD,
        definition=parse_definition(DEFINITION),
        tenant="acme",
        actor="alice",
    ),
    inp.StartWorkflow(workflow_id=WF, name="orders", version=2),
    inp.CancelWorkflow(workflow_id=WF, reason="customer asked"),
    inp.PauseWorkflow(workflow_id=WF, reason="maintenance"),
    inp.ResumeWorkflow(workflow_id=WF),
    inp.RetryWorkflow(workflow_id=WF, reason="fixed"),
    inp.SignalWorkflow(workflow_id=WF, name="approve", payload={"approved": True}),
    inp.StepResult(**_STEP, output=PAYLOAD),
    inp.StepError(
        **_STEP, error_class=ErrorClass.NEEDS_REVIEW, error_type="Fraud", message="check"
    ),
    inp.StepHeartbeat(**_STEP, details={"progress": 0.5}),
    inp.TimerFired(workflow_id=WF, timer_id="retry:charge#2", due_at=1_700_000_000_000),
    ev.WorkflowStarted(
        workflow_id=WF,
        seq=1,
        at=1_700_000_000_000,
        cause={"type": "StartWorkflow"},
        name="orders",
        version=2,
        input=PAYLOAD,
        definition=DEFINITION,
        seed=123456789,
        tenant="acme",
        actor="alice",
    ),
    ev.WorkflowPaused(workflow_id=WF, seq=2, at=1, reason="ops"),
    ev.WorkflowResumed(workflow_id=WF, seq=3, at=2),
    ev.WorkflowSignalled(workflow_id=WF, seq=4, at=3, name="approve", payload=[1, "x"]),
    ev.WorkflowCompleted(workflow_id=WF, seq=5, at=4, output={"charge": PAYLOAD}),
    ev.WorkflowFailed(workflow_id=WF, seq=5, at=4, reason="charge failed", step_key=STEP),
    ev.WorkflowCancelled(workflow_id=WF, seq=5, at=4, reason="asked"),
    ev.StepScheduled(
        **_STEP,
        seq=6,
        at=5,
        node_id="charge",
        index=3,
        node_type="echo",
        queue="default",
        kind="task",
        input=PAYLOAD,
        timeout_ms=30_000,
        heartbeat_timeout_ms=5_000,
        due_at=None,
    ),
    ev.MapExpanded(**_STEP, seq=7, at=6, node_id="charge", count=2, inputs=[{"a": 1}, None]),
    ev.StepSucceeded(**_STEP, seq=8, at=7, output="plain string output"),
    ev.StepRetryScheduled(
        **_STEP,
        seq=9,
        at=8,
        error_class="transient",
        error_type="Timeout",
        message="slow",
        delay_ms=1000,
        due_at=1008,
    ),
    ev.StepRetryDue(**_STEP, seq=10, at=9),
    ev.StepFailed(**_STEP, seq=11, at=10, error_class="permanent", error_type="Bad", message="no"),
    ev.StepAwaitingReview(
        **_STEP, seq=12, at=11, error_class="needs_review", error_type="Fraud", message="?"
    ),
    ev.StepTimedOut(**_STEP, seq=13, at=12, timeout="heartbeat"),
    ev.StepHeartbeatRecorded(**_STEP, seq=14, at=13, details=None),
    ev.StepSkipped(workflow_id=WF, step_key=STEP, attempt=0, seq=15, at=14, reason="when"),
    ev.StepCancelled(**_STEP, seq=16, at=15, reason="workflow cancelled"),
    ev.WorkflowRetried(workflow_id=WF, seq=17, at=16, reason="fixed", previous_status="failed"),
    ev.StepReopened(**_STEP, seq=18, at=16, status="ready"),
    ev.WorkflowRejected(
        workflow_id=WF, seq=0, at=16, code="unknown_definition", reason="x", name="n", version=1
    ),
    ev.DuplicateStartIgnored(workflow_id=WF, seq=0, at=17, name="orders", version=2),
    ev.InputRejected(
        workflow_id=WF, seq=0, at=18, code="unknown_step", reason="r", input_type="StepResult"
    ),
    ExecuteStep(
        workflow_id=WF,
        step_key=STEP,
        node_id="charge",
        node_type="echo",
        queue="default",
        attempt=2,
        input=PAYLOAD,
        timeout_ms=30_000,
        heartbeat_timeout_ms=0,
        idempotency_key=f"{STEP}#2",
        scheduled_at=1_700_000_000_500,
    ),
]
