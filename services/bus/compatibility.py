"""Backward-compatibility check between two Avro schemas (pure, no I/O).

``backward_problems(reader, writer)`` lists why data written with ``writer``
could not be read with ``reader`` under the Avro schema-resolution rules; an
empty list means the new reader can read all old data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kflow.bus.schema_registry import full_name

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}

Schema = Any


class _Names:
    """Named types seen so far in one schema (Avro defines a name at its first use)."""

    def __init__(self) -> None:
        self.types: dict[str, Mapping[str, Any]] = {}

    def resolve(self, schema: Schema) -> Schema:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return self.types.get(schema, schema)
        if isinstance(schema, dict):
            if schema.get("type") in ("record", "enum", "fixed"):
                self.types.setdefault(full_name(schema), schema)
            elif isinstance(schema.get("type"), str) and schema["type"] in _PRIMITIVES:
                return schema["type"]  # {"type": "string", "logicalType": ...}
        return schema


def _kind(schema: Schema) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    return str(schema.get("type"))


def _register_all(schema: Schema, names: _Names) -> None:
    """Pre-register every named type so references resolve regardless of walk order."""
    schema = names.resolve(schema)
    if isinstance(schema, list):
        for branch in schema:
            _register_all(branch, names)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            for f in schema.get("fields", []):
                _register_all(f["type"], names)
        elif kind == "array":
            _register_all(schema["items"], names)
        elif kind == "map":
            _register_all(schema["values"], names)


class _Checker:
    def __init__(self, reader: Schema, writer: Schema) -> None:
        self.reader_names = _Names()
        self.writer_names = _Names()
        _register_all(reader, self.reader_names)
        _register_all(writer, self.writer_names)
        self.in_progress: set[tuple[str, str]] = set()

    def check(self, reader: Schema, writer: Schema, path: str) -> list[str]:
        reader = self.reader_names.resolve(reader)
        writer = self.writer_names.resolve(writer)
        r_kind, w_kind = _kind(reader), _kind(writer)
        if w_kind == "union":
            problems: list[str] = []
            for branch in writer:
                problems.extend(self.check(reader, branch, f"{path}|{_label(branch)}"))
            return problems
        if r_kind == "union":
            for branch in reader:
                if not self.check(branch, writer, path):
                    return []
            same = [b for b in reader if _label(self.reader_names.resolve(b)) == _label(writer)]
            if same:  # the branch meant for this type exists: report why it cannot read
                return self.check(same[0], writer, path)
            return [f"{path}: no branch of the reader union accepts writer type {_label(writer)}"]
        if r_kind in _PRIMITIVES or w_kind in _PRIMITIVES:
            if r_kind == w_kind or r_kind in _PROMOTIONS.get(w_kind, set()):
                return []
            return [f"{path}: writer type {w_kind} cannot be read as {r_kind}"]
        if r_kind != w_kind:
            return [f"{path}: writer type {w_kind} cannot be read as {r_kind}"]
        if r_kind == "array":
            return self.check(reader["items"], writer["items"], f"{path}[]")
        if r_kind == "map":
            return self.check(reader["values"], writer["values"], f"{path}{{}}")
        r_name, w_name = full_name(reader), full_name(writer)
        if r_name != w_name and w_name not in reader.get("aliases", []):
            return [f"{path}: writer type {w_name} cannot be read as {r_name} (names differ)"]
        if r_kind == "fixed":
            if reader["size"] != writer["size"]:
                return [f"{path}: fixed size changed {writer['size']} -> {reader['size']}"]
            return []
        if r_kind == "enum":
            missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
            if missing and "default" not in reader:
                return [f"{path}: enum symbols {missing} removed and the enum has no default"]
            return []
        return self._check_record(reader, writer, path or r_name)

    def _check_record(self, reader: Schema, writer: Schema, path: str) -> list[str]:
        key = (full_name(reader), full_name(writer))
        if key in self.in_progress:
            return []  # recursive type: already being checked further up
        self.in_progress.add(key)
        writer_fields = {f["name"]: f for f in writer["fields"]}
        problems: list[str] = []
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            source = next((writer_fields[n] for n in names if n in writer_fields), None)
            field_path = f"{path}.{field['name']}"
            if source is None:
                if "default" not in field:
                    problems.append(
                        f"{field_path}: field added without a default; old records lack it "
                        f'(give it "default")'
                    )
                continue
            problems.extend(self.check(field["type"], source["type"], field_path))
        self.in_progress.discard(key)
        return problems


def _label(schema: Schema) -> str:
    if isinstance(schema, dict) and "name" in schema:
        return full_name(schema)
    return _kind(schema)


def backward_problems(reader: Schema, writer: Schema) -> list[str]:
    """Why ``reader`` cannot read data written by ``writer``; empty when compatible."""
    return _Checker(reader, writer).check(reader, writer, "")
