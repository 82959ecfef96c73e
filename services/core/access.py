"""Who may send which command to which workflow (pure: no I/O, ADR 0060).

The orchestrator verifies a command's signature outside the core (keys are not state) and
hands the result here as a :class:`Caller`; :func:`authorize` says whether the command may
apply, and :func:`refusal_event` is the notice that goes into the log when it may not, so
replaying the log never needs the keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from kflow.core.events import Event, InputRejected, WorkflowRejected
from kflow.core.inputs import Input, StartWorkflow
from kflow.core.machine import notice_cause

DEFAULT_TENANT = "default"
"""The tenant of a workflow started without one, and of every unsigned command."""
WRITE_SCOPES = frozenset({"write", "admin"})

UNAUTHENTICATED = "unauthenticated"
"""Refusal code: no valid signature (unsigned when required, unknown or revoked key, bad MAC)."""
FORBIDDEN = "forbidden"
"""Refusal code: a valid principal asked for what its tenant or scopes do not allow."""

ACCESS_CODES = frozenset({UNAUTHENTICATED, FORBIDDEN})
"""Codes of notices that record an identity verdict (replay takes them as given)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity a command was verified to come from."""

    tenant: str
    actor: str | None
    verified: bool
    """Signed by a known, unrevoked key (False: an unsigned command, allowed only when
    signatures are not required, and only in :data:`DEFAULT_TENANT`)."""
    scopes: frozenset[str] = WRITE_SCOPES
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a command is refused: a code and a sentence naming the fix."""

    code: str
    reason: str


def tenant_of(tenant: str | None) -> str:
    """A workflow's or envelope's tenant, ``None`` meaning :data:`DEFAULT_TENANT`."""
    return tenant or DEFAULT_TENANT


def authorize(
    caller: Caller,
    command: Input,
    claimed_tenant: str | None,
    workflow_tenant: str | None,
    exists: bool,
) -> Refusal | None:
    """None when ``caller`` may apply ``command``; otherwise why not.

    ``claimed_tenant`` is the tenant the envelope (or a StartWorkflow body) names;
    ``workflow_tenant`` the tenant the workflow was started in (fixed at start), when
    ``exists``.
    """
    who = f"key {caller.key_id}" if caller.verified else "an unsigned command"
    if caller.verified and not caller.scopes & WRITE_SCOPES:
        return Refusal(
            FORBIDDEN,
            f"{who} has scopes {','.join(sorted(caller.scopes))}; commands need a key with "
            "--scope write",
        )
    if claimed_tenant is not None and claimed_tenant != caller.tenant:
        if caller.verified:
            return Refusal(
                FORBIDDEN,
                f"the command claims tenant {claimed_tenant!r} but {who} belongs to tenant "
                f"{caller.tenant!r}; use a key of that tenant",
            )
        return Refusal(
            UNAUTHENTICATED,
            f"{who} cannot act for tenant {claimed_tenant!r}; sign it with an API key of "
            "that tenant (KFLOW_API_KEY, see docs/security.md)",
        )
    if exists and tenant_of(workflow_tenant) != caller.tenant:
        # The same answer whether or not the id exists elsewhere: nothing is revealed.
        if isinstance(command, StartWorkflow):
            reason = (
                f"workflow id {command.workflow_id!r} is not available to tenant "
                f"{caller.tenant!r}; choose another id"
            )
        else:
            reason = f"no workflow {command.workflow_id!r} in tenant {caller.tenant!r}"
        return Refusal(FORBIDDEN, reason)
    return None


def misrouted(record_key: str | None, command: Input) -> Refusal | None:
    """None when the record carrying ``command`` is keyed by its workflow id; otherwise why
    it is refused (ADR 0062). A command keyed otherwise lands in another workflow's
    partition, whose owner neither holds the workflow's state nor its tenant: it could
    start a second workflow of the same id, or act on one it cannot check."""
    if record_key == command.workflow_id:
        return None
    return Refusal(
        FORBIDDEN,
        f"the record key {record_key!r} is not the workflow id {command.workflow_id!r}; a "
        "command must be keyed by its workflow id (so the partition owning the workflow "
        "reads it): send it again with that key",
    )


def refusal_event(command: Input, now: int, refusal: Refusal) -> Event:
    """The notice recording a refused command (WorkflowRejected for a start)."""
    if isinstance(command, StartWorkflow):
        return WorkflowRejected(
            workflow_id=command.workflow_id,
            seq=0,
            at=now,
            cause=notice_cause(command),
            code=refusal.code,
            reason=refusal.reason,
            name=command.name,
            version=command.version,
        )
    return InputRejected(
        workflow_id=command.workflow_id,
        seq=0,
        at=now,
        cause=notice_cause(command),
        code=refusal.code,
        reason=refusal.reason,
        input_type=type(command).__name__,
    )
