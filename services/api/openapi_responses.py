"""The error responses each operation documents in OpenAPI: the ones the API really returns.

Every operation can get the transport-level problems (400 malformed request, 405 method
not allowed on the path, 414/431 request head too large: ``kflow.api.server``); the others
are listed per kind of operation. Bodies follow :class:`ProblemDetails` (RFC 9457).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from kflow.api.problems import PROBLEM_MEDIA_TYPE

Responses = dict[int | str, dict[str, Any]]


class ProblemDetails(BaseModel):
    """An RFC 9457 problem: what went wrong (``detail`` names the field and the fix)."""

    type: str = Field(description="URI of the problem kind")
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str = Field(description="the request path")
    errors: list[dict[str, str]] | None = Field(
        None, description="one ``{field, message}`` per invalid field (422)"
    )
    dependency: str | None = Field(None, description="the service that is down (503)")


_SCHEMA = ProblemDetails.model_json_schema()
_HEADER = {"schema": {"type": "string"}}
_DESCRIPTIONS = {
    400: "malformed request (not HTTP/1.1, a bad cursor, Last-Event-ID or time filter)",
    401: "missing, unknown or revoked API key",
    403: "the key lacks the scope, or names another tenant",
    404: "no such workflow visible to this key (it may not be projected yet)",
    405: "method not allowed on this path (see Allow)",
    409: "the workflow id belongs to another tenant",
    413: "a document over the payload limit",
    414: "URL too long",
    422: "invalid parameter or body (errors lists each field)",
    431: "request headers too large (the detail names the header)",
    503: "a dependency is down; retry after Retry-After seconds",
}
_HEADERS = {
    401: {"WWW-Authenticate": _HEADER},
    405: {"Allow": _HEADER},
    503: {"Retry-After": _HEADER},
}
TRANSPORT = (400, 405, 414, 431)
"""What any operation may answer, before its own code runs."""
READ = (*TRANSPORT, 401, 403, 422, 503)
ONE_WORKFLOW = (*READ, 404)
COMMAND = (*ONE_WORKFLOW, 409, 413)


def problems(*codes: int) -> Responses:
    """OpenAPI ``responses`` for problem answers with the given status codes."""
    out: Responses = {}
    for code in sorted(set(codes)):
        response: dict[str, Any] = {
            "description": _DESCRIPTIONS[code],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": _SCHEMA}},
        }
        if code in _HEADERS:
            response["headers"] = _HEADERS[code]
        out[code] = response
    return out
