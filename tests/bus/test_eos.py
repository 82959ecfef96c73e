"""The exactly-once loop on the real broker: DLQ, rollback, tick and rebalance hooks."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import pytest
from confluent_kafka import Producer

from kflow.bus.contracts import Envelope, EnvelopeMeta, decode, encode_input
from kflow.bus.dead_letter import decode_dead_letter
from kflow.bus.eos import EosConfig, EosLoop, Handler, PartitionId
from kflow.bus.errors import RetryableError
from kflow.bus.message import BusMessage, OutRecord
from kflow.bus.topics import TopicNames
from kflow.core.inputs import CancelWorkflow
from tests.bus.kafka_helpers import produce, read_all

pytestmark = pytest.mark.integration


def _command(reason: str) -> bytes:
    return encode_input(
        CancelWorkflow(workflow_id="wf-1", reason=reason),
        EnvelopeMeta(event_id=str(uuid.uuid4()), occurred_at=1),
    )


def _config(bootstrap: str, topics: TopicNames, **extra: object) -> EosConfig:
    """A loop's config on ``topics`` (commands in, DLQ); ``extra`` overrides any field."""
    fields: dict[str, object] = {
        "instance_id": "test-0",
        "batch_size": 100,
        "max_batch_ms": 200,
        **extra,
    }
    return EosConfig(
        bootstrap=bootstrap,
        group_id=f"{topics.prefix}.group",
        topics=(topics.commands,),
        dlq_topic=topics.dlq,
        **fields,  # type: ignore[arg-type]
    )


def _run_until(loop: EosLoop[Envelope], done: Callable[[], bool], limit: int = 400) -> None:
    """Run iterations until ``done()``; ``limit`` only guards against a hang."""
    try:
        for _ in range(limit):
            if done():
                return
            loop.run_once()
        raise AssertionError(f"not done after {limit} iterations; stats {loop.stats}")
    finally:
        loop.close()


def _reason(envelope: Envelope) -> str:
    assert isinstance(envelope.body, CancelWorkflow)
    return envelope.body.reason


class Forward(Handler[Envelope]):
    """Forwards every command to the events topic; refuses reason ``explode``."""

    def __init__(self, output: str) -> None:
        self.output = output

    def handle(self, message: BusMessage[Envelope]) -> Sequence[OutRecord]:
        if _reason(message.value) == "explode":
            raise ValueError("explode is not a valid reason")
        return [OutRecord(self.output, message.key, message.raw, message.headers)]


