"""Live updates of the workflow list: one Redis pattern subscription per API process, fanned
out to the open list streams of each tenant.

The Redis projection publishes every event on its workflow's channel after updating the
workflow's status hash (one Lua script), so when a status-changing event arrives the hash
already holds the new summary and the tenant. The hub reads the tenant there and wakes only
that tenant's streams; each stream re-reads the hash and checks the tenant again before it
renders anything, so a row of one tenant never reaches another's page.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from kflow.projections.redis_keys import events_channel, status_key

log = logging.getLogger(__name__)
ROW_EVENTS = frozenset(
    {
        "WorkflowStarted",
        "WorkflowPaused",
        "WorkflowResumed",
        "WorkflowCompleted",
        "WorkflowFailed",
        "WorkflowCancelled",
        "WorkflowRetried",
    }
)
"""Events that change a row of the list (step events do not)."""
QUEUE_SIZE = 10_000
_TENANTS_KEPT = 50_000
_RETRY_S = 1.0


@dataclass(eq=False)
class Listener:
    """One open list stream: the workflow ids changed since it last looked."""

    tenant: str
    changed: set[str] = field(default_factory=set)
    overflowed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, workflow_id: str) -> None:
        if len(self.changed) >= QUEUE_SIZE:
            self.overflowed = True  # the stream tells the page to reload instead
        else:
            self.changed.add(workflow_id)
        self.wake.set()

    def take(self) -> tuple[set[str], bool]:
        changed, overflowed = self.changed, self.overflowed
        self.changed, self.overflowed = set(), False
        self.wake.clear()
        return changed, overflowed


class ListHub:
    """Runs the pattern subscription while at least one list stream is open."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None
        self._tenants: OrderedDict[str, str] = OrderedDict()
        head = events_channel(prefix, "")
        self._pattern = events_channel(prefix, "*")
        self._cut = (len(head) - len(":events"), len(":events"))

    def open(self, tenant: str) -> Listener:
        """Register a stream of ``tenant`` (starts the subscription if it is the first)."""
        listener = Listener(tenant)
        self.listeners.add(listener)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="console-list-hub")
        return listener

    def close(self, listener: Listener) -> None:
        """Forget a stream; the subscription stops with the last one."""
        self.listeners.discard(listener)
        if not self.listeners and self._task is not None:
            self._task.cancel()
            self._task = None

    async def stop(self) -> None:
        """Stop the subscription (at shutdown)."""
        self.listeners.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _workflow_of(self, channel: bytes) -> str:
        start, tail = self._cut
        return channel.decode()[start:-tail]

    async def _tenant_of(self, workflow_id: str) -> str | None:
        known = self._tenants.get(workflow_id)
        if known is not None:
            return known
        raw = await self.client.hget(status_key(self.prefix, workflow_id), "tenant")
        if raw is None:
            return None
        tenant = raw.decode() if isinstance(raw, bytes) else str(raw)
        self._tenants[workflow_id] = tenant
        if len(self._tenants) > _TENANTS_KEPT:
            self._tenants.popitem(last=False)
        return tenant

    async def _run(self) -> None:
        while self.listeners:
            pubsub = self.client.pubsub()
            try:
                await pubsub.psubscribe(self._pattern)
                while self.listeners:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is None or msg.get("type") != "pmessage":
                        continue
                    try:
                        kind = orjson.loads(msg["data"]).get("type")
                    except (orjson.JSONDecodeError, AttributeError):
                        continue
                    if kind not in ROW_EVENTS:
                        continue
                    workflow_id = self._workflow_of(msg["channel"])
                    tenant = await self._tenant_of(workflow_id)
                    for listener in list(self.listeners):
                        if listener.tenant == tenant:
                            listener.push(workflow_id)
            except (RedisError, OSError) as e:
                log.warning("console list stream: Redis: %s; resubscribing", e)
                for listener in list(self.listeners):
                    listener.overflowed = True  # events may be missed: pages re-read
                    listener.wake.set()
                await asyncio.sleep(_RETRY_S)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
