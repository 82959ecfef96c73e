"""Modules the CLI imports lazily import first in a fresh interpreter (no import cycle).

``kflow bulk`` and ``kflow retry --filter`` import ``kflow.api.batches`` before anything else
of the API; it imported the console package, which imports the batch routes, which need
``kflow.api.batches`` complete: a traceback instead of the command.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["kflow.api.batches", "kflow.cli.recovery"])
def test_module_imports_first(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
