"""The runtime fixtures (a real orchestrator and processor per test) and clients on them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from kflow.client import AsyncClient, Client
from tests.runtime.conftest import TEST_QUEUES, Runtime, runtime, runtime_factory

__all__ = ["TEST_QUEUES", "Runtime", "runtime", "runtime_factory"]


def task(node_id: str, type_: str = "echo", **extra: Any) -> dict[str, Any]:
    """A node on queue ``default``."""
    return {"id": node_id, "type": type_, "queue": "default", **extra}


DIAMOND = {
    "name": "diamond",
    "nodes": [
        task("a", input={"x": "$input.x"}),
        task("b", depends_on=["a"], input={"from_a": "$steps.a.output.x"}),
        task("c", depends_on=["a"], input={"y": 2}),
        task("d", depends_on=["b", "c"], input={"b": "$steps.b.output", "c": "$steps.c.output"}),
    ],
}
DIAMOND_OUTPUT = {"d": {"b": {"from_a": 7}, "c": {"y": 2}}}
GATED = {
    "name": "gated",
    "nodes": [
        task("prepare"),
        {"id": "gate", "type": "approval", "depends_on": ["prepare"]},
        task("after", depends_on=["gate"], input={"by": "$steps.gate.output.by"}),
    ],
}
FAILING = {"name": "failing", "nodes": [task("boom", "test.fail", input={"message": "no way"})]}


@pytest.fixture
def client(runtime: Runtime) -> Iterator[Client]:
    """A Client on the test's topics, with every definition above registered."""
    for definition in (DIAMOND, GATED, FAILING):
        runtime.apply(definition)
    with Client(runtime.settings, actor="test") as c:
        yield c


@pytest.fixture
async def async_client(runtime: Runtime) -> AsyncIterator[AsyncClient]:
    """An AsyncClient on the test's topics, with every definition above registered."""
    for definition in (DIAMOND, GATED, FAILING):
        runtime.apply(definition)
    async with AsyncClient(runtime.settings, actor="test") as c:
        yield c
