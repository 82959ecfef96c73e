"""The exactly-once consume-transform-produce loop; the only code that runs Kafka transactions.

One iteration: collect up to ``batch_size`` records (at most ``max_batch_ms``),
begin a transaction, decode each record and hand it to the handler, produce
its outputs (undecodable records and non-retryable handler errors go to the
DLQ instead), add the outputs of ``handler.tick(now)`` and
``handler.end_batch()``, send the consumed offsets to the transaction with the
consumer group metadata (KIP-447) and commit. Then ``handler.committed()``.

On any failure the transaction is aborted (or, when its outcome is unknown,
the producer is recreated with the same ``transactional.id``, which makes the
broker finish or abort it), the consumer is rewound to the committed offsets
and ``handler.rolled_back(partitions)`` tells the owner to drop state changes
made since the last commit. The batch is then processed again. A commit whose
outcome stays unknown (it timed out and was never confirmed, or the producer
failed for good while committing) may have been committed by the broker: then
``handler.reload(partitions)`` reads the owner's state back from the log too.
Every Kafka call is bounded and recovery never gives up while the servers are
away: the stall shows as a log line, ``kflow_transactions_stalled_seconds`` and
readiness (``kafka``). The rules per librdkafka error class are in ADR 0008.

No single input can make batches fail for good (ADR 0027): every output is checked
against the record limit before it is produced (an input whose output is too large goes
to the DLQ, ``output_too_large``), and a batch that fails twice because of a record the
broker refuses is split until the one record at fault is found and dead-lettered
(``batch_failed``; see :mod:`kflow.bus.isolation`). Server failures are only retried.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from kflow.bus.clients import consumer_config, producer_config
from kflow.bus.codec import AvroCodec
from kflow.bus.dead_letter import HANDLER_ERROR, dead_letter_for, dead_letter_record
from kflow.bus.eos_handler import EosConfig, Handler, LoopStats, PartitionId, system_clock_ms
from kflow.bus.errors import (
    DecodeError,
    FatalClientError,
    RecordTooLarge,
    RetryableError,
    TransactionError,
    is_fatal,
)
from kflow.bus.isolation import OUTPUT_TOO_LARGE, BatchIsolation, Coordinates, Fault
from kflow.bus.message import BusMessage, OutRecord, header_map, key_text, record_size
from kflow.core.limits import MAX_OUTPUT_RECORD_BYTES, RECORD_FRAMING_BYTES
from kflow.observability.health import HEALTH, Health
from kflow.observability.metrics import TRANSACTION_RECOVERIES, TRANSACTIONS_STALLED
from kflow.observability.tally import BatchTally

__all__ = ["EosConfig", "EosLoop", "Handler", "LoopStats", "PartitionId", "system_clock_ms"]

log = logging.getLogger(__name__)

T = TypeVar("T")

RECORD_FAULTS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError._BAD_MSG,
    }
)
"""Kafka errors caused by a record's content: the same records fail the same way again."""

STUCK_CALL_MARGIN_S = 5.0
"""Beyond twice its own timeout, a Kafka call is taken to be stuck (see _send_offsets)."""


def _wrapped(message: Message, raw: bytes, value: T) -> BusMessage[T]:
    """The handler's view of a consumed record and its decoded value."""
    return BusMessage(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=key_text(message.key()),
        raw=raw,
        value=value,
        headers=header_map(message),
        timestamp_ms=message.timestamp()[1],
    )


