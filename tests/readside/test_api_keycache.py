"""The API key cache: never trusted without the revocation listener, never stores a raced lookup."""

from __future__ import annotations

import socket
from typing import Any, cast

from kflow.api.apikeys import Principal, Scope
from kflow.api.keycache import KeyCache

ALICE = Principal("0123456789ab", "alice", "acme", frozenset({Scope.READ}))
BOB = Principal("ba9876543210", "bob", "acme", frozenset({Scope.READ}))


class FakeListener:
    """Stands in for the LISTEN connection: only ``closed`` and ``fileno`` are read."""

    def __init__(self) -> None:
        self.ours, self.server = socket.socketpair()
        self.closed = False

    def fileno(self) -> int:
        return self.ours.fileno()

    def close(self) -> None:
        self.ours.close()
        self.server.close()


def _listening(cache: KeyCache) -> FakeListener:
    listener = FakeListener()
    cache.listener = cast(Any, listener)
    return listener


def test_hit_until_expiry_and_eviction_by_key_id() -> None:
    cache = KeyCache(ttl_s=5.0)
    listener = _listening(cache)
    try:
        cache.put(b"a1", ALICE, 100.0, cache.generation)
        cache.put(b"a2", ALICE, 100.0, cache.generation)
        cache.put(b"b", BOB, 100.0, cache.generation)
        assert cache.get(b"a1", 104.9) == ALICE
        assert cache.get(b"a1", 105.0) is None  # expired
        cache.evict_key(ALICE.key_id)
        assert cache.get(b"a1", 101.0) is None and cache.get(b"a2", 101.0) is None
        assert cache.get(b"b", 101.0) == BOB
    finally:
        listener.close()


def test_a_lookup_that_raced_with_a_revocation_is_not_cached() -> None:
    cache = KeyCache(ttl_s=5.0)
    listener = _listening(cache)
    try:
        started = cache.generation  # the request read the row here ...
        cache.evict_key(ALICE.key_id)  # ... then the revocation arrived
        cache.put(b"a", ALICE, 100.0, started)
        assert cache.get(b"a", 100.0) is None
    finally:
        listener.close()


def test_not_trusted_without_listener_or_with_an_unread_notification() -> None:
    cache = KeyCache(ttl_s=5.0)
    cache.put(b"a", ALICE, 100.0, cache.generation)
    assert cache.entries == {}  # nobody listens: nothing is cached
    listener = _listening(cache)
    try:
        cache.put(b"a", ALICE, 100.0, cache.generation)
        assert cache.get(b"a", 100.0) == ALICE
        listener.server.send(b"A")  # a notification is waiting to be read
        assert cache.get(b"a", 100.0) is None
        listener.ours.recv(1)
        assert cache.get(b"a", 100.0) == ALICE
        cache.listener = None
        assert cache.get(b"a", 100.0) is None
    finally:
        listener.close()


def test_ttl_zero_turns_the_cache_off() -> None:
    cache = KeyCache(ttl_s=0.0)
    listener = _listening(cache)
    try:
        cache.put(b"a", ALICE, 100.0, cache.generation)
        assert cache.get(b"a", 100.0) is None
    finally:
        listener.close()


def test_an_eviction_marks_the_open_streams_of_that_key_only() -> None:
    cache = KeyCache(ttl_s=5.0)
    alice, alice_too, bob = (
        cache.watch(ALICE.key_id),
        cache.watch(ALICE.key_id),
        cache.watch(BOB.key_id),
    )
    cache.evict_key(ALICE.key_id)
    assert alice.changed.is_set() and alice_too.changed.is_set()
    assert not bob.changed.is_set()
    cache.clear()  # a reconnected listener may have missed a notification: every stream checks
    assert bob.changed.is_set()
    for watch in (alice, alice_too, bob):
        cache.unwatch(watch)
    assert cache.watches == {}
