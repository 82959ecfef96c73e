"""Runnable kflow examples, shipped with the package (``kflow run all --example NAME``).

An example is a folder ``<name>/`` holding its definition ``<name>.yaml`` and its node code
``nodes.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class Example:
    """A bundled example: where its definition is and which module holds its nodes."""

    name: str
    definition: Path
    nodes_module: str


def example_names() -> list[str]:
    """Names of the bundled examples, sorted."""
    return sorted(
        p.parent.name
        for p in _HERE.glob("*/nodes.py")
        if (p.parent / f"{p.parent.name}.yaml").is_file()
    )


def find_example(name: str) -> Example | None:
    """The bundled example called ``name``, or None."""
    if name not in example_names():
        return None
    return Example(name, _HERE / name / f"{name}.yaml", f"{__name__}.{name}.nodes")
