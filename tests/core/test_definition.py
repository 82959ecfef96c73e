"""Loading and validating definitions: every rule names the node and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kflow.core import (
    DefinitionError,
    Limits,
    NodeSpec,
    OnFailure,
    RetryPolicy,
    WorkflowDefinition,
    definition_json,
    load_definition,
    parse_definition,
    validate_definition,
)
from tests.core.driver import node, workflow

YAML = """
name: orders
version: 2
input_schema: {type: object}
nodes:
  - id: fetch
    type: http
    input: {url: $input.url}
    retry: {max_attempts: 5, initial_delay_ms: 200}
    timeout_ms: 30000
  - id: parse
    type: python
    queue: cpu
    depends_on: [fetch]
    input: {body: $steps.fetch.output.body}
    when: steps.fetch.output.status == `200`
  - id: each
    type: python
    depends_on: [parse]
    for_each: $steps.parse.output.items
    input: {item: $item}
    on_failure: continue
"""


def problems(defn: WorkflowDefinition, **kwargs: object) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        validate_definition(defn, **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in info.value.problems]


def test_load_yaml_gives_typed_models() -> None:
    defn = load_definition(YAML)
    assert defn.key == "orders@2"
    fetch, parse, each = defn.nodes
    assert fetch.retry.max_attempts == 5 and fetch.retry.multiplier == 2.0
    assert parse.task_queue == "cpu" and fetch.task_queue == "http"
    assert each.on_failure is OnFailure.CONTINUE


def test_task_queues_are_the_queues_processors_serve() -> None:
    defn = load_definition(
        YAML
        + """
  - {id: wait, type: sleep, depends_on: [each], input: {duration_ms: 5}}
  - {id: ok, type: approval, depends_on: [wait]}
"""
    )
    assert defn.task_queues == ("cpu", "http", "python")  # sorted, once each; none for built-ins


def test_load_json_file_and_python_built_definition_are_equal(tmp_path: Path) -> None:
    defn = load_definition(YAML)
    path = tmp_path / "orders.json"
    path.write_text(definition_json(defn))
    assert load_definition(path) == defn
    assert load_definition(str(path)) == defn
    built = WorkflowDefinition(
        name="orders",
        version=2,
        input_schema={"type": "object"},
        nodes=(
            NodeSpec(
                id="fetch",
                type="http",
                input={"url": "$input.url"},
                retry=RetryPolicy(max_attempts=5, initial_delay_ms=200),
                timeout_ms=30000,
            ),
            *defn.nodes[1:],
        ),
    )
    assert built == defn
    assert parse_definition(json.loads(definition_json(defn))) == defn


def test_unreadable_inputs_raise_definition_error() -> None:
    for text in ("name: [unclosed", "- just\n- a list\n", "name: x\nnodes: 5\n", "/no/such.yaml"):
        with pytest.raises(DefinitionError):
            load_definition(text)


def test_unknown_field_is_named() -> None:
    with pytest.raises(DefinitionError) as info:
        parse_definition({"name": "x", "nodes": [{"id": "a", "type": "t", "dependson": ["b"]}]})
    (problem,) = info.value.problems
    assert problem.path == "nodes[0].dependson" and "spelling" in problem.fix


def test_empty_workflow() -> None:
    assert problems(workflow()) == ["nodes: the workflow has no nodes (fix: add at least one node)"]


def test_duplicate_ids() -> None:
    (message,) = problems(workflow(node("a"), node("a")))
    assert "duplicate node id 'a'" in message and "nodes[1].id" in message


def test_unknown_dependency_names_node_and_known_ids() -> None:
    (message,) = problems(workflow(node("a"), node("b", "ghost")))
    assert message.startswith("nodes.b.depends_on: unknown dependency 'ghost'")
    assert "known ids: a, b" in message


def test_cycle_prints_the_path() -> None:
    (message,) = problems(workflow(node("a", "c"), node("b", "a"), node("c", "b"), node("d")))
    assert "dependency cycle: a -> c -> b -> a" in message


def test_self_dependency() -> None:
    (message,) = problems(workflow(node("a", "a")))
    assert "cannot depend on itself" in message


def test_reference_to_node_that_is_not_upstream() -> None:
    defn = workflow(node("a"), node("b"), node("c", "a", input={"x": "$steps.b.output"}))
    (message,) = problems(defn)
    assert "nodes.c.input" in message and "'b', which is not upstream" in message
    assert "add 'b' to depends_on of 'c'" in message


def test_reference_to_transitive_upstream_is_fine() -> None:
    validate_definition(
        workflow(node("a"), node("b", "a"), node("c", "b", when="steps.a.output.ok"))
    )


def test_reference_to_unknown_node_and_whole_steps() -> None:
    defn = workflow(node("a", input={"x": "$steps.zz.output", "y": "$steps"}))
    messages = problems(defn)
    assert any("unknown node 'zz'" in m for m in messages)
    assert any("reads 'steps' as a whole" in m for m in messages)


def test_invalid_expressions_in_input_when_and_for_each() -> None:
    defn = workflow(
        node("a", input={"x": {"deep": ["$input.[broken"]}}, when="a ==", for_each="$[?")
    )
    messages = problems(defn)
    assert len(messages) == 3
    assert all("invalid expression" in m and "JMESPath" in m for m in messages)


def test_unknown_node_type_with_registry() -> None:
    defn = workflow(node("a", type="mystery"), node("s", type="sleep", input={"duration_ms": 1}))
    (message,) = problems(defn, registry={"echo", "http"})
    assert "unknown node type 'mystery'" in message and "approval, echo, http, sleep" in message
    validate_definition(defn)  # without a registry any type is accepted


def test_limits_report_numbers() -> None:
    (message,) = problems(workflow(node("a"), node("b"), node("c")), limits=Limits(max_nodes=2))
    assert "3 nodes exceed the limit of 2" in message
    big = workflow(node("a", input={"blob": "x" * 2000}))
    (message,) = problems(big, limits=Limits(max_payload_bytes=1000))
    assert "bytes exceed the payload limit of 1000" in message


def test_bad_ids_names_schema_and_sleep_input() -> None:
    defn = workflow(
        node("has-dash"),
        node("s", type="sleep"),
        node("r", retry={"initial_delay_ms": 10, "max_delay_ms": 5}),
        name="bad name",
        input_schema={"type": "nonsense"},
    )
    messages = problems(defn)
    assert any("invalid node id 'has-dash'" in m for m in messages)
    assert any("invalid workflow name" in m for m in messages)
    assert any("not a valid JSON Schema" in m for m in messages)
    assert any("needs input.duration_ms" in m for m in messages)
    assert any("below initial_delay_ms" in m for m in messages)


def test_every_problem_is_reported_at_once() -> None:
    defn = workflow(node("a", type=""), node("a"), node("b", input={"x": "$["}))
    assert len(problems(defn)) == 3


def test_problem_to_dict() -> None:
    with pytest.raises(DefinitionError) as info:
        validate_definition(workflow())
    assert info.value.problems[0].to_dict()["path"] == "nodes"
