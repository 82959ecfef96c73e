"""Only valid definitions reach the read side and the orchestrator; invalid ones are
dead-lettered once (issue 11, defect 6; ADR 0046)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kflow.bus.contracts import default_contracts
from kflow.bus.dead_letter import DeadLetter, decode_dead_letter
from kflow.bus.records import WorkflowDefinitionRecord
from kflow.bus.topics import topic_names
from kflow.core.events import WorkflowRejected, WorkflowStarted
from kflow.processor.registry import load_node_modules
from tests.kafka_helpers import consume_all, produce
from tests.readside.conftest import ApiServer, ReadSide, RunningProjector, wait_until
from tests.runtime.conftest import Runtime

pytestmark = pytest.mark.integration
KFLOW = str(Path(sys.executable).with_name("kflow"))

CYCLIC: dict[str, Any] = {
    "name": "loop",
    "version": 1,
    "nodes": [
        {"id": "a", "type": "echo", "queue": "default", "depends_on": ["b"]},
        {"id": "b", "type": "echo", "queue": "default", "depends_on": ["a"]},
    ],
}
VALID: dict[str, Any] = {
    "name": "loop",
    "version": 2,
    "nodes": [
        {"id": "a", "type": "echo", "queue": "default"},
        {"id": "b", "type": "echo", "queue": "default", "depends_on": ["a"]},
    ],
}


@pytest.fixture
def runtime(readside: ReadSide) -> Iterator[Runtime]:
    """The real orchestrator and a processor on the read side's topics."""
    load_node_modules([])
    rt = Runtime(readside.settings, readside.settings.redis_prefix)
    rt.start_orchestrator()
    rt.start_processor("default")
    yield rt
    rt.stop()


def _letters(readside: ReadSide, min_records: int) -> list[DeadLetter]:
    dlq = topic_names(readside.settings.topic_prefix).dlq
    found = consume_all(readside.settings.kafka_bootstrap, dlq, min_records=min_records)
    return [decode_dead_letter(m.value() or b"", default_contracts().codec) for m in found]


def test_a_raw_cyclic_definition_is_refused_by_every_reader_and_dead_lettered_once(
    readside: ReadSide,
    runtime: Runtime,
    api: ApiServer,
    start_projector: Callable[[str], RunningProjector],
    make_key: Callable[..., str],
) -> None:
    start_projector("postgres")
    start_projector("redis")  # another reader of the log: it must not dead-letter again
    topics = topic_names(readside.settings.topic_prefix)
    raw = WorkflowDefinitionRecord(name="loop", version=1, definition=CYCLIC, registered_at=1)
    produce(  # straight to the topic, past `kflow definitions apply` and its validation
        readside.settings.kafka_bootstrap,
        topics.definitions,
        [(raw.key, default_contracts().encode_definition(raw))],
    )

    [letter] = _letters(readside, 1)
    assert (letter.topic, letter.original_key) == (topics.definitions, "loop@1")
    assert letter.reason == "invalid_definition"
    assert "dependency cycle: a -> b -> a" in letter.message
    assert letter.original_value == default_contracts().encode_definition(raw)

    token = make_key("default", "write")
    with httpx.Client(
        base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=15
    ) as c:
        assert [d["name"] for d in c.get("/definitions").json()] == []
        latest = c.post("/workflows", json={"name": "loop"})
        assert latest.status_code == 422
        assert "no valid definition named 'loop' is registered" in latest.json()["detail"]
        assert topics.dlq in latest.json()["detail"]

        # asking for the refused version by number: the orchestrator rejects it, naming why
        explicit = f"wf-{uuid.uuid4().hex[:8]}"
        accepted = c.post(
            "/workflows", json={"name": "loop", "version": 1, "workflow_id": explicit}
        )
        assert accepted.status_code == 202
        rejected = runtime.wait_for(explicit, "WorkflowRejected")[-1]
        assert isinstance(rejected, WorkflowRejected)
        assert rejected.code == "invalid_definition"
        assert "dependency cycle: a -> b -> a" in rejected.reason

        runtime.apply(VALID)  # a valid later version still works, and becomes the latest
        wait_until(
            lambda: (
                [(d["name"], d["version"]) for d in c.get("/definitions").json()] == [("loop", 2)]
            ),
            "loop@2 in GET /definitions",
        )
        started = f"wf-{uuid.uuid4().hex[:8]}"
        ok = c.post("/workflows", json={"name": "loop", "workflow_id": started})
        assert ok.status_code == 202, ok.text
        events = runtime.wait_for(started, "WorkflowCompleted")
        first = events[0]
        assert isinstance(first, WorkflowStarted) and first.version == 2

    listed = subprocess.run(
        [KFLOW, "definitions", "list"],
        env={
            **os.environ,
            "KFLOW_KAFKA_BOOTSTRAP": readside.settings.kafka_bootstrap,
            "KFLOW_TOPIC_PREFIX": readside.settings.topic_prefix,
            "COLUMNS": "200",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    rows = [
        [cell.strip() for cell in line.split("│") if cell.strip()]
        for line in listed.stdout.splitlines()
        if "loop" in line
    ]
    assert [row[:2] for row in rows] == [["loop", "2"]]
    assert "loop@1 is refused and not listed" in listed.stderr
    assert "dependency cycle" in listed.stderr

    # everything above read loop@1 (projectors, orchestrator, CLI): still one dead letter
    assert len(_letters(readside, 1)) == 1
