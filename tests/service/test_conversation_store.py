"""The conversation tables on SQLite and PostgreSQL: turns in order, owners, deletion, and
turns appended at once by several threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from indexing.errors import ConversationNotFound
from indexing.models import utcnow
from indexing.store import Store
from service.answer import Answer, Citation, Usage
from service.conversations import Conversation, Conversations


@pytest.fixture
def conversations(database_url: str) -> Iterator[Conversations]:
    store = Store.open(database_url)
    yield Conversations(store)
    store.close()


def answer(text: str) -> Answer:
    citation = Citation(1, "file_a", "doc_a", "Leave", "Five days.", "char_location", 0, 10)
    return Answer(
        f"{text}[1]", [citation], [], mode="claude", usage=Usage(input_tokens=3), reply=text
    )


def test_turns_come_back_in_order_with_what_was_sent(conversations: Conversations) -> None:
    first = conversations.record(
        conversation_id=None, owner="ann", question="q1", answer=answer("a1"), sent=["doc_a"]
    )
    again = conversations.record(
        conversation_id=first, owner="ann", question="q2", answer=answer("a2"), sent=[]
    )
    assert again == first and first.startswith("conv_")
    turns = conversations.turns(first, owner="ann")
    assert [(t.seq, t.question, t.reply, t.answer) for t in turns] == [
        (1, "q1", "a1", "a1[1]"),
        (2, "q2", "a2", "a2[1]"),
    ]
    assert turns[0].sent == ["doc_a"] and turns[1].sent == []
    assert turns[0].citations[0]["cited_text"] == "Five days."
    assert turns[0].usage["input_tokens"] == 3
    assert [t.question for t in conversations.turns(first, owner="ann", last=1)] == ["q2"]
    assert conversations.get(first, owner="ann").turn_count == 2


def test_another_owner_cannot_read_continue_or_delete_it(conversations: Conversations) -> None:
    mine = conversations.record(
        conversation_id=None, owner="ann", question="q", answer=answer("a"), sent=[]
    )
    with pytest.raises(ConversationNotFound):
        conversations.turns(mine, owner="bob")
    with pytest.raises(ConversationNotFound):
        conversations.record(
            conversation_id=mine, owner="bob", question="q", answer=answer("a"), sent=[]
        )
    with pytest.raises(ConversationNotFound):
        conversations.delete(mine, owner="bob")
    assert len(conversations.turns(mine, owner="ann")) == 1


def test_deleting_removes_every_turn(conversations: Conversations) -> None:
    gone = conversations.record(
        conversation_id=None, owner="ann", question="q", answer=answer("a"), sent=[]
    )
    conversations.delete(gone, owner="ann")
    with pytest.raises(ConversationNotFound):
        conversations.get(gone, owner="ann")


def test_turns_appended_at_once_all_land_with_distinct_numbers(
    conversations: Conversations,
) -> None:
    conversation = conversations.record(
        conversation_id=None, owner="ann", question="q0", answer=answer("a"), sent=[]
    )
    errors: list[BaseException] = []

    def append(n: int) -> None:
        try:
            conversations.record(
                conversation_id=conversation,
                owner="ann",
                question=f"q{n}",
                answer=answer("a"),
                sent=[],
            )
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    turns = conversations.turns(conversation, owner="ann")
    assert [t.seq for t in turns] == list(range(1, 10))
    assert sorted(t.question for t in turns) == sorted(f"q{n}" for n in range(9))


def test_pruning_forgets_only_conversations_idle_since_the_cutoff(
    conversations: Conversations,
) -> None:
    old, recent = (
        conversations.record(
            conversation_id=None, owner="ann", question="q", answer=answer("a"), sent=[]
        )
        for _ in range(2)
    )
    long_ago = utcnow() - timedelta(days=40)
    with conversations.store.writing() as session:
        stale = session.get(Conversation, old)
        assert stale is not None
        stale.updated_at = long_ago
        session.add(stale)
    assert conversations.prune(idle_since=utcnow() - timedelta(days=30)) == 1
    with pytest.raises(ConversationNotFound):
        conversations.get(old, owner="ann")
    assert len(conversations.turns(recent, owner="ann")) == 1
