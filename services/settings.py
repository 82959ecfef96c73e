"""One settings object for every kflow process, read from ``KFLOW_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Connection and tuning settings shared by services, the CLI and tests."""

    model_config = SettingsConfigDict(env_prefix="KFLOW_", extra="ignore")

    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    database_url: str = Field(
        "postgresql://kflow:kflow@127.0.0.1:5432/kflow", description="PostgreSQL DSN"
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL")
    topic_prefix: str = Field(
        "kflow", pattern=r"^[A-Za-z0-9._-]{1,100}$", description="prefix of every topic name"
    )
    partitions: int = Field(4, ge=1, le=1024, description="partitions per co-partitioned topic")
    max_payload_bytes: int = Field(
        1_000_000, ge=1024, description="largest workflow input or step output accepted"
    )
    closed_retention_ms: int = Field(
        604_800_000,
        ge=60_000,
        description="duplicate-start window: how long {prefix}.closed keeps finished ids",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
