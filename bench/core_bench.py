"""Domain-core benchmark (a script, not a test): prints figures.

    .venv/bin/python bench/core_bench.py [--quick]

* decide+evolve events/s driving a 1,000-node chain and a 1,000-wide fan-out to completion
  (``decide_and_evolve``: one working copy per decision, as the orchestrator should);
* small-diamond workflows/s through the whole life cycle;
* planner and validation time for 10,000 nodes;
* memory per active workflow state of a 10-node DAG (tracemalloc);
* replay and verify speed of the 1,000-node chain log.

Timings are the best of 3 runs.
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc
from typing import Any

from kflow.core import (
    WorkflowDefinition,
    WorkflowState,
    decide,
    decide_and_evolve,
    evolve_all,
    parse_definition,
    plan,
    replay,
    validate_definition,
    verify,
)
from kflow.core.events import Event, StepScheduled
from kflow.core.graph import compile_graph
from kflow.core.inputs import StartWorkflow, StepResult


def _defn(nodes: list[dict[str, Any]], name: str) -> WorkflowDefinition:
    return parse_definition({"name": name, "nodes": nodes})


def chain(n: int) -> WorkflowDefinition:
    nodes: list[dict[str, Any]] = [{"id": "n0", "type": "echo"}]
    nodes += [{"id": f"n{i}", "type": "echo", "depends_on": [f"n{i - 1}"]} for i in range(1, n)]
    return _defn(nodes, "chain")


def fan_out(width: int) -> WorkflowDefinition:
    leaves = [{"id": f"l{i}", "type": "echo", "depends_on": ["root"]} for i in range(width)]
    join = {"id": "join", "type": "echo", "depends_on": [leaf["id"] for leaf in leaves]}
    return _defn([{"id": "root", "type": "echo"}, *leaves, join], "fan")


def small_dag() -> WorkflowDefinition:
    """10 nodes: a diamond of diamonds with an input expression on each node."""
    nodes = [{"id": "s", "type": "echo", "input": {"x": "$input.x"}}]
    for i in range(4):
        nodes.append(
            {"id": f"a{i}", "type": "echo", "depends_on": ["s"], "input": {"v": "$steps.s.output"}}
        )
    for i in range(4):
        nodes.append({"id": f"b{i}", "type": "echo", "depends_on": [f"a{i}"]})
    nodes.append({"id": "j", "type": "echo", "depends_on": [f"b{i}" for i in range(4)]})
    return _defn(nodes, "small")


def run_to_completion(
    defn: WorkflowDefinition, workflow_id: str
) -> tuple[WorkflowState, list[Event]]:
    """Answer every task with a success, oldest first, until the workflow completes."""
    now = 0
    start = StartWorkflow(
        workflow_id=workflow_id, name=defn.name, version=1, input={"x": 1}, definition=defn
    )
    events = decide(None, start, now)
    state = evolve_all(None, events)
    assert state is not None
    log = list(events)
    queue = [e for e in events if isinstance(e, StepScheduled)]
    head = 0
    while head < len(queue):
        task = queue[head]
        head += 1
        now += 1
        result = StepResult(
            workflow_id=workflow_id, step_key=task.step_key, attempt=task.attempt, output=now
        )
        events, next_state = decide_and_evolve(state, result, now)
        assert next_state is not None
        state = next_state
        log.extend(events)
        queue.extend(e for e in events if isinstance(e, StepScheduled))
    assert state.status == "completed", state.status
    return state, log


REPEAT = 3
"""Each timing is the best of REPEAT runs (the machine is shared; best-of filters noise)."""


def bench_drive(label: str, defn: WorkflowDefinition) -> list[Event]:
    elapsed = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        _, log = run_to_completion(defn, f"bench-{label}")
        elapsed = min(elapsed, time.perf_counter() - started)
    print(
        f"{label:<22} {len(log):>7} events in {elapsed * 1000:8.1f} ms"
        f"  = {len(log) / elapsed:>10,.0f} events/s (decide+evolve)"
    )
    return log


def bench_small_workflows(count: int) -> None:
    defn = small_dag()
    elapsed = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        events = 0
        for i in range(count):
            _, log = run_to_completion(defn, f"wf-{i}")
            events += len(log)
        elapsed = min(elapsed, time.perf_counter() - started)
    print(
        f"10-node workflows      {count:>7} runs   in {elapsed * 1000:8.1f} ms"
        f"  = {count / elapsed:>10,.0f} workflows/s ({events / elapsed:,.0f} events/s)"
    )


def random_dag(n: int, seed: int = 7) -> WorkflowDefinition:
    rng = random.Random(seed)
    nodes = []
    for i in range(n):
        deps = sorted({f"n{rng.randrange(i)}" for _ in range(min(i, 3))}) if i else []
        nodes.append({"id": f"n{i}", "type": "echo", "depends_on": deps})
    rng.shuffle(nodes)
    return _defn(nodes, "big")


def bench_planner(n: int) -> None:
    defn = random_dag(n)
    plan_ms = validate_ms = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        result = plan(defn)
        plan_ms = min(plan_ms, (time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        validate_definition(defn)
        validate_ms = min(validate_ms, (time.perf_counter() - started) * 1000)
    edges = sum(len(node.depends_on) for node in defn.nodes)
    print(
        f"planner {n:,} nodes/{edges:,} edges: plan {plan_ms:.1f} ms"
        f" ({len(result.levels)} levels), full validation {validate_ms:.1f} ms"
    )
    started = time.perf_counter()
    compile_graph(defn)
    print(f"compile graph {n:,} nodes: {(time.perf_counter() - started) * 1000:.1f} ms")


def bench_memory(count: int) -> None:
    defn = small_dag()
    compile_graph(defn)  # the compiled graph is shared by every workflow of a definition
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    states = []
    for i in range(count):
        workflow_id = f"mem-{i:06d}"
        start = StartWorkflow(
            workflow_id=workflow_id, name="small", version=1, input={"x": 1}, definition=defn
        )
        state = evolve_all(None, decide(None, start, 0))
        assert state is not None
        result = StepResult(
            workflow_id=workflow_id, step_key=f"{workflow_id}/s", attempt=1, output=1
        )
        state = evolve_all(state, decide(state, result, 1))  # 4 branches now running
        states.append(state)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    print(f"memory per active 10-node workflow state (5 records): {total / count:,.0f} bytes")


def bench_replay(log: list[Event]) -> None:
    replay_ms = verify_ms = float("inf")
    for _ in range(REPEAT):
        started = time.perf_counter()
        replay(log)
        replay_ms = min(replay_ms, (time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        assert verify(log) is None
        verify_ms = min(verify_ms, (time.perf_counter() - started) * 1000)
    print(f"replay {len(log):,} events: {replay_ms:.1f} ms; verify: {verify_ms:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    size = 200 if args.quick else 1000
    chain_log = bench_drive(f"chain {size}", chain(size))
    bench_drive(f"fan-out {size}", fan_out(size))
    bench_small_workflows(100 if args.quick else 1000)
    bench_planner(2000 if args.quick else 10_000)
    bench_memory(200 if args.quick else 2000)
    bench_replay(chain_log)


if __name__ == "__main__":
    main()
