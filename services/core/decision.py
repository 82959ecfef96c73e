"""The working context of one ``decide`` call: emit events, apply them, follow through.

``Decision`` owns a ``StateBuilder``; every emitted event is applied at once so the
next rule sees its effect (a success makes dependents ready, which get scheduled,
which may be skipped, ... until nothing more follows from the input).
"""

from __future__ import annotations

from typing import Any

from kflow.core.backoff import retry_delay_ms
from kflow.core.definition import APPROVAL, SLEEP, NodeSpec, OnFailure
from kflow.core.errors import ErrorClass
from kflow.core.events import (
    Event,
    MapExpanded,
    StepAwaitingReview,
    StepCancelled,
    StepFailed,
    StepRetryDue,
    StepRetryScheduled,
    StepScheduled,
    StepSkipped,
    StepSucceeded,
    WorkflowCompleted,
    WorkflowFailed,
)
from kflow.core.expressions import ExpressionError, evaluate, expression_text, is_truthy, resolve
from kflow.core.fold import StateBuilder
from kflow.core.inputs import Input, input_to_dict
from kflow.core.jsondoc import Json
from kflow.core.limits import Limits
from kflow.core.state import ACTIVE_STEP, StepRecord, step_key, step_sort_key


def json_size(value: Any) -> int:
    """Bytes of the document's JSON text (the unit of every payload limit), never re-encoded.

    Raises ``ValueError`` if ``value`` is not a JSON document.
    """
    return Json.of(value).measure()


def with_key(cause: dict[str, Any], idempotency_key: str | None) -> dict[str, Any]:
    """``cause`` with the command's idempotency key recorded (if it has one): folding the
    log then remembers the key (``WorkflowState.command_keys``, ADR 0018)."""
    if idempotency_key is not None:
        cause["idempotency_key"] = idempotency_key
    return cause


