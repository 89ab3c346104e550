"""Conversations: the turns of a chat, kept server-side so a follow-up carries its history.

A turn keeps the question; the model's reply as it is sent back in later requests (without the
``[n]`` markers, which mean nothing to the model); the answer as the caller saw it; the documents
routed for it; the documents first *sent* with it, whose blocks stay in that turn's user message
whenever the conversation is replayed, so every later request starts with the same prefix and
reads the prompt cache; and its citations and usage.

A conversation belongs to its owner, the caller who started it. Anyone else asking for it gets
the same 404 as for an id that never existed. The tables migrate with the pool's database
(``indexing/migrations/versions/0003_conversations.py``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Text, delete
from sqlmodel import Field, SQLModel, col, select

from indexing.errors import ConversationNotFound
from indexing.models import UTCDateTime, utcnow
from indexing.store import Store
from service.answer import Answer


def _when() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


def _json(default: Any = list) -> Any:
    return Field(default_factory=default, sa_column=Column(JSON, nullable=False))


def _text() -> Any:
    return Field(sa_column=Column(Text, nullable=False))


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"

    id: str = Field(primary_key=True, max_length=40)
    owner: str = Field(max_length=200)
    turn_count: int = 0
    created_at: datetime = _when()
    updated_at: datetime = _when()


class ConversationTurn(SQLModel, table=True):
    __tablename__ = "turns"

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(foreign_key="conversations.id", max_length=40)
    seq: int
    question: str = _text()
    reply: str = _text()
    answer: str = _text()
    mode: str = Field(max_length=20)
    sent: list[str] = _json()
    documents: list[dict[str, Any]] = _json()
    citations: list[dict[str, Any]] = _json()
    usage: dict[str, int] = _json(dict)
    created_at: datetime = _when()

    def public(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "citations": self.citations,
            "documents": self.documents,
            "usage": self.usage,
            "mode": self.mode,
            "created_at": self.created_at,
        }


def new_conversation_id() -> str:
    return "conv_" + secrets.token_urlsafe(18)


@dataclass(frozen=True)
class Conversations:
    """Conversations stored in the pool's database."""

    store: Store

    def get(self, conversation_id: str, *, owner: str) -> Conversation:
        with self.store.session() as session:
            found = session.get(Conversation, conversation_id)
        if found is None or found.owner != owner:
            raise ConversationNotFound(f"no conversation with id {conversation_id!r}")
        return found

    def turns(
        self, conversation_id: str, *, owner: str, last: int | None = None
    ) -> list[ConversationTurn]:
        """The conversation's turns in order; only the ``last`` few when given."""
        self.get(conversation_id, owner=owner)
        query = select(ConversationTurn).where(ConversationTurn.conversation_id == conversation_id)
        query = query.order_by(col(ConversationTurn.seq).desc())
        if last is not None:
            query = query.limit(last)
        with self.store.session() as session:
            turns = list(session.exec(query).all())
        return turns[::-1]

    def record(
        self,
        *,
        conversation_id: str | None,
        owner: str,
        question: str,
        answer: Answer,
        sent: list[str],
    ) -> str:
        """Append a turn (starting the conversation when there is none) and return its id."""
        with self.store.writing() as session:
            if conversation_id is None:
                conversation = Conversation(id=new_conversation_id(), owner=owner)
            else:
                found = session.get(Conversation, conversation_id)
                if found is None or found.owner != owner:
                    raise ConversationNotFound(f"no conversation with id {conversation_id!r}")
                conversation = found
            conversation.turn_count += 1
            conversation.updated_at = utcnow()
            session.add(conversation)
            session.add(
                ConversationTurn(
                    conversation_id=conversation.id,
                    seq=conversation.turn_count,
                    question=question,
                    reply=answer.reply,
                    answer=answer.answer,
                    mode=answer.mode,
                    sent=sent,
                    documents=answer.as_dict()["documents"],
                    citations=[c.as_dict() for c in answer.citations],
                    usage=answer.usage.as_dict(),
                )
            )
            return conversation.id

    def prune(self, *, idle_since: datetime) -> int:
        """Forget the conversations nobody has added to since ``idle_since``; how many."""
        stale = select(Conversation.id).where(col(Conversation.updated_at) < idle_since)
        with self.store.writing() as session:
            ids = list(session.exec(stale).all())
            for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
                session.execute(
                    delete(ConversationTurn).where(col(ConversationTurn.conversation_id).in_(chunk))
                )
                session.execute(delete(Conversation).where(col(Conversation.id).in_(chunk)))
        return len(ids)

    def delete(self, conversation_id: str, *, owner: str) -> None:
        with self.store.writing() as session:
            found = session.get(Conversation, conversation_id)
            if found is None or found.owner != owner:
                raise ConversationNotFound(f"no conversation with id {conversation_id!r}")
            session.execute(
                delete(ConversationTurn).where(
                    col(ConversationTurn.conversation_id) == conversation_id
                )
            )
            session.delete(found)
