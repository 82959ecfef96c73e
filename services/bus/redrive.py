"""Redrive or discard dead letters, each at most once (ADR 0083).

A dead letter is named by its coordinates in the DLQ topic, ``partition:offset``. Acting on
it writes a *marker* to the compacted ``{prefix}.dlq-actions`` topic (key = those
coordinates) in the same Kafka transaction as the redriven record, so the record goes back
to its source topic exactly when the marker exists. Every redrive and discard runs under one
``transactional.id`` per prefix and reads the markers after fencing the previous holder
(:func:`kflow.bus.eos.produce_in_one_transaction`), so two operators acting at once never
both redrive one letter: the second sees the first's marker (or its commit is refused).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import KafkaException

from kflow.bus.admin import TopicAdminError, admin_client, create_topics
from kflow.bus.contracts import default_contracts
from kflow.bus.dead_letter import DeadLetter, decode_dead_letter
from kflow.bus.eos import produce_in_one_transaction
from kflow.bus.errors import BusError, DecodeError
from kflow.bus.message import OutRecord
from kflow.bus.reader import TopicReader, read_latest
from kflow.bus.topics import TopicSpec, compacted_config, topic_names

Action = Literal["redrive", "discard"]
Outcome = Literal[
    "redriven", "discarded", "already_redriven", "already_discarded", "not_found", "empty"
]
_ALREADY: dict[str, Outcome] = {"redriven": "already_redriven", "discarded": "already_discarded"}
MARKER_VERSION = 1
REDRIVEN_HEADER = "kflow-redriven-from"


class DeadLetterActionError(BusError, ValueError):
    """A redrive or discard that cannot be done as asked (the message names the fix)."""


@dataclass(frozen=True, slots=True)
class Marker:
    """What was done to one dead letter, by whom, when and why."""

    partition: int
    offset: int
    action: str
    """``redriven`` or ``discarded``."""
    actor: str
    reason: str
    at: int


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome for one selected dead letter."""

    partition: int
    offset: int
    outcome: Outcome
    detail: str


def letter_id(partition: int, offset: int) -> str:
    """The key of a dead letter's marker: ``partition:offset`` in the DLQ topic."""
    return f"{partition}:{offset}"


def parse_letter_id(text: str) -> tuple[int, int]:
    """``"0:17"`` -> ``(0, 17)``; raises ``DeadLetterActionError`` naming the format."""
    part, sep, off = text.strip().partition(":")
    if not sep or not part.isdigit() or not off.isdigit():
        raise DeadLetterActionError(
            f"dead letter {text!r}: give its DLQ coordinates as partition:offset, e.g. 0:17"
        )
    return int(part), int(off)


def _encode_marker(marker: Marker) -> bytes:
    doc = {"v": MARKER_VERSION, "action": marker.action, "actor": marker.actor,
           "reason": marker.reason, "at": marker.at}  # fmt: skip
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _decode_marker(key: str, value: bytes) -> Marker | None:
    try:
        partition, offset = parse_letter_id(key)
        doc = json.loads(value)
        marker = Marker(partition, offset, str(doc["action"]), str(doc.get("actor", "")),
                      str(doc.get("reason", "")), int(doc.get("at", 0)))  # fmt: skip
    except (DeadLetterActionError, ValueError, KeyError, TypeError):
        return None
    return marker if marker.action in _ALREADY else None


def ensure_actions_topic(bootstrap: str, prefix: str) -> str:
    """Create ``{prefix}.dlq-actions`` if an older ``kflow topics create`` did not."""
    topic = topic_names(prefix).dlq_actions
    try:
        topics = admin_client(bootstrap).list_topics(timeout=10).topics
    except KafkaException as e:
        raise TopicAdminError(f"Kafka at {bootstrap} did not answer: {e}") from e
    if topic not in topics:
        create_topics(bootstrap, [TopicSpec(topic, 1, compacted_config())])
    return topic


def read_markers(bootstrap: str, prefix: str, timeout_s: float = 30.0) -> dict[str, Marker]:
    """Every marker, by letter id (``read_committed``, to the end)."""
    topic = ensure_actions_topic(bootstrap, prefix)
    found: dict[str, Marker] = {}
    for latest in read_latest(bootstrap, topic, [0], timeout_s).values():
        for key, value in latest.items():
            marker = _decode_marker(key, value) if value is not None else None
            if marker is not None:
                found[key] = marker
    return found


def read_letters(
    bootstrap: str, prefix: str, wanted: Iterable[tuple[int, int]] | None = None
) -> dict[tuple[int, int], DeadLetter | None]:
    """The dead letters at the given coordinates (all when ``wanted`` is None); a record that
    is not a dead letter maps to None."""
    want = set(wanted) if wanted is not None else None
    codec = default_contracts().codec
    found: dict[tuple[int, int], DeadLetter | None] = {}
    with TopicReader(bootstrap, topic_names(prefix).dlq) as reader:
        for record in reader.read_to_end(timeout_s=30.0):
            at = (record.partition, record.offset)
            if want is not None and at not in want:
                continue
            try:
                found[at] = decode_dead_letter(record.value, codec) if record.value else None
            except DecodeError:
                found[at] = None
    return found


def act(
    bootstrap: str,
    prefix: str,
    selection: Sequence[tuple[int, int]],
    action: Action,
    actor: str,
    reason: str,
    now_ms: int,
) -> list[ActionResult]:
    """Redrive each selected dead letter to its source topic, or discard it, at most once.

    One transaction for the whole selection; letters already acted on are reported, not
    touched. A discard needs a ``reason`` (it is recorded).
    """
    if action == "discard" and not reason.strip():
        raise DeadLetterActionError("reason: say why the dead letters are discarded")
    if not selection:
        raise DeadLetterActionError("select at least one dead letter (partition:offset)")
    topic = ensure_actions_topic(bootstrap, prefix)
    letters = read_letters(bootstrap, prefix, selection)
    results: list[ActionResult] = []

    def prepare() -> list[OutRecord]:
        results.clear()
        markers = read_markers(bootstrap, prefix)  # after the fence: every committed marker
        out: list[OutRecord] = []
        for partition, offset in dict.fromkeys(selection):
            key = letter_id(partition, offset)
            done = markers.get(key)
            letter = letters.get((partition, offset))
            if done is not None:
                why = f"{done.action} by {done.actor or '?'}" + (
                    f": {done.reason}" if done.reason else ""
                )
                results.append(ActionResult(partition, offset, _ALREADY[done.action], why))
                continue
            if (partition, offset) not in letters:
                results.append(ActionResult(partition, offset, "not_found",
                                            f"no record at {key} in the DLQ"))  # fmt: skip
                continue
            if action == "redrive":
                if letter is None or letter.original_value is None:
                    results.append(ActionResult(partition, offset, "empty",
                                                "nothing to redrive: the record holds no original"
                                                " value; discard it instead"))  # fmt: skip
                    continue
                headers = {**(letter.original_headers or {}), REDRIVEN_HEADER: key.encode()}
                out.append(OutRecord(letter.topic, letter.original_key, letter.original_value,
                                     headers))  # fmt: skip
                detail = f"sent back to {letter.topic}"
            else:
                detail = f"discarded: {reason}"
            done_as: Outcome = "redriven" if action == "redrive" else "discarded"
            marker = Marker(partition, offset, done_as, actor, reason, now_ms)
            out.append(OutRecord(topic, key, _encode_marker(marker)))
            results.append(ActionResult(partition, offset, done_as, detail))
        return out

    produce_in_one_transaction(bootstrap, f"{prefix}.dlq-desk", prepare)
    return list(results)
