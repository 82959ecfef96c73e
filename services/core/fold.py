"""``evolve``: apply events to state. Pure, deterministic, no decisions.

What each event does to its step and workflow comes from ``kflow.core.transitions`` (the
table the read-model rows are folded from too); this module adds the DAG bookkeeping.

A ``StateBuilder`` copies the state's dicts lazily (first write only) and applies
any number of events in place, then freezes a new ``WorkflowState``; ``evolve`` is
one builder per event, ``evolve_all`` one builder per batch (what adapters and
``replay`` use: O(changed parts) per event instead of a state copy per event).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, overload

from kflow.core.definition import OnFailure
from kflow.core.events import (
    DuplicateStartIgnored,
    Event,
    InputRejected,
    MapExpanded,
    StepEvent,
    StepFailed,
    StepScheduled,
    StepSkipped,
    StepSucceeded,
    WorkflowRejected,
    WorkflowStarted,
)
from kflow.core.graph import Graph, graph_from_dict
from kflow.core.jsondoc import Json
from kflow.core.state import (
    MAX_COMMAND_KEYS,
    CommandKey,
    StepRecord,
    WorkflowState,
    WorkflowStatus,
    step_key,
    step_sort_key,
)
from kflow.core.transitions import STARTED, WORKFLOW_RULES, replaced, step_changes


class StateBuilder:
    """A mutable working copy of one workflow's state (copy-on-first-write per dict)."""

    def __init__(self, state: WorkflowState) -> None:
        self._base = state
        self.graph: Graph = state.graph
        self.status: WorkflowStatus = state.status
        self.seq = state.seq
        self.finished_at = state.finished_at
        self.unresolved = state.unresolved
        self.output: Json = state.output
        self.reason = state.reason
        self.command_keys: tuple[CommandKey, ...] = state.command_keys
        self._steps: dict[str, StepRecord] | None = None
        self._waiting: dict[str, int] | None = None
        self._ready: set[str] | None = None
        self._reviews: set[str] | None = None

    # -- reads ------------------------------------------------------------------------
    @property
    def workflow_id(self) -> str:
        """The workflow this builder belongs to."""
        return self._base.workflow_id

    @property
    def base(self) -> WorkflowState:
        """The state the builder started from (immutable fields are read from it)."""
        return self._base

    def step(self, key: str) -> StepRecord | None:
        """The current record of a step key, if any."""
        steps = self._steps if self._steps is not None else self._base.steps
        return steps.get(key)

    def steps_view(self) -> Mapping[str, StepRecord]:
        """All current records (read-only use)."""
        return self._steps if self._steps is not None else self._base.steps

    def ready_keys(self) -> list[str]:
        """Step keys ready to schedule, sorted (map children by index)."""
        ready = self._ready if self._ready is not None else self._base.ready
        return sorted(ready, key=step_sort_key)

    def has_reviews(self) -> bool:
        """True while any step awaits a review signal."""
        reviews = self._reviews if self._reviews is not None else self._base.reviews
        return bool(reviews)

    # -- copy-on-write handles ------------------------------------------------------
    def _w_steps(self) -> dict[str, StepRecord]:
        if self._steps is None:
            self._steps = dict(self._base.steps)
        return self._steps

    def _w_waiting(self) -> dict[str, int]:
        if self._waiting is None:
            self._waiting = dict(self._base.waiting_deps)
        return self._waiting

    def _w_ready(self) -> set[str]:
        if self._ready is None:
            self._ready = set(self._base.ready)
        return self._ready

    def _w_reviews(self) -> set[str]:
        if self._reviews is None:
            self._reviews = set(self._base.reviews)
        return self._reviews

    def _put(self, record: StepRecord) -> None:
        self._w_steps()[record.step_key] = record
        ready_has = record.step_key in (
            self._ready if self._ready is not None else self._base.ready
        )
        if record.status == "ready" and not ready_has:
            self._w_ready().add(record.step_key)
        elif record.status != "ready" and ready_has:
            self._w_ready().discard(record.step_key)
        reviews = self._reviews if self._reviews is not None else self._base.reviews
        if record.status == "review" and record.step_key not in reviews:
            self._w_reviews().add(record.step_key)
        elif record.status != "review" and record.step_key in reviews:
            self._w_reviews().discard(record.step_key)

    def _update(self, key: str, changes: Mapping[str, Any]) -> StepRecord:
        current = self.step(key)
        if current is None:
            raise ValueError(f"event refers to unknown step {key!r}")
        record = replaced(current, changes)
        self._put(record)
        return record

    def _resolve_node(self, node_id: str) -> None:
        self.unresolved -= 1
        waiting = self._w_waiting()
        for child in self.graph.dependents[node_id]:
            left = waiting[child] - 1
            if left:
                waiting[child] = left
            else:
                del waiting[child]
                key = step_key(self.workflow_id, child)
                self._put(StepRecord(step_key=key, node_id=child))

    # -- apply ------------------------------------------------------------------------
    def apply(self, event: Event) -> None:
        """Apply one state-changing event (notices are ignored)."""
        if isinstance(event, WorkflowRejected | DuplicateStartIgnored | InputRejected):
            return
        if event.workflow_id != self.workflow_id:
            raise ValueError(
                f"event for workflow {event.workflow_id!r} applied to {self.workflow_id!r}"
            )
        if event.seq != self.seq + 1:
            raise ValueError(f"event seq {event.seq} does not follow {self.seq} (gapless)")
        self.seq = event.seq
        if event.cause is not None:
            self.command_keys = remember_key(self.command_keys, event)
        if isinstance(event, StepEvent):
            self._apply_step(event)
            return
        rule = WORKFLOW_RULES.get(type(event))
        if rule is None:
            raise ValueError(f"cannot apply {type(event).__name__} to an existing workflow")
        changes = rule(event)
        if "status" in changes:
            self.status = changes["status"]
        if "reason" in changes:
            self.reason = changes["reason"]
        if "output" in changes:
            self.output = changes["output"]
        if "finished_at" in changes:
            self.finished_at = changes["finished_at"]

    def _apply_step(self, event: StepEvent) -> None:
        changes = step_changes(event)
        current = self.step(event.step_key)
        if current is None:  # only a StepScheduled may create a record (a map child)
            if not isinstance(event, StepScheduled):
                raise ValueError(f"event refers to unknown step {event.step_key!r}")
            current = StepRecord(step_key=event.step_key, node_id=event.node_id, index=event.index)
        record = replaced(current, changes)
        self._put(record)
        follow_up = _FOLLOW_UPS.get(type(event))
        if follow_up is not None:
            follow_up(self, event, record)

    def freeze(self) -> WorkflowState:
        """The new immutable state (shares unchanged dicts with the old one)."""
        base = self._base
        return WorkflowState(
            workflow_id=base.workflow_id,
            name=base.name,
            version=base.version,
            input=base.input,
            seed=base.seed,
            tenant=base.tenant,
            actor=base.actor,
            status=self.status,
            seq=self.seq,
            started_at=base.started_at,
            finished_at=self.finished_at,
            steps=self._steps if self._steps is not None else base.steps,
            waiting_deps=self._waiting if self._waiting is not None else base.waiting_deps,
            ready=frozenset(self._ready) if self._ready is not None else base.ready,
            reviews=frozenset(self._reviews) if self._reviews is not None else base.reviews,
            unresolved=self.unresolved,
            output=self.output,
            reason=self.reason,
            command_keys=self.command_keys,
            graph=self.graph,
        )


