"""The .avsc files mirror the core types and stay backward compatible with released versions."""

from __future__ import annotations

import dataclasses
import json
import typing
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from kflow.bus.compatibility import backward_problems
from kflow.bus.contracts import SCHEMA_VERSION
from kflow.bus.records import ExecuteStep, WorkflowDefinitionRecord, WorkflowSnapshot
from kflow.bus.schema_registry import (
    CURRENT_VERSION,
    SchemaRegistry,
    avsc_files,
    default_registry,
    load_definitions,
)
from kflow.core.events import EVENT_TYPES
from kflow.core.inputs import INPUT_TYPES

SCHEMAS = files("kflow.schemas")
BUS_TYPES: dict[str, type[Any]] = {
    "ExecuteStep": ExecuteStep,
    "WorkflowSnapshot": WorkflowSnapshot,
    "WorkflowDefinitionRecord": WorkflowDefinitionRecord,
}


def _current_definitions() -> dict[str, dict[str, Any]]:
    return load_definitions(avsc_files(SCHEMAS / "avro"))


def test_schemas_are_package_data() -> None:
    assert (SCHEMAS / "avro" / "envelope" / "Envelope.avsc").is_file()
    assert (SCHEMAS / "README.md").is_file()
    assert (SCHEMAS / "history" / f"v{SCHEMA_VERSION}").is_dir()


def test_roots_are_the_four_top_level_records() -> None:
    assert sorted(default_registry().versions()[CURRENT_VERSION]) == [
        "kflow.DeadLetter",
        "kflow.Envelope",
        "kflow.WorkflowDefinitionRecord",
        "kflow.WorkflowSnapshot",
    ]


def _nullable(annotation: Any) -> bool:
    return type(None) in typing.get_args(annotation)


@pytest.mark.parametrize(
    "cls",
    [*EVENT_TYPES.values(), *INPUT_TYPES.values(), *BUS_TYPES.values()],
    ids=lambda c: c.__name__,
)
def test_every_type_has_a_record_with_matching_fields(cls: type[Any]) -> None:
    definitions = _current_definitions()
    record = definitions.get(f"kflow.{cls.__name__}")
    assert record is not None, f"schemas/avro has no record kflow.{cls.__name__}"
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    avro_fields = {f["name"]: f for f in record["fields"]}
    assert list(avro_fields) == list(fields), f"{cls.__name__}: field names or order differ"
    for name, field in fields.items():
        avro = avro_fields[name]
        avro_nullable = isinstance(avro["type"], list) and "null" in avro["type"]
        if not avro.get("json"):
            assert avro_nullable == _nullable(hints[name]), f"{cls.__name__}.{name} nullability"
        has_default = (
            field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING
        )
        assert ("default" in avro) == has_default, f"{cls.__name__}.{name} default"


def test_envelope_body_holds_every_event_input_and_task() -> None:
    envelope = _current_definitions()["kflow.Envelope"]
    body = next(f for f in envelope["fields"] if f["name"] == "body")
    expected = {*EVENT_TYPES, *INPUT_TYPES, "ExecuteStep"}
    assert {name.removeprefix("kflow.") for name in body["type"]} == expected
    names = [f["name"] for f in envelope["fields"]]
    assert names == [
        "event_id",
        "type",
        "workflow_id",
        "seq",
        "occurred_at",
        "causation_id",
        "correlation_id",
        "actor",
        "tenant",
        "idempotency_key",
        "schema_version",
        "body",
    ]


def test_current_schemas_read_every_released_version() -> None:
    versions = default_registry().versions()
    released = [v for v in versions if v != CURRENT_VERSION]
    assert released, "schemas/history must hold at least one released version"
    for version in released:
        for name, old in versions[version].items():
            current = versions[CURRENT_VERSION].get(name)
            assert current is not None, f"{name} of {version} was removed"
            assert backward_problems(current.schema, old.schema) == [], f"{name} vs {version}"


def _write(directory: Path, name: str, fields: list[dict[str, Any]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    record = {"type": "record", "name": name, "namespace": "kflow", "fields": fields}
    (directory / f"{name}.avsc").write_text(json.dumps(record))


def _copy_current(to: Path) -> None:
    for entry_name, text in avsc_files(SCHEMAS / "avro"):
        (to / entry_name).write_text(text)


def test_checker_rejects_a_field_added_without_default(tmp_path: Path) -> None:
    new = tmp_path / "avro"
    new.mkdir()
    _copy_current(new)
    scheduled = json.loads((new / "StepScheduled.avsc").read_text())
    scheduled["fields"].append({"name": "priority", "type": "int"})
    (new / "StepScheduled.avsc").write_text(json.dumps(scheduled))
    released = default_registry().versions()["v1"]["kflow.Envelope"]
    changed = SchemaRegistry.from_directory(tmp_path).current("kflow.Envelope")
    problems = backward_problems(changed.schema, released.schema)
    assert len(problems) == 1
    assert "priority" in problems[0] and "without a default" in problems[0]


def test_checker_accepts_a_field_added_with_default(tmp_path: Path) -> None:
    new = tmp_path / "avro"
    new.mkdir()
    _copy_current(new)
    scheduled = json.loads((new / "StepScheduled.avsc").read_text())
    scheduled["fields"].append({"name": "priority", "type": "int", "default": 0})
    (new / "StepScheduled.avsc").write_text(json.dumps(scheduled))
    released = default_registry().versions()["v1"]["kflow.Envelope"]
    changed = SchemaRegistry.from_directory(tmp_path).current("kflow.Envelope")
    assert backward_problems(changed.schema, released.schema) == []


R = "kflow.R"


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ({"name": "a", "type": "long"}, {"name": "a", "type": "int"}, "long cannot be read as int"),
        ({"name": "a", "type": "string"}, {"name": "a", "type": "long"}, "cannot be read"),
        (
            {"name": "a", "type": ["null", "string"]},
            {"name": "a", "type": "string"},
            "null cannot be read as string",
        ),
        (
            {"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}},
            {"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["X"]}},
            "removed",
        ),
    ],
)
def test_checker_rejects_incompatible_changes(
    old: dict[str, Any], new: dict[str, Any], fragment: str
) -> None:
    writer = {"type": "record", "name": R, "fields": [old]}
    reader = {"type": "record", "name": R, "fields": [new]}
    problems = backward_problems(reader, writer)
    assert problems and fragment in problems[0]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"name": "a", "type": "int"}, {"name": "a", "type": "long"}),
        ({"name": "a", "type": "string"}, {"name": "a", "type": ["null", "string"]}),
        ({"name": "a", "type": "long"}, {"name": "b", "type": "long", "aliases": ["a"]}),
        (
            {"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["X"]}},
            {"name": "a", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}},
        ),
        (
            {"name": "a", "type": {"type": "array", "items": "int"}},
            {"name": "a", "type": {"type": "array", "items": "double"}},
        ),
    ],
)
def test_checker_accepts_compatible_changes(old: dict[str, Any], new: dict[str, Any]) -> None:
    writer = {"type": "record", "name": R, "fields": [old, {"name": "gone", "type": "string"}]}
    reader = {"type": "record", "name": R, "fields": [new]}
    assert backward_problems(reader, writer) == []
