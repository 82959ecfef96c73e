"""Map exceptions raised by node code to the core's error classes."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import httpx
import pydantic

from kflow.core.errors import ErrorClass, NeedsReview, PermanentError, TransientError

MAX_MESSAGE_CHARS = 2000


class StepTimeout(TransientError):
    """The step ran longer than its ``timeout_ms``."""


class PayloadTooLarge(PermanentError):
    """A node returned more JSON than ``max_payload_bytes`` allows."""


class UnknownNodeType(PermanentError):
    """No node is registered for the task's node type in this processor."""


@dataclass(frozen=True)
class Failure:
    """A classified failure, ready to be reported as a StepError."""

    error_class: ErrorClass
    error_type: str
    message: str


# Order matters: the first matching base wins.
_TRANSIENT_BASES: tuple[type[BaseException], ...] = (
    TimeoutError,
    asyncio.TimeoutError,
    ConnectionError,
    socket.gaierror,
    httpx.TransportError,
)
_PERMANENT_BASES: tuple[type[BaseException], ...] = (
    pydantic.ValidationError,
    TypeError,
    ValueError,
    KeyError,
    LookupError,
    NotImplementedError,
)


def classify(exc: BaseException) -> Failure:
    """Error class for ``exc``: explicit kflow errors first, then sensible defaults.

    Timeouts and network errors are transient (a retry can help); validation,
    type and value errors are permanent (the same input fails again); anything
    else is transient so the step's retry policy decides.
    """
    error_class: ErrorClass
    if isinstance(exc, NeedsReview):
        error_class = ErrorClass.NEEDS_REVIEW
    elif isinstance(exc, PermanentError):
        error_class = ErrorClass.PERMANENT
    elif isinstance(exc, (TransientError, *_TRANSIENT_BASES)):
        error_class = ErrorClass.TRANSIENT
    elif isinstance(exc, _PERMANENT_BASES):
        error_class = ErrorClass.PERMANENT
    else:
        error_class = ErrorClass.TRANSIENT
    message = str(exc) or type(exc).__name__
    return Failure(error_class, type(exc).__name__, message[:MAX_MESSAGE_CHARS])
