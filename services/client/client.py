"""``kflow.Client`` and ``kflow.AsyncClient``: start workflows and wait for them from any service.

They talk to Kafka directly, with the same Avro envelope as every other entry point::

    with kflow.Client(actor="billing") as client:
        handle = client.start("docpipe", {"doc_id": "d-1"})
        print(handle.result(timeout=60))

Every handle of a client shares one consumer of ``{prefix}.events`` (see
:mod:`kflow.client.watcher`) and one producer (:class:`kflow.bus.commands.CommandPublisher`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from kflow.client.core import COMMAND_TIMEOUT_S, ClientCore
from kflow.client.handle import AsyncWorkflowHandle, WorkflowHandle
from kflow.client.tracker import Tracker, publish_tracked, publish_tracked_async
from kflow.settings import Settings, get_settings


def _core(
    settings: Settings | None, actor: str | None, tenant: str | None, command_timeout_s: float
) -> ClientCore:
    return ClientCore(
        settings if settings is not None else get_settings(), actor, tenant, command_timeout_s
    )


class Client:
    """Start workflows and follow them; blocking calls (use from threads freely).

    ``settings`` default to the ``KFLOW_*`` environment (:class:`kflow.settings.Settings`).
    ``actor`` and ``tenant`` are written into every command's envelope (who asked, and
    whose workflow it is; ``None`` is the key's tenant, or the default one when unsigned).
    Commands are signed with the API key in ``settings.api_key`` (``KFLOW_API_KEY``, or the
    file ``KFLOW_API_KEY_FILE`` / ``~/.config/kflow/api-key``): the orchestrator records the
    key's identity and refuses what its tenant may not do (docs/security.md). Use as a
    context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        actor: str | None = "client",
        tenant: str | None = None,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> None:
        self._core = _core(settings, actor, tenant, command_timeout_s)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(
        self,
        name: str,
        input: Any = None,
        *,
        id: str | None = None,
        version: int | None = None,
        idempotency_key: str | None = None,
    ) -> WorkflowHandle:
        """Start a workflow of definition ``name`` (``version``: latest when ``None``).

        Returns once Kafka has the StartWorkflow (else raises ``CommandNotDelivered``; a
        retry with the same ``id`` or ``idempotency_key`` never starts a second workflow).
        ``id`` defaults to one derived from ``idempotency_key``, or a random UUID. If the id
        is taken, the handle follows the workflow that has it.
        """
        command, meta = self._core.start_command(name, input, id, version, idempotency_key)
        return WorkflowHandle(self._core, publish_tracked(self._core, command, meta))

    def get_handle(self, workflow_id: str) -> WorkflowHandle:
        """A handle on an existing (or finished, or soon started) workflow; no I/O until used."""
        return WorkflowHandle(self._core, Tracker(self._core, workflow_id))

    def close(self) -> None:
        """Release the consumer and the producer (queued commands are delivered first)."""
        self._core.close()


class AsyncClient:
    """:class:`Client` for asyncio: the same API with ``async`` methods."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        actor: str | None = "client",
        tenant: str | None = None,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> None:
        self._core = _core(settings, actor, tenant, command_timeout_s)
        self._starting: asyncio.Lock | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def start(
        self,
        name: str,
        input: Any = None,
        *,
        id: str | None = None,
        version: int | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncWorkflowHandle:
        """Start a workflow; see :meth:`Client.start`."""
        command, meta = self._core.start_command(name, input, id, version, idempotency_key)
        if not self._core.watching:
            self._starting = self._starting or asyncio.Lock()
            async with self._starting:  # one thread starts the watcher, not one per caller
                await asyncio.to_thread(self._core.watcher)
        tracker = await publish_tracked_async(self._core, command, meta)
        return AsyncWorkflowHandle(self._core, tracker)

    def get_handle(self, workflow_id: str) -> AsyncWorkflowHandle:
        """A handle on an existing (or finished, or soon started) workflow; no I/O until used."""
        return AsyncWorkflowHandle(self._core, Tracker(self._core, workflow_id))

    async def close(self) -> None:
        """Release the consumer and the producer (queued commands are delivered first)."""
        await asyncio.to_thread(self._core.close)
