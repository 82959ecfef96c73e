"""Errors of the read side, under the project's root error."""

from __future__ import annotations

from kflow.core.errors import KflowError


class ReadSideError(KflowError):
    """Root of read-side errors."""


class ReadSideConfigError(ReadSideError):
    """A setting or argument is unusable; the message names it and the fix."""


class ReadSideUnavailable(ReadSideError):
    """PostgreSQL, Redis or Kafka cannot be reached right now; retrying can help."""


class MigrationError(ReadSideError):
    """The schema's recorded migrations disagree with the files on disk."""
