"""``python -m kflow.projections postgres|redis``: one projector process (settings from KFLOW_*)."""

from __future__ import annotations

import logging
import sys

from kflow.projections.service import Target, run_projector


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in {t.value for t in Target}:
        print("usage: python -m kflow.projections postgres|redis", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_projector(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
