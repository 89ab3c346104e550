"""The audit log: one entry per question asked over HTTP, however it ended.

An entry says who asked (key id, owner, role, address), when, in which conversation and mode,
which files went to Anthropic (``file_ids``: none when no model was called) and which documents
were routed, the tokens Anthropic reported (all of them, and apart, the reranking model's share
when ``KPOOL_RERANK`` asked one: ``rerank_model``, ``rerank_*_tokens``), and how it ended:

* ``answered`` — an answer was given;
* ``abstained`` — nothing in the pool covers the question, and the service said so;
* ``failed`` — with ``error``, the error's type (``upstream_unavailable``, ``not_found``, ...);
* ``cancelled`` — the client left before a streamed answer was complete.

The question's text is kept only when ``KPOOL_AUDIT_QUESTIONS=true``. Entries older than
``KPOOL_AUDIT_DAYS`` are pruned by the server's hourly maintenance. Writing an entry never fails
an answer: a database error is logged and the answer goes on. The table migrates with the pool's
database (``indexing/migrations/versions/0005_audit.py``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import JSON, Column, Text, delete
from sqlmodel import Field, SQLModel, col, select

from indexing.models import UTCDateTime, utcnow
from indexing.store import Store

log = logging.getLogger(__name__)

Outcome = Literal["answered", "abstained", "failed", "cancelled"]


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True)
    )
    key_id: str | None = Field(default=None, max_length=40)
    owner: str = Field(max_length=200)
    role: str | None = Field(default=None, max_length=20)
    address: str | None = Field(default=None, max_length=100)
    conversation_id: str | None = Field(default=None, max_length=40)
    mode: str = Field(max_length=20)
    model: str | None = Field(default=None, max_length=100)
    streamed: bool = False
    file_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    document_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    outcome: str = Field(max_length=20)
    error: str | None = Field(default=None, max_length=60)
    request_id: str | None = Field(default=None, max_length=200)
    duration_ms: int = 0
    question: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    #: The model asked to rerank the candidates, if one was; the tokens it spent, which are
    #: part of the totals above (``migrations/versions/0011_audit_reranking.py``).
    rerank_model: str | None = Field(default=None, max_length=100)
    rerank_input_tokens: int = 0
    rerank_output_tokens: int = 0

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "key_id": self.key_id,
            "owner": self.owner,
            "role": self.role,
            "address": self.address,
            "conversation_id": self.conversation_id,
            "mode": self.mode,
            "model": self.model,
            "streamed": self.streamed,
            "file_ids": self.file_ids,
            "document_ids": self.document_ids,
            "usage": {
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cache_creation_input_tokens": self.cache_creation_input_tokens,
                "cache_read_input_tokens": self.cache_read_input_tokens,
            },
            "rerank": None
            if self.rerank_model is None
            else {
                "model": self.rerank_model,
                "input_tokens": self.rerank_input_tokens,
                "output_tokens": self.rerank_output_tokens,
            },
            "outcome": self.outcome,
            "error": self.error,
            "request_id": self.request_id,
            "duration_ms": self.duration_ms,
            "question": self.question,
        }

    def summary(self) -> str:
        """The entry on one line, for a terminal."""
        who = self.owner + (f" from {self.address}" if self.address else "")
        outcome = f"{self.outcome} ({self.error})" if self.error else self.outcome
        tokens = "/".join(
            str(n)
            for n in (
                self.input_tokens,
                self.output_tokens,
                self.cache_creation_input_tokens,
                self.cache_read_input_tokens,
            )
        )
        if self.rerank_model is not None:
            tokens += (
                f" (reranking by {self.rerank_model}: "
                f"{self.rerank_input_tokens}/{self.rerank_output_tokens})"
            )
        files = ", ".join(self.file_ids) or "no files sent"
        return (
            f"{self.at:%Y-%m-%d %H:%M:%S}  {who}  {outcome}  {self.mode}  "
            f"tokens in/out/cache write/cache read {tokens}  {files}"
        )


def parse_since(text: str) -> datetime:
    """An ISO date or time (UTC unless it says otherwise); raises ``ValueError``."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO date or time like 2026-11-01T09:00") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        # In UTC now: the database compares UTC times, and a time near year 1 or 9999 may
        # have no UTC equivalent.
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is out of range once in UTC") from None


class AuditLog:
    """The audit entries stored in the pool's database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def write(self, entry: AuditEntry) -> bool:
        """Store ``entry``; on a database error, log it and say ``False`` (never raise)."""
        try:
            with self.store.writing() as session:
                session.add(entry)
        except Exception:
            log.exception("could not write the audit entry of a %s question", entry.outcome)
            return False
        return True

    def entries(self, *, since: datetime | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` entries (from ``since`` on, when given), newest first."""
        query = select(AuditEntry).order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc())
        if since is not None:
            query = query.where(col(AuditEntry.at) >= since)
        with self.store.session() as session:
            return list(session.exec(query.limit(limit)).all())

    def prune(self, *, before: datetime) -> int:
        """Delete the entries older than ``before``; how many."""
        with self.store.writing() as session:
            result = session.execute(delete(AuditEntry).where(col(AuditEntry.at) < before))
        return int(getattr(result, "rowcount", 0) or 0)
