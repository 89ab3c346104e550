"""The chat and admin pages, their assets and the widget script, as files over HTTP: types,
security headers, caching, and nothing served from outside ``service/static``."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

PAGES = ["/", "/admin"]
CSP_DIRECTIVES = [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "frame-ancestors 'self'",
    "base-uri 'none'",
]


@pytest.fixture
def web(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


class _PageParts(HTMLParser):
    """The tags of a page, and what would break a strict CSP: inline script, style, handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self._tag = tag
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script" and not values.get("src"):
            self.inline.append("<script> without src")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.inline.append(f"<{tag} {name}=...>")
            if name in ("src", "href") and value and value.startswith("/static/"):
                self.urls.append(value)

    def handle_data(self, data: str) -> None:
        if self._tag == "script" and data.strip():
            self.inline.append("inline script text")


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_html_with_strict_security_headers(web: TestClient, path: str) -> None:
    response = web.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    for directive in CSP_DIRECTIVES:
        assert directive in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


@pytest.mark.parametrize("path", PAGES)
def test_pages_hold_no_inline_script_or_style_and_their_assets_exist(
    web: TestClient, path: str
) -> None:
    parts = _PageParts()
    parts.feed(web.get(path).text)
    assert parts.inline == []
    assert parts.urls
    for url in parts.urls:
        assert web.get(url).status_code == 200, url


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("chat.js", "text/javascript; charset=utf-8"),
        ("admin.js", "text/javascript; charset=utf-8"),
        ("common.js", "text/javascript; charset=utf-8"),
        ("chat.css", "text/css; charset=utf-8"),
        ("base.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_assets_are_served_with_their_types(web: TestClient, name: str, content_type: str) -> None:
    response = web.get(f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"


def test_an_unchanged_asset_is_revalidated_without_its_body(web: TestClient) -> None:
    first = web.get("/static/chat.js")
    again = web.get("/static/chat.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    changed = web.get("/static/chat.js", headers={"If-None-Match": '"something-else"'})
    assert changed.status_code == 200 and changed.content == first.content


def test_an_unknown_asset_is_a_json_404(web: TestClient) -> None:
    response = web.get("/static/missing.js")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/static/../app.py",
        "/static/..%2Fapp.py",
        "/static/%2e%2e%2fapp.py",
        "/static/..%5Capp.py",
        "/static/%2e%2e",
        "/static/.hidden.js",
        "/static/index.html",
        "/static/widget.js%00.css",
        "/static/routes%2Fweb.py",
        "/static/__init__.py",
    ],
)
def test_nothing_outside_the_assets_is_served(web: TestClient, path: str) -> None:
    response = web.get(path)
    # A NUL in any URL is refused before routing.
    assert response.status_code == (400 if "%00" in path else 404)
    assert response.headers["content-type"] == "application/json"
    assert "import" not in response.text


def test_the_widget_script_may_be_loaded_by_other_origins(web: TestClient) -> None:
    response = web.get("/widget.js")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"
    assert response.headers["x-content-type-options"] == "nosniff"
    cache = response.headers["cache-control"]
    assert cache.startswith("public, max-age=") and 0 < int(cache.split("=")[1]) <= 3600


def test_pages_stay_out_of_the_api_schema(web: TestClient) -> None:
    paths = web.get("/openapi.json").json()["paths"]
    assert not {"/", "/admin", "/static/{name}", "/widget.js"} & set(paths)
