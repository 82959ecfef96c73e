"""Round trips of every record type, the single-object header and fingerprint lookup."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer

from kflow.bus import codec as codec_module
from kflow.bus.codec import HEADER_SIZE, AvroCodec, _compiled
from kflow.bus.contracts import (
    ENVELOPE,
    SCHEMA_VERSION,
    Body,
    EnvelopeMeta,
    decode,
    default_contracts,
    encode_event,
    encode_input,
    encode_task,
)
from kflow.bus.dead_letter import DeadLetter, decode_dead_letter, encode_dead_letter
from kflow.bus.errors import DecodeError, DecodeFailure, EncodeError
from kflow.bus.records import ExecuteStep, WorkflowDefinitionRecord, WorkflowSnapshot
from kflow.bus.schema_registry import default_registry
from kflow.core.events import EVENT_TYPES, Event, StepSucceeded
from kflow.core.inputs import INPUT_TYPES, StartWorkflow
from kflow.core.jsondoc import dumps
from tests.bus.samples import DEFINITION, PAYLOAD, SAMPLES

META = EnvelopeMeta(
    event_id="0b6f4f3e-6d1c-4b3c-9a44-1f1f0e6a7c11",
    occurred_at=1_700_000_000_123,
    causation_id="cause-1",
    correlation_id="corr-1",
    actor="alice",
    tenant="acme",
    idempotency_key="start-order-42",
)


def test_samples_cover_every_core_type() -> None:
    names = {type(s).__name__ for s in SAMPLES}
    assert names == set(EVENT_TYPES) | set(INPUT_TYPES) | {"ExecuteStep"}


@pytest.mark.parametrize("body", SAMPLES, ids=lambda b: type(b).__name__)
def test_envelope_round_trip(body: Body) -> None:
    data = default_contracts().encode_body(body, META)
    envelope = decode(data)
    assert envelope.body == body
    assert envelope.type == type(body).__name__
    assert envelope.workflow_id == body.workflow_id
    assert envelope.schema_version == SCHEMA_VERSION
    assert (envelope.event_id, envelope.causation_id, envelope.correlation_id) == (
        META.event_id,
        "cause-1",
        "corr-1",
    )
    assert (envelope.actor, envelope.tenant, envelope.idempotency_key) == (
        "alice",
        "acme",
        "start-order-42",
    )
    if isinstance(body, Event):
        assert envelope.seq == body.seq
    else:
        assert envelope.seq is None


@pytest.mark.parametrize("body", SAMPLES, ids=lambda b: type(b).__name__)
def test_a_head_has_the_routing_fields_and_converts_to_the_same_envelope(body: Body) -> None:
    contracts = default_contracts()
    data = contracts.encode_body(body, META)
    head = contracts.decode_head(data)
    assert (head.type, head.workflow_id, head.causation_id) == (
        type(body).__name__,
        body.workflow_id,
        "cause-1",
    )
    assert head.seq == (body.seq if isinstance(body, Event) else None)
    assert contracts.envelope_of(head) == contracts.envelope_of(head) == decode(data)


def test_leading_fields_are_read_only_when_safe() -> None:
    contracts = default_contracts()
    data = contracts.encode_body(SAMPLES[0], META)
    names = ("event_id", "type", "workflow_id")
    assert contracts.codec.read_leading(data, ENVELOPE, names) == {
        "event_id": META.event_id,
        "type": type(SAMPLES[0]).__name__,
        "workflow_id": SAMPLES[0].workflow_id,
    }
    assert contracts.codec.read_leading(data, ENVELOPE, ("type",)) is None  # not the 1st field
    assert contracts.codec.read_leading(data, "kflow.WorkflowSnapshot", names) is None
    assert contracts.codec.read_leading(data[:12], ENVELOPE, names) is None  # truncated
    with pytest.raises(DecodeError) as truncated:
        contracts.decode_head(data[:12])
    assert truncated.value.reason in (DecodeFailure.TRUNCATED, DecodeFailure.MALFORMED)


def test_event_takes_seq_and_time_from_the_event() -> None:
    event = StepSucceeded(
        workflow_id="w", step_key="w/a", attempt=1, seq=7, at=1234, output={"k": 1}
    )
    envelope = decode(encode_event(event, EnvelopeMeta(event_id="e")))
    assert (envelope.seq, envelope.occurred_at) == (7, 1234)


def test_task_time_defaults_to_scheduled_at() -> None:
    task = next(s for s in SAMPLES if isinstance(s, ExecuteStep))
    assert decode(encode_task(task, EnvelopeMeta(event_id="t"))).occurred_at == task.scheduled_at


def test_input_without_occurred_at_is_refused_with_the_field_name() -> None:
    start = StartWorkflow(workflow_id="w", name="n", version=1)
    with pytest.raises(EncodeError, match="occurred_at"):
        encode_input(start, EnvelopeMeta(event_id="e"))


def test_non_json_payload_is_refused_naming_the_field() -> None:
    start = StartWorkflow(workflow_id="w", name="n", version=1, input={"bad": {1, 2}})
    with pytest.raises(EncodeError, match=r"kflow\.StartWorkflow\.input"):
        encode_input(start, META)


def test_json_fields_travel_as_json_text() -> None:
    start = StartWorkflow(workflow_id="w", name="n", version=1, input=PAYLOAD)
    _, record = AvroCodec().decode(encode_input(start, META))
    _, body = record["body"]
    assert isinstance(body["input"], str)
    assert body["definition"] is None  # nullable JSON field: absent stays null


def test_snapshot_definition_and_dead_letter_round_trip() -> None:
    contracts = default_contracts()
    snapshot = WorkflowSnapshot(workflow_id="w", seq=9, state={"steps": {"a": 1}}, taken_at=5)
    assert contracts.decode_snapshot(contracts.encode_snapshot(snapshot)) == snapshot
    record = WorkflowDefinitionRecord(
        name="orders", version=2, definition=DEFINITION, registered_at=6, actor="ci"
    )
    assert contracts.decode_definition(contracts.encode_definition(record)) == record
    assert record.key == "orders@2"
    letter = DeadLetter(
        original_key="k",
        original_value=b"\x00\xff",
        topic="t",
        partition=1,
        offset=2,
        reason="malformed",
        error_type="DecodeError",
        message="m",
        at=3,
    )
    assert (
        decode_dead_letter(encode_dead_letter(letter, contracts.codec), contracts.codec) == letter
    )


def _crc64_avro(text: str) -> int:
    """The Avro spec's reference CRC-64-AVRO (Rabin) fingerprint, written out independently."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in text.encode():
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_crc64_reference_implementation_matches_the_spec_vector() -> None:
    assert _crc64_avro('"null"') == 7195948357588979594


