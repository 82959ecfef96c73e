"""In-memory view of the definitions topic, shared by a follower thread and its readers."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from kflow.core.definition import WorkflowDefinition

LATEST = 0
"""A StartWorkflow ``version`` of 0 (or less) asks for the highest registered version."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A version whose latest record was refused (see ``kflow.registry.checked``)."""

    name: str
    version: int
    message: str
    """Every problem found."""
    parsed: WorkflowDefinition | None
    """The definition, when it parsed (its problems are in the graph)."""


class DefinitionStore:
    """Valid definitions by ``name@version``, and the refused versions apart; thread-safe.

    A refused version is never listed and never the latest; an explicit lookup of it gives
    its parsed definition, so starting it is rejected naming its problems.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, dict[int, WorkflowDefinition]] = {}
        self._refused: dict[tuple[str, int], Refused] = {}

    def put(self, definition: WorkflowDefinition) -> None:
        """Add or replace one (valid) version."""
        with self._lock:
            self._by_name.setdefault(definition.name, {})[definition.version] = definition
            self._refused.pop((definition.name, definition.version), None)

    def refuse(self, refused: Refused) -> None:
        """Record that the latest record of one version was refused (it replaces a valid one)."""
        with self._lock:
            self._drop(refused.name, refused.version)
            self._refused[(refused.name, refused.version)] = refused

    def remove(self, name: str, version: int) -> None:
        """Forget one version (a tombstone on the topic)."""
        with self._lock:
            self._drop(name, version)
            self._refused.pop((name, version), None)

    def _drop(self, name: str, version: int) -> None:
        versions = self._by_name.get(name, {})
        versions.pop(version, None)
        if not versions:
            self._by_name.pop(name, None)

    def resolve(self, name: str, version: int = LATEST) -> WorkflowDefinition | None:
        """The definition ``name@version`` (``LATEST``: the highest valid version), or None."""
        with self._lock:
            versions = self._by_name.get(name, {})
            if version <= LATEST:
                return versions[max(versions)] if versions else None
            found = versions.get(version)
            if found is None and (refused := self._refused.get((name, version))) is not None:
                return refused.parsed
            return found

    def refused(self) -> list[Refused]:
        """The refused versions, sorted by name then version."""
        with self._lock:
            return [self._refused[k] for k in sorted(self._refused)]

    def all(self) -> list[WorkflowDefinition]:
        """Every definition, sorted by name then version."""
        with self._lock:
            return [
                d for name in sorted(self._by_name) for _, d in sorted(self._by_name[name].items())
            ]
