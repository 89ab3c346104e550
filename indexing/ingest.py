"""Putting one document into the pool, replacing it, removing it, and finishing crashed work.

The order of steps is what makes ingest safe to kill at any point:

1. extract and summarise (nothing written yet; a bad file fails here);
2. record an *upload intent* (committed) — so a crash after the upload is recognisable;
3. upload to the Files backend, then note the new file id on the intent;
4. commit the document, its summary and content, the change-log entry and the intent's removal
   in one transaction; routing picks the change up from the log;
5. delete the replaced remote file (it was recorded as *retired* in step 4, so a failure here
   is retried later).

``recover`` finishes what a killed run left: it deletes remote files of intents that never
committed and retries retired deletions.

With semantic routing on, the passages' sentence vectors are not computed in step 1: the
model reads about ten passages a second, a hundred times slower than the rest of ingest. A
document routes by its words as soon as it commits, and ``vectorise`` gives it its vectors
afterwards (the server does so in the background, ``kpool ingest`` and ``kpool reindex`` before
they exit); storing them is one more logged change, so live indexes pick them up like any other.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import PurePath
from typing import Any, Literal

from indexing.attributes import check_attributes
from indexing.errors import (
    Conflict,
    DocumentNotFound,
    FileTooLarge,
    IndexParamsMismatch,
    InvalidInput,
    PoolError,
    StoreUnavailable,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from indexing.extract import Extracted, check_upload, extract, upload_payload
from indexing.filenames import check_labels, check_source, clean_title, sanitise_filename
from indexing.files import RemoteFile
from indexing.models import Document, UploadIntent
from indexing.passages import Passage, PassageParams, passage_text, split_passages
from indexing.pool import Pool, describe_mismatch
from indexing.semantic import passage_vectors
from indexing.store import (
    NewVersion,
    ParamsChanged,
    Retitled,
    SummaryOutdated,
    TwinCommitted,
    VectorsDue,
)
from indexing.summary import PassageVectors, passage_spans

log = logging.getLogger(__name__)

Status = Literal["added", "updated", "unchanged", "failed", "pruned"]

#: Rough tokens per PDF page beyond its text (each page is also sent as an image).
PDF_PAGE_TOKENS = 1_500
#: How long after its intent an upload can land (well beyond the SDK's timeouts and retries).
UPLOAD_WINDOW = timedelta(minutes=15)
#: How far this machine's clock and the Files API's may disagree. Kept small: a wider window
#: reaches further into same-named uploads of other deployments sharing the API key.
CLOCK_SKEW = timedelta(minutes=3)
#: Characters per token, a conservative average for English prose.
CHARS_PER_TOKEN = 4.0


def owner() -> str:
    """``host:pid`` of this process, for upload intents. Read at each call, not at import: a
    worker forked after import must not record its parent's pid, or ``recover`` would think
    the worker's abandoned uploads still have a live owner."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class IngestRequest:
    """One document to put in the pool. ``source`` is its identity (a path, or a name);
    ``content_type`` is the type an upload declared for the file, if any."""

    source: str
    data: bytes
    filename: str | None = None
    title: str | None = None
    tags: Sequence[str] = ()
    groups: Sequence[str] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    content_type: str | None = None

    @property
    def name(self) -> str:
        """The filename to store, show and upload: sanitised, "" when nothing usable is left."""
        return sanitise_filename(self.filename or PurePath(self.source).name)


@dataclass(frozen=True)
class Outcome:
    """What happened to one document; ``reason`` explains failures and skips."""

    source: str
    status: Status
    document_id: str | None = None
    file_id: str | None = None
    title: str | None = None
    reason: str = ""
    warnings: tuple[str, ...] = ()
    #: The error behind a ``failed`` status, for callers that map its kind (an HTTP status).
    error: PoolError | None = field(default=None, compare=False, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "status": self.status,
            "document_id": self.document_id,
            "file_id": self.file_id,
            "title": self.title,
            "reason": self.reason,
            "warnings": list(self.warnings),
        }


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def estimate_tokens(extracted: Extracted) -> int:
    """What the document will cost in a request, roughly: text plus page images for PDFs."""
    pages = len(extracted.page_spans or ())
    return math.ceil(len(extracted.text) / CHARS_PER_TOKEN) + PDF_PAGE_TOKENS * pages


