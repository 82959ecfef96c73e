"""The projector loop: consume ``{p}.events`` (and definitions), apply batches to a sink.

The sink owns where its offsets live. The PostgreSQL sink stores them with the
rows and the consumer seeks to them on every assignment; the Redis sink is
idempotent by ``seq`` and uses the group's committed offsets. Either way the
group's Kafka offsets are committed after each applied batch, so ``kflow lag``
shows projection lag.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from kflow.bus.clients import make_consumer, make_producer
from kflow.bus.contracts import default_contracts
from kflow.bus.dead_letter import UNPROJECTABLE, dead_letter_for, dead_letter_record
from kflow.bus.errors import FatalClientError, is_fatal
from kflow.bus.topics import TopicNames
from kflow.observability.health import HEALTH, STARTUP, Outage
from kflow.observability.metrics import CLIENT_FATAL, DLQ_RECORDS, PROJECTION_ERRORS
from kflow.projections.decoding import Decoder
from kflow.projections.errors import ReadSideUnavailable
from kflow.projections.log_event import DefinitionRecord, LogEvent, Poison
from kflow.projections.postgres import BatchResult, Partition
from kflow.projections.refusals import Record, apply_or_split

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where a projector writes; ``apply`` is all-or-nothing, and leaves the sink usable."""

    projection: str
    reads_definitions: bool
    """Whether it keeps definitions (then its projector also reads ``{p}.definitions``)."""

    def stored_offsets(self) -> dict[Partition, int] | None:
        """Offsets kept with the data, or None to use the group's committed offsets."""
        ...

    def apply(
        self,
        events: Sequence[LogEvent],
        definitions: Sequence[DefinitionRecord],
        positions: Mapping[Partition, int],
    ) -> BatchResult: ...

    def forget(self) -> None:
        """Drop anything cached from before a rebalance."""
        ...

    def recover(self) -> None:
        """Reconnect after a failed batch."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _retryable() -> tuple[type[BaseException], ...]:
    import psycopg
    import redis.exceptions

    from kflow.projections.errors import ReadSideUnavailable

    return (
        psycopg.OperationalError,
        psycopg.InterfaceError,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        ReadSideUnavailable,
        OSError,
    )


def _until_done(
    what: str, fn: Callable[[], object], sink: Sink, stop: threading.Event, outage: Outage
) -> bool:
    """Call ``fn`` until it succeeds (True) or ``stop`` is set (False); a store outage waits
    (``outage`` shows it in readiness, metrics and logs; nothing is dead-lettered)."""
    retryable = _retryable()
    while not stop.is_set():
        try:
            fn()
            outage.ok()
            return True
        except retryable as e:
            PROJECTION_ERRORS.labels(sink.projection, type(e).__name__).inc()
            delay = outage.failed(e)
            log.info("%s failed (%s: %s); retrying in %.1fs", what, type(e).__name__, e, delay)
            stop.wait(delay)
            try:
                sink.recover()
            except retryable as e2:
                log.warning("reconnect failed: %s", e2)
    return False


class Projector:
    """Runs one sink against one topic prefix until ``stop`` is set."""

    def __init__(
        self,
        sink: Sink,
        bootstrap: str,
        topics: TopicNames,
        group_id: str,
        batch_size: int = 5_000,
        poll_timeout_s: float = 0.5,
        instance_id: str | None = None,
        dead_letters: bool = True,
    ) -> None:
        """``dead_letters=False``: log poison records but write no dead letters (a rebuild
        replays records the live projector already dead-lettered)."""
        self.sink = sink
        self.instance_id = instance_id
        self.dead_letters = dead_letters
        self.topics = topics
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.contracts = default_contracts()
        self.decode = Decoder(self.contracts, topics)
        self.stop = threading.Event()
        self.applied = 0
        # eager (range) assignment: on_assign sees the whole assignment and seeks it
        self.consumer: Consumer = make_consumer(
            bootstrap,
            group_id,
            instance_id=instance_id,
            overrides={"partition.assignment.strategy": "range"},
        )
        self.dlq = make_producer(bootstrap)
        store = "postgresql" if sink.projection == "postgres" else sink.projection
        self.outage = Outage(store, base_s=0.2)
        """The store's outages (``kflow_dependency_up{dependency="postgresql"|"redis"}``)."""

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.sink.forget()
        stored: dict[Partition, int] | None = {}

        def read() -> None:
            nonlocal stored
            stored = self.sink.stored_offsets()

        _until_done("reading stored offsets", read, self.sink, self.stop, self.outage)
        if stored is not None:
            for tp in partitions:
                tp.offset = stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
        consumer.assign(partitions)
        known = [TopicPartition(tp.topic, tp.partition, tp.offset) for tp in partitions]
        known = [tp for tp in known if tp.offset >= 0]
        if stored is not None and known:
            # mirror the stored offsets into the group at once, so `kflow lag` is right
            # even before the first batch
            with contextlib.suppress(KafkaException):
                consumer.commit(offsets=known, asynchronous=True)
        log.info("assigned %s", [(tp.topic, tp.partition, tp.offset) for tp in partitions])

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.sink.forget()

    def run(self, on_batch: Callable[[BatchResult], None] | None = None) -> None:
        """Consume and apply until ``stop`` is set; then close the consumer."""
        topics = [self.topics.events]
        if self.sink.reads_definitions:
            topics.append(self.topics.definitions)
        self.consumer.subscribe(
            topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        HEALTH.report("kafka", True)
        HEALTH.report(STARTUP, True)
        try:
            while not self.stop.is_set():
                # wait for the first record only, then take what is already fetched: a
                # quiet log is projected at once, a busy one in large batches
                first = self.consumer.poll(self.poll_timeout_s)
                if first is None:
                    continue
                more = self.consumer.consume(self.batch_size - 1, 0) if self.batch_size > 1 else []
                msgs = [first, *more]
                self._handle(msgs, on_batch)
        finally:
            self.dlq.flush(10)
            self.consumer.close()
            self.sink.close()

    def _handle(self, msgs: list[Message], on_batch: Callable[[BatchResult], None] | None) -> None:
        records: list[Record] = []
        positions: dict[Partition, int] = {}
        dead = 0
        for msg in msgs:
            error = msg.error()
            if error is not None:
                if is_fatal(error):
                    CLIENT_FATAL.labels(f"projector-{self.sink.projection}", "consumer").inc()
                    raise FatalClientError(
                        f"{self.sink.projection} projector consumer failed for good: "
                        f"{error.str()}; exiting so that a new process starts with a new "
                        "consumer (is another projector running with the same "
                        f"KFLOW_PROJECTOR_INSTANCE={self.instance_id}?)"
                    )
                log.warning("consumer error: %s", error.str())
                continue
            tp = (str(msg.topic()), int(msg.partition() or 0))
            positions[tp] = max(positions.get(tp, 0), int(msg.offset() or 0) + 1)
            decoded = self.decode(msg)
            if isinstance(decoded, Poison):
                dead += self._dead_letter(msg, decoded)
                continue
            if isinstance(decoded, DefinitionRecord) and decoded.refused is not None:
                dead += self._dead_letter(msg, decoded.refused)  # it still removes its version
            records.append(decoded)
        if not positions:
            return
        # Dead letters are delivered before the offsets move past their records: a crash
        # in between repeats one (same source coordinates), it never loses one.
        if dead and not _until_done(
            "writing dead letters", self._flush_dlq, self.sink, self.stop, self.outage
        ):
            return

        def refused(record: Record, error: Exception) -> None:
            at = (record.topic, record.partition, record.offset)
            msg = next(m for m in msgs if (m.topic(), m.partition(), m.offset()) == at)
            self._dead_letter(msg, Poison.of(UNPROJECTABLE, error))

        result = apply_or_split(self._apply, records, positions, refused)
        if result is None:  # stopped during an outage
            return
        self.dlq.flush(10)
        self.applied += result.applied
        try:
            # the consumer's position also steps over transaction markers after the last
            # record, so the group's lag reads 0 (not 1) on a transactional topic
            current = self.consumer.position([TopicPartition(t, p) for t, p in positions])
            ahead = {(tp.topic, tp.partition): tp.offset for tp in current if tp.offset >= 0}
            self.consumer.commit(
                offsets=[
                    TopicPartition(t, p, max(o, ahead.get((t, p), o)))
                    for (t, p), o in positions.items()
                ],
                asynchronous=True,
            )
        except KafkaException as e:  # advisory for the PostgreSQL sink; Redis re-applies safely
            log.warning("offset commit failed: %s", e)
        if on_batch is not None:
            on_batch(result)

    def _apply(
        self, records: Sequence[Record], positions: Mapping[Partition, int]
    ) -> BatchResult | None:
        """Apply ``records`` and store ``positions``, waiting out store outages (None: stopped)."""
        events = [r for r in records if isinstance(r, LogEvent)]
        defs = [r for r in records if isinstance(r, DefinitionRecord)]
        holder: list[BatchResult] = []
        if not _until_done(
            "applying a batch",
            lambda: holder.append(self.sink.apply(events, defs, positions)),
            self.sink,
            self.stop,
            self.outage,
        ):
            return None
        return holder[0]

    def _flush_dlq(self) -> None:
        if self.dlq.flush(10):
            raise ReadSideUnavailable("the dead-letter topic did not acknowledge in 10s")

    def _dead_letter(self, msg: Message, poison: Poison) -> int:
        """Produce the dead letter of ``msg`` (1), or only log it when not ours to write (0)."""
        if not self.dead_letters:
            log.warning("skipped %s[%s]@%s: %s", msg.topic(), msg.partition(), msg.offset(), poison)
            return 0
        letter = dead_letter_for(
            msg,
            msg.value(),
            poison.reason,
            (poison.error_type, poison.message),
            int(time.time() * 1000),
        )
        rec = dead_letter_record(letter, self.topics.dlq, self.contracts.codec)
        self.dlq.produce(rec.topic, key=rec.key, value=rec.value)
        DLQ_RECORDS.labels(f"projector-{self.sink.projection}", letter.topic).inc()
        log.error(
            "%s projection dead-lettered %s[%s]@%s (%s): %s: %s",
            self.sink.projection,
            letter.topic,
            letter.partition,
            letter.offset,
            letter.reason,
            letter.error_type,
            letter.message,
        )
        return 1
