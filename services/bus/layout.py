"""The start-up probe: a service refuses to start against topics that cannot work.

Missing topics, co-partitioned topics with different partition counts and topics whose
``max.message.bytes`` is below kflow's record limit (ADR 0027) are found
before any record is read (issue 13): a workflow's commands, results, events and
snapshots must sit in the same partition number, and a topic auto-created with the
broker's default count silently breaks that. Every line names the topic and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable

from kflow.bus.admin import describe_topics
from kflow.bus.errors import BusError
from kflow.bus.probe import check_connection
from kflow.bus.topics import (
    RECORD_LIMIT_CONFIG,
    TopicNames,
    TopicSpec,
    topic_names,
    topic_problems,
)


class TopicLayoutError(BusError):
    """The topics under a prefix are missing or do not fit together; one line per topic."""


def co_partitioned(names: TopicNames) -> list[str]:
    """The topics keyed by workflow id, which must all have one partition count."""
    return [names.commands, names.results, names.events, names.snapshots, names.closed]


def check_layout(
    bootstrap: str,
    prefix: str,
    need: Iterable[str],
    *,
    partitions: int | None = None,
    timeout_s: float = 10.0,
) -> None:
    """Raise :class:`TopicLayoutError` unless every topic in ``need`` exists and the
    co-partitioned topics present share one partition count (``partitions`` when given,
    else the count of ``<prefix>.commands`` or the first one found)."""
    check_connection(bootstrap, timeout_s=timeout_s)  # one clear line for auth / TLS errors
    names = topic_names(prefix)
    core = co_partitioned(names)
    needed = list(dict.fromkeys(need))
    states = describe_topics(bootstrap, [*core, *needed], timeout_s)
    problems = [
        f"{name} does not exist at {bootstrap}: create the topics with `kflow topics create` "
        f"(prefix {prefix!r}, from KFLOW_TOPIC_PREFIX)"
        for name in needed
        if name not in states
    ]
    present = [n for n in core if n in states]
    if present:
        expected = partitions or states[present[0]].partitions
        specs = [TopicSpec(n, expected) for n in present]
        problems += [p.text for p in topic_problems(specs, states, None) if p.kind == "partitions"]
    # A topic accepting less than kflow produces would refuse records at the broker.
    limits = [TopicSpec(n, states[n].partitions, RECORD_LIMIT_CONFIG) for n in states]
    problems += [p.text for p in topic_problems(limits, states, None) if p.kind == "record_limit"]
    if problems:
        raise TopicLayoutError(
            f"kflow will not start on the topics under prefix {prefix!r}:\n  "
            + "\n  ".join(problems)
        )
