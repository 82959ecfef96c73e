"""The state machine: ``decide(state, input, now) -> events`` and ``evolve(state, event)``.

``decide`` never raises for bad input and never reads a clock or random source: the
adapter passes ``now`` (ms) and every outcome, including refusals, is an event.
Inputs that change nothing (duplicate, late or stale results and timers) give ``[]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kflow.core.backoff import seed_for
from kflow.core.decision import Decision, json_size, with_key
from kflow.core.definition import OnFailure
from kflow.core.errors import DefinitionError, ErrorClass
from kflow.core.events import (
    DuplicateStartIgnored,
    Event,
    InputRejected,
    StepHeartbeatRecorded,
    StepReopened,
    StepTimedOut,
    WorkflowCancelled,
    WorkflowPaused,
    WorkflowRejected,
    WorkflowResumed,
    WorkflowRetried,
    WorkflowSignalled,
    WorkflowStarted,
)
from kflow.core.fold import StateBuilder, evolve, evolve_all, start_state
from kflow.core.graph import compile_graph
from kflow.core.inputs import (
    CancelWorkflow,
    Input,
    PauseWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SignalWorkflow,
    StartWorkflow,
    StepError,
    StepHeartbeat,
    StepResult,
    TimerFired,
    input_to_dict,
)
from kflow.core.jsondoc import Json
from kflow.core.limits import (
    DEFAULT_LIMITS,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_MESSAGE_CHARS,
    NOTICE_FIELD_BYTES,
    Limits,
)
from kflow.core.state import (
    FINISHED_STEP,
    CommandKey,
    StepRecord,
    WorkflowState,
    is_terminal,
    step_sort_key,
    step_timers,
)

__all__ = [
    "decide",
    "decide_and_evolve",
    "duplicate_start_ignored",
    "evolve",
    "evolve_all",
    "notice_cause",
    "reject_input",
]


KEYED_COMMANDS = (
    StartWorkflow,
    CancelWorkflow,
    PauseWorkflow,
    ResumeWorkflow,
    SignalWorkflow,
    RetryWorkflow,
)
"""Inputs whose envelope ``idempotency_key`` is honoured (results and timers have their own
deduplication: the attempt in flight)."""


def decide(
    state: WorkflowState | None,
    command: Input,
    now: int,
    limits: Limits = DEFAULT_LIMITS,
    idempotency_key: str | None = None,
) -> list[Event]:
    """The events that follow from ``command`` at time ``now`` (ms); pure and deterministic.

    ``idempotency_key`` (a command's envelope key) is recorded in the cause of what it
    produces; a later command of the workflow with the same key is answered as a duplicate
    instead of being applied again (ADR 0018).
    """
    outcome = _decide(state, command, now, limits, idempotency_key)
    return outcome if isinstance(outcome, list) else outcome.events


def decide_and_evolve(
    state: WorkflowState | None,
    command: Input,
    now: int,
    limits: Limits = DEFAULT_LIMITS,
    idempotency_key: str | None = None,
) -> tuple[list[Event], WorkflowState | None]:
    """``decide`` plus the state after its events, without applying them a second time.

    Equal to ``(events, evolve_all(state, events))``; the fast path for adapters.
    """
    outcome = _decide(state, command, now, limits, idempotency_key)
    if isinstance(outcome, list):
        return outcome, state
    if not outcome.events:
        return [], state
    return outcome.events, outcome.b.freeze()


def _decide(
    state: WorkflowState | None, command: Input, now: int, limits: Limits, key: str | None
) -> Decision | list[Event]:
    if not isinstance(command, KEYED_COMMANDS):
        key = None
    if isinstance(command, StartWorkflow):
        return _start(state, command, now, limits, key)
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        notice = _notice(command, now, "invalid_idempotency_key", _long_key(key))
        return [dataclasses.replace(notice, cause=_key_elided(notice.cause))]
    if state is None:
        return [_notice(command, now, "unknown_workflow", "no such workflow", key=key)]
    if state.workflow_id != command.workflow_id:
        raise ValueError(f"input for {command.workflow_id!r} given state of {state.workflow_id!r}")
    if isinstance(command, StepResult | StepError | StepHeartbeat):
        return _on_result(state, command, now, limits)
    if isinstance(command, TimerFired):
        return _on_timer(state, command, now, limits)
    applied = state.applied_key(key) if key is not None else None
    if applied is not None:
        return [_duplicate(command, now, applied)]
    if isinstance(command, RetryWorkflow):
        return _on_retry(state, command, now, limits, key)
    if is_terminal(state):
        reason = f"the workflow is {state.status}"
        return [_notice(command, now, "workflow_finished", reason, key=key)]
    decision = Decision(StateBuilder(state), now, command, limits, key)
    if isinstance(command, CancelWorkflow):
        decision.cancel_active(reason=command.reason or "cancelled")
        decision.emit(WorkflowCancelled, reason=command.reason)
    elif isinstance(command, PauseWorkflow):
        if state.status == "paused":
            reason = "the workflow is already paused"
            return [_notice(command, now, "not_applicable", reason, key=key)]
        decision.emit(WorkflowPaused, reason=command.reason)
    elif isinstance(command, ResumeWorkflow):
        if state.status != "paused":
            reason = "the workflow is not paused"
            return [_notice(command, now, "not_applicable", reason, key=key)]
        decision.emit(WorkflowResumed)
        decision.advance()
    elif isinstance(command, SignalWorkflow):
        return _on_signal(state, command, now, limits, key)
    return decision


def _long_key(key: str) -> str:
    return f"idempotency_key is {len(key)} characters; the limit is {MAX_IDEMPOTENCY_KEY_CHARS}"


def _key_elided(cause: dict[str, Any] | None) -> dict[str, Any]:
    """A cause whose oversized key is left out (``verify`` skips such an input, ADR 0011)."""
    out = dict(cause or {})
    out["idempotency_key"] = None
    out["elided"] = sorted({*out.get("elided", ()), "idempotency_key"})
    return out


def _duplicate(command: Input, now: int, applied: CommandKey) -> InputRejected:
    """The answer to a command whose idempotency key an applied command already carried."""
    key, input_type, seq = applied
    name = type(command).__name__
    if input_type != name:
        reason = (
            f"idempotency key {key!r} was used by a {input_type} (applied at seq {seq}); "
            f"give this {name} a key of its own"
        )
        return _notice(command, now, "idempotency_key_reused", reason, key=key)
    reason = f"{name} with idempotency key {key!r} was already applied at seq {seq}"
    return _notice(command, now, "duplicate_command", reason, key=key)


def reject_input(command: Input, now: int, code: str, reason: str) -> InputRejected:
    """A notice that ``command`` was not applied (for adapters that refuse it themselves)."""
    step_key = getattr(command, "step_key", None)
    return _notice(command, now, code, reason, step_key if isinstance(step_key, str) else None)


def _notice(
    command: Input,
    now: int,
    code: str,
    reason: str,
    step_key: str | None = None,
    key: str | None = None,
) -> InputRejected:
    return InputRejected(
        workflow_id=command.workflow_id,
        seq=0,
        at=now,
        cause=notice_cause(command, key),
        code=code,
        reason=reason,
        input_type=type(command).__name__,
        step_key=step_key,
    )


def _start(
    state: WorkflowState | None, command: StartWorkflow, now: int, limits: Limits, key: str | None
) -> Decision | list[Event]:
    def rejected(code: str, reason: str) -> list[Event]:
        return [
            WorkflowRejected(
                workflow_id=command.workflow_id,
                seq=0,
                at=now,
                cause=notice_cause(command, key),
                code=code,
                reason=reason,
                name=command.name,
                version=command.version,
            )
        ]

    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        reason, key = _long_key(key), None  # the key is not recorded: the notice stays small
        (notice,) = rejected("invalid_idempotency_key", reason)
        return [dataclasses.replace(notice, cause=_key_elided(notice.cause))]
    if state is not None:
        return [duplicate_start_ignored(command, now, key)]
    if not command.workflow_id:
        return rejected("invalid_workflow_id", "workflow_id is empty; give a unique id")
    defn = command.definition
    if defn is None:
        return rejected(
            "unknown_definition",
            f"no workflow definition {command.name}@{command.version}; register it first",
        )
    try:
        graph = compile_graph(defn)
    except DefinitionError as exc:
        return rejected("invalid_definition", str(exc))
    try:
        size = json_size(command.input)
    except ValueError as exc:
        return rejected("invalid_input", f"input is not a JSON document: {exc}")
    if size > limits.max_payload_bytes:
        return rejected(
            "payload_too_large", f"input is {size} bytes; the limit is {limits.max_payload_bytes}"
        )
    if graph.input_validator is not None:
        try:
            errors = sorted(
                graph.input_validator.iter_errors(command.input.value),
                key=lambda e: ([str(p) for p in e.path], e.message),
            )
        except Exception as exc:  # e.g. an unresolvable $ref: the schema, not the input, is bad
            return rejected("invalid_definition", f"input_schema cannot be applied: {exc}")
        if errors:
            details = "; ".join(
                f"input{''.join(f'[{p!r}]' for p in err.path)}: {err.message}" for err in errors[:5]
            )
            return rejected("invalid_input", f"input does not match the input_schema: {details}")
    started = WorkflowStarted(
        workflow_id=command.workflow_id,
        seq=1,
        at=now,
        cause=with_key(
            {
                "type": "StartWorkflow",
                "workflow_id": command.workflow_id,
                "name": command.name,
                "version": command.version,
                "tenant": command.tenant,
                "actor": command.actor,
            },
            key,
        ),
        name=command.name,
        version=command.version,
        input=command.input,
        definition=graph.definition_dict,
        seed=seed_for(command.workflow_id),
        tenant=command.tenant,
        actor=command.actor,
    )
    decision = Decision(StateBuilder(start_state(started, graph)), now, None, limits)
    decision.events.append(started)
    decision.advance()
    return decision


def _live_step(state: WorkflowState, key: str, attempt: int) -> StepRecord | None:
    """The record if ``(key, attempt)`` is the attempt in flight, else None (stale/duplicate)."""
    record = state.steps.get(key)
    if record is None or record.attempt != attempt or record.status in FINISHED_STEP:
        return None
    return record


def _on_result(
    state: WorkflowState, command: StepResult | StepError | StepHeartbeat, now: int, limits: Limits
) -> Decision | list[Event]:
    record = state.steps.get(command.step_key)
    if record is None or record.scheduled_at is None:
        return [
            _notice(
                command,
                now,
                "unknown_step",
                f"workflow {state.workflow_id!r} has no scheduled step {command.step_key!r}",
                command.step_key,
            )
        ]
    if record.kind not in ("task", None):
        return [
            _notice(
                command,
                now,
                "not_a_task",
                f"step {command.step_key!r} is a {record.kind} step; processors do not run it",
                command.step_key,
            )
        ]
    if is_terminal(state) or _live_step(state, command.step_key, command.attempt) is None:
        return []  # late, duplicate or stale: ignored without a trace
    if record.status != "running":
        return []
    decision = Decision(StateBuilder(state), now, command, limits)
    if isinstance(command, StepHeartbeat):
        if record.heartbeat_timeout_ms is None:
            return []  # nothing to reset: not worth an event in the log
        try:
            size = json_size(command.details)
        except ValueError as exc:
            reason = f"heartbeat details are not a JSON document: {exc}"
            return [_notice(command, now, "invalid_details", reason, command.step_key)]
        if size > limits.max_payload_bytes:
            reason = f"heartbeat details are {size} bytes; the limit is {limits.max_payload_bytes}"
            return [_notice(command, now, "payload_too_large", reason, command.step_key)]
        decision.emit(
            StepHeartbeatRecorded,
            step_key=record.step_key,
            attempt=record.attempt,
            details=command.details,
        )
        return decision
    if isinstance(command, StepResult):
        try:
            size = json_size(command.output)
        except ValueError as exc:
            decision.elide("output")
            decision.fail(
                record, ErrorClass.PERMANENT, "InvalidOutput", f"output is not JSON: {exc}"
            )
            decision.advance()
            return decision
        if size > limits.max_payload_bytes:
            decision.elide("output")
            decision.fail(
                record,
                ErrorClass.PERMANENT,
                "PayloadTooLarge",
                f"output is {size} bytes; the limit is {limits.max_payload_bytes}",
            )
        else:
            decision.succeed(record, command.output)
    else:
        error_type, message = bounded_text(command.error_type, 200), bounded_text(command.message)
        # The event keeps the cut text; the cause drops it (verify skips this input).
        if message != command.message:
            decision.elide("message")
        if error_type != command.error_type:
            decision.elide("error_type")
        decision.attempt_failed(record, command.error_class, error_type, message)
    decision.advance()
    return decision


def _parse_timer(timer_id: str) -> tuple[str, str, int] | None:
    kind, sep, rest = timer_id.partition(":")
    key, hash_sign, attempt = rest.rpartition("#")
    if not sep or not hash_sign or not attempt.isdigit():
        return None
    return kind, key, int(attempt)


def _on_timer(
    state: WorkflowState, command: TimerFired, now: int, limits: Limits
) -> Decision | list[Event]:
    parsed = _parse_timer(command.timer_id)
    if parsed is None or parsed[0] not in ("retry", "timeout", "heartbeat", "sleep"):
        return [_notice(command, now, "unknown_timer", f"malformed timer id {command.timer_id!r}")]
    kind, key, attempt = parsed
    if is_terminal(state):
        return []
    record = _live_step(state, key, attempt)
    if record is None or not _timer_current(record, kind, command.due_at):
        return []  # stale: the step moved on or the deadline moved
    if now < command.due_at:
        return [
            _notice(command, now, "timer_not_due", f"timer fired {command.due_at - now} ms early")
        ]
    decision = Decision(StateBuilder(state), now, command, limits)
    if kind == "retry":
        decision.retry_now(record)
    elif kind == "sleep":
        decision.succeed(record, {"slept_ms": command.due_at - (record.scheduled_at or 0)})
    else:
        decision.emit(StepTimedOut, step_key=key, attempt=attempt, timeout=kind)
        fresh = decision.b.step(key)
        assert fresh is not None
        label = "step timeout" if kind == "timeout" else "no heartbeat"
        decision.attempt_failed(
            fresh,
            ErrorClass.TRANSIENT,
            "Timeout" if kind == "timeout" else "HeartbeatTimeout",
            f"{label} after {command.due_at - (record.scheduled_at or 0)} ms",
        )
    decision.advance()
    return decision


def _timer_current(record: StepRecord, kind: str, due_at: int) -> bool:
    wanted = f"{kind}:{record.step_key}#{record.attempt}"
    return any(t.timer_id == wanted and t.due_at == due_at for t in step_timers(record))


def _on_signal(
    state: WorkflowState, command: SignalWorkflow, now: int, limits: Limits, key: str | None
) -> Decision | list[Event]:
    step = f"{state.workflow_id}/{command.name}"
    record = state.steps.get(step)
    waiting = record is not None and (
        record.status == "review" or (record.status == "waiting" and record.kind == "approval")
    )
    if record is None or not waiting:
        return [
            _notice(
                command,
                now,
                "no_waiting_step",
                f"no step {command.name!r} is waiting for a signal; signal an approval step"
                " or a step awaiting review by its node id (map child: node[i])",
                step,
                key,
            )
        ]
    try:
        size = json_size(command.payload)
        payload = command.payload.value
    except ValueError as exc:
        reason = f"payload is not a JSON document: {exc}"
        return [_notice(command, now, "invalid_signal", reason, step, key)]
    if size > limits.max_payload_bytes:
        reason = f"payload is {size} bytes; the limit is {limits.max_payload_bytes}"
        return [_notice(command, now, "payload_too_large", reason, step, key)]
    if not isinstance(payload, dict) or not isinstance(payload.get("approved"), bool):
        return [
            _notice(
                command,
                now,
                "invalid_signal",
                'payload must be an object with "approved": true or false',
                step,
                key,
            )
        ]
    decision = Decision(StateBuilder(state), now, command, limits, key)
    decision.emit(WorkflowSignalled, name=command.name, payload=command.payload)
    approved = payload["approved"]
    if record.status == "waiting":  # approval step
        if approved:
            decision.succeed(record, command.payload)
        else:
            decision.fail(
                record, ErrorClass.PERMANENT, "Rejected", _rejection(payload), allow_pause=False
            )
    elif approved and "output" in payload:
        decision.succeed(record, payload["output"])
    elif approved:
        decision.retry_now(record)
    else:
        decision.fail(
            record,
            ErrorClass.PERMANENT,
            record.error_type or "Rejected",
            _rejection(payload),
            allow_pause=False,
        )
    decision.advance()
    return decision


RETRYABLE_WORKFLOW: frozenset[str] = frozenset({"failed", "cancelled"})
"""Workflow statuses ``RetryWorkflow`` reopens."""


def retry_plan(state: WorkflowState) -> list[tuple[StepRecord, int, str]]:
    """The steps a retry reopens: ``(record, next attempt, status)``, sorted by step key.

    Every failed or cancelled step whose node is not already resolved: a top-level step
    that failed with ``on_failure: continue`` let the run go on, so it (and its map
    children) stays as it is. A step that was attempted runs as ``attempt + 1`` (its
    step key, the stable part of the idempotency key, is unchanged); one cancelled before
    it was ever scheduled keeps its attempt. A ``for_each`` node whose children exist is
    reopened as ``running`` (only its unfinished children run again).
    """
    plan: list[tuple[StepRecord, int, str]] = []
    kept: set[str] = set()
    nodes = state.graph.nodes
    for key in sorted(state.steps, key=step_sort_key):
        record = state.steps[key]
        if record.status not in ("failed", "cancelled"):
            continue
        if record.index is None:
            if record.status == "failed" and nodes[record.node_id].on_failure == OnFailure.CONTINUE:
                kept.add(record.node_id)
                continue
        elif record.node_id in kept:
            continue
        if record.kind == "map" and record.children is not None:
            plan.append((record, record.attempt, "running"))
        elif record.scheduled_at is not None:
            plan.append((record, record.attempt + 1, "ready"))
        else:
            plan.append((record, record.attempt, "ready"))
    return plan


def _on_retry(
    state: WorkflowState, command: RetryWorkflow, now: int, limits: Limits, key: str | None
) -> Decision | list[Event]:
    if state.status not in RETRYABLE_WORKFLOW:
        reason = f"the workflow is {state.status}; only failed or cancelled runs can be retried"
        return [_notice(command, now, "not_retryable", reason, key=key)]
    plan = retry_plan(state)
    if not plan:
        reason = "no failed or cancelled step to rerun"
        return [_notice(command, now, "nothing_to_retry", reason, key=key)]
    decision = Decision(StateBuilder(state), now, command, limits, key)
    decision.emit(WorkflowRetried, reason=command.reason, previous_status=state.status)
    for record, attempt, status in plan:
        decision.emit(StepReopened, step_key=record.step_key, attempt=attempt, status=status)
    decision.advance()
    return decision


def _rejection(payload: dict[str, object]) -> str:
    comment = payload.get("comment")
    return f"rejected by review: {comment}" if comment else "rejected by review"


def notice_cause(command: Input, idempotency_key: str | None = None) -> dict[str, Any]:
    """A bounded summary of a refused input, for its notice: never the payload.

    Scalars are kept; a document, text or definition over ``NOTICE_FIELD_BYTES`` (or a
    document that is not JSON) is elided and its size recorded under ``sizes``, so one
    oversized input can never make an oversized notice (ADR 0027).
    """
    cause = with_key(input_to_dict(command), idempotency_key)
    sizes: dict[str, int] = {}
    for name, value in cause.items():
        size = _field_size(value)
        if size is not None and (
            size > NOTICE_FIELD_BYTES or (type(value) is Json and not _is_json(value))
        ):
            sizes[name] = size
    if sizes:
        cause.update(dict.fromkeys(sizes), elided=sorted(sizes), sizes=sizes)
    return cause


def _field_size(value: Any) -> int | None:
    """Bytes of a cause field's text (None for a scalar that is always small)."""
    if isinstance(value, dict | list):  # a definition
        value = Json.of(value)
    if type(value) is Json:
        try:
            return value.size
        except (ValueError, TypeError, RecursionError):
            return NOTICE_FIELD_BYTES + 1  # a value that cannot even be written: elide
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode())
    return None


def bounded_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters (ending ``...`` when cut)."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _is_json(document: Json) -> bool:
    try:
        document.measure()
    except ValueError:
        return False
    return True


def duplicate_start_ignored(
    command: StartWorkflow, now: int, idempotency_key: str | None = None
) -> DuplicateStartIgnored:
    """The answer to a StartWorkflow for a workflow id that already exists (a notice, ADR 0011)."""
    return DuplicateStartIgnored(
        workflow_id=command.workflow_id,
        seq=0,
        at=now,
        cause=notice_cause(command, idempotency_key),
        name=command.name,
        version=command.version,
    )
