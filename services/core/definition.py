"""Workflow definition models (pydantic v2), loadable from YAML/JSON or built in Python.

A definition is data only; ``kflow.core.validation.validate_definition`` checks
it and ``load_definition`` parses and validates in one call. Value expressions
are documented in ``kflow.core.expressions``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kflow.core.errors import DefinitionError, Problem

SLEEP = "sleep"
"""Built-in node type: a timer kept by the orchestrator (``input.duration_ms``); no processor."""
APPROVAL = "approval"
"""Built-in node type: waits for a signal named after the step (see ``SignalWorkflow``)."""
BUILTIN_TYPES = frozenset({SLEEP, APPROVAL})


class OnFailure(StrEnum):
    """What a permanently failed node does to its workflow."""

    FAIL_WORKFLOW = "fail_workflow"
    """Cancel running steps and fail the workflow."""
    CONTINUE = "continue"
    """Record the failure; dependents still run (their context shows ``status: failed``)."""
    PAUSE = "pause"
    """Park the step for review; a signal approves (retry or supply output) or rejects."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class RetryPolicy(_Frozen):
    """Exponential backoff: delay(n) = min(max, initial * multiplier**(n-1)) ± jitter."""

    max_attempts: int = Field(
        default=3, ge=1, le=1000, description="attempts in total, including the first"
    )
    initial_delay_ms: int = Field(default=1000, ge=0, description="delay before the second attempt")
    multiplier: float = Field(
        default=2.0, ge=1.0, le=100.0, description="growth factor per attempt"
    )
    max_delay_ms: int = Field(default=300_000, ge=0, description="upper bound of any single delay")
    jitter: float = Field(
        default=0.1, ge=0.0, le=1.0, description="fraction of the delay added or removed at random"
    )


class NodeSpec(_Frozen):
    """One node of the DAG. ``input`` values may be expressions (strings starting with ``$``)."""

    id: str = Field(description="unique within the workflow; letters, digits and _")
    type: str = Field(description="node kind; its queue defaults to the type")
    queue: str | None = Field(default=None, description="task queue; defaults to `type`")
    depends_on: tuple[str, ...] = Field(
        default=(), description="ids of nodes that must finish first"
    )
    input: dict[str, Any] = Field(default_factory=dict, description="step input; `$expr` values")
    when: str | None = Field(default=None, description="JMESPath condition; false skips the node")
    for_each: str | None = Field(
        default=None, description="JMESPath yielding a list: one child step per item"
    )
    retry: RetryPolicy = RetryPolicy()
    timeout_ms: int | None = Field(default=None, gt=0, description="limit per attempt")
    heartbeat_timeout_ms: int | None = Field(
        default=None, gt=0, description="max silence between heartbeats"
    )
    on_failure: OnFailure = OnFailure.FAIL_WORKFLOW

    @property
    def task_queue(self) -> str:
        """The queue tasks of this node go to."""
        return self.queue or self.type


class WorkflowDefinition(_Frozen):
    """A named, versioned DAG of nodes, with an optional JSON Schema for its input."""

    name: str = Field(description="workflow name; registry key is `name@version`")
    version: int = Field(default=1, ge=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of the input"
    )
    nodes: tuple[NodeSpec, ...] = ()

    @property
    def key(self) -> str:
        """Registry key ``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def task_queues(self) -> tuple[str, ...]:
        """The queues processors must serve for this workflow, sorted (built-in types need none)."""
        return tuple(sorted({n.task_queue for n in self.nodes if n.type not in BUILTIN_TYPES}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible form (lossless: ``parse_definition(d.to_dict()) == d``)."""
        return self.model_dump(mode="json")


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "definition"


def parse_definition(data: Any) -> WorkflowDefinition:
    """Build a definition from JSON-like data; shape errors become ``DefinitionError``."""
    if isinstance(data, WorkflowDefinition):
        return data
    if not isinstance(data, Mapping):
        raise DefinitionError(
            [
                Problem(
                    "definition",
                    f"expected a mapping, got {type(data).__name__}",
                    "write the definition as an object with name, version and nodes",
                )
            ]
        )
    try:
        return WorkflowDefinition.model_validate(dict(data))
    except ValidationError as exc:
        problems = [
            Problem(_loc(tuple(err["loc"])), err["msg"], _fix_for(err["type"]))
            for err in exc.errors(include_url=False)
        ]
        raise DefinitionError(problems) from exc


def _fix_for(error_type: str) -> str:
    if error_type == "extra_forbidden":
        return "remove the field or check its spelling"
    if error_type == "missing":
        return "add the field"
    return "give a value of the documented type and range"


def load_definition(
    text_or_path: str | Path, registry: Collection[str] | None = None
) -> WorkflowDefinition:
    """Parse YAML or JSON (text, or a path to a file) and validate it.

    Raises ``DefinitionError`` for unreadable text, bad shapes and invalid graphs.
    """
    from kflow.core.validation import validate_definition

    text = _read_text(text_or_path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DefinitionError(
            [Problem("definition", f"not valid YAML/JSON: {exc}", "fix the syntax")]
        ) from exc
    defn = parse_definition(data)
    validate_definition(defn, registry)
    return defn


def _read_text(text_or_path: str | Path) -> str:
    if isinstance(text_or_path, Path):
        path = text_or_path
    elif "\n" not in text_or_path and text_or_path.endswith((".yaml", ".yml", ".json")):
        path = Path(text_or_path)
    else:
        return text_or_path
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DefinitionError(
            [Problem(str(path), f"cannot read file: {exc.strerror}", "check the path")]
        ) from exc


def definition_json(defn: WorkflowDefinition) -> str:
    """Canonical JSON text of a definition (sorted keys), e.g. for the definitions topic."""
    return json.dumps(defn.to_dict(), sort_keys=True, separators=(",", ":"))
