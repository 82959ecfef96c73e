"""Execution order of a DAG: Kahn's algorithm, level by level, ties broken by node id.

``order`` is the concatenation of ``levels``; level *k* holds the nodes whose longest
dependency chain has length *k*, sorted by id. Cost O(V log V + E) (the log is the
per-level sort that makes the order stable).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kflow.core.definition import WorkflowDefinition
from kflow.core.errors import DefinitionError, Problem


@dataclass(frozen=True, slots=True)
class Plan:
    """A stable topological order and its display levels."""

    order: tuple[str, ...]
    levels: tuple[tuple[str, ...], ...]


def plan(defn: WorkflowDefinition) -> Plan:
    """Plan a definition; raises ``DefinitionError`` naming the cycle if there is one."""
    ids = [node.id for node in defn.nodes]
    deps = {node.id: node.depends_on for node in defn.nodes}
    levels, leftover = kahn_levels(ids, deps)
    if leftover:
        raise DefinitionError([cycle_problem(leftover, deps)])
    order = tuple(node_id for level in levels for node_id in level)
    return Plan(order=order, levels=levels)


def kahn_levels(
    ids: Sequence[str], deps: Mapping[str, Sequence[str]]
) -> tuple[tuple[tuple[str, ...], ...], list[str]]:
    """Levels of the acyclic part, and the ids left over because they sit on or after a cycle.

    Dependencies on ids not in ``ids`` are ignored (validation reports them).
    """
    known = set(ids)
    indegree: dict[str, int] = dict.fromkeys(ids, 0)
    dependents: dict[str, list[str]] = {node_id: [] for node_id in ids}
    for node_id in ids:
        for dep in set(deps.get(node_id, ())):
            if dep in known:
                indegree[node_id] += 1
                dependents[dep].append(node_id)
    current = sorted(node_id for node_id, count in indegree.items() if count == 0)
    levels: list[tuple[str, ...]] = []
    placed = 0
    while current:
        levels.append(tuple(current))
        placed += len(current)
        following: list[str] = []
        for node_id in current:
            for child in dependents[node_id]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    following.append(child)
        following.sort()
        current = following
    leftover = sorted(node_id for node_id, count in indegree.items() if count > 0)
    return tuple(levels), leftover if placed < len(indegree) else []


def find_cycle(leftover: Sequence[str], deps: Mapping[str, Sequence[str]]) -> list[str]:
    """One cycle among the left-over ids, as ``[a, b, ..., a]`` where each depends on the next."""
    remaining = set(leftover)
    node = min(remaining)
    seen: dict[str, int] = {}
    path: list[str] = []
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min(dep for dep in deps[node] if dep in remaining)
    return [*path[seen[node] :], node]


def cycle_problem(leftover: Sequence[str], deps: Mapping[str, Sequence[str]]) -> Problem:
    """A ``Problem`` naming the cycle path."""
    cycle = find_cycle(leftover, deps)
    return Problem(
        path=f"nodes.{cycle[0]}.depends_on",
        message=f"dependency cycle: {' -> '.join(cycle)} (each depends on the next)",
        fix=f"remove one dependency of the cycle, e.g. {cycle[1]!r} from {cycle[0]!r}",
    )
