"""The embeddable widget in a real browser, on pages served from other origins.

Each test serves the app on one port and a host page on another (a second origin) whose only
link to the service is the widget's one ``<script>`` tag. The host page carries hostile CSS, so
the tests also show the Shadow DOM keeping the two apart in both directions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.browser.conftest import (
    HOW_TO_INSTALL,
    free_port,
    screenshot,
    serve_app,
    serve_static,
)
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.messages import FakeMessages

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page, Request

    from tests.browser.conftest import BrowserConsole

from service.keys import ApiKey, hash_secret
from service.pool import open_pool
from service.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.browser]

expect = pytest.importorskip("playwright.sync_api", reason=HOW_TO_INSTALL).expect

KEY = "test-widget-key"
TITLE = "Ask our documents"
NOT_ALLOWED = "This site is not allowed to use the assistant."
CARRY_OVER = "How many days of annual leave can I carry over into next year?"

# Rules a careless intranet stylesheet might have, and classes the widget also uses: none of it
# may reach the widget, and none of the widget's rules may reach these elements. The page's
# Content-Security-Policy is strict too: no inline style or script but its own (by nonce), so a
# widget that needed either would break here (and Chromium would log the violation).
HOST_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
script-src {service} 'nonce-host'; style-src 'nonce-host'; connect-src {service}; img-src data:">
<title>Intranet home</title>
<link rel="icon" href="data:,">
<style nonce="host">
  * {{ font-family: serif !important; color: red !important; }}
  button {{ display: none !important; }}
  div {{ border: 5px solid lime !important; }}
  .panel {{ background: rgb(255, 255, 224); }}
</style>
</head>
<body>
<h1 class="title">Welcome to the intranet</h1>
<div class="panel" id="host-panel"><p class="note" id="host-note">Canteen menu</p></div>
<button type="button" id="host-button">Host button</button>
{embed}
</body>
</html>
"""

#: The one line a page adds; ``{service}`` is the service's base URL.
EMBED = f'<script src="{{service}}/widget.js" data-key="{KEY}" async></script>'

AppFactory = Callable[..., Any]


@contextmanager
def embedding_site(
    app_factory: AppFactory, directory: Path, *, allowed: bool = True, embed: str = EMBED
) -> Iterator[tuple[str, str]]:
    """The app and a host page embedding its widget, on two origins; yields both base URLs.
    The widget key is bound to the host page's origin when ``allowed``, otherwise to another."""
    site_port = free_port()
    listed_port = site_port if allowed else free_port()
    app = app_factory()
    add_widget_key(app.state.settings, KEY, f"http://127.0.0.1:{listed_port}")
    directory.mkdir(parents=True, exist_ok=True)
    with serve_app(app) as service:
        page_html = HOST_PAGE.format(service=service, embed=embed.format(service=service))
        (directory / "index.html").write_text(page_html, encoding="utf-8")
        with serve_static(directory, port=site_port) as site:
            yield service, site


def add_widget_key(settings: Settings, secret: str, origin: str) -> None:
    """A widget key with a known secret (``kpool keys create`` would make a random one)."""
    pool = open_pool(settings, load_index=False)
    try:
        with pool.store.writing() as session:
            session.add(
                ApiKey(
                    id="key_widgettest",
                    role="widget",
                    origins=[origin],
                    secret_hash=hash_secret(secret),
                    prefix=secret[:9],
                )
            )
    finally:
        pool.close()


def widget(page: Page) -> Locator:
    return page.locator("kpool-widget")


def open_panel(page: Page, title: str = TITLE) -> Locator:
    page.get_by_role("button", name=title).click()
    panel = page.get_by_role("dialog", name=title)
    expect(panel).to_be_visible()
    return panel


def ask(page: Page, question: str) -> Request:
    """Type ``question`` and press Enter; returns the ``POST /v1/ask`` the widget sent."""
    box = page.get_by_role("textbox", name="Your question")
    box.fill(question)
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/ask")) as sent:
        box.press("Enter")
    return sent.value


def last_turn(page: Page) -> Locator:
    return widget(page).locator(".turn").last


def wait_for_answer(page: Page) -> Locator:
    """The last turn, once its answer has sources and the widget is ready for another."""
    turn = last_turn(page)
    expect(turn.locator(".sources li").first).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    return turn


def style(locator: Locator, prop: str) -> str:
    value: str = locator.evaluate("(el, prop) => getComputedStyle(el)[prop]", prop)
    return value


def body_of(request: Request) -> dict[str, Any]:
    body = request.post_data_json
    assert isinstance(body, dict)
    return body