class _KeyedLocks:
    """One lock per key, forgotten once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users = self._locks[key][1] - 1
                if users:
                    self._locks[key] = (lock, users)
                else:
                    del self._locks[key]


#: Ingests of identical bytes take turns within a process, so that of two copies in one
#: concurrent bulk run the second finds the first as its twin instead of both being added.
_same_content = _KeyedLocks()


def ingest(pool: Pool, request: IngestRequest, *, dry_run: bool = False) -> Outcome:
    """Add, update or leave alone one document; never raises for a bad file (see ``reason``)."""
    digest = content_hash(request.data)
    try:
        with _same_content.hold(digest):
            return _ingest(pool, request, digest, dry_run=dry_run)
    except PoolError as exc:
        return Outcome(request.source, "failed", reason=str(exc), error=_detached(exc))


def _detached(exc: PoolError) -> PoolError:
    """``exc`` without its traceback and chained errors: a bulk report keeps every outcome, and
    their frames would keep each failed file's bytes alive."""
    exc.__traceback__ = exc.__cause__ = exc.__context__ = None
    return exc


def _ingest(pool: Pool, request: IngestRequest, digest: str, *, dry_run: bool) -> Outcome:
    check_source(request.source)
    check_labels(request.tags, request.groups)
    check_attributes(request.attributes)
    if request.title:  # a manifest's or a script's title is shown as any title is
        request = replace(request, title=clean_title(request.title)[:MAX_TITLE_CHARS] or None)
    if not request.name:
        raise InvalidInput(f"{request.source}: no usable filename (e.g. policy.pdf)")
    # Before anything is looked up, so that the same bytes under a name or type they do not
    # match are refused even when they are already in the pool.
    check_upload(request.name, request.data, request.content_type, pool.config.limits)
    existing, twin = pool.store.find_source_or_twin(source=request.source, content_hash=digest)
    if existing is not None and existing.content_hash == digest:
        return _metadata_only(pool, existing, request, dry_run=dry_run)
    if existing is None and twin is not None:
        return _twin_outcome(request.source, twin)
    extracted = extract(
        request.name, request.data, pool.config.limits, declared_type=request.content_type
    )
    check_attributes(extracted.metadata, where=f"{request.name}: front matter")
    attributes = {**extracted.metadata, **request.attributes}
    if existing is not None:
        # A new version keeps who may see it, how it is tagged and what else is said of it
        # unless the request says otherwise: a cron run without --group must not make a
        # restricted document public, nor one without attributes drop those set by hand.
        # The new file's own front matter wins over what is kept.
        request = replace(
            request,
            tags=request.tags or tuple(existing.tags),
            groups=request.groups or tuple(existing.groups),
        )
        if not request.attributes:
            kept = _given_apart_from_file(pool, existing, replaced=extracted.metadata)
            attributes = {**kept, **extracted.metadata}
    check_attributes(attributes)
    version = _new_version(pool, request, extracted, digest, attributes)
    status: Status = "added" if existing is None else "updated"
    if dry_run:
        return Outcome(request.source, status, title=version.title, reason="dry run")
    pool.check_still_own_params()  # before paying for the upload; the commit checks again
    remote, intent_id = _upload(pool, request, extracted, digest)
    try:
        committed = pool.store.commit_version(
            version=replace(version, file_id=remote.id), intent_id=intent_id
        )
    except ParamsChanged as exc:  # a re-index began during the upload
        _abandon_upload(pool, remote.id, intent_id)
        wanted = pool.config.index_params()
        raise IndexParamsMismatch(describe_mismatch(exc.stored, wanted)) from None
    except TwinCommitted as exc:  # another process added the same bytes meanwhile
        _abandon_upload(pool, remote.id, intent_id)
        return _twin_outcome(request.source, exc.twin)
    pool.refresh()
    if committed.replaced_file_id:
        delete_remote(pool, committed.replaced_file_id)
    return Outcome(
        request.source,
        status,
        document_id=committed.document.id,
        file_id=remote.id,
        title=committed.document.title,
        warnings=extracted.warnings,
    )


def _twin_outcome(source: str, twin: Document) -> Outcome:
    """A file whose bytes ``twin`` already holds under another source: nothing to add."""
    return Outcome(
        source,
        "unchanged",
        document_id=twin.id,
        file_id=twin.file_id,
        title=twin.title,
        reason=f"same content as {twin.source}",
    )


