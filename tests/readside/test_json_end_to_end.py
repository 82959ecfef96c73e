"""A step's JSON output keeps its exact text and meaning on every hop (ADR 0026).

Real orchestrator and processor (threads), real Kafka, Redis and PostgreSQL: the text the
processor wrote for a node's output is the text of the StepResult, of the StepSucceeded
event, of the next step's input and of the ``steps`` row, and it means what Python's
``json`` makes of it (integers over 64 bits, lone surrogates, ...), up to the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kflow.bus.contracts import decode
from kflow.core.events import StepFailed, StepScheduled, StepSucceeded, WorkflowCompleted
from kflow.core.inputs import StepResult
from kflow.core.jsondoc import dumps
from tests.kafka_helpers import consume_all
from tests.readside.conftest import ApiServer, ReadSide, RunningProjector
from tests.readside.sse import sse_messages
from tests.runtime.conftest import TEST_QUEUES, Runtime, runtime, runtime_factory
from tests.runtime.nodes import EDGE_DOCUMENT

__all__ = ["runtime", "runtime_factory"]  # the fixtures, used here from tests/runtime

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=2, queues=TEST_QUEUES)]


def exactly(value: Any) -> Any:
    """``value`` with every scalar tagged by its type (1 != 1.0 != True, -0.0 != 0.0)."""
    if isinstance(value, dict):
        return {key: exactly(item) for key, item in value.items()}
    if isinstance(value, list):
        return [exactly(item) for item in value]
    return (type(value).__name__, repr(value))


def test_edge_values_keep_their_text_and_meaning_end_to_end(
    runtime: Runtime,
    readside: ReadSide,
    start_projector: Callable[[str], RunningProjector],
    api: ApiServer,
    make_key: Callable[..., str],
) -> None:
    runtime.apply(
        {
            "name": "edges",
            "nodes": [
                {"id": "make", "type": "test.edge_values", "queue": "default"},
                {
                    "id": "copy",
                    "type": "echo",
                    "queue": "default",
                    "depends_on": ["make"],
                    "input": {"got": "$steps.make.output", "big": "$steps.make.output.big"},
                },
            ],
        }
    )
    runtime.apply(
        {
            "name": "nan",
            "nodes": [{"id": "bad", "type": "test.not_finite", "queue": "default"}],
        }
    )
    wid, nan = runtime.start("edges"), runtime.start("nan")
    finals = runtime.wait_final([wid, nan])
    events = finals[wid]
    assert isinstance(events[-1], WorkflowCompleted), events[-1]
    made = next(e for e in events if isinstance(e, StepSucceeded) and e.step_key == f"{wid}/make")
    text = made.output.text

    # the processor wrote the node's output once; every hop after carries that text
    assert text == dumps(EDGE_DOCUMENT)
    assert exactly(json.loads(text)) == exactly(EDGE_DOCUMENT)
    assert exactly(made.output.value) == exactly(EDGE_DOCUMENT)
    records = consume_all(runtime.settings.kafka_bootstrap, f"{runtime.prefix}.results")
    results = [decode(record.value()).body for record in records]
    (result,) = [r for r in results if isinstance(r, StepResult) and r.step_key == made.step_key]
    assert result.output.text == text
    scheduled = next(e for e in events if isinstance(e, StepScheduled) and e.node_id == "copy")
    assert scheduled.input.text == f'{{"got":{text},"big":{2**70}}}'
    copied = next(e for e in events if isinstance(e, StepSucceeded) and e.step_key.endswith("copy"))
    assert exactly(copied.output.value) == exactly({"got": EDGE_DOCUMENT, "big": 2**70})
    completed = events[-1]
    assert completed.output.text == f'{{"copy":{copied.output.text}}}'

    # a NaN is not JSON: the step fails for good, saying why, instead of writing null
    failed = next(e for e in finals[nan] if isinstance(e, StepFailed))
    assert failed.error_class == "permanent" and "not JSON" in failed.message

    # the read model stores the same text, byte for byte
    projector = start_projector("postgres")
    projector.wait_applied(len(events) + len(finals[nan]))
    with readside.connect() as conn:
        rows = dict(
            conn.execute(
                "SELECT node_id, output::text FROM steps WHERE workflow_id = %s", (wid,)
            ).fetchall()
        )
        (stored,) = conn.execute(
            "SELECT output::text FROM executions WHERE workflow_id = %s", (wid,)
        ).fetchone() or (None,)
    assert rows == {"make": text, "copy": copied.output.text}
    assert stored == completed.output.text

    # and the API gives back the same values
    with httpx.Client(
        base_url=api.url, headers={"Authorization": f"Bearer {make_key()}"}, timeout=15
    ) as client:
        response = client.get(f"/workflows/{wid}")
        assert response.status_code == 200, response.text
        body = json.loads(response.content)
        page = client.get(f"/workflows/{wid}/events")
        assert page.status_code == 200, page.text
        with client.stream("GET", f"/workflows/{wid}/stream") as stream:
            streamed = {seq: data for seq, _, data in sse_messages(stream) if seq == made.seq}
            # the stream ends after the terminal event
    steps = {step["node_id"]: step for step in body["steps"]}
    assert exactly(steps["make"]["output"]) == exactly(EDGE_DOCUMENT)
    assert exactly(body["output"]) == exactly({"copy": {"got": EDGE_DOCUMENT, "big": 2**70}})
    (item,) = [e for e in json.loads(page.content)["items"] if e["seq"] == made.seq]
    assert exactly(item["body"]["output"]) == exactly(EDGE_DOCUMENT)
    assert exactly(streamed[made.seq]["body"]["output"]) == exactly(EDGE_DOCUMENT)
