"""``python -m kflow.projections postgres|redis [--no-dead-letters]``: one projector process.

Settings come from ``KFLOW_*``; ``--no-dead-letters`` is for rebuild workers, which replay
records the live projector already dead-lettered.
"""

from __future__ import annotations

import logging
import sys

from kflow.projections.service import Target, run_projector


def main(argv: list[str]) -> int:
    flags = {"--no-dead-letters"}
    targets = [a for a in argv if a not in flags]
    if len(targets) != 1 or targets[0] not in {t.value for t in Target}:
        print(
            "usage: python -m kflow.projections postgres|redis [--no-dead-letters]", file=sys.stderr
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_projector(targets[0], dead_letters="--no-dead-letters" not in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
