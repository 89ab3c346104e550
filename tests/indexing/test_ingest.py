"""Ingest on SQLite and PostgreSQL, through the local store and the fake Files API.

What a user sees: same bytes again changes nothing, changed bytes swap in a new version and the
old remote file goes, routing always sees exactly the current version, and a failure upstream
leaves nothing half-written.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import pytest
from sqlalchemy import func
from sqlalchemy import text as text_sql
from sqlmodel import select

from indexing.analyzer import AnalyzerParams
from indexing.anthropic_files import AnthropicFilesBackend
from indexing.bm25 import BM25Params
from indexing.errors import Conflict, IndexParamsMismatch
from indexing.files import FilesBackend, LocalFilesBackend, RemoteFile
from indexing.filters import Filters, any_of
from indexing.ingest import (
    RETITLE_ATTEMPTS,
    IngestRequest,
    Outcome,
    _reindex_one,
    delete_document,
    ingest,
    recover,
    reindex,
    reupload,
    summarise,
    update_metadata,
)
from indexing.models import Content, Summary
from indexing.pool import PARAMS_KEY, Pool
from indexing.store import ParamsChanged, Retitled, SummaryOutdated
from tests.factories import make_docx, make_pdf
from tests.fakes.anthropic_server import FakeAnthropic

OpenPool = Callable[..., Pool]

both_backends = pytest.mark.parametrize("files_backend", ["local", "anthropic"], indirect=True)
fake_files_api = pytest.mark.parametrize("files_backend", ["anthropic"], indirect=True)

LEAVE = "Annual leave: staff may carry over five days of unused leave into the next year."
LEAVE_V2 = "Annual leave: unused leave days expire at the end of the year; none carry over."
TRAVEL = "Travel expenses: keep every receipt and claim within thirty days of the trip."


def add(pool: Pool, source: str, text: str, **metadata: Any) -> Outcome:
    return ingest(pool, IngestRequest(source=source, data=text.encode(), **metadata))


def routed(pool: Pool, question: str) -> list[str]:
    """File ids routing would send for ``question``, best first."""
    hits = pool.index.search(pool.analyzer.terms(question), top_k=10)
    return [hit.entry.file_id for hit in hits]


def remote_ids(backend: FilesBackend) -> set[str]:
    return {f.id for f in backend.list()}


def uploads(fake: FakeAnthropic) -> list[str | None]:
    """Filenames of every upload the fake received, in order."""
    return [
        part.filename
        for r in fake.requests_to("POST", "/v1/files")
        if (part := r.part("file")) is not None
    ]


def summary_count(pool: Pool) -> int:
    with pool.store.session() as session:
        return int(session.exec(select(func.count()).select_from(Summary)).one())


def content_count(pool: Pool) -> int:
    with pool.store.session() as session:
        return int(session.exec(select(func.count()).select_from(Content)).one())


@dataclass
class WatchedBackend:
    """A real backend that notes, at each delete, whether routing or the store still used it."""

    inner: FilesBackend
    pool: Pool | None = None
    deletes: list[tuple[str, bool, bool]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    def upload(self, *, filename: str, data: bytes, mime_type: str) -> RemoteFile:
        return self.inner.upload(filename=filename, data=data, mime_type=mime_type)

    def delete(self, file_id: str) -> bool:
        assert self.pool is not None
        routable = file_id in self.pool.index
        stored = self.pool.store.find_document(file_id=file_id) is not None
        self.deletes.append((file_id, routable, stored))
        return self.inner.delete(file_id)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.fixture
def watched(open_pool: OpenPool, files_backend: FilesBackend) -> WatchedBackend:
    backend = WatchedBackend(files_backend)
    backend.pool = open_pool(backend=backend)
    return backend


# ------------------------------------------------------------------------- add, again, change


@both_backends
def test_same_bytes_again_is_unchanged_and_uploads_nothing(
    pool: Pool, files_backend: FilesBackend
) -> None:
    first = add(pool, "/docs/leave.md", LEAVE)
    remote_before = remote_ids(files_backend)

    again = add(pool, "/docs/leave.md", LEAVE)

    assert first.status == "added" and first.file_id is not None
    assert (again.status, again.document_id, again.file_id) == (
        "unchanged",
        first.document_id,
        first.file_id,
    )
    assert remote_ids(files_backend) == remote_before == {first.file_id}
    assert routed(pool, "carry over leave") == [first.file_id]


@both_backends
def test_changed_bytes_swap_in_a_new_version_and_delete_the_old_file(
    watched: WatchedBackend,
) -> None:
    pool = watched.pool
    assert pool is not None
    first = add(pool, "/docs/leave.md", LEAVE)

    second = add(pool, "/docs/leave.md", LEAVE_V2)

    assert (second.status, second.document_id) == ("updated", first.document_id)
    assert second.file_id not in (None, first.file_id)
    assert pool.store.get_document(first.document_id or "").version == 2
    assert remote_ids(watched.inner) == {second.file_id}
    assert routed(pool, "leave") == [second.file_id]
    assert routed(pool, "expire") == [second.file_id]
    assert {e.file_id for e in pool.index.entries()} == {second.file_id}
    # The old file was deleted only once routing and the store had let go of it.
    assert watched.deletes == [(first.file_id, False, False)]
    assert pool.store.retired_files() == []


@both_backends
def test_changed_tags_update_metadata_without_an_upload(
    pool: Pool, files_backend: FilesBackend
) -> None:
    first = add(pool, "/docs/leave.md", LEAVE, tags=["hr"])
    remote_before = remote_ids(files_backend)

    second = add(pool, "/docs/leave.md", LEAVE, tags=["hr", "policy"])

    assert (second.status, second.reason) == ("updated", "metadata changed")
    assert second.file_id == first.file_id
    assert remote_ids(files_backend) == remote_before
    assert pool.store.get_document(first.document_id or "").tags == ["hr", "policy"]
    assert pool.index.search(pool.analyzer.terms("leave"), top_k=5, tags=["policy"])


def test_a_new_title_is_routed_by_its_words_and_the_old_one_no_longer(pool: Pool) -> None:
    first = add(pool, "/docs/leave.md", LEAVE, title="Zephyr handbook")
    assert routed(pool, "zephyr") == [first.file_id]
    assert routed(pool, "holiday entitlement") == []

    # as a re-ingest with another title does, and PUT /v1/documents/{id}
    again = add(pool, "/docs/leave.md", LEAVE, title="Holiday entitlement")
    assert (again.status, again.file_id) == ("updated", first.file_id)
    assert routed(pool, "holiday entitlement") == [first.file_id]
    assert routed(pool, "zephyr") == []
    # the passages carry the title too: the best passage is found by a title word
    (hit,) = pool.index.search(pool.analyzer.terms("entitlement"), top_k=1)
    assert hit.passage is not None

    update_metadata(pool, document_id=first.document_id or "", title="Zephyr handbook")
    pool.refresh()
    assert routed(pool, "zephyr") == [first.file_id]
    assert routed(pool, "entitlement") == []


def test_a_given_title_is_cleaned_once_and_stays_unchanged(pool: Pool) -> None:
    first = add(pool, "/docs/leave.md", LEAVE, title="Leave\x00 policy\u202e ")
    assert first.title == "Leave policy"
    again = add(pool, "/docs/leave.md", LEAVE, title="Leave\x00 policy\u202e ")
    assert again.status == "unchanged"


def test_a_title_made_for_an_older_version_is_refused_whole(pool: Pool) -> None:
    first = add(pool, "/docs/leave.md", LEAVE)
    text = pool.store.get_content(first.document_id or "").text
    stale = summarise(pool, "Zephyr handbook", text)
    second = add(pool, "/docs/leave.md", LEAVE_V2)  # a new version lands meanwhile
    with pytest.raises(SummaryOutdated):
        pool.store.update_metadata(
            document_id=first.document_id or "",
            title="Zephyr handbook",
            tags=["hr"],
            retitled=Retitled(first.file_id or "", stale.terms, stale.length, stale.passages),
        )
    doc = pool.store.get_document(first.document_id or "")
    assert (doc.title, doc.tags) != ("Zephyr handbook", ["hr"])  # nothing was written
    # made again from the new version, as ``update_metadata`` does
    update_metadata(pool, document_id=doc.id, title="Zephyr handbook", tags=["hr"])
    pool.refresh()
    assert routed(pool, "zephyr expire") == [second.file_id]
    assert routed(pool, "staff") == []  # the old version's words are gone


def test_a_title_changed_meanwhile_is_read_again_not_overwritten(pool: Pool) -> None:
    first = add(pool, "/docs/leave.md", LEAVE, title="Zephyr handbook")
    document_id = first.document_id or ""
    with pytest.raises(SummaryOutdated):  # read as "Leave", changed since
        pool.store.update_metadata(document_id=document_id, title="Zephyr", title_was="Leave")
    # a re-index that read the old title does not overwrite the new title's summary
    text = pool.store.get_content(document_id).text
    old = summarise(pool, "Zephyr handbook", text)
    update_metadata(pool, document_id=document_id, title="Holiday entitlement")
    written = pool.store.update_summary(
        file_id=first.file_id or "",
        terms=old.terms,
        length=old.length,
        passages=old.passages,
        title="Zephyr handbook",
    )
    pool.refresh()
    assert not written
    assert routed(pool, "entitlement") == [first.file_id] and routed(pool, "zephyr") == []


def test_a_title_change_gives_up_with_a_conflict_if_the_document_keeps_changing(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = add(pool, "/docs/leave.md", LEAVE)
    tries = []

    def always_outdated(**_: Any) -> None:
        tries.append(1)
        raise SummaryOutdated("another version landed")

    monkeypatch.setattr(pool.store, "update_metadata", always_outdated)
    with pytest.raises(Conflict, match="kept changing"):
        update_metadata(pool, document_id=first.document_id or "", title="Zephyr")
    assert len(tries) == RETITLE_ATTEMPTS


@both_backends
def test_the_same_bytes_under_another_source_are_a_twin_not_a_new_document(
    pool: Pool, files_backend: FilesBackend
) -> None:
    first = add(pool, "/docs/leave.md", LEAVE)

    twin = add(pool, "/archive/leave-copy.md", LEAVE)

    assert twin.status == "unchanged"
    assert twin.reason == "same content as /docs/leave.md"
    assert (twin.document_id, twin.file_id) == (first.document_id, first.file_id)
    assert pool.store.count_documents() == 1
    assert remote_ids(files_backend) == {first.file_id}


@both_backends
def test_delete_stops_routing_before_the_remote_file_goes(watched: WatchedBackend) -> None:
    pool = watched.pool
    assert pool is not None
    leave = add(pool, "/docs/leave.md", LEAVE)
    travel = add(pool, "/docs/travel.md", TRAVEL)

    delete_document(pool, leave.document_id or "")

    assert routed(pool, "leave") == []
    assert routed(pool, "receipt") == [travel.file_id]
    assert remote_ids(watched.inner) == {travel.file_id}
    assert watched.deletes == [(leave.file_id, False, False)]
    assert pool.store.retired_files() == []


@both_backends
def test_reupload_after_the_remote_file_vanished_gives_a_new_file_that_routing_follows(
    pool: Pool,
    files_backend: FilesBackend,
    remove_remote: Callable[[FilesBackend, str], None],
) -> None:
    leave = add(pool, "/docs/leave.md", LEAVE)
    assert leave.file_id is not None
    remove_remote(files_backend, leave.file_id)

    new_id = reupload(pool, leave.document_id or "")

    assert new_id != leave.file_id
    assert pool.store.get_document(leave.document_id or "").file_id == new_id
    assert remote_ids(files_backend) == {new_id}
    assert routed(pool, "carry over leave") == [new_id]
    assert pool.store.intents() == [] and pool.store.retired_files() == []
    # the summary moves whole: its passages too, so routing keeps scoring them
    (entry,) = pool.store.index_entries([leave.document_id or ""])
    assert entry.file_id == new_id and entry.passages is not None and len(entry.passages) > 0


@both_backends
def test_a_second_pool_on_the_same_database_follows_the_change_log(open_pool: OpenPool) -> None:
    writer, reader = open_pool(), open_pool()

    leave = add(writer, "/docs/leave.md", LEAVE)
    assert routed(reader, "leave") == []
    assert reader.refresh() == 1
    assert routed(reader, "leave") == [leave.file_id]

    updated = add(writer, "/docs/leave.md", LEAVE_V2, tags=["hr"])
    reader.refresh()
    assert routed(reader, "leave") == [updated.file_id]
    assert reader.index.search(reader.analyzer.terms("leave"), top_k=5, tags=["hr"])

    delete_document(writer, leave.document_id or "")
    reader.refresh()
    assert routed(reader, "leave") == []
    assert len(reader.index) == 0


def test_attributes_set_at_ingest_or_later_reach_every_pools_routing(open_pool: OpenPool) -> None:
    writer, reader = open_pool(), open_pool()
    uk = Filters(attributes={"region": any_of(["UK"])})

    def filtered(pool: Pool) -> list[str]:
        terms = pool.analyzer.terms("leave")
        return [h.entry.file_id for h in pool.index.search(terms, top_k=5, filters=uk)]

    leave = add(writer, "/docs/leave.md", LEAVE, attributes={"region": "UK"})
    reader.refresh()
    assert filtered(writer) == filtered(reader) == [leave.file_id]

    writer.store.update_metadata(document_id=leave.document_id or "", attributes={"region": "IE"})
    writer.refresh()
    reader.refresh()
    assert filtered(writer) == filtered(reader) == []


# ------------------------------------------------------------------------ index parameters


@pytest.mark.parametrize(
    ("changed", "named"),
    [
        ({"bm25": BM25Params(k1=1.5)}, "bm25.k1: pool has 1.2, configured 1.5"),
        ({"bm25": BM25Params(b=0.5)}, "bm25.b: pool has 0.75, configured 0.5"),
        ({"bm25": BM25Params(variant="okapi")}, "bm25.variant: pool has 'lucene'"),
        ({"analyzer": AnalyzerParams(stopwords="none")}, "analyzer.stopwords"),
    ],
    ids=["k1", "b", "variant", "stopwords"],
)
def test_opening_with_other_index_parameters_names_the_difference(
    open_pool: OpenPool, changed: dict[str, object], named: str
) -> None:
    add(open_pool(), "/docs/leave.md", LEAVE)

    with pytest.raises(IndexParamsMismatch) as raised:
        open_pool(**changed)

    assert named in str(raised.value)
    assert "kpool reindex" in str(raised.value)


def test_reindex_rebuilds_summaries_and_adopts_the_new_parameters(open_pool: OpenPool) -> None:
    leave = add(open_pool(), "/docs/leave.md", "The leave policy. " + LEAVE)
    no_stopwords = AnalyzerParams(stopwords="none")

    rebuilding = open_pool(analyzer=no_stopwords, check_params=False)
    assert reindex(rebuilding) == 1

    reopened = open_pool(analyzer=no_stopwords)
    assert leave.file_id in reopened.index
    assert reopened.index.document_frequency("the") == 1  # a stopword before, a term now
    with pytest.raises(IndexParamsMismatch, match=r"analyzer\.stopwords"):
        open_pool()


HANDBOOK = """# Employee handbook

