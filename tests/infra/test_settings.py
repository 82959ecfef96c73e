"""Unit tests of the settings read from ``KFLOW_*`` environment variables."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from kflow.core.errors import KflowError
from kflow.settings import Settings, SettingsError, env_name, get_settings


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


def test_read_side_projector_and_api_variables_keep_their_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        "KFLOW_DB_SCHEMA": "rm_1",
        "KFLOW_REDIS_PREFIX": "x:",
        "KFLOW_FINISHED_TTL_S": "60",
        "KFLOW_PROJECTOR_BATCH": "20",
        "KFLOW_PROJECTOR_INSTANCE": "p-1",
        "KFLOW_PROJECTOR_GROUP": "g.1",
        "KFLOW_API_HOST": "0.0.0.0",
        "KFLOW_API_PORT": "9999",
        "KFLOW_API_COMMAND_TIMEOUT_S": "1.5",
        "KFLOW_API_AUTH_CACHE_S": "0",
    }
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    s = Settings()
    assert (s.db_schema, s.redis_prefix, s.finished_ttl_s) == ("rm_1", "x:", 60)
    assert (s.projector_batch, s.projector_instance, s.projector_group) == (20, "p-1", "g.1")
    assert (s.api_host, s.api_port) == ("0.0.0.0", 9999)
    assert (s.api_command_timeout_s, s.api_auth_cache_s) == (1.5, 0.0)


def test_every_setting_is_described_and_in_the_readme_table() -> None:
    rows = {}
    for line in (Path(__file__).parents[2] / "README.md").read_text().splitlines():
        m = re.match(r"^\| `(KFLOW_[A-Z0-9_]+)` \| ([^|]+) \|", line)
        if m:
            rows[m.group(1)] = m.group(2).strip()
    assert set(rows) == {env_name(f) for f in Settings.model_fields}
    for field, info in Settings.model_fields.items():
        assert info.description, f"{field} has no description"
        if info.default is not None:
            shown = rows[env_name(field)].split("`")[1]
            if isinstance(info.default, bool):
                assert shown in ("true", "false") and (shown == "true") == info.default, field
            else:
                assert type(info.default)(shown) == info.default, (field, shown)


def test_get_settings_names_every_bad_variable_and_the_cli_prints_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KFLOW_API_PORT", "0")
    monkeypatch.setenv("KFLOW_DB_SCHEMA", "Bad-Schema")
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as caught:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert isinstance(caught.value, KflowError)
    text = str(caught.value)
    assert "KFLOW_API_PORT='0'" in text and "port the read-model API binds" in text
    assert "KFLOW_DB_SCHEMA='Bad-Schema'" in text

    done = subprocess.run(
        [sys.executable, "-c", "from kflow.cli.main import main; main()", "lag"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: invalid kflow settings")
    assert "KFLOW_API_PORT='0'" in done.stderr and "Traceback" not in done.stderr
