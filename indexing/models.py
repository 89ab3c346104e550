"""The pool's tables.

``Document`` is the stable identity users see; ``Summary`` is the BM25 summary of the version
currently uploaded, keyed by its ``file_id``; ``Content`` keeps the original bytes and extracted
text (uploaded files cannot be downloaded back), and the version's generated description if
any. ``Change`` is an append-only log that every process applies to its in-memory index;
``UploadIntent`` and ``RetiredFile`` make uploads and remote deletions recoverable after a
crash. Schema changes go through Alembic migrations
(``indexing/migrations``), never ``create_all``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import JSON, BigInteger, Column, DateTime, Dialect, Integer, LargeBinary, Text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them without a zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json(nullable: bool = False) -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=nullable))


def _when() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class DocumentBase(SQLModel):
    """What a caller may set about a document."""

    title: str = Field(max_length=500)
    tags: list[str] = _json()
    groups: list[str] = _json()
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))


class Document(DocumentBase, table=True):
    __tablename__ = "documents"

    id: str = Field(primary_key=True, max_length=40)
    source: str = Field(unique=True, index=True, max_length=2000)
    filename: str = Field(max_length=500)
    format: str = Field(max_length=20)
    mime_type: str = Field(max_length=100)
    content_hash: str = Field(index=True, max_length=64)
    file_id: str | None = Field(default=None, unique=True, index=True, max_length=200)
    version: int = 1
    size_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    token_estimate: int = 0
    page_count: int | None = None
    warnings: list[str] = _json()
    status: str = Field(default="active", max_length=20)
    created_at: datetime = _when()
    updated_at: datetime = _when()


class DocumentPublic(DocumentBase):
    """A document as the API and CLI show it."""

    id: str
    source: str
    filename: str
    format: str
    mime_type: str
    content_hash: str
    file_id: str | None
    version: int
    size_bytes: int
    token_estimate: int
    page_count: int | None
    warnings: list[str]
    status: str
    created_at: datetime
    updated_at: datetime


class DocumentsPage(BaseModel):
    data: list[DocumentPublic]
    next_cursor: str | None


class Summary(SQLModel, table=True):
    """The BM25 summary of one uploaded version: its terms (as sorted 64-bit hashes, see
    ``indexing.summary``) with their counts, its number of terms, and the same per passage."""

    __tablename__ = "summaries"

    file_id: str = Field(primary_key=True, max_length=200)
    document_id: str = Field(index=True, max_length=40)
    length: int
    term_hashes: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    term_counts: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    #: Its passages (``indexing.summary.PassageVectors``); empty in a pool not yet re-indexed.
    passage_hashes: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    passage_counts: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    passage_layout: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    #: Each passage's sentence vector (float16), when the pool routes semantically.
    passage_embeddings: bytes | None = Field(default=None, sa_column=Column(LargeBinary))


class Content(SQLModel, table=True):
    """The current version's original bytes and extracted text."""

    __tablename__ = "contents"

    document_id: str = Field(primary_key=True, max_length=40)
    content_hash: str = Field(max_length=64)
    original: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    page_spans: list[list[int]] | None = Field(default=None, sa_column=Column(JSON))
    #: A generated description of this version and questions it answers
    #: (``indexing.expansion``), indexed as one more passage; ``None`` until made.
    expansion: str | None = Field(default=None, sa_column=Column(Text))
    expansion_model: str | None = Field(default=None, max_length=100)
    expansion_input_tokens: int = 0
    expansion_output_tokens: int = 0
    #: Unix time until which one process holds this version to describe it, so that the
    #: others (replicas, a cron ingest) leave it alone; ``None`` or past: no one does.
    expansion_claimed_until: float | None = None


class Change(SQLModel, table=True):
    """One committed change to routing, applied in ``seq`` order by every live index."""

    __tablename__ = "changes"

    seq: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    op: str = Field(max_length=10)  # "upsert" | "delete"
    document_id: str = Field(max_length=40)
    file_id: str | None = Field(default=None, max_length=200)
    at: datetime = _when()


class UploadIntent(SQLModel, table=True):
    """Written before an upload starts, removed when its document commits."""

    __tablename__ = "upload_intents"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True))
    source: str = Field(max_length=2000)
    filename: str = Field(max_length=500)
    content_hash: str = Field(max_length=64)
    owner: str = Field(max_length=200)  # host:pid of the process that uploads
    file_id: str | None = Field(default=None, max_length=200)
    created_at: datetime = _when()


class RetiredFile(SQLModel, table=True):
    """A remote file no document uses any more, kept until its deletion is confirmed."""

    __tablename__ = "retired_files"

    file_id: str = Field(primary_key=True, max_length=200)
    reason: str = Field(max_length=200)
    created_at: datetime = _when()


class PoolMeta(SQLModel, table=True):
    """Pool-wide settings stored with the data (analyzer and BM25 parameters)."""

    __tablename__ = "pool_meta"

    key: str = Field(primary_key=True, max_length=100)
    value: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
