"""Signing keys of principals on ``{prefix}.principals`` (compacted, one partition).

``kflow apikey create|rotate`` (and the API, for keys it verified) publish a key record
under ``key:<key id>``; a revocation is a separate record under ``revoked:<key id>``, so it
is permanent (key ids are random and never reused) and no later key record undoes it.
Orchestrators follow the topic with a :class:`PrincipalDirectory` (ADR 0060). The topic
holds signing keys: only kflow's own services may read it (Kafka ACLs, docs/security.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, Producer

from kflow.bus.clients import make_producer
from kflow.bus.errors import BusError
from kflow.bus.follower import TopicFollower
from kflow.bus.reader import RawRecord, ReaderError, read_key
from kflow.bus.signing import Signer
from kflow.bus.topics import topic_names

log = logging.getLogger(__name__)

KEY_PREFIX = "key:"
REVOKED_PREFIX = "revoked:"


class PrincipalsError(BusError):
    """The principals topic could not be written or read (the message says what to check)."""


@dataclass(frozen=True, slots=True)
class PrincipalKey:
    """One principal's signing key: who it is, its tenant and scopes."""

    key_id: str
    name: str
    tenant: str
    scopes: frozenset[str]
    signing_key: bytes

    @classmethod
    def of_token(cls, token: str, name: str, tenant: str, scopes: Iterable[str]) -> PrincipalKey:
        """The record of API key ``token`` (its key id and derived signing key, never the key
        itself); ``ValueError`` when ``token`` is not a kflow API key."""
        signer = Signer.from_token(token)
        return cls(signer.key_id, name, tenant, frozenset(scopes), signer.key)

    @property
    def actor(self) -> str:
        """The verified actor written into the log (same form as the API's, ADR 0044)."""
        return f"apikey:{self.key_id}:{self.name}"

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "key_id": self.key_id,
                "name": self.name,
                "tenant": self.tenant,
                "scopes": sorted(self.scopes),
                "signing_key": self.signing_key.hex(),
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PrincipalKey:
        """Parse a key record; ``ValueError`` names what is wrong."""
        try:
            doc = json.loads(data)
            return cls(
                key_id=str(doc["key_id"]),
                name=str(doc["name"]),
                tenant=str(doc["tenant"]),
                scopes=frozenset(str(s) for s in doc["scopes"]),
                signing_key=bytes.fromhex(doc["signing_key"]),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"not a principal key record: {e}") from e


def key_record(key: PrincipalKey) -> tuple[str, bytes]:
    """The record key and value of ``key`` on the principals topic."""
    return KEY_PREFIX + key.key_id, key.to_json()


def publish_key(
    bootstrap: str,
    prefix: str,
    key: PrincipalKey,
    timeout_s: float = 15.0,
    producer: Producer | None = None,
) -> None:
    """Write ``key`` to the principals topic and wait (``timeout_s``) for the broker's ack.

    ``producer``: one of ``bootstrap`` to reuse (a fresh one costs about half a second);
    by default one is made for this record.
    """
    _publish(bootstrap, prefix, *key_record(key), timeout_s, producer)


def publish_revocation(bootstrap: str, prefix: str, key_id: str) -> None:
    """Revoke ``key_id`` for every orchestrator (permanently) and wait for the ack."""
    body = json.dumps({"key_id": key_id, "revoked_at": time.time_ns() // 1_000_000})
    _publish(bootstrap, prefix, REVOKED_PREFIX + key_id, body.encode(), 15.0)


def _publish(
    bootstrap: str,
    prefix: str,
    record_key: str,
    value: bytes,
    timeout_s: float,
    producer: Producer | None = None,
) -> None:
    topic = topic_names(prefix).principals
    if producer is None:
        producer = make_producer(
            bootstrap,
            overrides={"linger.ms": 0, "message.timeout.ms": max(1, int(timeout_s * 1000))},
        )
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err.str())

    producer.produce(topic, value, record_key, on_delivery=on_delivery)
    if producer.flush(timeout_s + 5) or errors:
        raise PrincipalsError(
            f"could not write {record_key} to {topic} at {bootstrap}: "
            f"{'; '.join(errors) or 'timed out'}; is Kafka up and the topic created "
            "(`kflow topics create`)?"
        )


def lookup_key(
    bootstrap: str, prefix: str, key_id: str, timeout_s: float = 30.0
) -> PrincipalKey | None:
    """The current key record of ``key_id`` (None: unknown or revoked); reads the topic."""
    topic = topic_names(prefix).principals
    found: PrincipalKey | None = None
    try:
        for name in (KEY_PREFIX + key_id, REVOKED_PREFIX + key_id):
            for record in read_key(bootstrap, topic, name, timeout_s):
                if name.startswith(REVOKED_PREFIX):
                    return None
                found = PrincipalKey.from_json(record.value) if record.value else None
    except (ReaderError, ValueError) as e:
        raise PrincipalsError(f"cannot read {topic}: {e}") from e
    return found


class PrincipalDirectory:
    """The latest key per key id and the revoked ids, followed on a daemon thread.

    ``get`` answers from memory; ``refresh`` reads to the end of the topic (at most once a
    second per key id).
    """

    REFRESH_EVERY_S = 1.0
    REFRESH_MEMORY = 10_000

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self._keys: dict[str, PrincipalKey] = {}
        self._revoked: set[str] = set()
        self._refreshed_at: dict[str, float] = {}
        # librdkafka backs off fetch.error.backoff.ms (500 ms) after every partition EOF:
        # on this quiet topic that was the revocation latency (~0.55 s measured)
        self._follower = TopicFollower(
            bootstrap,
            topic_names(prefix).principals,
            self._apply,
            PrincipalsError,
            overrides={"fetch.wait.max.ms": 50, "fetch.error.backoff.ms": 20},
        )

    def get(self, key_id: str) -> PrincipalKey | None:
        """The key of ``key_id`` as last read (None: unknown)."""
        return self._keys.get(key_id)

    def is_revoked(self, key_id: str) -> bool:
        return key_id in self._revoked

    def refresh(self, key_id: str = "", timeout_s: float = 10.0) -> None:
        """Read to the end of the topic now, unless that was done for ``key_id`` within a
        second: a key announced a moment before its first command is always read (a refresh
        for another key does not hide it), and a flood naming one unknown key costs one read
        a second."""
        now = time.monotonic()
        if now - self._refreshed_at.get(key_id, -self.REFRESH_EVERY_S) < self.REFRESH_EVERY_S:
            return
        if len(self._refreshed_at) >= self.REFRESH_MEMORY:
            self._refreshed_at.clear()
        self._refreshed_at[key_id] = now
        self.catch_up(timeout_s)

    def catch_up(self, timeout_s: float = 30.0) -> None:
        """Read until the end of the topic (as of now)."""
        self._follower.catch_up(timeout_s)

    def start(self) -> None:
        """Follow new keys and revocations on a daemon thread."""
        self._follower.start("principals")

    def close(self) -> None:
        self._follower.close()

    def _apply(self, record: RawRecord) -> None:
        name = record.key or ""
        if name.startswith(REVOKED_PREFIX):
            key_id = name.removeprefix(REVOKED_PREFIX)
            self._revoked.add(key_id)
            self._keys.pop(key_id, None)
        elif name.startswith(KEY_PREFIX) and record.value is not None:
            try:
                key = PrincipalKey.from_json(record.value)
            except ValueError as e:
                log.warning("ignored %s at offset %s: %s", name, record.offset, e)
                return
            if key.key_id not in self._revoked:
                self._keys[key.key_id] = key
