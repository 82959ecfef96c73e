"""Where the CLI, kflow.Client and the relay find their API key (no servers needed)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from pydantic import SecretStr

from kflow.bus.credentials import CredentialsError, signer_from_settings
from kflow.bus.signing import Signer
from kflow.settings import Settings


def token() -> str:
    return f"kf_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def test_the_variable_then_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert signer_from_settings(Settings(api_key=None, api_key_file=None)) is None
    default = tmp_path / ".config" / "kflow" / "api-key"
    default.parent.mkdir(parents=True)
    in_file, in_env = token(), token()
    default.write_text(in_file + "\n")
    assert signer_from_settings(Settings(api_key=None)) == Signer.from_token(in_file)
    chosen = Settings(api_key=SecretStr(in_env))
    assert signer_from_settings(chosen) == Signer.from_token(in_env)


def test_bad_credentials_name_their_source(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="KFLOW_API_KEY: not a kflow API key"):
        signer_from_settings(Settings(api_key=SecretStr("secret")))
    missing = tmp_path / "nope"
    with pytest.raises(CredentialsError, match=f"KFLOW_API_KEY_FILE={missing}: no such file"):
        signer_from_settings(Settings(api_key=None, api_key_file=str(missing)))
    assert "hunter2" not in repr(Settings(api_key=SecretStr("hunter2")))
