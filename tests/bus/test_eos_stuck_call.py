"""A Kafka call that never returns must not stop the exactly-once loop (issue 13).

librdkafka 2.16's ``send_offsets_to_transaction`` ignores its timeout and can block for ever
when the group coordinator's broker goes away (librdkafka issues 5456, 5511): the cluster
test's orchestrator sat in it for good after a 40 s broker outage. Injected here: the second
call blocks until the test ends. The loop gives the call up, replaces the producer (which
fences the stuck one) and redoes the batch; every input is forwarded exactly once.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from confluent_kafka import Producer

import kflow.bus.eos as eos
from kflow.bus.contracts import EnvelopeMeta, decode, encode_input
from kflow.bus.eos import EosLoop
from kflow.bus.topics import TopicNames
from kflow.core.inputs import CancelWorkflow
from tests.bus.kafka_helpers import produce, read_all
from tests.bus.test_eos import Forward, _config, _reason

pytestmark = pytest.mark.integration


class StuckOnce(Producer):  # type: ignore[misc]
    """The ``stuck_at``-th send_offsets_to_transaction (of all instances) never returns."""

    calls = 0
    stuck_at = 2
    release = threading.Event()

    def send_offsets_to_transaction(self, *args: Any) -> None:
        StuckOnce.calls += 1
        if StuckOnce.calls == StuckOnce.stuck_at:
            StuckOnce.release.wait()  # as librdkafka when the coordinator is gone
            return
        super().send_offsets_to_transaction(*args)


def test_a_send_offsets_call_that_never_returns_is_given_up_and_the_batch_redone(
    kafka_bootstrap: str, topics: TopicNames, monkeypatch: pytest.MonkeyPatch
) -> None:
    StuckOnce.calls = 0
    StuckOnce.release.clear()
    monkeypatch.setattr(eos, "Producer", StuckOnce)
    monkeypatch.setattr(eos, "STUCK_CALL_MARGIN_S", 0.5)
    loop = EosLoop(
        _config(
            kafka_bootstrap,
            topics,
            instance_id="stuck-0",
            batch_size=10,
            max_batch_ms=50,
            kafka_timeout_s=1.0,
        ),
        Forward(topics.events),
        decode,
    )
    reasons = [f"r{i}" for i in range(30)]
    meta = EnvelopeMeta(event_id=str(uuid.uuid4()), occurred_at=1)
    produce(
        kafka_bootstrap,
        topics.commands,
        [
            ("wf-1", encode_input(CancelWorkflow(workflow_id="wf-1", reason=r), meta))
            for r in reasons
        ],
        partition=0,
    )
    done = threading.Event()

    def run() -> None:
        for _ in range(400):  # guards against a hang only
            if loop.stats.records_in >= len(reasons):
                break
            loop.run_once()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert done.wait(120), f"the loop stopped in a Kafka call; stats {loop.stats}"
    finally:
        StuckOnce.release.set()
        thread.join(30)
        loop.close()
    out = [_reason(decode(r.value)) for r in read_all(kafka_bootstrap, topics.events)]
    assert out == reasons  # once each, in order: the stuck batch was aborted and redone
    assert loop.stats.producer_restarts == 1, loop.stats
