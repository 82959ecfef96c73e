"""Pretty JSON for pages: indented, and cut at a size so one huge value cannot bloat a page."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SHOWN_CHARS = 2_000


@dataclass(frozen=True, slots=True)
class Pretty:
    """The indented text (maybe cut) and whether it was cut."""

    text: str
    truncated: bool
    size: int


def pretty(value: Any, limit: int = SHOWN_CHARS) -> Pretty:
    """``value`` as indented JSON, cut to ``limit`` characters."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return Pretty(text, False, len(text))
    return Pretty(text[:limit], True, len(text))
