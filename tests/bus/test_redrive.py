"""Dead letters are redriven to their source topic or discarded, each at most once (ADR 0083)."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import Producer

from kflow.bus.contracts import default_contracts
from kflow.bus.dead_letter import DeadLetter, encode_dead_letter
from kflow.bus.reader import TopicReader
from kflow.bus.redrive import (
    REDRIVEN_HEADER,
    ActionResult,
    DeadLetterActionError,
    act,
    parse_letter_id,
    read_markers,
)
from kflow.bus.topics import TopicNames

pytestmark = pytest.mark.integration


def put_letters(bootstrap: str, topics: TopicNames, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    codec = default_contracts().codec
    for i in range(count):
        letter = DeadLetter(f"wf-{i}", f"poison-{i}".encode(), topics.commands, 0, 100 + i,
                            "malformed", "DecodeError", "not a record", 1_000 + i)  # fmt: skip
        producer.produce(topics.dlq, key=f"wf-{i}", value=encode_dead_letter(letter, codec))
    assert producer.flush(30) == 0


def source_records(bootstrap: str, topics: TopicNames) -> list[tuple[str | None, bytes | None]]:
    with TopicReader(bootstrap, topics.commands) as reader:
        return [(r.key, r.value) for r in reader.read_to_end(timeout_s=30)]


def test_redrive_sends_the_original_back_once_and_discard_records_why(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicNames
) -> None:
    put_letters(kafka_bootstrap, topics, 3)
    first = act(kafka_bootstrap, topic_prefix, [(0, 0), (0, 1)], "redrive", "ana", "", 5)
    assert [(r.offset, r.outcome) for r in first] == [(0, "redriven"), (1, "redriven")]
    assert sorted(source_records(kafka_bootstrap, topics)) == [
        ("wf-0", b"poison-0"),
        ("wf-1", b"poison-1"),
    ]
    with TopicReader(kafka_bootstrap, topics.commands) as reader:
        headers = [dict(r.headers) for r in reader.read_to_end(timeout_s=30)]
    assert {h[REDRIVEN_HEADER] for h in headers} == {b"0:0", b"0:1"}

    again = act(kafka_bootstrap, topic_prefix, [(0, 1), (0, 2), (0, 9)], "redrive", "bo", "", 6)
    assert [(r.offset, r.outcome) for r in again] == [
        (1, "already_redriven"),
        (2, "redriven"),
        (9, "not_found"),
    ]
    assert "redriven by ana" in again[0].detail
    assert len(source_records(kafka_bootstrap, topics)) == 3  # 0:1 did not go twice

    with pytest.raises(DeadLetterActionError, match="reason"):
        act(kafka_bootstrap, topic_prefix, [(0, 0)], "discard", "ana", " ", 7)
    put_letters(kafka_bootstrap, topics, 1)  # a fourth letter at 0:3
    (discarded,) = act(kafka_bootstrap, topic_prefix, [(0, 3)], "discard", "ana", "bad data", 8)
    assert discarded.outcome == "discarded"
    (late,) = act(kafka_bootstrap, topic_prefix, [(0, 3)], "redrive", "bo", "", 9)
    assert (late.outcome, late.detail) == ("already_discarded", "discarded by ana: bad data")
    markers = read_markers(kafka_bootstrap, topic_prefix)
    assert {k: m.action for k, m in markers.items()} == {
        "0:0": "redriven",
        "0:1": "redriven",
        "0:2": "redriven",
        "0:3": "discarded",
    }
    assert len(source_records(kafka_bootstrap, topics)) == 3


def test_two_redrives_at_once_send_a_letter_once(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicNames
) -> None:
    put_letters(kafka_bootstrap, topics, 1)
    outcomes: list[str] = []
    errors: list[Exception] = []

    def redrive(actor: str) -> None:
        try:
            results: list[ActionResult] = act(
                kafka_bootstrap, topic_prefix, [(0, 0)], "redrive", actor, "", 1
            )
            outcomes.extend(r.outcome for r in results)
        except Exception as e:  # a fenced commit: nothing was written
            errors.append(e)

    threads = [threading.Thread(target=redrive, args=(f"op{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert outcomes.count("redriven") == 1, (outcomes, errors)
    assert len(source_records(kafka_bootstrap, topics)) == 1


def test_letter_ids_name_the_format() -> None:
    assert parse_letter_id("0:17") == (0, 17)
    with pytest.raises(DeadLetterActionError, match="partition:offset"):
        parse_letter_id("17")
