"""The one place where core objects become Avro records and back.

Callers use :func:`encode_event`, :func:`encode_input`, :func:`encode_task` and
:func:`decode` (bytes -> :class:`Envelope`), plus the snapshot and definition
helpers. Fields marked ``"json": true`` in the schema carry JSON as text: a
document (a ``Json`` field of the core type) as the very text it holds, read back
without parsing (ADR 0026); other JSON (cause, definition, state) as compact text of
the plain data. Every other field maps one to one to the dataclass field of the same
name.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from kflow.bus.codec import AvroCodec
from kflow.bus.errors import DecodeError, DecodeFailure, EncodeError
from kflow.bus.records import ExecuteStep, WorkflowDefinitionRecord, WorkflowSnapshot
from kflow.bus.schema_registry import JSON_FIELD_ATTRIBUTE, SchemaRegistry
from kflow.core.events import EVENT_TYPES, Event, event_from_dict, event_to_dict
from kflow.core.inputs import INPUT_TYPES, Input, input_from_dict, input_to_dict
from kflow.core.jsondoc import Json, document_fields, dumps, loads

SCHEMA_VERSION = 1
"""The contract version written into every envelope (the latest ``schemas/history`` version)."""

ENVELOPE = "kflow.Envelope"
SNAPSHOT = "kflow.WorkflowSnapshot"
DEFINITION = "kflow.WorkflowDefinitionRecord"
NAMESPACE = "kflow."

Body = Input | Event | ExecuteStep

_TASK_FIELDS = tuple(f.name for f in dataclasses.fields(ExecuteStep))
_SNAPSHOT_FIELDS = tuple(f.name for f in dataclasses.fields(WorkflowSnapshot))
_DEFINITION_FIELDS = tuple(f.name for f in dataclasses.fields(WorkflowDefinitionRecord))


@dataclass(frozen=True, slots=True)
class EnvelopeMeta:
    """Envelope fields the sender chooses (the rest come from the body)."""

    event_id: str
    occurred_at: int | None = None
    """Defaults to the event's ``at`` (events) or ``scheduled_at`` (tasks); required otherwise."""
    causation_id: str | None = None
    correlation_id: str | None = None
    actor: str | None = None
    tenant: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded record from the commands, results, events or tasks topic."""

    event_id: str
    type: str
    workflow_id: str
    seq: int | None
    occurred_at: int
    causation_id: str | None
    correlation_id: str | None
    actor: str | None
    tenant: str | None
    idempotency_key: str | None
    schema_version: int
    body: Body


@dataclass(frozen=True, slots=True)
class EnvelopeHead:
    """An envelope whose body is not converted yet: what a router needs to pick records."""

    type: str
    """The envelope's ``type``: the body's type name (``WorkflowStarted``, ``ExecuteStep``...)."""
    workflow_id: str
    seq: int | None
    causation_id: str | None
    data: bytes
    record: dict[str, Any] | None = None
    """The Avro record, when it was decoded already."""


_HEAD_FIELDS = ("event_id", "type", "workflow_id", "seq", "occurred_at", "causation_id")


@dataclass(frozen=True)
class _JsonFields:
    """The JSON-text fields of one record: whether each may be null, and which are documents.

    Documents (``Json`` fields of the core type, ``True`` for a list of them) travel as
    their text, never re-encoded; the other JSON fields are plain data (cause, definition,
    state).
    """

    nullable: Mapping[str, bool]
    documents: Mapping[str, bool] = dataclasses.field(default_factory=dict)


def _json_fields(schema: Mapping[str, Any]) -> dict[str, _JsonFields]:
    """JSON-text fields of every record reachable from an inlined root schema."""
    found: dict[str, _JsonFields] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for branch in node:
                walk(branch)
        elif isinstance(node, dict) and node.get("type") == "record":
            name = node["name"] if "." in node["name"] else NAMESPACE + node["name"]
            found[name] = _JsonFields(
                {
                    f["name"]: isinstance(f["type"], list) and "null" in f["type"]
                    for f in node["fields"]
                    if f.get(JSON_FIELD_ATTRIBUTE)
                }
            )
            for f in node["fields"]:
                walk(f["type"])

    walk(schema)
    return found


class Contracts:
    """Encoders and decoders for every kflow record, over one schema registry."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.codec = AvroCodec(registry)
        self._json: dict[str, _JsonFields] = {}
        for root in (ENVELOPE, SNAPSHOT, DEFINITION):
            self._json.update(_json_fields(self.codec.registry.current(root).schema))
        for cls in (*EVENT_TYPES.values(), *INPUT_TYPES.values(), ExecuteStep):
            name = NAMESPACE + cls.__name__
            self._json[name] = dataclasses.replace(
                self._json[name], documents=dict(document_fields(cls))
            )

    # -- envelope --------------------------------------------------------------------------

    def encode_body(self, body: Body, meta: EnvelopeMeta) -> bytes:
        """Single-object bytes of an envelope around an event, input or task."""
        if isinstance(body, Event):
            fields, seq, occurred_at = event_to_dict(body), body.seq, body.at
        elif isinstance(body, ExecuteStep):
            fields = {name: getattr(body, name) for name in _TASK_FIELDS}
            seq, occurred_at = None, body.scheduled_at
        else:
            fields, seq, occurred_at = input_to_dict(body), None, None
        type_name = type(body).__name__
        fields.pop("type", None)
        when = meta.occurred_at if meta.occurred_at is not None else occurred_at
        if when is None:
            raise EncodeError(f"{type_name}: EnvelopeMeta.occurred_at is required for inputs")
        record = {
            "event_id": meta.event_id,
            "type": type_name,
            "workflow_id": body.workflow_id,
            "seq": seq,
            "occurred_at": when,
            "causation_id": meta.causation_id,
            "correlation_id": meta.correlation_id,
            "actor": meta.actor,
            "tenant": meta.tenant,
            "idempotency_key": meta.idempotency_key,
            "schema_version": SCHEMA_VERSION,
            "body": (NAMESPACE + type_name, self._to_avro(NAMESPACE + type_name, fields)),
        }
        return self.codec.encode(ENVELOPE, record)

    def decode_envelope(self, data: bytes) -> Envelope:
        """The envelope in ``data``; raises :class:`DecodeError` for anything else."""
        return self.envelope_of(self.decode_head(data))

    def decode_head(self, data: bytes) -> EnvelopeHead:
        """The routing fields of the envelope in ``data``; :meth:`envelope_of` decodes the
        rest. Only the leading fields are read when the writer schema allows it (a small
        fraction of the work); otherwise this decodes the record and raises
        :class:`DecodeError` like :meth:`decode_envelope`. A malformed rest is found by
        ``envelope_of``."""
        leading = self.codec.read_leading(data, ENVELOPE, _HEAD_FIELDS)
        if leading is not None:
            return EnvelopeHead(
                type=leading["type"],
                workflow_id=leading["workflow_id"],
                seq=leading["seq"],
                causation_id=leading["causation_id"],
                data=data,
            )
        _, record = self.codec.decode(data, expected=ENVELOPE)
        return EnvelopeHead(
            type=record["body"][0].removeprefix(NAMESPACE),
            workflow_id=record["workflow_id"],
            seq=record["seq"],
            causation_id=record["causation_id"],
            data=data,
            record=record,
        )

    def envelope_of(self, head: EnvelopeHead) -> Envelope:
        """The whole envelope of ``head`` (converts the body; can be called again)."""
        record = head.record
        if record is None:
            _, record = self.codec.decode(head.data, expected=ENVELOPE)
        record_name, fields = record["body"]
        type_name = record_name.removeprefix(NAMESPACE)
        try:
            plain = self._from_avro(record_name, dict(fields))
            body: Body
            if type_name in EVENT_TYPES:
                body = event_from_dict({"type": type_name, **plain})
            elif type_name in INPUT_TYPES:
                body = input_from_dict({"type": type_name, **plain})
            elif type_name == "ExecuteStep":
                body = ExecuteStep(**plain)
            else:
                raise ValueError(f"no Python type for body {record_name}")
        except DecodeError:
            raise
        except Exception as e:  # the core raises ValueError; definitions raise their own
            raise DecodeError(DecodeFailure.MALFORMED, f"{type_name} body: {e}") from e
        return Envelope(
            event_id=record["event_id"],
            type=record["type"],
            workflow_id=record["workflow_id"],
            seq=record["seq"],
            occurred_at=record["occurred_at"],
            causation_id=record["causation_id"],
            correlation_id=record["correlation_id"],
            actor=record["actor"],
            tenant=record["tenant"],
            idempotency_key=record["idempotency_key"],
            schema_version=record["schema_version"],
            body=body,
        )

    # -- snapshots and definitions ---------------------------------------------------------

    def encode_snapshot(self, snapshot: WorkflowSnapshot) -> bytes:
        """Single-object bytes of a workflow snapshot."""
        fields = {name: getattr(snapshot, name) for name in _SNAPSHOT_FIELDS}
        return self.codec.encode(SNAPSHOT, self._to_avro(SNAPSHOT, fields))

    def decode_snapshot(self, data: bytes) -> WorkflowSnapshot:
        """The snapshot in ``data``; raises :class:`DecodeError` for anything else."""
        _, record = self.codec.decode(data, expected=SNAPSHOT)
        return WorkflowSnapshot(**self._from_avro(SNAPSHOT, record))

    def encode_definition(self, definition: WorkflowDefinitionRecord) -> bytes:
        """Single-object bytes of a definition record."""
        fields = {name: getattr(definition, name) for name in _DEFINITION_FIELDS}
        return self.codec.encode(DEFINITION, self._to_avro(DEFINITION, fields))

    def decode_definition(self, data: bytes) -> WorkflowDefinitionRecord:
        """The definition record in ``data``; raises :class:`DecodeError` for anything else."""
        _, record = self.codec.decode(data, expected=DEFINITION)
        return WorkflowDefinitionRecord(**self._from_avro(DEFINITION, record))

    # -- JSON-text fields ------------------------------------------------------------------

    def _to_avro(self, record_name: str, fields: dict[str, Any]) -> dict[str, Any]:
        for name, nullable in self._json[record_name].nullable.items():
            value = fields.get(name)
            try:
                fields[name] = None if (value is None and nullable) else dumps(value)
            except (TypeError, ValueError) as e:
                raise EncodeError(
                    f"{record_name}.{name}: not a JSON document ({e}); pass JSON values only"
                ) from e
        return fields

    def _from_avro(self, record_name: str, fields: dict[str, Any]) -> dict[str, Any]:
        json_fields = self._json[record_name]
        for name in json_fields.nullable:
            text = fields.get(name)
            if text is None:
                continue
            is_list = json_fields.documents.get(name)
            if is_list is False:
                fields[name] = Json.from_text(text)  # kept as it is, parsed when needed
                continue
            try:
                value = loads(text)
            except json.JSONDecodeError as e:
                raise DecodeError(
                    DecodeFailure.MALFORMED, f"{record_name}.{name} is not JSON: {e}"
                ) from e
            if is_list and not isinstance(value, list):
                raise DecodeError(DecodeFailure.MALFORMED, f"{record_name}.{name} is not a list")
            fields[name] = [Json.of(item) for item in value] if is_list else value
        return fields


@cache
def default_contracts() -> Contracts:
    """Contracts over the installed schemas (built once per process)."""
    return Contracts()


def encode_event(event: Event, meta: EnvelopeMeta) -> bytes:
    """Envelope bytes of a core event (``seq`` and ``occurred_at`` from the event)."""
    return default_contracts().encode_body(event, meta)


def encode_input(value: Input, meta: EnvelopeMeta) -> bytes:
    """Envelope bytes of a command or result (``meta.occurred_at`` is required)."""
    return default_contracts().encode_body(value, meta)


def encode_task(task: ExecuteStep, meta: EnvelopeMeta) -> bytes:
    """Envelope bytes of a task (``occurred_at`` defaults to ``scheduled_at``)."""
    return default_contracts().encode_body(task, meta)


def decode(data: bytes) -> Envelope:
    """The envelope in ``data``; raises :class:`DecodeError` (with a ``reason``) otherwise."""
    return default_contracts().decode_envelope(data)
