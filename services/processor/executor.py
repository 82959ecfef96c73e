"""Run one step attempt: ledger check, input validation, timeout, heartbeats, error mapping.

No Kafka here: the service feeds tasks in and reports the returned Outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from kflow.bus.records import ExecuteStep
from kflow.core.errors import PermanentError
from kflow.core.jsondoc import Json
from kflow.core.limits import DEFAULT_LIMITS
from kflow.observability.health import Outage
from kflow.processor.context import StepContext
from kflow.processor.failures import PayloadTooLarge, StepTimeout, UnknownNodeType, classify
from kflow.processor.ledger import LEDGER_UNAVAILABLE, Outcome, RedisLedger
from kflow.processor.registry import NodeHandler, NodeRegistry

log = logging.getLogger(__name__)


HeartbeatSink = Callable[[ExecuteStep, Any], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Execution:
    """The outcome of a task and whether it came from the ledger (a redelivery)."""

    outcome: Outcome
    replayed: bool


def _failure_outcome(exc: BaseException) -> Outcome:
    failure = classify(exc)
    return Outcome(
        error_class=failure.error_class, error_type=failure.error_type, message=failure.message
    )


class StepExecutor:
    """Executes tasks against a node registry, recording outcomes in the ledger.

    A ledger (Redis) outage is kflow's own, never the step's: every ledger call waits it out
    with bounded backoff (``outage`` reports it to readiness, metrics and logs) instead of
    failing the attempt, so no retry budget is spent and no workflow fails (ADR 0033).
    """

    def __init__(
        self,
        nodes: NodeRegistry,
        ledger: RedisLedger,
        thread_pool: Executor,
        heartbeat: HeartbeatSink,
        max_payload_bytes: int = DEFAULT_LIMITS.max_payload_bytes,
        outage: Outage | None = None,
    ) -> None:
        self._nodes = nodes
        self._max_payload_bytes = max_payload_bytes
        self._ledger = ledger
        self._pool = thread_pool
        self._heartbeat = heartbeat
        self._outage = outage or Outage("redis")

    async def recorded(self, tasks: list[ExecuteStep]) -> list[Outcome | None]:
        """The ledger's outcome for each task (None: never finished), in one round trip."""
        keys = [t.idempotency_key for t in tasks]
        return await self._patiently(lambda: self._ledger.lookup_many(keys))

    async def execute(
        self, task: ExecuteStep, recorded: Outcome | None = None, traceparent: str | None = None
    ) -> Execution:
        """Outcome of ``task``: the recorded one if this attempt already finished.

        ``recorded`` is a ledger lookup the caller already made (see :meth:`recorded`);
        ``traceparent`` is the attempt's trace context, for :attr:`StepContext.traceparent`.
        """
        key = task.idempotency_key
        if recorded is None:
            recorded = await self._patiently(lambda: self._ledger.lookup(key))
        if recorded is not None:
            return Execution(recorded, replayed=True)
        outcome = await self._run(task, traceparent)
        stored = await self._patiently(lambda: self._ledger.record(key, outcome))
        return Execution(stored, replayed=False)

    async def _patiently(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` until the ledger answers; cancelled only when the processor stops."""
        while True:
            try:
                result = await call()
            except LEDGER_UNAVAILABLE as e:
                await asyncio.sleep(self._outage.failed(e))
                continue
            self._outage.ok()
            return result

    async def _run(self, task: ExecuteStep, traceparent: str | None = None) -> Outcome:
        handler = self._nodes.get(task.node_type)
        if handler is None:
            return _failure_outcome(
                UnknownNodeType(
                    f"node type {task.node_type!r} is not registered in this processor "
                    f"(known: {', '.join(self._nodes.names())}); start it with --nodes MODULE"
                )
            )
        ctx = StepContext(
            workflow_id=task.workflow_id,
            step_key=task.step_key,
            node_id=task.node_id,
            node_type=task.node_type,
            attempt=task.attempt,
            idempotency_key=task.idempotency_key,
            timeout_ms=task.timeout_ms,
            traceparent=traceparent,
            _heartbeat=functools.partial(self._heartbeat, task),
        )
        keepalive = self._start_keepalive(task)
        try:
            try:
                document = task.input.value  # the one parse of the input in this process
            except ValueError as exc:
                raise PermanentError(f"the task's input is not JSON: {exc}") from exc
            value = handler.parse_input(document)
            args = handler.call_args(value, ctx)
            if handler.inline and not handler.is_async:
                return self._finish(task, handler, handler.fn(*args))
            if handler.is_async:
                call = handler.fn(*args)
            else:
                loop = asyncio.get_running_loop()
                bound = functools.partial(contextvars.copy_context().run, handler.fn, *args)
                call = loop.run_in_executor(self._pool, bound)
            timeout_s = task.timeout_ms / 1000 if task.timeout_ms > 0 else None
            try:
                result = await asyncio.wait_for(call, timeout_s)
            except TimeoutError as exc:
                if timeout_s is None:
                    raise
                raise StepTimeout(f"step exceeded its timeout of {task.timeout_ms} ms") from exc
            return self._finish(task, handler, result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("step %s attempt %s failed: %r", task.step_key, task.attempt, exc)
            return _failure_outcome(exc)
        finally:
            if keepalive is not None:
                keepalive.cancel()

    def _finish(self, task: ExecuteStep, handler: NodeHandler, result: Any) -> Outcome:
        output = Json.of(handler.dump_output(result))
        try:
            size = output.measure()  # the one serialisation: ledger and result reuse the text
        except ValueError as exc:
            raise PermanentError(
                f"node {task.node_type!r} returned a value that is not JSON: {exc}"
            ) from exc
        if size > self._max_payload_bytes:
            # Checked here, not at the broker: the step fails once, clearly, and the
            # result record stays small (ADR 0027).
            raise PayloadTooLarge(
                f"node {task.node_type!r} returned {size} bytes of JSON; the limit is "
                f"{self._max_payload_bytes} (KFLOW_MAX_PAYLOAD_BYTES): return a reference "
                "to the data (a URL or a key) instead of the data"
            )
        return Outcome(output=output)

    def _start_keepalive(self, task: ExecuteStep) -> asyncio.Task[None] | None:
        """Heartbeat at a third of the heartbeat timeout so a live step never looks dead."""
        if task.heartbeat_timeout_ms <= 0:
            return None
        interval = max(task.heartbeat_timeout_ms / 3000, 0.05)

        async def beat() -> None:
            while True:
                await asyncio.sleep(interval)
                self._heartbeat(task, None)

        return asyncio.get_running_loop().create_task(beat())
