"""Comparing the store with the Files backend, and repairing the difference.

*Missing*: a document whose remote file the backend no longer has (deleted out of band,
expired). Fixed by uploading it again from the stored original.
*Orphan*: a remote file no document refers to (a crashed upload, a failed delete). Fixed by
deleting it, unless it is younger than the grace period: it may belong to an upload whose commit
is a moment away. The pool assumes a workspace of its own, as the Files API advises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from indexing.errors import PoolError
from indexing.files import RemoteFile
from indexing.ingest import Recovery, recover, reupload
from indexing.pool import Pool

ORPHAN_GRACE = timedelta(minutes=10)


@dataclass(frozen=True)
class MissingFile:
    document_id: str
    file_id: str
    source: str


@dataclass
class ReconcileReport:
    remote_files: int = 0
    documents: int = 0
    missing: list[MissingFile] = field(default_factory=list)
    orphans: list[RemoteFile] = field(default_factory=list)
    recent: list[RemoteFile] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    recovery: Recovery = field(default_factory=Recovery)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.orphans or self.errors)

    def as_dict(self) -> dict[str, Any]:
        return {
            "remote_files": self.remote_files,
            "documents": self.documents,
            "missing": [m.__dict__ for m in self.missing],
            "orphans": [f.id for f in self.orphans],
            "recent_unreferenced": [f.id for f in self.recent],
            "fixed": self.fixed,
            "errors": self.errors,
        }


def reconcile(pool: Pool, *, fix: bool = False, now: datetime | None = None) -> ReconcileReport:
    """Report (and with ``fix``, repair) missing remote files and orphans."""
    now = now or datetime.now(UTC)
    report = ReconcileReport()
    if fix:
        report.recovery = recover(pool, now=now)
    # Documents first, then the remote listing: a document committed in between has its file
    # listed (young, so left alone), rather than being reported missing.
    referenced: dict[str, tuple[str, str]] = {}
    cursor = None
    while True:
        docs, cursor = pool.store.list_documents(limit=500, cursor=cursor)
        for doc in docs:
            report.documents += 1
            if doc.file_id is not None:
                referenced[doc.file_id] = (doc.id, doc.source)
        if cursor is None:
            break
    remote = {f.id: f for f in pool.backend.list()}
    report.remote_files = len(remote)
    for file_id, (document_id, source) in sorted(referenced.items()):
        if file_id not in remote:
            report.missing.append(MissingFile(document_id, file_id, source))
    for file in remote.values():
        if file.id not in referenced:
            young = now - file.created_at < ORPHAN_GRACE
            (report.recent if young else report.orphans).append(file)
    if fix:
        _repair(pool, report)
    return report


def _still_missing(pool: Pool, missing: MissingFile) -> bool:
    try:
        current = pool.store.get_document(missing.document_id)
    except PoolError:
        return False
    if current.file_id != missing.file_id:
        return False
    return missing.file_id not in pool.backend.existing([missing.file_id])


def _repair(pool: Pool, report: ReconcileReport) -> None:
    still_missing = []
    for missing in report.missing:
        if not _still_missing(pool, missing):
            continue  # deleted, replaced or back since the listing: nothing to repair
        try:
            new_id = reupload(pool, missing.document_id)
        except PoolError as exc:
            report.errors.append(f"re-upload of {missing.source} failed: {exc}")
            still_missing.append(missing)
            continue
        pool.store.mark_status(document_id=missing.document_id, status="active")
        report.fixed.append(f"re-uploaded {missing.source} as {new_id}")
    still_orphaned = []
    for orphan in report.orphans:
        try:
            pool.backend.delete(orphan.id)
        except PoolError as exc:
            report.errors.append(f"deleting orphan {orphan.id} failed: {exc}")
            still_orphaned.append(orphan)
            continue
        report.fixed.append(f"deleted orphan {orphan.id} ({orphan.filename})")
    report.missing = still_missing
    report.orphans = still_orphaned