def test_poison_records_go_to_the_dlq_and_the_partition_moves_on(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    records = [("wf-1", _command(f"r{i}")) for i in range(10)]
    records[4] = ("wf-1", b"\x00\x00\x00\x00\x07not avro")  # undecodable
    records[6] = ("wf-1", _command("explode"))  # handler raises a non-retryable error
    produce(kafka_bootstrap, topics.commands, records, partition=0)
    loop = EosLoop(_config(kafka_bootstrap, topics), Forward(topics.events), decode)
    _run_until(loop, lambda: loop.stats.records_in >= 10)

    out = [_reason(decode(r.value)) for r in read_all(kafka_bootstrap, topics.events)]
    assert out == ["r0", "r1", "r2", "r3", "r5", "r7", "r8", "r9"]
    letters = [
        decode_dead_letter(r.value, loop.codec) for r in read_all(kafka_bootstrap, topics.dlq)
    ]
    assert [(d.offset, d.reason, d.error_type) for d in letters] == [
        (4, "not_single_object", "DecodeError"),
        (6, "handler_error", "ValueError"),
    ]
    assert letters[0].original_value == records[4][1]
    assert letters[1].original_value == records[6][1]
    assert {(d.topic, d.partition, d.original_key) for d in letters} == {
        (topics.commands, 0, "wf-1")
    }
    assert "explode is not a valid reason" in letters[1].message


class FlakyCounter(Handler[Envelope]):
    """Counts records with staged state; fails once, retryably, on reason ``r3``."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.committed_count = 0
        self.staged = 0
        self.failed = False
        self.rollbacks: list[list[PartitionId]] = []

    def handle(self, message: BusMessage[Envelope]) -> Sequence[OutRecord]:
        if _reason(message.value) == "r3" and not self.failed:
            self.failed = True
            raise RetryableError("store briefly unavailable")
        self.staged += 1
        return [OutRecord(self.output, message.key, message.raw)]

    def committed(self) -> None:
        self.committed_count += self.staged
        self.staged = 0

    def rolled_back(self, partitions: Sequence[PartitionId]) -> None:
        self.rollbacks.append(list(partitions))
        self.staged = 0


def test_retryable_error_aborts_rewinds_and_reprocesses_exactly_once(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    produce(kafka_bootstrap, topics.commands, [("wf-1", _command(f"r{i}")) for i in range(8)], 0)
    handler = FlakyCounter(topics.events)
    loop = EosLoop(_config(kafka_bootstrap, topics), handler, decode)
    _run_until(loop, lambda: handler.committed_count >= 8)

    out = [_reason(decode(r.value)) for r in read_all(kafka_bootstrap, topics.events)]
    assert out == [f"r{i}" for i in range(8)]  # r0..r2 of the aborted attempt are invisible
    assert loop.stats.aborts == 1
    assert handler.rollbacks and PartitionId(topics.commands, 0) in handler.rollbacks[0]
    assert handler.committed_count == 8
    assert read_all(kafka_bootstrap, topics.dlq) == []


class Ticking(Handler[Envelope]):
    """Emits one timer record on its first tick after partitions are assigned."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.assigned: list[PartitionId] = []
        self.fired = False

    def handle(self, message: BusMessage[Envelope]) -> Sequence[OutRecord]:
        return ()

    def on_assign(self, partitions: Sequence[PartitionId]) -> None:
        self.assigned.extend(partitions)

    def tick(self, now_ms: int) -> Sequence[OutRecord]:
        if self.assigned and not self.fired:
            self.fired = True
            return [OutRecord(self.output, "timer", str(now_ms).encode())]
        return ()


def test_tick_outputs_commit_without_input_and_assign_hook_runs(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    handler = Ticking(topics.events)
    loop = EosLoop(_config(kafka_bootstrap, topics), handler, decode, clock_ms=lambda: 4242)
    _run_until(loop, lambda: loop.stats.commits >= 1)

    assert sorted(handler.assigned) == [
        PartitionId(topics.commands, 0),
        PartitionId(topics.commands, 1),
    ]
    out = read_all(kafka_bootstrap, topics.events)
    assert [(r.key, r.value) for r in out] == [("timer", b"4242")]


def test_invalid_settings_are_refused_with_the_fix(kafka_bootstrap: str) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        EosConfig(
            bootstrap=kafka_bootstrap,
            group_id="g",
            instance_id="i",
            topics=("t",),
            dlq_topic="d",
            batch_size=0,
        )


class FencedOnce(Handler[Envelope]):
    """On its first record, starts a rival producer with the loop's transactional.id."""

    def __init__(self, output: str, bootstrap: str, transactional_id: str) -> None:
        self.output = output
        self.bootstrap = bootstrap
        self.transactional_id = transactional_id
        self.rival: Producer | None = None
        self.rolled_back_count = 0

    def handle(self, message: BusMessage[Envelope]) -> Sequence[OutRecord]:
        if self.rival is None:
            self.rival = Producer(
                {"bootstrap.servers": self.bootstrap, "transactional.id": self.transactional_id}
            )
            self.rival.init_transactions(10)  # bumps the epoch: the loop's producer is fenced
        return [OutRecord(self.output, message.key, message.raw)]

    def rolled_back(self, partitions: Sequence[PartitionId]) -> None:
        self.rolled_back_count += 1


def test_fenced_producer_is_recreated_and_the_batch_redone_exactly_once(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    produce(kafka_bootstrap, topics.commands, [("wf-1", _command(f"r{i}")) for i in range(6)], 0)
    config = _config(kafka_bootstrap, topics)
    handler = FencedOnce(topics.events, kafka_bootstrap, config.transactional_id)
    loop = EosLoop(config, handler, decode)
    _run_until(loop, lambda: loop.stats.records_in >= 6)

    out = [_reason(decode(r.value)) for r in read_all(kafka_bootstrap, topics.events)]
    assert out == [f"r{i}" for i in range(6)]
    assert loop.stats.producer_restarts == 1
    assert handler.rolled_back_count == 1


class BuggyTick(Forward):
    """Forwards records, then its tick fails with a bug (not a RetryableError)."""

    def __init__(self, output: str) -> None:
        super().__init__(output)
        self.handled = 0

    def handle(self, message: BusMessage[Envelope]) -> Sequence[OutRecord]:
        self.handled += 1
        return super().handle(message)

    def tick(self, now_ms: int) -> Sequence[OutRecord]:
        if self.handled:
            raise RuntimeError("bug in tick")
        return ()


def test_unexpected_error_aborts_the_open_transaction_and_propagates(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    produce(kafka_bootstrap, topics.commands, [("wf-1", _command(f"r{i}")) for i in range(5)], 0)
    config = _config(kafka_bootstrap, topics)
    buggy = EosLoop(config, BuggyTick(topics.events), decode)
    with pytest.raises(RuntimeError, match="bug in tick"):
        _run_until(buggy, lambda: False)
    assert read_all(kafka_bootstrap, topics.events) == []  # the batch's outputs were aborted

    fixed = EosLoop(config, Forward(topics.events), decode)
    _run_until(fixed, lambda: fixed.stats.records_in >= 5)
    out = [_reason(decode(r.value)) for r in read_all(kafka_bootstrap, topics.events)]
    assert out == [f"r{i}" for i in range(5)]
