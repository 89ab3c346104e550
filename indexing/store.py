"""The SQL store: SQLite in the data dir by default, PostgreSQL when a URL says so.

Every write that changes what routing sees goes through one function here, commits in one
transaction, and appends to the ``changes`` log, which live indexes (in this process or another)
apply in order. Writes are keyword-only functions shared by the HTTP API, the CLI and tests.
"""

from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, delete, event, func, insert, or_, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import defer
from sqlmodel import Session, SQLModel, col, create_engine, select

from indexing.errors import ConfigurationError, Conflict, DocumentNotFound, InvalidInput
from indexing.filters import Condition, attributes_match
from indexing.index import IndexEntry
from indexing.models import (
    Change,
    Content,
    Document,
    PoolMeta,
    RetiredFile,
    Summary,
    UploadIntent,
    utcnow,
)
from indexing.summary import PassageVectors, TermVector, embeddings_to_bytes

MIGRATIONS = Path(__file__).parent / "migrations"
#: The pool meta entry holding the parameters every stored summary was made under.
PARAMS_KEY = "index_params"
#: The PostgreSQL advisory lock that orders the pool's writers (any constant all processes share).
WRITE_LOCK_KEY = 0x6B706F6F6C  # "kpool"
#: The advisory lock that lets one process at a time migrate the schema.
MIGRATE_LOCK_KEY = WRITE_LOCK_KEY + 1


def readable(doc: Document, groups: Sequence[str] | None) -> bool:
    """Whether a caller in ``groups`` (``None``: no restriction) may read ``doc``: documents
    without groups are open to everyone."""
    return groups is None or not doc.groups or not set(doc.groups).isdisjoint(groups)


