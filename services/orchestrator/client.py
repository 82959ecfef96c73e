"""Talk to a running kflow from outside: publish commands, read a workflow's events.

Used by the CLI, the demo and the tests; another service would do the same with
a plain producer and :mod:`kflow.bus.contracts`.
"""

from __future__ import annotations

import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from kflow.bus.clients import make_producer
from kflow.bus.contracts import EnvelopeMeta, decode, encode_input
from kflow.bus.errors import DecodeError
from kflow.bus.topics import topic_names
from kflow.core.events import TERMINAL_TYPES, Event, WorkflowRejected
from kflow.core.inputs import Input


class ClientError(Exception):
    """Kafka could not be reached or a record could not be delivered (message says why)."""


def now_ms() -> int:
    """Wall-clock milliseconds."""
    return time.time_ns() // 1_000_000


class CommandPublisher:
    """Publishes commands to ``{prefix}.commands`` keyed by workflow id."""

    def __init__(self, bootstrap: str, prefix: str, actor: str | None = None) -> None:
        self._topic = topic_names(prefix).commands
        self._bootstrap = bootstrap
        self._actor = actor
        self._producer = make_producer(
            bootstrap, overrides={"linger.ms": 2, "message.timeout.ms": 20_000}
        )
        self._errors: list[str] = []

    def send(self, command: Input, *, correlation_id: str | None = None) -> str:
        """Queue one command; returns its event id (call :meth:`flush` to wait for delivery)."""
        event_id = uuid.uuid4().hex
        meta = EnvelopeMeta(
            event_id=event_id,
            occurred_at=now_ms(),
            correlation_id=correlation_id or command.workflow_id,
            actor=self._actor,
            idempotency_key=event_id,
        )
        value = encode_input(command, meta)
        while True:
            try:
                self._producer.produce(
                    self._topic, value, command.workflow_id, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                self._producer.poll(0.05)
        self._producer.poll(0)
        return event_id

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every queued command is written; raise ClientError otherwise."""
        left = self._producer.flush(timeout_s)
        if left or self._errors:
            errors, self._errors = self._errors, []
            raise ClientError(
                f"{left} command(s) not delivered to {self._topic} at {self._bootstrap}"
                f"{': ' + errors[0] if errors else ''}; is Kafka up (`kflow dev status`) and "
                "are the topics created (`kflow topics create`)?"
            )

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self._errors.append(err.str())


@dataclass(frozen=True)
class LoggedEvent:
    """One event read from the log, with its position."""

    event: Event
    partition: int
    offset: int


def is_final(event: Event) -> bool:
    """True for events after which a workflow never changes (terminal or rejected)."""
    return isinstance(event, (*TERMINAL_TYPES, WorkflowRejected))


def partition_for(key: str, partitions: int) -> int:
    """The partition librdkafka's default partitioner (consistent: CRC-32 of the key) picks.

    Every kflow producer is librdkafka-based, so one workflow's records are all here.
    """
    return zlib.crc32(key.encode()) % partitions


class EventReader:
    """Reads ``{prefix}.events`` from the beginning (``read_committed``).

    With ``workflow_id`` only the partition holding that workflow is read.
    """

    def __init__(
        self, bootstrap: str, prefix: str, from_end: bool = False, workflow_id: str | None = None
    ) -> None:
        self.topic = topic_names(prefix).events
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{prefix}.event-reader.{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 20,
                "log_level": 3,
            }
        )
        try:
            metadata = self._consumer.list_topics(self.topic, timeout=10)
        except KafkaException as e:
            raise ClientError(f"cannot reach Kafka at {bootstrap}: {e}") from e
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise ClientError(f"topic {self.topic} does not exist; run `kflow topics create`")
        self.partitions = sorted(topic.partitions)
        if workflow_id is not None:
            self.partitions = [partition_for(workflow_id, len(self.partitions))]
        starts = []
        for p in self.partitions:
            tp = TopicPartition(self.topic, p)
            _low, high = self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            starts.append(TopicPartition(self.topic, p, high if from_end else OFFSET_BEGINNING))
        self._consumer.assign(starts)

    def end_offsets(self) -> dict[int, int]:
        """Current high watermark per partition."""
        return {
            p: self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=10, cached=False
            )[1]
            for p in self.partitions
        }

    def poll(self, timeout_s: float = 0.2, max_records: int = 1000) -> list[LoggedEvent]:
        """Events that arrived (possibly none)."""
        out: list[LoggedEvent] = []
        for message in self._consumer.consume(max_records, timeout_s):
            if message.error() is not None:
                continue
            value = message.value()
            if not value:
                continue
            try:
                envelope = decode(value if isinstance(value, bytes) else value.encode())
            except DecodeError:
                continue
            if isinstance(envelope.body, Event):
                out.append(
                    LoggedEvent(envelope.body, message.partition() or 0, message.offset() or 0)
                )
        return out

    def read_to_end(self, timeout_s: float = 30.0) -> Iterator[LoggedEvent]:
        """Every event present now, then stop."""
        targets = self.end_offsets()
        deadline = time.monotonic() + timeout_s
        while True:
            yield from self.poll(0.2)
            positions = self._consumer.position(
                [TopicPartition(self.topic, p) for p in self.partitions]
            )
            if all(
                tp.offset >= targets[tp.partition] or targets[tp.partition] == 0 for tp in positions
            ):
                return
            if time.monotonic() > deadline:
                raise ClientError(f"reading {self.topic} did not finish in {timeout_s}s")

    def follow(
        self, until: Callable[[LoggedEvent], bool], timeout_s: float | None = None
    ) -> Iterator[LoggedEvent]:
        """Yield events as they arrive until ``until(event)`` is true (or the timeout passes)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while deadline is None or time.monotonic() < deadline:
            for logged in self.poll(0.2):
                yield logged
                if until(logged):
                    return
        raise TimeoutError(f"no final event within {timeout_s}s")

    def close(self) -> None:
        """Release the consumer."""
        self._consumer.close()
