"""Bandwidth benchmark: the bytes of one question's Messages request, by file id and inlined.

Each corpus goes into a throwaway pool (local Files backend); each question is routed exactly as
``/v1/ask`` routes it (``service.ask.ask`` with the default top-k and token budget, anonymous
groups), and the request it would send is serialised as the SDK serialises JSON bodies
(compact separators, non-ASCII kept, UTF-8). Two sizes per question:

(a) by id: ``build_request`` as sent, each document named by its ``file_id``;
(b) inline: the same documents carried in the body, as a client without the Files API sends
    them: PDFs as base64 of the original bytes, every other format as its extracted text.

Target: every by-id request stays under 3,072 bytes plus the question's UTF-8 length, whatever
the routed documents weigh. Skips the GitHub corpus cleanly when ``../shared/data`` is absent.

Example: python scripts/bench_bandwidth.py [--json]
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import _bench_common as common  # also puts the repository root on sys.path

from indexing.bulk import bulk_ingest
from indexing.pool import Pool
from service.ask import prepare
from service.auth import Caller
from service.conversations import Conversations
from service.pool import open_pool
from service.prompt import SYSTEM_PROMPT, RequestDocument, build_request
from service.settings import Settings

SAMPLE = common.ROOT / "sample"
GITHUB = common.DATA / "github-site-policy"
BY_ID_ALLOWANCE = 3_072  # bytes a by-id request may take beyond the question itself
QUESTION_WIDTH = 58

SAMPLE_QUESTIONS = (
    "How many days of annual leave do I get after four years of service?",
    "Can I carry over unused holiday into next year?",
    "How long can I self-certify when I'm off sick before I need a fit note?",
    "How many weeks of enhanced maternity pay does the company offer?",
    "What is the nightly hotel limit when I travel to London on business?",
    "How soon after spending do I have to submit an expense claim in ClaimPoint?",
    "How many quotes do I need for a purchase over £10,000?",
    "Can I accept a bottle of wine from a supplier during a tender?",
    "How do I report a suspected personal data breach, and how quickly?",
    "How long must my password be, and which MFA methods are allowed?",
    "Can I work remotely from another country for a few weeks?",
    "What should I do if my work laptop is lost or stolen?",
    "How do I raise a whistleblowing concern anonymously?",
)

GITHUB_QUESTIONS = (
    "Can I post proof-of-concept exploit code for a known vulnerability in my repository?",
    "How do I submit a DMCA takedown notice for code copied from my project?",
    "What happens to a GitHub account when its owner dies?",
    "Can I claim an inactive username that someone else registered years ago?",
    "May I use the Octocat logo on my open source project's website?",
    "Can developers in sanctioned countries use GitHub under US trade controls?",
    "How does GitHub handle a government request to take down content?",
    "What user data does GitHub disclose to law enforcement with a subpoena?",
    "As a GitHub employee, may I accept a gift or dinner from a vendor?",
    "Which cookies does GitHub set, and can I opt out of them?",
    "Is sharing AI-generated deepfakes of real people allowed on GitHub?",
    "How do I appeal the suspension of my account?",
)


@dataclass(frozen=True)
class Corpus:
    name: str
    paths: tuple[Path, ...]
    manifest: Path | None
    questions: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    question: str
    documents: list[str]  # titles, in request order
    by_id_bytes: int | None  # None: routed to nothing, so no request is sent
    inline_bytes: int | None
    limit_bytes: int

    @property
    def ratio(self) -> float | None:
        if not self.by_id_bytes or self.inline_bytes is None:
            return None
        return self.inline_bytes / self.by_id_bytes

    @property
    def within_limit(self) -> bool:
        return self.by_id_bytes is None or self.by_id_bytes < self.limit_bytes


def body_bytes(request: dict[str, Any]) -> int:
    """The JSON body's size as the SDK sends it (``anthropic._utils._json.openapi_dumps``)."""
    body = json.dumps(request, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return len(body.encode("utf-8"))


def inline_source(pool: Pool, doc: RequestDocument) -> dict[str, str]:
    if doc.mime_type == "application/pdf":
        original = pool.store.get_original(doc.document_id)
        data = base64.standard_b64encode(original).decode("ascii")
        return {"type": "base64", "media_type": "application/pdf", "data": data}
    text = pool.store.get_content(doc.document_id).text
    return {"type": "text", "media_type": "text/plain", "data": text}


def inlined(request: dict[str, Any], sources: Sequence[dict[str, str]]) -> dict[str, Any]:
    """``request`` with each document block's source replaced, in order, by ``sources``."""
    copied = copy.deepcopy(request)
    blocks = [b for b in copied["messages"][0]["content"] if b["type"] == "document"]
    for block, source in zip(blocks, sources, strict=True):
        block["source"] = source
    return copied


def measure(pool: Pool, settings: Settings, question: str) -> Row:
    anonymous = Caller(groups=())  # /v1/ask's anonymous caller
    prepared = prepare(pool, settings, Conversations(pool.store), question, caller=anonymous)
    documents = prepared.documents
    limit = BY_ID_ALLOWANCE + len(question.encode("utf-8"))
    if not documents:
        return Row(question, [], None, None, limit)
    request = build_request(
        model=settings.model,
        max_tokens=settings.max_tokens,
        system=SYSTEM_PROMPT,
        question=question,
        documents=documents,
    )
    sources = [inline_source(pool, doc) for doc in documents]
    return Row(
        question,
        [doc.title for doc in documents],
        body_bytes(request),
        body_bytes(inlined(request, sources)),
        limit,
    )


def default_settings(home: Path) -> Settings:
    """The shipped defaults (model, max tokens, top-k, token budget), whatever the environment."""
    pinned = ("model", "max_tokens", "top_k", "token_budget", "system_prompt")
    defaults = {name: Settings.model_fields[name].default for name in pinned}
    # Words only: its pools are bulk-ingested without the sentence vectors a server would add.
    return Settings(home=home, files_backend="local", semantic=False, **defaults)


def run_corpus(corpus: Corpus) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="kpool-bench-bandwidth-") as tmp:
        settings = default_settings(Path(tmp))
        pool = open_pool(settings, load_index=False)  # as `kpool ingest` opens it
        try:
            report = bulk_ingest(pool, corpus.paths, manifest=corpus.manifest)
        finally:
            pool.close()
        counts = report.counts
        common.progress(f"{corpus.name}: {counts['added']} added, {counts['failed']} failed")
        pool = open_pool(settings)  # as the server opens it
        try:
            rows = []
            for question in corpus.questions:
                rows.append(measure(pool, settings, question))
                common.progress(f"  {len(rows)}/{len(corpus.questions)} {question[:50]}")
            return rows
        finally:
            pool.close()