def _metadata_only(pool: Pool, doc: Document, request: IngestRequest, *, dry_run: bool) -> Outcome:
    changes = _metadata_changes(doc, request)
    if not changes:
        return Outcome(request.source, "unchanged", doc.id, doc.file_id, doc.title)
    if not dry_run:
        doc = update_metadata(pool, document_id=doc.id, **changes)
        pool.refresh()
    return Outcome(
        request.source, "updated", doc.id, doc.file_id, doc.title, reason="metadata changed"
    )


#: Longest title kept; longer ones are cut.
MAX_TITLE_CHARS = 500
#: Reads of a document a title change makes before giving up to concurrent changes.
RETITLE_ATTEMPTS = 5


def update_metadata(
    pool: Pool,
    *,
    document_id: str,
    title: str | None = None,
    tags: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    attributes: dict[str, Any] | None = None,
) -> Document:
    """Change a document's metadata without a new upload. A new title makes its BM25 summary
    again (title words are document words) and, after, its passages' vectors."""
    check_labels(tags or (), groups or ())
    if attributes is not None:
        check_attributes(attributes)
    for _ in range(RETITLE_ATTEMPTS):
        retitled = None
        doc = pool.store.get_document(document_id)
        if title is not None and title != doc.title and doc.file_id is not None:
            pool.check_still_own_params()
            content = pool.store.get_content(document_id)
            summary = summarise(pool, title, content.text, content.expansion)
            retitled = Retitled(
                doc.file_id,
                summary.terms,
                summary.length,
                summary.passages,
                expanded=bool(content.expansion),
            )
        wanted = pool.config.index_params()
        try:
            return pool.store.update_metadata(
                document_id=document_id,
                title=title,
                tags=tags,
                groups=groups,
                attributes=attributes,
                retitled=retitled,
                title_was=doc.title if title is not None else None,
                made_under=wanted,
            )
        except SummaryOutdated:
            continue  # a new version, title or description landed meanwhile: read it again
        except ParamsChanged as exc:  # a re-index began meanwhile
            raise IndexParamsMismatch(describe_mismatch(exc.stored, wanted)) from None
    raise Conflict(f"document {document_id} kept changing while its title was set; try again")


def _metadata_changes(doc: Document, request: IngestRequest) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if request.title and request.title != doc.title:
        changes["title"] = request.title
    if request.tags and sorted(set(request.tags)) != doc.tags:
        changes["tags"] = list(request.tags)
    if request.groups and sorted(set(request.groups)) != doc.groups:
        changes["groups"] = list(request.groups)
    if request.attributes:
        merged = {**doc.attributes, **request.attributes}
        if merged != doc.attributes:
            changes["attributes"] = merged
    return changes


def _given_apart_from_file(
    pool: Pool, doc: Document, *, replaced: Mapping[str, Any]
) -> dict[str, Any]:
    """The attributes of ``doc`` that its file did not give (set at upload, by a manifest or
    by ``PUT``) and the new file's metadata does not ``replace``: what a new version keeps.
    The old file's metadata is read again from the stored original, so that a key the new
    file no longer has goes with the old file; only when such a key is left to decide."""
    left = {k: v for k, v in doc.attributes.items() if k not in replaced}
    if not left:
        return {}
    try:
        original = pool.store.get_original(doc.id)
        found = extract(doc.filename, original, pool.config.limits).metadata
    except PoolError:  # unreadable now (limits changed?): keep everything rather than guess
        found = {}
    return {k: v for k, v in left.items() if k not in found or found[k] != v}


def _new_version(
    pool: Pool,
    request: IngestRequest,
    extracted: Extracted,
    digest: str,
    attributes: dict[str, Any],
) -> NewVersion:
    summary = summarise(pool, _title(request, extracted), extracted.text)
    _, upload_bytes, mime_type = upload_payload(request.name, request.data, extracted)
    return NewVersion(
        source=request.source,
        title=_title(request, extracted),
        filename=request.name,
        format=extracted.format,
        mime_type=mime_type,
        content_hash=digest,
        file_id="",
        size_bytes=len(upload_bytes),
        token_estimate=estimate_tokens(extracted),
        page_count=len(extracted.page_spans) if extracted.page_spans is not None else None,
        warnings=list(extracted.warnings),
        tags=list(request.tags),
        groups=list(request.groups),
        attributes=attributes,
        terms=summary.terms,
        length=summary.length,
        passages=summary.passages,
        original=request.data,
        text=extracted.text,
        page_spans=[list(span) for span in extracted.page_spans] if extracted.page_spans else None,
        made_under=pool.config.index_params(),
    )


