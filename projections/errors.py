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


class UnwritableValue(ReadSideError, ValueError):
    """A record holds a value the read model cannot store as JSON (an integer over 64 bits,
    a lone surrogate); the projector dead-letters that record and projects the rest."""
