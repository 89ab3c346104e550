"""Which web pages may call the service from another origin (CORS).

Requests with no ``Origin`` (curl, other servers, the widget's own ``<script>`` tag) and
requests from the service's own origin (the chat page) pass untouched. A page elsewhere, such as
an intranet page embedding the widget, may call the API only when its origin is listed in
``KPOOL_CORS_ORIGINS`` or is one a live widget key is bound to (``kpool keys create --role
widget --origin ...``; read at most every few seconds). Every other cross-origin request is
refused with 403 before it reaches a route: a preflight, and also a "simple" request the
browser sends without one, so a cross-origin form post cannot run a question and spend tokens.

Same-origin means the ``Origin`` equals the request's scheme and ``Host``. Behind a proxy that
terminates TLS, let uvicorn trust its ``X-Forwarded-Proto`` (``--forwarded-allow-ips``) or list
the public origin in ``KPOOL_CORS_ORIGINS``.

No credentials mode: the widget's key travels in ``Authorization``, never in a cookie.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import error_body
from service.settings import Settings, normalise_origin

ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, X-API-Key, Content-Type, Accept, Last-Event-ID"
EXPOSE_HEADERS = "Retry-After, X-Request-Id"
MAX_AGE_SECONDS = 600
#: How long the widget keys' origins are remembered between reads of the key table.
KEY_ORIGINS_TTL_SECONDS = 2.0


def install(app: FastAPI, settings: Settings) -> None:
    """Guard the app with the origin policy: ``settings.cors_origins`` and the origins of the
    live widget keys."""

    def widget_origins() -> Iterable[str]:
        keys = getattr(app.state, "keys", None)  # set when the app starts
        return keys.widget_origins() if keys is not None else ()

    app.add_middleware(OriginPolicy, allowed=settings.cors_origins, more=widget_origins)


class OriginPolicy:
    """Pure ASGI middleware: it only adds headers to a response's start message and passes
    the body on as it comes, so streamed answers stay streamed (``BaseHTTPMiddleware`` would
    not guarantee that)."""

    def __init__(
        self,
        app: ASGIApp,
        allowed: Iterable[str],
        more: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.app = app
        self.allowed = frozenset(allowed)
        self._more = more
        self._more_cached: tuple[float, frozenset[str]] = (-1.0, frozenset())

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
            normalised = normalise_origin(origin)
        except ValueError:  # "null" (sandboxed frames, file: pages) and other non-origins
            return False
        return normalised in self.allowed or normalised in self._more_origins()

    def _more_origins(self) -> frozenset[str]:
        expires, origins = self._more_cached
        now = time.monotonic()
        if now >= expires:
            origins = frozenset(self._more())
            self._more_cached = (now + KEY_ORIGINS_TTL_SECONDS, origins)
        return origins


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
        f"to allow them, add their origin to KPOOL_CORS_ORIGINS or to a widget key"
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
