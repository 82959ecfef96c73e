"""In-memory view of the definitions topic, shared by a follower thread and its readers."""

from __future__ import annotations

import threading

from kflow.core.definition import WorkflowDefinition

LATEST = 0
"""A StartWorkflow ``version`` of 0 (or less) asks for the highest registered version."""


class DefinitionStore:
    """Definitions by ``name@version``; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_name: dict[str, dict[int, WorkflowDefinition]] = {}

    def put(self, definition: WorkflowDefinition) -> None:
        """Add or replace one version."""
        with self._lock:
            self._by_name.setdefault(definition.name, {})[definition.version] = definition

    def remove(self, name: str, version: int) -> None:
        """Forget one version (a tombstone on the topic)."""
        with self._lock:
            versions = self._by_name.get(name, {})
            versions.pop(version, None)
            if not versions:
                self._by_name.pop(name, None)

    def resolve(self, name: str, version: int = LATEST) -> WorkflowDefinition | None:
        """The definition ``name@version`` (``LATEST``: the highest version), or None."""
        with self._lock:
            versions = self._by_name.get(name)
            if not versions:
                return None
            if version <= LATEST:
                return versions[max(versions)]
            return versions.get(version)

    def all(self) -> list[WorkflowDefinition]:
        """Every definition, sorted by name then version."""
        with self._lock:
            return [
                d for name in sorted(self._by_name) for _, d in sorted(self._by_name[name].items())
            ]