def test_header_is_marker_plus_little_endian_crc64_of_canonical_form() -> None:
    data = default_contracts().encode_body(SAMPLES[0], META)
    root = default_registry().current(ENVELOPE)
    assert data[:2] == b"\xc3\x01"
    assert data[2:HEADER_SIZE] == _crc64_avro(root.canonical_form).to_bytes(8, "little")
    assert root.fingerprint == data[2:HEADER_SIZE]
    assert '"doc"' not in root.canonical_form  # docs do not change the fingerprint


def test_writer_schema_is_found_by_fingerprint() -> None:
    registry = default_registry()
    for name, root in registry.versions()["current"].items():
        found = registry.by_fingerprint(root.fingerprint)
        assert found is not None and found.name == name
    assert registry.by_fingerprint(b"\x00" * 8) is None


def test_unknown_fingerprint_is_reported() -> None:
    data = bytearray(default_contracts().encode_body(SAMPLES[0], META))
    data[2:HEADER_SIZE] = b"\x01" * 8
    with pytest.raises(DecodeError) as info:
        decode(bytes(data))
    assert info.value.reason is DecodeFailure.UNKNOWN_FINGERPRINT
    assert "0101010101010101" in str(info.value)


def test_other_root_type_is_wrong_type_for_envelope_decode() -> None:
    snapshot = WorkflowSnapshot(workflow_id="w", seq=1, state={}, taken_at=0)
    with pytest.raises(DecodeError) as info:
        decode(default_contracts().encode_snapshot(snapshot))
    assert info.value.reason is DecodeFailure.WRONG_TYPE


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", DecodeFailure.TRUNCATED),
        (b"\xc3", DecodeFailure.TRUNCATED),
        (b'{"json": true}', DecodeFailure.NOT_SINGLE_OBJECT),
        (b"\x00\x00\x00\x00\x01hello", DecodeFailure.NOT_SINGLE_OBJECT),  # Confluent wire format
    ],
)
def test_bad_bytes_name_the_reason(data: bytes, reason: DecodeFailure) -> None:
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert info.value.reason is reason


