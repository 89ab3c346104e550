"""Bulk ingest: walk folders, apply a manifest, upload concurrently, prune, summarise.

Used by ``kpool ingest`` and ``scripts/bulk_ingest.py`` (for cron) alike. A run first finishes
whatever a killed run left (``recover``), so running again after a crash converges: no duplicate
documents, no orphan remote files.
"""

from __future__ import annotations

import csv
import errno
import json
import logging
import os
import posixpath
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any

from indexing.attributes import check_attributes
from indexing.errors import FileTooLarge, InvalidInput, PoolError
from indexing.extract import check_size
from indexing.filenames import sanitise_filename
from indexing.ingest import (
    IngestRequest,
    Outcome,
    Recovery,
    delete_document,
    ingest,
    recover,
    title_from_name,
    update_metadata,
)
from indexing.pool import Pool

log = logging.getLogger(__name__)

STATUSES = ("added", "updated", "unchanged", "failed", "pruned")


@dataclass(frozen=True)
class ManifestEntry:
    """Per-file metadata from a manifest row."""

    title: str | None = None
    tags: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class BulkReport:
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    recovery: Recovery = field(default_factory=Recovery)

    @property
    def counts(self) -> dict[str, int]:
        seen: Counter[str] = Counter(o.status for o in self.outcomes)
        return {status: seen.get(status, 0) for status in STATUSES}

    @property
    def ok(self) -> bool:
        return self.counts["failed"] == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.counts,
            "documents": [o.as_dict() for o in self.outcomes],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "recovered": {
                "abandoned_uploads_deleted": self.recovery.abandoned_uploads,
                "abandoned_uploads_deferred": self.recovery.deferred_intents,
                "retired_files_deleted": self.recovery.deleted_retired,
            },
        }


# -------------------------------------------------------------------------------- manifest

_LIST_SEPARATOR = ";"


