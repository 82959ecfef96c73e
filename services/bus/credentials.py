"""The credential a process signs its commands with (CLI, ``kflow.Client``, outbox relay).

Taken from ``KFLOW_API_KEY``, else the file ``KFLOW_API_KEY_FILE`` (default
``~/.config/kflow/api-key``, first line); none means unsigned commands (ADR 0060).
"""

from __future__ import annotations

from pathlib import Path

from kflow.bus.errors import BusError
from kflow.bus.signing import Signer
from kflow.settings import Settings

DEFAULT_KEY_FILE = Path("~/.config/kflow/api-key")


class CredentialsError(BusError):
    """The configured API key cannot be used (the message names where it came from)."""


def signer_from_settings(settings: Settings) -> Signer | None:
    """The signer of the configured API key, or None when none is configured."""
    if settings.api_key is not None:
        return _signer(settings.api_key.get_secret_value(), "KFLOW_API_KEY")
    explicit = settings.api_key_file is not None
    path = Path(settings.api_key_file or DEFAULT_KEY_FILE).expanduser()
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        if explicit:
            raise CredentialsError(
                f"KFLOW_API_KEY_FILE={path}: no such file; write the key printed by "
                "`kflow apikey create` there"
            ) from None
        return None
    except OSError as e:
        raise CredentialsError(f"cannot read the API key file {path}: {e}") from e
    first = text.splitlines()[0] if text else ""
    return _signer(first, str(path))


def _signer(token: str, source: str) -> Signer:
    try:
        return Signer.from_token(token)
    except ValueError as e:
        raise CredentialsError(f"{source}: {e}") from e
