"""Unit tests of the settings read from ``KFLOW_*`` environment variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kflow.settings import Settings


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_BOOTSTRAP", "DATABASE_URL", "REDIS_URL", "TOPIC_PREFIX", "PARTITIONS"):
        monkeypatch.delenv(f"KFLOW_{var}", raising=False)
    s = Settings()
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.database_url == "postgresql://kflow:kflow@127.0.0.1:5432/kflow"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.topic_prefix == "kflow"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KFLOW_KAFKA_BOOTSTRAP", "10.0.0.1:19092")
    monkeypatch.setenv("KFLOW_TOPIC_PREFIX", "staging")
    monkeypatch.setenv("KFLOW_PARTITIONS", "12")
    s = Settings()
    assert (s.kafka_bootstrap, s.topic_prefix, s.partitions) == ("10.0.0.1:19092", "staging", 12)


@pytest.mark.parametrize(
    ("var", "value", "field"),
    [("KFLOW_TOPIC_PREFIX", "bad prefix", "topic_prefix"), ("KFLOW_PARTITIONS", "0", "partitions")],
)
def test_bad_values_name_the_field(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, field: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError, match=field):
        Settings()
