"""Orchestrator restore benchmark: snapshot size and the time to restore N active workflows.

Writes N snapshots of a diamond workflow half-way through (started, first step done, two
steps running) to a fresh compacted topic, then times ``restore_partitions`` over all its
partitions, as an orchestrator does on assignment. Prints figures, asserts nothing.

Usage: .venv/bin/python bench/restore_bench.py [--workflows 100000] [--partitions 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kflow.bus.admin import create_topics, delete_topics  # noqa: E402
from kflow.bus.clients import make_producer  # noqa: E402
from kflow.bus.reader import partition_for  # noqa: E402
from kflow.bus.topics import topic_specs  # noqa: E402
from kflow.orchestrator.snapshots import restore_partitions, snapshot_of  # noqa: E402
from kflow.settings import get_settings  # noqa: E402
from tests.core.driver import Driver, diamond  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    bootstrap = get_settings().kafka_bootstrap
    prefix = f"bench-restore-{uuid.uuid4().hex[:8]}"
    spec = next(s for s in topic_specs(prefix, args.partitions, ()) if s.name.endswith("snapshots"))
    create_topics(bootstrap, [spec])
    driver = Driver(diamond(), workflow_id="wf-template")
    driver.start({"doc": "x" * 100})
    first = next(iter(driver.s.steps))
    driver.ok(first.split("/", 1)[1], {"ok": True})
    template = driver.s
    try:
        producer = make_producer(bootstrap, overrides={"linger.ms": 50})
        total_bytes = 0
        started = time.perf_counter()
        for i in range(args.workflows):
            workflow_id = f"wf-{i:07d}"
            value = snapshot_of(dataclasses.replace(template, workflow_id=workflow_id), 0)
            total_bytes += len(value)
            partition = partition_for(workflow_id, args.partitions)
            while True:
                try:
                    producer.produce(spec.name, key=workflow_id, value=value, partition=partition)
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
        producer.flush(120)
        wrote_s = time.perf_counter() - started
        started, cpu = time.perf_counter(), time.process_time()
        restored = restore_partitions(bootstrap, spec.name, range(args.partitions), 600)
        restore_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu
        count = sum(len(states) for states in restored.values())
        print(
            f"{args.workflows} snapshots, {total_bytes / args.workflows:.0f} B each "
            f"({total_bytes / 1e6:.1f} MB); written in {wrote_s:.1f} s"
        )
        print(
            f"restore of {count} workflows over {args.partitions} partitions: {restore_s:.1f} s "
            f"({count / restore_s:.0f} workflows/s, one process); CPU {cpu_s:.1f} s = "
            f"{cpu_s / max(count, 1) * 1e6:.0f} us per workflow"
        )
    finally:
        delete_topics(bootstrap, [spec.name])


if __name__ == "__main__":
    main()
