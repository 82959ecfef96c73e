"""Schema evolution through the codec: writer -> reader resolution by fingerprint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kflow.bus.codec import AvroCodec
from kflow.bus.compatibility import backward_problems
from kflow.bus.errors import DecodeError, DecodeFailure
from kflow.bus.schema_registry import SchemaRegistry

THING = "kflow.Thing"
V1_FIELDS: list[dict[str, Any]] = [{"name": "id", "type": "string"}]
WITH_DEFAULT = [*V1_FIELDS, {"name": "color", "type": "string", "default": "red"}]
WITHOUT_DEFAULT = [*V1_FIELDS, {"name": "color", "type": "string"}]


def _schema_dir(
    root: Path, current: list[dict[str, Any]], released: list[dict[str, Any]] | None
) -> SchemaRegistry:
    def write(directory: Path, fields: list[dict[str, Any]]) -> None:
        directory.mkdir(parents=True)
        record = {"type": "record", "name": "Thing", "namespace": "kflow", "fields": fields}
        (directory / "Thing.avsc").write_text(json.dumps(record))

    write(root / "avro", current)
    if released is not None:
        write(root / "history" / "v1", released)
    return SchemaRegistry.from_directory(root)


def test_new_reader_fills_the_default_for_old_records(tmp_path: Path) -> None:
    old = AvroCodec(_schema_dir(tmp_path / "old", V1_FIELDS, None))
    new = AvroCodec(_schema_dir(tmp_path / "new", WITH_DEFAULT, V1_FIELDS))
    old_bytes = old.encode(THING, {"id": "a"})
    assert new.decode(old_bytes) == (THING, {"id": "a", "color": "red"})
    assert new.decode(new.encode(THING, {"id": "b", "color": "blue"}))[1]["color"] == "blue"


def test_old_reader_rejects_unknown_newer_writer_clearly(tmp_path: Path) -> None:
    old = AvroCodec(_schema_dir(tmp_path / "old", V1_FIELDS, None))
    new = AvroCodec(_schema_dir(tmp_path / "new", WITH_DEFAULT, V1_FIELDS))
    new_bytes = new.encode(THING, {"id": "a", "color": "blue"})
    with pytest.raises(DecodeError) as info:
        old.decode(new_bytes)
    assert info.value.reason is DecodeFailure.UNKNOWN_FINGERPRINT
    assert "upgrade" in str(info.value)


def test_old_reader_reads_newer_writer_once_it_knows_the_schema(tmp_path: Path) -> None:
    old_registry = _schema_dir(tmp_path / "old", V1_FIELDS, None)
    new_registry = _schema_dir(tmp_path / "new", WITH_DEFAULT, V1_FIELDS)
    new_bytes = AvroCodec(new_registry).encode(THING, {"id": "a", "color": "blue"})
    old_registry.register_writer(new_registry.current(THING))
    assert AvroCodec(old_registry).decode(new_bytes) == (THING, {"id": "a"})


def test_field_without_default_cannot_read_old_records(tmp_path: Path) -> None:
    old = AvroCodec(_schema_dir(tmp_path / "old", V1_FIELDS, None))
    broken_registry = _schema_dir(tmp_path / "bad", WITHOUT_DEFAULT, V1_FIELDS)
    with pytest.raises(DecodeError) as info:
        AvroCodec(broken_registry).decode(old.encode(THING, {"id": "a"}))
    assert info.value.reason is DecodeFailure.INCOMPATIBLE
    assert "v1" in str(info.value)
    released = broken_registry.versions()["v1"][THING]
    problems = backward_problems(broken_registry.current(THING).schema, released.schema)
    assert problems == [
        'kflow.Thing.color: field added without a default; old records lack it (give it "default")'
    ]


def test_type_promotion_int_to_long_reads_old_records(tmp_path: Path) -> None:
    old_fields = [{"name": "id", "type": "string"}, {"name": "n", "type": "int"}]
    new_fields = [{"name": "id", "type": "string"}, {"name": "n", "type": "long"}]
    old = AvroCodec(_schema_dir(tmp_path / "old", old_fields, None))
    new = AvroCodec(_schema_dir(tmp_path / "new", new_fields, old_fields))
    assert new.decode(old.encode(THING, {"id": "a", "n": 7})) == (THING, {"id": "a", "n": 7})