def read_manifest(path: Path) -> dict[str, ManifestEntry]:
    """Rows keyed by the path they name (as written). CSV needs a ``path`` column; JSONL lines
    are objects with ``path`` and optionally ``title``, ``tags``, ``groups``, ``attributes``."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"cannot read manifest {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"manifest {path} is not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start:,}); save it as UTF-8"
        ) from None
    rows = _jsonl_rows(path, raw) if path.suffix.lower() == ".jsonl" else _csv_rows(path, raw)
    entries: dict[str, ManifestEntry] = {}
    for line, row in rows:
        name = str(row.get("path") or "").strip()
        if not name:
            raise InvalidInput(f"{path}:{line}: a manifest row needs a 'path'")
        # "./hr/pay.md" and "hr//pay.md" name what "hr/pay.md" does (POSIX keeps a leading
        # "//" apart; here it is one "/").
        name = posixpath.normpath(name)
        if name.startswith("//"):
            name = "/" + name.lstrip("/")
        entries[name] = ManifestEntry(
            title=(str(row["title"]).strip() or None) if row.get("title") else None,
            tags=_as_list(row.get("tags"), path, line),
            groups=_as_list(row.get("groups"), path, line),
            attributes=_as_dict(row.get("attributes"), path, line),
        )
    return entries


def _csv_rows(path: Path, raw: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(raw.splitlines())
    try:
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise InvalidInput(f"{path}: a CSV manifest needs a header row with a 'path' column")
        return [(number + 2, row) for number, row in enumerate(reader)]
    except csv.Error as exc:
        raise InvalidInput(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None


def _jsonl_rows(path: Path, raw: str) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for number, text in enumerate(raw.splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
        except RecursionError:
            raise InvalidInput(f"{path}:{number}: nested too deeply") from None
        if not isinstance(row, dict):
            raise InvalidInput(f"{path}:{number}: each line must be a JSON object")
        rows.append((number, row))
    return rows


def _as_list(value: Any, path: Path, line: int) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(_LIST_SEPARATOR) if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise InvalidInput(f"{path}:{line}: tags and groups must be a list of strings")


def _as_dict(value: Any, path: Path, line: int) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}:{line}: attributes must be a JSON object") from exc
        except RecursionError:
            raise InvalidInput(f"{path}:{line}: attributes are nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{path}:{line}: attributes must be a JSON object")
    check_attributes(value, where=f"{path}:{line}: attributes")
    return value


# ---------------------------------------------------------------------------------- walking


def walk(roots: Sequence[Path]) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """Files to ingest as (root, file) pairs, and (path, reason) for what was skipped.

    Hidden files and folders are skipped; symbolic links are followed only while they stay
    inside the root they were found under, and a folder is walked once however many links
    lead to it (a link back up the tree would otherwise be walked until the OS gives up).
    """
    found: list[tuple[Path, Path]] = []
    skipped: list[tuple[str, str]] = []
    walked: set[Path] = set()
    for given in roots:
        if not given.exists():
            raise InvalidInput(f"{given}: no such file or directory")
        root = given.resolve()
        if root.is_file():
            found.append((root.parent, root))
            continue
        for path in _walk_dir(root, root, skipped, walked):
            found.append((root, path))
    return found, skipped


def _walk_dir(
    root: Path, folder: Path, skipped: list[tuple[str, str]], walked: set[Path]
) -> Iterator[Path]:
    real = folder.resolve()
    if real in walked:
        skipped.append((str(folder), f"folder already walked as {real}"))
        return
    walked.add(real)
    try:
        children = sorted(folder.iterdir())
    except OSError as exc:
        skipped.append((str(folder), f"cannot list folder: {exc.strerror}"))
        return
    for child in children:
        if child.name.startswith("."):
            continue
        try:
            link = child.is_symlink()
            if link and not child.resolve(strict=True).is_relative_to(root):
                skipped.append((str(child), f"symbolic link leads outside {root}"))
                continue
            is_dir, is_file = child.is_dir(), child.is_file()
        except RuntimeError:  # Python before 3.13 reports a link loop so
            skipped.append((str(child), "symbolic link loop"))
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                skipped.append((str(child), "symbolic link loop"))
            elif exc.errno in (errno.ENOENT, errno.ENOTDIR):
                skipped.append((str(child), "symbolic link to nothing"))
            else:
                # Perhaps a folder: "cannot list" keeps prune from taking it for empty.
                skipped.append((str(child), f"cannot list: {exc.strerror}"))
            continue
        if is_dir:
            yield from _walk_dir(root, child, skipped, walked)
        elif is_file:
            yield child


def _manifest_key(
    manifest: dict[str, ManifestEntry], manifest_dir: Path | None, root: Path, path: Path
) -> str | None:
    """The manifest row naming ``path``: relative to its root or to the manifest, or whole."""
    candidates = [path.relative_to(root).as_posix(), str(path)]
    if manifest_dir is not None and path.is_relative_to(manifest_dir):
        candidates.append(path.relative_to(manifest_dir).as_posix())
    return next((key for key in candidates if key in manifest), None)


# ------------------------------------------------------------------------------------- run

OnOutcome = Callable[[Outcome, int, int], None]


def bulk_ingest(
    pool: Pool,
    paths: Sequence[Path],
    *,
    manifest: Path | None = None,
    tags: Sequence[str] = (),
    groups: Sequence[str] = (),
    attributes: Mapping[str, Any] | None = None,
    concurrency: int = 4,
    prune: bool = False,
    dry_run: bool = False,
    on_outcome: OnOutcome | None = None,
) -> BulkReport:
    """Ingest every supported file under ``paths``; see the module docstring.

    ``tags`` and ``groups`` are added to every document's own (from the manifest);
    ``attributes`` are set on every document, a manifest row's value winning for its keys."""
    if concurrency < 1:
        raise InvalidInput("concurrency must be at least 1")
    rows = read_manifest(manifest) if manifest else {}
    manifest_path = manifest.resolve() if manifest else None
    files, skipped = walk(paths)
    files = [(root, path) for root, path in files if path != manifest_path]
    report = BulkReport(skipped=skipped)
    if not dry_run:
        try:
            report.recovery = recover(pool)
        except PoolError as exc:  # cleanup can wait for the next run; the ingest cannot
            report.skipped.append(("(recovery)", f"cleanup of an earlier run postponed: {exc}"))
    manifest_dir = None if manifest_path is None else manifest_path.parent
    keys = {path: _manifest_key(rows, manifest_dir, root, path) for root, path in files}
    requests = [
        _PathRequest(
            path,
            rows[key] if (key := keys[path]) is not None else None,
            tuple(tags),
            tuple(groups),
            dict(attributes or {}),
        )
        for _, path in files
    ]
    # A row that names no file found (a typo, a file gone) said who may read something: say
    # that it applied to nothing, rather than let a file it meant go in without its groups.
    for name in sorted(set(rows) - set(keys.values())):
        report.skipped.append((f"{manifest}: {name}", "manifest row matches no file found"))
    total = len(requests)
    done = 0
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ingest") as workers:
        futures = [workers.submit(_ingest_path, pool, request, dry_run) for request in requests]
        for future in as_completed(futures):
            outcome = future.result()
            report.outcomes.append(outcome)
            done += 1
            if on_outcome is not None:
                on_outcome(outcome, done, total)
    unlisted = [path for path, reason in skipped if reason.startswith("cannot list")]
    if prune and unlisted:
        # A folder we could not read would look empty: pruning now would delete its documents.
        report.skipped.append(("(prune)", f"not pruned: could not list {', '.join(unlisted)}"))
    elif prune:
        seen = {str(request.path): request for request in requests}
        for outcome in _prune(pool, paths, seen, report.outcomes, dry_run=dry_run):
            if outcome.status != "pruned":
                # A moved file's outcome replaces the one it had as a copy of its old self.
                report.outcomes = [o for o in report.outcomes if o.source != outcome.source]
            report.outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome, done, total)
    report.outcomes.sort(key=lambda o: o.source)
    return report