def totals(rows: Sequence[Row]) -> tuple[int, int, float | None]:
    by_id = sum(r.by_id_bytes or 0 for r in rows)
    inline = sum(r.inline_bytes or 0 for r in rows)
    return by_id, inline, (inline / by_id if by_id else None)


def corpus_report(rows: Sequence[Row]) -> dict[str, Any]:
    by_id, inline, ratio = totals(rows)
    return {
        "questions": [
            asdict(r) | {"ratio": None if r.ratio is None else round(r.ratio, 2)} for r in rows
        ],
        "total_by_id": by_id,
        "total_inline": inline,
        "ratio": None if ratio is None else round(ratio, 2),
    }


def print_corpus(name: str, rows: Sequence[Row]) -> None:
    print(f"{name}: {len(rows)} questions")
    table_rows = [
        [
            _truncate(r.question),
            len(r.documents),
            r.by_id_bytes,
            r.limit_bytes,
            r.inline_bytes,
            r.ratio,
        ]
        for r in rows
    ]
    by_id, inline, ratio = totals(rows)
    table_rows.append(["total", sum(len(r.documents) for r in rows), by_id, None, inline, ratio])
    headers = ["question", "docs", "by-id B", "limit B", "inline B", "inline/by-id"]
    print(common.table(headers, table_rows))
    print()


def _truncate(text: str) -> str:
    return text if len(text) <= QUESTION_WIDTH else text[: QUESTION_WIDTH - 1] + "…"


def corpora() -> tuple[list[Corpus], dict[str, str]]:
    """The corpora to measure, and the ones skipped with why."""
    found = [Corpus("sample", (SAMPLE / "corpus",), SAMPLE / "manifest.csv", SAMPLE_QUESTIONS)]
    skipped = {}
    if (GITHUB / "Policies").is_dir():
        found.append(Corpus("github-site-policy", (GITHUB / "Policies",), None, GITHUB_QUESTIONS))
    else:
        skipped["github-site-policy"] = f"not at {GITHUB / 'Policies'}: skipped"
    return found, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    found, skipped = corpora()
    results = {corpus.name: run_corpus(corpus) for corpus in found}
    every = [row for rows in results.values() for row in rows]
    met = all(row.within_limit for row in every)
    if args.json:
        out: dict[str, Any] = {
            "corpora": {name: corpus_report(rows) for name, rows in results.items()},
            "target_met": met,
        }
        if skipped:
            out["skipped"] = skipped
        print(json.dumps(out, ensure_ascii=False))
        return 0
    for name, rows in results.items():
        print_corpus(name, rows)
    for name, reason in skipped.items():
        print(f"{name}: {reason}")
        print()
    by_id, inline, ratio = totals(every)
    print(f"Overall: {len(every)} questions, {by_id:,} B by id, {inline:,} B inline", end="")
    print(f" ({common.cell(ratio)}x)")
    print()
    worst = max(every, key=lambda r: (r.by_id_bytes or 0) - r.limit_bytes)
    print("Target:")
    print(
        f"  {common.verdict(met):>7}  every by-id request < {BY_ID_ALLOWANCE:,} B + the question: "
        f"closest {common.cell(worst.by_id_bytes)} B of {worst.limit_bytes:,} B"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
