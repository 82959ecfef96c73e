"""Reader benchmark: the definitions follower's catch-up while it follows, and ``record_ends``.

    .venv/bin/python bench/reader_bench.py [--bootstrap 127.0.0.1:9092] [--calls 20]

``catch_up()`` while following is what the orchestrator pays, inside a batch, for a
StartWorkflow naming a definition it does not know yet (ADR 0023). Needs the local stack;
the topics it creates (prefix ``bench-reader-<hex>``) are deleted at the end.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from kflow.bus.admin import create_topics, delete_topics
from kflow.bus.reader import record_ends
from kflow.bus.topics import topic_specs
from kflow.core.definition import parse_definition
from kflow.registry.topic import DefinitionFollower, publish_definition


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    prefix = f"bench-reader-{uuid.uuid4().hex[:6]}"
    specs = topic_specs(prefix, 2, ("default",))
    create_topics(args.bootstrap, specs)
    try:
        for version in range(1, 21):
            definition = {"name": "d", "version": version, "nodes": [{"id": "a", "type": "echo"}]}
            publish_definition(args.bootstrap, prefix, parse_definition(definition))
        follower = DefinitionFollower(args.bootstrap, prefix)
        started = time.perf_counter()
        follower.catch_up()
        first = time.perf_counter() - started
        follower.start()
        again = []
        for _ in range(args.calls):
            time.sleep(0.05)
            started = time.perf_counter()
            follower.catch_up()
            again.append(time.perf_counter() - started)
        follower.close()
        print(f"first catch_up: {first * 1000:.0f} ms")
        print(
            f"catch_up while following: median {statistics.median(again) * 1000:.0f} ms, "
            f"max {max(again) * 1000:.0f} ms ({args.calls} calls)"
        )
        started = time.perf_counter()
        record_ends(args.bootstrap, f"{prefix}.definitions")
        print(f"record_ends (1 partition): {(time.perf_counter() - started) * 1000:.0f} ms")
    finally:
        delete_topics(args.bootstrap, [s.name for s in specs])


if __name__ == "__main__":
    main()
