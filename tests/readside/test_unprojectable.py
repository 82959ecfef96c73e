"""An event whose values a projection cannot store is dead-lettered; its partition moves on.

The log is written in one transaction, as the orchestrator writes it. Values ``json`` reads
but orjson cannot write (an integer over 64 bits; a lone surrogate, whose JSON text carries
the escape ``\\ud800``) in a step's output are stored as their text (ADR 0026), so they
project; the same values in an event's recorded ``cause`` (a plain value, re-serialised for
``events.body``) cannot be written and are dead-lettered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import redis

from kflow.bus.contracts import default_contracts
from kflow.bus.dead_letter import UNPROJECTABLE, DeadLetter, decode_dead_letter
from kflow.core.events import StepSucceeded
from kflow.core.replay import replay
from kflow.projections.redis_keys import status_key
from tests.kafka_helpers import consume_all, produce
from tests.readside.conftest import ReadSide, RunningProjector
from tests.readside.expected import event_keys, logged_keys
from tests.readside.workload import WorkflowLog, interleave, make_logs

pytestmark = pytest.mark.integration

PLACEHOLDER = "XXXXXX"  # as long as the escape \ud800, so the Avro length prefix stays right
Bad = tuple[dict[str, object], str]
"""A step output, and what the dead letter's message must say about it."""
BIG_INT: Bad = ({"big": 2**70}, "Integer exceeds 64-bit range")
LONE_SURROGATE: Bad = ({"text": PLACEHOLDER}, "surrogates not allowed")
NUL: Bad = ({"text": "a\x00b"}, "unsupported Unicode escape sequence")


def poisoned_log(
    readside: ReadSide, bad: list[Bad], field: str = "cause"
) -> tuple[list[WorkflowLog], dict[bytes, str], int]:
    """Six workflows; in workflows 1, 2, ... the first step success's ``field`` (its
    ``output`` or its ``cause``) is replaced by a ``bad`` value. Produced in one transaction;
    returns the logs, each poisoned record's value -> what its dead letter must say, and how
    many records were produced."""
    logs = make_logs("uv", 6)
    poisoned: dict[tuple[str, int | None], str] = {}
    for wlog, (value, message) in zip(logs[1:], bad, strict=False):
        j, ev = next((j, e) for j, e in enumerate(wlog.events) if isinstance(e, StepSucceeded))
        wlog.events[j] = dataclasses.replace(ev, **{field: value})
        poisoned[(wlog.workflow_id, ev.seq)] = message
    records: list[tuple[str, bytes]] = []
    values: dict[bytes, str] = {}
    for key, value in interleave(logs):
        seq = default_contracts().decode_envelope(value).seq
        if (key, seq) in poisoned:
            value = value.replace(f'"{PLACEHOLDER}"'.encode(), b'"\\ud800"')
            values[value] = poisoned[(key, seq)]
        records.append((key, value))
    topic = f"{readside.settings.topic_prefix}.events"
    total = produce(readside.settings.kafka_bootstrap, topic, records, transactional=True)
    return logs, values, total


def check_dead_letters(readside: ReadSide, values: dict[bytes, str]) -> list[tuple[str, int]]:
    """Exactly one dead letter per poisoned record, saying why; their (workflow id, seq)."""
    dlq = f"{readside.settings.topic_prefix}.dlq"
    msgs = consume_all(readside.settings.kafka_bootstrap, dlq, min_records=len(values))
    letters: list[DeadLetter] = [
        decode_dead_letter(m.value() or b"", default_contracts().codec) for m in msgs
    ]
    assert sorted(letter.original_value or b"" for letter in letters) == sorted(values)
    keys = []
    for letter in letters:
        assert letter.reason == UNPROJECTABLE
        assert letter.topic == f"{readside.settings.topic_prefix}.events"
        assert letter.original_value is not None
        assert values[letter.original_value] in letter.message, letter
        env = default_contracts().decode_envelope(letter.original_value)
        assert letter.original_key == env.workflow_id
        assert env.seq is not None
        keys.append((env.workflow_id, env.seq))
    return keys


@pytest.mark.parametrize("batch", [500, 1])
def test_postgres_dead_letters_an_unwritable_event_and_projects_the_rest(
    readside: ReadSide, start_projector: Callable[[str], RunningProjector], batch: int
) -> None:
    readside.settings = readside.settings.model_copy(update={"projector_batch": batch})
    logs, values, total = poisoned_log(readside, [BIG_INT, LONE_SURROGATE])
    start_projector("postgres").wait_applied(total - len(values))
    bad_keys = check_dead_letters(readside, values)
    with readside.connect() as conn:
        assert event_keys(conn) == sorted(set(logged_keys(logs)) - set(bad_keys))
        rows = conn.execute("SELECT workflow_id, status FROM executions").fetchall()
    # the events after a poisoned one (same workflow, same partition) were all applied
    assert {w: s for w, s in rows} == {w.workflow_id: replay(w.events).status for w in logs}


@pytest.mark.parametrize("target", ["postgres", "redis"])
def test_outputs_json_reads_but_orjson_cannot_write_are_projected_as_text(
    readside: ReadSide, start_projector: Callable[[str], RunningProjector], target: str
) -> None:
    logs, _, total = poisoned_log(readside, [BIG_INT, LONE_SURROGATE, NUL], "output")
    start_projector(target).wait_applied(total)
    dlq = f"{readside.settings.topic_prefix}.dlq"
    assert consume_all(readside.settings.kafka_bootstrap, dlq) == []
    if target == "postgres":
        with readside.connect() as conn:
            assert event_keys(conn) == sorted(logged_keys(logs))
            outputs = {
                text
                for (text,) in conn.execute(
                    "SELECT output::text FROM steps WHERE output IS NOT NULL"
                ).fetchall()
            }
        assert {'{"big":1180591620717411303424}', '{"text":"\\ud800"}'} <= outputs
        return
    client = redis.Redis.from_url(readside.settings.redis_url)
    try:
        for w in logs:
            key = status_key(readside.settings.redis_prefix, w.workflow_id)
            assert client.hget(key, "status") == replay(w.events).status.encode()
    finally:
        client.close()
