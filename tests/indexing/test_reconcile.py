"""Reconcile: the store against the Files backend, reported and repaired."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from indexing.files import FilesBackend
from indexing.ingest import IngestRequest, Outcome, ingest
from indexing.pool import Pool
from indexing.reconcile import ORPHAN_GRACE, MissingFile, reconcile
from tests.fakes.anthropic_server import FakeAnthropic

both_backends = pytest.mark.parametrize("files_backend", ["local", "anthropic"], indirect=True)

LEAVE = "Annual leave: staff may carry over five days of unused leave."
TRAVEL = "Travel expenses: keep every receipt and claim within thirty days."


def add(pool: Pool, source: str, text: str) -> Outcome:
    outcome = ingest(pool, IngestRequest(source=source, data=text.encode()))
    assert outcome.status == "added", outcome.reason
    return outcome


def past_the_grace_period() -> datetime:
    return datetime.now(UTC) + ORPHAN_GRACE * 2


def routed(pool: Pool, question: str) -> list[str]:
    return [hit.entry.file_id for hit in pool.index.search(pool.analyzer.terms(question), top_k=5)]


@both_backends
def test_a_pool_in_step_with_its_backend_reports_clean(pool: Pool) -> None:
    add(pool, "/docs/leave.md", LEAVE)
    add(pool, "/docs/travel.md", TRAVEL)

    report = reconcile(pool, now=past_the_grace_period())

    assert report.clean
    assert (report.documents, report.remote_files) == (2, 2)
    assert (report.missing, report.orphans, report.recent) == ([], [], [])


@both_backends
def test_a_missing_remote_file_is_reported_and_fix_uploads_it_again(
    pool: Pool,
    files_backend: FilesBackend,
    remove_remote: Callable[[FilesBackend, str], None],
) -> None:
    leave = add(pool, "/docs/leave.md", LEAVE)
    travel = add(pool, "/docs/travel.md", TRAVEL)
    assert leave.file_id is not None and leave.document_id is not None
    remove_remote(files_backend, leave.file_id)

    found = reconcile(pool)
    fixed = reconcile(pool, fix=True)

    assert found.missing == [MissingFile(leave.document_id, leave.file_id, "/docs/leave.md")]
    assert not found.clean
    new_id = pool.store.get_document(leave.document_id).file_id
    assert new_id not in (None, leave.file_id)
    assert fixed.fixed == [f"re-uploaded /docs/leave.md as {new_id}"]
    assert fixed.clean and fixed.missing == []
    assert {f.id for f in files_backend.list()} == {new_id, travel.file_id}
    assert routed(pool, "carry over leave") == [new_id]
    assert reconcile(pool).clean


@both_backends
def test_an_orphan_past_the_grace_period_is_reported_and_fix_deletes_it(
    pool: Pool, files_backend: FilesBackend
) -> None:
    leave = add(pool, "/docs/leave.md", LEAVE)
    orphan = files_backend.upload(
        filename="lost.txt", data=b"crashed upload", mime_type="text/plain"
    )
    later = past_the_grace_period()

    found = reconcile(pool, now=later)
    fixed = reconcile(pool, fix=True, now=later)

    assert [f.id for f in found.orphans] == [orphan.id] and not found.clean
    assert fixed.fixed == [f"deleted orphan {orphan.id} (lost.txt)"]
    assert fixed.clean and fixed.orphans == []
    assert {f.id for f in files_backend.list()} == {leave.file_id}
    assert reconcile(pool, now=later).clean


@both_backends
def test_a_recent_unreferenced_file_is_left_alone(pool: Pool, files_backend: FilesBackend) -> None:
    add(pool, "/docs/leave.md", LEAVE)
    pending = files_backend.upload(
        filename="uploading.txt", data=b"commit is a moment away", mime_type="text/plain"
    )

    report = reconcile(pool, fix=True)

    assert [f.id for f in report.recent] == [pending.id]
    assert report.orphans == [] and report.fixed == []
    assert report.clean
    assert pending.id in {f.id for f in files_backend.list()}


@pytest.mark.parametrize("files_backend", ["anthropic"], indirect=True)
def test_a_fix_that_cannot_upload_reports_the_error_and_stays_unclean(
    pool: Pool,
    files_backend: FilesBackend,
    fake_anthropic: FakeAnthropic,
    remove_remote: Callable[[FilesBackend, str], None],
) -> None:
    leave = add(pool, "/docs/leave.md", LEAVE)
    assert leave.file_id is not None
    remove_remote(files_backend, leave.file_id)
    fake_anthropic.fail_next(10, 529, method="POST", path_prefix="/v1/files")

    report = reconcile(pool, fix=True)

    assert not report.clean
    assert [m.file_id for m in report.missing] == [leave.file_id]
    [error] = report.errors
    assert error.startswith("re-upload of /docs/leave.md failed") and "529" in error
    assert pool.store.get_document(leave.document_id or "").file_id == leave.file_id