def done_event(request: Request) -> dict[str, Any]:
    """The ``done`` event's answer from the streamed response to ``request``."""
    response = request.response()
    assert response is not None
    frames = response.text().split("\n\n")
    for frame in frames:
        lines = frame.splitlines()
        if "event: done" in lines:
            data = next(line for line in lines if line.startswith("data: "))
            answer: dict[str, Any] = json.loads(data.removeprefix("data: "))
            return answer
    raise AssertionError("the stream had no done event")


# -------------------------------------------------------------------------------------- tests


def test_the_widget_answers_on_an_allowed_origin_despite_hostile_page_css(
    page: Page, claude_app_factory: AppFactory, tmp_path: Path
) -> None:
    with embedding_site(claude_app_factory, tmp_path / "site") as (_service, site):
        page.goto(f"{site}/index.html")
        launcher = page.get_by_role("button", name=TITLE)
        expect(launcher).to_be_visible()
        expect(launcher).to_have_attribute("aria-expanded", "false")
        panel = open_panel(page)
        expect(launcher).to_have_attribute("aria-expanded", "true")
        expect(page.get_by_role("textbox", name="Your question")).to_be_focused()

        with page.expect_response(lambda r: r.url.endswith("/v1/ask")) as answered:
            sent = ask(page, CARRY_OVER)
        turn = wait_for_answer(page)
        footnote = turn.locator(".sources li", has_text="of unused leave into the next leave year")
        expect(footnote.locator(".doc-title")).to_have_text("Annual Leave Policy")
        expect(turn.locator(".answer-text")).to_contain_text("carry")
        expect(turn.locator(".answer-text .ref").first).to_be_visible()
        screenshot(page, "widget-allowed-origin-answer")

        assert sent.all_headers()["authorization"] == f"Bearer {KEY}"
        assert body_of(sent) == {"question": CARRY_OVER, "stream": True}
        response = answered.value
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["access-control-allow-origin"] == site

        # The page's hostile rules do not reach into the widget ...
        answer_text = turn.locator(".answer-text")
        assert "serif" not in style(answer_text, "fontFamily").split(",")[0]
        assert style(answer_text, "color") != "rgb(255, 0, 0)"
        assert style(panel, "borderTopWidth") != "5px"
        assert style(widget(page).locator(".send"), "display") != "none"
        # ... and the widget's rules (.panel, .note, .title, button) do not reach the page.
        assert style(page.locator("#host-panel"), "position") == "static"
        assert style(page.locator("#host-panel"), "backgroundColor") == "rgb(255, 255, 224)"
        assert style(page.locator("#host-panel"), "borderTopColor") == "rgb(0, 255, 0)"
        assert style(page.locator("#host-note"), "color") == "rgb(255, 0, 0)"
        assert style(page.locator("h1.title"), "fontFamily") == "serif"
        assert style(page.locator("#host-button"), "display") == "none"


def test_a_follow_up_through_the_widget_continues_the_conversation(
    page: Page, claude_app_factory: AppFactory, tmp_path: Path
) -> None:
    with embedding_site(claude_app_factory, tmp_path / "site") as (service, site):
        page.goto(f"{site}/index.html")
        open_panel(page)
        first = ask(page, CARRY_OVER)
        wait_for_answer(page)
        conversation_id = done_event(first)["conversation_id"]

        follow_up = ask(page, "And how much notice do I need to give to book leave?")
        expect(widget(page).locator(".turn")).to_have_count(2)
        wait_for_answer(page)
        screenshot(page, "widget-follow-up")
        assert body_of(follow_up)["conversation_id"] == conversation_id
        as_widget = {"Authorization": f"Bearer {KEY}", "Origin": site}
        url = f"{service}/v1/conversations/{conversation_id}"
        turns = httpx.get(url, headers=as_widget).json()["turns"]
        assert [turn["question"] for turn in turns] == [
            CARRY_OVER,
            "And how much notice do I need to give to book leave?",
        ]

        page.get_by_role("button", name="New conversation").click()
        expect(widget(page).locator(".turn")).to_have_count(0)
        fresh = ask(page, CARRY_OVER)
        wait_for_answer(page)
        assert "conversation_id" not in body_of(fresh)


