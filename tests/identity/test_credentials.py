"""Where the CLI, kflow.Client and the relay find their API key (no servers needed)."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from kflow.bus.credentials import (
    CredentialsError,
    MissingApiKey,
    command_signer,
    save_key_file,
    signer_from_settings,
)
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


def test_senders_need_a_key_unless_signatures_are_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    keyless = Settings(api_key=None, api_key_file=None)
    assert keyless.require_signed_commands  # the default (ADR 0061)
    with pytest.raises(MissingApiKey) as missing:
        command_signer(keyless, "kflow start")
    text = str(missing.value)
    assert text.startswith("kflow start must be signed with an API key and none is configured")
    assert "kflow apikey create" in text and "--save" in text and "KFLOW_API_KEY" in text
    assert str(tmp_path / ".config" / "kflow" / "api-key") in text
    migrating = keyless.model_copy(update={"require_signed_commands": False})
    assert command_signer(migrating) is None
    key = token()
    assert command_signer(Settings(api_key=SecretStr(key))) == Signer.from_token(key)


def test_the_key_file_may_hold_what_apikey_create_printed(tmp_path: Path) -> None:
    key = token()
    printed = tmp_path / "api-key"
    printed.write_text(f"key id:  {key[3:15]}\ntenant:  default\nscopes:  write\napi key: {key}\n")
    assert signer_from_settings(Settings(api_key=None, api_key_file=str(printed))) == (
        Signer.from_token(key)
    )


def test_a_saved_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "kflow" / "api-key"
    first, second = token(), token()
    assert save_key_file(first, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not save_key_file(second, path)
    assert path.read_text() == first + "\n"
    with pytest.raises(CredentialsError):
        save_key_file("not a key", tmp_path / "other")
    assert not (tmp_path / "other").exists()