def new_document_id() -> str:
    return "doc_" + secrets.token_hex(10)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign-thread use."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    # hide_parameters: a driver error's message must not carry document text into a report.
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def _redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling starts a transaction only at the first write, so a
    # read-then-write is not isolated; transactions are begun explicitly instead (_sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """Put the database in WAL mode. Switching needs a moment alone with the file and SQLite
    does not wait for it (no busy handler), so processes opening a fresh pool together retry."""
    for attempt in range(200):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 199:
                raise
            time.sleep(0.05)


def _sqlite_begin(connection: Any) -> None:
    """``BEGIN IMMEDIATE`` for writers: the database's write lock is taken before the first
    read, so two processes updating one document cannot both read the old version."""
    write = connection.get_execution_options().get(_WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


_WRITE_OPTION = "kpool_write"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (creating it in an empty database)."""
    config = alembic_config()
    # One process at a time: on SQLite the write option begins IMMEDIATE, on PostgreSQL an
    # advisory lock waits for another process's migration before reading the revision.
    with engine.execution_options(**{_WRITE_OPTION: True}).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK_KEY}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def schema_is_current(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


@dataclass(frozen=True)
class NewVersion:
    """Everything ``commit_version`` writes for one uploaded version of a document."""

    source: str
    title: str
    filename: str
    format: str
    mime_type: str
    content_hash: str
    file_id: str
    size_bytes: int
    token_estimate: int
    page_count: int | None
    warnings: list[str]
    tags: list[str]
    groups: list[str]
    attributes: dict[str, Any]
    terms: dict[str, int]
    length: int
    original: bytes
    text: str
    page_spans: list[list[int]] | None
    passages: PassageVectors | None = None
    #: The index parameters the summary was made under: the commit is refused
    #: (``ParamsChanged``) unless they are still the pool's.
    made_under: dict[str, Any] | None = None


class ParamsChanged(Exception):
    """A summary made under parameters the pool no longer has (a re-index began meanwhile);
    ``stored`` is what the pool has now."""

    def __init__(self, stored: dict[str, Any]) -> None:
        super().__init__("the pool's index parameters changed")
        self.stored = stored


class TwinCommitted(Exception):
    """Another process committed the same bytes under another source first: ``twin``, read
    before the transaction that found it was rolled back."""

    def __init__(self, twin: Document) -> None:
        super().__init__(f"same content as {twin.source}")
        self.twin = Document.model_validate(twin.model_dump())


class SummaryOutdated(Exception):
    """A ``Retitled`` summary was made from a version the document has moved on from."""


class SummaryMadeOtherwise(Exception):
    """A description's summary extends a summary other than the one stored: the stored one
    was made under other parameters (a ``kpool reindex`` with new ones under way or done)."""


@dataclass(frozen=True)
class Retitled:
    """A document's summary made again under a new title from the text of the version whose
    file is ``file_id`` (the title is part of what a document's words are)."""

    file_id: str
    terms: dict[str, int]
    length: int
    passages: PassageVectors
    #: Whether the text came with a generated description (``indexing.expansion``).
    expanded: bool = False


@dataclass(frozen=True)
class Expanded:
    """A generated description of the version whose file is ``file_id`` and whose bytes hash
    to ``content_hash``, with the summary made with it under ``title``."""

    document_id: str
    file_id: str
    content_hash: str
    title: str
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    terms: dict[str, int]
    length: int
    passages: PassageVectors
    #: The description passage's sentence vector, when the describing process made one: the
    #: text's passages then keep the vectors they have, and only this one is new.
    description_vector: np.ndarray | None = None
    #: The summary of the text alone under the describing process's parameters
    #: (``indexing.ingest.summarise`` without the description): the stored one must be it.
    based_on: tuple[dict[str, int], int, PassageVectors] | None = None


@dataclass(frozen=True)
class ExpansionClaim:
    """A process's hold on one version while it is described (``Store.claim_expansion``)."""

    #: Unix time at which the claim lapses, and by which it is released.
    until: float
    #: The version held.
    content_hash: str


@dataclass(frozen=True)
class ExpansionDue:
    """A document whose current version has no generated description yet."""

    document_id: str
    file_id: str
    title: str


@dataclass(frozen=True)
class VectorsDue:
    """A document whose passages await their sentence vectors, as its summary stood when read."""

    document_id: str
    file_id: str
    title: str
    layout: bytes


@dataclass(frozen=True)
class Committed:
    document: Document
    created: bool
    replaced_file_id: str | None


class Store:
    """Owns the engine; every method opens and commits its own short transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # SQLite allows one writer; serialising here avoids "database is locked" under threads.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and upgrade the schema in place to the newest migration."""
        engine = make_engine(url)
        try:
            migrate(engine)
        except OperationalError as exc:
            engine.dispose()
            raise ConfigurationError(
                f"cannot open the pool database at {_redact(url)}: {exc.orig}"
            ) from exc
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A session whose work commits atomically (and alone, on SQLite)."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            bind = self.engine.execution_options(**{_WRITE_OPTION: True})
            with Session(bind, expire_on_commit=False) as session, session.begin():
                if self.engine.dialect.name == "postgresql":
                    # Change-log seqs come from a sequence, handed out before commit: two
                    # writers could commit seq n+1 before n, and a refresh in between would skip
                    # n for good. Writers therefore commit one at a time, as on SQLite.
                    session.connection().execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY}
                    )
                yield session
        finally:
            if lock is not None:
                lock.release()

    # ------------------------------------------------------------------------------ metadata

    def get_meta(self, key: str) -> dict[str, Any] | None:
        with self.session() as session:
            row = session.get(PoolMeta, key)
            return None if row is None else dict(row.value)

    def set_meta(self, key: str, value: dict[str, Any]) -> None:
        with self.writing() as session:
            row = session.get(PoolMeta, key)
            if row is None:
                session.add(PoolMeta(key=key, value=value))
            else:
                row.value = value
                session.add(row)

    # ----------------------------------------------------------------------------- documents

    def get_document(self, document_id: str) -> Document:
        with self.session() as session:
            doc = session.get(Document, document_id)
            if doc is None:
                raise DocumentNotFound(f"no document with id {document_id!r}")
            return doc

    def find_document(
        self, *, source: str | None = None, file_id: str | None = None
    ) -> Document | None:
        query = select(Document)
        if source is not None:
            query = query.where(Document.source == source)
        if file_id is not None:
            query = query.where(Document.file_id == file_id)
        with self.session() as session:
            return session.exec(query).first()

    def find_source_or_twin(
        self, *, source: str, content_hash: str
    ) -> tuple[Document | None, Document | None]:
        """In one query: the document at ``source``, and the oldest other document with the
        same content (what ingest needs to decide between add, update and no-op)."""
        query = (
            select(Document)
            .where(or_(col(Document.source) == source, col(Document.content_hash) == content_hash))
            .order_by(col(Document.created_at))
        )
        with self.session() as session:
            rows = list(session.exec(query))
        own = next((d for d in rows if d.source == source), None)
        twin = next((d for d in rows if d.source != source), None)
        return own, twin

    def count_documents(self) -> int:
        with self.session() as session:
            return int(session.exec(select(func.count()).select_from(Document)).one())

    def list_documents(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        tag: str | None = None,
        source_prefix: str | None = None,
        readable_by: Sequence[str] | None = None,
        attributes: Mapping[str, Condition] | None = None,
    ) -> tuple[list[Document], str | None]:
        """A page of documents ordered by id, and the cursor of the next page (or None).

        ``readable_by``: only documents open to everyone or to one of these groups.
        ``attributes``: only documents meeting every condition (``indexing.filters``)."""
        query = select(Document).order_by(col(Document.id))
        if cursor:
            query = query.where(col(Document.id) > decode_cursor(cursor))
        if source_prefix:
            query = query.where(col(Document.source).startswith(source_prefix, autoescape=True))
        with self.session() as session:
            if tag is None and readable_by is None and not attributes:
                rows = list(session.exec(query.limit(limit + 1)))
            else:
                # Tags, groups and attributes are JSON; filtering in Python keeps one query for
                # SQLite and PostgreSQL, and compares values as routing does. Read on until
                # limit + 1 rows match, so a page is never cut short by documents that do not.
                rows = []
                with session.exec(query.execution_options(yield_per=500)) as stream:
                    for doc in stream:
                        if (
                            (tag is None or tag in doc.tags)
                            and readable(doc, readable_by)
                            and attributes_match(attributes or {}, doc.attributes or {})
                        ):
                            rows.append(doc)
                            if len(rows) > limit:
                                break
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (encode_cursor(rows[-1].id) if more and rows else None)

    def all_sources(self) -> list[tuple[str, str]]:
        """(source, document id) for every document."""
        with self.session() as session:
            return [(s, i) for s, i in session.exec(select(Document.source, Document.id))]

    def get_content(self, document_id: str) -> Content:
        """The current version's text and description, without its original bytes (a PDF's
        can be tens of megabytes, and answering, describing and vectorising read only text):
        ``get_original`` reads those."""
        query = (
            select(Content)
            .where(col(Content.document_id) == document_id)
            .options(defer(Content.original))  # type: ignore[arg-type]
        )
        with self.session() as session:
            content = session.exec(query).first()
            if content is None:
                raise DocumentNotFound(f"no stored content for document {document_id!r}")
            return content

    def get_original(self, document_id: str) -> bytes:
        """The bytes the current version was ingested from."""
        query = select(Content.original).where(col(Content.document_id) == document_id)
        with self.session() as session:
            original = session.exec(query).first()
            if original is None:
                raise DocumentNotFound(f"no stored content for document {document_id!r}")
            return original

    def excerpts(self, wanted: Sequence[tuple[str, int, int]]) -> list[str]:
        """``text[start:end]`` of each (document id, start, end), cut in the database so a long
        document's text is never loaded whole; ``""`` for a document that is gone."""
        found = []
        with self.session() as session:
            for document_id, start, end in wanted:
                piece = func.substr(Content.text, start + 1, max(0, end - start))
                row = session.exec(select(piece).where(Content.document_id == document_id)).first()
                found.append(row or "")
        return found

    def commit_version(self, *, version: NewVersion, intent_id: int | None) -> Committed:
        """Make ``version`` the document's current one, atomically.

        Creates the document if its source is new; otherwise bumps its version, swaps the
        summary and content, and retires the previous remote file. Logs the change and clears
        the upload intent in the same transaction.
        """
        try:
            return self._commit_version(version, intent_id)
        except IntegrityError:
            # Another writer created the same source between our read and our insert:
            # run again, now as an update of the document it created.
            return self._commit_version(version, intent_id)

    def _commit_version(self, v: NewVersion, intent_id: int | None) -> Committed:
        with self.writing() as session:
            _check_made_under(session, v.made_under)
            doc = session.exec(
                select(Document).where(Document.source == v.source).with_for_update()
            ).first()
            created = doc is None
            if created:
                # Checked again here, where writers take turns: two processes can each have
                # found no twin for the same bytes under two names.
                twin = session.exec(
                    select(Document).where(
                        col(Document.content_hash) == v.content_hash,
                        col(Document.source) != v.source,
                    )
                ).first()
                if twin is not None:
                    raise TwinCommitted(twin)
            old_file_id = None if doc is None else doc.file_id
            now = utcnow()
            if doc is None:
                doc = Document(id=new_document_id(), source=v.source, created_at=now, **_fields(v))
            else:
                for name, value in _fields(v).items():
                    setattr(doc, name, value)
                doc.version += 1
            doc.file_id = v.file_id
            doc.status = "active"
            doc.updated_at = now
            session.add(doc)
            session.flush()
            # The rows around the document go in as plain statements: this runs once per
            # upload, and the ORM's unit of work costs more than the SQL itself.
            tables = SQLModel.metadata.tables
            run = session.connection().execute
            if old_file_id is not None and old_file_id != v.file_id:
                run(delete(tables["summaries"]).where(tables["summaries"].c.file_id == old_file_id))
                run(
                    delete(tables["retired_files"]).where(
                        tables["retired_files"].c.file_id == old_file_id
                    )
                )
                run(
                    insert(tables["retired_files"]).values(
                        file_id=old_file_id, reason="replaced by a new version", created_at=now
                    )
                )
            hashes, counts = TermVector.from_counts(v.terms).to_bytes()
            run(
                insert(tables["summaries"]).values(
                    file_id=v.file_id,
                    document_id=doc.id,
                    length=v.length,
                    term_hashes=hashes,
                    term_counts=counts,
                    **_passage_columns(v.passages),
                )
            )
            run(delete(tables["contents"]).where(tables["contents"].c.document_id == doc.id))
            run(
                insert(tables["contents"]).values(
                    document_id=doc.id,
                    content_hash=v.content_hash,
                    original=v.original,
                    text=v.text,
                    page_spans=v.page_spans,
                )
            )
            run(
                insert(tables["changes"]).values(
                    op="upsert", document_id=doc.id, file_id=v.file_id, at=now
                )
            )
            if intent_id is not None:
                intents = tables["upload_intents"]
                run(delete(intents).where(intents.c.id == intent_id))
            return Committed(doc, created, old_file_id if old_file_id != v.file_id else None)

    def update_metadata(
        self,
        *,
        document_id: str,
        title: str | None = None,
        tags: Sequence[str] | None = None,
        groups: Sequence[str] | None = None,
        attributes: dict[str, Any] | None = None,
        retitled: Retitled | None = None,
        title_was: str | None = None,
        made_under: dict[str, Any] | None = None,
    ) -> Document:
        """Change what routing filters on without a new upload. A new title comes with the
        summary made under it (``retitled``, from ``indexing.ingest.update_metadata``), and
        ``title_was``, the title it was read with. If the document has moved on since (another
        version, another title), nothing is written and ``SummaryOutdated`` is raised, for
        the caller to read it again. ``made_under``: the parameters ``retitled`` was made
        under, refused (``ParamsChanged``) unless they are still the pool's."""
        with self.writing() as session:
            if retitled is not None:
                _check_made_under(session, made_under)
            doc = session.get(Document, document_id)
            if doc is None:
                raise DocumentNotFound(f"no document with id {document_id!r}")
            if title_was is not None and doc.title != title_was:
                raise SummaryOutdated(f"{document_id} was retitled meanwhile")
            if title is not None and title != doc.title:
                doc.title = title
                summary = session.get(Summary, doc.file_id) if doc.file_id else None
                if retitled is not None and (
                    retitled.file_id != doc.file_id
                    or retitled.expanded != self._expanded(session, document_id)
                ):
                    raise SummaryOutdated(f"{document_id} moved on from {retitled.file_id}")
                if summary is not None:
                    if retitled is not None:
                        vector = TermVector.from_counts(retitled.terms)
                        summary.term_hashes, summary.term_counts = vector.to_bytes()
                        summary.length = retitled.length
                        for name, value in _passage_columns(retitled.passages).items():
                            setattr(summary, name, value)
                    # A third of each passage's vector is the title's: computed again, by
                    # ``indexing.ingest.vectorise``; the document routes by its words meanwhile.
                    summary.passage_embeddings = None
                    session.add(summary)
            if tags is not None:
                doc.tags = sorted(set(tags))
            if groups is not None:
                doc.groups = sorted(set(groups))
            if attributes is not None:
                doc.attributes = attributes
            doc.updated_at = utcnow()
            session.add(doc)
            session.add(Change(op="upsert", document_id=doc.id, file_id=doc.file_id))
            return doc

    def move_source(
        self, *, document_id: str, source_was: str, source: str, filename: str
    ) -> Document:
        """Give a document another source and the filename shown for it (its file moved), if
        it still has ``source_was`` and no other document has ``source``; else ``Conflict``."""
        with self.writing() as session:
            doc = session.get(Document, document_id)
            if doc is None:
                raise DocumentNotFound(f"no document with id {document_id!r}")
            if doc.source != source_was:
                raise Conflict(f"{document_id} moved from {source_was} meanwhile")
            taken = session.exec(select(Document.id).where(col(Document.source) == source))
            if taken.first() is not None:
                raise Conflict(f"another document already has the source {source}")
            doc.source = source
            doc.filename = filename
            doc.updated_at = utcnow()
            session.add(doc)
            session.add(Change(op="upsert", document_id=doc.id, file_id=doc.file_id))
            return doc

    def delete_document(self, *, document_id: str) -> Document:
        """Remove the document from routing (logged) and retire its remote file."""
        with self.writing() as session:
            doc = session.get(Document, document_id)
            if doc is None:
                raise DocumentNotFound(f"no document with id {document_id!r}")
            session.exec(_delete(Summary, col(Summary.document_id) == document_id))
            session.exec(_delete(Content, col(Content.document_id) == document_id))
            if doc.file_id is not None:
                session.merge(RetiredFile(file_id=doc.file_id, reason="document deleted"))
            session.add(Change(op="delete", document_id=document_id, file_id=doc.file_id))
            session.delete(doc)
            return doc

    def replace_file_id(self, *, document_id: str, old_file_id: str, new_file_id: str) -> None:
        """Point a document at a re-uploaded copy of the same content."""
        with self.writing() as session:
            doc = session.get(Document, document_id)
            if doc is None or doc.file_id != old_file_id:
                raise DocumentNotFound(f"document {document_id!r} no longer uses {old_file_id}")
            summary = session.get(Summary, old_file_id)
            if summary is None:
                raise DocumentNotFound(f"no summary for {old_file_id}")
            session.add(
                Summary(
                    file_id=new_file_id,
                    document_id=document_id,
                    length=summary.length,
                    term_hashes=summary.term_hashes,
                    term_counts=summary.term_counts,
                    passage_hashes=summary.passage_hashes,
                    passage_counts=summary.passage_counts,
                    passage_layout=summary.passage_layout,
                    passage_embeddings=summary.passage_embeddings,
                )
            )
            session.delete(summary)
            doc.file_id = new_file_id
            doc.status = "active"
            doc.updated_at = utcnow()
            session.add(doc)
            session.merge(RetiredFile(file_id=old_file_id, reason="replaced by a re-upload"))
            session.add(Change(op="upsert", document_id=document_id, file_id=new_file_id))

    def update_summary(
        self,
        *,
        file_id: str,
        terms: dict[str, int],
        length: int,
        passages: PassageVectors | None = None,
        title: str | None = None,
        expanded: bool | None = None,
    ) -> bool:
        """Replace a summary in place (after a re-index) and log it for live indexes. With
        ``title``, the one the summary was made under, and ``expanded``, whether with a
        generated description: only if the document still has that title and that
        description (they bring their own summaries); returns whether it was written."""
        with self.writing() as session:
            summary = session.get(Summary, file_id)
            if summary is None:
                raise DocumentNotFound(f"no summary for {file_id}")
            if title is not None:
                doc = session.get(Document, summary.document_id)
                if doc is None or doc.title != title:
                    return False
            if expanded is not None and expanded != self._expanded(session, summary.document_id):
                return False
            summary.term_hashes, summary.term_counts = TermVector.from_counts(terms).to_bytes()
            summary.length = length
            for name, value in _passage_columns(passages).items():
                setattr(summary, name, value)
            session.add(summary)
            session.add(Change(op="upsert", document_id=summary.document_id, file_id=file_id))
            return True

    @staticmethod
    def _expanded(session: Session, document_id: str) -> bool:
        """Whether the document's text has a (non-empty) generated description."""
        contents = SQLModel.metadata.tables["contents"]
        query = sa_select(contents.c.expansion).where(contents.c.document_id == document_id)
        return bool(session.connection().execute(query).scalar())

    def awaiting_expansion(
        self, *, limit: int, after: str | None = None, descending: bool = False
    ) -> list[ExpansionDue]:
        """Documents whose current version has no generated description yet and that no
        process holds a claim on (``claim_expansion``), in document id order from ``after``
        (descending: the other way; the partial index ``ix_contents_unexpanded`` holds just
        the undescribed)."""
        contents = SQLModel.metadata.tables["contents"]
        docs = SQLModel.metadata.tables["documents"]
        order = contents.c.document_id
        query = (
            sa_select(docs.c.id, docs.c.file_id, docs.c.title)
            .join_from(contents, docs, docs.c.id == contents.c.document_id)
            .where(
                contents.c.expansion.is_(None),
                docs.c.file_id.is_not(None),
                _unclaimed(contents, time.time()),
            )
            .order_by(order.desc() if descending else order)
            .limit(limit)
        )
        if after is not None:
            query = query.where(order < after if descending else order > after)
        with self.engine.connect() as connection:
            return [
                ExpansionDue(document_id=row[0], file_id=row[1], title=row[2])
                for row in connection.execute(query)
            ]

    def add_expansion(self, expanded: Expanded) -> bool:
        """Store a version's generated description and the summary made with it, only if the
        document still has that version (``file_id``, ``content_hash``) and title and no
        description yet; otherwise nothing is written and the answer is False. The text's
        passages keep their sentence vectors, if they have them and the description's vector
        came along (``_described_vectors``); otherwise every passage waits for its vector again
        (``indexing.ingest.vectorise``). Logged for live indexes."""
        e = expanded
        with self.writing() as session:
            doc = session.get(Document, e.document_id)
            content = session.get(Content, e.document_id)
            summary = session.get(Summary, e.file_id)
            current = (
                doc is not None
                and content is not None
                and summary is not None
                and doc.file_id == e.file_id
                and doc.title == e.title
                and content.content_hash == e.content_hash
                and content.expansion is None
            )
            if not current:
                return False
            assert content is not None and summary is not None
            if e.based_on is not None and not _summary_is(summary, *e.based_on):
                raise SummaryMadeOtherwise(
                    f"the stored summary of {e.document_id} was made under other parameters"
                )
            content.expansion = e.text
            content.expansion_model = e.model
            content.expansion_input_tokens = e.input_tokens
            content.expansion_output_tokens = e.output_tokens
            summary.term_hashes, summary.term_counts = TermVector.from_counts(e.terms).to_bytes()
            summary.length = e.length
            passages = _described_vectors(summary, e.passages, e.description_vector)
            for name, value in _passage_columns(passages).items():
                setattr(summary, name, value)
            session.add(content)
            session.add(summary)
            session.add(Change(op="upsert", document_id=e.document_id, file_id=e.file_id))
            return True

    def mark_undescribed(
        self,
        *,
        document_id: str,
        content_hash: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
    ) -> bool:
        """Record that the model would not describe this version of the document (an empty
        description, with what asking cost), so that it is not asked again; only if the
        document still has that version and no description. Routing is unchanged."""
        contents = SQLModel.metadata.tables["contents"]
        statement = (
            update(contents)
            .where(
                contents.c.document_id == document_id,
                contents.c.content_hash == content_hash,
                contents.c.expansion.is_(None),
            )
            .values(
                expansion="",
                expansion_model=model,
                expansion_input_tokens=input_tokens,
                expansion_output_tokens=output_tokens,
            )
        )
        with self.writing() as session:
            return bool(session.connection().execute(statement).rowcount == 1)

    def claim_expansion(
        self, document_id: str, *, file_id: str, seconds: float
    ) -> ExpansionClaim | None:
        """Hold the document's version whose file is ``file_id`` for ``seconds`` while this
        process asks for its description; returns the claim (for ``release_expansion``, and
        the content hash of the version held), or ``None`` if that is no longer the document's
        version, it is described already, or another process holds an unlapsed claim. One
        statement decides, so two processes cannot both win."""
        contents = SQLModel.metadata.tables["contents"]
        docs = SQLModel.metadata.tables["documents"]
        current = sa_select(docs.c.id).where(docs.c.id == document_id, docs.c.file_id == file_id)
        now = time.time()
        until = now + seconds
        statement = (
            update(contents)
            .where(
                contents.c.document_id == document_id,
                contents.c.document_id.in_(current),
                contents.c.expansion.is_(None),
                _unclaimed(contents, now),
            )
            .values(expansion_claimed_until=until)
        )
        held = sa_select(contents.c.content_hash).where(
            contents.c.document_id == document_id, contents.c.expansion_claimed_until == until
        )
        with self.writing() as session:
            connection = session.connection()
            if connection.execute(statement).rowcount != 1:
                return None
            content_hash: str = connection.execute(held).scalar_one()
        return ExpansionClaim(until=until, content_hash=content_hash)

    def release_expansion(self, document_id: str, claim: ExpansionClaim) -> None:
        """Give up a claim (``claim_expansion``) once the request is over, so that a document
        left undescribed can be asked about again without waiting for it to lapse. Only that
        claim: a newer version may be another process's by now."""
        contents = SQLModel.metadata.tables["contents"]
        statement = (
            update(contents)
            .where(
                contents.c.document_id == document_id,
                contents.c.expansion_claimed_until == claim.until,
            )
            .values(expansion_claimed_until=None)
        )
        with self.writing() as session:
            session.connection().execute(statement)

    def count_awaiting_expansion(self) -> int:
        """Documents whose current version has no generated description yet."""
        contents = SQLModel.metadata.tables["contents"]
        query = sa_select(func.count()).select_from(contents).where(contents.c.expansion.is_(None))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def awaiting_vectors(
        self, *, limit: int, after: str | None = None, descending: bool = False
    ) -> list[VectorsDue]:
        """Documents whose passages have no sentence vectors yet (semantic routing computes
        them after ingest, ``indexing.ingest.vectorise``), in file id order from ``after``
        (descending: the other way, so that two processes at work meet in the middle)."""
        sums = SQLModel.metadata.tables["summaries"]
        docs = SQLModel.metadata.tables["documents"]
        query = (
            sa_select(docs.c.id, sums.c.file_id, docs.c.title, sums.c.passage_layout)
            .join_from(docs, sums, sums.c.file_id == docs.c.file_id)
            .where(_awaits_vectors(sums))
            .order_by(sums.c.file_id.desc() if descending else sums.c.file_id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(sums.c.file_id < after if descending else sums.c.file_id > after)
        with self.engine.connect() as connection:
            return [
                VectorsDue(document_id=row[0], file_id=row[1], title=row[2], layout=row[3])
                for row in connection.execute(query)
            ]

    def has_vectors(self, file_id: str) -> bool:
        """Whether the summary of ``file_id`` holds its passages' sentence vectors."""
        sums = SQLModel.metadata.tables["summaries"]
        query = sa_select(sums.c.file_id).where(
            sums.c.file_id == file_id, sums.c.passage_embeddings.is_not(None)
        )
        with self.engine.connect() as connection:
            return connection.execute(query).first() is not None

    def count_awaiting_vectors(self) -> int:
        sums = SQLModel.metadata.tables["summaries"]
        query = sa_select(func.count()).select_from(sums).where(_awaits_vectors(sums))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def add_vectors(self, *, due: VectorsDue, vectors: np.ndarray) -> bool:
        """Store the sentence vectors of a document's passages, made from its text, its
        passages' spans in ``due.layout`` and its title ``due.title``; only the vectors, and
        only if neither the summary nor the title changed since ``due`` was read (a new
        version, a re-index, a new title, another process's vectors): otherwise nothing is
        written and the answer is False. Logged for live indexes like any update."""
        sums = SQLModel.metadata.tables["summaries"]
        docs = SQLModel.metadata.tables["documents"]
        titled = sa_select(docs.c.id).where(docs.c.id == due.document_id, docs.c.title == due.title)
        unchanged = (
            (sums.c.file_id == due.file_id)
            & (sums.c.passage_layout == due.layout)
            & sums.c.passage_embeddings.is_(None)
            & sums.c.document_id.in_(titled)
        )
        blob = embeddings_to_bytes(vectors)
        with self.writing() as session:
            statement = update(sums).where(unchanged).values(passage_embeddings=blob)
            if session.connection().execute(statement).rowcount != 1:
                return False
            session.add(Change(op="upsert", document_id=due.document_id, file_id=due.file_id))
            return True

    def mark_status(self, *, document_id: str, status: str) -> None:
        with self.writing() as session:
            doc = session.get(Document, document_id)
            if doc is not None:
                doc.status = status
                session.add(doc)

    def referenced_file_ids(self) -> set[str]:
        with self.session() as session:
            ids = session.exec(select(Document.file_id).where(col(Document.file_id).is_not(None)))
            return {i for i in ids if i is not None}

    # ------------------------------------------------------------------- the change log / index

    def latest_change(self) -> int:
        with self.session() as session:
            latest = session.exec(select(func.max(Change.seq))).one()
            return int(latest or 0)

    def changes_since(self, seq: int, *, limit: int = 10_000) -> list[Change]:
        with self.session() as session:
            query = select(Change).where(col(Change.seq) > seq).order_by(col(Change.seq))
            return list(session.exec(query.limit(limit)))

    def index_entries(self, document_ids: Sequence[str] | None = None) -> Iterator[IndexEntry]:
        """The routing view of documents (all, or those given), streamed from one query.

        Plain columns rather than ORM objects: loading a large pool is dominated by per-row
        overhead, and the index needs nothing else.
        """
        docs = SQLModel.metadata.tables["documents"]
        sums = SQLModel.metadata.tables["summaries"]
        query = sa_select(
            sums.c.file_id,
            docs.c.id,
            docs.c.title,
            sums.c.length,
            docs.c.token_estimate,
            docs.c.tags,
            docs.c.groups,
            docs.c.attributes,
            sums.c.term_hashes,
            sums.c.term_counts,
            sums.c.passage_hashes,
            sums.c.passage_counts,
            sums.c.passage_layout,
            sums.c.passage_embeddings,
        ).join_from(docs, sums, sums.c.file_id == docs.c.file_id)
        if document_ids is not None:
            query = query.where(docs.c.id.in_(list(document_ids)))
        with self.engine.connect() as connection:
            rows = connection.execution_options(yield_per=5000).execute(query)
            row: Any
            for row in rows:
                file_id, doc_id, title, length, tokens, tags, groups, attrs = row[:8]
                hashes, counts, passage_hashes, passage_counts, passage_layout, embeddings = row[8:]
                yield IndexEntry(
                    file_id=file_id,
                    document_id=doc_id,
                    title=title,
                    length=length,
                    token_estimate=tokens,
                    tags=frozenset(tags),
                    groups=frozenset(groups),
                    attributes=attrs or {},
                    vector=TermVector.from_bytes(hashes, counts),
                    passages=None
                    if passage_layout is None
                    else PassageVectors.from_bytes(
                        passage_hashes, passage_counts, passage_layout, embeddings
                    ),
                )

    # ----------------------------------------------------------- upload intents, retired files

    # Intents are written on every upload: plain statements, no ORM unit of work.

    def record_intent(self, *, source: str, filename: str, content_hash: str, owner: str) -> int:
        intents = SQLModel.metadata.tables["upload_intents"]
        row = {
            "source": source,
            "filename": filename,
            "content_hash": content_hash,
            "owner": owner,
            "created_at": utcnow(),
        }
        with self.writing() as session:
            result = session.connection().execute(insert(intents).values(row))
            (intent_id,) = result.inserted_primary_key or (None,)
            assert intent_id is not None
            return int(intent_id)

    def set_intent_file(self, *, intent_id: int, file_id: str) -> None:
        intents = SQLModel.metadata.tables["upload_intents"]
        with self.writing() as session:
            session.connection().execute(
                update(intents).where(intents.c.id == intent_id).values(file_id=file_id)
            )

    def drop_intent(self, *, intent_id: int) -> None:
        with self.writing() as session:
            session.exec(_delete(UploadIntent, col(UploadIntent.id) == intent_id))

    def intents(self) -> list[UploadIntent]:
        with self.session() as session:
            return list(session.exec(select(UploadIntent).order_by(col(UploadIntent.id))))

    def retired_files(self) -> list[RetiredFile]:
        with self.session() as session:
            return list(session.exec(select(RetiredFile)))

    def forget_retired(self, *, file_id: str) -> None:
        with self.writing() as session:
            session.exec(_delete(RetiredFile, col(RetiredFile.file_id) == file_id))


def _awaits_vectors(sums: Any) -> Any:
    """Summaries with passages but no vectors (the partial index ``ix_summaries_awaiting``
    holds just these, so the idle vectoriser's look costs nothing in a large pool)."""
    return sums.c.passage_layout.is_not(None) & sums.c.passage_embeddings.is_(None)


def _described_vectors(
    summary: Summary, passages: PassageVectors, description: np.ndarray | None
) -> PassageVectors:
    """A described document's passages (its text's, then its description's) with vectors, if
    the stored summary has them for exactly the text's passages (same layout; the title is
    unchanged, ``Store.add_expansion`` checks) and ``description`` is the last one's;
    otherwise without, for ``vectorise`` to make them all."""
    stored, layout = summary.passage_embeddings, summary.passage_layout
    if description is None or stored is None or layout is None or len(passages) < 1:
        return passages
    text_layout = passages.layout[:-1].astype("<u4").tobytes()
    width = description.reshape(-1).shape[0]
    rows = len(passages) - 1
    if text_layout != layout or len(stored) != 2 * rows * width:
        return passages
    kept = np.frombuffer(stored, dtype="<f2").reshape(rows, width)
    return passages.with_embeddings(np.vstack([kept, description.reshape(1, width)]))


def _summary_is(
    summary: Summary, terms: dict[str, int], length: int, passages: PassageVectors
) -> bool:
    """Whether the stored summary holds these terms, length and passages."""
    hashes, counts = TermVector.from_counts(terms).to_bytes()
    layout = passages.to_bytes()[2]
    return (
        summary.term_hashes == hashes
        and summary.term_counts == counts
        and summary.length == length
        and (summary.passage_layout or b"") == layout
    )


def _unclaimed(contents: Any, now: float) -> Any:
    """Content rows no process holds a live claim on (``Store.claim_expansion``)."""
    claimed = contents.c.expansion_claimed_until
    return or_(claimed.is_(None), claimed < now)


def _delete(table: type[SQLModel], condition: Any) -> Any:
    """A DELETE by key. No ORM objects of these rows live in the sessions here, so the
    session is not searched for them (``synchronize_session``), which costs per statement."""
    return delete(table).where(condition).execution_options(synchronize_session=False)


def _passage_columns(passages: PassageVectors | None) -> dict[str, bytes | None]:
    names = ("passage_hashes", "passage_counts", "passage_layout", "passage_embeddings")
    values = (None, None, None, None) if passages is None else passages.to_bytes()
    return dict(zip(names, values, strict=True))


def _fields(v: NewVersion) -> dict[str, Any]:
    return {
        "title": v.title,
        "filename": v.filename,
        "format": v.format,
        "mime_type": v.mime_type,
        "content_hash": v.content_hash,
        "size_bytes": v.size_bytes,
        "token_estimate": v.token_estimate,
        "page_count": v.page_count,
        "warnings": list(v.warnings),
        "tags": sorted(set(v.tags)),
        "groups": sorted(set(v.groups)),
        "attributes": dict(v.attributes),
    }


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        after = json.loads(base64.urlsafe_b64decode(padded))["after"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"invalid cursor {cursor!r}") from exc
    if not isinstance(after, str):
        raise InvalidInput(f"invalid cursor {cursor!r}")
    return after


def _check_made_under(session: Session, made_under: dict[str, Any] | None) -> None:
    """Refuse a summary made under other parameters than the pool's, reading them locked: a
    re-index that marks the pool (``Pool.begin_reindex``) waits for this transaction, or this
    one sees its mark."""
    if made_under is None:
        return
    # A shared lock: commits do not wait for each other, only a re-index's mark for them.
    query = select(PoolMeta).where(col(PoolMeta.key) == PARAMS_KEY).with_for_update(read=True)
    row = session.exec(query).first()
    if row is not None and dict(row.value) != made_under:
        raise ParamsChanged(dict(row.value))
