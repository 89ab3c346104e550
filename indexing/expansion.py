"""Document expansion: a generated description of each document, indexed with it.

Employees ask in their own words, and a policy is written in its own: "can I bring my dog to
work?" against a page titled "Animals in the workplace". With an API key (``KPOOL_EXPAND``), a
small model reads each document once, after it is stored, and writes a few sentences on what
it is about and the questions employees would ask that it answers. That text joins the
document's words (BM25) and becomes one more passage of it (and, with semantic routing, one
more sentence vector), so a question phrased as the model guessed finds the document even when
the document never uses its words. The description is never shown, quoted or sent with a
question: answers and citations come from the document alone.

It is kept with the version it describes (``Content.expansion``): a new version starts without
one and is described again; a new title or a re-index keeps it. A version the model would not
describe keeps an empty one, so that it is not paid for again; an empty description is no
description (no passage, no words). The model is asked from a
background loop (the server's, or ``kpool ingest`` before it exits), never on the upload's path:
a document routes by its own words as soon as it is stored, and by its description too once
that lands, like its sentence vectors. Every process of a deployment may run the loop: each
claims a document in the store before its request (``Store.claim_expansion``), so that no
version is paid for twice.

This module holds the loop and what a describer must do; the Claude-backed describer is in
``service.expand`` (the indexing layer never talks to the Messages API).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from indexing.errors import DocumentNotFound
from indexing.ingest import indexed_passages, summarise
from indexing.models import Content
from indexing.pool import Pool
from indexing.semantic import passage_vectors
from indexing.store import Expanded, ExpansionClaim, ExpansionDue, SummaryMadeOtherwise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Description:
    """What a describer wrote about one document, and what writing it cost."""

    text: str
    model: str
    input_tokens: int
    output_tokens: int


FailureKind = Literal["outage", "request", "reply"]


class DescribeFailed(Exception):
    """No description came back. ``kind`` says what that means for the loop:

    * ``outage``: the service is unreachable, overloaded, rate-limited or refuses the account
      (a bad key, no credit, a model that does not exist): every document would fail alike,
      so the run stops and the rest wait for a later one;
    * ``request``: the API refused this request: the document is skipped for the rest of the
      process's life, and tried again by the next process;
    * ``reply``: the model answered, but not with a usable description (a refusal, no tool
      call): this version of the document is marked as not described, for good.

    ``input_tokens``/``output_tokens``: what a reply cost all the same."""

    def __init__(
        self, message: str, *, kind: FailureKind, input_tokens: int = 0, output_tokens: int = 0
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens


class Describer(Protocol):
    model: str
    #: The longest one ``describe`` call can take, retries included, in seconds: a claim on
    #: the document (``CLAIM_SECONDS``) is held at least twice as long.
    longest_request: float

    def describe(self, title: str, text: str) -> Description: ...


#: Documents that fail one after another before a run stops as if for an outage: a refusal
#: that is the account's, not the documents', must not walk the whole pool.
FAILURES_BEFORE_PAUSE = 3

#: How long a process holds a document it is describing (``Store.claim_expansion``) against
#: the others, at least (twice ``Describer.longest_request`` if that is longer). A claim is
#: released when the request is over; one left by a killed process lapses after this. The
#: processes' clocks must agree to well within it.
CLAIM_SECONDS = 900.0


@dataclass
class ExpandReport:
    """What one ``expand`` run did and cost."""

    described: int = 0
    failed: int = 0
    #: Documents another process was describing or had described, or that changed while
    #: described.
    lost: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    #: Set when the run stopped early (the model unreachable, or failing on document after
    #: document): the rest wait for the next run.
    interrupted: str | None = None
    #: The last failure's reason, logged with a pause.
    last_failure: str | None = None
    #: Failures in a row at the run's end, for the next run to go on counting from.
    streak: int = 0

    @property
    def handled(self) -> int:
        return self.described + self.failed + self.lost

    def add(self, other: ExpandReport) -> None:
        self.described += other.described
        self.failed += other.failed
        self.lost += other.lost
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.interrupted = self.interrupted or other.interrupted
        self.last_failure = other.last_failure or self.last_failure


def expand(
    pool: Pool,
    describer: Describer,
    *,
    limit: int | None = None,
    workers: int = 1,
    descending: bool = False,
    stop: threading.Event | None = None,
    progress: Callable[[ExpandReport], None] | None = None,
    streak: int = 0,
) -> ExpandReport:
    """Describe the documents that have no description yet: at most ``limit`` of them (all by
    default), ``workers`` requests at a time, in document id order (``descending``: from the
    other end, so that a server and ``kpool ingest`` at work meet in the middle), until
    ``stop`` is set or the run is interrupted (``ExpandReport.interrupted``): by an outage, or
    by ``FAILURES_BEFORE_PAUSE`` failures in a row, counted on from ``streak`` (the previous
    run's ``ExpandReport.streak``: a loop that goes on after a pause stops again at the next
    failure). No request starts after either. ``progress`` is called after each batch with the
    running totals.

    A description is stored only if the document kept its version and title meanwhile
    (``Store.add_expansion``)."""
    report = ExpandReport()
    halt = threading.Event()
    counting = threading.Lock()
    after = None

    def one(due: ExpansionDue) -> ExpandReport:
        nonlocal streak
        if halt.is_set() or (stop is not None and stop.is_set()):
            return ExpandReport()
        outcome = _describe(pool, describer, due)
        with counting:
            streak = streak + 1 if outcome.failed else 0 if outcome.described else streak
            if streak >= FAILURES_BEFORE_PAUSE and not halt.is_set():
                outcome.interrupted = (
                    f"{streak} documents in a row could not be described "
                    f"(the last: {outcome.last_failure})"
                )
            if outcome.interrupted:
                halt.set()
        return outcome

    with ThreadPoolExecutor(max_workers=workers) as threads:
        while limit is None or report.handled < limit:
            if halt.is_set() or (stop is not None and stop.is_set()):
                break
            size = 4 * workers if limit is None else min(4 * workers, limit - report.handled)
            due = pool.store.awaiting_expansion(limit=size, after=after, descending=descending)
            if not due:
                break
            after = due[-1].document_id
            todo = [one for one in due if one.file_id not in pool.expansion_refused]
            for outcome in threads.map(one, todo):
                report.add(outcome)
            if progress is not None:
                progress(report)
    report.streak = streak
    return report


def _describe(pool: Pool, describer: Describer, due: ExpansionDue) -> ExpandReport:
    """Claim the document, describe it and store the description; then give the claim up."""
    seconds = max(CLAIM_SECONDS, 2 * describer.longest_request)
    claim = pool.store.claim_expansion(due.document_id, file_id=due.file_id, seconds=seconds)
    if claim is None:  # another process is describing it or has, or a new version came
        return ExpandReport(lost=1)
    try:
        return _describe_claimed(pool, describer, due, claim)
    finally:
        try:
            pool.store.release_expansion(due.document_id, claim)
        except Exception:  # the claim lapses on its own
            log.exception("could not release the claim on document %s", due.document_id)


def _describe_claimed(
    pool: Pool, describer: Describer, due: ExpansionDue, claim: ExpansionClaim
) -> ExpandReport:
    try:
        content = pool.store.get_content(due.document_id)
    except DocumentNotFound:  # deleted meanwhile
        return ExpandReport(lost=1)
    if content.content_hash != claim.content_hash:  # a new version since the claim: not ours
        return ExpandReport(lost=1)
    try:
        described = describer.describe(due.title, content.text)
    except DescribeFailed as exc:
        spent = ExpandReport(input_tokens=exc.input_tokens, output_tokens=exc.output_tokens)
        if exc.kind == "outage":
            spent.interrupted = str(exc)
            return spent
        log.warning("could not describe document %s: %s", due.document_id, exc)
        spent.failed, spent.last_failure = 1, str(exc)
        if exc.kind == "reply":
            _mark_undescribed(pool, due, content, describer.model, exc)
        else:
            pool.expansion_refused.add(due.file_id)
        return spent
    spent = ExpandReport(input_tokens=described.input_tokens, output_tokens=described.output_tokens)
    try:
        summary = summarise(pool, due.title, content.text, described.text)
        plain = summarise(pool, due.title, content.text)
        vector = _description_vector(pool, due, content.text, described.text)
        stored = pool.store.add_expansion(
            Expanded(
                document_id=due.document_id,
                file_id=due.file_id,
                content_hash=content.content_hash,
                title=due.title,
                text=described.text,
                model=described.model,
                input_tokens=described.input_tokens,
                output_tokens=described.output_tokens,
                terms=summary.terms,
                length=summary.length,
                passages=summary.passages,
                description_vector=vector,
                based_on=(plain.terms, plain.length, plain.passages),
            )
        )
    except SummaryMadeOtherwise as exc:  # a re-index under new parameters: wait for it
        log.warning("description of document %s not stored: %s", due.document_id, exc)
        pool.expansion_refused.add(due.file_id)
        spent.failed, spent.last_failure = 1, "stored under other parameters (kpool reindex?)"
        return spent
    except Exception as exc:  # paid for already: not asked again by this process
        log.exception("could not store the description of document %s", due.document_id)
        pool.expansion_refused.add(due.file_id)
        spent.failed, spent.last_failure = 1, f"not stored ({type(exc).__name__})"
        return spent
    # Not stored: a new version or title landed meanwhile, or another process was first; the
    # document waits for its own description, next look, if it still needs one.
    if stored:
        spent.described = 1
    else:
        spent.lost = 1
    return spent


def _description_vector(
    pool: Pool, due: ExpansionDue, text: str, description: str
) -> np.ndarray | None:
    """The description passage's sentence vector, made only when the document's other
    passages have theirs already: they keep them (``Store.add_expansion``), instead of all
    being computed again for one more passage. ``None`` otherwise, or if the model fails:
    ``indexing.ingest.vectorise`` then makes them all."""
    if not pool.config.semantic or not pool.store.has_vectors(due.file_id):
        return None
    passages = indexed_passages(due.title, text, description, pool.config.passages)
    if not passages or (passages[-1][0].start, passages[-1][0].end) != (len(text), len(text)):
        return None  # no passage of its own (a description without words)
    try:
        vectors = passage_vectors(pool.encoder, due.title, [passages[-1][1]])
    except Exception:
        log.exception("could not compute the description's vector of %s", due.document_id)
        return None
    return None if vectors is None else vectors[0]


def _mark_undescribed(
    pool: Pool, due: ExpansionDue, content: Content, model: str, exc: DescribeFailed
) -> None:
    try:
        pool.store.mark_undescribed(
            document_id=due.document_id,
            content_hash=content.content_hash,
            model=model,
            input_tokens=exc.input_tokens,
            output_tokens=exc.output_tokens,
        )
    except Exception:  # remembered in this process at least
        log.exception("could not mark document %s as not described", due.document_id)
        pool.expansion_refused.add(due.file_id)
