"""Connection probe: one clear line for bad credentials, an untrusted CA or a wrong protocol.

librdkafka never fails a client for these: it retries for ever, and blocking calls time
out with a generic "transport failure" (facts: /work/shared/notes, ADR 0007). The probe
watches the client's ``error_cb`` while it asks for metadata and stops at the first error
that no retry can fix, translating it into a message naming the setting to change.
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException

from kflow.bus.clients import make_admin
from kflow.bus.errors import BusError
from kflow.settings import Settings, get_settings


class KafkaConnectError(BusError):
    """Kafka cannot be used with these settings; the message names the setting to fix."""


def _diagnose(err: KafkaError, bootstrap: str, settings: Settings) -> str | None:
    text = err.str()
    code = err.code()
    if code == KafkaError._AUTHENTICATION:
        who = settings.kafka_sasl_username or settings.kafka_oauth_client_id or "?"
        return (
            f"Kafka at {bootstrap} rejected the {settings.kafka_sasl_mechanism} login of "
            f"{who!r}: check KFLOW_KAFKA_SASL_USERNAME and KFLOW_KAFKA_SASL_PASSWORD(_FILE) "
            "(or KFLOW_KAFKA_SASL_MECHANISM)"
        )
    if code == KafkaError._SSL or (code == KafkaError._TRANSPORT and "SSL" in text):
        if "PLAINTEXT broker listener" in text:
            return (
                f"Kafka at {bootstrap} is a PLAINTEXT listener, but "
                f"KFLOW_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}: use "
                "the broker's TLS port or set KFLOW_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"
            )
        if "certificate verify failed" in text:
            return (
                f"the TLS certificate of Kafka at {bootstrap} is not trusted: set "
                "KFLOW_KAFKA_SSL_CA_LOCATION to the CA that signed it (if it does, the "
                "certificate does not name the host: fix its subjectAltName)"
            )
        return f"TLS with Kafka at {bootstrap} failed: {text}"
    return None


def check_connection(
    bootstrap: str, settings: Settings | None = None, timeout_s: float = 5.0
) -> int:
    """The broker count, once a metadata request succeeds; else :class:`KafkaConnectError`.

    Auth and TLS errors are reported as soon as librdkafka sees them (well under a second),
    not after ``timeout_s``.
    """
    s = settings or get_settings()
    errors: list[KafkaError] = []
    admin = make_admin(
        bootstrap,
        settings=s,
        overrides={"log_level": 0, "error_cb": errors.append},  # type: ignore[dict-item]
    )
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        try:
            metadata = admin.list_topics(timeout=min(0.5, max(0.05, deadline - time.monotonic())))
            if metadata.brokers:
                return len(metadata.brokers)
        except KafkaException as e:
            last = e.args[0].str()
        admin.poll(0)  # error_cb runs only here
        for err in errors:
            why = _diagnose(err, bootstrap, s)
            if why is not None:
                raise KafkaConnectError(why)
        if errors:
            last = errors[-1].str()
        if time.monotonic() >= deadline:
            raise KafkaConnectError(_unreachable(bootstrap, s, last))


def _unreachable(bootstrap: str, settings: Settings, last: str) -> str:
    message = (
        f"Kafka is not reachable at {bootstrap}; start it with `kflow dev up` or set "
        "KFLOW_KAFKA_BOOTSTRAP"
    )
    if "Connection refused" in last:
        return message  # nothing listens there: no other hint helps
    if settings.kafka_security_protocol == "PLAINTEXT":
        message += " (a TLS or SASL listener needs KFLOW_KAFKA_SECURITY_PROTOCOL)"
    return f"{message}; last error: {last}"
