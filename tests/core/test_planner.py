"""Kahn ordering with a stable tie-break, levels, and cycle reporting."""

from __future__ import annotations

import pytest

from kflow.core import DefinitionError, plan
from tests.core.driver import chain, diamond, node, workflow


def test_diamond_levels_and_order() -> None:
    result = plan(diamond())
    assert result.levels == (("a",), ("b", "c"), ("d",))
    assert result.order == ("a", "b", "c", "d")


def test_ties_broken_by_id_regardless_of_declaration_order() -> None:
    defn = workflow(node("z"), node("m"), node("a"), node("k", "z", "a"))
    assert plan(defn).levels == (("a", "m", "z"), ("k",))


def test_level_is_the_longest_dependency_chain() -> None:
    defn = workflow(node("a"), node("b", "a"), node("c", "a", "b"))
    assert plan(defn).levels == (("a",), ("b",), ("c",))


def test_chain_order() -> None:
    assert plan(chain(12)).order == tuple(f"n{i}" for i in range(12))


def test_every_dependency_comes_first() -> None:
    defn = workflow(node("e", "d", "b"), node("d", "c"), node("c", "a"), node("b", "a"), node("a"))
    position = {node_id: i for i, node_id in enumerate(plan(defn).order)}
    for spec in defn.nodes:
        assert all(position[dep] < position[spec.id] for dep in spec.depends_on)


def test_cycle_raises_with_path() -> None:
    with pytest.raises(DefinitionError, match=r"x -> y -> x"):
        plan(workflow(node("x", "y"), node("y", "x")))
