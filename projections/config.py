"""Read-side settings (``KFLOW_*`` environment variables) on top of the shared ones."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SCHEMA_PATTERN = r"^[a-z_][a-z0-9_]{0,50}$"


class ReadSideSettings(BaseSettings):
    """Where the read models live and how they are kept."""

    model_config = SettingsConfigDict(env_prefix="KFLOW_", extra="ignore")

    db_schema: str = Field(
        "kflow", pattern=SCHEMA_PATTERN, description="PostgreSQL schema of the read model"
    )
    redis_prefix: str = Field(
        "kflow:", pattern=r"^[A-Za-z0-9:._-]{0,64}$", description="prefix of every Redis key"
    )
    finished_ttl_s: int = Field(
        86_400, ge=0, description="TTL of a finished workflow's Redis hash (0 keeps it)"
    )
    projector_batch: int = Field(
        5_000, ge=1, le=100_000, description="most events applied in one DB transaction"
    )
    projector_instance: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="static group member id: a restarted projector gets its partitions at once",
    )
    projector_group: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,200}$",
        description="consumer group of the projector [default: {prefix}.projector.{target}]",
    )
    api_host: str = Field("127.0.0.1", description="address the read-model API binds")
    api_port: int = Field(8080, ge=1, le=65535, description="port the read-model API binds")
    api_command_timeout_s: float = Field(
        2.5, gt=0, le=60, description="how long a command waits for Kafka before a 503"
    )
    api_auth_cache_s: float = Field(
        5.0, ge=0, description="how long a verified API key is trusted (revocation evicts it)"
    )


@lru_cache(maxsize=1)
def get_readside_settings() -> ReadSideSettings:
    """The process-wide read-side settings (read once from the environment)."""
    return ReadSideSettings()
