"""Conversations: follow-ups carry their history by the API's rules, are routed with the earlier
questions in view, keep earlier documents in place so they read the prompt cache, and belong
to their caller."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from indexing.ingest import delete_document
from indexing.pool import Pool
from service.app import create_app
from service.ask import ask, make_answerer
from service.auth import Caller
from service.keys import Keys
from service.router import RoutedDocument, route
from service.settings import Settings
from tests.fakes.anthropic_server import FakeAnthropic
from tests.service.conftest import LEAVE_QUESTION
from tests.service.sse import parse_events

FOLLOW_UP = "and for part-time staff?"


def post(client: TestClient, question: str, conversation_id: str | None = None) -> Any:
    response = client.post(
        "/v1/ask", json={"question": question, "conversation_id": conversation_id}
    )
    assert response.status_code == 200, response.text
    return response.json()


def document_ids(message: dict[str, Any]) -> list[str]:
    return [b["source"]["file_id"] for b in message["content"] if b["type"] == "document"]


def unmarked(message: dict[str, Any]) -> dict[str, Any]:
    blocks = [{k: v for k, v in b.items() if k != "cache_control"} for b in message["content"]]
    return {**message, "content": blocks}


def test_a_follow_up_replays_the_conversation_by_the_api_rules(
    claude: TestClient, fake_anthropic: FakeAnthropic
) -> None:
    first = post(claude, LEAVE_QUESTION)
    second = post(claude, FOLLOW_UP, first["conversation_id"])
    assert second["conversation_id"] == first["conversation_id"]
    before, after = fake_anthropic.messages.bodies()
    messages = after["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    # The first turn is sent again as it was (cache breakpoints aside), so the prefix is the same.
    assert unmarked(messages[0]) == unmarked(before["messages"][0])
    # The assistant turn is the reply as plain text: no documents, no citations, no markers.
    (reply,) = messages[1]["content"]
    assert reply["type"] == "text" and "citations" not in reply and "[1]" not in reply["text"]
    assert reply["text"] and reply["text"].split()[0] in first["answer"]
    # Documents already in the conversation are not sent twice.
    sent_before = document_ids(messages[0])
    assert set(document_ids(messages[2])).isdisjoint(sent_before)
    assert messages[2]["content"][-1]["text"] == FOLLOW_UP


def test_citations_in_a_follow_up_map_through_the_whole_conversation(
    claude: TestClient, claude_pool: Pool
) -> None:
    first = post(claude, LEAVE_QUESTION)
    second = post(claude, "carry over unused leave days next year", first["conversation_id"])
    # The fake model cites the documents of earlier turns too (document_index counts them all).
    earlier = {d["file_id"] for d in first["documents"]}
    assert earlier & {c["file_id"] for c in second["citations"]}
    for citation in second["citations"]:
        if citation["type"] == "char_location":
            text = claude_pool.store.get_content(citation["document_id"]).text
            start, end = citation["start_char_index"], citation["end_char_index"]
            assert text[start:end] == citation["cited_text"]


def test_a_follow_up_reads_the_conversation_from_the_prompt_cache(claude: TestClient) -> None:
    first = post(claude, LEAVE_QUESTION)
    second = post(claude, FOLLOW_UP, first["conversation_id"])
    cached = first["usage"]["cache_creation_input_tokens"]
    assert cached > 0
    # Everything the first request sent comes back from the cache.
    assert second["usage"]["cache_read_input_tokens"] == cached


def test_a_follow_up_is_routed_with_the_earlier_questions_in_view(
    claude: TestClient, claude_pool: Pool
) -> None:
    follow_up = "does that apply to contractors?"
    alone = route(claude_pool, follow_up, top_k=1)
    leave = route(claude_pool, LEAVE_QUESTION, top_k=1).documents[0]
    assert leave.document_id not in {d.document_id for d in alone.documents}
    first = post(claude, LEAVE_QUESTION)
    second = post(claude, follow_up, first["conversation_id"])
    assert second["documents"][0]["document_id"] == leave.document_id


def test_the_conversation_keeps_every_turn(claude: TestClient) -> None:
    first = post(claude, LEAVE_QUESTION)
    second = post(claude, FOLLOW_UP, first["conversation_id"])
    response = claude.get(f"/v1/conversations/{first['conversation_id']}")
    assert response.status_code == 200
    turns = response.json()["turns"]
    assert [t["question"] for t in turns] == [LEAVE_QUESTION, FOLLOW_UP]
    assert [t["answer"] for t in turns] == [first["answer"], second["answer"]]
    assert turns[1]["citations"] == second["citations"]


def test_a_streamed_follow_up_continues_the_conversation(claude: TestClient) -> None:
    first = post(claude, LEAVE_QUESTION)
    response = claude.post(
        "/v1/ask",
        json={"question": FOLLOW_UP, "conversation_id": first["conversation_id"], "stream": True},
    )
    done = parse_events(response.text)[-1]
    assert done.name == "done" and done.data["conversation_id"] == first["conversation_id"]
    assert done.data["usage"]["cache_read_input_tokens"] > 0


def test_a_deleted_conversation_is_gone(claude: TestClient) -> None:
    first = post(claude, LEAVE_QUESTION)
    url = f"/v1/conversations/{first['conversation_id']}"
    assert claude.delete(url).status_code == 204
    assert claude.get(url).status_code == 404
    assert claude.delete(url).status_code == 404
    response = claude.post(
        "/v1/ask", json={"question": FOLLOW_UP, "conversation_id": first["conversation_id"]}
    )
    assert response.status_code == 404
    assert response.json()["error"] == {
        "type": "not_found",
        "message": f"no conversation with id {first['conversation_id']!r}",
    }


@pytest.mark.parametrize("conversation_id", ["conv_unknown", "x" * 40])
def test_an_unknown_conversation_is_a_404(claude: TestClient, conversation_id: str) -> None:
    response = claude.post(
        "/v1/ask", json={"question": LEAVE_QUESTION, "conversation_id": conversation_id}
    )
    assert response.status_code == 404
    assert claude.get(f"/v1/conversations/{conversation_id}").status_code == 404


def test_a_conversation_belongs_to_its_caller(
    claude: TestClient, claude_settings: Settings, claude_pool: Pool
) -> None:
    """One started from the CLI (which sees every document) is invisible to HTTP callers."""
    answer = ask(
        claude_pool,
        claude_settings,
        make_answerer(claude_settings),
        LEAVE_QUESTION,
        caller=Caller(owner="cli"),
    )
    assert answer.conversation_id
    assert claude.get(f"/v1/conversations/{answer.conversation_id}").status_code == 404
    response = claude.post(
        "/v1/ask", json={"question": FOLLOW_UP, "conversation_id": answer.conversation_id}
    )
    assert response.status_code == 404


def test_a_document_deleted_mid_conversation_leaves_the_history(
    claude: TestClient, claude_pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    first = post(claude, LEAVE_QUESTION)
    gone = first["documents"][0]
    delete_document(claude_pool, gone["document_id"])
    second = post(claude, FOLLOW_UP, first["conversation_id"])
    last = fake_anthropic.messages.bodies()[-1]
    sent = {f for m in last["messages"] if m["role"] == "user" for f in document_ids(m)}
    assert gone["file_id"] not in sent
    assert gone["document_id"] not in {c["document_id"] for c in second["citations"]}


def test_only_the_latest_turns_are_replayed(
    claude_settings: Settings, claude_pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    short = claude_settings.model_copy(update={"conversation_turns": 2})
    with TestClient(create_app(short, pool=claude_pool)) as client:
        conversation = post(client, LEAVE_QUESTION)["conversation_id"]
        for question in ["sick leave self-certification", "travel booking rules"]:
            post(client, question, conversation)
        post(client, FOLLOW_UP, conversation)
        turns = client.get(f"/v1/conversations/{conversation}").json()["turns"]
    assert len(turns) == 4
    last = fake_anthropic.messages.bodies()[-1]["messages"]
    questions = [m["content"][-1]["text"] for m in last if m["role"] == "user"]
    assert questions == ["sick leave self-certification", "travel booking rules", FOLLOW_UP]


def test_follow_ups_asked_at_once_are_all_kept(claude: TestClient) -> None:
    conversation = post(claude, LEAVE_QUESTION)["conversation_id"]
    errors: list[BaseException] = []

    def follow_up(question: str) -> None:
        try:
            post(claude, question, conversation)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=follow_up, args=(f"{FOLLOW_UP} {n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    turns = claude.get(f"/v1/conversations/{conversation}").json()["turns"]
    assert len(turns) == 5


def test_extractive_conversations_route_follow_ups_the_same_way(client: TestClient) -> None:
    first = post(client, "how many days of annual leave can I carry over?")
    second = post(client, FOLLOW_UP, first["conversation_id"])
    assert second["mode"] == "extractive"
    assert second["documents"][0]["title"] == "Annual Leave Policy"
    assert any("part-time" in c["cited_text"].lower() for c in second["citations"])


def ann_in_hr_asks_about(
    claude: TestClient, claude_pool: Pool, leave: RoutedDocument
) -> tuple[dict[str, str], dict[str, str], str]:
    """Ann, signed in through a trusted front end as a member of HR, asks the leave question
    (answered from ``leave``): her headers without HR and with it, and the conversation."""
    _, secret = Keys(claude_pool.store).create(role="user", trusted_front_end=True)
    as_ann = {"Authorization": f"Bearer {secret}", "X-Kpool-User": "ann"}
    with_hr = {**as_ann, "X-Kpool-Groups": "hr"}
    first = claude.post("/v1/ask", json={"question": LEAVE_QUESTION}, headers=with_hr).json()
    assert leave.document_id in {d["document_id"] for d in first["documents"]}
    return as_ann, with_hr, first["conversation_id"]


def test_a_turn_drawn_from_a_document_the_caller_lost_access_to_is_neither_shown_nor_replayed(
    claude: TestClient, claude_pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    leave = route(claude_pool, LEAVE_QUESTION, top_k=1).documents[0]
    claude_pool.store.update_metadata(document_id=leave.document_id, groups=["hr"])
    claude_pool.refresh()
    as_ann, with_hr, conversation = ann_in_hr_asks_about(claude, claude_pool, leave)
    # Ann moves out of HR: the turn that quoted the HR-only document disappears for her.
    url = f"/v1/conversations/{conversation}"
    assert len(claude.get(url, headers=with_hr).json()["turns"]) == 1
    assert claude.get(url, headers=as_ann).json()["turns"] == []
    follow_up = {"question": FOLLOW_UP, "conversation_id": conversation}
    second = claude.post("/v1/ask", json=follow_up, headers=as_ann).json()
    sent = fake_anthropic.messages.bodies()[-1]["messages"]
    assert [m["role"] for m in sent] == ["user"]
    assert LEAVE_QUESTION not in str(sent) and leave.file_id not in str(sent)
    assert leave.document_id not in {c["document_id"] for c in second["citations"]}


def test_turns_after_one_the_caller_may_no_longer_see_are_hidden_with_it(
    claude: TestClient, claude_pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    """A later turn's request carried the earlier turn's documents as history: its reply may
    use what they say without citing them."""
    leave = route(claude_pool, LEAVE_QUESTION, top_k=1).documents[0]
    as_ann, with_hr, conversation = ann_in_hr_asks_about(claude, claude_pool, leave)
    # A follow-up routed to other documents, whose reply draws on the leave policy (sent
    # again as history) without citing it.
    fake_anthropic.messages.script_reply([{"type": "text", "text": "Five days carry over."}])
    follow_up = {
        "question": "mileage claims for business journeys",
        "top_k": 1,
        "conversation_id": conversation,
    }
    second = claude.post("/v1/ask", json=follow_up, headers=with_hr).json()
    assert leave.document_id not in {d["document_id"] for d in second["documents"]}
    assert second["citations"] == []
    url = f"/v1/conversations/{conversation}"
    assert len(claude.get(url, headers=with_hr).json()["turns"]) == 2

    claude_pool.store.update_metadata(document_id=leave.document_id, groups=["hr"])
    claude_pool.refresh()

    assert claude.get(url, headers=as_ann).json()["turns"] == []
    assert len(claude.get(url, headers=with_hr).json()["turns"]) == 2