## Office hours

The office opens at eight and closes at six. Visitors sign in at reception.

## Leave

### Sick leave

Tell your manager before ten on the first day of sickness; a doctor's note is needed after
five days.

### Parental leave

Parents take up to twenty weeks of paid parental leave within a year of the birth.
"""


def test_ingest_stores_passages_that_follow_the_documents_sections(pool: Pool) -> None:
    outcome = add(pool, "/docs/handbook.md", HANDBOOK)
    (entry,) = pool.store.index_entries([outcome.document_id])
    assert entry.passages is not None
    text = pool.store.get_content(outcome.document_id).text
    bodies = [text[start:end] for start, end in entry.passages.spans.tolist()]
    assert [b.split()[:2] for b in bodies] == [
        ["The", "office"],
        ["Tell", "your"],
        ["Parents", "take"],
    ]


def test_routing_points_at_the_passage_that_answers(pool: Pool) -> None:
    outcome = add(pool, "/docs/handbook.md", HANDBOOK)
    text = pool.store.get_content(outcome.document_id).text
    (hit,) = pool.index.search(pool.analyzer.question_terms("doctor's note when sick?"), top_k=3)
    assert hit.passage is not None
    assert text[hit.passage[0] : hit.passage[1]].startswith("Tell your manager")


def test_a_pool_indexed_before_passages_asks_for_a_reindex_that_adds_them(
    open_pool: OpenPool,
) -> None:
    outcome = add(open_pool(), "/docs/handbook.md", HANDBOOK)
    older = open_pool()
    stored = older.store.get_meta(PARAMS_KEY)
    assert stored is not None
    older.store.set_meta(PARAMS_KEY, {k: v for k, v in stored.items() if k != "passages"})
    with older.store.writing() as session:
        session.execute(
            text_sql(
                "UPDATE summaries SET passage_hashes = NULL, passage_counts = NULL, "
                "passage_layout = NULL"
            )
        )

    with pytest.raises(IndexParamsMismatch, match=r"passages\.window.*kpool reindex"):
        open_pool()
    assert reindex(open_pool(check_params=False)) == 1

    reopened = open_pool()
    (entry,) = reopened.store.index_entries([outcome.document_id])
    assert entry.passages is not None and len(entry.passages) == 3
    assert reopened.index.passage_count == 3


# ----------------------------------------------------------------- through the fake Files API


def docx_bytes() -> bytes:
    return make_docx([("Heading 1", "Onboarding"), "Laptops are issued on the first day."])


@pytest.mark.parametrize(
    ("filename", "data", "mime_type"),
    [
        ("handbook.pdf", make_pdf(["Expenses are reimbursed monthly."]), "application/pdf"),
        ("leave.md", b"# Leave\n\nStaff may carry over five days.\n", "text/plain"),
        ("travel.txt", b"Keep every receipt for travel.\n", "text/plain"),
        (
            "security.html",
            b"<html><head><title>Security</title></head><body><p>Lock your screen.</p></body>",
            "text/plain",
        ),
        ("onboarding.docx", docx_bytes(), "text/plain"),
    ],
    ids=["pdf", "md", "txt", "html", "docx"],
)
@fake_files_api
def test_upload_sends_the_original_filename_with_the_mime_type_documents_need(
    pool: Pool, fake_anthropic: FakeAnthropic, filename: str, data: bytes, mime_type: str
) -> None:
    outcome = ingest(pool, IngestRequest(source=f"/docs/{filename}", data=data))

    assert outcome.status == "added", outcome.reason
    [request] = fake_anthropic.requests_to("POST", "/v1/files")
    part = request.part("file")
    assert part is not None
    assert (part.filename, part.content_type) == (filename, mime_type)
    assert fake_anthropic.files[outcome.file_id or ""].mime_type == mime_type


@fake_files_api
def test_the_backend_lists_every_page(
    open_pool: OpenPool, anthropic_client: anthropic.Anthropic, fake_anthropic: FakeAnthropic
) -> None:
    backend = AnthropicFilesBackend(anthropic_client, list_page_size=2)
    pool = open_pool(backend=backend)
    added = {add(pool, f"/docs/{n}.md", f"Policy number {n}: {TRAVEL}").file_id for n in range(5)}

    listed = remote_ids(backend)

    assert listed == added
    pages = fake_anthropic.requests_to("GET", "/v1/files")
    assert len(pages) == 3
    assert [("page" in p.query) for p in pages] == [False, True, True]


@pytest.mark.parametrize("status", [429, 529, 500])
@fake_files_api
def test_transient_upstream_errors_are_retried_and_the_ingest_succeeds(
    pool: Pool, fake_anthropic: FakeAnthropic, status: int
) -> None:
    fake_anthropic.fail_next(2, status, method="POST", path_prefix="/v1/files")

    outcome = add(pool, "/docs/leave.md", LEAVE)

    assert outcome.status == "added", outcome.reason
    attempts = fake_anthropic.requests_to("POST", "/v1/files")
    assert [r.retry_count for r in attempts] == [0, 1, 2]
    assert set(fake_anthropic.files) == {outcome.file_id}
    assert routed(pool, "leave") == [outcome.file_id]


@fake_files_api
def test_a_persistent_overload_fails_cleanly_and_recover_removes_a_late_upload(
    pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.fail_next(10, 529, method="POST", path_prefix="/v1/files")

    outcome = add(pool, "/docs/leave.md", LEAVE)

    assert outcome.status == "failed"
    assert "unavailable" in outcome.reason and "529" in outcome.reason
    assert len(fake_anthropic.requests_to("POST", "/v1/files")) == 4  # 1 try + 3 SDK retries
    assert pool.store.count_documents() == 0
    assert (summary_count(pool), content_count(pool), len(pool.index)) == (0, 0, 0)
    [intent] = pool.store.intents()
    assert (intent.source, intent.file_id) == ("/docs/leave.md", None)

    # The upload may have landed upstream without our hearing of it: once the intent is past
    # its grace period, recover finds the file by name and deletes it.
    landed = fake_anthropic.put_file(filename="leave.md", data=b"x", mime_type="text/plain")
    later = datetime.now(UTC) + timedelta(seconds=pool.config.intent_grace_seconds + 60)
    report = recover(pool, now=later)

    assert report.abandoned_uploads == [landed.id]
    assert fake_anthropic.files == {}
    assert pool.store.intents() == []


def test_recover_spares_a_file_a_live_upload_of_the_same_name_may_own(pool: Pool) -> None:
    host = socket.gethostname()
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = f"{host}:{ended.stdout.strip()}"
    crashed = pool.store.record_intent(
        source="/a/leave.md", filename="leave.md", content_hash="a", owner=dead
    )
    running = pool.store.record_intent(
        source="/b/leave.md", filename="leave.md", content_hash="b", owner=f"{host}:{os.getpid()}"
    )
    # Whose upload this is cannot be told: the crashed one's, or the running one's whose
    # response has not arrived yet.
    landed = pool.backend.upload(filename="leave.md", data=b"leave", mime_type="text/plain")

    first = recover(pool)

    assert (first.abandoned_uploads, first.deferred_intents) == ([], 1)
    assert landed.id in {f.id for f in pool.backend.list()}
    assert {i.id for i in pool.store.intents()} == {crashed, running}

    # The running upload learns its id: the file is its own, and the crashed intent can go.
    pool.store.set_intent_file(intent_id=running, file_id=landed.id)
    second = recover(pool)

    assert (second.abandoned_uploads, second.deferred_intents) == ([], 0)
    assert landed.id in {f.id for f in pool.backend.list()}
    assert [i.id for i in pool.store.intents()] == [running]


@fake_files_api
def test_recover_finds_a_landed_upload_though_the_clocks_disagree(
    pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    intent = pool.store.record_intent(
        source="/docs/leave.md", filename="leave.md", content_hash="h", owner="elsewhere:1"
    )
    landed = fake_anthropic.put_file(filename="leave.md", data=b"x", mime_type="text/plain")
    # This machine's clock ran two minutes ahead of Anthropic's when it noted the upload.
    with pool.store.writing() as session:
        session.execute(
            text_sql("UPDATE upload_intents SET created_at = :at WHERE id = :id"),
            {"at": datetime.now(UTC) + timedelta(minutes=2), "id": intent},
        )
    later = datetime.now(UTC) + timedelta(seconds=pool.config.intent_grace_seconds + 600)

    report = recover(pool, now=later)

    assert report.abandoned_uploads == [landed.id]
    assert fake_anthropic.files == {} and pool.store.intents() == []


@fake_files_api
def test_a_rejected_upload_fails_with_the_reason_and_drops_its_intent(
    pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.fail_next(
        1, 400, method="POST", path_prefix="/v1/files", message="file: unsupported content"
    )

    outcome = add(pool, "/docs/leave.md", LEAVE)

    assert outcome.status == "failed"
    assert "file: unsupported content" in outcome.reason
    assert pool.store.count_documents() == 0
    assert pool.store.intents() == []


def test_a_new_version_keeps_its_groups_and_tags_unless_the_request_sets_them(pool: Pool) -> None:
    first = add(pool, "/docs/pay.md", "Pay bands. " + LEAVE, groups=("hr",), tags=("pay",))
    # A later run without --group/--tag (a cron job) must not make the document public.
    second = add(pool, "/docs/pay.md", "Pay bands, revised. " + LEAVE)
    assert second.status == "updated" and second.document_id == first.document_id
    doc = pool.store.get_document(second.document_id or "")
    assert doc.groups == ["hr"] and doc.tags == ["pay"]
    assert pool.index.search(pool.analyzer.terms("pay bands"), top_k=5, groups=[]) == []


def test_a_new_version_keeps_its_attributes_under_its_own_front_matter(pool: Pool) -> None:
    first = add(pool, "/docs/pay.md", "Pay bands. " + LEAVE, attributes={"owner": "hr", "year": 1})
    # The file now says its own year; the owner, set by hand, stays.
    add(pool, "/docs/pay.md", "---\nyear: 2\n---\nPay bands, revised. " + LEAVE)
    assert pool.store.get_document(first.document_id or "").attributes == {"owner": "hr", "year": 2}

    # A key the file no longer has goes with it; one set by hand stays.
    add(pool, "/docs/pay.md", "---\nstatus: draft\n---\nPay bands, draft. " + LEAVE)
    assert pool.store.get_document(first.document_id or "").attributes == {
        "owner": "hr",
        "status": "draft",
    }
    add(pool, "/docs/pay.md", "Pay bands, final. " + LEAVE)
    assert pool.store.get_document(first.document_id or "").attributes == {"owner": "hr"}

    # Attributes given with a version replace the kept ones, as tags and groups do.
    add(pool, "/docs/pay.md", "Pay bands, third. " + LEAVE, attributes={"owner": "finance"})
    assert pool.store.get_document(first.document_id or "").attributes == {"owner": "finance"}


def test_a_new_version_reads_the_old_original_only_when_a_key_is_left_to_decide(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = add(pool, "/docs/pay.md", "---\nyear: 1\n---\nPay bands. " + LEAVE)
    read: list[str] = []
    original = pool.store.get_original
    monkeypatch.setattr(pool.store, "get_original", lambda i: read.append(i) or original(i))

    add(pool, "/docs/pay.md", "---\nyear: 2\n---\nPay bands, revised. " + LEAVE)

    assert read == []  # every old key came again with the new file: nothing to tell apart
    assert pool.store.get_document(first.document_id or "").attributes == {"year": 2}


def test_front_matter_values_no_store_keeps_are_cleaned_not_refused(pool: Pool) -> None:
    front = '---\nscore: .nan\nlimit: -.inf\nowner: "a\\0b"\n"k\\0ey": "\\ud800x"\n---\n'
    outcome = add(pool, "/docs/pay.md", front + LEAVE)

    assert outcome.status == "added", outcome.reason
    doc = pool.store.get_document(outcome.document_id or "")
    assert doc.attributes == {"score": "nan", "limit": "-inf", "owner": "ab", "key": "\ufffdx"}


@pytest.mark.parametrize("folder", ["folder/", "假期/"], ids=["ascii", "cjk"])
def test_a_source_longer_than_the_store_keeps_fails_the_file_before_upload(
    pool: Pool, folder: str
) -> None:
    deep = "/docs/" + folder * (2100 // len(folder.encode())) + "leave.md"

    outcome = add(pool, deep, LEAVE)

    assert outcome.status == "failed" and "at most 2,000" in outcome.reason
    assert pool.store.count_documents() == 0 and remote_ids(pool.backend) == set()
    assert pool.store.intents() == []


@pytest.mark.parametrize(
    ("metadata", "needle"),
    [
        (
            {"data": b"---\nx:\n" + b"  - " * 17 + b"1\n---\n" + LEAVE.encode()},
            "pay.md: front matter",
        ),
        ({"attributes": {"score": float("nan")}}, "attributes.score is nan"),
        ({"attributes": {"owner": "x\x00"}}, "attributes.owner contains a NUL"),
    ],
)
def test_unstorable_attributes_fail_the_file_and_leave_nothing_behind(
    pool: Pool, metadata: dict[str, Any], needle: str
) -> None:
    request = IngestRequest(source="/docs/pay.md", data=LEAVE.encode())
    outcome = ingest(pool, replace(request, **metadata))

    assert outcome.status == "failed" and needle in outcome.reason
    assert pool.store.count_documents() == 0
    assert remote_ids(pool.backend) == set()
    assert pool.store.intents() == []


def test_a_running_pool_stops_applying_summaries_reindexed_with_other_parameters(
    open_pool: OpenPool,
) -> None:
    server = open_pool()
    add(server, "/docs/leave.md", "The leave policy. " + LEAVE)
    no_stopwords = AnalyzerParams(stopwords="none")
    rebuilding = open_pool(analyzer=no_stopwords, check_params=False)
    reindex(rebuilding)

    assert server.refresh() == 0
    assert server.params_mismatch is not None
    assert "analyzer.stopwords" in server.params_mismatch


@dataclass
class ReindexMidUpload:
    """A real backend during whose first upload another process begins a re-index."""

    inner: FilesBackend
    begin: Callable[[], None]
    begun: bool = False

    @property
    def name(self) -> str:
        return self.inner.name

    def upload(self, *, filename: str, data: bytes, mime_type: str) -> RemoteFile:
        remote = self.inner.upload(filename=filename, data=data, mime_type=mime_type)
        if not self.begun:
            self.begun = True
            self.begin()
        return remote

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


ADD_IN_ANOTHER_PROCESS = """
import sys
from pathlib import Path
from indexing.files import LocalFilesBackend
from indexing.ingest import IngestRequest, ingest
from indexing.pool import Pool, PoolConfig
data_dir, url, files, source, text = sys.argv[1:]
config = PoolConfig(data_dir=Path(data_dir), database_url=url)
pool = Pool.open(config, LocalFilesBackend(Path(files)))
print(ingest(pool, IngestRequest(source=source, data=text.encode())).status)
pool.close()
"""


def test_the_same_bytes_added_by_two_processes_at_once_make_one_document(
    open_pool: OpenPool, database_url: str, tmp_path: Path
) -> None:
    """Each process finds no twin before it uploads; the commit that comes second finds
    the first and gives up its upload, as a twin found at the start would have."""
    files = LocalFilesBackend(tmp_path / "shared-files")
    text = "The leave policy. " + LEAVE

    def the_other_process_adds_it() -> None:
        script = [sys.executable, "-c", ADD_IN_ANOTHER_PROCESS, str(tmp_path / "data")]
        args = [database_url, str(files.root), "/b/leave.md", text]
        other = subprocess.run(script + args, capture_output=True, text=True, check=True)
        assert other.stdout.strip() == "added", other.stderr

    pool = open_pool(backend=ReindexMidUpload(files, the_other_process_adds_it))
    outcome = add(pool, "/a/leave.md", text)

    assert (outcome.status, outcome.reason) == ("unchanged", "same content as /b/leave.md")
    assert pool.store.count_documents() == 1
    assert {f.id for f in files.list()} == {outcome.file_id}  # this process's upload is gone
    assert pool.store.intents() == []


def test_a_version_uploaded_while_a_re_index_began_is_not_committed(
    open_pool: OpenPool, files_backend: FilesBackend
) -> None:
    rebuilding = open_pool(analyzer=AnalyzerParams(stopwords="none"), check_params=False)
    server = open_pool(backend=ReindexMidUpload(files_backend, rebuilding.begin_reindex))

    outcome = add(server, "/docs/leave.md", "The leave policy. " + LEAVE)

    assert outcome.status == "failed" and "under way" in outcome.reason
    assert server.store.count_documents() == 0
    assert remote_ids(files_backend) == set()  # the upload no commit adopted is gone
    assert server.store.intents() == []


def test_a_title_made_under_parameters_the_pool_left_is_refused(open_pool: OpenPool) -> None:
    server = open_pool()
    leave = add(server, "/docs/leave.md", "The leave policy. " + LEAVE)
    doc = server.store.get_document(leave.document_id or "")
    content = server.store.get_content(doc.id)
    summary = summarise(server, "Leave", content.text)
    open_pool(analyzer=AnalyzerParams(stopwords="none"), check_params=False).begin_reindex()

    with pytest.raises(ParamsChanged):
        server.store.update_metadata(
            document_id=doc.id,
            title="Leave",
            retitled=Retitled(doc.file_id or "", summary.terms, summary.length, summary.passages),
            title_was=doc.title,
            made_under=server.config.index_params(),
        )
    assert server.store.get_document(doc.id).title == doc.title


def test_a_re_index_to_the_same_parameters_disturbs_no_other_process(
    open_pool: OpenPool,
) -> None:
    server = open_pool()
    leave = add(server, "/docs/leave.md", "The leave policy. " + LEAVE)
    again = open_pool(check_params=False)

    again.begin_reindex()
    assert _reindex_one(again, leave.document_id or "")

    assert server.refresh() == 1 and server.params_mismatch is None
    assert add(server, "/docs/travel.md", TRAVEL).status == "added"
    assert open_pool().params_mismatch is None


def test_no_pool_applies_a_re_index_half_done(open_pool: OpenPool) -> None:
    server = open_pool()
    leave = add(server, "/docs/leave.md", "The leave policy. " + LEAVE)
    add(server, "/docs/travel.md", "The travel policy. " + TRAVEL)
    no_stopwords = AnalyzerParams(stopwords="none")
    rebuilding = open_pool(analyzer=no_stopwords, check_params=False)

    # As `kpool reindex` does, cut short after its first document.
    rebuilding.begin_reindex()
    assert _reindex_one(rebuilding, leave.document_id or "")

    # The running server keeps its own summaries and says why.
    assert server.refresh() == 0
    assert "re-index to other parameters is under way" in (server.params_mismatch or "")
    assert "analyzer.stopwords" in (server.params_mismatch or "")
    # Nor does it write summaries under its own parameters any more.
    refused = add(server, "/docs/pay.md", "Pay bands. " + LEAVE)
    assert refused.status == "failed" and "under way" in refused.reason
    with pytest.raises(IndexParamsMismatch):
        update_metadata(server, document_id=leave.document_id or "", title="Leave")
    # Neither a process on the new parameters nor one on the old trusts the pool now.
    with pytest.raises(IndexParamsMismatch, match="being re-indexed to these parameters"):
        open_pool(analyzer=no_stopwords)
    with pytest.raises(IndexParamsMismatch, match="under way"):
        open_pool()

    # Run again to the end, the new parameters are the pool's.
    assert reindex(rebuilding) == 2
    assert rebuilding.refresh() == 2 and rebuilding.params_mismatch is None
    assert open_pool(analyzer=no_stopwords).params_mismatch is None
