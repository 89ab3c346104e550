"""Bulk ingest: walking folders, manifests, concurrency, prune, dry runs, bad files, and crashes.

The crash tests run a bulk ingest in another process (``crash_ingest.py``), kill it with SIGKILL
at chosen points, run again here, and check that the pool and the fake Files API converged:
every file once, every document's file present, no orphan files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from indexing.bulk import BulkReport, bulk_ingest
from indexing.errors import InvalidInput
from indexing.extract import ExtractLimits
from indexing.files import FilesBackend, RemoteFile
from indexing.models import Document
from indexing.pool import Pool
from indexing.reconcile import reconcile
from tests.factories import make_docx, make_pdf, make_zip_bomb_docx
from tests.fakes.anthropic_server import FakeAnthropic

OpenPool = Callable[..., Pool]

fake_files_api = pytest.mark.parametrize("files_backend", ["anthropic"], indirect=True)

LEAVE = "Annual leave: staff may carry over five days of unused leave."
TRAVEL = "Travel expenses: keep every receipt and claim within thirty days."
SECURITY = "Security: lock your screen whenever you leave your desk."
PAYROLL = "Payroll: salaries are paid on the last working day of the month."


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def statuses(report: BulkReport) -> dict[str, str]:
    return {o.source: o.status for o in report.outcomes}


def documents(pool: Pool) -> dict[str, Document]:
    """source → document, for every document in the pool."""
    docs, cursor = pool.store.list_documents(limit=1000)
    assert cursor is None
    return {d.source: d for d in docs}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return (tmp_path / "corpus").resolve()


# ---------------------------------------------------------------------------------- walking


def test_hidden_entries_are_skipped_and_links_followed_only_inside_the_root(
    pool: Pool, root: Path, tmp_path: Path
) -> None:
    write(root / "policies" / "leave.md", LEAVE)
    write(root / "handbook.pdf", make_pdf(["Expenses are reimbursed monthly."]))
    write(root / "onboarding.docx", make_docx(["Laptops are issued on the first day."]))
    write(root / ".draft.md", "An unpublished draft.")
    write(root / ".git" / "notes.txt", "Repository internals.")
    write(root / ".versions" / "security-v2.md", SECURITY)
    (root / "security.md").symlink_to(root / ".versions" / "security-v2.md")
    write(tmp_path / "elsewhere" / "payroll.md", PAYROLL)
    (root / "payroll.md").symlink_to(tmp_path / "elsewhere" / "payroll.md")
    (root / "finance").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    report = bulk_ingest(pool, [root])

    assert statuses(report) == {
        str(root / "handbook.pdf"): "added",
        str(root / "onboarding.docx"): "added",
        str(root / "policies" / "leave.md"): "added",
        str(root / "security.md"): "added",
    }
    assert sorted(report.skipped) == [
        (str(root / "finance"), f"symbolic link leads outside {root}"),
        (str(root / "payroll.md"), f"symbolic link leads outside {root}"),
    ]
    assert pool.store.get_content(documents(pool)[str(root / "security.md")].id).text == SECURITY


def test_a_link_back_to_a_folder_already_walked_is_not_walked_again(pool: Pool, root: Path) -> None:
    write(root / "policies" / "leave.md", LEAVE)
    (root / "policies" / "everything").symlink_to(root, target_is_directory=True)

    report = bulk_ingest(pool, [root])

    assert statuses(report) == {str(root / "policies" / "leave.md"): "added"}
    assert report.skipped == [
        (str(root / "policies" / "everything"), f"folder already walked as {root}")
    ]
    assert pool.store.count_documents() == 1


def test_a_link_loop_or_a_dangling_link_is_skipped_and_the_rest_ingested(
    pool: Pool, root: Path
) -> None:
    write(root / "leave.md", LEAVE)
    (root / "loop").symlink_to(root / "loop")
    (root / "gone.md").symlink_to(root / "nowhere.md")
    (root / "under-a-file.md").symlink_to(root / "leave.md" / "x")
    bulk_ingest(pool, [root])

    report = bulk_ingest(pool, [root], prune=True)

    assert statuses(report) == {str(root / "leave.md"): "unchanged"}
    assert sorted(report.skipped) == [
        (str(root / "gone.md"), "symbolic link to nothing"),
        (str(root / "loop"), "symbolic link loop"),
        (str(root / "under-a-file.md"), "symbolic link to nothing"),
    ]  # and none of them kept prune from running


# --------------------------------------------------------------------------------- manifests

CSV_MANIFEST = """path,title,tags,groups
policies/leave.md,Annual Leave Policy,hr;leave,staff
travel.txt,Travel and Expenses,finance,staff;contractors
"""

JSONL_MANIFEST = "\n".join(
    json.dumps(row)
    for row in [
        {
            "path": "policies/leave.md",
            "title": "Annual Leave Policy",
            "tags": ["hr", "leave"],
            "groups": ["staff"],
        },
        {
            "path": "travel.txt",
            "title": "Travel and Expenses",
            "tags": ["finance"],
            "groups": ["staff", "contractors"],
        },
    ]
)


@pytest.mark.parametrize(
    ("name", "manifest"), [("manifest.csv", CSV_MANIFEST), ("manifest.jsonl", JSONL_MANIFEST)]
)
def test_a_manifest_gives_titles_tags_and_groups_and_options_apply_to_every_file(
    pool: Pool, root: Path, name: str, manifest: str
) -> None:
    write(root / "policies" / "leave.md", LEAVE)
    write(root / "travel.txt", TRAVEL)
    write(root / "security.md", "# Screen locking\n\n" + SECURITY)
    manifest_path = write(root / name, manifest)

    report = bulk_ingest(pool, [root], manifest=manifest_path, tags=["2024"], groups=["everyone"])

    assert report.ok and report.counts["added"] == 3
    assert str(manifest_path) not in statuses(report)
    docs = documents(pool)
    described = {
        path: (doc.title, doc.tags, doc.groups)
        for path, doc in ((Path(s).relative_to(root).as_posix(), d) for s, d in docs.items())
    }
    assert described == {
        "policies/leave.md": (
            "Annual Leave Policy",
            ["2024", "hr", "leave"],
            ["everyone", "staff"],
        ),
        "travel.txt": (
            "Travel and Expenses",
            ["2024", "finance"],
            ["contractors", "everyone", "staff"],
        ),
        "security.md": ("Screen locking", ["2024"], ["everyone"]),
    }


def test_a_manifest_path_is_read_as_a_path_and_a_row_matching_nothing_is_reported(
    pool: Pool, root: Path
) -> None:
    write(root / "hr" / "salaries.md", LEAVE)
    write(root / "travel.md", TRAVEL)
    manifest = write(
        root / "manifest.csv",
        "path,title,tags,groups\n./hr//salaries.md,Salary bands,hr,hr-only\ntravle.md,T,,staff\n",
    )

    report = bulk_ingest(pool, [root], manifest=manifest)

    salaries = documents(pool)[str(root / "hr" / "salaries.md")]
    assert (salaries.title, salaries.groups) == ("Salary bands", ["hr-only"])
    assert report.skipped == [(f"{manifest}: travle.md", "manifest row matches no file found")]


@pytest.mark.parametrize(
    ("name", "manifest", "needle"),
    [
        ("manifest.csv", "path,title\nleave.md,Caf\xe9\n".encode("latin-1"), "is not UTF-8"),
        ("manifest.csv", b"path,title\nleave.md," + b"t" * 200_000 + b"\n", "not valid CSV"),
        ("manifest.jsonl", b'{"path": "leave.md"\n', "not valid JSON"),
        ("manifest.jsonl", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (
            "manifest.jsonl",
            b'{"path": "leave.md", "attributes": {"year": NaN}}',
            ":1: attributes.year is nan; JSON numbers must be finite",
        ),
        (
            "manifest.jsonl",
            b'{"path": "leave.md", "attributes": {"owner": "a\\u0000"}}',
            "attributes.owner contains a NUL",
        ),
        (
            "manifest.csv",
            b'path,attributes\nleave.md,"{""year"": Infinity}"\n',
            ":2: attributes.year is inf",
        ),
    ],
)
def test_a_bad_manifest_is_refused_before_anything_is_ingested(
    pool: Pool, root: Path, name: str, manifest: bytes, needle: str
) -> None:
    write(root / "leave.md", LEAVE)
    (root / name).write_bytes(manifest)

    with pytest.raises(InvalidInput) as refused:
        bulk_ingest(pool, [root / "leave.md"], manifest=root / name)

    assert needle in str(refused.value)
    assert pool.store.count_documents() == 0


# ------------------------------------------------------------------- counts, concurrency, prune


def test_the_summary_counts_every_status(pool: Pool, root: Path) -> None:
    write(root / "leave.md", LEAVE)
    write(root / "travel.md", TRAVEL)
    write(root / "security.md", SECURITY)
    first = bulk_ingest(pool, [root])

    write(root / "leave.md", LEAVE + " Ask your manager first.")
    write(root / "payroll.md", PAYROLL)
    (root / "security.md").unlink()
    second = bulk_ingest(pool, [root], prune=True)

    assert first.counts == {"added": 3, "updated": 0, "unchanged": 0, "failed": 0, "pruned": 0}
    assert second.counts == {"added": 1, "updated": 1, "unchanged": 1, "failed": 0, "pruned": 1}
    assert second.ok
    assert second.as_dict()["summary"] == second.counts


@dataclass
class OverlapProbe:
    """A real backend whose first ``width`` uploads wait for each other: they pass only if that
    many run at once (otherwise the barrier times out and the uploads fail)."""

    inner: FilesBackend
    width: int
    waited: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _barrier: threading.Barrier = field(init=False)

    def __post_init__(self) -> None:
        self._barrier = threading.Barrier(self.width, timeout=30)

    @property
    def name(self) -> str:
        return self.inner.name

    def upload(self, *, filename: str, data: bytes, mime_type: str) -> RemoteFile:
        with self._lock:
            self.waited += 1
            wait = self.waited <= self.width
        if wait:
            self._barrier.wait()
        return self.inner.upload(filename=filename, data=data, mime_type=mime_type)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_concurrent_ingest_uploads_in_parallel_and_adds_each_file_once(
    open_pool: OpenPool, files_backend: FilesBackend, root: Path
) -> None:
    for n in range(10):
        write(root / f"policy-{n}.md", f"Policy {n}: {TRAVEL}")
    probe = OverlapProbe(files_backend, width=4)
    pool = open_pool(backend=probe)
    progress: list[tuple[int, int]] = []

    report = bulk_ingest(
        pool, [root], concurrency=4, on_outcome=lambda o, d, t: progress.append((d, t))
    )

    assert report.counts["added"] == 10, [o.reason for o in report.outcomes]
    assert sorted(documents(pool)) == sorted(str(root / f"policy-{n}.md") for n in range(10))
    file_ids = {d.file_id for d in documents(pool).values()}
    assert len(file_ids) == 10
    assert {e.file_id for e in pool.index.entries()} == file_ids
    assert sorted(progress) == [(n, 10) for n in range(1, 11)]


def test_copies_of_one_file_in_a_concurrent_run_become_one_document(
    pool: Pool, files_backend: FilesBackend, root: Path
) -> None:
    for n in range(8):
        write(root / f"team-{n}" / "leave.md", LEAVE)

    report = bulk_ingest(pool, [root], concurrency=4)

    assert sorted(o.status for o in report.outcomes) == ["added"] + ["unchanged"] * 7
    assert pool.store.count_documents() == 1
    assert len(list(files_backend.list())) == 1


def test_prune_removes_only_vanished_files_under_the_given_roots(
    pool: Pool, files_backend: FilesBackend, tmp_path: Path
) -> None:
    docs = (tmp_path / "docs").resolve()
    sibling = (tmp_path / "docs-archive").resolve()  # shares the prefix "docs"
    other = (tmp_path / "other").resolve()
    for folder in (docs, sibling, other):
        write(folder / "leave.md", f"{folder.name}: {LEAVE}")
        write(folder / "travel.md", f"{folder.name}: {TRAVEL}")
    bulk_ingest(pool, [docs, sibling, other])
    for folder in (docs, sibling, other):
        (folder / "leave.md").unlink()
    gone = documents(pool)[str(docs / "leave.md")]

    report = bulk_ingest(pool, [docs], prune=True)

    assert [(o.source, o.status, o.reason) for o in report.outcomes if o.status == "pruned"] == [
        (str(docs / "leave.md"), "pruned", "no longer on disk")
    ]
    assert sorted(documents(pool)) == sorted(
        [
            str(docs / "travel.md"),
            str(sibling / "leave.md"),
            str(sibling / "travel.md"),
            str(other / "leave.md"),
            str(other / "travel.md"),
        ]
    )
    assert gone.file_id not in pool.index
    assert gone.file_id not in {f.id for f in files_backend.list()}


@pytest.mark.parametrize("copies", [1, 2])
def test_prune_moves_the_document_of_a_file_that_was_renamed(
    pool: Pool, files_backend: FilesBackend, root: Path, copies: int
) -> None:
    write(root / "leave.md", LEAVE)
    bulk_ingest(pool, [root])
    original = documents(pool)[str(root / "leave.md")]
    for n in range(copies):  # also a copy made before the original went
        write(root / f"policies-{n}" / "annual-leave.md", LEAVE)
    first = bulk_ingest(pool, [root])
    (root / "leave.md").unlink()
    write(root / "manifest.csv", "path,title\npolicies-0/annual-leave.md,Annual Leave\n")

    report = bulk_ingest(pool, [root], prune=True, manifest=root / "manifest.csv")

    assert first.counts["unchanged"] == copies + 1  # the original, and its copies
    moved_to = str(root / "policies-0" / "annual-leave.md")
    assert report.ok and report.counts["pruned"] == 0
    [moved] = [o for o in report.outcomes if o.source == moved_to]
    assert (moved.status, moved.document_id) == ("updated", original.id)
    assert moved.reason.startswith(f"moved from {root / 'leave.md'}")
    doc = pool.store.get_document(original.id)
    assert (doc.source, doc.file_id, doc.title) == (moved_to, original.file_id, "Annual Leave")
    assert doc.filename == "annual-leave.md"  # what answers name it by
    assert list(documents(pool)) == [moved_to]
    assert original.file_id in pool.index
    assert {f.id for f in files_backend.list()} == {original.file_id}
    # The next run finds it where it is now; other copies stay copies of it.
    again = bulk_ingest(pool, [root], prune=True, manifest=root / "manifest.csv")
    assert again.counts == {"added": 0, "updated": 0, "unchanged": copies, "failed": 0, "pruned": 0}


def test_a_renamed_file_titled_by_its_name_takes_its_new_name(pool: Pool, root: Path) -> None:
    write(root / "leave-rules.txt", " ".join([LEAVE] * 3))  # no short first line: titled by name
    write(root / "travel.md", "# Travel and expenses\n\n" + TRAVEL)
    bulk_ingest(pool, [root])
    (root / "leave-rules.txt").rename(root / "annual-leave.txt")
    (root / "travel.md").rename(root / "trips.md")

    report = bulk_ingest(pool, [root], prune=True)

    assert report.counts["pruned"] == 0
    titles = {Path(source).name: doc.title for source, doc in documents(pool).items()}
    assert titles == {"annual-leave.txt": "annual-leave", "trips.md": "Travel and expenses"}
    hits = pool.index.search(pool.analyzer.terms("annual leave"), top_k=1, groups=[])
    assert [h.entry.title for h in hits] == ["annual-leave"]  # routing has the new title


def test_a_dry_run_prune_reports_a_move_and_changes_nothing(pool: Pool, root: Path) -> None:
    write(root / "leave.md", LEAVE)
    bulk_ingest(pool, [root])
    write(root / "annual-leave.md", LEAVE)
    (root / "leave.md").unlink()

    report = bulk_ingest(pool, [root], prune=True, dry_run=True)

    assert [(o.status, o.reason) for o in report.outcomes] == [
        ("updated", f"dry run: moved from {root / 'leave.md'}")
    ]
    assert list(documents(pool)) == [str(root / "leave.md")]


@fake_files_api
def test_a_dry_run_uploads_nothing_and_writes_nothing(
    pool: Pool, fake_anthropic: FakeAnthropic, root: Path
) -> None:
    write(root / "leave.md", LEAVE)
    write(root / "travel.md", TRAVEL)

    report = bulk_ingest(pool, [root], dry_run=True, prune=True)

    assert {(o.status, o.reason) for o in report.outcomes} == {("added", "dry run")}
    assert fake_anthropic.requests_to("POST", "/v1/files") == []
    assert fake_anthropic.files == {}
    assert pool.store.count_documents() == 0
    assert pool.store.intents() == [] and pool.store.latest_change() == 0


@fake_files_api
def test_a_dry_run_prune_reports_but_keeps_the_document(
    pool: Pool, fake_anthropic: FakeAnthropic, root: Path
) -> None:
    write(root / "leave.md", LEAVE)
    write(root / "travel.md", TRAVEL)
    bulk_ingest(pool, [root])
    (root / "travel.md").unlink()
    files_before = set(fake_anthropic.files)

    report = bulk_ingest(pool, [root], dry_run=True, prune=True)

    assert statuses(report) == {
        str(root / "leave.md"): "unchanged",
        str(root / "travel.md"): "pruned",
    }
    assert str(root / "travel.md") in documents(pool)
    assert set(fake_anthropic.files) == files_before
    assert fake_anthropic.requests_to("DELETE", f"/v1/files/{next(iter(files_before))}") == []


# --------------------------------------------------------------------------------- bad files

SMALL_LIMITS = ExtractLimits(max_bytes=64 * 1024)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("corrupt.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog", "pdf"),
        ("bomb.docx", make_zip_bomb_docx(8 * 1024 * 1024), "compression ratio"),
        ("junk.txt", bytes(range(256)) * 4, "text"),
        ("empty.txt", b"", "empty"),
        ("big.txt", b"Leave policy. " * 8_000, "limit"),
        ("slides.pptx", b"PK\x03\x04 a presentation", "unsupported"),
    ],
    ids=["corrupt-pdf", "zip-bomb-docx", "binary-named-txt", "empty", "too-large", "pptx"],
)
def test_a_bad_file_fails_with_its_name_and_reason_while_good_files_ingest(
    open_pool: OpenPool, root: Path, name: str, data: bytes, reason: str
) -> None:
    pool = open_pool(limits=SMALL_LIMITS)
    write(root / "leave.md", LEAVE)
    write(root / "handbook.pdf", make_pdf(["Expenses are reimbursed monthly."]))
    write(root / name, data)

    report = bulk_ingest(pool, [root], concurrency=2)

    bad = next(o for o in report.outcomes if o.source == str(root / name))
    assert bad.status == "failed"
    assert name in bad.reason and reason in bad.reason.lower()
    assert report.counts["added"] == 2 and report.counts["failed"] == 1
    assert not report.ok
    assert sorted(documents(pool)) == [str(root / "handbook.pdf"), str(root / "leave.md")]
    assert pool.store.intents() == []


# ------------------------------------------------------------------------------ crash safety

CRASH_SCRIPT = Path(__file__).with_name("crash_ingest.py")
CORPUS_SIZE = 9


class CrashLauncher:
    """Talks to ``crash_ingest.py``: runs doomed ingests in a child process, one at a time."""

    def __init__(self, log: Path) -> None:
        self._log = log.open("w")
        self._process = subprocess.Popen(
            [sys.executable, str(CRASH_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self._next()["ready"]

    def run(self, job: dict[str, Any], *, kill_when: Callable[[], bool] | None = None) -> int:
        """Run ``job``, SIGKILL it as soon as ``kill_when()`` holds; its exit code."""
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(job) + "\n")
        self._process.stdin.flush()
        pid = int(self._next()["pid"])
        while kill_when is not None:
            with contextlib.suppress(queue.Empty):
                return int(self._messages.get_nowait()["exit"])  # it ended on its own
            if kill_when():
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.002)
        return int(self._next()["exit"])

    def close(self) -> None:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=30)
        self._process.stdout.close()
        self._log.close()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._messages.put(json.loads(line))

    def _next(self) -> dict[str, Any]:
        try:
            return self._messages.get(timeout=60)
        except queue.Empty:
            pytest.fail(f"the crash launcher stopped answering; see {self._log.name}")


@pytest.fixture(scope="module")
def crash_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashLauncher]:
    launcher = CrashLauncher(tmp_path_factory.mktemp("crash") / "launcher.log")
    yield launcher
    launcher.close()


@dataclass(frozen=True)
class Crash:
    """Where a run dies. ``kill_after_uploads``: the test kills it once the fake has received
    that many uploads; ``die``: the child kills itself (see ``crash_ingest.DyingBackend``);
    ``updating``: the corpus was ingested before and every file has changed since."""

    kill_after_uploads: int | None = None
    die: dict[str, Any] | None = None
    updating: bool = False
    #: What the next run must find and clean (a ``Recovery`` field): proof the crash hurt.
    leaves: str = "abandoned_uploads"


CRASHES = {
    "killed-during-the-first-upload": Crash(kill_after_uploads=1),
    "killed-mid-batch": Crash(kill_after_uploads=5),
    "killed-after-an-upload-before-its-commit": Crash(die={"after_upload": 2}),
    "killed-mid-update-batch": Crash(kill_after_uploads=4, updating=True),
    "killed-after-a-replacement-before-deleting-the-old-file": Crash(
        die={"before_delete": True}, updating=True, leaves="deleted_retired"
    ),
}


def write_corpus(root: Path, version: int) -> dict[str, str]:
    """``CORPUS_SIZE`` distinct text files; source → content hash."""
    hashes = {}
    for n in range(CORPUS_SIZE):
        text = f"Policy {n}, version {version}: {TRAVEL} {LEAVE}"
        path = write(root / f"policy-{n}.md", text)
        hashes[str(path)] = hashlib.sha256(text.encode()).hexdigest()
    return hashes


def uploads_received(fake: FakeAnthropic) -> int:
    return len(fake.requests_to("POST", "/v1/files"))


@pytest.mark.slow
@pytest.mark.parametrize("crash", CRASHES.values(), ids=CRASHES.keys())
@fake_files_api
def test_a_killed_bulk_ingest_converges_on_the_next_run(
    pool: Pool,
    database_url: str,
    fake_anthropic: FakeAnthropic,
    crash_launcher: CrashLauncher,
    root: Path,
    crash: Crash,
) -> None:
    if crash.updating:
        write_corpus(root, version=1)
        assert bulk_ingest(pool, [root]).counts["added"] == CORPUS_SIZE
    expected = write_corpus(root, version=2 if crash.updating else 1)
    uploads_before = uploads_received(fake_anthropic)
    stored_before = fake_anthropic.uploads_stored
    fake_anthropic.upload_delay = 0.1

    job = {
        "database_url": database_url,
        "data_dir": str(pool.config.data_dir),
        "corpus": str(root),
        "base_url": fake_anthropic.base_url,
        "api_key": fake_anthropic.api_key,
        "concurrency": 3,
        "die": crash.die,
    }

    def enough_uploads() -> bool:
        wanted = uploads_before + (crash.kill_after_uploads or 0)
        return uploads_received(fake_anthropic) >= wanted

    kill_when = enough_uploads if crash.kill_after_uploads is not None else None
    assert crash_launcher.run(job, kill_when=kill_when) == -signal.SIGKILL
    # Uploads already inside the fake when the client died still land, as they would at the
    # real API; wait until it has stored one file per upload received, so the next run's
    # recovery can find them (an upload cut off mid-body is neither received nor stored).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        fake_anthropic.uploads_stored - stored_before
        < uploads_received(fake_anthropic) - uploads_before
    ):
        time.sleep(0.005)
    fake_anthropic.upload_delay = 0.0

    report = bulk_ingest(pool, [root], concurrency=3)

    assert report.ok, [o.reason for o in report.outcomes]
    assert getattr(report.recovery, crash.leaves), report.recovery
    docs = documents(pool)
    assert {source: d.content_hash for source, d in docs.items()} == expected
    referenced = {d.file_id for d in docs.values()}
    assert len(referenced) == CORPUS_SIZE
    assert set(fake_anthropic.files) == referenced  # nothing missing, no orphans
    assert {e.file_id for e in pool.index.entries()} == referenced
    assert pool.store.intents() == [] and pool.store.retired_files() == []
    check = reconcile(pool)
    assert check.clean and check.recent == [], check.as_dict()
