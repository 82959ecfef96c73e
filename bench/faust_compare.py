"""faust-streaming copy agent vs kflow's EosLoop copy, on the real broker.

faust-streaming pins an older ``click`` than kflow, so it lives in its own venv:

    python3.11 -m venv /tmp/faustvenv && /tmp/faustvenv/bin/pip install faust-streaming==0.15.3
    .venv/bin/python bench/faust_compare.py --faust-python /tmp/faustvenv/bin/python

Each engine copies the same N records (1 KB values, 4 partitions) from an input
topic to an output topic as its own process. A ``read_committed`` reader of the
output times from the first copied record it sees to the N-th (so start-up and
group join are excluded) and counts duplicates. Topics are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 4


def run_faust_worker(bootstrap: str, source: str, output: str, app_id: str, guarantee: str) -> None:
    """The faust side (runs in the faust venv): a one-agent copy app."""
    import faust  # type: ignore[import-not-found]

    app = faust.App(
        app_id,
        broker=f"kafka://{bootstrap}",
        processing_guarantee=guarantee,
        store="memory://",
        web_enabled=False,
        topic_partitions=PARTITIONS,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
    )
    source_topic = app.topic(source, key_serializer="raw", value_serializer="raw")
    output_topic = app.topic(output, key_serializer="raw", value_serializer="raw")

    @app.agent(source_topic)
    async def copy(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            await output_topic.send(key=event.key, value=event.value)

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


def _values(count: int) -> list[bytes]:
    rows = [{"sku": f"SKU-{i:05d}", "qty": i % 7, "price": 12.5 + i} for i in range(20)]
    return [json.dumps({"n": i, "rows": rows}).encode()[:1024] for i in range(count)]


def _measure(
    bootstrap: str, output: str, expected: int, limit_s: float, child: subprocess.Popen[str]
) -> tuple[float, int, int]:
    """(records/s from first to last, records seen, duplicates) for a read_committed reader."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from kflow.bus.clients import make_consumer

    reader = make_consumer(bootstrap, f"measure-{uuid.uuid4().hex}")
    reader.assign([TopicPartition(output, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    seen: Counter[bytes] = Counter()
    first_at: float | None = None
    first_count = 0
    last_at = time.perf_counter()
    deadline = time.monotonic() + limit_s
    try:
        while sum(seen.values()) < expected and time.monotonic() < deadline:
            if child.poll() is not None:
                break  # the engine crashed: report what it managed
            batch = [m for m in reader.consume(1000, 0.2) if m.error() is None]
            if batch:
                last_at = time.perf_counter()
                if first_at is None:
                    first_at, first_count = last_at, len(batch)
                seen.update(m.value() or b"" for m in batch)
    finally:
        reader.close()
    total = sum(seen.values())
    duplicates = total - len(seen)
    if first_at is None or last_at <= first_at:
        return 0.0, total, duplicates
    return (total - first_count) / (last_at - first_at), total, duplicates


def compare(bootstrap: str, faust_python: str, count: int) -> None:
    """Run every engine over the same input and print one line each."""
    from confluent_kafka import Producer

    from kflow.bus.admin import create_topics, delete_topics
    from kflow.bus.clients import producer_config
    from kflow.bus.topics import TopicSpec

    prefix = f"bench-faust-{uuid.uuid4().hex[:8]}"
    source = f"{prefix}.in"
    engines = {
        "kflow EosLoop batch=500 (exactly once)": [
            sys.executable, "-m", "tests.bus.copy_child", bootstrap, source,
            "{output}", "{group}", "bench-0", "500",
        ],
        "faust exactly_once": [
            faust_python, __file__, "faust-worker", bootstrap, source,
            "{output}", "{group}", "exactly_once",
        ],
        "faust at_least_once": [
            faust_python, __file__, "faust-worker", bootstrap, source,
            "{output}", "{group}", "at_least_once",
        ],
    }  # fmt: skip
    topics = [source] + [f"{prefix}.out{i}" for i in range(len(engines))]
    try:
        create_topics(bootstrap, [TopicSpec(t, PARTITIONS) for t in topics])
        producer = Producer(producer_config(bootstrap))
        for i, value in enumerate(_values(count)):
            while True:
                try:
                    producer.produce(source, value, f"k{i % 1000}")
                    break
                except BufferError:
                    producer.poll(0.01)
        producer.flush(60)
        for index, (name, template) in enumerate(engines.items()):
            output, group = f"{prefix}.out{index}", f"{prefix}-g{index}"
            argv = [a.format(output=output, group=group) for a in template]
            child = subprocess.Popen(
                argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            try:
                rate, seen, duplicates = _measure(bootstrap, output, count, 180, child)
            finally:
                child.send_signal(signal.SIGTERM)
                try:
                    _, errors = child.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    _, errors = child.communicate()
            print(
                f"{name:40s} {rate:>9,.0f} records/s  seen {seen}/{count}  duplicates {duplicates}"
            )
            if seen < count and errors:
                print("  stderr tail:", errors.strip().splitlines()[-5:])
    finally:
        delete_topics(bootstrap, topics + [f"{prefix}.out{i}.dlq" for i in range(len(engines))])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "faust-worker":
        bootstrap, source, output, app_id, guarantee = sys.argv[2:7]
        sys.argv = [sys.argv[0], "worker"]  # faust parses the command line itself
        run_faust_worker(bootstrap, source, output, app_id, guarantee)
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument(
        "--faust-python", default=os.environ.get("FAUST_PYTHON", "/tmp/faustvenv/bin/python")
    )
    parser.add_argument("--records", type=int, default=50_000)
    args = parser.parse_args()
    compare(args.bootstrap, args.faust_python, args.records)


if __name__ == "__main__":
    main()
