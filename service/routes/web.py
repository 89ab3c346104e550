"""The chat page (``/``), the admin page (``/admin``), their assets (``/static/{name}``) and the
embeddable widget (``/widget.js``): plain files from ``service/static``, no build step.

Pages carry a strict Content-Security-Policy: scripts, styles and requests from this origin
only, no inline script or style (the pages have none), framed by this origin only. Files are
sent with an ETag and ``no-cache``, so browsers revalidate and a new version shows at once,
except the widget, which other origins' pages load: a short public cache and a
``Cross-Origin-Resource-Policy`` that lets them.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources

from fastapi import APIRouter, HTTPException, Request, Response

router = APIRouter(tags=["web"], include_in_schema=False)

STATIC = resources.files("service") / "static"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
        "base-uri 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
WIDGET_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Cache-Control": "public, max-age=300",
}
HTML = "text/html; charset=utf-8"
JAVASCRIPT = "text/javascript; charset=utf-8"
#: What ``/static/{name}`` serves, by suffix; pages are served at their own paths only.
ASSET_TYPES = {
    ".js": JAVASCRIPT,
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: One plain file name: no separators, no leading dot, so nothing outside ``static/``.
ASSET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*(\.[a-z0-9]+)")


@router.get("/")
async def chat_page(request: Request) -> Response:
    """The chat page: ask questions, read cited answers."""
    return _static_file(request, "index.html", HTML, PAGE_HEADERS)


@router.get("/admin")
async def admin_page(request: Request) -> Response:
    """The admin page: list, upload and delete documents."""
    return _static_file(request, "admin.html", HTML, PAGE_HEADERS)


@router.get("/static/{name}")
async def asset(name: str, request: Request) -> Response:
    """A script, style sheet or icon of the pages."""
    match = ASSET_NAME.fullmatch(name)
    if match is None or match.group(1) not in ASSET_TYPES:
        raise HTTPException(404, f"no asset named {name!r}")
    return _static_file(request, name, ASSET_TYPES[match.group(1)], ASSET_HEADERS)


@router.get("/widget.js")
async def widget(request: Request) -> Response:
    """The embeddable chat widget, loaded by a script tag on other sites' pages."""
    return _static_file(request, "widget.js", JAVASCRIPT, WIDGET_HEADERS)


def _static_file(request: Request, name: str, media_type: str, headers: dict[str, str]) -> Response:
    """``static/<name>`` with its ETag, or 304 when the browser already has this version."""
    path = STATIC / name
    if not path.is_file():
        raise HTTPException(404, f"no asset named {name!r}")
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {**headers, "ETag": etag}
    if etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
