"""The exactly-once loop waits out a broker down for longer than transaction.timeout.ms
(issue 13): it never gives up, the stall is visible (readiness, gauge), and afterwards every
input is forwarded exactly once. A broker of its own (``kafka.sh``), SIGKILLed and restarted.

Before the fix the loop ended with ``TransactionError`` (init_transactions gave up after six
Kafka timeouts, committed offsets after twice the transaction timeout) although the broker
came back; in a service that is a process restart, in the cluster test a failed run.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from kflow.bus.admin import create_topics
from kflow.bus.contracts import EnvelopeMeta, decode, encode_input
from kflow.bus.eos import EosLoop
from kflow.bus.topics import topic_names, topic_specs
from kflow.core.inputs import CancelWorkflow
from kflow.observability.health import Health
from kflow.observability.metrics import TRANSACTIONS_STALLED
from tests.bus.kafka_helpers import read_all
from tests.bus.test_eos import Forward, _config, _reason
from tests.readside.dedicated import DedicatedKafka

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT_S = 120.0  # hang guard only
TXN_TIMEOUT_MS = 8000
DOWN_S = 15.0  # longer than TXN_TIMEOUT_MS and than six Kafka timeouts (6 x 2 s)


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_the_loop_waits_out_a_broker_down_longer_than_the_transaction_timeout(
    private_kafka: DedicatedKafka,
) -> None:
    broker = private_kafka
    names = topic_names(f"outage-{uuid.uuid4().hex[:6]}")
    create_topics(broker.bootstrap, topic_specs(names.prefix, 2, ("default",)))
    health = Health("eos-outage-test")
    loop = EosLoop(
        _config(
            broker.bootstrap,
            names,
            instance_id="outage-0",
            batch_size=50,
            max_batch_ms=20,
            kafka_timeout_s=2.0,
            component="eos-outage-test",
            producer_overrides={"transaction.timeout.ms": TXN_TIMEOUT_MS},
        ),
        Forward(names.events),
        decode,
        health=health,
    )
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            loop.run(stop.is_set)
        except BaseException as e:  # reported by the test
            failure.append(e)

    thread = threading.Thread(target=run, name="eos-outage", daemon=True)
    thread.start()
    feeder = Producer(
        {"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    meta = EnvelopeMeta(event_id=str(uuid.uuid4()), occurred_at=1)
    sent: list[str] = []

    def feed(count: int) -> None:
        for _ in range(count):
            reason = f"r{len(sent)}"
            command = CancelWorkflow(workflow_id=f"wf-{len(sent) % 7}", reason=reason)
            feeder.produce(names.commands, encode_input(command, meta), command.workflow_id)
            sent.append(reason)
            feeder.poll(0)

    gauge = TRANSACTIONS_STALLED.labels("eos-outage-test")
    try:
        feed(200)
        _eventually(lambda: loop.stats.records_in >= 200, "the first inputs")
        assert health.ready
        pid = int((broker.dir / "kafka" / "kafka.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        feed(200)  # buffered by the feeder until the broker is back
        _eventually(lambda: not health.ready, "readiness to name the stall")
        assert "transactions" in str(health.status()["checks"]["kafka"])
        time.sleep(DOWN_S)  # the outage itself, not a wait for a result
        assert not failure, f"the loop gave up during the outage: {failure[0]!r}"
        assert gauge._value.get() > 0
        broker.start()
        assert feeder.flush(WAIT_S) == 0
        _eventually(lambda: loop.stats.records_in >= 400 or bool(failure), "all inputs")
        assert not failure, f"the loop gave up: {failure[0]!r}"
        _eventually(lambda: health.ready, "readiness after the outage")
        assert gauge._value.get() == 0
    finally:
        stop.set()
        thread.join(60)
    out = [_reason(decode(r.value)) for r in read_all(broker.bootstrap, names.events)]
    assert sorted(out) == sorted(sent)  # each exactly once
    assert loop.stats.producer_restarts >= 1, loop.stats