def test_truncated_body_and_trailing_bytes_are_reported() -> None:
    data = default_contracts().encode_body(SAMPLES[0], META)
    with pytest.raises(DecodeError) as cut:
        decode(data[:-3])
    assert cut.value.reason is DecodeFailure.TRUNCATED
    with pytest.raises(DecodeError) as extra:
        decode(data + b"\x00")
    assert extra.value.reason is DecodeFailure.MALFORMED


def test_start_workflow_written_without_kflow_code_is_decoded() -> None:
    """What schemas/README.md tells other teams to do: plain fastavro, canonical schema."""
    import json
    from io import BytesIO

    from fastavro import parse_schema, schemaless_writer
    from fastavro.schema import fingerprint, to_parsing_canonical_form

    canonical = default_registry().current(ENVELOPE).canonical_form
    schema = parse_schema(json.loads(canonical))
    header = b"\xc3\x01" + bytes.fromhex(
        fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")
    )
    buffer = BytesIO()
    buffer.write(header)
    schemaless_writer(
        buffer,
        schema,
        {
            "event_id": "e-1",
            "type": "StartWorkflow",
            "workflow_id": "order-42",
            "seq": None,
            "occurred_at": 1_700_000_000_000,
            "causation_id": None,
            "correlation_id": "e-1",
            "actor": "billing-service",
            "tenant": "acme",
            "idempotency_key": "start-order-42",
            "schema_version": 1,
            "body": (
                "kflow.StartWorkflow",
                {
                    "workflow_id": "order-42",
                    "name": "orders",
                    "version": 2,
                    "input": json.dumps({"amount": 12}),
                    "definition": None,
                    "tenant": "acme",
                    "actor": "billing-service",
                },
            ),
        },
    )
    envelope = decode(buffer.getvalue())
    assert envelope.body == StartWorkflow(
        workflow_id="order-42",
        name="orders",
        version=2,
        input={"amount": 12},
        tenant="acme",
        actor="billing-service",
    )


def _fastavro_bytes(name: str, record: dict[str, Any]) -> bytes:
    root = default_registry().current(name)
    buffer = BytesIO()
    buffer.write(root.header)
    schemaless_writer(buffer, root.parsed, record, strict_allow_default=True)
    return buffer.getvalue()


def _fastavro_record(name: str, data: bytes) -> Any:
    buffer = BytesIO(data)
    buffer.seek(HEADER_SIZE)
    return schemaless_reader(
        buffer, default_registry().current(name).parsed, None, return_record_name=True
    )


@pytest.mark.parametrize("body", SAMPLES, ids=lambda b: type(b).__name__)
def test_generated_codec_writes_and_reads_what_fastavro_does(body: Body) -> None:
    data = default_contracts().encode_body(body, META)
    record = _fastavro_record(ENVELOPE, data)
    assert _fastavro_bytes(ENVELOPE, record) == data
    assert AvroCodec().decode(data) == (ENVELOPE, record)


def test_generated_codec_covers_every_root_and_matches_fastavro_on_them() -> None:
    codec = AvroCodec()
    records = {
        "kflow.WorkflowSnapshot": {"workflow_id": "w", "seq": 2**40, "state": "{}", "taken_at": -1},
        "kflow.DeadLetter": {
            "original_key": None,
            "original_value": bytes(range(256)) * 40,  # a length prefix over 2 bytes
            "topic": "t" * 9000,
            "partition": -(2**31),
            "offset": 2**63 - 1,
            "reason": "malformed",
            "error_type": "ünïcode ✓",
            "message": "",
            "at": -(2**63),
            "original_headers": {"traceparent": b"00-ab", "": b"", "ü" * 70: bytes(200)},
        },
    }
    for name, record in records.items():
        data = codec.encode(name, record)
        assert data == _fastavro_bytes(name, record)
        assert codec.decode(data) == (name, record)
    assert all(
        _compiled(root) is not None for root in default_registry().versions()["current"].values()
    )


