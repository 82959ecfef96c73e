"""Start workflows and wait for them from any Python service: ``kflow.Client`` (blocking) and
``kflow.AsyncClient`` (asyncio); see :mod:`kflow.client.client` and ADR 0024."""

from kflow.client.client import AsyncClient, Client
from kflow.client.errors import (
    ClientClosed,
    CommandRejected,
    WaitTimeout,
    WorkflowCancelled,
    WorkflowError,
    WorkflowFailed,
    WorkflowRejected,
)
from kflow.client.handle import AsyncWorkflowHandle, WorkflowHandle

__all__ = [
    "AsyncClient",
    "AsyncWorkflowHandle",
    "Client",
    "ClientClosed",
    "CommandRejected",
    "WaitTimeout",
    "WorkflowCancelled",
    "WorkflowError",
    "WorkflowFailed",
    "WorkflowHandle",
    "WorkflowRejected",
]
