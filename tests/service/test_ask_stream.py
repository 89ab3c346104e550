"""POST /v1/ask as server-sent events: routed documents first, then text and each citation as it
arrives, then the whole answer; failures before the stream are statuses, after it `error` events.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from fastapi.testclient import TestClient

from indexing.pool import Pool
from service.answer import NOT_COVERED, Answer, AnswerEvent, StaticReply
from service.app import create_app
from service.ask import Answering
from service.prompt import Question
from service.routes.ask import server_sent_events
from service.settings import Settings
from tests.fakes.anthropic_server import FakeAnthropic
from tests.servers import serve_app
from tests.service.conftest import LEAVE_QUESTION
from tests.service.sse import Event, parse_events, streamed_text

PDF_QUESTION = "expenses receipts claim reimbursement deadline"


def ask_streamed(client: TestClient, **body: Any) -> tuple[int, str, list[Event]]:
    with client.stream("POST", "/v1/ask", json={"stream": True, **body}) as response:
        text = response.read().decode()
        return response.status_code, response.headers["content-type"], parse_events(text)


@pytest.mark.parametrize("question", [LEAVE_QUESTION, PDF_QUESTION])
def test_a_streamed_answer_sends_documents_then_text_and_citations_then_the_whole_answer(
    claude: TestClient, question: str
) -> None:
    status, content_type, events = ask_streamed(claude, question=question)
    assert status == 200 and content_type.startswith("text/event-stream")
    assert events[0].name == "documents" and events[-1].name == "done"
    assert {e.name for e in events[1:-1]} == {"text", "citation"}
    done = events[-1].data
    assert done["mode"] == "claude" and done["conversation_id"]
    assert events[0].data["documents"] == done["documents"]
    assert streamed_text(events).strip() == done["answer"]
    # Every citation is streamed, with the same fields as in the whole answer.
    assert [e.data for e in events if e.name == "citation"] == done["citations"]
    assert done["citations"] and done["usage"]["output_tokens"] > 0
    located = {"char_location": "start_char_index", "page_location": "start_page_number"}
    for citation in done["citations"]:
        assert citation["file_id"] and citation["document_title"] and citation["cited_text"]
        assert citation[located[citation["type"]]] is not None


def test_each_citation_arrives_before_the_first_marker_that_uses_it(claude: TestClient) -> None:
    _, _, events = ask_streamed(claude, question=LEAVE_QUESTION)
    announced: set[int] = set()
    for event in events:
        if event.name == "citation":
            announced.add(event.data["number"])
        elif event.name == "text" and "[" in event.data["text"]:
            numbers = {int(n) for n in event.data["text"].strip("[]").split("][")}
            assert numbers <= announced, (numbers, announced)
    assert announced


def test_the_streamed_answer_is_the_json_answer(claude: TestClient) -> None:
    whole = claude.post("/v1/ask", json={"question": LEAVE_QUESTION}).json()
    _, _, events = ask_streamed(claude, question=LEAVE_QUESTION)
    done = events[-1].data
    for field in ("answer", "citations", "documents", "model", "mode"):
        assert done[field] == whole[field], field


@pytest.mark.parametrize(
    ("content", "stop_reason", "expected"),
    [
        ([], "refusal", "The model declined to answer this question."),
        ([{"type": "text", "text": "  "}], "end_turn", "The model gave no answer"),
        (
            [{"type": "text", "text": "Leave carries over"}],
            "max_tokens",
            "Leave carries over\n\n(The answer was cut short at the length limit.)",
        ),
        (
            [{"type": "text", "text": "Leave carries over"}],
            "refusal",
            "Leave carries over\n\n(The model declined to go on with this answer.)",
        ),
    ],
    ids=["refusal", "empty", "cut-short", "stopped"],
)
def test_a_reply_without_a_proper_end_says_so_and_the_conversation_goes_on(
    claude: TestClient,
    fake_anthropic: FakeAnthropic,
    content: list[dict[str, Any]],
    stop_reason: str,
    expected: str,
) -> None:
    fake_anthropic.messages.script_reply(content, stop_reason=stop_reason, times=2)
    whole = claude.post("/v1/ask", json={"question": LEAVE_QUESTION}).json()
    _, _, events = ask_streamed(claude, question=LEAVE_QUESTION)
    done = events[-1].data

    assert whole["answer"].startswith(expected) and done["answer"] == whole["answer"]
    assert streamed_text(events).strip() == done["answer"]
    follow_up = claude.post(
        "/v1/ask",
        json={"question": "And for part-time staff?", "conversation_id": whole["conversation_id"]},
    )
    assert follow_up.status_code == 200, follow_up.text


def test_accept_text_event_stream_asks_for_a_stream(claude: TestClient) -> None:
    response = claude.post(
        "/v1/ask", json={"question": LEAVE_QUESTION}, headers={"Accept": "text/event-stream"}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert parse_events(response.text)[-1].name == "done"


def test_an_overloaded_api_is_a_503_before_the_stream_starts(
    claude: TestClient, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.fail_next(5, 529, path_prefix="/v1/messages")
    response = claude.post("/v1/ask", json={"question": LEAVE_QUESTION, "stream": True})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "upstream_unavailable"
    assert int(response.headers["retry-after"]) >= 1


def test_an_unknown_conversation_is_a_404_before_the_stream_starts(claude: TestClient) -> None:
    response = claude.post(
        "/v1/ask",
        json={"question": LEAVE_QUESTION, "stream": True, "conversation_id": "conv_nope"},
    )
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_an_error_mid_stream_becomes_an_error_event_and_records_nothing(
    claude: TestClient, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.messages.stream_error_after(6)
    status, _, events = ask_streamed(claude, question=LEAVE_QUESTION)
    assert status == 200
    assert events[0].name == "documents" and events[-1].name == "error"
    assert "done" not in {e.name for e in events}
    error = events[-1].data["error"]
    assert error["type"] == "upstream_unavailable" and "overloaded" in error["message"].lower()
    # The failed turn was not kept: asking again starts a fresh conversation of one turn.
    body = claude.post("/v1/ask", json={"question": LEAVE_QUESTION}).json()
    turns = claude.get(f"/v1/conversations/{body['conversation_id']}").json()["turns"]
    assert len(turns) == 1


def test_extractive_answers_stream_in_the_same_events(client: TestClient) -> None:
    _, _, events = ask_streamed(client, question="how many days of annual leave can I carry over?")
    done = events[-1].data
    assert events[0].name == "documents" and events[-1].name == "done"
    assert done["mode"] == "extractive" and done["citations"]
    assert streamed_text(events).strip() == done["answer"]
    assert [e.data for e in events if e.name == "citation"] == done["citations"]


def test_a_question_nothing_matches_streams_the_abstention_without_a_model_call(
    claude: TestClient, fake_anthropic: FakeAnthropic
) -> None:
    _, _, events = ask_streamed(claude, question="xylophone quokka")
    assert events[0].data == {"documents": []}
    assert events[-1].data["answer"] == NOT_COVERED
    assert fake_anthropic.messages.bodies() == []


class _WatchedReply(StaticReply):
    closed = False

    def __iter__(self) -> Iterator[AnswerEvent]:
        yield from super().__iter__()

    def close(self) -> None:
        self.closed = True


def test_a_client_that_goes_away_closes_the_reply() -> None:
    answer = Answer("first paragraph\n\nsecond paragraph", [], [], mode="extractive")
    reply = _WatchedReply(answer)
    answering = Answering(Question("q", [], [], []), reply, record=lambda a: a)

    async def read_two_frames_and_leave() -> list[str]:
        frames = server_sent_events(answering)
        taken = [await anext(frames), await anext(frames)]
        await frames.aclose()
        return taken

    # A portal runs the coroutine on an event loop of its own thread, whatever else runs here.
    with start_blocking_portal() as portal:
        frames = portal.call(read_two_frames_and_leave)
    assert frames[0].startswith("event: documents") and frames[1].startswith("event: text")
    assert reply.closed


@pytest.mark.slow
def test_a_client_that_disconnects_mid_answer_stops_the_upstream_stream(
    claude_settings: Settings, claude_pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    """Over a real socket: the reader leaves after the first text, the server hangs up on
    Anthropic instead of reading the rest of the answer (and paying for it)."""
    fake_anthropic.messages.set_latency(0, between_events=0.2)
    with serve_app(create_app(claude_settings, pool=claude_pool)) as base:
        body = {"question": LEAVE_QUESTION, "stream": True}
        with httpx.stream("POST", f"{base}/v1/ask", json=body, timeout=10) as response:
            for line in response.iter_lines():
                if line == "event: text":
                    break
        deadline = time.monotonic() + 10
        while fake_anthropic.disconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert fake_anthropic.disconnects == 1
