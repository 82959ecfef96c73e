"""Commits whose outcome the client did not learn although the broker committed them (issue 13).

A coordinator that moves while ``commit_transaction`` waits (a broker down, here injected)
makes the call fail with a retriable timeout, or fail for good, after the broker wrote the
commit. The orchestrator must go on from what the log holds: before the fix it rolled its
state back to before the batch while the offsets moved on, and every workflow of the batch
stopped for good (199 of 200 in the cluster test).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

import kflow.bus.eos as eos
from tests.runtime.conftest import Runtime
from tests.runtime.test_crash import chain_definition, check_log

pytestmark = [pytest.mark.integration, pytest.mark.topics(partitions=2, queues=("default",))]


class CommittedButFailed(Producer):  # type: ignore[misc]
    """Commits transactions ``fail_at`` on the broker, then raises ``error`` as librdkafka
    does when the answer was lost; a resumed commit (retriable case) is then confirmed."""

    commits = 0
    injected = 0
    fail_at: frozenset[int] = frozenset()
    error = KafkaError(KafkaError._TIMED_OUT)
    lock = threading.Lock()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unconfirmed = False

    def commit_transaction(self, *args: Any) -> None:
        if self._unconfirmed:  # resumed: librdkafka now learns that it committed
            self._unconfirmed = False
            return
        super().commit_transaction(*args)
        cls = CommittedButFailed
        with cls.lock:
            cls.commits += 1
            fail = cls.commits in cls.fail_at
            cls.injected += fail
        if fail:
            self._unconfirmed = cls.error.retriable()
            raise KafkaException(cls.error)


@pytest.mark.parametrize(
    "error",
    [
        KafkaError(KafkaError._TIMED_OUT, "commit timed out (injected)", retriable=True),
        KafkaError(KafkaError._FENCED, "producer fenced (injected)", fatal=True),
    ],
    ids=["retriable-timeout", "fatal"],
)
def test_a_commit_the_broker_made_but_the_client_did_not_confirm_loses_no_workflow(
    runtime_factory: Runtime, monkeypatch: pytest.MonkeyPatch, error: KafkaError
) -> None:
    CommittedButFailed.commits = CommittedButFailed.injected = 0
    CommittedButFailed.fail_at = frozenset({2, 3, 4})  # every run commits 4 times or more
    CommittedButFailed.error = error
    monkeypatch.setattr(eos, "Producer", CommittedButFailed)
    rt = runtime_factory
    rt.apply(chain_definition(rt.redis_prefix, work_s=0.0))
    orchestrator = rt.start_orchestrator()
    rt.start_processor("default")
    ids = [f"unconfirmed-{i:02d}" for i in range(20)]
    for workflow_id in ids:
        rt.start("crashy", workflow_id=workflow_id)
    check_log(rt, ids)  # every workflow completed once, gapless seq, each step once
    assert CommittedButFailed.injected == 3
    stats = orchestrator.loop.stats
    guard = time.monotonic() + 60  # the last recovery may still be reading the log back
    while stats.reloads < stats.producer_restarts and time.monotonic() < guard:
        time.sleep(0.05)
    if error.retriable():  # the resumed commit was confirmed: nothing to redo
        assert (stats.reloads, stats.producer_restarts) == (0, 0), stats
    else:  # a new producer, and the state read back from the log
        assert stats.reloads == stats.producer_restarts == 3, stats