class EosLoop(Generic[T]):
    """Consume ``config.topics``, transform with ``handler``, produce exactly once."""

    def __init__(
        self,
        config: EosConfig,
        handler: Handler[T],
        decode: Callable[[bytes], T],
        *,
        codec: AvroCodec | None = None,
        clock_ms: Callable[[], int] = system_clock_ms,
        health: Health = HEALTH,
    ) -> None:
        self.config = config
        self._health = health
        self._kafka_down = False
        self.handler = handler
        self.decode = decode
        self.codec = codec or AvroCodec()
        self.clock_ms = clock_ms
        self.stats = LoopStats()
        self._tally = BatchTally(config.component)
        self._consumer_config = consumer_config(
            config.bootstrap,
            config.group_id,
            instance_id=config.instance_id if config.static_membership else None,
            overrides=config.consumer_overrides,
        )
        self._producer_config = producer_config(
            config.bootstrap,
            transactional_id=config.transactional_id,
            overrides=config.producer_overrides,
        )
        # One source for the size check: the producer's own request limit (ADR 0027).
        request_limit = int(self._producer_config["message.max.bytes"])
        self.max_record_bytes = min(MAX_OUTPUT_RECORD_BYTES, request_limit - RECORD_FRAMING_BYTES)
        """Largest key + value + headers produced; a larger output is never sent."""
        self.isolation = BatchIsolation(config.batch_size)
        timeout_ms = int(self._producer_config["transaction.timeout.ms"])
        self._txn_timeout_s = timeout_ms / 1000
        # Stop adding records well before the broker would abort the transaction.
        self._txn_budget_s = timeout_ms / 1000 / 2 - config.kafka_timeout_s
        if self._txn_budget_s < config.max_batch_ms / 1000:
            raise ValueError(
                f"transaction.timeout.ms={timeout_ms} is too short for kafka_timeout_s="
                f"{config.kafka_timeout_s}; raise it to at least "
                f"{int((config.kafka_timeout_s + 1) * 2000)}"
            )
        self._pending: list[Message] = []
        self._assigned: set[PartitionId] = set()
        self._backoff_s = 0.0
        self._blamed_now = False
        self._abandoned: set[Producer] = set()
        """Producers left to a helper thread whose call never returned (see _send_offsets)."""
        self._stalled_since: float | None = None
        """When transactions began failing (monotonic); None while they commit."""
        self._producer = self._new_producer(startup=True)
        self._no_broker = False
        """librdkafka said no broker answers (set from the consumer's error callback)."""
        self._client_fatal: KafkaError | None = None
        self._consumer = Consumer({**self._consumer_config, "error_cb": self._on_client_error})
        self._consumer.subscribe(
            list(config.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        health.report("kafka", True)

    # -- lifecycle -------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Run iterations until ``should_stop()`` is true, then close."""
        try:
            while not should_stop():
                self.run_once()
        finally:
            self.close()

    def close(self) -> None:
        """Leave the group and release the clients (no transaction is open between batches)."""
        self._consumer.close()
        try:
            self._producer.close()
        except KafkaException as e:
            log.info("closing the producer: %s", e)

    def assignment(self) -> list[PartitionId]:
        """The partitions this instance owns now."""
        return sorted(self._assigned)

    # -- one iteration ---------------------------------------------------------------------

    def run_once(self) -> int:
        """Collect, process and commit one batch; the number of consumed records committed."""
        if self._backoff_s:
            time.sleep(self._backoff_s)
        self._tally.discard()  # counts of an aborted attempt are counted again on retry
        self._blamed_now = False
        batch = self._collect()
        in_transaction = False
        committing = False
        processed = 0
        try:
            offsets: dict[PartitionId, int] = {}
            if not batch:
                outputs = [*self.handler.tick(self.clock_ms()), *self.handler.end_batch()]
                if not outputs:
                    if self._no_broker:
                        self._probe_broker()
                    return 0
                self._producer.begin_transaction()
                in_transaction = True
                self._produce_all(outputs)
            else:
                self._producer.begin_transaction()
                in_transaction = True
                offsets, processed = self._process(batch)
                self._produce_all(self.handler.tick(self.clock_ms()))
                self._produce_all(self.handler.end_batch())
            if offsets:
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("committing %s", _offset_spans(batch))
                self._send_offsets(
                    [TopicPartition(p.topic, p.partition, o) for p, o in sorted(offsets.items())]
                )
            committing = True
            self._commit()
        except (KafkaException, RetryableError, RecordTooLarge) as e:
            self._recover(e, in_transaction, batch, committing)
            return 0
        except BaseException:
            # A bug in tick/end_batch (or an interrupt): abort so nothing half-done stays
            # open until the broker's timeout, then let the owner crash and restart.
            if in_transaction:
                self._abort_quietly()
            raise
        self.stats.commits += 1
        self.stats.records_in += processed
        self.isolation.committed(offsets)
        self._backoff_s = 0.0
        self._kafka_back("transactions commit again (they failed for %.1fs)")
        self._tally.publish()
        self.handler.committed()
        return processed

    def _on_client_error(self, error: KafkaError) -> None:
        """The consumer's error callback (runs inside ``poll``, on the loop's thread): an
        idle loop learns of an outage here, since no transaction fails."""
        if is_fatal(error):
            self._client_fatal = error
        elif error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._no_broker = True
            self._stall(f"no broker answers: {error.str()}")

    def _probe_broker(self) -> None:
        """While idle after "no broker answers": ask for metadata (bounded) to see one again."""
        try:
            self._consumer.list_topics(self.config.topics[0], timeout=1.0)
        except KafkaException:
            return
        self._no_broker = False
        self._kafka_back("a broker answers again (after %.1fs)")

    def _kafka_back(self, message: str) -> None:
        """Ready again after a stall: say so once (``message`` takes the stall's seconds)."""
        if self._kafka_down:
            self._kafka_down = False
            self._health.report("kafka", True)
            stalled_s = time.monotonic() - (self._stalled_since or time.monotonic())
            log.warning(message, stalled_s)
        self._stalled_since = None
        self._measure_stall()

    def _collect(self) -> list[Message]:
        """Carried-over records plus new ones, until the batch is full or time is up."""
        deadline = time.monotonic() + self.config.max_batch_ms / 1000
        limit = self.isolation.limit  # smaller while a failing batch is being split
        while len(self._pending) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wanted = limit - len(self._pending)
            # consume(n, t) waits all of t unless n records arrive, so wait for the first
            # record with poll() (1 ms floor: librdkafka rounds shorter timeouts to 0 and
            # the loop would spin), then take only what is already buffered; under load the
            # transaction round trips make the batches (see docs/adr/0031).
            if self._pending:
                got = self._consumer.consume(wanted, 0)
                if not got:
                    break
            else:
                first = self._consumer.poll(max(remaining, 0.001))
                got = [] if first is None else [first]
            if self._client_fatal is not None:
                raise FatalClientError(self._fatal_message(self._client_fatal))
            for message in got:
                error = message.error()
                if error is None:
                    self._pending.append(message)
                elif is_fatal(error):
                    raise FatalClientError(self._fatal_message(error))
                else:
                    log.warning("consumer error (librdkafka retries): %s", error.str())
        # A revoke served inside consume() may come with records of the revoked partitions
        # in the same call: never process (or commit offsets for) partitions we do not own.
        batch = [m for m in self._pending[:limit] if self._owns(m)]
        self._pending = self._pending[limit:]
        return batch

    def _fatal_message(self, error: KafkaError) -> str:
        who = self.config.component
        if self.config.static_membership and self.config.instance_id:
            who += f" --instance {self.config.instance_id}"
        return (
            f"{who}: the consumer failed for good ({error.str()}); exiting so that a new process "
            "starts with new clients (is another process running with the same instance?)"
        )

    def _owns(self, message: Message) -> bool:
        return PartitionId(message.topic() or "", message.partition() or 0) in self._assigned

    def _process(self, batch: list[Message]) -> tuple[dict[PartitionId, int], int]:
        """Handle records in order; carry the rest over if the transaction budget runs out."""
        started = time.monotonic()
        offsets: dict[PartitionId, int] = {}
        for index, message in enumerate(batch):
            if time.monotonic() - started > self._txn_budget_s:
                self._pending = batch[index:]
                log.warning("batch took over %.1fs; committing early", self._txn_budget_s)
                return offsets, index
            try:
                self._produce_all(self._handle_one(message))
            except RecordTooLarge as e:
                # Known culprit: roll back, then its next delivery goes to the DLQ.
                self.isolation.blame(
                    _coordinates(message), Fault(OUTPUT_TOO_LARGE, type(e).__name__, str(e))
                )
                self._blamed_now = True
                raise
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None
            offsets[PartitionId(topic, partition)] = offset + 1
            self._tally.consumed(topic)
        return offsets, len(batch)

    def _handle_one(self, message: Message) -> Sequence[OutRecord]:
        raw = message.value()
        fault = self.isolation.fault_of(_coordinates(message)) if self.isolation.blaming else None
        if fault is not None:
            return self._isolate(message, raw, fault)
        raw_bytes = raw.encode() if isinstance(raw, str) else (raw or b"")
        try:
            value = self.decode(raw_bytes)
        except DecodeError as e:
            return [self._dead_letter(message, raw, e.reason.value, e)]
        wrapped = _wrapped(message, raw_bytes, value)
        try:
            return self.handler.handle(wrapped)
        except RetryableError:
            raise
        except Exception as e:  # non-retryable by contract: dead-letter, keep moving
            log.warning(
                "handler rejected %s[%s]@%s: %r",
                wrapped.topic,
                wrapped.partition,
                wrapped.offset,
                e,
            )
            return [self._dead_letter(message, raw, HANDLER_ERROR, e)]

    def _isolate(self, message: Message, raw: str | bytes | None, fault: Fault) -> list[OutRecord]:
        """The dead letter of a blamed record, plus the handler's answer to it, if any."""
        self.stats.isolated += 1
        where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
        log.error("%s to the DLQ (%s): %s", where, fault.reason, fault.message)
        out = [self._dead_letter(message, raw, fault.reason, (fault.error_type, fault.message))]
        if fault.reason != OUTPUT_TOO_LARGE:
            return out  # the broker refused something: answer with nothing it could refuse
        try:
            raw_bytes = raw.encode() if isinstance(raw, str) else (raw or b"")
            value = self.decode(raw_bytes)
            wrapped = _wrapped(message, raw_bytes, value)
            answer = self.handler.refused(wrapped, fault.reason, fault.message)
        except Exception as e:  # the answer is a courtesy: never let it block the partition
            log.warning("no answer to the dead-lettered %s: %r", where, e)
            return out
        return out + [r for r in answer if record_size(r) <= self.max_record_bytes]

    def _dead_letter(
        self,
        message: Message,
        raw: str | bytes | None,
        reason: str,
        error: Exception | tuple[str, str],
    ) -> OutRecord:
        self.stats.dead_letters += 1
        self._tally.dead_lettered(message.topic() or "")
        letter = dead_letter_for(message, raw, reason, error, self.clock_ms())
        return dead_letter_record(
            letter, self.config.dlq_topic, self.codec, max_bytes=self.max_record_bytes
        )

    def _produce_all(self, records: Sequence[OutRecord]) -> None:
        """Produce ``records`` into the open transaction, none if one is over the limit."""
        limit = self.max_record_bytes
        for record in records:
            size = record_size(record)
            if size > limit:
                raise RecordTooLarge(record.topic, size, limit)
        for record in records:
            headers: list[tuple[str, str | bytes | None]] | None = (
                list(record.headers.items()) if record.headers else None
            )
            while True:
                try:
                    self._producer.produce(record.topic, record.value, record.key, headers=headers)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    self._producer.poll(0.05)
            self.stats.records_out += 1
            self._tally.produced(record.topic)
        self._producer.poll(0)

    def _send_offsets(self, offsets: list[TopicPartition]) -> None:
        """``send_offsets_to_transaction``, waited for no longer than its own timeout allows.

        librdkafka 2.16 does not enforce that call's timeout, and when the group coordinator's
        broker went away it can block for ever (librdkafka issues 5456, 5511; in the cluster
        test 1 run in 4 of a 40 s outage). So the call runs on a helper thread; when it has
        not returned in time its producer is left to that thread (never touched again: its
        transaction is fenced by the next producer) and the batch recovers as from a fatal
        error (ADR 0008).
        """
        producer = self._producer
        metadata = self._consumer.consumer_group_metadata()
        timeout_s = self.config.kafka_timeout_s
        done = threading.Event()
        failure: list[BaseException] = []

        def call() -> None:
            try:
                producer.send_offsets_to_transaction(offsets, metadata, timeout_s)
            except BaseException as e:  # handed to the loop's thread
                failure.append(e)
            finally:
                done.set()

        started = time.monotonic()
        threading.Thread(target=call, name="eos-send-offsets", daemon=True).start()
        if not done.wait(2 * timeout_s + STUCK_CALL_MARGIN_S):
            if self._stalled_since is None:  # the stall began when the call did
                self._stalled_since = started
            self._abandoned.add(producer)
            self._count("abandon_producer")
            raise KafkaException(
                KafkaError(
                    KafkaError._TIMED_OUT,
                    f"send_offsets_to_transaction did not return within {2 * timeout_s:.0f}s "
                    "(its timeout is not enforced by librdkafka); replacing the producer",
                    fatal=True,
                )
            )
        if failure:
            raise failure[0]

    def _commit(self) -> None:
        """``commit_transaction``, called again while librdkafka says it can be resumed.

        A retriable error (a timeout: the coordinator did not answer in time) leaves the
        outcome unknown; calling commit again resumes the same commit until it is confirmed,
        refused (abortable or fatal: the caller recovers) or ``transaction.timeout.ms`` has
        passed (then the outcome stays unknown and the caller reloads, ADR 0008).
        """
        deadline = time.monotonic() + self._txn_timeout_s
        while True:
            try:
                self._producer.commit_transaction(self.config.kafka_timeout_s)
                return
            except KafkaException as e:
                error = _kafka_error(e)
                resumable = (
                    error is not None
                    and error.retriable()
                    and not error.txn_requires_abort()
                    and not error.fatal()
                )
                if not resumable or time.monotonic() >= deadline:
                    raise
                assert error is not None
                self._count("commit_resumed")
                self._stall(f"commit not confirmed yet: {error.str()}")

    # -- failure handling ------------------------------------------------------------------

    def _recover(
        self,
        error: Exception,
        in_transaction: bool,
        batch: Sequence[Message],
        committing: bool = False,
    ) -> None:
        """Abort (or fence by recreating the producer), rewind, tell the owner.

        A failure caused by the records (not the servers) feeds the isolation search.
        ``committing``: the error came from ``commit_transaction``, so the broker may have
        committed; unless the error says the transaction must be aborted (then it did not
        commit), the owner reloads its state from the log (ADR 0008).
        """
        self.stats.aborts += 1
        log.warning("transaction failed, rewinding to committed offsets: %s", error)
        record_fault = _is_record_fault(error)
        if record_fault and not self._blamed_now:  # culprit unknown: narrow the batch down
            self.isolation.batch_failed([_coordinates(m) for m in batch], error)
        if not record_fault:  # a bad record is the isolation search's business, not readiness
            self._kafka_down = True
            self._stall(f"transaction failed: {error}", warn=False)
        outcome_known = True
        kafka_error = _kafka_error(error) if isinstance(error, KafkaException) else None
        if isinstance(error, KafkaException):
            abortable = (
                kafka_error is not None
                and kafka_error.txn_requires_abort()
                and not kafka_error.fatal()
            )
            if not abortable or not in_transaction:
                # Timeout, fenced, fatal or bad state: never retry the commit blindly. A new
                # producer with the same transactional.id fences this one; the broker then
                # completes or aborts its transaction before init_transactions returns.
                outcome_known = not committing
                self._restart_producer()
                in_transaction = False
        if in_transaction:
            try:
                self._producer.abort_transaction(self.config.kafka_timeout_s)
                self._count("abort")
            except KafkaException as abort_error:  # aborted either way: it never committed
                log.warning("abort failed (%s); recreating the producer", abort_error)
                self._restart_producer()
        self._pending = []
        self._rewind()
        self.handler.rolled_back(self.assignment())
        if not outcome_known:
            # The broker may have committed it: in-memory state rolled back to before the
            # batch while the log and the offsets moved on would strand every workflow of
            # the batch (issue 13). Read the state back from the log: right either way.
            self.stats.reloads += 1
            self._count("reload")
            log.warning(
                "the outcome of the last commit is unknown (%s); reading the state of %d "
                "partitions back from the log",
                error,
                len(self.assignment()),
            )
            self.handler.reload(self.assignment())
        if record_fault and batch:
            self._backoff_s = 0.0  # the same records fail the same way: no point waiting
        else:
            self._backoff_s = min(max(self._backoff_s * 2, 0.1), 5.0)

    def _abort_quietly(self) -> None:
        try:
            self._producer.abort_transaction(self.config.kafka_timeout_s)
        except KafkaException as e:
            log.warning("abort after an unexpected error failed: %s", e)

    def _new_producer(self, startup: bool = False) -> Producer:
        """A producer with transactions initialised (this fences every older one).

        At start-up a broker that does not answer within six Kafka timeouts is an error
        the user sees; during recovery it is an outage: wait for it, visibly, for ever.
        """
        producer = Producer(self._producer_config)
        deadline = time.monotonic() + 6 * self.config.kafka_timeout_s
        while True:
            try:
                producer.init_transactions(self.config.kafka_timeout_s)
                return producer
            except KafkaException as e:
                err = _kafka_error(e)
                if err is None or not err.retriable() or (startup and time.monotonic() > deadline):
                    detail = err.str() if err is not None else str(e)
                    raise TransactionError(
                        f"init_transactions for {self.config.transactional_id} failed: "
                        f"{detail}; is the broker up and transactional.id unique?"
                    ) from e
                if not startup:
                    self._stall(f"init_transactions: {err.str()}")

    def _restart_producer(self) -> None:
        self.stats.producer_restarts += 1
        self._count("new_producer")
        old = self._producer
        if old in self._abandoned:  # a call is still blocked in it: leave it to that thread
            self._abandoned.discard(old)
            log.error(
                "a Kafka call of the old producer never returned; it is abandoned (its "
                "transaction is fenced by the new producer)"
            )
        else:
            # Not close(): it waits for ever for an abort and a flush while the broker is
            # away. Purge, flush what the purge reports (bounded), and let it be destroyed.
            try:
                old.purge()
                old.flush(self.config.kafka_timeout_s)
            except KafkaException as e:  # a fenced/fatal producer reports its error here
                log.info("closing the failed producer: %s", e)
        del old
        self._producer = self._new_producer()  # new epoch; the broker settles the old txn

    def _rewind(self) -> None:
        """Seek every owned partition back to its committed offset."""
        owned = [TopicPartition(p.topic, p.partition) for p in self.assignment()]
        if not owned:
            return
        reset = str(self._consumer_config.get("auto.offset.reset", "earliest"))
        fallback = OFFSET_END if reset in ("latest", "largest", "end") else OFFSET_BEGINNING
        committed = self._committed_offsets(owned)
        targets = [
            TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else fallback)
            for tp in committed
        ]
        log.debug("rewinding to %s", [(t.topic, t.partition, t.offset) for t in targets])
        failed: list[TopicPartition] = []
        for target in targets:
            try:
                self._consumer.seek(target)
            except KafkaException:  # not fetching yet (just assigned)
                failed.append(target)
        if not failed:
            return
        log.debug("seek failed for %s; re-assigning", [(t.partition, t.offset) for t in failed])
        try:  # cooperative protocol: re-add those partitions at the offset
            self._consumer.incremental_unassign(
                [TopicPartition(t.topic, t.partition) for t in failed]
            )
            self._consumer.incremental_assign(failed)
        except KafkaException:  # eager protocol: set the whole assignment with offsets
            self._consumer.assign(targets)

    def _committed_offsets(self, owned: list[TopicPartition]) -> list[TopicPartition]:
        """Committed offsets, waiting out transactions still pending on them.

        A partition taken over from a dead instance has its open transaction's offsets
        pending until the broker aborts it (up to ``transaction.timeout.ms``), and a
        coordinator that is away answers nothing: each call is bounded, and the loop
        retries for as long as it takes (visibly), since without the committed offsets it
        cannot rewind safely. A partition returned with an error is retried too (its
        offset is not "none committed": rewinding it to the start would redo the log).
        """
        while True:
            try:
                offsets = self._consumer.committed(owned, self.config.kafka_timeout_s)
            except KafkaException as e:
                self._stall(f"committed offsets not available yet: {e}")
            else:
                failed = [tp for tp in offsets if tp.error is not None]
                if not failed:
                    return offsets
                self._stall(
                    "committed offsets not available yet: "
                    + ", ".join(f"{tp.topic}[{tp.partition}]: {tp.error}" for tp in failed[:3])
                )
            time.sleep(min(1.0, self.config.kafka_timeout_s))  # never a busy loop

    # -- stall visibility --------------------------------------------------------------------

    def _stall(self, detail: str, warn: bool = True) -> None:
        """Transactions cannot go on now: log it, not ready (``kafka``), gauge the stall."""
        now = time.monotonic()
        if self._stalled_since is None:
            self._stalled_since = now
        self._kafka_down = True
        stalled_s = now - self._stalled_since
        self._health.report("kafka", False, f"transactions stalled {stalled_s:.0f}s: {detail}")
        self._measure_stall()
        if warn:
            log.warning("transactions stalled for %.1fs: %s", stalled_s, detail)

    def _measure_stall(self) -> None:
        if self.config.component:
            since = self._stalled_since
            TRANSACTIONS_STALLED.labels(self.config.component).set(
                0.0 if since is None else time.monotonic() - since
            )

    def _count(self, action: str) -> None:
        if self.config.component:
            TRANSACTION_RECOVERIES.labels(self.config.component, action).inc()

    # -- rebalance callbacks (run inside consume(), never during a transaction) -------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        ids = [PartitionId(tp.topic, tp.partition) for tp in partitions]
        log.debug("assigned %s", [(tp.partition, tp.offset) for tp in partitions])
        self._assigned.update(ids)
        self.handler.on_assign(ids)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.debug("lost %s", [tp.partition for tp in partitions])
        self._on_revoke(consumer, partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        ids = {PartitionId(tp.topic, tp.partition) for tp in partitions}
        log.debug("revoked %s", sorted(p.partition for p in ids))
        self._assigned.difference_update(ids)
        self.isolation.forget(sorted(ids))
        self._pending = [
            m for m in self._pending if PartitionId(m.topic() or "", m.partition() or 0) not in ids
        ]
        self.handler.on_revoke(sorted(ids))


def _coordinates(message: Message) -> Coordinates:
    return Coordinates(message.topic() or "", message.partition() or 0, message.offset() or 0)


def _kafka_error(error: KafkaException) -> KafkaError | None:
    """The ``KafkaError`` a confluent-kafka exception carries, if any."""
    first = error.args[0] if error.args else None
    return first if isinstance(first, KafkaError) else None


def _is_record_fault(error: Exception) -> bool:
    """Whether ``error`` comes from the records' content (so retrying them fails again)."""
    if isinstance(error, RecordTooLarge):
        return True
    if isinstance(error, KafkaException) and error.args:
        kafka_error = error.args[0]
        return isinstance(kafka_error, KafkaError) and kafka_error.code() in RECORD_FAULTS
    return False


def _offset_spans(batch: Sequence[Message]) -> dict[str, tuple[int, int]]:
    """``topic[partition] -> (first, last offset)`` of a batch, for the debug log."""
    spans: dict[str, tuple[int, int]] = {}
    for message in batch:
        where = f"{message.topic()}[{message.partition()}]"
        offset = message.offset() or 0
        spans[where] = (spans.get(where, (offset, offset))[0], offset)
    return spans


def produce_in_one_transaction(
    bootstrap: str,
    transactional_id: str,
    prepare: Callable[[], Sequence[OutRecord]],
    timeout_s: float = 30.0,
) -> Sequence[OutRecord]:
    """Produce what ``prepare()`` returns in one transaction, as the only holder of the id.

    ``init_transactions`` fences every other producer with ``transactional_id`` (their open
    transaction is aborted, their commit fails), and ``prepare`` runs after it: what it reads
    ``read_committed`` is everything the previous holders committed. So check-then-write
    steps that share an id never both commit (the DLQ redrive markers use this, ADR 0083).
    Raises ``TransactionError`` when the transaction did not commit (nothing was written).
    """
    producer = Producer(producer_config(bootstrap, transactional_id=transactional_id))
    try:
        producer.init_transactions(timeout_s)
        records = prepare()
        if not records:
            return records
        producer.begin_transaction()
        for record in records:
            producer.produce(
                record.topic,
                key=record.key.encode() if record.key is not None else None,
                value=record.value,
                headers=list(record.headers.items()) or None,
            )
        producer.commit_transaction(timeout_s)
        return records
    except KafkaException as e:
        with contextlib.suppress(KafkaException):
            producer.abort_transaction(timeout_s)
        error = e.args[0] if e.args else e
        raise TransactionError(f"the transaction {transactional_id} did not commit: {error}") from e
    finally:
        producer.flush(timeout_s)
