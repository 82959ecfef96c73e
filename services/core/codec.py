"""JSON-compatible dict codecs of every core type (each dict has a ``"type"`` key)."""

from __future__ import annotations

from typing import Any

from kflow.core.events import event_from_dict, event_to_dict
from kflow.core.inputs import input_from_dict, input_to_dict
from kflow.core.state import WorkflowState

__all__ = [
    "event_from_dict",
    "event_to_dict",
    "input_from_dict",
    "input_to_dict",
    "state_from_dict",
    "state_to_dict",
]


def state_to_dict(state: WorkflowState) -> dict[str, Any]:
    """``WorkflowState.to_dict`` as a function."""
    return state.to_dict()


def state_from_dict(data: dict[str, Any]) -> WorkflowState:
    """``WorkflowState.from_dict`` as a function."""
    return WorkflowState.from_dict(data)
