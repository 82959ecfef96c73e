"""The orchestrator's principal directory on the real broker: a key announced just before its
first command is found, even right after a refresh made for another key."""

from __future__ import annotations

import secrets

import pytest

from kflow.bus.principals import PrincipalDirectory, PrincipalKey, publish_key

pytestmark = pytest.mark.integration


def _key(tenant: str) -> PrincipalKey:
    return PrincipalKey(
        secrets.token_hex(6), "svc", tenant, frozenset({"write"}), secrets.token_bytes(32)
    )


def test_a_key_published_after_a_refresh_for_another_key_is_found(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    directory = PrincipalDirectory(kafka_bootstrap, topic_prefix)
    try:
        directory.catch_up()  # as the orchestrator does when it starts
        first, second = _key("acme"), _key("globex")
        publish_key(kafka_bootstrap, topic_prefix, first)
        directory.refresh(first.key_id)
        assert directory.get(first.key_id) == first
        # announced a moment later (as the API does before a new key's first command)
        publish_key(kafka_bootstrap, topic_prefix, second)
        directory.refresh(second.key_id)
        assert directory.get(second.key_id) == second
    finally:
        directory.close()
