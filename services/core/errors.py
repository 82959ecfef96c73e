"""Error types of the domain core and the error classes node code raises.

Every kflow error derives from ``KflowError``. Node code raises ``TransientError``
(retry may help), ``PermanentError`` (retrying cannot help) or ``NeedsReview``
(a human must decide); the processor turns them into a ``StepError`` input whose
``error_class`` is the matching ``ErrorClass``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorClass(StrEnum):
    """How the orchestrator treats a failed step attempt."""

    TRANSIENT = "transient"
    """Retry according to the node's retry policy."""
    PERMANENT = "permanent"
    """Fail the step now; the node's ``on_failure`` decides what happens next."""
    NEEDS_REVIEW = "needs_review"
    """Pause the workflow until a signal approves (retry or supply output) or rejects."""


class KflowError(Exception):
    """Root of every error raised by kflow code."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a definition: where, what, and how to fix it."""

    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (fix: {self.fix})"

    def to_dict(self) -> dict[str, str]:
        """JSON-compatible form (used by the API and CLI)."""
        return {"path": self.path, "message": self.message, "fix": self.fix}


class DefinitionError(KflowError):
    """A workflow definition is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(f"invalid workflow definition ({count} problem(s)):\n{lines}")


class NodeError(KflowError):
    """Base of the errors node code raises; ``error_class`` tells the orchestrator what to do."""

    error_class: ErrorClass = ErrorClass.TRANSIENT


class TransientError(NodeError):
    """A failure that a later attempt may not hit (network blip, overload, timeout)."""

    error_class = ErrorClass.TRANSIENT


class PermanentError(NodeError):
    """A failure that retrying cannot fix (bad input, not found, forbidden)."""

    error_class = ErrorClass.PERMANENT


class NeedsReview(NodeError):
    """A human must look at this step before the workflow continues."""

    error_class = ErrorClass.NEEDS_REVIEW
