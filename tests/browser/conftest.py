"""Real-browser fixtures: the app on a real port, Debian's Chromium driven by Playwright.

* ``serve_app(app)`` runs the app with uvicorn in a background thread (lifespan on, so the pool
  and its refresher open as in production) and yields its base URL once ``/healthz`` answers;
  ``serve_static(directory)`` serves plain files on a second origin, for widget host pages.
* ``browser`` is one headless Chromium per test module, started from ``/usr/bin/chromium`` (never
  a downloaded build); the tests skip, saying how to install it, when it or Playwright is absent.
* ``page`` is a fresh context and page per test. Errors the page logs to its console fail the
  test, unless the test expects them (``console.allow(...)``); a screenshot named after the test
  is saved in ``test-artifacts/browser/`` whatever the outcome.
* ``claude_app_factory`` and ``extractive_app_factory`` build apps whose pool holds the sample
  corpus: the first answers through the real SDK against the fake Anthropic server, the second
  without a key.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI

from indexing.bulk import bulk_ingest
from service.app import create_app
from service.pool import open_pool
from service.settings import Settings
from tests.fakes.anthropic_server import FakeAnthropic
from tests.servers import free_port, serve_app, serve_static

__all__ = ["free_port", "screenshot", "serve_app", "serve_static"]

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


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium for one test module. Not for the session: Playwright's sync API
    keeps an event loop running in this thread while it is open, and tests elsewhere that run
    a loop of their own (``anyio.run``) would then fail."""
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
