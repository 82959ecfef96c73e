"""The orchestrator's signature check against a directory of keys (no servers needed)."""

from __future__ import annotations

import secrets

from kflow.bus.principals import PrincipalKey
from kflow.bus.signing import Signer
from kflow.core.access import Caller, Refusal
from kflow.orchestrator.identity import Authenticator


class Directory:
    def __init__(self, *keys: PrincipalKey) -> None:
        self.keys = {k.key_id: k for k in keys}
        self.revoked: set[str] = set()
        self.refreshes = 0
        self.later: list[PrincipalKey] = []

    def get(self, key_id: str) -> PrincipalKey | None:
        return self.keys.get(key_id)

    def is_revoked(self, key_id: str) -> bool:
        return key_id in self.revoked

    def refresh(self, key_id: str = "") -> None:  # what a re-read of the topic would find
        self.refreshes += 1
        self.keys.update((k.key_id, k) for k in self.later)


def principal(tenant: str, scopes: str = "write") -> tuple[Signer, PrincipalKey]:
    signer = Signer.from_token(f"kf_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}")
    key = PrincipalKey(signer.key_id, "svc", tenant, frozenset({scopes}), signer.key)
    return signer, key


def test_verdicts() -> None:
    signer, key = principal("acme")
    keys = Directory(key)
    auth = Authenticator(keys, require_signatures=True)
    good = signer.headers("w", b"v")
    caller = auth.verify("w", b"v", good, "cli")
    assert caller == Caller("acme", f"apikey:{key.key_id}:svc as cli", True, key.scopes, key.key_id)
    assert isinstance(auth.verify("w", b"changed", good, None), Refusal)
    assert isinstance(auth.verify("other", b"v", good, None), Refusal)
    unsigned = auth.verify("w", b"v", {}, "cli")
    assert isinstance(unsigned, Refusal) and "not signed" in unsigned.reason
    optional = Authenticator(keys, require_signatures=False).verify("w", b"v", {}, "cli")
    assert optional == Caller("default", "cli", verified=False)
    keys.revoked.add(key.key_id)
    revoked = auth.verify("w", b"v", good, None)
    assert isinstance(revoked, Refusal) and "revoked" in revoked.reason


def test_an_unknown_key_rereads_the_directory_once() -> None:
    signer, key = principal("acme")
    keys = Directory()
    auth = Authenticator(keys, require_signatures=True)
    unknown = auth.verify("w", b"v", signer.headers("w", b"v"), None)
    assert isinstance(unknown, Refusal) and "unknown" in unknown.reason and keys.refreshes == 1
    keys.later.append(key)  # created a moment ago: found by the re-read
    assert isinstance(auth.verify("w", b"v", signer.headers("w", b"v"), None), Caller)
