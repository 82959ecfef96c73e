"""kflow: event-sourced DAG workflows on Apache Kafka.

What an application needs is importable from here::

    import kflow

    @kflow.node("summarize")
    async def summarize(doc: dict, ctx: kflow.StepContext) -> dict: ...

    with kflow.Client() as client:
        output = client.start("docpipe", {"doc_id": "d-1"}).result(timeout=60)

The subpackages (``kflow.core``, ``kflow.bus``, ``kflow.orchestrator``, ...) are the
engine itself; see ADR 0002 for how the repository folders map under this name.
"""

from importlib.metadata import PackageNotFoundError, version

from kflow.bus.commands import CommandNotDelivered
from kflow.client import (
    AsyncClient,
    AsyncWorkflowHandle,
    Client,
    CommandRejected,
    WaitTimeout,
    WorkflowCancelled,
    WorkflowError,
    WorkflowFailed,
    WorkflowHandle,
    WorkflowRejected,
)
from kflow.core.definition import WorkflowDefinition, load_definition, parse_definition
from kflow.core.errors import (
    DefinitionError,
    KflowError,
    NeedsReview,
    NodeError,
    PermanentError,
    TransientError,
)
from kflow.core.validation import validate_definition
from kflow.processor.context import StepContext
from kflow.processor.registry import node
from kflow.relay.outbox import enqueue_start, enqueue_start_async

try:
    __version__ = version("kflow")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AsyncClient",
    "AsyncWorkflowHandle",
    "Client",
    "CommandNotDelivered",
    "CommandRejected",
    "DefinitionError",
    "KflowError",
    "NeedsReview",
    "NodeError",
    "PermanentError",
    "StepContext",
    "TransientError",
    "WaitTimeout",
    "WorkflowCancelled",
    "WorkflowDefinition",
    "WorkflowError",
    "WorkflowFailed",
    "WorkflowHandle",
    "WorkflowRejected",
    "__version__",
    "enqueue_start",
    "enqueue_start_async",
    "load_definition",
    "node",
    "parse_definition",
    "validate_definition",
]
