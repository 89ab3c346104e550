"""What every request's text must be before a route sees it.

PostgreSQL refuses NUL in text, and a lone surrogate cannot be encoded for it at all, so a
question, an id or a name holding either would fail only when written, after the work it
records (an answer, its audit entry) was done. Refused at the edge instead: ``Text`` for the
fields of a JSON body, ``RefuseNulInUrl`` for paths and query strings.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_body


def storable_text(value: str) -> str:
    """``value`` unchanged, or ``ValueError`` naming the character no store can keep."""
    if "\x00" in value:
        raise ValueError("contains a NUL character (U+0000)")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode (a lone surrogate)") from None
    return value


#: A string field of a request body that will be stored or looked up.
Text = Annotated[str, AfterValidator(storable_text)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is blank")  # the Messages API refuses a text block of whitespace
    return value


#: A question: text as ``Text``, with something in it besides whitespace.
QuestionText = Annotated[str, AfterValidator(storable_text), AfterValidator(_not_blank)]


class RefuseNulInUrl:
    """Answer 400 to a request whose path or query string holds a NUL (``%00``): no id,
    name or parameter of this API has one, and a lookup with it would fail in PostgreSQL."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _holds_nul(scope):
            message = "the request URL contains a NUL character (%00)"
            await JSONResponse(error_body("invalid_request", message), 400)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _holds_nul(scope: Scope) -> bool:
    query = bytes(scope.get("query_string", b""))
    return "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query
