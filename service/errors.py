"""Turning the pool's exceptions into HTTP answers, in one place.

Every error body is ``{"error": {"type": ..., "message": ...}}``; messages are the exceptions'
own (written to be shown), never a stack trace, a key or document text.
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from indexing import errors

log = logging.getLogger(__name__)

STATUS: dict[type[errors.PoolError], int] = {
    errors.InvalidInput: 400,
    errors.DocumentNotFound: 404,
    errors.ConversationNotFound: 404,
    errors.KeyNotFound: 404,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.RateLimited: 429,
    errors.FileTooLarge: 413,
    errors.UnsupportedFormat: 415,
    errors.CorruptFile: 422,
    errors.EmptyDocument: 422,
    errors.Conflict: 409,
    errors.IndexParamsMismatch: 503,
    errors.StoreUnavailable: 503,
    errors.ConfigurationError: 500,
    errors.UpstreamAuthError: 502,
    errors.RemoteFileMissing: 502,
    errors.UpstreamUnavailable: 503,
    errors.UpstreamTimeout: 504,
    errors.UpstreamError: 502,
}


def status_for(exc: errors.PoolError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


class ErrorDetail(BaseModel):
    type: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


_MEANINGS = {
    400: "Malformed request (the body is not what the endpoint reads).",
    401: "No API key, or an unknown or revoked one, while the service has keys.",
    403: "The key's role or origin does not allow this request.",
    404: "No such resource (or none the caller may see).",
    409: "Another change to the same document got there first; try again.",
    413: "Too large; the message names the limit.",
    415: "Not a supported format, or not the format declared.",
    422: "A field is invalid; the message names it.",
    429: "Too many requests or upstream tokens for now; see Retry-After.",
    502: "Anthropic refused the request or the server's credentials.",
    503: "Anthropic is overloaded or unreachable; see Retry-After.",
    504: "Anthropic did not answer in time.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting these error statuses with the error body."""
    return {code: {"model": ErrorBody, "description": _MEANINGS[code]} for code in codes}


#: What any authenticated API endpoint may answer besides its own result.
API_ERRORS = error_responses(400, 401, 403, 422, 429)


def error_body(kind: str, message: str, **extra: object) -> dict[str, object]:
    return {"error": {"type": kind, "message": message, **extra}}


async def _pool_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.PoolError)
    headers = {}
    if isinstance(exc, errors.UpstreamUnavailable | errors.RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after or 5)))
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="kpool"'
    return JSONResponse(error_body(exc.kind, str(exc)), status_for(exc), headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()]
    first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return JSONResponse(error_body("invalid_request", message, details=problems), 422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = "not_found" if exc.status_code == 404 else HTTPStatus(exc.status_code).phrase
    kind = kind.lower().replace(" ", "_")
    return JSONResponse(
        error_body(kind, str(exc.detail)), exc.status_code, headers=exc.headers or None
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "the server hit an unexpected error; see its log"), 500
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.PoolError, _pool_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
