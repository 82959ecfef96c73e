"""The node processor: consume one queue's tasks, run nodes, report results.

Threads: a Kafka thread owns the consumer (poll, rebalance, offset commits)
and serves producer callbacks; an asyncio loop runs up to ``concurrency``
steps at once (sync nodes in a thread pool). Offsets are committed only after
the step's result is delivered to ``{p}.results`` (at-least-once); the Redis
ledger turns a redelivery into a re-report of the recorded result.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from kflow.bus.clients import ConfigValue, consumer_config, producer_config
from kflow.bus.codec import AvroCodec
from kflow.bus.dead_letter import dead_letter_for, dead_letter_record
from kflow.bus.errors import DecodeError, FatalClientError, RecordTooLarge, is_fatal
from kflow.bus.layout import check_layout
from kflow.bus.message import TRACE_HEADER, OutRecord, header_map, record_size, trace_headers
from kflow.bus.topics import topic_names
from kflow.core.errors import ErrorClass
from kflow.core.inputs import StepError, StepHeartbeat, StepResult
from kflow.core.jsondoc import Json
from kflow.core.limits import DEFAULT_LIMITS, MAX_OUTPUT_RECORD_BYTES
from kflow.observability import tracing
from kflow.observability.health import HEALTH, Health, Outage
from kflow.observability.metrics import (
    CLIENT_FATAL,
    DLQ_RECORDS,
    EVENTS_IN,
    EVENTS_OUT,
    STEP_LATENCY,
)
from kflow.processor.executor import StepExecutor
from kflow.processor.failures import PayloadTooLarge
from kflow.processor.ledger import LEDGER_UNAVAILABLE, Outcome, RedisLedger
from kflow.processor.offsets import PartitionProgress
from kflow.processor.registry import NodeRegistry
from kflow.processor.wire import ExecuteStep, decode_task, encode_result

log = logging.getLogger(__name__)

LOW_LATENCY_CONSUMER: dict[str, ConfigValue] = {
    # Tasks are small and latency matters more than fetch efficiency.
    "fetch.wait.max.ms": 5,
    # A step may hold its slot for minutes; the Kafka thread keeps polling regardless.
    "max.poll.interval.ms": 600_000,
    # Processors share queues with plain (eager) assignment; no co-partitioning needed.
    "partition.assignment.strategy": "cooperative-sticky",
}
LOW_LATENCY_PRODUCER: dict[str, ConfigValue] = {
    # Send each result at once: the workflow's next step waits for it, and under load
    # librdkafka still batches what queues up while a produce request is in flight.
    "linger.ms": 0,
}
COMPONENT = "processor"
"""``component`` label of this service's metrics."""
MAX_FETCH = 200
"""Most tasks taken from the consumer at once (bounded by free slots)."""
LEDGER_PING_S = 1.0
"""How often the ledger's Redis is pinged for readiness (steps report outages at once)."""


@dataclass
class ProcessorConfig:
    """Settings of one processor process."""

    bootstrap: str
    topic_prefix: str
    queue: str
    redis_url: str
    concurrency: int = 16
    instance_id: str | None = None
    """Static group membership: a restart with the same id gets its partitions back at once."""
    ledger_ttl_s: int = 7 * 24 * 3600
    redis_key_prefix: str = "kflow"
    commit_interval_s: float = 0.2
    max_payload_bytes: int = DEFAULT_LIMITS.max_payload_bytes
    """Largest output (JSON bytes) a node may return; a larger one fails the step at once."""
    consumer_overrides: dict[str, ConfigValue] = field(default_factory=dict)
    producer_overrides: dict[str, ConfigValue] = field(default_factory=dict)

    @property
    def group_id(self) -> str:
        """One consumer group per queue: processors of a queue share its partitions."""
        return f"{self.topic_prefix}.processor.{self.queue}"


@dataclass
class ProcessorStats:
    """Counters since start."""

    executed: int = 0
    replayed: int = 0
    failed: int = 0
    dead_letters: int = 0


