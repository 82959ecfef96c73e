"""Size limits the core enforces (adapters pass their configured values)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds; exceeding one gives a clear error, never a crash."""

    max_nodes: int = 10_000
    """Nodes per definition."""
    max_payload_bytes: int = 1_000_000
    """JSON size of a workflow input, a step output or a node's literal input."""
    max_map_items: int = 10_000
    """Children of one ``for_each`` node."""


DEFAULT_LIMITS = Limits()
