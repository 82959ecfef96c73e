"""The orchestrator's EOS handler: inputs -> ``decide`` -> events, tasks and snapshots.

Runs inside :class:`kflow.bus.eos.EosLoop`; every output of a batch, the
changed snapshots (a tombstone plus a closed marker for a finished workflow) and
the input offsets commit in one Kafka transaction.
State changes are staged until ``committed()`` and dropped on ``rolled_back()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from kflow.bus.contracts import Envelope, default_contracts
from kflow.bus.envelope import envelope_meta
from kflow.bus.eos import Handler, PartitionId
from kflow.bus.message import BusMessage, Headers, OutRecord, trace_headers
from kflow.bus.records import ExecuteStep
from kflow.bus.topics import DEFAULT_CLOSED_RETENTION_MS, TopicNames
from kflow.core.access import Caller, Refusal, authorize, misrouted, refusal_event
from kflow.core.definition import WorkflowDefinition
from kflow.core.errors import KflowError
from kflow.core.events import Event, InputRejected, StepScheduled, is_notice
from kflow.core.inputs import (
    CancelWorkflow,
    Input,
    PauseWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SignalWorkflow,
    StartWorkflow,
    TimerFired,
)
from kflow.core.limits import DEFAULT_LIMITS, Limits
from kflow.core.machine import RETRYABLE_WORKFLOW, decide_and_evolve, notice_cause, reject_input
from kflow.core.state import WorkflowState, is_terminal, pending_timers
from kflow.core.views import timers_for
from kflow.observability import tracing
from kflow.orchestrator.closed import (
    ClosedMarker,
    duplicate_of_closed,
    encode_marker,
)
from kflow.orchestrator.identity import Authenticator, NoKeys
from kflow.orchestrator.metrics import ProgressAges, WorkflowMetrics
from kflow.orchestrator.retained import DEFAULT_RETRY_WINDOW_MS
from kflow.orchestrator.snapshots import SnapshotEncoder
from kflow.orchestrator.table import WorkflowTable
from kflow.orchestrator.timers import TimerHeap

log = logging.getLogger(__name__)

DefinitionLookup = Callable[[str, int], WorkflowDefinition | None]
"""``(name, version) -> definition``; version 0 = latest."""
RestoreFn = Callable[[Sequence[int]], dict[int, dict[str, WorkflowState]]]
"""Snapshots partition numbers -> restored states per partition."""
RestoreClosedFn = Callable[[Sequence[int]], dict[int, list[ClosedMarker]]]
"""Closed partition numbers -> the closed markers of each."""

MAX_TIMERS_PER_TICK = 1000
COMMANDS = (
    StartWorkflow,
    CancelWorkflow,
    PauseWorkflow,
    ResumeWorkflow,
    SignalWorkflow,
    RetryWorkflow,
)
"""Inputs accepted only from the commands topic, where every record is authenticated."""
_NO_HEADERS: Headers = {}


class MisroutedRecord(KflowError, ValueError):
    """A record that does not belong on the orchestrator's input topics (sent to the DLQ)."""


@dataclass
class OrchestratorStats:
    """Counters since start."""

    inputs: int = 0
    events: int = 0
    tasks: int = 0
    timers_fired: int = 0
    restored: int = 0
    closed_restored: int = 0


