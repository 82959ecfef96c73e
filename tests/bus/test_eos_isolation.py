"""No single input can make the exactly-once loop fail for good (issue 11 defect 1, ADR 0027).

On the real broker: an input whose output is over the record limit, and an output the
broker refuses (a topic with a smaller ``max.message.bytes``), each end up in the DLQ
with the reason while every other record of the partition is produced exactly once.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence

import pytest
from confluent_kafka import Producer

from kflow.bus.admin import create_topics, delete_topics
from kflow.bus.codec import AvroCodec
from kflow.bus.contracts import Envelope, EnvelopeMeta, decode, encode_input
from kflow.bus.dead_letter import DeadLetter, dead_letter_record, decode_dead_letter
from kflow.bus.eos import EosConfig, EosLoop, Handler
from kflow.bus.isolation import BATCH_FAILED, OUTPUT_TOO_LARGE
from kflow.bus.message import BusMessage, OutRecord, record_size
from kflow.bus.topics import TopicNames, TopicSpec
from kflow.core.inputs import CancelWorkflow
from kflow.core.limits import MAX_OUTPUT_RECORD_BYTES, MAX_RECORD_BYTES
from tests.bus.kafka_helpers import read_all

pytestmark = pytest.mark.integration

BIG = 3 * 1024 * 1024


def _command(reason: str) -> bytes:
    return encode_input(
        CancelWorkflow(workflow_id="wf-1", reason=reason),
        EnvelopeMeta(event_id=str(uuid.uuid4()), occurred_at=1),
    )


def _produce(bootstrap: str, topic: str, values: Sequence[bytes], partition: int = 0) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": MAX_RECORD_BYTES})
    for value in values:
        producer.produce(topic, value, "wf-1", partition=partition)
    assert producer.flush(30) == 0


def _reason(envelope: Envelope) -> str:
    assert isinstance(envelope.body, CancelWorkflow)
    return envelope.body.reason


def _loop(bootstrap: str, topics: TopicNames, handler: Handler[Envelope]) -> EosLoop[Envelope]:
    config = EosConfig(
        bootstrap=bootstrap,
        group_id=f"{topics.prefix}.group",
        instance_id="test-0",
        topics=(topics.commands,),
        dlq_topic=topics.dlq,
        batch_size=100,
        max_batch_ms=200,
    )
    return EosLoop(config, handler, decode)


def _run_until(loop: EosLoop[Envelope], done: Callable[[], bool], limit: int = 40) -> None:
    """Run iterations until ``done()``; ``limit`` only guards against a loop that never ends."""
    try:
        for _ in range(limit):
            if done():
                return
            loop.run_once()
        raise AssertionError(f"not done after {limit} iterations; stats {loop.stats}")
    finally:
        loop.close()


class Inflate(Handler[Envelope]):
    """Forwards each command to ``output``; reason ``inflate`` makes a record of ``size`` bytes."""

    def __init__(self, output: str, size: int) -> None:
        self.output = output
        self.size = size
        self.committed_count = 0
        self.staged = 0

    def handle(self, message: BusMessage[Envelope]) -> Sequence[OutRecord]:
        self.staged += 1
        if _reason(message.value) == "inflate":
            return [OutRecord(self.output, message.key, os.urandom(self.size))]
        return [OutRecord(self.output, message.key, message.raw)]

    def refused(
        self, message: BusMessage[Envelope], reason: str, detail: str
    ) -> Sequence[OutRecord]:
        return [OutRecord(self.output, message.key, _command(f"refused: {reason}"))]

    def committed(self) -> None:
        self.committed_count += self.staged
        self.staged = 0

    def rolled_back(self, partitions: object) -> None:
        self.staged = 0


def test_an_input_whose_output_is_too_large_goes_to_the_dlq_and_the_partition_moves_on(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    values = [_command(f"r{i}") for i in range(10)]
    values[4] = _command("inflate")
    _produce(kafka_bootstrap, topics.commands, values)
    handler = Inflate(topics.events, MAX_OUTPUT_RECORD_BYTES + 1)
    loop = _loop(kafka_bootstrap, topics, handler)
    _run_until(loop, lambda: loop.stats.records_in >= 10)

    out = [_reason(decode(r.value)) for r in read_all(kafka_bootstrap, topics.events)]
    assert out == [
        "r0",
        "r1",
        "r2",
        "r3",
        "refused: output_too_large",
        *(f"r{i}" for i in range(5, 10)),
    ]
    (letter,) = [
        decode_dead_letter(r.value, loop.codec) for r in read_all(kafka_bootstrap, topics.dlq)
    ]
    assert (letter.offset, letter.reason, letter.error_type) == (
        4,
        OUTPUT_TOO_LARGE,
        "RecordTooLarge",
    )
    assert letter.original_value == values[4]
    assert f"-byte record for {topics.events} is over the {MAX_OUTPUT_RECORD_BYTES}-byte" in (
        letter.message
    )
    assert loop.stats.aborts == 1  # the culprit is known at once: no search
    assert handler.committed_count == 9  # the culprit's staged change was rolled back


def test_a_record_the_broker_refuses_is_found_by_splitting_and_dead_lettered(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    # A topic whose own limit is below kflow's: the broker, not the size check, refuses.
    small = f"{topics.prefix}.small"
    create_topics(kafka_bootstrap, [TopicSpec(small, 1, {"max.message.bytes": "20000"})])
    try:
        values = [_command(f"r{i}") for i in range(40)]
        values[27] = _command("inflate")
        _produce(kafka_bootstrap, topics.commands, values)
        handler = Inflate(small, 100_000)
        loop = _loop(kafka_bootstrap, topics, handler)
        _run_until(loop, lambda: loop.stats.records_in >= 40, limit=80)

        out = [_reason(decode(r.value)) for r in read_all(kafka_bootstrap, small)]
        assert out == [f"r{i}" for i in range(40) if i != 27]  # in order, each once
        letters = [
            decode_dead_letter(r.value, loop.codec) for r in read_all(kafka_bootstrap, topics.dlq)
        ]
        assert [(d.offset, d.reason) for d in letters] == [(27, BATCH_FAILED)]
        assert "MSG_SIZE_TOO_LARGE" in letters[0].message or "too large" in letters[0].message
        assert loop.isolation.splits >= 1
        assert loop.isolation.limit == 100  # back to full batches once past the culprit
    finally:
        delete_topics(kafka_bootstrap, [small])


def test_a_dead_letter_of_an_original_near_the_limit_still_fits_one_record() -> None:
    codec = AvroCodec()
    original = os.urandom(MAX_RECORD_BYTES - 100)  # as large as a topic accepts
    letter = DeadLetter("wf-1", original, "t", 0, 7, OUTPUT_TOO_LARGE, "RecordTooLarge", "x", 1)
    record = dead_letter_record(letter, "dlq", codec)
    assert record_size(record) <= MAX_OUTPUT_RECORD_BYTES
    kept = decode_dead_letter(record.value or b"", codec)
    assert kept.original_value is not None and original.startswith(kept.original_value)
    assert f"of {len(original)} bytes" in kept.message


class GrowingSnapshot(Inflate):
    """Like Inflate, but the oversized record comes from ``end_batch`` (a state snapshot
    grown too large by one input), so the loop cannot tell which input made it."""

    def __init__(self, output: str) -> None:
        super().__init__(output, 0)
        self.grown = False

    def handle(self, message: BusMessage[Envelope]) -> Sequence[OutRecord]:
        self.staged += 1
        self.grown = self.grown or _reason(message.value) == "grow"
        return [OutRecord(self.output, message.key, message.raw)]

    def end_batch(self) -> Sequence[OutRecord]:
        if self.grown:
            return [OutRecord(self.output, "snapshot", os.urandom(MAX_OUTPUT_RECORD_BYTES + 1))]
        return ()

    def rolled_back(self, partitions: object) -> None:
        super().rolled_back(partitions)
        self.grown = False


def test_an_oversized_end_of_batch_output_is_traced_to_its_input(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    values = [_command(f"r{i}") for i in range(30)]
    values[11] = _command("grow")
    _produce(kafka_bootstrap, topics.commands, values)
    handler = GrowingSnapshot(topics.events)
    loop = _loop(kafka_bootstrap, topics, handler)
    _run_until(loop, lambda: loop.stats.records_in >= 30, limit=80)

    out = [_reason(decode(r.value)) for r in read_all(kafka_bootstrap, topics.events)]
    assert out == [f"r{i}" for i in range(30) if i != 11]
    (letter,) = [
        decode_dead_letter(r.value, loop.codec) for r in read_all(kafka_bootstrap, topics.dlq)
    ]
    assert (letter.offset, letter.reason, letter.error_type) == (11, BATCH_FAILED, "RecordTooLarge")