def _title(request: IngestRequest, extracted: Extracted) -> str:
    if request.title or extracted.title:
        title = clean_title(request.title or extracted.title or "")[:MAX_TITLE_CHARS]
        if title:
            return title
    return title_from_name(request.name)


def title_from_name(filename: str) -> str:
    """The title a file with no title of its own gets from its name."""
    name = sanitise_filename(filename)
    title = clean_title(PurePath(name).stem)[:MAX_TITLE_CHARS]
    return title or clean_title(name)[:MAX_TITLE_CHARS] or "untitled"


def indexable_text(title: str, text: str, expansion: str | None = None) -> str:
    """What the summary is built from: the title is part of what a document is about, even
    when the body never repeats it; so is its generated description, if it has one."""
    return f"{title}\n{text}\n{expansion}" if expansion else f"{title}\n{text}"


def indexed_passages(
    title: str, text: str, expansion: str | None, params: PassageParams
) -> list[tuple[Passage, str]]:
    """A document's passages with what each is indexed as: the passages of its text, then,
    when it has one, its generated description (``indexing.expansion``). The description is
    no part of the text, so its span is the empty one at the text's end: routing reports no
    passage for it, and an excerpt of it is empty."""
    passages = [(p, passage_text(title, text, p)) for p in split_passages(text, params)]
    if expansion:
        passages.append((Passage(len(text), len(text), ()), f"{title}\n{expansion}"))
    return passages


@dataclass(frozen=True)
class DocumentTerms:
    """A document's BM25 summary: its terms and length, and the same for each passage."""

    terms: dict[str, int]
    length: int
    passages: PassageVectors


def summarise(pool: Pool, title: str, text: str, expansion: str | None = None) -> DocumentTerms:
    """The summary of a document's text and generated description, under the pool's analyzer
    and passage parameters (its passages' sentence vectors come later, from ``vectorise``)."""
    analyzer = pool.analyzer
    terms, length = analyzer.term_frequencies(indexable_text(title, text, expansion))
    passages = []
    for passage, indexed in indexed_passages(title, text, expansion, pool.config.passages):
        passage_terms, passage_length = analyzer.term_frequencies(indexed)
        passages.append((passage_terms, passage_length, (passage.start, passage.end)))
    return DocumentTerms(terms, length, PassageVectors.from_counts(passages))


def _upload(
    pool: Pool, request: IngestRequest, extracted: Extracted, digest: str
) -> tuple[RemoteFile, int]:
    """Upload behind a committed intent; the commit that adopts the file clears the intent."""
    filename, data, mime_type = upload_payload(request.name, request.data, extracted)
    intent_id = pool.store.record_intent(
        source=request.source, filename=filename, content_hash=digest, owner=owner()
    )
    try:
        remote = pool.backend.upload(filename=filename, data=data, mime_type=mime_type)
    except (UpstreamUnavailable, UpstreamTimeout):
        # The file may exist upstream even though we never saw its id: keep the intent so
        # ``recover`` finds and deletes it by name and time.
        raise
    except (UpstreamError, FileTooLarge, StoreUnavailable):  # refused: nothing landed
        pool.store.drop_intent(intent_id=intent_id)
        raise
    pool.store.set_intent_file(intent_id=intent_id, file_id=remote.id)
    return remote, intent_id


def _abandon_upload(pool: Pool, file_id: str, intent_id: int) -> None:
    """Delete an upload no commit will adopt; if that fails, its intent stays for
    ``recover``."""
    if _delete_upstream(pool, file_id):
        pool.store.drop_intent(intent_id=intent_id)


def _delete_upstream(pool: Pool, file_id: str) -> bool:
    try:
        pool.backend.delete(file_id)
    except UpstreamError as exc:
        log.warning("could not delete remote file %s yet (%s); will retry later", file_id, exc)
        return False
    return True


def delete_document(pool: Pool, document_id: str) -> Document:
    """Remove a document: first from routing (committed), then its remote file."""
    doc = pool.store.delete_document(document_id=document_id)
    pool.refresh()
    if doc.file_id:
        delete_remote(pool, doc.file_id)
    return doc


