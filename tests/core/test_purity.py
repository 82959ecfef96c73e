"""The core stays pure: no I/O, clock or randomness imports (ADR 0012)."""

from __future__ import annotations

import ast
from pathlib import Path

import kflow.core

CORE = Path(kflow.core.__file__).parent
FORBIDDEN = {
    "confluent_kafka",
    "psycopg",
    "psycopg_pool",
    "redis",
    "httpx",
    "fastapi",
    "socket",
    "asyncio",
    "random",
    "time",
    "datetime",
    "uuid",
    "os",
    "subprocess",
    "threading",
}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for item in ast.walk(ast.parse(path.read_text())):
        if isinstance(item, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in item.names}
        elif isinstance(item, ast.ImportFrom) and item.module and not item.level:
            roots.add(item.module.split(".")[0])
    return roots


def test_core_modules_import_nothing_impure() -> None:
    offenders = {
        path.name: sorted(imported_roots(path) & FORBIDDEN) for path in sorted(CORE.glob("*.py"))
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}
    assert len(offenders) >= 15