def remember_key(keys: tuple[CommandKey, ...], event: Event) -> tuple[CommandKey, ...]:
    """``keys`` plus the idempotency key recorded in ``event.cause`` (the first event of an
    applied command), keeping the latest ``MAX_COMMAND_KEYS``."""
    cause = event.cause or {}
    key = cause.get("idempotency_key")
    if not isinstance(key, str):
        return keys
    return (*keys, (key, str(cause.get("type", "")), event.seq))[-MAX_COMMAND_KEYS:]


def start_state(event: WorkflowStarted, graph: Graph | None = None) -> WorkflowState:
    """The state right after ``WorkflowStarted`` (roots ready)."""
    if event.seq != 1:
        raise ValueError(f"WorkflowStarted must have seq 1, got {event.seq}")
    graph = graph if graph is not None else graph_from_dict(event.definition)
    steps = {
        step_key(event.workflow_id, root): StepRecord(
            step_key=step_key(event.workflow_id, root), node_id=root
        )
        for root in graph.roots
    }
    return WorkflowState(
        workflow_id=event.workflow_id,
        name=event.name,
        version=event.version,
        input=event.input,
        seed=event.seed,
        tenant=event.tenant,
        actor=event.actor,
        status=STARTED,
        seq=1,
        started_at=event.at,
        finished_at=None,
        steps=steps,
        waiting_deps={k: v for k, v in graph.dep_count.items() if v},
        ready=frozenset(steps),
        reviews=frozenset(),
        unresolved=len(graph.nodes),
        command_keys=remember_key((), event),
        graph=graph,
    )