def delete_remote(pool: Pool, file_id: str) -> bool:
    """Delete a retired remote file; on failure it stays retired for ``recover`` to retry."""
    if not _delete_upstream(pool, file_id):
        return False
    pool.store.forget_retired(file_id=file_id)
    return True


def reupload(pool: Pool, document_id: str) -> str:
    """Upload a document again from its stored original (its remote file went missing)."""
    doc = pool.store.get_document(document_id)
    if doc.file_id is None:
        raise DocumentNotFound(f"document {document_id!r} has no remote file")
    if doc.mime_type == "application/pdf":
        data = pool.store.get_original(document_id)
    else:
        data = pool.store.get_content(document_id).text.encode()
    intent_id = pool.store.record_intent(
        source=doc.source, filename=doc.filename, content_hash=doc.content_hash, owner=owner()
    )
    remote = pool.backend.upload(filename=doc.filename, data=data, mime_type=doc.mime_type)
    pool.store.set_intent_file(intent_id=intent_id, file_id=remote.id)
    pool.store.replace_file_id(
        document_id=document_id, old_file_id=doc.file_id, new_file_id=remote.id
    )
    pool.store.drop_intent(intent_id=intent_id)
    pool.refresh()
    delete_remote(pool, doc.file_id)
    return remote.id


def vectorise(
    pool: Pool,
    *,
    limit: int | None = None,
    workers: int = 1,
    descending: bool = False,
    stop: threading.Event | None = None,
) -> int:
    """Give the documents whose passages have no sentence vectors yet their vectors: at most
    ``limit`` of them (all by default), on ``workers`` threads, in file id order (``descending``:
    from the other end), until ``stop`` is set. Returns how many got theirs; nothing to do
    without semantic routing.

    The vectors are made from the stored text, the passages' stored spans and the current
    title, and stored only if none of them changed meanwhile (``Store.add_vectors``): a new
    version, a re-index, a new title or another process's vectors win over late ones. A
    document the model fails on, or whose stored passages this configuration would cut
    otherwise, is logged and left out for the rest of the process's life (``kpool reindex``
    makes its passages anew)."""
    if not pool.config.semantic:
        return 0
    done = 0
    after = None
    with ThreadPoolExecutor(max_workers=workers) as threads:
        while limit is None or done < limit:
            if stop is not None and stop.is_set():
                break
            size = 4 * workers if limit is None else min(4 * workers, limit - done)
            due = pool.store.awaiting_vectors(limit=size, after=after, descending=descending)
            if not due:
                break
            after = due[-1].file_id
            todo = [one for one in due if one.file_id not in pool.vectors_refused]
            done += sum(threads.map(lambda one: _add_vectors(pool, one, stop), todo))
    return done


def usable_cores() -> int:
    """The cores this process may run on (a container's share, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def _add_vectors(pool: Pool, due: VectorsDue, stop: threading.Event | None) -> bool:
    try:
        content = pool.store.get_content(due.document_id)
    except DocumentNotFound:  # deleted meanwhile
        return False
    text, expansion = content.text, content.expansion
    passages = indexed_passages(due.title, text, expansion, pool.config.passages)
    spans = [(p.start, p.end) for p, _ in passages]
    if spans != passage_spans(due.layout):
        if expansion and spans[:-1] == passage_spans(due.layout):
            return False  # its description landed since ``due`` was read; the next look has it
        log.warning(
            "document %s was cut into passages under other parameters; its vectors wait for "
            "`kpool reindex`",
            due.document_id,
        )
        pool.vectors_refused.add(due.file_id)
        return False
    texts = [indexed for _, indexed in passages]
    try:
        vectors = passage_vectors(pool.encoder, due.title, texts, stop=stop)
    except Exception:  # the model failing on one document must not stop the others
        log.exception("could not compute the sentence vectors of document %s", due.document_id)
        pool.vectors_refused.add(due.file_id)
        return False
    return vectors is not None and pool.store.add_vectors(due=due, vectors=vectors)


def reindex(pool: Pool, *, vector_workers: int = 1) -> int:
    """Rebuild every summary from the stored text with the configured analyzer, then record
    the configured parameters as the pool's own, then (with semantic routing) compute the
    passages' vectors on ``vector_workers`` threads. Returns the number of documents."""
    pool.begin_reindex()
    count = 0
    cursor = None
    while True:
        docs, cursor = pool.store.list_documents(limit=200, cursor=cursor)
        count += sum(_reindex_one(pool, doc.id) for doc in docs if doc.file_id is not None)
        if cursor is None:
            break
    pool.adopt_params()
    vectorise(pool, workers=vector_workers)
    return count


