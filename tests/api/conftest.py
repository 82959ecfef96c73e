"""The API tests reuse the read-side fixtures: an isolated schema, topics and Redis prefix,
the real API under uvicorn, projectors on threads, API keys."""

from __future__ import annotations

from tests.readside.conftest import (  # noqa: F401  (fixtures)
    api,
    make_key,
    readside,
    start_projector,
)
