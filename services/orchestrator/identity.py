"""Verify who sent a command: its signature against the principals' keys (ADR 0060).

The keys live here, outside the deterministic core state: the verdict (a
:class:`~kflow.core.access.Caller` or a :class:`~kflow.core.access.Refusal`) is what the
handler acts on, and a refusal is recorded in the log as a notice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from kflow.bus.errors import RetryableError
from kflow.bus.principals import PrincipalKey, PrincipalsError
from kflow.bus.signing import signature_matches, signed_key_id
from kflow.core.access import DEFAULT_TENANT, UNAUTHENTICATED, Caller, Refusal


class KeyDirectory(Protocol):
    """Where the signing keys come from (a :class:`~kflow.bus.principals.PrincipalDirectory`)."""

    def get(self, key_id: str) -> PrincipalKey | None: ...
    def is_revoked(self, key_id: str) -> bool: ...
    def refresh(self, key_id: str = "") -> None: ...


class NoKeys:
    """A directory without keys: every signed command is refused as of an unknown key."""

    def get(self, key_id: str) -> PrincipalKey | None:
        return None

    def is_revoked(self, key_id: str) -> bool:
        return False

    def refresh(self, key_id: str = "") -> None:
        return None


class Authenticator:
    """Turns a command record's headers and bytes into a caller or a refusal."""

    def __init__(self, keys: KeyDirectory, require_signatures: bool) -> None:
        self.keys = keys
        self.require_signatures = require_signatures

    def verify(
        self,
        record_key: str | None,
        value: bytes,
        headers: Mapping[str, bytes],
        claimed_actor: str | None,
    ) -> Caller | Refusal:
        key_id = signed_key_id(headers)
        if key_id is None:
            if self.require_signatures:
                return Refusal(
                    UNAUTHENTICATED,
                    "the command is not signed and this orchestrator requires signatures; "
                    "send it with an API key (KFLOW_API_KEY, see docs/security.md)",
                )
            return Caller(DEFAULT_TENANT, claimed_actor, verified=False)
        key = self._key(key_id)
        if isinstance(key, Refusal):
            return key
        if not signature_matches(key.signing_key, key_id, record_key, value, headers):
            return Refusal(
                UNAUTHENTICATED,
                f"the signature of key {key_id} does not match the record (altered, or "
                "signed with another key)",
            )
        actor = key.actor
        if claimed_actor and claimed_actor != actor:
            actor = f"{actor} as {claimed_actor}"
        return Caller(key.tenant, actor, verified=True, scopes=key.scopes, key_id=key_id)

    def _key(self, key_id: str) -> PrincipalKey | Refusal:
        lookup: Callable[[str], PrincipalKey | None] = self.keys.get
        if self.keys.is_revoked(key_id):
            return Refusal(UNAUTHENTICATED, f"key {key_id} is revoked; use a current key")
        key = lookup(key_id)
        if key is None:
            try:
                self.keys.refresh(key_id)  # created a moment ago?
            except PrincipalsError as e:  # retry the batch rather than refuse a good command
                raise RetryableError(f"cannot read the principals topic: {e}") from e
            if self.keys.is_revoked(key_id):
                return Refusal(UNAUTHENTICATED, f"key {key_id} is revoked; use a current key")
            key = lookup(key_id)
        if key is None:
            return Refusal(
                UNAUTHENTICATED,
                f"key {key_id} is unknown to the orchestrator; create keys with "
                "`kflow apikey create` (it publishes them to <prefix>.principals)",
            )
        return key