# -- DAG bookkeeping after a step's own changes (the rows have no DAG) ----------------------


def _add_children(b: StateBuilder, e: Any, record: StepRecord) -> None:
    for index, child_input in enumerate(e.inputs):
        key = step_key(b.workflow_id, record.node_id, index)
        b._put(StepRecord(step_key=key, node_id=record.node_id, index=index, input=child_input))


def _after_success(b: StateBuilder, e: Any, record: StepRecord) -> None:
    if record.index is None:
        b._resolve_node(record.node_id)
    else:
        parent = b.step(step_key(b.workflow_id, record.node_id))
        assert parent is not None
        b._update(parent.step_key, {"children_done": parent.children_done + 1})


def _after_failure(b: StateBuilder, e: Any, record: StepRecord) -> None:
    if record.index is None and b.graph.nodes[record.node_id].on_failure == OnFailure.CONTINUE:
        b._resolve_node(record.node_id)


def _after_skip(b: StateBuilder, e: Any, record: StepRecord) -> None:
    b._resolve_node(record.node_id)


_FOLLOW_UPS: dict[type[Event], Callable[[StateBuilder, Any, StepRecord], None]] = {
    MapExpanded: _add_children,
    StepSucceeded: _after_success,
    StepFailed: _after_failure,
    StepSkipped: _after_skip,
}


@overload
def evolve(state: WorkflowState, event: Event) -> WorkflowState: ...
@overload
def evolve(state: None, event: Event) -> WorkflowState | None: ...
def evolve(state: WorkflowState | None, event: Event) -> WorkflowState | None:
    """Apply one event. Notices leave the state as it is (``None`` stays ``None``).

    Raises ``ValueError`` for an event that cannot follow the state (wrong workflow,
    seq gap, unknown step): the log is corrupt, never a normal condition.
    """
    return evolve_all(state, (event,))


def evolve_all(state: WorkflowState | None, events: Iterable[Event]) -> WorkflowState | None:
    """Apply events in order with one working copy (the fast path for batches and replay)."""
    builder = StateBuilder(state) if state is not None else None
    for event in events:
        if builder is None:
            if isinstance(event, WorkflowStarted):
                builder = StateBuilder(start_state(event))
            elif isinstance(event, WorkflowRejected | DuplicateStartIgnored | InputRejected):
                continue
            else:
                raise ValueError(f"{type(event).__name__} before WorkflowStarted")
        elif isinstance(event, WorkflowStarted):
            raise ValueError(f"second WorkflowStarted for {event.workflow_id!r}")
        else:
            builder.apply(event)
    if builder is None or (state is not None and builder.seq == state.seq):
        return state  # nothing applied (only notices): keep the very same object
    return builder.freeze()
