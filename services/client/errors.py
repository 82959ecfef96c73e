"""What :class:`kflow.Client` raises: a workflow's unhappy ending, a wait that ran out, a closed
client. (A command Kafka did not take is :class:`kflow.bus.commands.CommandNotDelivered`, a
log that cannot be read :class:`kflow.bus.reader.ReaderError`.)"""

from __future__ import annotations

from kflow.core.errors import KflowError


class WorkflowError(KflowError):
    """The workflow ended without completing; ``workflow_id`` says which."""

    def __init__(self, workflow_id: str, message: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id


class WorkflowFailed(WorkflowError):
    """The workflow failed: ``reason``, and ``step_key`` of the step that failed it (if any)."""

    def __init__(self, workflow_id: str, reason: str, step_key: str | None = None) -> None:
        where = f" at step {step_key}" if step_key else ""
        super().__init__(workflow_id, f"workflow {workflow_id} failed{where}: {reason}")
        self.reason = reason
        self.step_key = step_key


class WorkflowCancelled(WorkflowError):
    """The workflow was cancelled (``reason`` is what the canceller gave)."""

    def __init__(self, workflow_id: str, reason: str) -> None:
        why = f": {reason}" if reason else ""
        super().__init__(workflow_id, f"workflow {workflow_id} was cancelled{why}")
        self.reason = reason


class WorkflowRejected(WorkflowError):
    """The orchestrator refused to start the workflow; ``code`` and ``reason`` say why
    (e.g. ``unknown_definition``: register the definition, then start it again)."""

    def __init__(self, workflow_id: str, code: str, reason: str) -> None:
        super().__init__(workflow_id, f"workflow {workflow_id} was not started ({code}): {reason}")
        self.code = code
        self.reason = reason


class CommandRejected(WorkflowError):
    """The orchestrator refused a command (pause, resume, cancel, signal): ``command`` is its
    type, ``code`` and ``reason`` say why (e.g. ``workflow_finished``: it already ended)."""

    def __init__(self, workflow_id: str, command: str, code: str, reason: str) -> None:
        super().__init__(
            workflow_id, f"{command} of workflow {workflow_id} was rejected ({code}): {reason}"
        )
        self.command = command
        self.code = code
        self.reason = reason


class WaitTimeout(KflowError, TimeoutError):
    """The workflow did not get where the caller waited for within the timeout (it may
    still get there: wait again with the same handle)."""


class ClientClosed(KflowError):
    """The client was closed; its handles can no longer wait or send."""
