"""The one Kafka client configuration builder (kflow.bus.clients), fed from Settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kflow.bus.clients import (
    admin_config,
    connection_config,
    consumer_config,
    parse_extra,
    producer_config,
    redacted,
)
from kflow.settings import Settings, SettingsError, settings_error

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-do-not-print"


def _settings(**values: object) -> Settings:
    return Settings.model_validate(values)


def test_plaintext_default_has_only_the_protocol_and_client_id() -> None:
    assert connection_config(_settings()) == {
        "security.protocol": "PLAINTEXT",
        "client.id": "kflow",
    }


def test_sasl_ssl_scram_with_ca_and_hostname_check(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("pem")
    config = connection_config(
        _settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_username="alice",
            kafka_sasl_password=SECRET,
            kafka_ssl_ca_location=ca,
            kafka_client_id="billing",
        )
    )
    assert config == {
        "security.protocol": "SASL_SSL",
        "client.id": "billing",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": SECRET,
        "ssl.ca.location": str(ca),
        "ssl.endpoint.identification.algorithm": "https",
    }


def test_every_client_kind_gets_the_connection_settings(tmp_path: Path) -> None:
    s = _settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password=SECRET,
    )
    for config in (
        producer_config("b:1", settings=s),
        producer_config("b:1", transactional_id="t", settings=s),
        consumer_config("b:1", "g", settings=s),
        admin_config("b:1", settings=s),
    ):
        assert config["bootstrap.servers"] == "b:1"
        assert (config["sasl.mechanism"], config["sasl.password"]) == ("PLAIN", SECRET)


def test_password_from_a_file_drops_the_trailing_newline(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text(SECRET + "\n")
    s = _settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="alice",
        kafka_sasl_password_file=secret_file,
    )
    assert connection_config(s)["sasl.password"] == SECRET


def test_oauthbearer_uses_librdkafka_oidc() -> None:
    config = connection_config(
        _settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="OAUTHBEARER",
            kafka_oauth_token_url="https://idp.example/token",
            kafka_oauth_client_id="kflow",
            kafka_oauth_client_secret=SECRET,
            kafka_oauth_scope="kafka",
        )
    )
    assert config["sasl.oauthbearer.method"] == "oidc"
    assert config["sasl.oauthbearer.token.endpoint.url"] == "https://idp.example/token"
    assert config["sasl.oauthbearer.client.secret"] == SECRET
    assert config["sasl.oauthbearer.scope"] == "kafka"


def test_extra_pairs_and_properties_file_override_kflow_settings(tmp_path: Path) -> None:
    assert parse_extra("socket.keepalive.enable=true, linger.ms=50") == {
        "socket.keepalive.enable": "true",
        "linger.ms": "50",
    }
    props = tmp_path / "client.properties"
    props.write_text("# comment\nsasl.oauthbearer.extensions=a=1,b=2\n\n! other\nlinger.ms=7\n")
    s = _settings(kafka_extra=str(props))
    assert connection_config(s)["sasl.oauthbearer.extensions"] == "a=1,b=2"
    assert producer_config("b:1", settings=s)["linger.ms"] == "7"


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "KFLOW_KAFKA_SASL_USERNAME"),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "OAUTHBEARER"},
            "KFLOW_KAFKA_OAUTH_TOKEN_URL",
        ),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_ca_location": "/nope.crt"}, "/nope.crt"),
        ({"kafka_extra": "/no/such.properties"}, "KFLOW_KAFKA_EXTRA"),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_username": "a",
                "kafka_sasl_password": "x",
                "kafka_sasl_password_file": "/x",
            },
            "KFLOW_KAFKA_SASL_PASSWORD_FILE",
        ),
    ],
)
def test_incomplete_settings_name_the_variable(values: dict[str, object], names: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(names)):
        connection_config(_settings(**values))


def test_secrets_are_hidden_in_repr_errors_and_redacted_configs() -> None:
    s = _settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="alice",
        kafka_sasl_password=SECRET,
        kafka_extra=f"sasl.oauthbearer.client.secret={SECRET}",
    )
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump())
    assert SECRET not in str(redacted(producer_config("b:1", settings=s)))
    with pytest.raises(Exception) as bad:  # a non-string password fails validation
        Settings.model_validate({"kafka_sasl_password": [SECRET]})
    assert SECRET not in str(settings_error(bad.value))  # type: ignore[arg-type]
    with pytest.raises(SettingsError) as unparsable:
        parse_extra(f"sasl.password{SECRET}")
    assert SECRET not in str(unparsable.value)


def test_no_kafka_client_is_configured_outside_the_builder() -> None:
    """Every client config in services/, projections/ and bench/ comes from kflow.bus.clients
    (a config naming bootstrap.servers itself would skip the security settings)."""
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("services", "projections", "bench")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "clients.py" and '"bootstrap.servers"' in path.read_text()
    ]
    assert offenders == []
