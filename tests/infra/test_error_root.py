"""Every exception class kflow defines derives from ``kflow.KflowError``.

Modules are imported in a child process: importing every module (node packages, the CLI,
``__main__`` modules) registers nodes and metrics, which must not leak into other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys

WALK = """
import importlib, inspect, json, pkgutil
import kflow
from kflow.core.errors import KflowError

modules, failed, offenders = [], {}, []
for info in pkgutil.walk_packages(kflow.__path__, "kflow."):
    try:
        module = importlib.import_module(info.name)
    except Exception as e:
        failed[info.name] = repr(e)
        continue
    modules.append(info.name)
    for name, obj in vars(module).items():
        if (
            inspect.isclass(obj)
            and obj.__module__ == module.__name__
            and issubclass(obj, BaseException)
            and not issubclass(obj, KflowError)
        ):
            bases = ", ".join(b.__name__ for b in obj.__bases__)
            offenders.append(f"{module.__name__}.{name}({bases})")
print(json.dumps({"modules": modules, "failed": failed, "offenders": sorted(offenders)}))
"""


def walk() -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", WALK], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_every_exception_class_derives_from_kflow_error() -> None:
    found = walk()
    modules = found["modules"]
    assert isinstance(modules, list)
    # the walk really covers the packages (a broken walk must not pass by finding nothing)
    for expected in ("kflow.bus.codec", "kflow.api.problems", "kflow.projections.runner"):
        assert expected in modules
    assert found["failed"] == {}
    offenders = found["offenders"]
    assert offenders == [], "exception classes outside KflowError:\n" + "\n".join(
        f"  {o}" for o in offenders
    )