@dataclass(frozen=True)
class _PathRequest:
    path: Path
    entry: ManifestEntry | None
    tags: tuple[str, ...]
    groups: tuple[str, ...]
    attributes: dict[str, Any] = field(default_factory=dict)


def _ingest_path(pool: Pool, item: _PathRequest, dry_run: bool) -> Outcome:
    source = str(item.path)
    try:
        check_size(item.path.name, item.path.stat().st_size, pool.config.limits)
        data = item.path.read_bytes()
    except FileTooLarge as exc:  # refused unread, with the message an upload would get
        return Outcome(source, "failed", reason=str(exc), error=exc)
    except OSError as exc:
        return Outcome(source, "failed", reason=f"cannot read file: {exc.strerror}")
    entry = item.entry or ManifestEntry()
    request = IngestRequest(
        source=source,
        data=data,
        filename=item.path.name,
        title=entry.title,
        tags=tuple(dict.fromkeys(item.tags + entry.tags)),
        groups=tuple(dict.fromkeys(item.groups + entry.groups)),
        attributes={**item.attributes, **entry.attributes},
    )
    try:
        return ingest(pool, request, dry_run=dry_run)
    except Exception as exc:  # one bad file must not stop the batch
        # Only the type: a driver's message can quote the SQL parameters, document text included.
        log.exception("unexpected error ingesting %s", source)
        return Outcome(source, "failed", reason=f"unexpected error ({type(exc).__name__})")


def _prune(
    pool: Pool,
    roots: Sequence[Path],
    seen: Mapping[str, _PathRequest],
    ingested: Sequence[Outcome],
    *,
    dry_run: bool,
) -> list[Outcome]:
    """Delete the documents of files no longer under ``roots``. A file that is gone but whose
    bytes this run found under another name was moved or renamed: its document moves with it
    instead (same id, same remote file), rather than leaving neither routable."""
    prefixes = []
    for given in roots:
        root = given.resolve()
        prefixes.append(str(root) if root.is_file() else str(root) + os.sep)
    copies: dict[str, list[str]] = {}
    for outcome in ingested:
        if outcome.status == "unchanged" and outcome.document_id and outcome.source in seen:
            copies.setdefault(outcome.document_id, []).append(outcome.source)
    outcomes = []
    for source, document_id in pool.store.all_sources():
        under = any(source == p or source.startswith(p) for p in prefixes)
        if not under or source in seen:
            continue
        moved_to = sorted(s for s in copies.get(document_id, []) if s != source)
        if moved_to:
            outcomes.append(_move(pool, document_id, source, seen[moved_to[0]], dry_run=dry_run))
            continue
        if dry_run:
            outcomes.append(Outcome(source, "pruned", document_id, reason="dry run"))
            continue
        try:
            doc = delete_document(pool, document_id)
        except PoolError as exc:
            outcomes.append(Outcome(source, "failed", document_id, reason=f"prune: {exc}"))
            continue
        outcomes.append(
            Outcome(source, "pruned", doc.id, doc.file_id, doc.title, reason="no longer on disk")
        )
    return outcomes


def _move(
    pool: Pool, document_id: str, source: str, item: _PathRequest, *, dry_run: bool
) -> Outcome:
    moved = f"moved from {source}"
    if dry_run:
        return Outcome(str(item.path), "updated", document_id, reason=f"dry run: {moved}")
    try:
        doc = pool.store.move_source(
            document_id=document_id,
            source_was=source,
            source=str(item.path),
            filename=sanitise_filename(item.path.name),
        )
    except PoolError as exc:
        return Outcome(str(item.path), "failed", document_id, reason=f"{moved}: {exc}")
    if item.entry is None or item.entry.title is None:
        # A title that was the old file's name becomes the new one's, as a fresh ingest
        # would make it; a title of its own (a heading, a manifest's) stays.
        named = title_from_name(PurePath(source).name)
        if doc.title == named and named != (new := title_from_name(item.path.name)):
            try:
                update_metadata(pool, document_id=document_id, title=new)
                pool.refresh()
            except PoolError as exc:
                log.warning("could not retitle %s after its move: %s", document_id, exc)
    # Once more under its own source, so that its manifest row's metadata applies.
    outcome = _ingest_path(pool, item, dry_run=False)
    if outcome.status == "unchanged":
        outcome = replace(outcome, status="updated")
    return replace(outcome, reason=f"{moved}; {outcome.reason}" if outcome.reason else moved)
