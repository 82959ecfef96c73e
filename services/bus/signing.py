"""Command signatures: per-principal HMAC-SHA256 keys over the exact record (pure: no I/O).

A credential is a kflow API key (``kf_<key id>_<secret>``, ADR 0044). Its *signing key* is
derived from it (``HMAC-SHA256(api key, SIGNING_LABEL)``), so the signing key differs from
the hash the API stores and neither gives the other. A signed command carries two headers:
``kflow-key-id`` and ``kflow-signature`` = ``v1=<hex HMAC-SHA256(signing key, canonical)>``
where the canonical text binds the key id, the record key and the sha256 of the whole
record value (the Avro envelope: event id, time, type, workflow id, actor, tenant, payload).
Any change to any of them breaks the signature (ADR 0060).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

KEY_ID_HEADER = "kflow-key-id"
SIGNATURE_HEADER = "kflow-signature"
SIGNING_LABEL = b"kflow command signing v1"
"""Derivation label of signing keys: never change it, or every distributed key is wrong."""
_VERSION = "v1"
_TOKEN_RE = re.compile(r"^kf_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def new_api_key() -> str:
    """A fresh random API key, ``kf_<12 hex key id>_<43 url-safe characters>``."""
    return f"kf_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def signing_key(token: str) -> bytes:
    """The signing key of an API key (what the orchestrator holds, never the key itself)."""
    return hmac.new(token.encode(), SIGNING_LABEL, hashlib.sha256).digest()


def canonical(key_id: str, record_key: str | None, value: bytes) -> bytes:
    """The text a signature covers: version, key id, record key, sha256 of the value."""
    digest = hashlib.sha256(value).hexdigest()
    return f"{_VERSION}\n{key_id}\n{record_key or ''}\n{digest}".encode()


def signature(key: bytes, key_id: str, record_key: str | None, value: bytes) -> str:
    """``v1=<hex>``: the header value signing ``value`` under ``record_key``."""
    mac = hmac.new(key, canonical(key_id, record_key, value), hashlib.sha256).hexdigest()
    return f"{_VERSION}={mac}"


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs records as one principal (the key id and its derived signing key)."""

    key_id: str
    key: bytes

    @classmethod
    def from_token(cls, token: str) -> Signer:
        """The signer of an API key; ``ValueError`` when it is not one."""
        m = _TOKEN_RE.match(token.strip())
        if m is None:
            raise ValueError(
                "not a kflow API key (expected kf_<12 hex>_<43 characters>); create one "
                "with `kflow apikey create`"
            )
        return cls(m.group(1), signing_key(token.strip()))

    def headers(self, record_key: str | None, value: bytes) -> dict[str, bytes]:
        """The two signature headers of one record."""
        return {
            KEY_ID_HEADER: self.key_id.encode(),
            SIGNATURE_HEADER: signature(self.key, self.key_id, record_key, value).encode(),
        }


def signed_key_id(headers: Mapping[str, bytes]) -> str | None:
    """The key id a record claims to be signed with (None: unsigned)."""
    raw = headers.get(KEY_ID_HEADER)
    return raw.decode("utf-8", "replace") if raw is not None else None


def signature_matches(
    key: bytes, key_id: str, record_key: str | None, value: bytes, headers: Mapping[str, bytes]
) -> bool:
    """The record's signature header is right for ``key`` (constant-time comparison)."""
    given = headers.get(SIGNATURE_HEADER)
    if given is None:
        return False
    expected = signature(key, key_id, record_key, value).encode()
    return hmac.compare_digest(given, expected)
