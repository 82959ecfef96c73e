"""The one place Kafka clients are configured: producers, consumers and admin clients.

Every setting that matters for correctness or speed is set here, with why; the
connection settings (security protocol, SASL, TLS, client id, ``KFLOW_KAFKA_EXTRA``)
come from :class:`kflow.settings.Settings` through :func:`connection_config`, so one
environment points every kflow process at a secured cluster (ADR 0005). Callers pass
the bootstrap explicitly (tests talk to several brokers) and ``overrides`` only for
per-test or per-deployment tuning. Never log a config dict: use :func:`redacted`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from kflow.core.limits import MAX_RECORD_BYTES
from kflow.settings import Settings, SettingsError, env_name, get_settings

ConfigValue = str | int | float | bool

SECRET_KEYS = frozenset(
    {"sasl.password", "sasl.oauthbearer.client.secret", "ssl.key.password", "ssl.key.pem"}
)
"""librdkafka settings whose values are secrets (see :func:`redacted`)."""

PRODUCER_DEFAULTS: Mapping[str, ConfigValue] = {
    # Durability: every in-sync replica has the record before it counts as written.
    "acks": "all",
    # No duplicates or reordering from internal retries (required for transactions anyway).
    "enable.idempotence": True,
    # zstd: on our Avro + 1 KB JSON records it sends 0.19 of the payload bytes against
    # lz4's 0.33, and the EOS loop's throughput was the same within noise; the event log
    # is kept forever, so the smaller size wins (bench/bus_bench.py, ADR 0021).
    "compression.type": "zstd",
    # Wait up to 5 ms to fill a batch: large batches at little latency cost.
    "linger.ms": 5,
    "batch.size": 256 * 1024,
    # The largest request equals the topics' max.message.bytes (one number, ADR 0027);
    # the EOS loop refuses a larger record before produce, so this never fails a batch.
    "message.max.bytes": MAX_RECORD_BYTES,
    # Never let a produce create a topic (with the broker's default partition count, which
    # breaks co-partitioning); a missing topic fails the record instead (issue 11, 12).
    "allow.auto.create.topics": False,
    "log_level": 3,
}

TRANSACTIONAL_DEFAULTS: Mapping[str, ConfigValue] = {
    **PRODUCER_DEFAULTS,
    # A transaction left open by a dead process blocks read_committed readers of its
    # partitions until the broker aborts it; 30 s bounds that stall, and is far above
    # the loop's batch time. A restart with the same transactional.id aborts it at once.
    "transaction.timeout.ms": 30_000,
    # The broker answers CONCURRENT_TRANSACTIONS while it still writes the previous
    # commit's markers; with the default 100 ms backoff, send_offsets_to_transaction
    # took ~50 ms per transaction here, with 5 ms it takes ~6 ms (bench/bus_bench.py,
    # ADR 0021). Backoff still grows exponentially up to retry.backoff.max.ms.
    "retry.backoff.ms": 5,
}

CONSUMER_DEFAULTS: Mapping[str, ConfigValue] = {
    # Only committed transactional records: never act on an aborted batch's output.
    "isolation.level": "read_committed",
    # Offsets are committed by the producer transaction (EOS) or explicitly by the owner.
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    # Incremental rebalances: an owner keeps the partitions it still has.
    "partition.assignment.strategy": "cooperative-sticky",
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 2_000,
    "max.poll.interval.ms": 300_000,
    "fetch.wait.max.ms": 100,
    "allow.auto.create.topics": False,
    "log_level": 3,
}


def _read_secret(path: Path, field: str) -> str:
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as e:
        raise SettingsError(
            f"{env_name(field)}={str(path)!r}: cannot read the file ({e.strerror}); "
            "point it at a readable file holding only the secret"
        ) from None


def _secret(settings: Settings, field: str) -> str | None:
    value = getattr(settings, field)
    from_file = getattr(settings, f"{field}_file")
    if value is not None and from_file is not None:
        raise SettingsError(
            f"set either {env_name(field)} or {env_name(field + '_file')}, not both"
        )
    if from_file is not None:
        return _read_secret(from_file, f"{field}_file")
    return None if value is None else str(value.get_secret_value())


def parse_extra(text: str) -> dict[str, str]:
    """``KFLOW_KAFKA_EXTRA``: ``key=value,key=value``, or the path of a .properties file
    (``key=value`` lines; ``#`` and ``!`` comments)."""
    text = text.strip()
    if not text:
        return {}
    if "=" not in text:
        path = Path(text)
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise SettingsError(  # its value is not shown: it may hold a secret
                f"{env_name('kafka_extra')} is neither key=value pairs nor the path of a "
                f"readable properties file ({e.strerror})"
            ) from None
        items = [ln.strip() for ln in lines if ln.strip() and ln.strip()[0] not in "#!"]
    else:
        items = [item.strip() for item in text.split(",") if item.strip()]
    extra: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(
                f"{env_name('kafka_extra')}: item {len(extra) + 1} is not key=value "
                "(values with commas need the properties-file form)"
            )
        extra[key.strip()] = value.strip()
    return extra


def connection_config(settings: Settings | None = None) -> dict[str, str]:
    """librdkafka connection settings (security, client id, extra) from ``settings``.

    Raises :class:`~kflow.settings.SettingsError` naming the variable to fix when the
    settings are incomplete (e.g. SASL without a user). Secrets are values of this dict:
    never log it, use :func:`redacted`.
    """
    s = settings or get_settings()
    protocol = s.kafka_security_protocol
    config: dict[str, str] = {"security.protocol": protocol, "client.id": s.kafka_client_id}
    if protocol.startswith("SASL_"):
        mechanism = s.kafka_sasl_mechanism
        config["sasl.mechanism"] = mechanism
        if mechanism == "OAUTHBEARER":
            secret = _secret(s, "kafka_oauth_client_secret")
            missing = [
                env_name(f)
                for f, v in (
                    ("kafka_oauth_token_url", s.kafka_oauth_token_url),
                    ("kafka_oauth_client_id", s.kafka_oauth_client_id),
                    ("kafka_oauth_client_secret", secret),
                )
                if not v
            ]
            if missing:
                raise SettingsError(f"SASL OAUTHBEARER (OIDC) needs {', '.join(missing)}")
            assert s.kafka_oauth_token_url and s.kafka_oauth_client_id and secret
            config["sasl.oauthbearer.method"] = "oidc"
            config["sasl.oauthbearer.token.endpoint.url"] = s.kafka_oauth_token_url
            config["sasl.oauthbearer.client.id"] = s.kafka_oauth_client_id
            config["sasl.oauthbearer.client.secret"] = secret
            if s.kafka_oauth_scope:
                config["sasl.oauthbearer.scope"] = s.kafka_oauth_scope
        else:
            password = _secret(s, "kafka_sasl_password")
            if not s.kafka_sasl_username or password is None:
                raise SettingsError(
                    f"{protocol} with {mechanism} needs {env_name('kafka_sasl_username')} and "
                    f"{env_name('kafka_sasl_password')} (or {env_name('kafka_sasl_password_file')})"
                )
            config["sasl.username"] = s.kafka_sasl_username
            config["sasl.password"] = password
    if protocol in ("SSL", "SASL_SSL"):
        for field, key in (
            ("kafka_ssl_ca_location", "ssl.ca.location"),
            ("kafka_ssl_certificate_location", "ssl.certificate.location"),
            ("kafka_ssl_key_location", "ssl.key.location"),
        ):
            path: Path | None = getattr(s, field)
            if path is not None:
                if not path.is_file():
                    raise SettingsError(f"{env_name(field)}={str(path)!r}: no such file")
                config[key] = str(path)
        if s.kafka_ssl_key_password is not None:
            config["ssl.key.password"] = s.kafka_ssl_key_password.get_secret_value()
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if s.kafka_ssl_endpoint_identification else "none"
        )
    if s.kafka_extra is not None:
        config.update(parse_extra(s.kafka_extra.get_secret_value()))
    return config


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with every secret value replaced by ``<hidden>``: safe to log or show."""
    return {
        k: "<hidden>" if k in SECRET_KEYS or "password" in k or "secret" in k else v
        for k, v in config.items()
    }


def _base(
    bootstrap: str, settings: Settings | None, defaults: Mapping[str, ConfigValue]
) -> dict[str, Any]:
    """kflow's defaults, then the connection settings (``KFLOW_KAFKA_EXTRA`` may override
    a default); callers' ``overrides`` come last."""
    return {"bootstrap.servers": bootstrap, **defaults, **connection_config(settings)}


