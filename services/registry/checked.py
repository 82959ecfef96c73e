"""What one record of ``{prefix}.definitions`` means, checked the same way by every reader.

The topic can be written by anyone with access, not only by ``kflow definitions apply``
(which validates first), so readers never trust it: a record registers a definition only
if it decodes, its key is its ``name@version`` and it passes
``kflow.core.validation.validate_definition``. Anything else is *refused*: it registers
nothing and, being the latest record of its key, removes what that key held before (as a
rebuild from the compacted topic would). Who dead-letters a refused record: ADR 0046.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kflow.bus.contracts import Contracts, default_contracts
from kflow.bus.errors import DecodeError
from kflow.core.definition import WorkflowDefinition, parse_definition
from kflow.core.errors import DefinitionError, Problem
from kflow.core.validation import validate_definition

INVALID_DEFINITION = "invalid_definition"
"""The dead-letter ``reason`` of a definition that decodes but is not valid."""
BAD_KEY = "bad_key"
"""The dead-letter ``reason`` of a record whose key is not ``name@version``."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a record registers nothing: a stable ``reason`` and a message naming every problem."""

    reason: str
    error_type: str
    message: str


@dataclass(frozen=True, slots=True)
class CheckedRecord:
    """One definitions record after checking.

    ``definition`` is set for a valid record; ``None`` with no ``refusal`` is a tombstone.
    ``name``/``version`` come from the key (``""``/``0`` when the key names no version).
    ``parsed`` is the definition of a refused record that did parse (its problems are in
    the graph), so an explicit start of that version can be rejected naming them.
    """

    key: str
    name: str
    version: int
    definition: WorkflowDefinition | None = None
    document: dict[str, Any] | None = None
    """The valid definition as the record wrote it."""
    refusal: Refusal | None = None
    parsed: WorkflowDefinition | None = None

    @property
    def names_a_version(self) -> bool:
        """Whether the key is ``name@version`` (so the record replaces that version)."""
        return bool(self.name) and self.version > 0


def parse_key(key: str) -> tuple[str, int]:
    """``("name", version)`` of a ``name@version`` key; ``("", 0)`` for anything else."""
    name, _, version = key.rpartition("@")
    if not name or not version.isdigit() or int(version) < 1:
        return "", 0
    return name, int(version)


def check_record(
    key: str | None, value: bytes | None, contracts: Contracts | None = None
) -> CheckedRecord:
    """Decode and validate one record of the definitions topic (never raises)."""
    key_text = key or ""
    name, version = parse_key(key_text)
    if value is None:
        if not name:
            return _refused(key_text, BAD_KEY, "BadKey", f"tombstone key {key_text!r}", name, 0)
        return CheckedRecord(key_text, name, version)
    try:
        record = (contracts or default_contracts()).decode_definition(value)
    except DecodeError as e:
        return _refused(key_text, e.reason.value, "DecodeError", e.detail, name, version)
    if record.key != key_text:
        problem = Problem(
            "key",
            f"record key {key_text!r} is not its name@version {record.key!r}",
            "publish with `kflow definitions apply`, which keys each record by name@version",
        )
        message = str(DefinitionError([problem]))
        return _refused(key_text, BAD_KEY, "DefinitionError", message, name, version)
    try:
        parsed = parse_definition(record.definition)
    except DefinitionError as e:
        return _refused(key_text, INVALID_DEFINITION, "DefinitionError", str(e), name, version)
    if parsed.key != record.key:
        problem = Problem(
            "definition",
            f"is {parsed.key} inside the record of {record.key}",
            "give the record the definition's own name and version",
        )
        message = str(DefinitionError([problem]))
        return _refused(key_text, INVALID_DEFINITION, "DefinitionError", message, name, version)
    try:
        validate_definition(parsed)
    except DefinitionError as e:
        return _refused(
            key_text, INVALID_DEFINITION, "DefinitionError", str(e), name, version, parsed
        )
    return CheckedRecord(key_text, name, version, definition=parsed, document=record.definition)


def _refused(
    key: str,
    reason: str,
    error_type: str,
    message: str,
    name: str = "",
    version: int = 0,
    parsed: WorkflowDefinition | None = None,
) -> CheckedRecord:
    return CheckedRecord(
        key, name, version, refusal=Refusal(reason, error_type, message), parsed=parsed
    )
