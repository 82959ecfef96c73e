"""A tiny in-memory runner for core tests: decide, record, evolve; plus DAG builders."""

from __future__ import annotations

from typing import Any

from kflow.core import (
    WorkflowDefinition,
    decide,
    decide_and_evolve,
    evolve_all,
    parse_definition,
    pending_timers,
)
from kflow.core.errors import ErrorClass
from kflow.core.events import Event, StepScheduled
from kflow.core.inputs import (
    CancelWorkflow,
    Input,
    PauseWorkflow,
    ResumeWorkflow,
    SignalWorkflow,
    StartWorkflow,
    StepError,
    StepHeartbeat,
    StepResult,
    TimerFired,
)
from kflow.core.state import WorkflowState


def node(node_id: str, *deps: str, type: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type, "depends_on": list(deps), **extra}


def workflow(*nodes: dict[str, Any], name: str = "test", **extra: Any) -> WorkflowDefinition:
    return parse_definition({"name": name, "version": 1, "nodes": list(nodes), **extra})


def diamond() -> WorkflowDefinition:
    return workflow(node("a"), node("b", "a"), node("c", "a"), node("d", "b", "c"))


def chain(length: int) -> WorkflowDefinition:
    nodes = [node("n0")] + [node(f"n{i}", f"n{i - 1}") for i in range(1, length)]
    return workflow(*nodes, name="chain")


def fan_out(width: int) -> WorkflowDefinition:
    leaves = [node(f"l{i:04d}", "root") for i in range(width)]
    return workflow(node("root"), *leaves, node("join", *[n["id"] for n in leaves]), name="fan")


class Driver:
    """Feeds inputs to ``decide`` and folds the events, keeping the whole log."""

    def __init__(self, defn: WorkflowDefinition | None, workflow_id: str = "wf") -> None:
        self.defn = defn
        self.workflow_id = workflow_id
        self.state: WorkflowState | None = None
        self.log: list[Event] = []
        self.now = 1_000

    def send(self, command: Input, now: int | None = None, key: str | None = None) -> list[Event]:
        """``decide`` (with the envelope's idempotency ``key``), checked against the fast path."""
        if now is not None:
            self.now = now
        events = decide(self.state, command, self.now, idempotency_key=key)
        fast_events, fast_state = decide_and_evolve(
            self.state, command, self.now, idempotency_key=key
        )
        self.log.extend(events)
        self.state = evolve_all(self.state, events)
        assert fast_events == events and fast_state == self.state
        return events

    @property
    def s(self) -> WorkflowState:
        assert self.state is not None
        return self.state

    def key(self, local: str) -> str:
        return f"{self.workflow_id}/{local}"

    def start(self, input: Any = None) -> list[Event]:
        assert self.defn is not None
        return self.send(
            StartWorkflow(
                workflow_id=self.workflow_id,
                name=self.defn.name,
                version=self.defn.version,
                input=input,
                definition=self.defn,
            )
        )

    def attempt(self, local: str) -> int:
        return self.s.steps[self.key(local)].attempt

    def ok(self, local: str, output: Any = None, attempt: int | None = None) -> list[Event]:
        return self.send(
            StepResult(
                workflow_id=self.workflow_id,
                step_key=self.key(local),
                attempt=attempt if attempt is not None else self.attempt(local),
                output=output,
            )
        )

    def err(
        self,
        local: str,
        error_class: ErrorClass = ErrorClass.TRANSIENT,
        attempt: int | None = None,
        message: str = "boom",
    ) -> list[Event]:
        return self.send(
            StepError(
                workflow_id=self.workflow_id,
                step_key=self.key(local),
                attempt=attempt if attempt is not None else self.attempt(local),
                error_class=error_class,
                error_type="TestError",
                message=message,
            )
        )

    def beat(self, local: str) -> list[Event]:
        return self.send(
            StepHeartbeat(
                workflow_id=self.workflow_id, step_key=self.key(local), attempt=self.attempt(local)
            )
        )

    def signal(self, name: str, payload: Any) -> list[Event]:
        return self.send(SignalWorkflow(workflow_id=self.workflow_id, name=name, payload=payload))

    def pause(self) -> list[Event]:
        return self.send(PauseWorkflow(workflow_id=self.workflow_id, reason="ops"))

    def resume(self) -> list[Event]:
        return self.send(ResumeWorkflow(workflow_id=self.workflow_id))

    def cancel(self) -> list[Event]:
        return self.send(CancelWorkflow(workflow_id=self.workflow_id, reason="user"))

    def fire_next(self) -> list[Event]:
        """Advance the clock to the earliest pending timer and fire it."""
        timer = pending_timers(self.s)[0]
        return self.send(
            TimerFired(workflow_id=self.workflow_id, timer_id=timer.timer_id, due_at=timer.due_at),
            now=max(self.now, timer.due_at),
        )

    def status(self, local: str) -> str:
        return self.s.steps[self.key(local)].status

    def running(self) -> list[str]:
        prefix = len(self.workflow_id) + 1
        return sorted(k[prefix:] for k, r in self.s.steps.items() if r.status == "running")


def types(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def scheduled(events: list[Event]) -> list[str]:
    return [e.step_key.split("/", 1)[1] for e in events if isinstance(e, StepScheduled)]
