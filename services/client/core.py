"""What a :class:`~kflow.client.client.Client` and an ``AsyncClient`` share: the settings and
identity, the command publisher and the event watcher (both made on first use)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from kflow.bus.commands import CommandPublisher
from kflow.bus.contracts import EnvelopeMeta
from kflow.bus.credentials import command_signer, signer_from_settings
from kflow.bus.envelope import envelope_meta, workflow_id_for
from kflow.bus.probe import check_connection
from kflow.bus.reader import read_key
from kflow.bus.topics import TopicNames, topic_names
from kflow.client.errors import ClientClosed
from kflow.client.follow import Logged
from kflow.client.watcher import EventWatcher, logged_event
from kflow.core.inputs import Input, StartWorkflow
from kflow.projections.log_event import DEFAULT_TENANT
from kflow.settings import Settings

COMMAND_TIMEOUT_S = 10.0
"""How long a client waits for Kafka to acknowledge a command before raising
:class:`~kflow.bus.commands.CommandNotDelivered` (the API answers faster, ADR 0045)."""
HISTORY_TIMEOUT_S = 60.0
"""How long reading one workflow's partition from its start may take."""


class ClientCore:
    """Settings, identity, and the Kafka clients of one client (thread-safe)."""

    def __init__(
        self, settings: Settings, actor: str | None, tenant: str | None, command_timeout_s: float
    ) -> None:
        self.settings = settings
        self.actor = actor
        self.tenant = tenant
        self.names: TopicNames = topic_names(settings.topic_prefix)
        self._command_timeout_s = command_timeout_s
        self.signer = signer_from_settings(settings)
        """Signs every command (KFLOW_API_KEY or its file; ADR 0060); None: unsigned, which
        only a deployment with signatures turned off accepts (:meth:`check_can_send`)."""
        self._lock = threading.Lock()
        self._watcher: EventWatcher | None = None
        self._publisher: CommandPublisher | None = None
        self._closed = False
        self._connected = False

    # -- Kafka clients, made on first use ---------------------------------------------------

    @property
    def watching(self) -> bool:
        """The watcher is running (getting it does not block)."""
        return self._watcher is not None

    def watcher(self) -> EventWatcher:
        """The one reader of the events topic (started, and ready, on first use)."""
        with self._lock:
            self._check_open()
            if self._watcher is None:
                self._connect()
                self._watcher = EventWatcher(
                    self.settings.kafka_bootstrap, self.names.events, self.settings
                )
            return self._watcher

    def check_can_send(self) -> None:
        """Raise :class:`~kflow.bus.credentials.MissingApiKey` (naming the fix) when commands
        must be signed and no key is configured: before anything is sent (ADR 0061)."""
        if self.signer is None:
            command_signer(self.settings, "a kflow.Client command")

    def publisher(self) -> CommandPublisher:
        """The one command publisher (made on first use; needs a key, :meth:`check_can_send`)."""
        with self._lock:
            self._check_open()
            if self._publisher is None:
                self.check_can_send()
                self._connect()
                self._publisher = CommandPublisher(
                    self.settings.kafka_bootstrap,
                    self.settings.topic_prefix,
                    timeout_s=self._command_timeout_s,
                    component="client",
                    signer=self.signer,
                    settings=self.settings,
                )
            return self._publisher

    def _connect(self) -> None:
        """Once: fail with one clear line on bad credentials, an untrusted CA or no broker
        (librdkafka alone would retry until each call's timeout)."""
        if not self._connected:
            check_connection(self.settings.kafka_bootstrap, self.settings, self._command_timeout_s)
            self._connected = True

    def close(self) -> None:
        """Stop the watcher and deliver queued commands; later calls do nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watcher, publisher = self._watcher, self._publisher
        if watcher is not None:
            watcher.close()
        if publisher is not None:
            publisher.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosed("the client was closed; make a new one")

    # -- commands ---------------------------------------------------------------------------

    def meta(self, command: Input, idempotency_key: str | None = None) -> EnvelopeMeta:
        """The envelope of a command this client sends."""
        return envelope_meta(
            command, actor=self.actor, tenant=self.tenant, idempotency_key=idempotency_key
        )

    def start_command(
        self,
        name: str,
        input: Any,
        workflow_id: str | None,
        version: int | None,
        idempotency_key: str | None,
    ) -> tuple[StartWorkflow, EnvelopeMeta]:
        """The StartWorkflow to send and its envelope.

        Without ``workflow_id``, an ``idempotency_key`` maps to the id the API would give
        the same tenant's key, so a retried start is ignored as a duplicate.
        """
        if workflow_id is None:
            workflow_id = (
                workflow_id_for(self.tenant or DEFAULT_TENANT, idempotency_key)
                if idempotency_key is not None
                else str(uuid.uuid4())
            )
        command = StartWorkflow(
            workflow_id=workflow_id,
            name=name,
            version=version or 0,
            input=input,
            tenant=self.tenant,
            actor=self.actor,
        )
        return command, self.meta(command, idempotency_key)

    # -- history ----------------------------------------------------------------------------

    def history(self, workflow_id: str) -> list[Logged]:
        """Every event of ``workflow_id`` in the log now, in order (its partition is read)."""
        found: list[Logged] = []
        for record in read_key(
            self.settings.kafka_bootstrap,
            self.names.events,
            workflow_id,
            HISTORY_TIMEOUT_S,
            self.settings,
        ):
            logged = logged_event(record)
            if logged is not None:  # the key is the workflow id
                found.append(logged)
        return found