def _reindex_one(pool: Pool, document_id: str) -> bool:
    """Make one document's summary again under the configured parameters. A new version,
    title or description that lands meanwhile (another process, on the old parameters
    perhaps) makes it read the document again: the re-index is what adopts the parameters, so
    it must have the last word."""
    for _ in range(RETITLE_ATTEMPTS):
        try:
            doc = pool.store.get_document(document_id)
        except DocumentNotFound:
            return False  # deleted meanwhile
        if doc.file_id is None:
            return False
        try:
            content = pool.store.get_content(document_id)
            summary = summarise(pool, doc.title, content.text, content.expansion)
            if pool.store.update_summary(
                file_id=doc.file_id,
                terms=summary.terms,
                length=summary.length,
                passages=summary.passages,
                title=doc.title,
                expanded=bool(content.expansion),
            ):
                return True
        except DocumentNotFound:
            continue  # a new version replaced the one read, or it was deleted: read again
    raise Conflict(f"document {document_id} kept changing while it was re-indexed; run it again")


# -------------------------------------------------------------------------------- recovery


@dataclass
class Recovery:
    """What ``recover`` cleaned up."""

    abandoned_uploads: list[str] = field(default_factory=list)
    deleted_retired: list[str] = field(default_factory=list)
    still_pending: list[str] = field(default_factory=list)
    #: Abandoned intents left for later: a live upload of the same name may own their files.
    deferred_intents: int = 0


def recover(pool: Pool, *, now: datetime | None = None) -> Recovery:
    """Finish what a killed ingest left behind: abandoned uploads and retired files."""
    now = now or datetime.now(UTC)
    report = Recovery()
    grace = timedelta(seconds=pool.config.intent_grace_seconds)
    abandoned = [i for i in pool.store.intents() if _abandoned(i, now, grace)]
    if abandoned:
        _clear_abandoned(pool, abandoned, report)
    for retired in pool.store.retired_files():
        if delete_remote(pool, retired.file_id):
            report.deleted_retired.append(retired.file_id)
        else:
            report.still_pending.append(retired.file_id)
    return report


def _abandoned(intent: UploadIntent, now: datetime, grace: timedelta) -> bool:
    if now - intent.created_at > grace:
        return True
    host, _, pid = intent.owner.rpartition(":")
    return host == socket.gethostname() and pid.isdigit() and not _process_alive(int(pid))


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_abandoned(pool: Pool, intents: list[UploadIntent], report: Recovery) -> None:
    # In this order, so that every file listed is accounted for by what is read after it: a
    # file's intent is recorded before its upload starts, and an upload that commits meanwhile
    # is among the referenced read last.
    unknown = any(intent.file_id is None for intent in intents)
    listing = list(pool.backend.list()) if unknown else []
    dropping = {intent.id for intent in intents}
    live = [i for i in pool.store.intents() if i.id not in dropping]
    referenced = pool.store.referenced_file_ids()
    referenced |= {i.file_id for i in live if i.file_id is not None}
    for intent in intents:
        assert intent.id is not None
        if intent.file_id is not None:
            candidates = [intent.file_id]
        else:
            # The upload may have landed without us learning its id: match by name and time.
            landed = [f for f in listing if _may_be_from(f, intent)]
            if any(_may_be_from(f, other) for f in landed for other in live if not other.file_id):
                # A live upload of the same name may own one of these files, and its id is not
                # known yet: leave the intent for a later run to decide.
                report.deferred_intents += 1
                continue
            candidates = [f.id for f in landed]
        for file_id in candidates:
            if file_id not in referenced:
                pool.backend.delete(file_id)
                report.abandoned_uploads.append(file_id)
        pool.store.drop_intent(intent_id=intent.id)


def _may_be_from(remote: RemoteFile, intent: UploadIntent) -> bool:
    """Whether ``remote`` could be the upload ``intent`` announced: the same name, created
    within the window in which that upload can land (a later file is someone else's)."""
    # Anthropic's clock stamps the file and ours the intent: allow for them to differ.
    since = intent.created_at - CLOCK_SKEW
    until = intent.created_at + UPLOAD_WINDOW + CLOCK_SKEW
    return remote.filename == intent.filename and since <= remote.created_at <= until
