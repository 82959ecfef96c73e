"""A definition compiled for the state machine: adjacency, counters, references.

Built once per definition (cached) so ``decide``/``evolve`` never rescan all nodes.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from kflow.core.definition import NodeSpec, WorkflowDefinition, parse_definition
from kflow.core.expressions import expression_text, iter_expressions, step_references
from kflow.core.validation import validate_definition

_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True, eq=False)
class Graph:
    """Read-only lookup tables of a valid definition."""

    definition: WorkflowDefinition
    nodes: dict[str, NodeSpec]
    dependents: dict[str, tuple[str, ...]]
    """Node id -> ids that depend on it, sorted."""
    dep_count: dict[str, int]
    refs: dict[str, tuple[str, ...]]
    """Node id -> node ids its expressions read (``steps.<id>``), sorted."""
    roots: tuple[str, ...]
    sinks: tuple[str, ...]
    input_validator: Draft202012Validator | None
    definition_dict: dict[str, Any]
    """``definition.to_dict()`` computed once; shared, never to be mutated."""


_by_identity: OrderedDict[int, tuple[WorkflowDefinition, Graph]] = OrderedDict()
_by_json: OrderedDict[str, Graph] = OrderedDict()


def compile_graph(defn: WorkflowDefinition) -> Graph:
    """Validate and compile (cached by object identity); raises ``DefinitionError``."""
    hit = _by_identity.get(id(defn))
    if hit is not None and hit[0] is defn:
        return hit[1]
    graph = _compile(defn)
    _by_identity[id(defn)] = (defn, graph)
    if len(_by_identity) > _CACHE_SIZE:
        _by_identity.popitem(last=False)
    return graph


def graph_from_dict(data: dict[str, Any]) -> Graph:
    """Compile a definition given as a JSON dict (cached by its canonical JSON)."""
    key = json.dumps(data, sort_keys=True, separators=(",", ":"))
    graph = _by_json.get(key)
    if graph is None:
        graph = compile_graph(parse_definition(data))
        _by_json[key] = graph
        if len(_by_json) > _CACHE_SIZE:
            _by_json.popitem(last=False)
    return graph


def _compile(defn: WorkflowDefinition) -> Graph:
    validate_definition(defn)
    nodes = {node.id: node for node in defn.nodes}
    dependents: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for node in defn.nodes:
        for dep in node.depends_on:
            dependents[dep].append(node.id)
    refs: dict[str, tuple[str, ...]] = {}
    for node in defn.nodes:
        found: set[str] = set()
        texts = list(iter_expressions(node.input))
        texts += [expression_text(t) for t in (node.when, node.for_each) if t is not None]
        for text in texts:
            found |= step_references(text)[0]
        refs[node.id] = tuple(sorted(found))
    validator = None
    if defn.input_schema is not None:
        validator = Draft202012Validator(defn.input_schema)
    return Graph(
        definition=defn,
        nodes=nodes,
        dependents={key: tuple(sorted(value)) for key, value in dependents.items()},
        dep_count={node.id: len(node.depends_on) for node in defn.nodes},
        refs=refs,
        roots=tuple(sorted(node.id for node in defn.nodes if not node.depends_on)),
        sinks=tuple(sorted(node_id for node_id, deps in dependents.items() if not deps)),
        input_validator=validator,
        definition_dict=defn.to_dict(),
    )
