"""Publish commands to ``{p}.commands``; the API never does the work itself.

A request waits for the broker's acknowledgement (so a 202 means the command is
in the log) but for no more than ``DELIVERY_TIMEOUT_S``: Kafka being down is a
503, and a client that retries with the same workflow id or Idempotency-Key
cannot start a workflow twice (the orchestrator ignores a duplicate start).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

from confluent_kafka import KafkaError, Message

from services.bus.clients import make_producer
from services.bus.contracts import EnvelopeMeta, encode_input
from services.bus.topics import topic_names
from services.core.inputs import Input
from services.observability.metrics import EVENTS_OUT

DELIVERY_TIMEOUT_S = 8.0


class CommandNotDelivered(Exception):
    """The broker did not acknowledge the command in time (Kafka down or overloaded)."""


class CommandPublisher:
    """An idempotent producer polled by a daemon thread; ``publish`` awaits the ack."""

    def __init__(self, bootstrap: str, topic_prefix: str) -> None:
        self.topic = topic_names(topic_prefix).commands
        self._producer = make_producer(
            bootstrap,
            overrides={
                "linger.ms": 1,
                "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000) - 1000,
                "socket.connection.setup.timeout.ms": 3000,
            },
        )
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="command-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def publish(
        self, command: Input, *, actor: str, tenant: str, idempotency_key: str | None = None
    ) -> str:
        """Encode ``command`` in its envelope, produce it keyed by workflow id; return event id."""
        event_id = str(uuid.uuid4())
        meta = EnvelopeMeta(
            event_id=event_id,
            occurred_at=int(time.time() * 1000),
            correlation_id=command.workflow_id,
            actor=actor,
            tenant=tenant,
            idempotency_key=idempotency_key,
        )
        value = encode_input(command, meta)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            def settle() -> None:
                if done.done():
                    return
                if err is None:
                    done.set_result(None)
                else:
                    done.set_exception(CommandNotDelivered(err.str()))

            loop.call_soon_threadsafe(settle)

        try:
            self._producer.produce(
                self.topic, key=command.workflow_id, value=value, on_delivery=on_delivery
            )
        except BufferError as e:
            raise CommandNotDelivered("the producer queue is full") from e
        try:
            await asyncio.wait_for(done, DELIVERY_TIMEOUT_S)
        except TimeoutError as e:
            raise CommandNotDelivered(f"no acknowledgement within {DELIVERY_TIMEOUT_S}s") from e
        EVENTS_OUT.labels("api", self.topic).inc()
        return event_id

    async def close(self) -> None:
        """Deliver what is queued (bounded), then stop the poller."""
        await asyncio.to_thread(self._producer.flush, 5)
        self._stop.set()
        await asyncio.to_thread(self._poller.join, 2)
