"""The command publisher replaces its producer after a fatal error (issue 11 defect 4).

librdkafka's Python binding offers no way to make an idempotent producer fail for good
(``rd_kafka_test_fatal_error`` is not exposed), so the fatal error is handed to the
publisher's error callback, the entry point librdkafka itself uses; the rest is real.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from kflow.bus.commands import CommandPublisher
from kflow.bus.envelope import envelope_meta
from kflow.bus.reader import TopicReader
from kflow.bus.topics import TopicNames
from kflow.core.inputs import CancelWorkflow

pytestmark = [pytest.mark.integration]


def test_a_fatal_producer_error_replaces_the_producer(
    kafka_bootstrap: str, topic_prefix: str, topics: TopicNames
) -> None:
    publisher = CommandPublisher(kafka_bootstrap, topic_prefix, timeout_s=10, component="test")
    try:
        first = CancelWorkflow(workflow_id="wf-before")
        publisher.publish(first, envelope_meta(first, actor="test"))
        broken = publisher._producer
        publisher._on_error(KafkaError(KafkaError._FATAL, "injected by the test", fatal=True))
        after = CancelWorkflow(workflow_id="wf-after")
        publisher.publish(after, envelope_meta(after, actor="test"))  # a new producer sends it
        assert publisher.replacements == 1
        assert publisher._producer is not broken
    finally:
        publisher.close()
    with TopicReader(kafka_bootstrap, topics.commands) as reader:
        keys = {r.key for r in reader.read_to_end()}
    assert {"wf-before", "wf-after"} <= keys
