"""The one command publisher: commands to ``{prefix}.commands``, keyed by workflow id.

Used by the API, the CLI and :class:`kflow.Client`. A command counts as sent once the
broker acknowledged it; the wait for that is bounded by ``timeout_s``, which is also the
producer's ``message.timeout.ms``, so a command reported as not delivered is not written
minutes later. Retrying is always safe: a repeated StartWorkflow for the same workflow id
is ignored by the orchestrator (ADR 0011). :meth:`CommandPublisher.publish` waits in the
calling thread, :meth:`CommandPublisher.publish_async` in an event loop (the API answers
503 when it raises, ADR 0045).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from kflow.bus.clients import producer_config
from kflow.bus.contracts import EnvelopeMeta, encode_input
from kflow.bus.errors import BusError, is_fatal
from kflow.bus.message import TRACE_HEADER
from kflow.bus.principals import PrincipalKey, key_record
from kflow.bus.signing import Signer
from kflow.bus.topics import topic_names
from kflow.core.inputs import Input
from kflow.observability import tracing
from kflow.observability.metrics import CLIENT_FATAL, EVENTS_OUT

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT_S = 2.5
"""The API's wait for the broker's ack: a healthy broker acks in milliseconds, an HTTP client
is better served by a quick 503 with Retry-After than by a request that hangs."""


_UNKNOWN_TOPIC = {KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART}


class CommandNotDelivered(BusError):
    """The broker did not acknowledge a command in time (Kafka down, overloaded or unknown
    topic); the message names the command and the fix. Sending it again is safe."""


class CommandPublisher:
    """An idempotent producer polled by a daemon thread; each command's ack is awaited."""

    def __init__(
        self,
        bootstrap: str,
        topic_prefix: str,
        *,
        timeout_s: float = DELIVERY_TIMEOUT_S,
        component: str = "client",
        signer: Signer | None = None,
    ) -> None:
        self.topic = topic_names(topic_prefix).commands
        self._principals_topic = topic_names(topic_prefix).principals
        self.timeout_s = timeout_s
        self.signer = signer
        """Signs every command unless a call passes its own (ADR 0060); None: unsigned."""
        self._bootstrap = bootstrap
        self._sent = EVENTS_OUT.labels(component, self.topic)
        timeout_ms = max(1, int(timeout_s * 1000))
        self._config = {
            **producer_config(
                bootstrap,
                overrides={
                    "linger.ms": 1,
                    # librdkafka gives up on the record when the caller does, so a command
                    # reported as not delivered is not written later (a retry is safe anyway)
                    "message.timeout.ms": timeout_ms,
                    "socket.connection.setup.timeout.ms": max(1000, timeout_ms),
                    # reconnect within 1 s of the broker coming back (the default: up to 10 s)
                    "reconnect.backoff.max.ms": 1000,
                    # a topic missing from the metadata fails the record (UNKNOWN_TOPIC) well
                    # within message.timeout.ms, so the caller learns which topic to create
                    "topic.metadata.propagation.max.ms": max(1, timeout_ms // 3),
                },
            ),
            "error_cb": self._on_error,
        }
        self._lock = threading.Lock()
        self._broken = threading.Event()
        self.replacements = 0
        """Producers replaced after a fatal error since this publisher was created."""
        self._component = component
        self._producer = Producer(self._config)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="command-producer", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            if self._broken.is_set():
                with self._lock:
                    self._replace_if_broken()
            self._producer.poll(0.05)

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka's error callback; a fatal error (e.g. the idempotent producer's
        sequence state is lost) makes the poller replace the producer."""
        if is_fatal(error):
            log.error("command producer failed for good (%s); replacing it", error.str())
            self._broken.set()

    def _replace_if_broken(self) -> None:
        """Under ``_lock``: after a fatal error, a new producer for the next commands; what
        the old one held fails (callers see :class:`CommandNotDelivered`; sending again is
        safe)."""
        if not self._broken.is_set():
            return
        self._broken.clear()
        old, self._producer = self._producer, Producer(self._config)
        self.replacements += 1
        CLIENT_FATAL.labels(self._component, "producer").inc()
        try:
            old.purge()
            old.flush(1)  # serve the purged records' callbacks: their waiters fail at once
        except KafkaException as e:
            log.info("purging the failed command producer: %s", e)

    def submit(
        self, command: Input, meta: EnvelopeMeta, signer: Signer | None = None
    ) -> Future[str]:
        """Produce ``command`` in its envelope; the future gives ``meta.event_id`` once acked.

        The future fails with :class:`CommandNotDelivered`. Prefer :meth:`publish` or
        :meth:`publish_async`, which also bound the wait.
        """
        done: Future[str] = Future()
        done.set_running_or_notify_cancel()  # a waiter that gives up cannot cancel it

        def settle(error: CommandNotDelivered | None) -> None:
            if error is None:
                done.set_result(meta.event_id)
            else:
                done.set_exception(error)

        self._produce(command, meta, settle, signer)
        return done

    def publish(self, command: Input, meta: EnvelopeMeta, signer: Signer | None = None) -> str:
        """Send ``command`` and wait (at most ``timeout_s``) for the ack; returns its event id.

        ``signer`` (default: the publisher's) signs it as one principal."""
        try:
            return self.submit(command, meta, signer).result(self.timeout_s)
        except FutureTimeout as e:
            raise self._not_delivered(command, "no acknowledgement") from e

    async def publish_async(
        self, command: Input, meta: EnvelopeMeta, signer: Signer | None = None
    ) -> str:
        """:meth:`publish` for an event loop."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str] = loop.create_future()

        def resolve(error: CommandNotDelivered | None) -> None:
            if done.done():  # the waiter gave up
                return
            if error is None:
                done.set_result(meta.event_id)
            else:
                done.set_exception(error)

        def settle(error: CommandNotDelivered | None) -> None:  # in the poller thread
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(resolve, error)

        self._produce(command, meta, settle, signer)
        try:
            return await asyncio.wait_for(done, self.timeout_s)
        except TimeoutError as e:
            raise self._not_delivered(command, "no acknowledgement") from e

    async def publish_principal_async(self, key: PrincipalKey) -> None:
        """Write ``key`` to ``{prefix}.principals`` and wait (``timeout_s``) for the ack.

        The API announces a principal it verified this way before its first command
        (ADR 0060); one producer, and the same bounded wait as a command.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str | None] = loop.create_future()

        def resolve(error: str | None) -> None:
            if not done.done():
                done.set_result(error)

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(resolve, err.str() if err is not None else None)

        record_key, value = key_record(key)
        try:
            with self._lock:
                self._producer.produce(
                    self._principals_topic, key=record_key, value=value, on_delivery=on_delivery
                )
            error = await asyncio.wait_for(done, self.timeout_s)
        except KafkaException as e:  # a fatal producer refuses new records
            error = str(e)
        except BufferError:
            error = "the producer queue is full"
        except TimeoutError:
            error = "no acknowledgement"
        if error is not None:
            raise CommandNotDelivered(
                f"the signing key of {key.key_id} was not written to {self._principals_topic} "
                f"at {self._bootstrap} within {self.timeout_s:g} s ({error}); is Kafka up and "
                "the topic created (`kflow topics create`)? Sending it again is safe"
            )

    def _produce(
        self,
        command: Input,
        meta: EnvelopeMeta,
        settle: Callable[[CommandNotDelivered | None], None],
        signer: Signer | None,
    ) -> None:
        """Produce ``command``; ``settle`` gets ``None`` once acked, else why not (once).

        The record carries the caller's trace context (``traceparent`` header): a ``send``
        span's when kflow tracing is on, else the caller's own current span's, if any.
        """
        value = encode_input(command, meta)
        span = self._send_span(command, meta) if tracing.on() else None
        traceparent = (
            tracing.traceparent_of(span) if span is not None else tracing.current_traceparent()
        )
        headers: list[tuple[str, str | bytes | None]] = (
            [(TRACE_HEADER, traceparent.encode())] if traceparent else []
        )
        signer = signer or self.signer
        if signer is not None:  # the signature covers the value, not the headers
            headers.extend(signer.headers(command.workflow_id, value).items())

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            error: CommandNotDelivered | None = None
            if err is None:
                self._sent.inc()
            elif err.code() in _UNKNOWN_TOPIC:
                error = self._missing_topic()
            else:
                if is_fatal(err):
                    self._broken.set()
                error = self._not_delivered(command, err.str())
            _end_span(span, error)
            settle(error)

        try:
            with self._lock:
                self._replace_if_broken()  # never hand a command to a producer known dead
                self._producer.produce(
                    self.topic,
                    key=command.workflow_id,
                    value=value,
                    headers=headers or None,
                    on_delivery=on_delivery,
                )
        except KafkaException as e:  # a fatal producer refuses new records
            kafka_error = e.args[0] if e.args else None
            if isinstance(kafka_error, KafkaError) and is_fatal(kafka_error):
                self._broken.set()
            error = self._not_delivered(command, str(e))
            _end_span(span, error)
            settle(error)
        except BufferError:
            error = self._not_delivered(command, "the producer queue is full")
            _end_span(span, error)
            settle(error)

    def _send_span(self, command: Input, meta: EnvelopeMeta) -> tracing.Span:
        """A producer span from the caller's context to the broker's ack."""
        return tracing.tracer().start_span(
            f"send {type(command).__name__}",
            kind=tracing.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": self.topic,
                "messaging.kafka.message.key": command.workflow_id,
                "messaging.message.id": meta.event_id,
                "kflow.workflow_id": command.workflow_id,
            },
        )

    def _missing_topic(self) -> CommandNotDelivered:
        return CommandNotDelivered(
            f"topic {self.topic} does not exist at {self._bootstrap}: create the topics with "
            "`kflow topics create` (or fix KFLOW_TOPIC_PREFIX); kflow never creates them "
            "implicitly"
        )

    def _not_delivered(self, command: Input, why: str) -> CommandNotDelivered:
        return CommandNotDelivered(
            f"{type(command).__name__} for workflow {command.workflow_id!r} was not written "
            f"to {self.topic} at {self._bootstrap} within {self.timeout_s:g} s ({why}); is "
            "Kafka up (`kflow dev status`) and the topic created (`kflow topics create`)? "
            "Sending it again is safe"
        )

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (bounded by ``timeout_s``), then stop the poller."""
        self._producer.flush(timeout_s)
        self._stop.set()
        self._poller.join(2)


def _end_span(span: tracing.Span | None, error: Exception | None) -> None:
    if span is None:
        return
    if error is not None:
        span.set_status(tracing.StatusCode.ERROR, str(error))
    span.end()
