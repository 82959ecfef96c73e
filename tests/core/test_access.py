"""Command identity, pure parts: signatures over the exact record, and the tenant rules."""

from __future__ import annotations

import secrets

from hypothesis import given
from hypothesis import strategies as st

from kflow.bus.signing import KEY_ID_HEADER, SIGNATURE_HEADER, Signer, signature_matches
from kflow.core.access import (
    DEFAULT_TENANT,
    FORBIDDEN,
    UNAUTHENTICATED,
    Caller,
    authorize,
    misrouted,
    refusal_event,
)
from kflow.core.events import InputRejected, WorkflowRejected
from kflow.core.inputs import CancelWorkflow, StartWorkflow
from kflow.core.replay import verify


def token() -> str:
    return f"kf_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


ALICE = Caller("a", "apikey:1:alice", verified=True, scopes=frozenset({"write"}), key_id="1")
READER = Caller("a", "apikey:2:r", verified=True, scopes=frozenset({"read"}), key_id="2")
ANON = Caller(DEFAULT_TENANT, "cli", verified=False)
CANCEL = CancelWorkflow(workflow_id="w")
START = StartWorkflow(workflow_id="w", name="n", version=0)


@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0), st.integers(0, 255))
def test_any_changed_byte_breaks_the_signature(value: bytes, where: int, byte: int) -> None:
    signer = Signer.from_token(token())
    headers = signer.headers("w", value)
    assert signature_matches(signer.key, signer.key_id, "w", value, headers)
    i = where % len(value)
    changed = value[:i] + bytes([byte]) + value[i + 1 :]
    assert signature_matches(signer.key, signer.key_id, "w", changed, headers) == (changed == value)
    assert not signature_matches(signer.key, signer.key_id, "other", value, headers)


def test_a_signature_is_bound_to_its_key() -> None:
    one, two = Signer.from_token(token()), Signer.from_token(token())
    headers = one.headers("w", b"record")
    assert headers[KEY_ID_HEADER] == one.key_id.encode()
    assert not signature_matches(two.key, one.key_id, "w", b"record", headers)
    assert not signature_matches(one.key, one.key_id, "w", b"record", {})
    forged = {**headers, SIGNATURE_HEADER: b"v1=" + b"0" * 64}
    assert not signature_matches(one.key, one.key_id, "w", b"record", forged)


def test_the_signing_key_is_not_the_stored_hash() -> None:
    import hashlib

    t = token()
    assert Signer.from_token(t).key != hashlib.sha256(t.encode()).digest()


def test_a_principal_acts_only_in_its_own_tenant() -> None:
    assert authorize(ALICE, CANCEL, None, "a", exists=True) is None
    assert authorize(ALICE, CANCEL, "a", "a", exists=True) is None
    other = authorize(ALICE, CANCEL, None, "b", exists=True)
    assert other is not None and other.code == FORBIDDEN and "tenant 'a'" in other.reason
    claim = authorize(ALICE, START, "b", None, exists=False)
    assert claim is not None and claim.code == FORBIDDEN and "'b'" in claim.reason
    taken = authorize(ALICE, START, None, "b", exists=True)
    assert taken is not None and "not available" in taken.reason


def test_read_keys_cannot_command() -> None:
    refused = authorize(READER, CANCEL, None, "a", exists=True)
    assert refused is not None and "--scope write" in refused.reason


def test_unsigned_commands_only_reach_the_default_tenant() -> None:
    assert authorize(ANON, CANCEL, None, None, exists=True) is None
    assert authorize(ANON, START, DEFAULT_TENANT, None, exists=False) is None
    claim = authorize(ANON, START, "b", None, exists=False)
    assert claim is not None and claim.code == UNAUTHENTICATED and "KFLOW_API_KEY" in claim.reason
    touch = authorize(ANON, CANCEL, None, "b", exists=True)
    assert touch is not None and touch.code == FORBIDDEN


def test_refusals_are_notices_that_replay_takes_as_given() -> None:
    from kflow.core.access import Refusal

    refusal = Refusal(FORBIDDEN, "no")
    rejected = refusal_event(START, 5, refusal)
    assert isinstance(rejected, WorkflowRejected) and rejected.seq == 0
    notice = refusal_event(CANCEL, 5, refusal)
    assert isinstance(notice, InputRejected) and notice.input_type == "CancelWorkflow"
    # a refused cancel re-decided would cancel: verify must not re-decide it
    assert verify([notice]) is None


@given(st.text(min_size=1, max_size=20), st.text(min_size=0, max_size=20))
def test_a_command_keyed_by_another_id_is_refused(workflow_id: str, record_key: str) -> None:
    cancel = CancelWorkflow(workflow_id=workflow_id)
    assert misrouted(workflow_id, cancel) is None
    refusal = misrouted(record_key if record_key != workflow_id else None, cancel)
    assert refusal is not None and refusal.code == FORBIDDEN
    assert f"is not the workflow id {workflow_id!r}" in refusal.reason
