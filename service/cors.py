"""Which web pages may call the service from another origin (CORS).

Requests with no ``Origin`` (curl, other servers, the widget's own ``<script>`` tag) and
requests from the service's own origin (the chat page) pass untouched. A page elsewhere, such as
an intranet page embedding the widget, may call the API only when its origin is listed in
``KPOOL_CORS_ORIGINS``. Every other cross-origin request is refused with 403 before it reaches a
route: a preflight, and also a "simple" request the browser sends without one, so a cross-origin
form post cannot run a question and spend tokens.

Same-origin means the ``Origin`` equals the request's scheme and ``Host``. Behind a proxy that
terminates TLS, let uvicorn trust its ``X-Forwarded-Proto`` (``--forwarded-allow-ips``) or list
the public origin in ``KPOOL_CORS_ORIGINS``.

No credentials mode: the widget's key travels in ``Authorization``, never in a cookie.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_body
from service.settings import Settings, normalise_origin

ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Accept, Last-Event-ID"
EXPOSE_HEADERS = "Retry-After, X-Request-Id"
MAX_AGE_SECONDS = 600


def install(app: FastAPI, settings: Settings) -> None:
    """Guard the app with the origin policy of ``settings.cors_origins``."""
    app.add_middleware(OriginPolicy, allowed=settings.cors_origins)


class OriginPolicy:
    """Pure ASGI middleware: it only adds headers to a response's start message and passes
    the body on as it comes, so streamed answers stay streamed (``BaseHTTPMiddleware`` would
    not guarantee that)."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or is_same_origin(origin, scope["scheme"], headers.get("host")):
            await self.app(scope, receive, send)
            return
        if not self.allows(origin):
            response = refusal(origin)
        elif scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            response = preflight(origin)
        else:
            await self.app(scope, receive, _adding_cors_headers(send, origin))
            return
        await response(scope, receive, send)

    def allows(self, origin: str) -> bool:
        try:
            return normalise_origin(origin) in self.allowed
        except ValueError:  # "null" (sandboxed frames, file: pages) and other non-origins
            return False


def is_same_origin(origin: str, scheme: str, host: str | None) -> bool:
    """Whether ``origin`` is the origin the request was sent to (default ports ignored)."""
    if not host:
        return False
    try:
        return normalise_origin(origin) == normalise_origin(f"{scheme}://{host}")
    except ValueError:
        return False


def preflight(origin: str) -> Response:
    """The answer to an allowed origin's preflight; the browser checks method and headers."""
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": ALLOW_HEADERS,
            "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
            "Vary": "Origin",
        },
    )


def refusal(origin: str) -> Response:
    """403 for an origin that is not allowed.

    It carries ``Access-Control-Allow-Origin`` so that the refused page can read why (the
    widget shows it); the body is only this error, so nothing is disclosed. A refused preflight
    stays a failed preflight whatever its headers: the browser needs a 2xx there.
    """
    shown = origin[:200]
    message = (
        f"pages on {shown} may not call this service; "
        f"to allow them, add their origin to KPOOL_CORS_ORIGINS"
    )
    return JSONResponse(
        error_body("origin_not_allowed", message),
        status_code=403,
        headers={"Access-Control-Allow-Origin": origin, "Vary": "Origin"},
    )


def _adding_cors_headers(send: Send, origin: str) -> Send:
    async def send_with_cors_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
            headers.add_vary_header("Origin")
        await send(message)

    return send_with_cors_headers
