"""Publish commands to ``{p}.commands``; the API never does the work itself.

A request waits for the broker's acknowledgement (so a 202 means the command is
in the log) but for no more than ``timeout_s`` (``ApiConfig.command_timeout_s``):
Kafka being down is a 503, and a client that retries with the same workflow id or
Idempotency-Key cannot start a workflow twice (the orchestrator ignores a duplicate
start).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

from confluent_kafka import KafkaError, Message

from kflow.bus.clients import make_producer
from kflow.bus.contracts import EnvelopeMeta, encode_input
from kflow.bus.topics import topic_names
from kflow.core.inputs import Input
from kflow.observability.metrics import EVENTS_OUT

DELIVERY_TIMEOUT_S = 2.5
"""Default wait for the broker's ack: a healthy broker acks in milliseconds, a client is
better served by a quick 503 with Retry-After than by a request that hangs."""


class CommandNotDelivered(Exception):
    """The broker did not acknowledge the command in time (Kafka down or overloaded)."""


class CommandPublisher:
    """An idempotent producer polled by a daemon thread; ``publish`` awaits the ack."""

    def __init__(
        self, bootstrap: str, topic_prefix: str, timeout_s: float = DELIVERY_TIMEOUT_S
    ) -> None:
        self.topic = topic_names(topic_prefix).commands
        self.timeout_s = timeout_s
        timeout_ms = max(1, int(timeout_s * 1000))
        self._producer = make_producer(
            bootstrap,
            overrides={
                "linger.ms": 1,
                # librdkafka gives up on the record when the request does, so a command
                # answered 503 is not written minutes later (a retry is safe either way)
                "message.timeout.ms": timeout_ms,
                "socket.connection.setup.timeout.ms": max(1000, timeout_ms),
                # reconnect within 1 s of the broker coming back (the default backs off to 10 s)
                "reconnect.backoff.max.ms": 1000,
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
            await asyncio.wait_for(done, self.timeout_s)
        except TimeoutError as e:
            raise CommandNotDelivered(f"no acknowledgement within {self.timeout_s}s") from e
        EVENTS_OUT.labels("api", self.topic).inc()
        return event_id

    async def close(self) -> None:
        """Deliver what is queued (bounded), then stop the poller."""
        await asyncio.to_thread(self._producer.flush, 5)
        self._stop.set()
        await asyncio.to_thread(self._poller.join, 2)