def test_records_the_generated_codec_does_not_take_get_fastavros_answer() -> None:
    codec = AvroCodec()
    snapshot = {"workflow_id": "w", "seq": 1, "state": "{}", "taken_at": 0}
    with pytest.raises(EncodeError):
        codec.encode("kflow.WorkflowSnapshot", {**snapshot, "extra": 1})
    with pytest.raises(EncodeError):
        codec.encode("kflow.WorkflowSnapshot", {**snapshot, "seq": "one"})
    with pytest.raises(EncodeError):
        codec.encode("kflow.WorkflowSnapshot", {**snapshot, "seq": 2**64})
    letter = {
        "topic": "t",
        "partition": 0,
        "offset": 1,
        "reason": "r",
        "error_type": "E",
        "message": "m",
        "at": 2,
    }  # the nullable fields are left out: fastavro writes their defaults
    data = codec.encode("kflow.DeadLetter", letter)
    assert data == _fastavro_bytes("kflow.DeadLetter", letter)
    nulls = {"original_key": None, "original_value": None, "original_headers": None}
    assert codec.decode(data)[1] == {**nulls, **letter}
    empty = {**letter, "original_key": None, "original_value": None, "original_headers": {}}
    assert codec.encode("kflow.DeadLetter", empty) == _fastavro_bytes("kflow.DeadLetter", empty)
    assert codec.decode(codec.encode("kflow.DeadLetter", empty))[1] == empty


def test_json_documents_keep_the_meaning_json_gives_them() -> None:
    for bad in (float("nan"), {"x": [float("inf")]}, {"when": datetime.now(UTC)}):
        start = StartWorkflow(workflow_id="w", name="n", version=1, input=bad)
        with pytest.raises(EncodeError, match="input"):
            encode_input(start, META)
    exact = {"big": 2**70, "keys": {"1": None}, "text": "ünïcode \u2028 ✓", "f": 1e-7, "n": None}
    start = StartWorkflow(workflow_id="w", name="n", version=1, input=exact)
    assert decode(encode_input(start, META)).body == start
    assert dumps({1: 2}) == '{"1":2}'  # what json.dumps makes of an int key


@pytest.mark.parametrize(
    "text",
    ['{"a": 1, "b": [1.5, null]}', '{"big":123456789012345678901234567890}', "[NaN]", '"\\ud800"'],
)
def test_json_text_written_by_others_is_read_as_json_loads_reads_it(text: str) -> None:
    record = dict(
        _fastavro_record(
            ENVELOPE, encode_input(StartWorkflow(workflow_id="w", name="n", version=1), META)
        )
    )
    name, body = record["body"]
    record["body"] = (name, {**body, "input": text})
    start = decode(_fastavro_bytes(ENVELOPE, record)).body
    assert isinstance(start, StartWorkflow)
    assert json.dumps(start.input.value) == json.dumps(json.loads(text))


def _outcome(data: bytes) -> object:
    try:
        return AvroCodec().decode(data)
    except DecodeError as e:
        return e.reason


def test_corrupt_bytes_get_the_answer_fastavro_alone_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = [default_contracts().encode_body(body, META) for body in SAMPLES[:8]]
    cases = [
        data[:position] + bytes([data[position] ^ mask]) + data[position + 1 :]
        for data in samples
        for position in range(HEADER_SIZE, len(data))
        for mask in (0x01, 0x80, 0xFF)
    ] + [data[:cut] for data in samples for cut in range(HEADER_SIZE, len(data))]
    generated = [_outcome(data) for data in cases]
    root = default_registry().current(ENVELOPE)
    monkeypatch.setitem(codec_module._COMPILED, root.canonical_form, None)
    assert [_outcome(data) for data in cases] == generated


def test_a_map_block_written_with_its_byte_size_reads_like_fastavro_reads_it() -> None:
    codec = AvroCodec()
    letter = {"original_key": None, "original_value": None, "topic": "t", "partition": 0,
              "offset": 1, "reason": "r", "error_type": "E", "message": "m", "at": 2,
              "original_headers": {"a": b"1"}}  # fmt: skip
    data = codec.encode("kflow.DeadLetter", letter)
    plain = b"\x02" + b"\x02a\x021" + b"\x00"  # 1 entry, "a" -> b"1", end
    assert data.endswith(plain)
    sized = data[: -len(plain)] + b"\x01\x08" + b"\x02a\x021" + b"\x00"  # -1 entry, 4 bytes
    assert codec.decode(sized)[1] == letter
    assert _compiled(default_registry().current("kflow.DeadLetter")) is not None
