"""Bulk actions: one command per selected workflow, as a batch with an id, progress and a
per-workflow outcome (ADR 0084). Used by ``POST /batches``, the console and ``kflow bulk``.

A batch's id is derived from what was asked (tenant, actor, action, arguments, selection,
optional idempotency key), so submitting the same request again finds the same batch: its
selection is frozen at the first submission and only workflows whose command was not yet
published are published. Outcomes are read back from the read model: the event the command
caused, or the notice refusing it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kflow.api.queries import AConn, ListFilter, filter_clauses
from kflow.bus.commands import CommandPublisher
from kflow.bus.envelope import envelope_meta
from kflow.bus.signing import Signer
from kflow.core.errors import KflowError
from kflow.core.inputs import (
    CancelWorkflow,
    Input,
    PauseWorkflow,
    ResumeWorkflow,
    RetryWorkflow,
    SignalWorkflow,
)

ACTIONS: dict[str, str] = {
    "cancel": "CancelWorkflow",
    "pause": "PauseWorkflow",
    "resume": "ResumeWorkflow",
    "signal": "SignalWorkflow",
    "retry": "RetryWorkflow",
}
MAX_BATCH = 10_000
"""Most workflows one batch may hold (a filter matching more is refused with the count)."""
PUBLISH_AT_ONCE = 200
# Namespace of batch and command ids: never change it, or a resubmitted batch runs twice.
_NAMESPACE = uuid.UUID("6d1c3a6e-5b7f-4c84-9f53-0e3f8f7b1c42")


class BatchError(KflowError, ValueError):
    """A batch that cannot be made as asked (the message names the field and the fix)."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Which workflows: explicit ids, or everything matching a list filter."""

    workflow_ids: tuple[str, ...] = ()
    status: str | None = None
    name: str | None = None
    q: str | None = None
    created_after: str | None = None
    created_before: str | None = None

    @property
    def by_filter(self) -> bool:
        return not self.workflow_ids

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["workflow_ids"] = sorted(self.workflow_ids)
        return doc


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One bulk action. ``signal_name`` and ``payload`` are for ``signal``; ``reason`` for
    cancel, pause and retry."""

    action: str
    selection: Selection
    reason: str = ""
    signal_name: str = ""
    payload: Any = None
    idempotency_key: str | None = None

    def args(self) -> dict[str, Any]:
        if self.action == "signal":
            return {"name": self.signal_name, "payload": self.payload}
        if self.action in ("cancel", "pause", "retry"):
            return {"reason": self.reason}
        return {}

    def check(self) -> None:
        if self.action not in ACTIONS:
            raise BatchError(f"action: {self.action!r} is not one of {', '.join(ACTIONS)}")
        if self.action == "signal" and not self.signal_name:
            raise BatchError("signal_name: name the waiting step to signal, e.g. approve")
        if len(self.selection.workflow_ids) > MAX_BATCH:
            raise BatchError(f"workflow_ids: at most {MAX_BATCH} per batch")


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """One workflow of a batch: ``state`` is not_found, unpublished, pending, applied or
    refused; ``event`` the event type it led to, ``detail`` the refusal's reason."""

    workflow_id: str
    state: str
    event: str | None = None
    seq: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class BatchView:
    """A batch, its progress and (optionally) each workflow's outcome."""

    batch_id: str
    tenant: str
    actor: str
    action: str
    args: dict[str, Any]
    selection: dict[str, Any]
    created_at: datetime
    total: int
    counts: dict[str, int] = field(default_factory=dict)
    items: list[ItemOutcome] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """Every workflow has its outcome (nothing pending or unpublished)."""
        return not self.counts.get("pending") and not self.counts.get("unpublished")


def batch_id_of(tenant: str, actor: str, request: BatchRequest) -> str:
    """The stable id of a request (same request, same id)."""
    doc = {
        "tenant": tenant, "actor": actor, "action": request.action, "args": request.args(),
        "selection": request.selection.to_json(), "key": request.idempotency_key,
    }  # fmt: skip
    return str(uuid.uuid5(_NAMESPACE, json.dumps(doc, sort_keys=True, default=str)))


def command_of(request: BatchRequest, workflow_id: str) -> Input:
    """The command the batch sends to one workflow."""
    a = request.action
    if a == "cancel":
        return CancelWorkflow(workflow_id=workflow_id, reason=request.reason)
    if a == "pause":
        return PauseWorkflow(workflow_id=workflow_id, reason=request.reason)
    if a == "resume":
        return ResumeWorkflow(workflow_id=workflow_id)
    if a == "retry":
        return RetryWorkflow(workflow_id=workflow_id, reason=request.reason)
    name, payload = request.signal_name, request.payload
    return SignalWorkflow(workflow_id=workflow_id, name=name, payload=payload)


