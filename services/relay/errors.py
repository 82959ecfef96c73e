"""Errors raised by the outbox relay: one root, each message names the field and the fix."""

from __future__ import annotations

from kflow.core.errors import KflowError


class RelayError(KflowError):
    """Root of every error raised by ``kflow.relay``."""


class OutboxInputError(RelayError, ValueError):
    """An outbox row would be invalid; ``field`` names the argument and the message the fix."""

    def __init__(self, field: str, problem: str, fix: str) -> None:
        super().__init__(f"{field}: {problem}; {fix}")
        self.field = field
        self.problem = problem
        self.fix = fix


class RowRejected(RelayError):
    """A stored outbox row cannot become a StartWorkflow record (the relay marks it failed)."""