class OrchestratorHandler(Handler[Envelope]):
    """Owns the state of the workflows in its assigned partitions."""

    def __init__(
        self,
        names: TopicNames,
        definitions: DefinitionLookup,
        restore: RestoreFn,
        clock_ms: Callable[[], int],
        ensure_queue: Callable[[str], None] = lambda queue: None,
        limits: Limits = DEFAULT_LIMITS,
        restore_closed: RestoreClosedFn = lambda partitions: {},
        finished_capacity: int = 10_000,
        closed_window_ms: int = DEFAULT_CLOSED_RETENTION_MS,
        retry_window_ms: int = DEFAULT_RETRY_WINDOW_MS,
        authenticator: Authenticator | None = None,
    ) -> None:
        self.names = names
        self.auth = authenticator or Authenticator(NoKeys(), require_signatures=True)
        self.stats = OrchestratorStats()
        self._definitions = definitions
        self._restore = restore
        self._restore_closed = restore_closed
        self._clock_ms = clock_ms
        self._ensure_queue = ensure_queue
        self._limits = limits
        self._contracts = default_contracts()
        self._input_topics = (names.commands, names.results)
        self.table = WorkflowTable(finished_capacity, closed_window_ms, retry_window_ms)
        self.timers = TimerHeap()
        self._snapshots = SnapshotEncoder()
        self.metrics = WorkflowMetrics()
        self.progress = ProgressAges(clock_ms)
        self._fired: list[tuple[str, str, int]] = []
        # State-changing events per workflow in the open batch: only the steps they touch
        # can need new timers (the heap keeps earlier ones; stale entries are ignored).
        self._batch_events: dict[str, list[Event]] = {}
        self._owned: set[PartitionId] = set()
        self._loaded: set[int] = set()
        self.traces: dict[str, str] = {}
        """traceparent of each workflow's last decision (while tracing is on, or restored from
        its snapshot): the parent of decisions no record caused (timers), its snapshot's header"""

    # -- Handler hooks ---------------------------------------------------------------------

    def handle(self, message: BusMessage[Envelope]) -> Sequence[OutRecord]:
        envelope = message.value
        body = envelope.body
        if isinstance(body, Event | ExecuteStep | TimerFired):
            raise MisroutedRecord(
                f"{envelope.type} does not belong on {message.topic}; only commands and "
                "step results are accepted"
            )
        if message.topic != self.names.commands:
            if isinstance(body, COMMANDS):
                raise MisroutedRecord(
                    f"{envelope.type} on {message.topic}: commands are accepted only on "
                    f"{self.names.commands}, where their signature is checked"
                )
            self.stats.inputs += 1
            return self._dispatch(body, message, envelope)
        self.stats.inputs += 1
        return self._command(message, envelope, body)

    def _dispatch(
        self, body: Input, message: BusMessage[Envelope], envelope: Envelope
    ) -> list[OutRecord]:
        if tracing.on():
            parent = tracing.parent_from(message.headers)
            return self._traced(body, message.partition, envelope, parent, message)
        return self._apply(body, message.partition, envelope)

    def refused(
        self, message: BusMessage[Envelope], reason: str, detail: str
    ) -> Sequence[OutRecord]:
        """Answer an input the loop dead-lettered (its events would not fit one record)
        with a small notice, so whoever sent it learns it was not applied."""
        envelope = message.value
        body = envelope.body
        if isinstance(body, Event | ExecuteStep | TimerFired):
            return ()
        text = f"not applied, its events would not fit one Kafka record ({detail}); see the DLQ"
        return self._records([reject_input(body, self._clock_ms(), reason, text)], envelope, body)

    def _command(
        self, message: BusMessage[Envelope], envelope: Envelope, body: Input
    ) -> list[OutRecord]:
        """A record of the commands topic: applied as its verified sender, or refused with
        a notice saying why (ADR 0060)."""
        caller: Caller | Refusal = misrouted(message.key, body) or self.auth.verify(
            message.key, message.raw, message.headers, envelope.actor
        )
        if isinstance(body, RetryWorkflow):
            # A finished run's state may be only in its retained snapshot: read it back
            # first, so the caller's tenant is checked against the run's (ADR 0082).
            self._load_retained(message.partition, body.workflow_id, self._clock_ms())
        if isinstance(caller, Caller):
            refusal = self._authorize(caller, body, envelope)
            if caller.verified:
                envelope = replace(envelope, actor=caller.actor, tenant=caller.tenant)
            if refusal is None:
                if isinstance(body, StartWorkflow):
                    # Who started it travels in the envelope; record it on WorkflowStarted
                    # too (signed: the verified identity; its tenant is fixed for good).
                    body = replace(
                        body,
                        actor=envelope.actor if caller.verified else body.actor or envelope.actor,
                        tenant=envelope.tenant
                        if caller.verified
                        else body.tenant or envelope.tenant,
                    )
                    if body.definition is None:
                        body = self._with_definition(body)
                return self._dispatch(body, message, envelope)
            if not caller.verified:
                envelope = replace(envelope, tenant=None)  # an unproven claim is not recorded
        else:
            refusal = caller
            envelope = replace(envelope, tenant=None)
        log.warning(
            "refused %s for workflow %s from %s: %s",
            envelope.type,
            body.workflow_id,
            message.headers.get("kflow-key-id", b"an unsigned producer").decode("utf-8", "replace"),
            refusal.reason,
        )
        return self._records([refusal_event(body, self._clock_ms(), refusal)], envelope, body)

    def _authorize(self, caller: Caller, body: Input, envelope: Envelope) -> Refusal | None:
        claims = [envelope.tenant]
        if isinstance(body, StartWorkflow):
            claims.append(body.tenant)
        wrong = [t for t in claims if t is not None and t != caller.tenant]
        state = self.table.get(body.workflow_id)
        return authorize(
            caller,
            body,
            wrong[0] if wrong else envelope.tenant,
            state.tenant if state is not None else None,
            state is not None,
        )

    def tick(self, now_ms: int) -> Sequence[OutRecord]:
        self.table.closed.expire(now_ms)
        out: list[OutRecord] = []
        for workflow_id in self.table.retained.expire(now_ms):
            # The retry window passed: the retained snapshot goes (ADR 0082).
            self.table.forget_finished(workflow_id)
            out.append(OutRecord(self.names.snapshots, workflow_id, None))
        for workflow_id, timer_id, due_at in self.timers.pop_due(now_ms, MAX_TIMERS_PER_TICK):
            self._fired.append((workflow_id, timer_id, due_at))
            partition = self.table.partition_of(workflow_id)
            state = self.table.get(workflow_id)
            if partition is None or state is None or is_terminal(state):
                continue
            self.stats.timers_fired += 1
            fired = TimerFired(workflow_id=workflow_id, timer_id=timer_id, due_at=due_at)
            if tracing.on():
                out.extend(self._traced(fired, partition, None, None, None, now_ms))
            else:
                out.extend(self._apply(fired, partition, None, now_ms))
        return out

    def end_batch(self) -> Sequence[OutRecord]:
        now = self._clock_ms()
        out: list[OutRecord] = []
        for state in self.table.staged():
            if is_terminal(state):
                # Same key and partition count as commands: lands in the commands partition.
                marker = encode_marker(ClosedMarker.of(state, now))
                # Retained for retries (tombstoned when the window passes), ADR 0082.
                kept = (
                    self._snapshots.encode(state, now)
                    if self.table.retained.window_ms and state.status in RETRYABLE_WORKFLOW
                    else None
                )
                out.append(OutRecord(self.names.snapshots, state.workflow_id, kept))
                out.append(OutRecord(self.names.closed, state.workflow_id, marker))
            else:
                encoded = self._snapshots.encode(state, now)
                headers = (
                    trace_headers(traceparent=self.traces.get(state.workflow_id))
                    if tracing.on()
                    else _NO_HEADERS
                )
                out.append(OutRecord(self.names.snapshots, state.workflow_id, encoded, headers))
        return out

    def committed(self) -> None:
        changed = self.table.commit()
        self.progress.update(changed)
        for state in changed:
            if is_terminal(state):
                self._snapshots.forget([state.workflow_id])
                self.traces.pop(state.workflow_id, None)
            else:
                events = self._batch_events.get(state.workflow_id, ())
                self.timers.schedule(
                    state.workflow_id, ((t.timer_id, t.due_at) for t in timers_for(state, events))
                )
        self._fired.clear()
        self._batch_events.clear()
        self.metrics.publish(len(self.table))

    def rolled_back(self, partitions: Sequence[PartitionId]) -> None:
        self.table.discard()
        self.metrics.discard()
        self._batch_events.clear()
        for workflow_id, timer_id, due_at in self._fired:
            self.timers.schedule(workflow_id, [(timer_id, due_at)])
        self._fired.clear()

    def on_assign(self, partitions: Sequence[PartitionId]) -> None:
        self._owned.update(p for p in partitions if p.topic in self._input_topics)
        numbers = {p.partition for p in self._owned} - self._loaded
        if not numbers:
            return
        closed = self._restore_closed(sorted(numbers))
        for number, markers in closed.items():
            self.table.load_closed(number, markers)
            self.stats.closed_restored += len(markers)
        self.table.closed.expire(self._clock_ms())
        restored = self._restore(sorted(numbers))
        for number, states in restored.items():
            self.table.load(number, states.values())
            self.progress.update(states.values())
            for state in states.values():
                self.timers.schedule(
                    state.workflow_id, ((t.timer_id, t.due_at) for t in pending_timers(state))
                )
            self.stats.restored += len(states)
        self._loaded.update(numbers)
        log.info(
            "restored %d workflows and %d closed ids of partitions %s",
            sum(map(len, restored.values())),
            sum(map(len, closed.values())),
            sorted(numbers),
        )

    def on_revoke(self, partitions: Sequence[PartitionId]) -> None:
        self._owned.difference_update(partitions)
        still = {p.partition for p in self._owned}
        gone = self._loaded - still
        if gone:
            dropped = self.table.drop_partitions(gone)
            self.progress.forget(dropped)
            self.timers.drop_workflows(dropped)
            self._snapshots.forget(dropped)
            for workflow_id in dropped:
                self.traces.pop(workflow_id, None)
            self._loaded -= gone
            log.info("dropped %d workflows of revoked partitions %s", len(dropped), sorted(gone))

    # -- internals -------------------------------------------------------------------------

    def _with_definition(self, command: StartWorkflow) -> StartWorkflow:
        definition = self._definitions(command.name, command.version)
        if definition is None:
            return command  # decide answers with WorkflowRejected(unknown_definition)
        return replace(command, definition=definition, version=definition.version)

    def _traced(
        self,
        command: Input,
        partition: int,
        envelope: Envelope | None,
        parent: tracing.Context | None,
        message: BusMessage[Envelope] | None,
        now: int | None = None,
    ) -> list[OutRecord]:
        """:meth:`_apply` inside a ``decide`` span; its outputs carry the span's context.

        The parent is the causing record's context, else the workflow's last decision.
        """
        workflow_id = command.workflow_id
        if parent is None:
            parent = tracing.context_of(self.traces.get(workflow_id))
        attributes: dict[str, str | int] = {"kflow.workflow_id": workflow_id}
        if message is not None:
            attributes |= {
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": message.topic,
                "messaging.destination.partition.id": str(message.partition),
                "messaging.kafka.offset": message.offset,
            }
        if isinstance(command, TimerFired):
            attributes["kflow.timer_id"] = command.timer_id
        span = tracing.tracer().start_span(
            f"decide {type(command).__name__}",
            context=parent,
            kind=tracing.SpanKind.CONSUMER if message is not None else tracing.SpanKind.INTERNAL,
            attributes=attributes,
        )
        try:
            traceparent = tracing.traceparent_of(span)
            headers = trace_headers(traceparent=traceparent)
            records = self._apply(command, partition, envelope, now, headers, span)
            if traceparent is not None and self.table.get(workflow_id) is not None:
                self.traces[workflow_id] = traceparent
            return records
        except Exception as e:
            span.record_exception(e)
            span.set_status(tracing.StatusCode.ERROR, str(e))
            raise
        finally:
            span.end()

    def _apply(
        self,
        command: Input,
        partition: int,
        envelope: Envelope | None,
        now: int | None = None,
        headers: Headers = _NO_HEADERS,
        span: tracing.Span | None = None,
    ) -> list[OutRecord]:
        now = self._clock_ms() if now is None else now
        state = self.table.get(command.workflow_id)
        if isinstance(command, RetryWorkflow):
            state, refusal = self._retry_state(command, partition, state, now)
            if refusal is not None:
                return self._records([refusal], envelope, command, headers)
        if (
            state is None
            and isinstance(command, StartWorkflow)
            and self.table.is_closed(partition, command.workflow_id)
        ):
            # Finished and its state gone (restart, rebalance, capacity): still a duplicate.
            key = envelope.idempotency_key if envelope is not None else None
            notice = duplicate_of_closed(command, now, key)
            return self._records([notice], envelope, command, headers)
        # decide_and_evolve returns the state decide built; evolving again would redo the work.
        events, after = decide_and_evolve(
            state,
            command,
            now,
            self._limits,
            envelope.idempotency_key if envelope is not None else None,
        )
        if span is not None:
            span.set_attribute("kflow.events", [type(e).__name__ for e in events])
        changes = [e for e in events if not is_notice(e)]
        new_state = after if changes else None
        records = self._records(events, envelope, command, headers)  # may raise: stage nothing
        if new_state is not None:
            self.table.stage(new_state, partition)
            self._batch_events.setdefault(new_state.workflow_id, []).extend(changes)
            self.metrics.saw(changes, new_state)
        return records

    def _load_retained(self, partition: int, workflow_id: str, now: int) -> WorkflowState | None:
        """The finished state of a retained run, read back from its snapshot partition when
        it is not in memory any more (rare: an operator's retry); None if not retained."""
        state = self.table.get(workflow_id)
        if state is not None or not self.table.retained.contains(partition, workflow_id, now):
            return state
        state = self._restore([partition]).get(partition, {}).get(workflow_id)
        if state is not None and is_terminal(state):
            self.table.remember_finished(state)
            return state
        return None

    def _retry_state(
        self, command: RetryWorkflow, partition: int, state: WorkflowState | None, now: int
    ) -> tuple[WorkflowState | None, Event | None]:
        """The state a retry is decided on, or the notice refusing it (ADR 0082).

        A finished run is retryable while its snapshot is retained; one not in memory is
        read back from its snapshot partition (rare: an operator's action).
        """
        workflow_id = command.workflow_id
        if state is not None and not is_terminal(state):
            return state, None  # decide answers not_retryable
        if self.table.retained.contains(partition, workflow_id, now):
            if state is None:
                state = self._load_retained(partition, workflow_id, now)
            if state is not None:
                return state, None
        elif state is None and not self.table.is_closed(partition, workflow_id):
            return None, None  # decide answers unknown_workflow
        elif state is not None and state.status not in RETRYABLE_WORKFLOW:
            return state, None  # decide answers not_retryable
        window = self.table.retained.window_ms
        reason = (
            "retries are disabled (retry_window_ms is 0)"
            if window == 0
            else f"the run finished more than the retry window ({window} ms) ago; "
            "start a new workflow instead"
        )
        notice = InputRejected(
            workflow_id=workflow_id,
            seq=0,
            at=now,
            cause=notice_cause(command),
            code="retry_window_passed",
            reason=reason,
            input_type="RetryWorkflow",
        )
        return None, notice

    def _records(
        self,
        events: list[Event],
        envelope: Envelope | None,
        command: Input,
        headers: Headers = _NO_HEADERS,
    ) -> list[OutRecord]:
        if envelope is not None:
            cause_id = envelope.event_id
            correlation = envelope.correlation_id or command.workflow_id
            actor, tenant = envelope.actor, envelope.tenant
        else:
            cause_id = command.timer_id if isinstance(command, TimerFired) else ""
            correlation, actor, tenant = command.workflow_id, None, None
        out: list[OutRecord] = []
        for index, event in enumerate(events):
            event_id = (
                f"{event.workflow_id}/{event.seq}" if event.seq else f"{cause_id}/notice{index}"
            )
            meta = envelope_meta(
                event,
                event_id=event_id,
                causation_id=cause_id or None,
                correlation_id=correlation,
                actor=actor,
                tenant=tenant,
            )
            out.append(
                OutRecord(
                    self.names.events,
                    event.workflow_id,
                    self._contracts.encode_body(event, meta),
                    headers,
                )
            )
            self.stats.events += 1
            if isinstance(event, StepScheduled) and event.kind == "task":
                out.append(self._task_record(event, correlation, actor, tenant, headers))
        return out

    def _task_record(
        self,
        event: StepScheduled,
        correlation: str,
        actor: str | None,
        tenant: str | None,
        headers: Headers,
    ) -> OutRecord:
        self._ensure_queue(event.queue)
        task = ExecuteStep(
            workflow_id=event.workflow_id,
            step_key=event.step_key,
            node_id=event.node_id,
            node_type=event.node_type,
            queue=event.queue,
            attempt=event.attempt,
            input=event.input,
            timeout_ms=event.timeout_ms or 0,
            heartbeat_timeout_ms=event.heartbeat_timeout_ms or 0,
            idempotency_key=event.idempotency_key,
            scheduled_at=event.at,
        )
        meta = envelope_meta(
            task,
            event_id=event.idempotency_key,
            causation_id=f"{event.workflow_id}/{event.seq}",
            correlation_id=correlation,
            actor=actor,
            tenant=tenant,
            idempotency_key=event.idempotency_key,
        )
        self.stats.tasks += 1
        return OutRecord(
            self.names.tasks(event.queue),
            event.step_key,
            self._contracts.encode_body(task, meta),
            headers,
        )