class Decision:
    """Collects the events one input produces, applying each to a working state."""

    def __init__(
        self,
        builder: StateBuilder,
        now: int,
        cause: Input | None,
        limits: Limits,
        idempotency_key: str | None = None,
    ) -> None:
        self.b = builder
        self.now = now
        self.limits = limits
        self.events: list[Event] = []
        # None when the caller already recorded the input (StartWorkflow).
        self._cause: dict[str, Any] | None = (
            with_key(input_to_dict(cause), idempotency_key) if cause is not None else None
        )

    # -- emitting -----------------------------------------------------------------------
    def emit(self, cls: type[Event], **fields: Any) -> Event:
        """Create the next event (gapless seq), record the cause on the first, apply it."""
        event = cls(
            workflow_id=self.b.workflow_id,
            seq=self.b.seq + 1,
            at=self.now,
            cause=self.take_cause(cls, fields),
            **fields,
        )
        self.events.append(event)
        self.b.apply(event)
        return event

    def take_cause(self, cls: type[Event], fields: dict[str, Any]) -> dict[str, Any] | None:
        """The cause for the next event (only the first gets it), minus what it repeats."""
        cause, self._cause = self._cause, None
        if cause is not None:
            for name in _SHARED.get((cause["type"], cls.__name__), ()):
                if name in fields:
                    del cause[name]
        return cause

    def elide(self, name: str) -> None:
        """Drop an oversized field from the cause (``verify`` then skips this batch)."""
        if self._cause is not None:
            self._cause[name] = None
            self._cause["elided"] = sorted({*self._cause.get("elided", ()), name})

    # -- scheduling -------------------------------------------------------------------
    def can_schedule(self) -> bool:
        return self.b.status == "running" and not self.b.has_reviews()

    def advance(self) -> None:
        """Schedule everything ready (unless paused/reviewing), then complete if all done."""
        while self.can_schedule():
            keys = self.b.ready_keys()
            if not keys:
                break
            for key in keys:
                record = self.b.step(key)
                if record is not None and record.status == "ready" and self.can_schedule():
                    self._start(record)
        if self.b.unresolved == 0 and self.b.status in ("running", "paused"):
            self.emit(WorkflowCompleted, output=self._workflow_output())

    def _workflow_output(self) -> Json:
        out: dict[str, Json] = {}
        for node_id in self.b.graph.sinks:
            record = self.b.step(step_key(self.b.workflow_id, node_id))
            if record is not None and record.status == "succeeded":
                out[node_id] = record.output
        return Json.compose(out)

    def _start(self, record: StepRecord) -> None:
        if record.scheduled_at is not None or record.index is not None:
            self._schedule_attempt(record, record.input, record.attempt)
            return
        node = self.b.graph.nodes[record.node_id]
        deps = [self.b.step(step_key(self.b.workflow_id, dep)) for dep in node.depends_on]
        if deps and all(dep is not None and dep.status == "skipped" for dep in deps):
            self.emit(
                StepSkipped, step_key=record.step_key, attempt=0, reason="all dependencies skipped"
            )
            return
        context = self._context(node)
        try:
            if node.when is not None and not is_truthy(
                evaluate(expression_text(node.when), context)
            ):
                self.emit(
                    StepSkipped,
                    step_key=record.step_key,
                    attempt=0,
                    reason=f"condition {node.when!r} is false",
                )
                return
            if node.for_each is not None:
                self._expand(record, node, context)
                return
            step_input = resolve(node.input, context, self._documents(node))
        except ExpressionError as exc:
            self.fail(record, ErrorClass.PERMANENT, "ExpressionError", str(exc))
            return
        self._schedule_attempt(record, Json.compose(step_input), record.attempt)

    def _context(self, node: NodeSpec) -> dict[str, Any]:
        steps: dict[str, Any] = {}
        for ref in self.b.graph.refs[node.id]:
            dep = self.b.step(step_key(self.b.workflow_id, ref))
            if dep is not None:
                steps[ref] = {"output": dep.output.value, "status": dep.status}
        return {"input": self.b.base.input.value, "steps": steps}

    def _documents(self, node: NodeSpec) -> dict[str, Json]:
        """Whole documents an input template may name, embedded by their text as they are."""
        found = {"input": self.b.base.input}
        for ref in self.b.graph.refs[node.id]:
            dep = self.b.step(step_key(self.b.workflow_id, ref))
            if dep is not None:
                found[f"steps.{ref}.output"] = dep.output
        return found

    def _expand(self, record: StepRecord, node: NodeSpec, context: dict[str, Any]) -> None:
        items = evaluate(expression_text(node.for_each or ""), context)
        if not isinstance(items, list):
            self.fail(
                record,
                ErrorClass.PERMANENT,
                "ExpressionError",
                f"for_each {node.for_each!r} gave {type(items).__name__}, expected a list",
            )
            return
        if len(items) > self.limits.max_map_items:
            self.fail(
                record,
                ErrorClass.PERMANENT,
                "TooManyItems",
                f"for_each gave {len(items)} items; the limit is {self.limits.max_map_items}",
            )
            return
        inputs = []
        documents = self._documents(node)
        for index, item in enumerate(items):
            try:
                scope = {**context, "item": item, "index": index}
                inputs.append(Json.compose(resolve(node.input, scope, documents)))
            except ExpressionError as exc:
                self.fail(record, ErrorClass.PERMANENT, "ExpressionError", f"item {index}: {exc}")
                return
        self.emit(
            MapExpanded,
            step_key=record.step_key,
            attempt=record.attempt,
            node_id=node.id,
            count=len(items),
            inputs=inputs,
        )
        if not items:
            self.emit(StepSucceeded, step_key=record.step_key, attempt=record.attempt, output=[])

    def _schedule_attempt(self, record: StepRecord, step_input: Json, attempt: int) -> None:
        node = self.b.graph.nodes[record.node_id]
        try:
            size = step_input.measure()
        except ValueError as exc:
            self.fail(
                record, ErrorClass.PERMANENT, "InvalidInput", f"step input is not JSON: {exc}"
            )
            return
        if size > self.limits.max_payload_bytes:
            self.fail(
                record,
                ErrorClass.PERMANENT,
                "PayloadTooLarge",
                f"step input is {size} bytes; the limit is {self.limits.max_payload_bytes}",
            )
            return
        kind = "sleep" if node.type == SLEEP else "approval" if node.type == APPROVAL else "task"
        due_at = None
        if kind == "sleep":
            value = step_input.value
            duration = value.get("duration_ms") if isinstance(value, dict) else None
            if not isinstance(duration, int) or isinstance(duration, bool) or duration < 0:
                self.fail(
                    record,
                    ErrorClass.PERMANENT,
                    "InvalidInput",
                    f"sleep needs input.duration_ms as an integer >= 0, got {duration!r}",
                )
                return
            due_at = self.now + duration
        self.emit(
            StepScheduled,
            step_key=record.step_key,
            attempt=attempt,
            node_id=node.id,
            index=record.index,
            node_type=node.type,
            queue=node.task_queue,
            kind=kind,
            input=step_input,
            timeout_ms=node.timeout_ms if kind == "task" else None,
            heartbeat_timeout_ms=node.heartbeat_timeout_ms if kind == "task" else None,
            due_at=due_at,
        )

    # -- outcomes ---------------------------------------------------------------------
    def succeed(self, record: StepRecord, output: Any) -> None:
        """Record a success; finish the map node when its last child succeeds."""
        self.emit(StepSucceeded, step_key=record.step_key, attempt=record.attempt, output=output)
        if record.index is not None:
            parent_key = step_key(self.b.workflow_id, record.node_id)
            parent = self.b.step(parent_key)
            if (
                parent is not None
                and parent.status == "running"
                and parent.children is not None
                and parent.children_done == parent.children
            ):
                outputs = [
                    self._child(record.node_id, index).output for index in range(parent.children)
                ]
                self.emit(
                    StepSucceeded,
                    step_key=parent_key,
                    attempt=parent.attempt,
                    output=Json.compose(outputs),
                )

    def _child(self, node_id: str, index: int) -> StepRecord:
        child = self.b.step(step_key(self.b.workflow_id, node_id, index))
        assert child is not None
        return child

    def attempt_failed(
        self, record: StepRecord, error_class: ErrorClass, error_type: str, message: str
    ) -> None:
        """Route an attempt failure: retry (transient), review, or fail for good."""
        policy = self.b.graph.nodes[record.node_id].retry
        if error_class == ErrorClass.NEEDS_REVIEW:
            self._await_review(record, error_class, error_type, message)
        elif error_class == ErrorClass.TRANSIENT and record.attempt < policy.max_attempts:
            delay = retry_delay_ms(policy, self.b.base.seed, record.step_key, record.attempt)
            self.emit(
                StepRetryScheduled,
                step_key=record.step_key,
                attempt=record.attempt,
                error_class=error_class.value,
                error_type=error_type,
                message=message,
                delay_ms=delay,
                due_at=self.now + delay,
            )
        else:
            if error_class == ErrorClass.TRANSIENT:
                message = f"{message} (gave up after {record.attempt} attempt(s))"
            self.fail(record, error_class, error_type, message)

    def _await_review(
        self, record: StepRecord, error_class: ErrorClass, error_type: str, message: str
    ) -> None:
        self.emit(
            StepAwaitingReview,
            step_key=record.step_key,
            attempt=record.attempt,
            error_class=error_class.value,
            error_type=error_type,
            message=message,
        )

    def retry_now(self, record: StepRecord) -> None:
        """Make the next attempt ready (it is scheduled by ``advance`` when allowed)."""
        self.emit(StepRetryDue, step_key=record.step_key, attempt=record.attempt + 1)

    def fail(
        self,
        record: StepRecord,
        error_class: ErrorClass,
        error_type: str,
        message: str,
        *,
        allow_pause: bool = True,
    ) -> None:
        """A step failed for good: apply its node's ``on_failure``."""
        node = self.b.graph.nodes[record.node_id]
        if node.on_failure == OnFailure.PAUSE and allow_pause:
            self._await_review(record, error_class, error_type, message)
            return
        self.emit(
            StepFailed,
            step_key=record.step_key,
            attempt=record.attempt,
            error_class=error_class.value,
            error_type=error_type,
            message=message,
        )
        if record.index is not None:
            parent = self.b.step(step_key(self.b.workflow_id, record.node_id))
            assert parent is not None
            self._cancel_children(parent, reason=f"sibling {record.step_key} failed")
            self.emit(
                StepFailed,
                step_key=parent.step_key,
                attempt=parent.attempt,
                error_class=error_class.value,
                error_type=error_type,
                message=f"item {record.index} failed: {message}",
            )
            record = self.b.step(parent.step_key) or parent
        if node.on_failure != OnFailure.CONTINUE:
            self.cancel_active(reason=f"step {record.step_key} failed")
            self.emit(
                WorkflowFailed,
                reason=f"step {record.step_key} failed: {error_type}: {message}",
                step_key=record.step_key,
            )

    def _cancel_children(self, parent: StepRecord, reason: str) -> None:
        for index in range(parent.children or 0):
            child = self._child(parent.node_id, index)
            if child.status in ACTIVE_STEP:
                self.emit(
                    StepCancelled, step_key=child.step_key, attempt=child.attempt, reason=reason
                )

    def cancel_active(self, reason: str) -> None:
        """Mark every unfinished step cancelled (sorted by key, children by index)."""
        steps = self.b.steps_view()
        active = [key for key, record in steps.items() if record.status in ACTIVE_STEP]
        for key in sorted(active, key=step_sort_key):
            record = self.b.step(key)
            assert record is not None
            self.emit(StepCancelled, step_key=key, attempt=record.attempt, reason=reason)


# Fields of an input that the first event it produces already holds (dropped from cause).
_SHARED: dict[tuple[str, str], tuple[str, ...]] = {
    ("StartWorkflow", "WorkflowStarted"): ("input", "definition"),
    ("StepResult", "StepSucceeded"): ("output",),
}
