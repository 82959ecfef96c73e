"""The credential a process signs its commands with (CLI, ``kflow.Client``, outbox relay).

Taken from ``KFLOW_API_KEY``, else the file ``KFLOW_API_KEY_FILE`` (default
``~/.config/kflow/api-key``: the key alone, or what ``kflow apikey create`` printed). Commands
must be signed by default (``KFLOW_REQUIRE_SIGNED_COMMANDS``, ADR 0061): a sender without a
key stops before sending, with the fix (:func:`command_signer`).
"""

from __future__ import annotations

import os
from pathlib import Path

from kflow.bus.errors import BusError
from kflow.bus.signing import Signer
from kflow.settings import Settings

DEFAULT_KEY_FILE = Path("~/.config/kflow/api-key")
_PRINTED_LABEL = "api key:"
"""The line of ``kflow apikey create``'s output that holds the key."""


class CredentialsError(BusError):
    """The configured API key cannot be used (the message names where it came from)."""


class MissingApiKey(CredentialsError):
    """Commands must be signed and no API key is configured (the message says how to get one)."""


def key_file(settings: Settings) -> Path:
    """Where the CLI and ``kflow.Client`` look for the API key (``KFLOW_API_KEY_FILE``)."""
    return Path(settings.api_key_file or DEFAULT_KEY_FILE).expanduser()


def signer_from_settings(settings: Settings) -> Signer | None:
    """The signer of the configured API key, or None when none is configured."""
    if settings.api_key is not None:
        return _signer(settings.api_key.get_secret_value(), "KFLOW_API_KEY")
    explicit = settings.api_key_file is not None
    path = key_file(settings)
    try:
        text = path.read_text()
    except FileNotFoundError:
        if explicit:
            raise CredentialsError(
                f"KFLOW_API_KEY_FILE={path}: no such file; write the key printed by "
                "`kflow apikey create` there (or create it with `kflow apikey create ... "
                "--save`)"
            ) from None
        return None
    except OSError as e:
        raise CredentialsError(f"cannot read the API key file {path}: {e}") from e
    return _signer(_token_in(text), str(path))


def command_signer(settings: Settings, sender: str = "this command") -> Signer | None:
    """The signer a command sender must use: the configured key's, or None only when
    signatures are turned off (``KFLOW_REQUIRE_SIGNED_COMMANDS=false``, a migration).

    Raises :class:`MissingApiKey` naming the fix when commands must be signed and no key is
    configured, so nothing is sent only to be refused by the orchestrator later.
    """
    signer = signer_from_settings(settings)
    if signer is None and settings.require_signed_commands:
        raise MissingApiKey(
            f"{sender} must be signed with an API key and none is configured: create one with "
            "`kflow apikey create --name $USER --tenant default --scope write --save` (writes "
            f"{key_file(settings)}, mode 0600; or `... > {key_file(settings)}`), or set "
            "KFLOW_API_KEY (docs/security.md)"
        )
    return signer


def save_key_file(token: str, path: Path) -> bool:
    """Write ``token`` to ``path`` (mode 0600, parents made); False, writing nothing, when the
    file exists already: a key file is never overwritten."""
    _signer(token, "the key to save")  # never write something that is not a key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return True


def _token_in(text: str) -> str:
    """The key in a key file: its first line, or the ``api key:`` line of the output of
    ``kflow apikey create`` redirected there."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(_PRINTED_LABEL):
            return line.removeprefix(_PRINTED_LABEL).strip()
    return lines[0] if lines else ""


def _signer(token: str, source: str) -> Signer:
    try:
        return Signer.from_token(token)
    except ValueError as e:
        raise CredentialsError(f"{source}: {e}") from e
