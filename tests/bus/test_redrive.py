"""Dead letters are redriven to their source topic or discarded, each at most once (ADR 0083)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from io import BytesIO

import pytest
from confluent_kafka import Consumer, Message, Producer
from fastavro import schemaless_writer

from kflow.bus.admin import create_topics, delete_topics
from kflow.bus.contracts import decode, default_contracts, encode_input
from kflow.bus.dead_letter import (
    HANDLER_ERROR,
    DeadLetter,
    dead_letter_for,
    dead_letter_record,
    encode_dead_letter,
)
from kflow.bus.envelope import envelope_meta
from kflow.bus.message import TRACE_HEADER
from kflow.bus.reader import TopicReader
from kflow.bus.redrive import (
    REDRIVEN_HEADER,
    ActionResult,
    DeadLetterActionError,
    act,
    parse_letter_id,
    read_markers,
)
from kflow.bus.schema_registry import default_registry
from kflow.bus.signing import KEY_ID_HEADER, SIGNATURE_HEADER, Signer
from kflow.bus.topics import TopicNames, TopicSpec, topic_names
from kflow.core.events import InputRejected, WorkflowPaused
from kflow.core.inputs import PauseWorkflow
from tests.identity.conftest import Key, issue, secured  # noqa: F401  (fixtures)
from tests.identity.test_entry_points import GATE
from tests.readside.conftest import readside  # noqa: F401  (fixture)
from tests.runtime.conftest import TEST_QUEUES, Runtime, runtime_factory, types_of  # noqa: F401

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


def _source_headers(bootstrap: str, topics: TopicNames) -> list[dict[str, bytes]]:
    with TopicReader(bootstrap, topics.commands) as reader:
        return [dict(r.headers) for r in reader.read_to_end(timeout_s=30)]


def test_redrive_restores_the_original_headers_and_old_letters_still_redrive(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicNames
) -> None:
    codec = default_contracts().codec
    trace = {TRACE_HEADER: b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    traced = DeadLetter("wf-t", b"traced", topics.commands, 0, 7, "malformed", "DecodeError",
                        "not a record", 1, {**trace, "kflow-correlation-id": b"c-1"})  # fmt: skip
    # a letter written before headers were kept: the released (v1) DeadLetter schema
    v1 = default_registry().versions()["v1"]["kflow.DeadLetter"]
    old = BytesIO(v1.header)
    old.seek(len(v1.header))
    schemaless_writer(old, v1.parsed, {"original_key": "wf-o", "original_value": b"old",
                      "topic": topics.commands, "partition": 0, "offset": 8, "reason": "malformed",
                      "error_type": "DecodeError", "message": "not a record", "at": 2})  # fmt: skip
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topics.dlq, key="wf-t", value=encode_dead_letter(traced, codec))
    producer.produce(topics.dlq, key="wf-o", value=old.getvalue())
    assert producer.flush(30) == 0

    done = act(kafka_bootstrap, topic_prefix, [(0, 0), (0, 1)], "redrive", "ana", "", 3)
    assert [r.outcome for r in done] == ["redriven", "redriven"]
    assert sorted(source_records(kafka_bootstrap, topics)) == [
        ("wf-o", b"old"),
        ("wf-t", b"traced"),
    ]
    assert sorted(_source_headers(kafka_bootstrap, topics), key=len) == [
        {REDRIVEN_HEADER: b"0:1"},
        {**trace, "kflow-correlation-id": b"c-1", REDRIVEN_HEADER: b"0:0"},
    ]


def _consumed(bootstrap: str, topic: str) -> Message:
    """The one record of ``topic``, as a consumer hands it to a service."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}.probe",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    try:
        for _ in range(300):
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                return message
        raise AssertionError(f"nothing on {topic}")
    finally:
        consumer.close()


@pytest.mark.topics(partitions=2, queues=TEST_QUEUES)
def test_a_dead_lettered_signed_command_is_redriven_as_its_signed_principal(
    secured: Runtime,  # noqa: F811  (orchestrator with KFLOW_REQUIRE_SIGNED_COMMANDS on)
    issue: Callable[..., Key],  # noqa: F811
) -> None:
    from kflow.client import Client

    b = issue("b")
    secured.apply(GATE)
    with Client(b.settings(secured.settings), actor="billing") as client:
        wid = client.start("gate", {}).workflow_id
    secured.wait_for(wid, "WorkflowStarted")
    bootstrap, prefix = secured.settings.kafka_bootstrap, secured.prefix
    topics = topic_names(prefix)
    # a pause signed by tenant b's key, as the orchestrator consumed it before it failed on it
    pause = PauseWorkflow(workflow_id=wid)
    value = encode_input(pause, envelope_meta(pause, actor="billing", tenant="b"))
    signed = Signer.from_token(b.token).headers(wid, value)
    scratch = f"{prefix}.scratch"
    create_topics(bootstrap, [TopicSpec(scratch, 1)])
    try:
        producer = Producer({"bootstrap.servers": bootstrap})
        producer.produce(scratch, value, wid, headers=list(signed.items()))
        assert producer.flush(30) == 0
        message = _consumed(bootstrap, scratch)
    finally:
        delete_topics(bootstrap, [scratch])
    letter = dead_letter_for(message, value, HANDLER_ERROR, ("Boom", "failed once"), 1)
    assert letter.original_headers == signed
    record = dead_letter_record(replace(letter, topic=topics.commands), topics.dlq,
                                default_contracts().codec)  # fmt: skip
    producer.produce(record.topic, record.value, record.key)
    assert producer.flush(30) == 0

    (result,) = act(bootstrap, prefix, [(0, 0)], "redrive", "ops", "", 2)
    assert result.outcome == "redriven"
    events = secured.wait_for(wid, "WorkflowPaused")
    assert not [e for e in events if isinstance(e, InputRejected)], types_of(events)
    with TopicReader(bootstrap, topics.events) as reader:
        logged = [decode(r.value) for r in reader.read_to_end(timeout_s=30) if r.value]
    paused = next(e for e in logged if isinstance(e.body, WorkflowPaused))
    assert (paused.tenant, paused.actor) == ("b", f"apikey:{b.key_id}:svc-b as billing")
    headers = _source_headers(bootstrap, topics)[-1]
    assert (headers[KEY_ID_HEADER], headers[SIGNATURE_HEADER]) == (
        signed[KEY_ID_HEADER],
        signed[SIGNATURE_HEADER],
    )
