"""Real-browser fixtures: the app on a real port, Debian's Chromium driven by Playwright.

* ``serve_app(app)`` runs the app with uvicorn in a background thread (lifespan on, so the pool
  and its refresher open as in production) and yields its base URL once ``/healthz`` answers;
  ``serve_static(directory)`` serves plain files on a second origin, for widget host pages.
* ``browser`` is one headless Chromium for the session, started from ``/usr/bin/chromium`` (never
  a downloaded build); the tests skip, saying how to install it, when it or Playwright is absent.
* ``page`` is a fresh context and page per test. Errors the page logs to its console fail the
  test, unless the test expects them (``console.allow(...)``); a screenshot named after the test
  is saved in ``test-artifacts/browser/`` whatever the outcome.
* ``claude_app_factory`` and ``extractive_app_factory`` build apps whose pool holds the sample
  corpus: the first answers through the real SDK against the fake Anthropic server, the second
  without a key.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from indexing.bulk import bulk_ingest
from service.app import create_app
from service.pool import open_pool
from service.settings import Settings
from tests.fakes.anthropic_server import FakeAnthropic

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample" / "corpus"
MANIFEST = ROOT / "sample" / "manifest.csv"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
#: Headless and quiet: without the background-networking flags Chromium keeps trying to reach
#: Google's services, which on a closed network only costs time.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
HOW_TO_INSTALL = (
    "install the browser test tools: `pip install -e '.[dev]'` (Playwright) and "
    "`sudo bash scripts/ensure_chromium.sh` (Debian's chromium at /usr/bin/chromium)"
)

AppFactory = Callable[..., FastAPI]


# ------------------------------------------------------------------------------------ servers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening_socket(port: int | None) -> socket.socket:
    # IPPROTO_TCP so asyncio sets TCP_NODELAY (see tests/fakes/anthropic_server.py).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port or 0))
    return sock


@contextmanager
def serve_app(app: FastAPI, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yields ``http://127.0.0.1:PORT``
    once ``/healthz`` answers and stops the server (running the lifespan's exit) afterwards."""
    config = uvicorn.Config(
        app,
        lifespan="on",
        # h11, no websockets and plain asyncio: no optional C extensions, and none of the
        # deprecation warnings websockets raises on import (pytest turns warnings into errors).
        http="h11",
        ws="none",
        loop="asyncio",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    sock = _listening_socket(port)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="kpool-app", daemon=True
    )
    thread.start()
    try:
        _wait_until_healthy(base, server, thread)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("the app server did not stop")


def _wait_until_healthy(base: str, server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the app server stopped while starting (see the log above)")
        if server.started:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
        time.sleep(0.02)
    raise RuntimeError(f"the app server at {base} did not answer /healthz")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_static(directory: Path, port: int | None = None) -> Iterator[str]:
    """Serve the files under ``directory`` on 127.0.0.1 (a second origin, e.g. a page that
    embeds the widget); yields ``http://127.0.0.1:PORT``."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port or 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="static-files", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# ------------------------------------------------------------------------------------ browser


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save the page (or only what the viewport shows) as ``test-artifacts/browser/<name>.png``
    and return the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{_safe_name(name)}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "page"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium for the whole session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"Playwright is not installed; {HOW_TO_INSTALL}")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing; {HOW_TO_INSTALL}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        yield chromium
        chromium.close()


@dataclass
class BrowserConsole:
    """Errors the page reported (console errors and uncaught exceptions) during a test."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, *patterns: str) -> None:
        """Expect console errors matching these regular expressions (e.g. a 503 the test
        provoked: browsers log every failed fetch)."""
        self.allowed.extend(re.compile(p) for p in patterns)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")


@pytest.fixture
def console() -> BrowserConsole:
    """The current page's console errors; call ``console.allow(pattern)`` for expected ones."""
    return BrowserConsole()


@pytest.fixture
def page(
    browser: Browser, console: BrowserConsole, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A fresh page in its own context; screenshotted after the test, whatever its outcome."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    tab.on("console", console.on_console)
    tab.on("pageerror", console.on_page_error)
    try:
        yield tab
    finally:
        try:
            screenshot(tab, request.node.name)
        finally:
            context.close()
    unexpected = console.unexpected()
    if unexpected:
        pytest.fail("the page reported errors:\n" + "\n".join(unexpected))


# ---------------------------------------------------------------------------------- the apps


@pytest.fixture(scope="session")
def extractive_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local-backend pool home holding the sample corpus, built once and copied per app."""
    home = tmp_path_factory.mktemp("browser-sample") / "home"
    settings = Settings(home=home, files_backend="local")
    pool = open_pool(settings, load_index=False)
    try:
        report = bulk_ingest(pool, [SAMPLE], manifest=MANIFEST)
    finally:
        pool.close()
    assert report.ok, report.as_dict()
    return home


@pytest.fixture
def extractive_app_factory(tmp_path: Path, extractive_home: Path) -> AppFactory:
    """``factory(**settings) -> FastAPI``: no API key, local files, extractive answers."""
    homes = _numbered(tmp_path, "extractive")

    def factory(**overrides: Any) -> FastAPI:
        home = next(homes)
        shutil.copytree(extractive_home, home)
        values: dict[str, Any] = {"home": home, "files_backend": "local", "refresh_seconds": 0.2}
        return create_app(Settings(**{**values, **overrides}))

    return factory


@pytest.fixture
def claude_app_factory(tmp_path: Path, fake_anthropic: FakeAnthropic) -> AppFactory:
    """``factory(**settings) -> FastAPI``: the sample corpus uploaded to the fake Anthropic
    Files API (reset for every test, so ingested per app), answering through the real SDK."""
    homes = _numbered(tmp_path, "claude")

    def factory(**overrides: Any) -> FastAPI:
        values: dict[str, Any] = {
            "home": next(homes),
            "files_backend": "anthropic",
            "anthropic_api_key": fake_anthropic.api_key,
            "anthropic_base_url": fake_anthropic.base_url,
            "anthropic_timeout": 5.0,
            "anthropic_max_retries": 1,
            "refresh_seconds": 0.2,
        }
        settings = Settings(**{**values, **overrides})
        pool = open_pool(settings, load_index=False)
        try:
            report = bulk_ingest(pool, [SAMPLE], manifest=MANIFEST)
        finally:
            pool.close()
        assert report.ok, report.as_dict()
        return create_app(settings)

    return factory


def _numbered(tmp_path: Path, prefix: str) -> Iterator[Path]:
    number = 0
    while True:
        number += 1
        yield tmp_path / f"{prefix}-{number}" / "home"
