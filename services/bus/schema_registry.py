"""The schemas kflow can read and write, loaded from the ``schemas`` package.

Every ``.avsc`` file holds one named Avro type; references to other files use
the full name (``kflow.StartWorkflow``). A *root* is a named type that no
other type references (the envelope, the snapshot, the definition record and
the dead letter); each root is inlined into one self-contained schema, whose
CRC-64-AVRO fingerprint goes into the single-object header. The registry keeps
the current version of every root as the reader schema and every released
version under ``schemas/history/<version>/`` as a known writer schema.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from kflow.bus.errors import SchemaError

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CURRENT_VERSION = "current"
JSON_FIELD_ATTRIBUTE = "json"
"""A field attribute: ``"json": true`` marks a string that carries a JSON document."""

_NAMED_KINDS = frozenset({"record", "enum", "fixed"})

Schema = Any
"""An Avro schema as JSON data (dict, list or str)."""


@dataclass(frozen=True)
class RootSchema:
    """One version of one root type: parsed for fastavro, with its header bytes."""

    name: str
    version: str
    schema: Mapping[str, Any]
    parsed: Any = field(repr=False)
    canonical_form: str = field(repr=False)
    fingerprint: bytes
    header: bytes = field(repr=False)


def full_name(definition: Mapping[str, Any]) -> str:
    """The Avro full name of a named type definition."""
    name = str(definition["name"])
    namespace = definition.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def load_definitions(files_: Iterable[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Named types by full name, from ``(file name, JSON text)`` pairs."""
    definitions: dict[str, dict[str, Any]] = {}
    for file_name, text in files_:
        try:
            definition = json.loads(text)
        except json.JSONDecodeError as e:
            raise SchemaError(f"{file_name}: not JSON ({e}); fix the file") from e
        if not isinstance(definition, dict) or definition.get("type") not in _NAMED_KINDS:
            raise SchemaError(f"{file_name}: must hold one named Avro record, enum or fixed")
        name = full_name(definition)
        if name in definitions:
            raise SchemaError(f"{file_name}: type {name} is defined twice")
        definitions[name] = definition
    return definitions


def _references(schema: Schema, found: set[str]) -> None:
    if isinstance(schema, str):
        found.add(schema)
    elif isinstance(schema, list):
        for branch in schema:
            _references(branch, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "record":
            for f in schema.get("fields", []):
                _references(f["type"], found)
        elif kind == "array":
            _references(schema["items"], found)
        elif kind == "map":
            _references(schema["values"], found)
        elif not isinstance(kind, str) or kind not in _NAMED_KINDS:
            _references(kind, found)


def root_names(definitions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Names of the types no other type refers to, sorted."""
    referenced: set[str] = set()
    for definition in definitions.values():
        _references(definition, referenced)
    return sorted(name for name in definitions if name not in referenced)


def inline(name: str, definitions: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A self-contained schema for ``name``: each referenced type defined at first use."""
    defined: set[str] = set()

    def walk(schema: Schema) -> Schema:
        if isinstance(schema, str):
            if schema in definitions and schema not in defined:
                defined.add(schema)
                return walk(copy.deepcopy(dict(definitions[schema])))
            return schema
        if isinstance(schema, list):
            return [walk(branch) for branch in schema]
        if isinstance(schema, dict):
            kind = schema.get("type")
            if kind in _NAMED_KINDS:
                defined.add(full_name(schema))
            if kind == "record":
                for f in schema["fields"]:
                    f["type"] = walk(f["type"])
            elif kind == "array":
                schema["items"] = walk(schema["items"])
            elif kind == "map":
                schema["values"] = walk(schema["values"])
            elif not isinstance(kind, str):
                schema["type"] = walk(kind)
        return schema

    return dict(walk(name))


def build_root(name: str, version: str, schema: Mapping[str, Any]) -> RootSchema:
    """Parse one self-contained root schema and compute its fingerprint."""
    try:
        parsed = parse_schema(dict(schema), named_schemas={})
    except Exception as e:  # fastavro raises several types for bad schemas
        raise SchemaError(f"schema {name} ({version}) is not valid Avro: {e}") from e
    canonical = to_parsing_canonical_form(parsed)
    # fastavro returns the CRC-64-AVRO value as hex of its little-endian bytes.
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    return RootSchema(name, version, schema, parsed, canonical, fp, SINGLE_OBJECT_MARKER + fp)


def roots_from_files(version: str, files_: Iterable[tuple[str, str]]) -> dict[str, RootSchema]:
    """Every root of one schema version, keyed by full name."""
    definitions = load_definitions(files_)
    return {
        name: build_root(name, version, inline(name, definitions))
        for name in root_names(definitions)
    }


def avsc_files(directory: Traversable) -> list[tuple[str, str]]:
    """``(file name, text)`` of every ``.avsc`` under ``directory``, in name order."""
    found: list[tuple[str, str]] = []
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            found.extend(avsc_files(entry))
        elif entry.name.endswith(".avsc"):
            found.append((entry.name, entry.read_text(encoding="utf-8")))
    return found


class SchemaRegistry:
    """Reader schemas (current) and writer schemas (current and released) by fingerprint."""

    def __init__(
        self,
        current: Mapping[str, RootSchema],
        released: Mapping[str, Mapping[str, RootSchema]] | None = None,
    ) -> None:
        self._current = dict(current)
        self._by_fingerprint: dict[bytes, RootSchema] = {}
        self._versions: dict[str, dict[str, RootSchema]] = {CURRENT_VERSION: self._current}
        for version, roots in sorted((released or {}).items()):
            self._versions[version] = dict(roots)
            for root in roots.values():
                self._by_fingerprint.setdefault(root.fingerprint, root)
        for root in self._current.values():
            self._by_fingerprint[root.fingerprint] = root  # current wins on equal schemas

    @classmethod
    def from_directory(cls, root: Traversable) -> SchemaRegistry:
        """Load ``<root>/avro`` as current and ``<root>/history/<version>`` as released."""
        current = roots_from_files(CURRENT_VERSION, avsc_files(root / "avro"))
        released: dict[str, dict[str, RootSchema]] = {}
        history = root / "history"
        if history.is_dir():
            for version_dir in sorted(history.iterdir(), key=lambda e: e.name):
                if version_dir.is_dir():
                    released[version_dir.name] = roots_from_files(
                        version_dir.name, avsc_files(version_dir)
                    )
        return cls(current, released)

    def current(self, name: str) -> RootSchema:
        """The current (reader and writer) schema of a root type."""
        try:
            return self._current[name]
        except KeyError:
            raise SchemaError(f"no schema named {name}; known: {sorted(self._current)}") from None

    def by_fingerprint(self, fp: bytes) -> RootSchema | None:
        """The schema that wrote a record with this fingerprint, if known."""
        return self._by_fingerprint.get(fp)

    def versions(self) -> Mapping[str, Mapping[str, RootSchema]]:
        """All loaded versions: ``"current"`` and each released version."""
        return self._versions

    def register_writer(self, root: RootSchema) -> None:
        """Teach the registry a writer schema it did not ship with (e.g. from a newer peer)."""
        self._by_fingerprint.setdefault(root.fingerprint, root)


@cache
def default_registry() -> SchemaRegistry:
    """The registry built from the installed ``schemas`` package (loaded once)."""
    return SchemaRegistry.from_directory(files("kflow.schemas"))
