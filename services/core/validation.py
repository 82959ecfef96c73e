"""Checks a definition and reports every problem at once as one ``DefinitionError``."""

from __future__ import annotations

import json
import re
from collections.abc import Collection

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from kflow.core.definition import BUILTIN_TYPES, SLEEP, NodeSpec, WorkflowDefinition
from kflow.core.errors import DefinitionError, Problem
from kflow.core.expressions import (
    ExpressionError,
    expression_text,
    iter_expressions,
    step_references,
)
from kflow.core.limits import DEFAULT_LIMITS, Limits
from kflow.core.planner import cycle_problem, kahn_levels

NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
QUEUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_definition(
    defn: WorkflowDefinition,
    registry: Collection[str] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Raise ``DefinitionError`` listing every problem; return None if the definition is valid.

    ``registry``: known node types; when given, other types are reported (``sleep`` and
    ``approval`` are built in and always known).
    """
    problems: list[Problem] = []
    _check_header(defn, problems)
    if not defn.nodes:
        problems.append(Problem("nodes", "the workflow has no nodes", "add at least one node"))
    if len(defn.nodes) > limits.max_nodes:
        problems.append(
            Problem(
                "nodes",
                f"{len(defn.nodes)} nodes exceed the limit of {limits.max_nodes}",
                "split the workflow or raise the max_nodes limit",
            )
        )
    seen: set[str] = set()
    for position, node in enumerate(defn.nodes):
        where = f"nodes[{position}]" if not NODE_ID.match(node.id) else f"nodes.{node.id}"
        _check_node(node, where, registry, limits, problems)
        if node.id in seen:
            problems.append(
                Problem(f"nodes[{position}].id", f"duplicate node id {node.id!r}", "rename one")
            )
        seen.add(node.id)
    if problems:
        raise DefinitionError(problems)
    _check_graph(defn, problems)
    if problems:
        raise DefinitionError(problems)


def _check_header(defn: WorkflowDefinition, problems: list[Problem]) -> None:
    if not NAME.match(defn.name):
        problems.append(
            Problem(
                "name",
                f"invalid workflow name {defn.name!r}",
                "use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
            )
        )
    if defn.input_schema is not None:
        try:
            Draft202012Validator.check_schema(defn.input_schema)
        except SchemaError as exc:
            problems.append(
                Problem(
                    "input_schema",
                    f"not a valid JSON Schema: {exc.message}",
                    "fix the schema (draft 2020-12)",
                )
            )


def _check_node(
    node: NodeSpec,
    where: str,
    registry: Collection[str] | None,
    limits: Limits,
    problems: list[Problem],
) -> None:
    if not NODE_ID.match(node.id):
        problems.append(
            Problem(
                f"{where}.id",
                f"invalid node id {node.id!r}",
                "use letters, digits and '_' (max 128), starting with a letter or '_',"
                " so expressions can say steps.<id>",
            )
        )
    if not node.type:
        problems.append(Problem(f"{where}.type", "empty node type", "name the node kind"))
    elif registry is not None and node.type not in BUILTIN_TYPES and node.type not in registry:
        known = ", ".join(sorted({*registry, *BUILTIN_TYPES}))
        problems.append(
            Problem(
                f"{where}.type",
                f"unknown node type {node.type!r}",
                f"use one of: {known}, or register a processor for it",
            )
        )
    queue = node.task_queue
    if node.type and not QUEUE.match(queue):
        problems.append(
            Problem(
                f"{where}.queue",
                f"invalid queue name {queue!r}",
                "use letters, digits, '.', '_' or '-' (it becomes part of a topic name)",
            )
        )
    if node.type == SLEEP and "duration_ms" not in node.input:
        problems.append(
            Problem(f"{where}.input", "a sleep node needs input.duration_ms", "add duration_ms")
        )
    if node.retry.max_delay_ms < node.retry.initial_delay_ms:
        problems.append(
            Problem(
                f"{where}.retry.max_delay_ms",
                f"{node.retry.max_delay_ms} is below initial_delay_ms"
                f" {node.retry.initial_delay_ms}",
                "raise max_delay_ms or lower initial_delay_ms",
            )
        )
    try:
        size = len(json.dumps(node.input, separators=(",", ":")).encode())
    except (TypeError, ValueError) as exc:
        problems.append(Problem(f"{where}.input", f"not JSON: {exc}", "use JSON values only"))
    else:
        if size > limits.max_payload_bytes:
            problems.append(
                Problem(
                    f"{where}.input",
                    f"{size} bytes exceed the payload limit of {limits.max_payload_bytes}",
                    "pass large data by reference (e.g. a URL) instead of inline",
                )
            )
    for field, text in _expressions(node):
        try:
            step_references(text)
        except ExpressionError as exc:
            problems.append(
                Problem(f"{where}.{field}", str(exc), "fix the JMESPath syntax (see ADR 0010)")
            )


def _expressions(node: NodeSpec) -> list[tuple[str, str]]:
    found = [("input", text) for text in iter_expressions(node.input)]
    if node.when is not None:
        found.append(("when", expression_text(node.when)))
    if node.for_each is not None:
        found.append(("for_each", expression_text(node.for_each)))
    return found


def _check_graph(defn: WorkflowDefinition, problems: list[Problem]) -> None:
    ids = {node.id for node in defn.nodes}
    deps = {node.id: node.depends_on for node in defn.nodes}
    for node in defn.nodes:
        for dep in node.depends_on:
            if dep == node.id:
                problems.append(
                    Problem(
                        f"nodes.{node.id}.depends_on",
                        "a node cannot depend on itself",
                        f"remove {dep!r}",
                    )
                )
            elif dep not in ids:
                problems.append(
                    Problem(
                        f"nodes.{node.id}.depends_on",
                        f"unknown dependency {dep!r}",
                        f"add a node {dep!r} or remove it; known ids: {_some(ids)}",
                    )
                )
        if len(set(node.depends_on)) != len(node.depends_on):
            problems.append(
                Problem(
                    f"nodes.{node.id}.depends_on",
                    "a dependency is listed twice",
                    "list each dependency once",
                )
            )
    if problems:
        return
    _, leftover = kahn_levels([node.id for node in defn.nodes], deps)
    if leftover:
        problems.append(cycle_problem(leftover, deps))
        return
    ancestors = _Ancestors(deps)
    for node in defn.nodes:
        for field, text in _expressions(node):
            refs, whole = step_references(text)
            if whole:
                problems.append(
                    Problem(
                        f"nodes.{node.id}.{field}",
                        f"expression {text!r} reads 'steps' as a whole",
                        "name the step: steps.<id>.output or steps.<id>.status",
                    )
                )
            for ref in sorted(refs):
                if ref not in ids:
                    problems.append(
                        Problem(
                            f"nodes.{node.id}.{field}",
                            f"expression {text!r} refers to unknown node {ref!r}",
                            f"use an upstream node id; known ids: {_some(ids)}",
                        )
                    )
                elif not ancestors.is_upstream(ref, node.id):
                    problems.append(
                        Problem(
                            f"nodes.{node.id}.{field}",
                            f"expression {text!r} refers to {ref!r}, which is not upstream",
                            f"add {ref!r} to depends_on of {node.id!r} (directly or via"
                            " another dependency)",
                        )
                    )


class _Ancestors:
    """Upstream checks by early-exit search, so a long chain with references stays linear."""

    def __init__(self, deps: dict[str, tuple[str, ...]]) -> None:
        self._deps = deps

    def is_upstream(self, candidate: str, node_id: str) -> bool:
        direct = self._deps[node_id]
        if candidate in direct:
            return True
        seen: set[str] = set()
        stack = list(direct)
        while stack:
            current = stack.pop()
            if current == candidate:
                return True
            if current not in seen:
                seen.add(current)
                stack.extend(self._deps[current])
        return False


def _some(ids: set[str]) -> str:
    names = sorted(ids)
    shown = ", ".join(names[:10])
    return shown + (f" … ({len(names)} in all)" if len(names) > 10 else "")
