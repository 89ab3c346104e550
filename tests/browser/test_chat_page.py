"""The chat page in a real browser: streamed answers with footnotes and sources, follow-ups in
one conversation, extractive mode, failures shown in plain words, the keyboard, a phone."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import httpx
import pytest

from service.keys import Keys
from tests.browser.conftest import HOW_TO_INSTALL, AppFactory, screenshot, serve_app
from tests.fakes.anthropic_server import FakeAnthropic

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from tests.browser.conftest import BrowserConsole

pytestmark = [pytest.mark.slow, pytest.mark.browser]

expect = pytest.importorskip("playwright.sync_api", reason=HOW_TO_INSTALL).expect

LEAVE_QUESTION = "How many days of annual leave can I carry over?"
FOLLOW_UP = "And for part-time staff?"
LEAVE_TITLE = "Annual Leave Policy"
CARRY_OVER = "You may carry up to"
#: Answers streamed slowly enough that the page shows them arriving, frame by frame.
EVENT_GAP = 0.01


def question_box(page: Page) -> Locator:
    return page.get_by_role("textbox", name="Your question")


def ask(page: Page, question: str) -> None:
    box = question_box(page)
    box.fill(question)
    box.press("Enter")


def answer(page: Page, number: int) -> Locator:
    return page.get_by_role("article", name=f"Question {number}").locator(".answer")


def watch_for_partial_answers(page: Page) -> None:
    """Record, on every change of the thread, whether an answer shows text while streaming."""
    page.evaluate(
        """() => {
            const thread = document.getElementById("thread");
            new MutationObserver(() => {
                const answer = thread.querySelector(".answer");
                if (answer && answer.dataset.state === "streaming"
                        && answer.querySelector(".answer-text").textContent.length > 0) {
                    window.sawPartialAnswer = true;
                }
            }).observe(thread, { subtree: true, childList: true, characterData: true });
        }"""
    )


def wait_until_streamed_in(page: Page) -> None:
    """Until an answer has shown text before it was complete."""
    page.wait_for_function("() => window.sawPartialAnswer === true")


def test_an_answer_streams_in_with_footnotes_and_sources_and_a_follow_up_continues_it(
    page: Page, claude_app_factory: AppFactory, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.messages.set_latency(0, between_events=EVENT_GAP)
    with serve_app(claude_app_factory()) as base:
        page.goto(base)
        expect(page.locator("#mode-note")).to_be_hidden()
        watch_for_partial_answers(page)
        ask(page, LEAVE_QUESTION)
        wait_until_streamed_in(page)
        first = answer(page, 1)
        expect(first).to_have_attribute("data-state", "done")
        expect(page.locator("#thread")).to_have_attribute("aria-busy", "false")

        footnote = first.get_by_role("list", name="Cited passages").get_by_role("listitem")
        leave = footnote.filter(has_text=CARRY_OVER)
        expect(leave).to_contain_text(LEAVE_TITLE)
        number = leave.get_attribute("value")
        ref = first.get_by_role("link", name=f"Source {number}: {LEAVE_TITLE}")
        expect(ref).to_have_text(str(number))
        expect(first.locator(".answer-text")).not_to_contain_text(f"[{number}]")

        sources = first.get_by_role("region", name="Sources").get_by_role("listitem")
        expect(sources.first).to_contain_text(LEAVE_TITLE)
        expect(sources.first).to_contain_text(re.compile(r"score \d+\.\d\d"))
        expect(first.locator(".answer-meta")).to_contain_text(
            re.compile(r"claude-sonnet-5-5 · [\d,]+ tokens in")
        )
        ref.click()
        expect(page).to_have_url(re.compile(f"#turn-1-note-{number}$"))
        screenshot(page, "chat-claude-answer")

        with page.expect_request(lambda r: r.url.endswith("/v1/ask")) as follow_up:
            ask(page, FOLLOW_UP)
        second = answer(page, 2)
        expect(second).to_have_attribute("data-state", "done")
        expect(second.get_by_role("list", name="Cited passages")).to_contain_text("Part-time")
        screenshot(page, "chat-claude-follow-up")

        sent = json.loads(follow_up.value.post_data or "{}")
        conversation = httpx.get(f"{base}/v1/conversations/{sent['conversation_id']}").json()
    assert [turn["question"] for turn in conversation["turns"]] == [LEAVE_QUESTION, FOLLOW_UP]
    later = fake_anthropic.messages.bodies()[-1]
    assert [m["role"] for m in later["messages"]] == ["user", "assistant", "user"]
    expect(page.locator(".turn")).to_have_count(2)


def test_extractive_mode_is_announced_and_still_cites(
    page: Page, extractive_app_factory: AppFactory
) -> None:
    with serve_app(extractive_app_factory()) as base:
        page.goto(base)
        expect(page.locator("#mode-note")).to_be_visible()
        expect(page.locator("#mode-note")).to_contain_text("No Anthropic API key")
        ask(page, LEAVE_QUESTION)
        first = answer(page, 1)
        expect(first).to_have_attribute("data-state", "done")
        expect(first.get_by_role("list", name="Cited passages")).to_contain_text(LEAVE_TITLE)
        expect(first.get_by_role("link", name=re.compile(r"^Source 1: "))).to_be_visible()
        expect(first.locator(".answer-meta")).to_have_text("quoted passages, no model")
        screenshot(page, "chat-extractive-answer")


def test_an_upstream_failure_is_a_plain_message_and_the_question_can_be_retried(
    page: Page,
    claude_app_factory: AppFactory,
    fake_anthropic: FakeAnthropic,
    console: BrowserConsole,
) -> None:
    console.allow(r"status of 503")
    with serve_app(claude_app_factory(anthropic_max_retries=0)) as base:
        page.goto(base)
        fake_anthropic.fail_next(1, 529, path_prefix="/v1/messages")
        ask(page, LEAVE_QUESTION)
        failed = answer(page, 1)
        expect(failed).to_have_attribute("data-state", "error")
        expect(failed.get_by_role("alert")).to_contain_text(re.compile(r"\S"))
        expect(failed.get_by_role("alert")).not_to_contain_text("Traceback")
        screenshot(page, "chat-upstream-failure")

        failed.get_by_role("button", name="Try again").click()
        retried = answer(page, 1)
        expect(retried).to_have_attribute("data-state", "done")
        expect(page.locator(".turn")).to_have_count(1)
        expect(retried.locator(".answer-text")).to_contain_text("5 days")


def test_an_error_in_the_middle_of_the_stream_keeps_the_question_for_a_retry(
    page: Page, claude_app_factory: AppFactory, fake_anthropic: FakeAnthropic
) -> None:
    with serve_app(claude_app_factory()) as base:
        page.goto(base)
        fake_anthropic.messages.stream_error_after(12)
        ask(page, LEAVE_QUESTION)
        failed = answer(page, 1)
        expect(failed).to_have_attribute("data-state", "error")
        expect(failed.get_by_role("alert")).to_be_visible()
        expect(page.locator(".turn .question p")).to_have_text(LEAVE_QUESTION)
        expect(page.get_by_role("button", name="Send the question")).to_be_enabled()
        screenshot(page, "chat-stream-error")
        failed.get_by_role("button", name="Try again").click()
        expect(answer(page, 1)).to_have_attribute("data-state", "done")
        expect(page.locator(".turn")).to_have_count(1)


def test_a_conversation_forgotten_meanwhile_is_said_and_the_next_question_starts_anew(
    page: Page, extractive_app_factory: AppFactory, console: BrowserConsole
) -> None:
    console.allow(r"status of 404")
    with serve_app(extractive_app_factory()) as base:
        page.goto(base)
        with page.expect_request(lambda r: r.url.endswith("/v1/ask")) as first:
            ask(page, LEAVE_QUESTION)
        expect(answer(page, 1)).to_have_attribute("data-state", "done")
        with page.expect_request(lambda r: r.url.endswith("/v1/ask")) as follow_up:
            ask(page, FOLLOW_UP)
        expect(answer(page, 2)).to_have_attribute("data-state", "done")
        sent = json.loads(follow_up.value.post_data or "{}")
        assert "conversation_id" not in json.loads(first.value.post_data or "{}")
        httpx.delete(f"{base}/v1/conversations/{sent['conversation_id']}").raise_for_status()

        ask(page, "Who approves carry-over?")
        expired = answer(page, 3)
        expect(expired).to_have_attribute("data-state", "error")
        expect(expired.get_by_role("alert")).to_contain_text("conversation has expired")
        with page.expect_request(lambda r: r.url.endswith("/v1/ask")) as fresh:
            expired.get_by_role("button", name="Try again").click()
        expect(answer(page, 3)).to_have_attribute("data-state", "done")
    assert "conversation_id" not in json.loads(fresh.value.post_data or "{}")


def test_a_service_with_keys_asks_for_one_and_answers_with_it(
    page: Page, extractive_app_factory: AppFactory, console: BrowserConsole
) -> None:
    console.allow(r"status of 401")
    app = extractive_app_factory()
    with serve_app(app) as base:
        secret = Keys(app.state.pool.store).create(role="user", name="intranet")[1]
        page.goto(base)
        key_field = page.get_by_label("This service needs an API key.")
        expect(key_field).to_be_visible()  # the page's first request was refused

        ask(page, LEAVE_QUESTION)
        refused = answer(page, 1)
        expect(refused).to_have_attribute("data-state", "error")
        expect(refused.get_by_role("alert")).to_contain_text("needs a valid API key")
        screenshot(page, "chat-key-needed")

        key_field.fill(secret)
        key_field.press("Enter")
        expect(key_field).to_be_hidden()
        with page.expect_request(lambda r: r.url.endswith("/v1/ask")) as sent:
            refused.get_by_role("button", name="Try again").click()
        expect(answer(page, 1)).to_have_attribute("data-state", "done")
        expect(page.locator("#model-line")).to_contain_text("Answers quote the documents.")
    assert sent.value.headers["authorization"] == f"Bearer {secret}"


def test_the_service_being_unreachable_is_said_plainly(
    page: Page, extractive_app_factory: AppFactory, console: BrowserConsole
) -> None:
    console.allow(r"ERR_INTERNET_DISCONNECTED")
    with serve_app(extractive_app_factory()) as base:
        page.goto(base)
        page.route("**/v1/ask", lambda route: route.abort("internetdisconnected"))
        ask(page, LEAVE_QUESTION)
        failed = answer(page, 1)
        expect(failed.get_by_role("alert")).to_have_text(
            "Could not reach the service. Check your connection and try again."
        )
        page.unroute("**/v1/ask")
        failed.get_by_role("button", name="Try again").click()
        expect(answer(page, 1)).to_have_attribute("data-state", "done")


def test_stop_ends_the_stream_and_keeps_what_arrived(
    page: Page, claude_app_factory: AppFactory, fake_anthropic: FakeAnthropic
) -> None:
    with serve_app(claude_app_factory()) as base:
        page.goto(base)
        fake_anthropic.messages.set_latency(0, between_events=0.1)
        watch_for_partial_answers(page)
        ask(page, LEAVE_QUESTION)
        wait_until_streamed_in(page)
        page.get_by_role("button", name="Stop the answer").click()
        stopped = answer(page, 1)
        expect(stopped).to_have_attribute("data-state", "stopped")
        expect(stopped.get_by_role("alert")).to_have_text("Stopped.")
        expect(stopped.locator(".answer-text")).not_to_have_text("")
        expect(page.get_by_role("button", name="Send the question")).to_be_visible()
        fake_anthropic.messages.set_latency(0)


def test_the_page_works_from_the_keyboard(page: Page, extractive_app_factory: AppFactory) -> None:
    with serve_app(extractive_app_factory()) as base:
        page.goto(base)
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to the question box")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="New conversation")).to_be_focused()
        page.keyboard.press("Tab")
        box = question_box(page)
        expect(box).to_be_focused()

        page.keyboard.type("How many days of annual leave")
        page.keyboard.press("Shift+Enter")
        page.keyboard.type("can I carry over?")
        expect(box).to_have_value("How many days of annual leave\ncan I carry over?")
        page.keyboard.press("Enter")
        first = answer(page, 1)
        expect(first).to_have_attribute("data-state", "done")
        expect(box).to_have_value("")
        expect(box).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Send the question")).to_be_focused()

        # Backwards from the box: the answer's footnote links, the last one first.
        box.focus()
        page.keyboard.press("Shift+Tab")
        back = first.get_by_role("link", name=re.compile(r"^Back to reference")).last
        expect(back).to_be_focused()
        first.get_by_role("link", name=re.compile(r"^Source 1: ")).first.focus()
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"#turn-1-note-1$"))

        page.get_by_role("button", name="New conversation").focus()
        page.keyboard.press("Enter")
        expect(page.locator(".turn")).to_have_count(0)
        expect(box).to_be_focused()
        with page.expect_request(lambda r: r.url.endswith("/v1/ask")) as fresh:
            page.keyboard.type("Can I work from home?")
            page.keyboard.press("Enter")
        assert "conversation_id" not in json.loads(fresh.value.post_data or "{}")
        expect(answer(page, 1)).to_have_attribute("data-state", "done")


def test_a_phone_screen_shows_the_answer_without_sideways_scrolling(
    page: Page, extractive_app_factory: AppFactory
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    with serve_app(extractive_app_factory()) as base:
        page.goto(base)
        ask(page, LEAVE_QUESTION)
        expect(answer(page, 1)).to_have_attribute("data-state", "done")
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        send = page.get_by_role("button", name="Send the question").bounding_box()
        assert send is not None and send["height"] >= 44
        screenshot(page, "chat-phone")
