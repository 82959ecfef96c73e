"""JSON response bodies written by kflow's one serialiser (``kflow.core.jsondoc.dumps``).

Documents mean what Python's ``json`` makes of them (ADR 0026): integers over 64 bits
stay exact and a lone surrogate is written as its ``\\ud800`` escape, where pydantic's
own JSON writer fails on it (it cannot encode it as UTF-8).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from kflow.core.jsondoc import dumps_bytes


class DocumentResponse(JSONResponse):
    """``application/json`` rendered with :func:`kflow.core.jsondoc.dumps_bytes`."""

    def render(self, content: Any) -> bytes:
        return dumps_bytes(content)
