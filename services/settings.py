"""One settings object for every kflow process, read from ``KFLOW_*`` environment variables.

Each field is read from ``KFLOW_<FIELD NAME>`` (``db_schema`` from ``KFLOW_DB_SCHEMA``).
Every process (orchestrator, processor, projector, API, relay, CLI) reads the same object,
so one environment configures a whole deployment; a process ignores what it does not use.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from kflow.core.errors import KflowError
from kflow.core.limits import MAX_PAYLOAD_CEILING

ENV_PREFIX = "KFLOW_"
SCHEMA_PATTERN = r"^[a-z_][a-z0-9_]{0,50}$"
"""A read-model schema name: a lower-case PostgreSQL identifier that needs no quoting."""


class SettingsError(KflowError, ValueError):
    """A ``KFLOW_*`` variable has a value kflow cannot use; the message names each and the fix."""


class Settings(BaseSettings):
    """Connection and tuning settings shared by services, the CLI and tests."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    # -- connections ------------------------------------------------------------------------

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    # Kafka security: kflow.bus.clients.connection_config turns these into librdkafka
    # settings for every producer, consumer and admin client (ADR 0005).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security.protocol"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user (PLAIN, SCRAM)")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password")
    kafka_sasl_password_file: Path | None = Field(
        None, description="file holding the SASL password (instead of KFLOW_KAFKA_SASL_PASSWORD)"
    )
    """A mounted secret: read at start-up; a trailing newline is dropped."""
    kafka_oauth_token_url: str | None = Field(
        None, description="OAUTHBEARER: the OIDC token endpoint (client-credentials grant)"
    )
    kafka_oauth_client_id: str | None = Field(None, description="OAUTHBEARER: OIDC client id")
    kafka_oauth_client_secret: SecretStr | None = Field(
        None, description="OAUTHBEARER: OIDC client secret"
    )
    kafka_oauth_client_secret_file: Path | None = Field(
        None, description="file holding the OIDC client secret"
    )
    kafka_oauth_scope: str | None = Field(None, description="OAUTHBEARER: OIDC scope")
    kafka_ssl_ca_location: Path | None = Field(
        None, description="PEM file of the CA that signed the brokers' certificates"
    )
    """Unset: the system's CA store (librdkafka's default)."""
    kafka_ssl_certificate_location: Path | None = Field(
        None, description="client certificate (PEM) for mutual TLS"
    )
    kafka_ssl_key_location: Path | None = Field(
        None, description="client private key (PEM) for mutual TLS"
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="password of an encrypted client key"
    )
    kafka_ssl_endpoint_identification: bool = Field(
        True, description="check that the broker certificate names the host connected to"
    )
    """Turn off only for brokers whose certificates lack the host name; it hides a
    man-in-the-middle otherwise."""
    kafka_client_id: str = Field(
        "kflow",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="Kafka client.id (broker logs, quotas and ACL audit)",
    )
    kafka_extra: SecretStr | None = Field(
        None,
        description="more librdkafka settings: key=value,key=value or a .properties file path",
    )
    """Passed to every client after kflow's own settings, so it can override them; for
    anything kflow has no setting for (``sasl.oauthbearer.extensions``,
    ``socket.keepalive.enable``). Values containing commas need the file form."""
    database_url: str = Field(
        "postgresql://kflow:kflow@127.0.0.1:5432/kflow", description="PostgreSQL DSN"
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL")

    # -- topics -----------------------------------------------------------------------------

    topic_prefix: str = Field(
        "kflow",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="prefix of every topic name (<prefix>.events, ...)",
    )
    """Several environments can share one cluster, each under its own prefix. Consumer
    groups start with it too, so ``kflow lag`` finds an environment's groups."""
    partitions: int = Field(4, ge=1, le=1024, description="partitions of the co-partitioned topics")
    """Used when topics are created and by the orchestrator. Every co-partitioned topic has
    this count, because a workflow's commands, events, results and snapshots must land in
    the same partition number; changing it for an existing log moves workflows."""
    replication_factor: int | None = Field(
        None, ge=1, le=32, description="replicas of each topic [default: 3, or 1 on one broker]"
    )
    """Unset: asked of the cluster when topics are created; 3 with at least three brokers,
    else the broker count (ADR 0006)."""
    min_insync_replicas: int | None = Field(
        None, ge=1, le=32, description="min.insync.replicas of each topic [default: RF - 1, >= 1]"
    )
    """With ``acks=all`` a write needs this many replicas: 2 of 3 survives one broker down
    without losing an acknowledged record."""
    closed_retention_ms: int = Field(
        604_800_000,
        ge=60_000,
        description="duplicate-start window: how long <prefix>.closed remembers finished ids",
    )
    """A StartWorkflow repeating a finished workflow's id within this window gets
    DuplicateStartIgnored from the id's closed marker instead of a second run (ADR 0032);
    the orchestrator keeps the ids in memory for as long."""
    retry_window_ms: int = Field(
        86_400_000,
        ge=0,
        description="how long a failed or cancelled run can be retried (0 disables retries)",
    )
    """The orchestrator keeps such a run's last snapshot this long after it finished, so a
    RetryWorkflow can reopen it after a restart or rebalance too (ADR 0082)."""

    # -- identity (ADR 0060, docs/security.md) ---------------------------------------------

    api_key: SecretStr | None = Field(
        None, description="API key the CLI, kflow.Client and the relay sign commands with"
    )
    """A key made by ``kflow apikey create`` (``kf_<id>_<secret>``). Without it, the file
    ``$KFLOW_API_KEY_FILE`` (default ``~/.config/kflow/api-key``) is read if present;
    without either, a process that sends commands stops with the fix before sending
    (unless ``require_signed_commands`` is off: then they go unsigned; ADR 0061)."""
    api_key_file: str | None = Field(
        None, description="file holding the API key [default: ~/.config/kflow/api-key]"
    )
    require_signed_commands: bool = Field(
        True, description="refuse unsigned commands (off: the default tenant only, to migrate)"
    )
    """On (the default, ADR 0061): orchestrators refuse an unsigned command with a reason
    event, and the CLI, ``kflow.Client`` and the relay refuse to send one (they stop with
    the fix when no key is configured). Off, during a migration only: an unsigned command
    acts in the default tenant and can never touch another tenant's workflow
    (docs/security.md)."""

    # -- limits -----------------------------------------------------------------------------

    max_payload_bytes: int = Field(
        1_000_000,
        ge=1024,
        le=MAX_PAYLOAD_CEILING,
        description="largest workflow input or step output accepted "
        "(at most a third of the 4 MiB record limit)",
    )
    """Checked by the API and the outbox relay on the way in, by the processor (a node's
    output over it fails the step at once) and by the orchestrator (too large an input
    rejects the workflow, an output fails the step, a signal or heartbeat gets a notice), so
    a record never fails at the broker; at most ``MAX_PAYLOAD_CEILING`` (ADR 0027)."""

    # -- read model -------------------------------------------------------------------------

    db_schema: str = Field(
        "kflow", pattern=SCHEMA_PATTERN, description="PostgreSQL schema of the read model"
    )
    redis_prefix: str = Field(
        "kflow:", pattern=r"^[A-Za-z0-9:._-]{0,64}$", description="prefix of every Redis key"
    )
    finished_ttl_s: int = Field(
        86_400, ge=0, description="TTL of a finished workflow's Redis hash (0 keeps it)"
    )
    """Redis holds the hot status of running workflows; finished ones stay in PostgreSQL."""

    # -- projector --------------------------------------------------------------------------

    projector_batch: int = Field(
        5_000, ge=1, le=100_000, description="most events applied in one DB transaction"
    )
    """Larger batches amortise the transaction and the offset write (ADR 0041); a quiet log
    is still projected at once, since a batch takes only what is already fetched."""
    projector_instance: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="static group member id: a restarted projector gets its partitions at once",
    )
    """Kafka static membership: without it a restart waits out the session timeout while the
    group rebalances. Each process needs its own id (``--processes`` appends ``-<i>``)."""
    projector_group: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="consumer group of the projector [default: <prefix>.projector.<target>]",
    )
    """Set by ``kflow projections rebuild`` for its workers, which read the log from 0."""

    # -- observability ----------------------------------------------------------------------

    metrics_host: str = Field(
        "127.0.0.1", description="address of every service's /metrics, /healthz and /readyz"
    )
    """``--metrics-host`` overrides it; containers set 0.0.0.0 so Prometheus and the kubelet
    in other network namespaces can reach the port (the API serves them on its own port)."""

    # -- read-model API ---------------------------------------------------------------------

    api_host: str = Field("127.0.0.1", description="address the read-model API binds")
    api_port: int = Field(8080, ge=1, le=65535, description="port the read-model API binds")
    api_command_timeout_s: float = Field(
        2.5, gt=0, le=60, description="how long an API command waits for Kafka before a 503"
    )
    """A command is only published, never executed in the request; when Kafka does not ack
    in time the caller gets a 503 with Retry-After instead of a hung request (ADR 0045)."""
    api_auth_cache_s: float = Field(
        5.0, ge=0, description="how long a verified API key is trusted (revocation evicts it)"
    )
    """0 turns the cache off. A revoked or changed key is evicted at once by a NOTIFY
    trigger, so this bounds nothing the trigger sees (ADR 0045)."""


SECRET_FIELDS = frozenset(
    name for name, info in Settings.model_fields.items() if info.annotation == SecretStr | None
)
"""Fields never printed: not in error messages, logs or status output."""


def env_name(field: str) -> str:
    """The environment variable of a :class:`Settings` field (``db_schema`` -> KFLOW_DB_SCHEMA)."""
    return f"{ENV_PREFIX}{field.upper()}"


def settings_error(error: ValidationError) -> SettingsError:
    """A :class:`SettingsError` naming each bad variable, its value and what it must be."""
    lines = []
    for e in error.errors():
        field = str(e["loc"][0]) if e["loc"] else "?"
        info = Settings.model_fields.get(field)
        what = f" ({info.description})" if info is not None and info.description else ""
        shown = "<hidden>" if field in SECRET_FIELDS else repr(e.get("input"))
        lines.append(f"  {env_name(field)}={shown}: {e['msg']}{what}")
    return SettingsError("invalid kflow settings; fix these variables:\n" + "\n".join(lines))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment).

    Raises :class:`SettingsError` naming every variable that has a bad value.
    """
    try:
        return Settings()
    except ValidationError as e:
        raise settings_error(e) from None