_Completion = tuple[TopicPartition, int, PartitionProgress]  # the progress it belongs to
_Accepted = tuple[ExecuteStep, _Completion, str | None]  # task, its offset, its traceparent


class ProcessorService:
    """One processor process for ``config.queue``."""

    def __init__(
        self, config: ProcessorConfig, nodes: NodeRegistry, health: Health = HEALTH
    ) -> None:
        if config.concurrency < 1:
            raise ValueError(f"--concurrency must be >= 1, got {config.concurrency}")
        self.config = config
        self.stats = ProcessorStats()
        self._names = topic_names(config.topic_prefix)
        self._task_topic = self._names.tasks(config.queue)
        check_layout(config.bootstrap, config.topic_prefix, [self._task_topic, self._names.results])
        self._tasks_in = EVENTS_IN.labels(COMPONENT, self._task_topic)
        self._codec = AvroCodec()
        self._nodes = nodes
        self._stop = threading.Event()
        self._completions: queue.Queue[_Completion] = queue.Queue()
        self._slots = threading.Semaphore(config.concurrency)
        self._progress: dict[tuple[str, int], PartitionProgress] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._health = health
        self._fatal: FatalClientError | None = None
        # Fatal errors come through poll() (consumer) or error_cb (either client); both stop
        # the service, which then raises from run() so that the process exits non-zero.
        self._producer: Producer = Producer(
            {
                **producer_config(
                    config.bootstrap,
                    overrides={**LOW_LATENCY_PRODUCER, **config.producer_overrides},
                ),
                "error_cb": lambda error: self._client_error("producer", error),
            }
        )
        self._consumer: Consumer = Consumer(
            {
                **consumer_config(
                    config.bootstrap,
                    config.group_id,
                    instance_id=config.instance_id,
                    overrides={**LOW_LATENCY_CONSUMER, **config.consumer_overrides},
                ),
                "error_cb": lambda error: self._client_error("consumer", error),
            }
        )

    def stop(self) -> None:
        """Ask the service to finish (in-flight steps are abandoned, not committed)."""
        self._stop.set()

    def run(self) -> None:
        """Run until :meth:`stop`; blocks the calling thread.

        Raises :class:`FatalClientError` when a Kafka client failed for good (the caller
        exits non-zero; a new process gets new clients).
        """
        asyncio.run(self._main())
        if self._fatal is not None:
            raise self._fatal

    def _client_error(self, client: str, error: KafkaError) -> None:
        """librdkafka's error callback: a fatal error stops the service, others are logged."""
        if is_fatal(error):
            self._failed(client, error)
        else:
            log.info("%s error (librdkafka retries): %s", client, error.str())

    def _failed(self, client: str, error: KafkaError) -> None:
        if self._fatal is None:
            self._fatal = FatalClientError(
                f"processor {client} for {self._task_topic} failed for good: {error.str()}; "
                "exiting so that a new process starts with new clients (is another processor "
                f"running with --instance {self.config.instance_id}?)"
                if self.config.instance_id
                else f"processor {client} for {self._task_topic} failed for good: "
                f"{error.str()}; exiting so that a new process starts with new clients"
            )
            CLIENT_FATAL.labels(COMPONENT, client).inc()
            self._health.fail(str(self._fatal))
            log.error("%s", self._fatal)
        self._stop.set()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="node")
        ledger = RedisLedger.from_url(
            self.config.redis_url, self.config.redis_key_prefix, self.config.ledger_ttl_s
        )
        outage = Outage("redis", health=self._health)
        executor = StepExecutor(
            self._nodes,
            ledger,
            pool,
            self._send_heartbeat,
            self.config.max_payload_bytes,
            outage=outage,
        )
        kafka_thread = threading.Thread(
            target=self._kafka_loop, args=(loop, executor), name="kafka", daemon=True
        )
        kafka_thread.start()
        watch = loop.create_task(self._watch_ledger(ledger, outage))
        try:
            while kafka_thread.is_alive():
                await asyncio.sleep(0.1)
        finally:
            watch.cancel()
            self._stop.set()
            await loop.run_in_executor(None, kafka_thread.join)
            # Steps still running are abandoned: their offsets were not committed, so the
            # next owner gets them again (and the ledger answers for any that finished).
            for running in list(self._running):
                running.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            await ledger.close()
            pool.shutdown(wait=False, cancel_futures=True)

    async def _watch_ledger(self, ledger: RedisLedger, outage: Outage) -> None:
        """Ping the ledger's Redis so readiness shows an outage even while no step runs."""
        while not self._stop.is_set():
            try:
                await ledger.ping()
            except LEDGER_UNAVAILABLE as e:
                await asyncio.sleep(outage.failed(e))
                continue
            outage.ok()
            await asyncio.sleep(LEDGER_PING_S)

    # -- Kafka thread ----------------------------------------------------------------------

    def _kafka_loop(self, loop: asyncio.AbstractEventLoop, executor: StepExecutor) -> None:
        self._consumer.subscribe(
            [self._task_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        self._health.report("kafka", True)
        last_commit = time.monotonic()
        try:
            while not self._stop.is_set():
                self._producer.poll(0)
                self._drain_completions()
                if time.monotonic() - last_commit >= self.config.commit_interval_s:
                    self._commit()
                    last_commit = time.monotonic()
                if not self._slots.acquire(timeout=0.05):
                    continue  # every slot busy: keep serving callbacks, fetch nothing
                free = 1
                while free < MAX_FETCH and self._slots.acquire(blocking=False):
                    free += 1
                # consume(n, t) waits the whole timeout unless n records arrive, so wait
                # for the first with poll() and take what is already buffered after it.
                first = self._consumer.poll(0.05)
                messages = [] if first is None else [first]
                if first is not None and free > 1:
                    messages += self._consumer.consume(free - 1, 0)
                for _ in range(free - len(messages)):
                    self._slots.release()
                batch = [d for d in (self._accept(m) for m in messages) if d is not None]
                if batch:
                    asyncio.run_coroutine_threadsafe(self._run_batch(batch, executor), loop)
        except Exception:
            log.exception("processor Kafka loop failed")
            raise
        finally:
            self._producer.flush(10)
            self._drain_completions()
            if self._fatal is None:
                self._commit()
            try:
                self._consumer.close()
            except KafkaException as e:  # a fatal consumer reports its error again on close
                log.info("closing the consumer: %s", e)

    def _accept(self, message: Message) -> _Accepted | None:
        """Track a consumed task's offset and decode it (poison goes to the DLQ: None)."""
        error = message.error()
        if error is not None:
            self._slots.release()
            if is_fatal(error):
                self._failed("consumer", error)
                return None
            log.warning("consumer error (librdkafka retries): %s", error.str())
            return None
        tp = TopicPartition(message.topic() or "", message.partition() or 0)
        offset = message.offset()
        assert offset is not None
        progress = self._progress.setdefault((tp.topic, tp.partition), PartitionProgress())
        progress.started(offset)
        self._tasks_in.inc()
        done = (tp, offset, progress)
        raw = message.value() or b""
        raw_bytes = raw.encode() if isinstance(raw, str) else raw
        try:
            task = decode_task(raw_bytes)
        except DecodeError as e:
            self._dead_letter(message, raw_bytes, e.reason.value, e, done)
            self._slots.release()
            return None
        parent = None
        if tracing.on():
            value = header_map(message).get(TRACE_HEADER)
            parent = value.decode("ascii", "replace") if value else None
        return task, done, parent

    def _drain_completions(self) -> None:
        while True:
            try:
                tp, offset, progress = self._completions.get_nowait()
            except queue.Empty:
                return
            # A partition revoked (and maybe assigned again) meanwhile has a new progress
            # object; the old task's offset is no longer ours to commit.
            if self._progress.get((tp.topic, tp.partition)) is progress:
                progress.finished(offset)

    def _commit(self) -> None:
        """Commit finished positions; a failed commit (e.g. during a rebalance) is retried
        on the next call because the position stays unacknowledged."""
        idle = [TopicPartition(t, p) for (t, p), pr in self._progress.items() if not pr.in_flight]
        if idle:
            # every task consumed so far is finished, so the consumer's position may count
            for tp in self._consumer.position(idle):
                if tp.offset >= 0:
                    self._progress[(tp.topic, tp.partition)].caught_up(tp.offset)
        offsets = []
        for (topic, partition), progress in self._progress.items():
            position = progress.to_commit()
            if position is not None:
                offsets.append(TopicPartition(topic, partition, position))
        if not offsets:
            return
        try:
            stored = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as e:
            log.info("offset commit failed, will retry: %s", e)
            return
        for tp in stored or ():
            owner = self._progress.get((tp.topic, tp.partition))
            if tp.error is None and owner is not None:
                owner.acknowledged(tp.offset)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", [(p.topic, p.partition) for p in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._drain_completions()
        self._commit()
        # Steps still running for revoked partitions are redelivered to the new owner.
        for p in partitions:
            self._progress.pop((p.topic, p.partition), None)

    # -- asyncio side ----------------------------------------------------------------------

    async def _run_batch(self, batch: list[_Accepted], executor: StepExecutor) -> None:
        """Look the whole batch up in the ledger at once, then run each task concurrently."""
        recorded = await executor.recorded([task for task, _, _ in batch])  # waits out outages
        loop = asyncio.get_running_loop()
        for (task, done, parent), outcome in zip(batch, recorded, strict=True):
            if tracing.on():
                work = self._run_traced(task, executor, done, outcome, parent)
            else:
                work = self._run_task(task, executor, done, outcome)
            running = loop.create_task(work)
            self._running.add(running)  # keep a reference until it finishes
            running.add_done_callback(self._running.discard)

    async def _run_traced(
        self,
        task: ExecuteStep,
        executor: StepExecutor,
        done: _Completion,
        recorded: Outcome | None,
        parent: str | None,
    ) -> None:
        """:meth:`_run_task` inside a ``step`` span (one per attempt, current while the node
        runs); the result carries the span's context back to the orchestrator."""
        span = tracing.tracer().start_span(
            f"step {task.node_id}",
            context=tracing.context_of(parent),
            kind=tracing.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": self._task_topic,
                "kflow.workflow_id": task.workflow_id,
                "kflow.step_key": task.step_key,
                "kflow.node_id": task.node_id,
                "kflow.node_type": task.node_type,
                "kflow.attempt": task.attempt,
                "kflow.idempotency_key": task.idempotency_key,
            },
        )
        # this coroutine runs as its own asyncio task: the context set here is its own
        with tracing.use_span(span, end_on_exit=True):
            await self._run_task(task, executor, done, recorded, span)

    async def _run_task(
        self,
        task: ExecuteStep,
        executor: StepExecutor,
        done: _Completion,
        recorded: Outcome | None = None,
        span: tracing.Span | None = None,
    ) -> None:
        started = time.monotonic()
        measured = False
        traceparent = tracing.traceparent_of(span) if span is not None else None
        headers = trace_headers(traceparent=traceparent)
        try:
            execution = await executor.execute(task, recorded, traceparent)
            measured = True
            outcome = execution.outcome
            if execution.replayed:
                self.stats.replayed += 1
            else:
                self.stats.executed += 1
                STEP_LATENCY.labels(task.node_type).observe(time.monotonic() - started)
            result: StepResult | StepError
            if outcome.ok:
                result = StepResult(
                    workflow_id=task.workflow_id,
                    step_key=task.step_key,
                    attempt=task.attempt,
                    output=outcome.output,
                )
            else:
                assert outcome.error_class is not None
                self.stats.failed += 1
                result = StepError(
                    workflow_id=task.workflow_id,
                    step_key=task.step_key,
                    attempt=task.attempt,
                    error_class=outcome.error_class,
                    error_type=outcome.error_type,
                    message=outcome.message,
                )
            if span is not None:
                _describe(span, execution.replayed, result)
            self._produce(
                OutRecord(self._names.results, task.workflow_id, encode_result(result), headers),
                on_done=done,
            )
        except Exception as e:
            # A bug or encoding trouble (ledger outages are waited out in the executor):
            # report a transient error so the step's retry policy decides, instead of
            # leaving the workflow waiting forever.
            if not measured:
                STEP_LATENCY.labels(task.node_type).observe(time.monotonic() - started)
            log.exception(
                "task %s failed inside the processor",
                task.step_key,
                extra={"workflow_id": task.workflow_id, "step_key": task.step_key},
            )
            failure = StepError(
                workflow_id=task.workflow_id,
                step_key=task.step_key,
                attempt=task.attempt,
                error_class=ErrorClass.TRANSIENT,
                error_type="ProcessorError",
                message=f"processor could not run the step: {e!r}"[:2000],
            )
            if span is not None:
                span.record_exception(e)
                _describe(span, False, failure)
            self._produce(
                OutRecord(self._names.results, task.workflow_id, encode_result(failure), headers),
                on_done=done,
            )
        finally:
            self._slots.release()

    def _send_heartbeat(self, task: Any, details: Any) -> None:
        size = Json.of(details).measure()
        if size > self.config.max_payload_bytes:
            raise PayloadTooLarge(
                f"heartbeat details are {size} bytes of JSON; the limit is "
                f"{self.config.max_payload_bytes} (KFLOW_MAX_PAYLOAD_BYTES)"
            )
        beat = StepHeartbeat(
            workflow_id=task.workflow_id,
            step_key=task.step_key,
            attempt=task.attempt,
            details=details,
        )
        self._produce(OutRecord(self._names.results, task.workflow_id, encode_result(beat)))

    def _produce(self, record: OutRecord, on_done: _Completion | None = None) -> None:
        completions = self._completions
        produced = EVENTS_OUT.labels(COMPONENT, record.topic)
        size = record_size(record)
        if size > MAX_OUTPUT_RECORD_BYTES:  # never hand librdkafka a record it must refuse
            raise RecordTooLarge(record.topic, size, MAX_OUTPUT_RECORD_BYTES)

        def callback(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                produced.inc()
                if on_done is not None:
                    completions.put(on_done)
            elif is_fatal(err):
                self._failed("producer", err)
            elif on_done is not None:  # not committed: redelivered, the ledger re-reports it
                log.error("result for %s not delivered: %s", record.key, err.str())

        headers: list[tuple[str, str | bytes | None]] | None = (
            list(record.headers.items()) if record.headers else None
        )
        while True:
            try:
                self._producer.produce(
                    record.topic, record.value, record.key, headers=headers, on_delivery=callback
                )
                return
            except BufferError:
                time.sleep(0.01)

    def _dead_letter(
        self, message: Message, raw: bytes, reason: str, error: Exception, done: _Completion
    ) -> None:
        self.stats.dead_letters += 1
        DLQ_RECORDS.labels(COMPONENT, message.topic() or "").inc()
        letter = dead_letter_for(message, raw, reason, error, time.time_ns() // 1_000_000)
        log.warning(
            "task %s[%s]@%s to the DLQ: %s", letter.topic, letter.partition, letter.offset, error
        )
        self._produce(dead_letter_record(letter, self._names.dlq, self._codec), on_done=done)


def _describe(span: tracing.Span, replayed: bool, result: StepResult | StepError) -> None:
    """Record a step attempt's outcome on its span (a failed attempt is an error span)."""
    span.set_attribute("kflow.replayed", replayed)
    if isinstance(result, StepError):
        span.set_attribute("kflow.error_class", result.error_class.value)
        span.set_attribute("error.type", result.error_type)
        span.set_status(tracing.StatusCode.ERROR, result.message[:200])
