"""One settings object for every kflow process, read from ``KFLOW_*`` environment variables.

Each field is read from ``KFLOW_<FIELD NAME>`` (``db_schema`` from ``KFLOW_DB_SCHEMA``).
Every process (orchestrator, processor, projector, API, relay, CLI) reads the same object,
so one environment configures a whole deployment; a process ignores what it does not use.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, ValidationError
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
    # (Kafka security settings, SASL/TLS, belong with kafka_bootstrap.)

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
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

    # -- limits -----------------------------------------------------------------------------

    max_payload_bytes: int = Field(
        1_000_000,
        ge=1024,
        le=MAX_PAYLOAD_CEILING,
        description="largest workflow input or step output accepted",
    )
    """Checked by the API and the outbox relay on the way in, and by the orchestrator (too
    large an input rejects the workflow, too large an output fails the step), so a record
    never fails at the broker; the topics' record limit leaves room for the envelope."""

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
        lines.append(f"  {env_name(field)}={e.get('input')!r}: {e['msg']}{what}")
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