def test_a_page_on_an_origin_not_allowed_gets_a_plain_refusal_and_no_answer(
    page: Page,
    claude_app_factory: AppFactory,
    fake_anthropic: FakeAnthropic,
    console: BrowserConsole,
    tmp_path: Path,
) -> None:
    # Chromium logs the refused preflight and the 403 it reads afterwards.
    console.allow(r"blocked by CORS policy", r"Failed to load resource", r"403")
    with embedding_site(claude_app_factory, tmp_path / "site", allowed=False) as (service, site):
        page.goto(f"{site}/index.html")
        open_panel(page)
        expect(widget(page).locator(".problem")).to_have_text(NOT_ALLOWED)
        ask(page, CARRY_OVER)
        turn = last_turn(page)
        expect(turn.locator(".failed")).to_have_text(NOT_ALLOWED)
        expect(turn.locator(".answer-text")).to_be_empty()
        expect(turn.locator(".sources li")).to_have_count(0)
        screenshot(page, "widget-refused-origin")

        preflight = httpx.options(
            f"{service}/v1/ask",
            headers={"Origin": site, "Access-Control-Request-Method": "POST"},
        )
        simple = httpx.post(
            f"{service}/v1/ask",
            content=json.dumps({"question": CARRY_OVER}),
            headers={"Origin": site, "Content-Type": "text/plain"},
        )
    assert preflight.status_code == 403
    assert simple.status_code == 403
    assert simple.json()["error"]["type"] == "origin_not_allowed"
    assert FakeMessages.of(fake_anthropic).bodies() == []


def test_the_widget_notes_extractive_answers_and_is_usable_from_the_keyboard(
    page: Page, extractive_app_factory: AppFactory, tmp_path: Path
) -> None:
    with embedding_site(extractive_app_factory, tmp_path / "site") as (_service, site):
        page.goto(f"{site}/index.html")
        launcher = page.get_by_role("button", name=TITLE)
        launcher.focus()
        page.keyboard.press("Enter")
        expect(widget(page).locator(".note")).to_be_visible()
        expect(widget(page).locator(".note")).to_contain_text("quoted passages")

        box = page.get_by_role("textbox", name="Your question")
        expect(box).to_be_focused()
        page.keyboard.type("How many days of annual leave")
        page.keyboard.press("Shift+Enter")
        page.keyboard.type("can I carry over?")
        expect(box).to_have_value("How many days of annual leave\ncan I carry over?")
        with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/v1/ask")):
            page.keyboard.press("Enter")
        expect(wait_for_answer(page).locator(".sources")).to_contain_text("Annual Leave Policy")
        screenshot(page, "widget-extractive-mode")

        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog", name=TITLE)).to_be_hidden()
        expect(launcher).to_be_focused()
        expect(launcher).to_have_attribute("aria-expanded", "false")


def test_the_panel_fills_a_phone_screen(
    page: Page, extractive_app_factory: AppFactory, tmp_path: Path
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    with embedding_site(extractive_app_factory, tmp_path / "site") as (_service, site):
        page.goto(f"{site}/index.html")
        panel = open_panel(page)
        ask(page, CARRY_OVER)
        wait_for_answer(page)
        box = panel.bounding_box()
        assert box is not None
        assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 390, 844)
        screenshot(page, "widget-phone")
        page.get_by_role("button", name="Close").click()
        expect(page.get_by_role("button", name=TITLE)).to_be_focused()


def test_the_widget_included_twice_adds_one_launcher_and_no_global_names(
    page: Page, extractive_app_factory: AppFactory, tmp_path: Path
) -> None:
    embed = "\n".join(
        [
            '<script nonce="host">',
            "window.namesBefore = Object.getOwnPropertyNames(window);",
            "</script>",
            f'<script src="{{service}}/widget.js" data-key="{KEY}" data-title="HR help"'
            ' data-position="left"></script>',
            f'<script src="{{service}}/widget.js" data-key="{KEY}" data-title="Second copy"'
            " async></script>",
        ]
    )
    with embedding_site(extractive_app_factory, tmp_path / "site", embed=embed) as (_, site):
        page.goto(f"{site}/index.html")
        launcher = page.get_by_role("button", name="HR help")
        expect(launcher).to_be_visible()
        # the async copy has run by the time the page's load event fires
        page.wait_for_load_state("load")
        expect(widget(page)).to_have_count(1)
        expect(page.get_by_role("button", name="Second copy")).to_have_count(0)
        box = launcher.bounding_box()
        assert box is not None and box["x"] < 100
        added = page.evaluate(
            "Object.getOwnPropertyNames(window)"
            ".filter(name => !namesBefore.includes(name) && name !== 'namesBefore')"
        )
        assert added == []
        open_panel(page, "HR help")
        screenshot(page, "widget-left-custom-title")