def producer_config(
    bootstrap: str,
    *,
    transactional_id: str | None = None,
    overrides: Mapping[str, ConfigValue] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Producer settings: idempotent always, transactional when given a ``transactional_id``."""
    base = TRANSACTIONAL_DEFAULTS if transactional_id else PRODUCER_DEFAULTS
    config: dict[str, Any] = _base(bootstrap, settings, base)
    if transactional_id:
        config["transactional.id"] = transactional_id
    config.update(overrides or {})
    return config


def consumer_config(
    bootstrap: str,
    group_id: str,
    *,
    instance_id: str | None = None,
    overrides: Mapping[str, ConfigValue] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Consumer settings for ``group_id``; ``instance_id`` turns on static membership.

    With static membership a restarted process (same ``instance_id``) takes its
    partitions back at once instead of waiting for a rebalance.
    """
    config: dict[str, Any] = {**_base(bootstrap, settings, CONSUMER_DEFAULTS), "group.id": group_id}
    if instance_id:
        config["group.instance.id"] = instance_id
    config.update(overrides or {})
    return config


def make_producer(
    bootstrap: str,
    *,
    transactional_id: str | None = None,
    overrides: Mapping[str, ConfigValue] | None = None,
    settings: Settings | None = None,
) -> Producer:
    """A producer with :func:`producer_config` (call ``init_transactions`` when transactional)."""
    return Producer(
        producer_config(
            bootstrap, transactional_id=transactional_id, overrides=overrides, settings=settings
        )
    )


def make_consumer(
    bootstrap: str,
    group_id: str,
    *,
    instance_id: str | None = None,
    overrides: Mapping[str, ConfigValue] | None = None,
    settings: Settings | None = None,
) -> Consumer:
    """A ``read_committed`` consumer with :func:`consumer_config` (not yet subscribed)."""
    return Consumer(
        consumer_config(
            bootstrap, group_id, instance_id=instance_id, overrides=overrides, settings=settings
        )
    )


def admin_config(
    bootstrap: str,
    *,
    overrides: Mapping[str, ConfigValue] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """AdminClient settings: the connection settings plus ``overrides``."""
    return {**_base(bootstrap, settings, {"log_level": 3}), **(overrides or {})}


def make_admin(
    bootstrap: str,
    *,
    overrides: Mapping[str, ConfigValue] | None = None,
    settings: Settings | None = None,
) -> AdminClient:
    """An AdminClient with :func:`admin_config`."""
    return AdminClient(admin_config(bootstrap, overrides=overrides, settings=settings))
