"""POST /v1/ask with an API key: the real SDK against the fake Anthropic server in tests/fakes.

What the fake received is checked as well as what the caller got back: one Messages request
whose only documents are the routed files, by id, citations on, cache-marked; and the failure
table of the question endpoint.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexing.ingest import delete_document
from indexing.pool import Pool
from service.answer import Answer, Citation, CitationNumbers, collect
from service.app import create_app
from service.ask import Answerer, ask, make_answerer, open_answer, request_documents
from service.audit import AuditLog
from service.prompt import Question, RequestDocument, in_request_order
from service.router import route
from service.settings import Settings
from tests.factories import make_pdf
from tests.fakes.anthropic_server import FakeAnthropic
from tests.service.conftest import LEAVE_QUESTION
from tests.service.sse import parse_events

EPHEMERAL = {"type": "ephemeral"}


def answer_now(
    answerer: Answerer, pool: Pool, question: str, documents: list[RequestDocument]
) -> Answer:
    """The answer to a first question sent with exactly ``documents``."""
    return collect(open_answer(pool, answerer, Question(question, documents, [], documents))[1])


def messages_sent(fake: FakeAnthropic) -> list[dict[str, Any]]:
    return fake.messages.bodies()


def test_one_request_carries_only_the_routed_files_by_id(
    claude: TestClient, fake_anthropic: FakeAnthropic, claude_pool: Pool
) -> None:
    body = claude.post("/v1/ask", json={"question": LEAVE_QUESTION}).json()
    assert body["mode"] == "claude" and body["model"] == "claude-sonnet-5-5"
    (sent,) = messages_sent(fake_anthropic)
    routed = {d["file_id"] for d in body["documents"]}
    (turn,) = sent["messages"]
    blocks = turn["content"]
    documents, question = blocks[:-1], blocks[-1]
    # The question is cache-marked too: a follow-up in the conversation reads all of this.
    assert question == {"type": "text", "text": LEAVE_QUESTION, "cache_control": EPHEMERAL}
    assert {b["source"]["file_id"] for b in documents} == routed
    for block in documents:
        assert block["type"] == "document"
        assert block["source"] == {"type": "file", "file_id": block["source"]["file_id"]}
        assert block["citations"] == {"enabled": True}
    assert documents[-1]["cache_control"] == {"type": "ephemeral"}
    assert all("cache_control" not in b for b in documents[:-1])
    assert "Annual leave" not in str(sent)  # no document text travels inline
    assert sent["system"] and sent["max_tokens"] == 1024


def test_citations_map_back_to_the_documents_through_the_request_order(
    claude: TestClient, claude_pool: Pool
) -> None:
    body = claude.post("/v1/ask", json={"question": LEAVE_QUESTION}).json()
    assert body["citations"]
    by_file = {d["file_id"]: d for d in body["documents"]}
    for citation in body["citations"]:
        assert f"[{citation['number']}]" in body["answer"]
        document = by_file[citation["file_id"]]
        assert citation["document_id"] == document["document_id"]
        assert citation["document_title"] == document["title"]
        if citation["type"] == "char_location":
            text = claude_pool.store.get_content(citation["document_id"]).text
            start, end = citation["start_char_index"], citation["end_char_index"]
            assert text[start:end] == citation["cited_text"]
    usage = body["usage"]
    assert usage["input_tokens"] + usage["cache_creation_input_tokens"] > 0


def test_pdf_citations_carry_page_numbers(claude: TestClient) -> None:
    body = claude.post(
        "/v1/ask", json={"question": "expenses receipts claim reimbursement deadline"}
    ).json()
    pages = [c for c in body["citations"] if c["type"] == "page_location"]
    assert pages, body
    assert all(c["start_page_number"] >= 1 for c in pages)
    assert all(c["end_page_number"] > c["start_page_number"] for c in pages)


def test_two_quotes_from_one_page_keep_numbers_of_their_own() -> None:
    numbers = CitationNumbers()

    def page_one(text: str) -> Citation:
        return Citation(0, "file_a", "doc_a", "Expenses", text, "page_location", None, None, 1, 2)

    first = numbers.number(page_one("Claims are paid within 30 days."))
    second = numbers.number(page_one("Alcohol is not reimbursed."))
    again = numbers.number(page_one("Claims are paid within 30 days."))

    assert (first.number, second.number, again.number) == (1, 2, 1)
    assert [c.cited_text for c in numbers.citations] == [
        "Claims are paid within 30 days.",
        "Alcohol is not reimbursed.",
    ]


def test_the_same_documents_again_read_the_prompt_cache(claude: TestClient) -> None:
    first = claude.post("/v1/ask", json={"question": LEAVE_QUESTION}).json()
    again = claude.post("/v1/ask", json={"question": LEAVE_QUESTION + " (again)"}).json()
    written = first["usage"]["cache_creation_input_tokens"]
    read = again["usage"]["cache_read_input_tokens"]
    # Everything up to the question came from the cache: the system prompt and the documents.
    assert written > 0 and 0 < written - read <= len(LEAVE_QUESTION)


def test_no_match_abstains_without_calling_the_model(
    claude: TestClient, fake_anthropic: FakeAnthropic
) -> None:
    body = claude.post("/v1/ask", json={"question": "xylophone quokka"}).json()
    assert body["documents"] == [] and body["citations"] == []
    assert messages_sent(fake_anthropic) == []


def test_a_rate_limit_is_retried_by_the_sdk(
    claude: TestClient, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.fail_next(1, 429, path_prefix="/v1/messages")
    response = claude.post("/v1/ask", json={"question": LEAVE_QUESTION})
    assert response.status_code == 200
    assert len(fake_anthropic.requests_to("POST", "/v1/messages")) == 2


@pytest.mark.parametrize(
    ("status", "expected", "kind"),
    [
        (529, 503, "upstream_unavailable"),
        (429, 503, "upstream_unavailable"),
        (500, 503, "upstream_unavailable"),
        (401, 502, "upstream_auth"),
        (403, 502, "upstream_auth"),
    ],
)
def test_upstream_failures_become_clear_gateway_errors(
    claude: TestClient, fake_anthropic: FakeAnthropic, status: int, expected: int, kind: str
) -> None:
    fake_anthropic.fail_next(10, status, path_prefix="/v1/messages")
    response = claude.post("/v1/ask", json={"question": LEAVE_QUESTION})
    assert response.status_code == expected
    error = response.json()["error"]
    assert error["type"] == kind
    assert fake_anthropic.api_key not in response.text
    if expected == 503:
        assert int(response.headers["retry-after"]) >= 1
    else:
        assert "misconfigured" in error["message"]


def test_a_slow_model_is_a_gateway_timeout(
    claude_settings: Settings, claude_pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    hurried = claude_settings.model_copy(
        update={"anthropic_timeout": 0.3, "anthropic_max_retries": 0}
    )
    fake_anthropic.messages.set_latency(2.0)
    with TestClient(create_app(hurried, pool=claude_pool)) as client:
        response = client.post("/v1/ask", json={"question": LEAVE_QUESTION})
    assert response.status_code == 504
    assert response.json()["error"]["type"] == "upstream_timeout"


def test_a_file_deleted_upstream_is_reuploaded_and_the_question_answered(
    claude: TestClient, fake_anthropic: FakeAnthropic, claude_pool: Pool
) -> None:
    routed = claude.post("/v1/route", json={"question": LEAVE_QUESTION}).json()["documents"]
    lost = routed[0]
    fake_anthropic.delete_out_of_band(lost["file_id"])
    response = claude.post("/v1/ask", json={"question": LEAVE_QUESTION})
    assert response.status_code == 200, response.text
    body = response.json()
    now = claude_pool.store.get_document(lost["document_id"])
    assert now.file_id != lost["file_id"] and now.file_id in fake_anthropic.files
    assert now.file_id in {d["file_id"] for d in body["documents"]}


def test_a_streamed_answer_and_its_audit_name_the_files_actually_sent(
    claude: TestClient, claude_pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    routed = claude.post("/v1/route", json={"question": LEAVE_QUESTION}).json()["documents"]
    fake_anthropic.delete_out_of_band(routed[0]["file_id"])

    with claude.stream("POST", "/v1/ask", json={"question": LEAVE_QUESTION, "stream": True}) as r:
        events = parse_events(r.read().decode())

    now = claude_pool.store.get_document(routed[0]["document_id"]).file_id
    listed = [d["file_id"] for d in events[0].data["documents"]]
    assert events[0].data["documents"] == events[-1].data["documents"]
    assert now in listed and routed[0]["file_id"] not in listed
    (entry,) = AuditLog(claude_pool.store).entries()
    sent = fake_anthropic.messages.bodies()[-1]
    in_request = [
        block["source"]["file_id"]
        for block in sent["messages"][-1]["content"]
        if block["type"] == "document"
    ]
    assert entry.file_ids == in_request and now in entry.file_ids


def test_documents_deleted_while_the_question_is_in_flight_do_not_fail_it(
    claude_settings: Settings, claude_pool: Pool
) -> None:
    question = LEAVE_QUESTION
    routed = route(claude_pool, question, top_k=3)
    documents = in_request_order(request_documents(claude_pool, routed))
    for doc in documents:  # every routed document goes away before the request is sent
        delete_document(claude_pool, doc.document_id)
    answer = answer_now(make_answerer(claude_settings), claude_pool, question, documents)
    assert answer.citations == [] and answer.documents == []
    assert "No document" in answer.answer
    # And a fresh question routes around the deleted documents.
    fresh = ask(claude_pool, claude_settings, make_answerer(claude_settings), question)
    assert {d.document_id for d in fresh.documents}.isdisjoint({d.document_id for d in documents})


def test_a_pdf_too_long_to_send_is_said_so_and_costs_no_request(
    claude_settings: Settings, claude_pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    # A token budget that lets it through routing, so that the page limit is what stops it.
    roomy = claude_settings.model_copy(update={"token_budget": 1_000_000})
    with TestClient(create_app(roomy, pool=claude_pool)) as claude:
        body = _ask_about_a_long_pdf(claude, fake_anthropic)

    assert body["answer"].startswith("The documents that match this question are too long")
    assert "(120 pages)" in body["answer"] and body["citations"] == []
    assert AuditLog(claude_pool.store).entries(limit=1)[0].outcome == "abstained"


def _ask_about_a_long_pdf(claude: TestClient, fake_anthropic: FakeAnthropic) -> dict[str, Any]:
    pages = ["Sabbatical leave: staff with seven years of service may take a sabbatical."] * 120
    uploaded = claude.post(
        "/v1/documents",
        files={"file": ("sabbatical.pdf", make_pdf(pages, title="Sabbaticals"))},
        data={"tags": "sabbatical"},
    )
    assert uploaded.status_code == 201, uploaded.text
    assert any("120 pages" in w for w in uploaded.json()["warnings"])
    before = len(fake_anthropic.messages.bodies())

    question = {"question": "sabbatical seven years", "tags": ["sabbatical"]}
    body: dict[str, Any] = claude.post("/v1/ask", json=question).json()
    assert len(fake_anthropic.messages.bodies()) == before  # no request was made
    return body


def test_a_deprecated_model_is_warned_about_at_start_up(
    claude_settings: Settings, claude_pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    assert claude_settings.deprecated_model_warning() is None  # the default is current
    old = claude_settings.model_copy(update={"model": "claude-sonnet-4-5"})
    with caplog.at_level("WARNING", logger="service.app"):
        create_app(old, pool=claude_pool)
    assert "claude-sonnet-4-5 is deprecated" in caplog.text


@pytest.mark.parametrize(
    ("error_type", "status", "kind"),
    [
        ("overloaded_error", 503, "upstream_unavailable"),
        ("rate_limit_error", 503, "upstream_unavailable"),
        ("api_error", 503, "upstream_unavailable"),
        ("timeout_error", 504, "upstream_timeout"),
        ("invalid_request_error", 502, "upstream_error"),
    ],
)
def test_an_error_event_after_the_stream_began_is_told_by_its_type(
    claude: TestClient, fake_anthropic: FakeAnthropic, error_type: str, status: int, kind: str
) -> None:
    fake_anthropic.messages.stream_error_after(3, error_type)
    response = claude.post("/v1/ask", json={"question": LEAVE_QUESTION})
    assert response.status_code == status
    assert response.json()["error"]["type"] == kind
    assert ("Retry-After" in response.headers) == (status == 503)
    assert "Traceback" not in response.text


def test_a_400_that_names_a_routed_file_is_repaired_like_a_404(
    claude: TestClient, claude_pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    routed = claude.post("/v1/route", json={"question": LEAVE_QUESTION}).json()["documents"]
    lost = routed[0]
    fake_anthropic.delete_out_of_band(lost["file_id"])
    message = f"messages.0.content.0.document.source.file_id: File not found: {lost['file_id']}"
    fake_anthropic.fail_next(1, 400, message=message, path_prefix="/v1/messages")

    response = claude.post("/v1/ask", json={"question": LEAVE_QUESTION})

    assert response.status_code == 200, response.text
    now = claude_pool.store.get_document(lost["document_id"]).file_id
    assert now != lost["file_id"] and now in {d["file_id"] for d in response.json()["documents"]}


def test_a_404_that_names_no_file_is_not_a_missing_file(
    claude: TestClient, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.fail_next(
        1, 404, message="model: claude-nope not found", path_prefix="/v1/messages"
    )
    response = claude.post("/v1/ask", json={"question": LEAVE_QUESTION})
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"
    assert "model: claude-nope not found" in response.json()["error"]["message"]
    assert len(fake_anthropic.requests_to("POST", "/v1/messages")) == 1  # nothing "repaired"


def test_the_answer_carries_the_upstream_request_id(claude: TestClient) -> None:
    body = claude.post("/v1/ask", json={"question": LEAVE_QUESTION}).json()
    assert body["request_id"] and body["request_id"].startswith("req_")


def test_a_document_replaced_while_the_question_is_in_flight_is_answered_from_its_new_version(
    claude_settings: Settings, claude_pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    from indexing.ingest import IngestRequest, ingest

    routed = route(claude_pool, LEAVE_QUESTION, top_k=3)
    documents = in_request_order(request_documents(claude_pool, routed))
    stale = next(d for d in documents if d.mime_type == "text/plain")
    source = claude_pool.store.get_document(stale.document_id).source
    text = claude_pool.store.get_content(stale.document_id).text + "\nRevised on 1 March."
    outcome = ingest(claude_pool, IngestRequest(source=source, data=text.encode()))
    assert outcome.status == "updated" and stale.file_id not in fake_anthropic.files

    answer = answer_now(make_answerer(claude_settings), claude_pool, LEAVE_QUESTION, documents)
    sent = {d.file_id for d in answer.documents}
    assert outcome.file_id in sent and stale.file_id not in sent
