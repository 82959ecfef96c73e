"""Event logs made by driving the real core (``decide`` + ``evolve``) and encoded with the codec.

Tests and ``bench/readside_bench.py`` produce these to ``{p}.events`` instead of
running an orchestrator: the bytes are exactly what the orchestrator writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from kflow.bus.contracts import encode_event
from kflow.bus.envelope import envelope_meta
from kflow.core.definition import NodeSpec, RetryPolicy, WorkflowDefinition
from kflow.core.errors import ErrorClass
from kflow.core.events import Event, StepScheduled
from kflow.core.fold import evolve_all
from kflow.core.inputs import StartWorkflow, StepError, StepResult
from kflow.core.machine import decide
from kflow.core.state import WorkflowState, is_terminal

PIPELINE = WorkflowDefinition(
    name="readside-pipeline",
    version=1,
    nodes=(
        NodeSpec(id="fetch", type="echo"),
        NodeSpec(id="parse", type="echo", depends_on=("fetch",), retry=RetryPolicy(max_attempts=2)),
        NodeSpec(id="store", type="echo", depends_on=("parse",), retry=RetryPolicy(max_attempts=1)),
    ),
)
_EVENT_NS = uuid.UUID("1b7d3f8e-52f1-4a55-8a9b-0c7e6a2d9f10")


@dataclass(frozen=True)
class WorkflowLog:
    """One workflow's events and the tenant/actor its envelopes carry."""

    workflow_id: str
    tenant: str
    actor: str
    events: list[Event]


def run_workflow(
    workflow_id: str,
    t0: int,
    *,
    tenant: str = "default",
    actor: str = "test",
    outcome: str = "completed",
    definition: WorkflowDefinition = PIPELINE,
) -> WorkflowLog:
    """Drive one workflow through the core to its end; ``outcome`` ``failed`` fails ``store``."""
    now = t0
    start = StartWorkflow(
        workflow_id=workflow_id,
        name=definition.name,
        version=definition.version,
        input={"n": workflow_id},
        definition=definition,
        tenant=tenant,
        actor=actor,
    )
    events = decide(None, start, now)
    state: WorkflowState | None = evolve_all(None, events)
    log = list(events)
    while state is not None and not is_terminal(state):
        todo = [
            e for e in log if isinstance(e, StepScheduled) and e.kind == "task"
            and state.steps[e.step_key].status == "running"
            and state.steps[e.step_key].attempt == e.attempt
        ]  # fmt: skip
        if not todo:
            raise AssertionError(f"{workflow_id} is stuck in {state.status}")
        task = todo[0]
        now += 7
        result: StepResult | StepError
        if outcome == "failed" and task.node_id == "store":
            result = StepError(
                workflow_id=workflow_id, step_key=task.step_key, attempt=task.attempt,
                error_class=ErrorClass.PERMANENT, error_type="Boom", message="store refused",
            )  # fmt: skip
        else:
            result = StepResult(
                workflow_id=workflow_id, step_key=task.step_key, attempt=task.attempt,
                output={"node": task.node_id, "at": now},
            )  # fmt: skip
        new = decide(state, result, now)
        state = evolve_all(state, new)
        log.extend(new)
    return WorkflowLog(workflow_id, tenant, actor, log)


def wide_definition(steps: int, levels: int = 20) -> WorkflowDefinition:
    """``steps`` echo nodes in ``levels`` levels, each joining two nodes of the level before."""
    width = max(1, steps // levels)
    nodes = []
    for i in range(steps):
        level, col = divmod(i, width)
        deps = () if level == 0 else tuple(
            sorted({f"n{(level - 1) * width + col}", f"n{(level - 1) * width + (col + 1) % width}"})
        )  # fmt: skip
        nodes.append(NodeSpec(id=f"n{i}", type="echo", depends_on=deps))
    return WorkflowDefinition(name="bench-wide", version=1, nodes=tuple(nodes))


def project(dsn: str, schema: str, wlog: WorkflowLog, topic: str = "b.events") -> int:
    """Fold ``wlog`` straight into the read model with the projector's own ``apply``
    (no Kafka); returns the number of events."""
    from kflow.projections.log_event import LogEvent
    from kflow.projections.postgres import PostgresProjector

    events = [
        LogEvent(topic, 0, n, e, f"id-{n}", wlog.tenant, wlog.actor, 0)
        for n, e in enumerate(wlog.events)
    ]
    sink = PostgresProjector(dsn, schema)
    try:
        for i in range(0, len(events), 5_000):
            sink.apply(events[i : i + 5_000])
    finally:
        sink.close()
    return len(events)


def encode(wlog: WorkflowLog, event: Event) -> bytes:
    """Envelope bytes of one event, with a deterministic event id."""
    meta = envelope_meta(
        event,
        event_id=str(
            uuid.uuid5(_EVENT_NS, f"{event.workflow_id}/{event.seq}/{type(event).__name__}")
        ),
        tenant=wlog.tenant,
        actor=wlog.actor,
        correlation_id=wlog.workflow_id,
    )
    return encode_event(event, meta)


def interleave(logs: Sequence[WorkflowLog]) -> Iterator[tuple[str, bytes]]:
    """(key, value) records with the workflows' events interleaved round-robin."""
    cursors = [0] * len(logs)
    remaining = sum(len(w.events) for w in logs)
    while remaining:
        for i, w in enumerate(logs):
            if cursors[i] < len(w.events):
                yield w.workflow_id, encode(w, w.events[cursors[i]])
                cursors[i] += 1
                remaining -= 1


def make_logs(
    prefix: str, count: int, t0: int = 1_800_000_000_000, tenant: str = "default"
) -> list[WorkflowLog]:
    """``count`` workflows: most complete, every 7th fails."""
    return [
        run_workflow(
            f"{prefix}-{i:06d}",
            t0 + i * 1000,
            tenant=tenant,
            outcome="failed" if i % 7 == 3 else "completed",
        )
        for i in range(count)
    ]