def _time(label: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError as e:
        raise BatchError(f"{label}: {value!r} is not a time; give e.g. 2026-01-01T10:00") from e
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def _select(conn: AConn, tenant: str, sel: Selection) -> list[tuple[str, bool, int]]:
    """(workflow id, found in this tenant, last seq) per selected workflow."""
    if not sel.by_filter:
        ids = list(dict.fromkeys(sel.workflow_ids))
        rows = await (
            await conn.execute(
                "SELECT workflow_id, last_seq FROM executions"
                " WHERE tenant = %s AND workflow_id = ANY(%s)",
                (tenant, ids),
            )
        ).fetchall()
        seqs = {str(r[0]): int(str(r[1])) for r in rows}
        return [(w, w in seqs, seqs.get(w, 0)) for w in ids]
    f = ListFilter(tenant, sel.status, sel.name, _time("created_after", sel.created_after),
                   _time("created_before", sel.created_before), MAX_BATCH, None, sel.q)  # fmt: skip
    where, args = filter_clauses(f)
    rows = await (
        await conn.execute(
            f"SELECT workflow_id, last_seq FROM executions WHERE {' AND '.join(where)}"
            " ORDER BY created_at DESC, workflow_id DESC LIMIT %s".encode(),
            [*args, MAX_BATCH + 1],
        )
    ).fetchall()
    if len(rows) > MAX_BATCH:
        raise BatchError(
            f"the filter matches more than {MAX_BATCH} workflows; narrow it (status, name, time)"
        )
    return [(str(r[0]), True, int(str(r[1]))) for r in rows]


async def submit(
    conn: AConn,
    publisher: CommandPublisher,
    tenant: str,
    actor: str,
    request: BatchRequest,
    signer: Signer | None = None,
) -> str:
    """Create the batch (or find it again) and publish every command not yet published.

    Commands are signed by ``signer`` (the caller's key, ADR 0060) and published while their
    rows are locked, then marked published in the same
    PostgreSQL transaction: a concurrent submission of the same batch skips them, and a crash
    before the commit republishes them on the next submission (each command is harmless
    twice: the second is answered with a notice).
    """
    request.check()
    batch_id = batch_id_of(tenant, actor, request)
    async with conn.transaction():
        created = await (
            await conn.execute(
                "INSERT INTO batches (batch_id, tenant, actor, action, args, selection)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (batch_id) DO NOTHING"
                " RETURNING batch_id",
                (
                    batch_id,
                    tenant,
                    actor,
                    request.action,
                    json.dumps(request.args()),
                    json.dumps(request.selection.to_json()),
                ),
            )
        ).fetchone()
        if created is not None:
            chosen = await _select(conn, tenant, request.selection)
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO batch_items (batch_id, workflow_id, found, before_seq,"
                    " command_id) VALUES (%s, %s, %s, %s, %s)",
                    [(batch_id, w, found, seq, str(uuid.uuid5(_NAMESPACE, f"{batch_id}/{w}")))
                     for w, found, seq in chosen],
                )  # fmt: skip
            await conn.execute(
                "UPDATE batches SET total = %s WHERE batch_id = %s", (len(chosen), batch_id)
            )
    async with conn.transaction():
        rows = await (
            await conn.execute(
                "SELECT workflow_id, command_id FROM batch_items WHERE batch_id = %s"
                " AND found AND published_at IS NULL ORDER BY workflow_id"
                " FOR UPDATE SKIP LOCKED",
                (batch_id,),
            )
        ).fetchall()
        for start in range(0, len(rows), PUBLISH_AT_ONCE):
            chunk = rows[start : start + PUBLISH_AT_ONCE]
            sends = []
            for workflow_id, command_id in chunk:
                command = command_of(request, str(workflow_id))
                meta = envelope_meta(command, event_id=str(command_id), actor=actor,
                                     tenant=tenant, correlation_id=batch_id)  # fmt: skip
                sends.append(publisher.publish_async(command, meta, signer))
            await asyncio.gather(*sends)
            await conn.execute(
                "UPDATE batch_items SET published_at = now()"
                " WHERE batch_id = %s AND workflow_id = ANY(%s)",
                (batch_id, [str(r[0]) for r in chunk]),
            )
    return batch_id


async def read_batch(
    conn: AConn, batch_id: str, tenant: str, with_items: bool = True
) -> BatchView | None:
    """The batch (None when unknown or another tenant's) with its progress and outcomes."""
    # Not at the top: the console package imports the batch routes, which import this module
    # (``kflow bulk`` imports it first and failed on the cycle).
    from kflow.api.console import queries

    head = await (
        await conn.execute(
            "SELECT batch_id, tenant, actor, action, args, selection, created_at, total"
            " FROM batches WHERE batch_id = %s AND tenant = %s",
            (batch_id, tenant),
        )
    ).fetchone()
    if head is None:
        return None
    action, actor = str(head[3]), str(head[2])
    command = ACTIONS.get(action, action)
    rows = await (
        await conn.execute(
            "SELECT workflow_id, found, before_seq, published_at FROM batch_items"
            " WHERE batch_id = %s ORDER BY workflow_id",
            (batch_id,),
        )
    ).fetchall()
    items: list[ItemOutcome] = []
    for workflow_id, found, before, published in rows:
        wid = str(workflow_id)
        if not found:
            items.append(ItemOutcome(wid, "not_found", detail="no such workflow in this tenant"))
            continue
        if published is None:
            items.append(ItemOutcome(wid, "unpublished"))
            continue
        assert isinstance(published, datetime)
        since = published - timedelta(seconds=5)
        seen = await queries.command_outcome(conn, wid, command, int(str(before)), actor, since)
        if not seen:
            items.append(ItemOutcome(wid, "pending"))
        elif seen[0].type == "InputRejected":
            body = seen[0].body
            why = f"{body.get('code')}: {body.get('reason')}"
            items.append(ItemOutcome(wid, "refused", seen[0].type, seen[0].seq, why))
        else:
            items.append(ItemOutcome(wid, "applied", seen[0].type, seen[0].seq))
    counts: dict[str, int] = {}
    for item in items:
        counts[item.state] = counts.get(item.state, 0) + 1
    assert isinstance(head[6], datetime)
    return BatchView(
        batch_id=str(head[0]), tenant=str(head[1]), actor=actor, action=action,
        args=dict(head[4]) if isinstance(head[4], dict) else {},
        selection=dict(head[5]) if isinstance(head[5], dict) else {},
        created_at=head[6], total=int(str(head[7])), counts=counts,
        items=items if with_items else [],
    )  # fmt: skip
