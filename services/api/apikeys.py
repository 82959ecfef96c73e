"""API keys: made with high entropy, stored only as sha256, compared in constant time.

A key looks like ``kf_<key id>_<secret>``; the key id finds the row, the hash
of the whole key proves possession.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from enum import StrEnum

import psycopg

from kflow.bus.principals import PrincipalKey
from kflow.bus.signing import Signer, new_api_key

REVOKED_CHANNEL = "kflow_api_key_revoked"
"""PostgreSQL NOTIFY channel; the payload is the revoked key's id (API processes evict it)."""
_KEY_RE = re.compile(r"^kf_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
TENANT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Scope(StrEnum):
    """What a key may do; each scope includes the ones below it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


_RANK = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id and name, its tenant and scopes."""

    key_id: str
    name: str
    tenant: str
    scopes: frozenset[Scope]
    signer: Signer | None = field(default=None, repr=False, compare=False)
    """Signs the commands sent as this principal (made from the bearer key; ADR 0060)."""

    @property
    def actor(self) -> str:
        """The identity written into command envelopes."""
        return f"apikey:{self.key_id}:{self.name}"

    def allows(self, needed: Scope) -> bool:
        return any(_RANK[s] >= _RANK[needed] for s in self.scopes)

    def signing_record(self) -> PrincipalKey | None:
        """The record orchestrators verify this principal's signatures with."""
        if self.signer is None:
            return None
        return PrincipalKey(
            self.key_id, self.name, self.tenant, frozenset(self.scopes), self.signer.key
        )


@dataclass(frozen=True)
class NewKey:
    """A freshly created key: ``token`` is shown once and never stored."""

    key_id: str
    token: str
    tenant: str
    scopes: tuple[Scope, ...]
    name: str = ""

    def signing_record(self) -> PrincipalKey:
        """The record orchestrators verify this key's signatures with (ADR 0060)."""
        return PrincipalKey.of_token(self.token, self.name, self.tenant, map(str, self.scopes))


def hash_token(token: str) -> bytes:
    """sha256 of the whole key (the key is random, so no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode()).digest()


def parse_key_id(token: str) -> str | None:
    """The key id inside a well-formed key, else None."""
    m = _KEY_RE.match(token)
    return m.group(1) if m else None


def matches(token: str, stored_hash: bytes) -> bool:
    """Constant-time check of ``token`` against the stored hash."""
    return hmac.compare_digest(hash_token(token), stored_hash)


def create_key(
    conn: psycopg.Connection[tuple[object, ...]], name: str, tenant: str, scopes: list[Scope]
) -> NewKey:
    """Store a new key's hash and return the key (the only time it exists in clear)."""
    if not TENANT_RE.match(tenant):
        raise ValueError(f"tenant {tenant!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if not scopes:
        raise ValueError("scopes: give at least one of read, write, admin")
    token = new_api_key()
    key_id = Signer.from_token(token).key_id
    with conn.transaction():
        conn.execute(
            "INSERT INTO api_keys (key_id, key_hash, name, tenant, scopes)"
            " VALUES (%s, %s, %s, %s, %s)",
            (key_id, hash_token(token), name, tenant, sorted({str(s) for s in scopes})),
        )
    return NewKey(key_id, token, tenant, tuple(sorted(set(scopes), key=_RANK.__getitem__)), name)


def revoke_key(conn: psycopg.Connection[tuple[object, ...]], key_id: str) -> bool:
    """Revoke a key by id; False if there is no such active key.

    A trigger (migration 0004) notifies ``REVOKED_CHANNEL`` at commit, so running API
    processes stop accepting the key at once instead of when their cache entry expires;
    the same holds for any UPDATE or DELETE of a key made by hand.
    """
    with conn.transaction():
        cur = conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
            (key_id,),
        )
        return cur.rowcount == 1


def principal_from_row(row: tuple[object, ...], token: str) -> Principal | None:
    """Check ``token`` against a ``(key_id, key_hash, name, tenant, scopes)`` row."""
    key_id, key_hash, name, tenant, scopes = row
    if not isinstance(key_hash, bytes) or not matches(token, key_hash):
        return None
    assert isinstance(scopes, list)
    return Principal(
        str(key_id),
        str(name),
        str(tenant),
        frozenset(Scope(s) for s in scopes),
        Signer.from_token(token),
    )


LOOKUP_SQL = (
    "SELECT key_id, key_hash, name, tenant, scopes FROM api_keys"
    " WHERE key_id = %s AND revoked_at IS NULL"
)
