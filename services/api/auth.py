"""Bearer API-key authentication and scope checks as FastAPI dependencies."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request

from kflow.api.apikeys import (
    LOOKUP_SQL,
    Principal,
    Scope,
    hash_token,
    parse_key_id,
    principal_from_row,
)
from kflow.api.problems import Problem
from kflow.api.resources import ApiResources

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kflow"'}


def resources(request: Request) -> ApiResources:
    """The API's live connections (set at startup)."""
    res: ApiResources = request.app.state.resources
    return res


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", "Unauthorized", detail, headers=_CHALLENGE)


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer <token>``; 401 when there is none."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized(
            "send 'Authorization: Bearer <api key>' (create one with kflow apikey create)"
        )
    return token.strip()


async def authenticate(request: Request) -> Principal:
    """The caller's key, checked against its stored hash; 401 when missing or wrong."""
    return await principal_for_token(resources(request), bearer_token(request))


async def principal_for_token(res: ApiResources, token: str) -> Principal:
    """The key ``token`` proves, checked against its stored hash (cached); 401 otherwise."""
    key_id = parse_key_id(token)
    if key_id is None:
        raise _unauthorized("the bearer token is not a kflow API key")
    digest = hash_token(token)
    now = time.monotonic()
    cached = res.keys.get(digest, now)
    if cached is not None:
        return cached
    generation = res.keys.generation
    async with res.db() as conn:
        row = await (await conn.execute(LOOKUP_SQL, (key_id,))).fetchone()
    principal = principal_from_row(row, token) if row is not None else None
    if principal is None:
        raise _unauthorized("unknown or revoked API key")
    res.keys.put(digest, principal, now, generation)
    return principal


def require(scope: Scope) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that authenticates and demands ``scope`` (403 without it)."""

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        if not principal.allows(scope):
            raise Problem(
                403,
                "forbidden",
                "Forbidden",
                f"this API key lacks the '{scope}' scope; create a key with --scope {scope}",
            )
        return principal

    return dependency
