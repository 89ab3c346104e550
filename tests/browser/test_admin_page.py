"""The admin page in a real browser: the documents listed a page at a time, narrowed by tag and
by text, a file uploaded and then deleted after a confirmation, the admin key sent along."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from service.keys import Keys
from service.pool import open_pool
from tests.browser.conftest import HOW_TO_INSTALL, AppFactory, screenshot, serve_app

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from tests.browser.conftest import BrowserConsole

pytestmark = [pytest.mark.slow, pytest.mark.browser]

expect = pytest.importorskip("playwright.sync_api", reason=HOW_TO_INSTALL).expect

SAMPLE_DOCUMENTS = 21
NOTE = b"# Visitor Parking\n\nVisitors park in bays 1 to 4 next to reception and sign in there.\n"


def rows(page: Page) -> Locator:
    return page.locator("#documents tbody tr[data-id]")


def row(page: Page, title: str) -> Locator:
    return rows(page).filter(has=page.get_by_role("rowheader", name=re.compile(re.escape(title))))


def test_the_list_shows_the_sample_documents_a_page_at_a_time(
    page: Page, extractive_app_factory: AppFactory
) -> None:
    with serve_app(extractive_app_factory()) as base:
        page.goto(f"{base}/admin")
        expect(rows(page)).to_have_count(SAMPLE_DOCUMENTS)
        expect(row(page, "Annual Leave Policy")).to_contain_text("annual-leave.md")
        screenshot(page, "admin-list")

        page.get_by_label("Per page").select_option("10")
        page.get_by_role("button", name="Apply").click()
        expect(rows(page)).to_have_count(10)
        previous = page.get_by_role("button", name="Previous page")
        expect(previous).to_be_disabled()
        first_page = rows(page).first.get_attribute("data-id")
        page.get_by_role("button", name="Next page").click()
        expect(page.locator("#list-summary")).to_contain_text("Page 2: documents 11–20")
        expect(rows(page).first).not_to_have_attribute("data-id", first_page or "")
        page.get_by_role("button", name="Next page").click()
        expect(rows(page)).to_have_count(1)
        expect(page.get_by_role("button", name="Next page")).to_be_disabled()
        previous.click()
        expect(rows(page)).to_have_count(10)


def test_a_tag_and_a_search_narrow_the_list(page: Page, extractive_app_factory: AppFactory) -> None:
    with serve_app(extractive_app_factory()) as base:
        page.goto(f"{base}/admin")
        expect(rows(page)).to_have_count(SAMPLE_DOCUMENTS)
        page.get_by_label("Tag", exact=True).fill("security")
        page.get_by_label("Tag", exact=True).press("Enter")
        expect(rows(page)).to_have_count(2)
        expect(row(page, "Information Security Policy")).to_be_visible()

        page.get_by_role("button", name="Clear").click()
        expect(rows(page)).to_have_count(SAMPLE_DOCUMENTS)
        page.get_by_label("Search").fill("leave")
        expect(rows(page)).to_have_count(3)
        expect(page.locator("#list-summary")).to_contain_text("3 matching “leave”")
        page.get_by_label("Search").fill("no such words")
        expect(rows(page)).to_have_count(0)
        expect(page.locator("#documents tbody")).to_contain_text("No document in this page")
        screenshot(page, "admin-search")


def test_an_uploaded_file_is_listed_and_a_confirmed_delete_removes_it(
    page: Page, extractive_app_factory: AppFactory
) -> None:
    with serve_app(extractive_app_factory()) as base:
        page.goto(f"{base}/admin")
        expect(rows(page)).to_have_count(SAMPLE_DOCUMENTS)
        page.get_by_label("File").set_input_files(
            {"name": "visitor-parking.md", "mimeType": "text/markdown", "buffer": NOTE}
        )
        page.get_by_label("Title").fill("Visitor Parking Rules")
        page.get_by_label("Tags").fill("facilities, visitors")
        page.get_by_role("button", name="Upload").click()
        expect(page.locator("#upload-status")).to_have_text("Added “Visitor Parking Rules”.")
        uploaded = row(page, "Visitor Parking Rules")
        expect(uploaded).to_contain_text("visitor-parking.md")
        expect(uploaded).to_contain_text("facilities")
        expect(rows(page)).to_have_count(SAMPLE_DOCUMENTS + 1)
        screenshot(page, "admin-uploaded")

        delete = uploaded.get_by_role("button", name="Delete “Visitor Parking Rules”")
        delete.click()
        dialog = page.get_by_role("dialog", name="Delete this document?")
        expect(dialog).to_contain_text("Visitor Parking Rules")
        screenshot(page, "admin-confirm-delete", full_page=False)
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden()
        expect(uploaded).to_be_visible()

        delete.click()
        dialog.get_by_role("button", name="Delete").click()
        expect(page.locator("#list-status")).to_have_text("Deleted “Visitor Parking Rules”.")
        expect(uploaded).to_have_count(0)
        expect(rows(page)).to_have_count(SAMPLE_DOCUMENTS)


def test_a_refused_upload_says_why(
    page: Page, extractive_app_factory: AppFactory, console: BrowserConsole
) -> None:
    console.allow(r"status of 415")
    with serve_app(extractive_app_factory()) as base:
        page.goto(f"{base}/admin")
        page.get_by_label("File").set_input_files(
            {"name": "tool.exe", "mimeType": "application/octet-stream", "buffer": b"MZ\x90\x00"}
        )
        page.get_by_role("button", name="Upload").click()
        status = page.locator("#upload-status")
        expect(status).to_contain_text("tool.exe was not uploaded.")
        expect(status.locator(".error")).to_be_visible()
        expect(rows(page)).to_have_count(SAMPLE_DOCUMENTS)


def test_once_keys_exist_the_page_needs_an_admin_key_and_keeps_it_for_the_tab(
    page: Page, console: BrowserConsole, extractive_app_factory: AppFactory
) -> None:
    app = extractive_app_factory()
    pool = open_pool(app.state.settings, load_index=False)
    try:
        _, secret = Keys(pool.store).create(role="admin", name="admin page test")
    finally:
        pool.close()
    console.allow(r"status of 401")
    with serve_app(app) as base:
        page.goto(f"{base}/admin")
        expect(page.locator("#list-status")).to_contain_text("Check the API key")
        expect(rows(page)).to_have_count(0)

        page.get_by_label("Key", exact=True).fill(secret)
        with page.expect_request(lambda r: "/v1/documents" in r.url) as listed:
            page.get_by_role("button", name="Use key").click()
        assert listed.value.headers.get("authorization") == f"Bearer {secret}"
        expect(rows(page)).to_have_count(SAMPLE_DOCUMENTS)

        page.reload()
        expect(page.get_by_label("Key", exact=True)).to_have_value(secret)
        expect(rows(page)).to_have_count(SAMPLE_DOCUMENTS)
        page.get_by_role("button", name="Forget").click()
        with page.expect_request(lambda r: "/v1/documents" in r.url) as anonymous:
            page.get_by_role("button", name="Apply").click()
        assert "authorization" not in anonymous.value.headers
        expect(page.locator("#list-status")).to_contain_text("Check the API key")


def test_the_admin_page_fits_a_phone(page: Page, extractive_app_factory: AppFactory) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    with serve_app(extractive_app_factory()) as base:
        page.goto(f"{base}/admin")
        expect(rows(page)).to_have_count(SAMPLE_DOCUMENTS)
        overflow = page.evaluate("() => document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0
        screenshot(page, "admin-phone", full_page=False)
