"""Workflow state: an immutable value folded from events (see ``kflow.core.fold``).

``steps`` holds one small frozen ``StepRecord`` per step key that has become ready
(nodes still waiting on dependencies have no record, only a counter in
``waiting_deps``). Every collection serializes in sorted order, so
``WorkflowState.from_dict(s.to_dict()) == s`` and the JSON is stable.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kflow.core.graph import Graph, graph_from_dict
from kflow.core.jsondoc import NULL, Json

WorkflowStatus = Literal["running", "paused", "completed", "failed", "cancelled"]
StepStatus = Literal[
    "ready",  # may be scheduled (waits only for pause/review to end)
    "running",  # a task attempt (or a map node's children) is in flight
    "waiting",  # a sleep timer or an approval signal is awaited
    "backoff",  # a retry timer is pending
    "review",  # a human must approve or reject (needs_review / on_failure: pause)
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
]
TERMINAL_WORKFLOW: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
FINISHED_STEP: frozenset[str] = frozenset({"succeeded", "failed", "skipped", "cancelled"})
ACTIVE_STEP: frozenset[str] = frozenset({"ready", "running", "waiting", "backoff", "review"})
MAX_COMMAND_KEYS = 64
"""Idempotency keys of applied commands a workflow remembers (the latest; ADR 0018)."""

CommandKey = tuple[str, str, int]
"""``(idempotency key, input type, seq of the first event it produced)``."""


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step (a node, or one child ``node[i]`` of a ``for_each`` node)."""

    step_key: str
    node_id: str
    index: int | None = None
    status: StepStatus = "ready"
    attempt: int = 1
    kind: str | None = None
    input: Json = NULL
    output: Json = NULL
    error_class: str | None = None
    error_type: str | None = None
    message: str | None = None
    scheduled_at: int | None = None
    finished_at: int | None = None
    heartbeat_at: int | None = None
    timeout_ms: int | None = None
    heartbeat_timeout_ms: int | None = None
    due_at: int | None = None
    """Retry due time (backoff) or sleep end (waiting sleep)."""
    children: int | None = None
    """For a ``for_each`` node: number of children once expanded."""
    children_done: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Dict of the fields (lossless; documents stay ``Json``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepRecord:
        """Inverse of ``to_dict`` (documents may be given as plain data)."""
        record = cls(**data)
        object.__setattr__(record, "input", Json.of(record.input))
        object.__setattr__(record, "output", Json.of(record.output))
        return record


@dataclass(frozen=True, slots=True)
class WorkflowState:
    """Everything ``decide`` needs about one workflow; never mutated."""

    workflow_id: str
    name: str
    version: int
    input: Json
    seed: int
    tenant: str | None
    actor: str | None
    status: WorkflowStatus
    seq: int
    started_at: int
    finished_at: int | None
    steps: Mapping[str, StepRecord]
    waiting_deps: Mapping[str, int]
    """Node id -> dependencies not yet resolved (only nodes with no record yet)."""
    ready: frozenset[str]
    """Step keys in status ``ready``."""
    reviews: frozenset[str]
    """Step keys in status ``review``; while non-empty nothing new is scheduled."""
    unresolved: int
    """Nodes not yet succeeded/skipped/failed-with-continue; 0 means complete."""
    output: Json = NULL
    reason: str = ""
    command_keys: tuple[CommandKey, ...] = ()
    """The last ``MAX_COMMAND_KEYS`` applied commands that carried an idempotency key, oldest
    first: a command repeating one is answered as a duplicate (ADR 0018)."""
    graph: Graph = field(compare=False, repr=False, kw_only=True)

    def applied_key(self, key: str) -> CommandKey | None:
        """The applied command that carried idempotency key ``key``, if remembered."""
        return next((entry for entry in self.command_keys if entry[0] == key), None)

    @property
    def definition_dict(self) -> dict[str, Any]:
        """The definition as JSON (as recorded in ``WorkflowStarted``)."""
        return self.graph.definition_dict

    def to_dict(self) -> dict[str, Any]:
        """Dict with ``"type": "WorkflowState"`` (lossless, sorted; documents stay ``Json``)."""
        return {
            "type": "WorkflowState",
            "workflow_id": self.workflow_id,
            "name": self.name,
            "version": self.version,
            "input": self.input,
            "seed": self.seed,
            "tenant": self.tenant,
            "actor": self.actor,
            "status": self.status,
            "seq": self.seq,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "definition": self.definition_dict,
            "steps": [self.steps[key].to_dict() for key in sorted(self.steps)],
            "waiting_deps": {key: self.waiting_deps[key] for key in sorted(self.waiting_deps)},
            "ready": sorted(self.ready),
            "reviews": sorted(self.reviews),
            "unresolved": self.unresolved,
            "output": self.output,
            "reason": self.reason,
            "command_keys": [list(entry) for entry in self.command_keys],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowState:
        """Inverse of ``to_dict``; raises ``ValueError``/``DefinitionError`` on bad data."""
        if data.get("type") != "WorkflowState":
            raise ValueError(f"type: expected 'WorkflowState', got {data.get('type')!r}")
        steps = {row["step_key"]: StepRecord.from_dict(row) for row in data["steps"]}
        return cls(
            workflow_id=data["workflow_id"],
            name=data["name"],
            version=data["version"],
            input=Json.of(data["input"]),
            seed=data["seed"],
            tenant=data["tenant"],
            actor=data["actor"],
            status=data["status"],
            seq=data["seq"],
            started_at=data["started_at"],
            finished_at=data["finished_at"],
            steps=steps,
            waiting_deps=dict(data["waiting_deps"]),
            ready=frozenset(data["ready"]),
            reviews=frozenset(data["reviews"]),
            unresolved=data["unresolved"],
            output=Json.of(data["output"]),
            reason=data["reason"],
            # snapshots written before ADR 0018 have none
            command_keys=tuple(
                (str(k), str(t), int(q)) for k, t, q in data.get("command_keys", ())
            ),
            graph=graph_from_dict(data["definition"]),
        )


def is_terminal(state: WorkflowState | None) -> bool:
    """True once the workflow completed, failed or was cancelled."""
    return state is not None and state.status in TERMINAL_WORKFLOW


def step_key(workflow_id: str, node_id: str, index: int | None = None) -> str:
    """The stable step key: ``{workflow_id}/{node_id}`` or ``{workflow_id}/{node_id}[{i}]``."""
    base = f"{workflow_id}/{node_id}"
    return base if index is None else f"{base}[{index}]"


def step_sort_key(key: str) -> tuple[str, int]:
    """Sort key of step keys: by node, map children by numeric index (``n[2]`` < ``n[10]``)."""
    if key.endswith("]"):
        base, _, index = key[:-1].rpartition("[")
        return base, int(index)
    return key, -1


def local_key(state: WorkflowState, key: str) -> str:
    """The part of a step key after ``{workflow_id}/`` (the name signals use)."""
    return key[len(state.workflow_id) + 1 :]


TimerKind = Literal["retry", "timeout", "heartbeat", "sleep"]


@dataclass(frozen=True, slots=True, order=True)
class Timer:
    """A deadline the adapter must report back as ``TimerFired(timer_id, due_at)``."""

    due_at: int
    timer_id: str
    """``{kind}:{step_key}#{attempt}``."""


def timer_id(kind: TimerKind, key: str, attempt: int) -> str:
    """Timer ids are stable per (kind, step, attempt)."""
    return f"{kind}:{key}#{attempt}"


def step_timers(record: StepRecord) -> list[Timer]:
    """The timers one step needs right now (none once it finished)."""
    key, attempt = record.step_key, record.attempt
    timers: list[Timer] = []
    if record.status == "backoff" and record.due_at is not None:
        timers.append(Timer(record.due_at, timer_id("retry", key, attempt)))
    elif record.status == "waiting" and record.kind == "sleep" and record.due_at is not None:
        timers.append(Timer(record.due_at, timer_id("sleep", key, attempt)))
    elif record.status == "running" and record.scheduled_at is not None:
        if record.timeout_ms is not None:
            due = record.scheduled_at + record.timeout_ms
            timers.append(Timer(due, timer_id("timeout", key, attempt)))
        if record.heartbeat_timeout_ms is not None:
            since = record.heartbeat_at if record.heartbeat_at is not None else record.scheduled_at
            due = since + record.heartbeat_timeout_ms
            timers.append(Timer(due, timer_id("heartbeat", key, attempt)))
    return timers


def pending_timers(state: WorkflowState) -> list[Timer]:
    """Every timer the workflow waits on, sorted by (due_at, timer_id): rebuild a heap from it."""
    if is_terminal(state):
        return []
    timers: list[Timer] = []
    for record in state.steps.values():
        if record.status in ACTIVE_STEP:
            timers.extend(step_timers(record))
    timers.sort()
    return timers
