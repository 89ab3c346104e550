"""Answering a question: route it, build the request documents, hand them to an answerer.

The answerer is Claude when the pool's files live in Anthropic's Files API (an API key is
configured), and the extractive one otherwise; both return the same ``Answer``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from indexing.errors import DocumentNotFound, PoolError, RemoteFileMissing
from indexing.filters import Filters
from indexing.ingest import reupload
from indexing.models import Document
from indexing.pool import Pool
from indexing.store import readable
from service.answer import (
    NOT_COVERED,
    TOO_LONG,
    Answer,
    AnswerEvent,
    Finished,
    Mode,
    Reply,
    StaticReply,
    collect,
)
from service.auth import Caller
from service.conversations import Conversations, ConversationTurn
from service.extractive import answer_extractively
from service.prompt import (
    MAX_PDF_PAGES,
    SYSTEM_PROMPT,
    PastTurn,
    Question,
    RequestDocument,
    document_context,
    in_request_order,
    indexed_documents,
    pdf_pages,
    within_page_limit,
)
from service.rerank import ClaudeJudge, Judge, RerankPolicy, candidates_of, rerank, within_budget
from service.router import Route, route
from service.settings import Settings

if TYPE_CHECKING:
    import anthropic

log = logging.getLogger(__name__)

#: How many of a conversation's latest questions shape the routing of a follow-up.
EARLIER_QUESTIONS = 2


class Answerer(Protocol):
    mode: Mode
    model: str | None
    #: Reranks the routed candidates before answering (``KPOOL_RERANK``), if configured.
    judge: Judge | None

    def open(self, pool: Pool, question: Question) -> Reply: ...


class ExtractiveAnswerer:
    mode: Mode = "extractive"
    model: str | None = None
    judge: Judge | None = None

    def open(self, pool: Pool, question: Question) -> Reply:
        return StaticReply(answer_extractively(pool, question.text, question.routed))


def make_answerer(settings: Settings) -> Answerer:
    """Claude when the files are in Anthropic's Files API; the extractive answerer otherwise."""
    if settings.backend_name != "anthropic":
        return ExtractiveAnswerer()
    from service.claude import ClaudeAnswerer

    client = anthropic_client(settings)
    return ClaudeAnswerer(
        client,
        model=settings.model,
        max_tokens=settings.max_tokens,
        system=settings.system_prompt or SYSTEM_PROMPT,
        judge=make_judge(settings, client),
    )


def make_judge(settings: Settings, client: anthropic.Anthropic | None = None) -> Judge | None:
    """The reranking model ``KPOOL_RERANK`` asks for, if any (on ``client``, or a new one)."""
    if not settings.rerank_policy().enabled:
        return None
    # Reranking is optional: it must not hold the answer up for the answerer's retries, nor
    # for as long as a 429's retry-after says (the SDK would wait for it).
    quick = (client or anthropic_client(settings)).with_options(
        max_retries=0, timeout=settings.rerank_timeout
    )
    attempts = 1 + min(1, settings.anthropic_max_retries)
    return ClaudeJudge(quick, model=settings.rerank_model, attempts=attempts)


def anthropic_client(settings: Settings) -> anthropic.Anthropic:
    from indexing.anthropic_client import make_client

    assert settings.anthropic_api_key is not None
    return make_client(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        timeout=settings.anthropic_timeout,
        max_retries=settings.anthropic_max_retries,
    )


def request_document(doc: Document, score: float) -> RequestDocument:
    metadata = {"source": doc.filename, "tags": doc.tags, **doc.attributes}
    assert doc.file_id is not None
    return RequestDocument(
        document_id=doc.id,
        file_id=doc.file_id,
        title=doc.title,
        score=score,
        mime_type=doc.mime_type,
        page_count=doc.page_count,
        context=document_context(metadata),
        token_estimate=doc.token_estimate,
    )


def request_documents(pool: Pool, routed: Route) -> list[RequestDocument]:
    """The routed documents with what the request needs to know about each."""
    documents = []
    for hit in routed.documents:
        try:
            doc = pool.store.get_document(hit.document_id)
        except DocumentNotFound:
            continue  # deleted between routing and now
        if doc.file_id is not None:
            documents.append(replace(request_document(doc, hit.score), file_id=hit.file_id))
    return documents


def fill(pool: Pool, routed: Route, top_k: int, token_budget: int, **routing: Any) -> Route:
    """``routed`` (reranked, yet short of ``top_k`` within the budget: its first candidates were
    too large together) topped up, after its own documents, from a routing within the budget
    that looks as deep as it must, as routing without reranking does. ``routing``: the
    original routing's arguments (groups, filters, earlier questions, options)."""
    present = {d.document_id for d in routed.documents}
    more = route(
        pool,
        routed.question,
        top_k=top_k + len(present),
        token_budget=token_budget,
        explain=False,
        **routing,
    )
    extra = [d for d in more.documents if d.document_id not in present]
    return replace(routed, documents=within_budget(routed.documents + extra, top_k, token_budget))


def past_turns(
    pool: Pool, turns: Sequence[ConversationTurn], groups: Sequence[str] | None
) -> list[PastTurn]:
    """Earlier turns as they are sent again, with each document as it is now: a replaced one by
    its current file, a deleted one left out. A turn that drew on a document the caller may no
    longer read is left out whole: its answer would carry that document's words."""
    history = []
    for turn in visible_turns(pool, turns, groups):
        documents = []
        for document_id in turn.sent:
            try:
                doc = pool.store.get_document(document_id)
            except DocumentNotFound:
                continue
            if doc.file_id is not None:
                documents.append(request_document(doc, 0.0))
        # Never an empty turn: the API refuses a blank text block (an old empty reply).
        history.append(PastTurn(turn.question, turn.reply or turn.answer or "-", documents))
    return history


def visible_turns(
    pool: Pool, turns: Sequence[ConversationTurn], groups: Sequence[str] | None
) -> list[ConversationTurn]:
    """The turns that drew only on documents the caller may read now (or that are deleted).
    A turn that did not is hidden with every turn after it: their requests carried it (its
    documents and its reply) as history, and a reply may use what it read without citing it."""
    if groups is None:
        return list(turns)
    kept = []
    for turn in turns:
        used = {*turn.sent, *(d["document_id"] for d in turn.documents)}
        used.update(c["document_id"] for c in turn.citations)
        if not all(_readable_or_gone(pool, document_id, groups) for document_id in used):
            break
        kept.append(turn)
    return kept


def _readable_or_gone(pool: Pool, document_id: str, groups: Sequence[str]) -> bool:
    try:
        return readable(pool.store.get_document(document_id), groups)
    except DocumentNotFound:
        return True


def fit_history(
    history: list[PastTurn],
    candidates: Sequence[RequestDocument],
    token_budget: int,
    *,
    page_limit: bool = True,
) -> tuple[list[PastTurn], list[RequestDocument]]:
    """The latest earlier turns whose documents fit beside the new ones, and the new ones.

    Turns are dropped oldest first while the request would exceed ``token_budget`` or (with
    ``page_limit``, for a Messages request) the PDF page limit; a routed document already in
    a kept turn is not sent again."""
    while True:
        present = {d.document_id for turn in history for d in turn.documents}
        new = [d for d in candidates if d.document_id not in present]
        kept = [d for turn in history for d in turn.documents]
        tokens = sum(d.token_estimate for d in [*kept, *new])
        pages_fit = not page_limit or pdf_pages(kept) <= MAX_PDF_PAGES
        if not history or (tokens <= token_budget and pages_fit):
            if not page_limit:
                return history, new
            return history, within_page_limit(new, pages_used=pdf_pages(kept))
        history = history[1:]


def prepare(
    pool: Pool,
    settings: Settings,
    conversations: Conversations,
    text: str,
    *,
    caller: Caller,
    conversation_id: str | None = None,
    top_k: int | None = None,
    tags: Sequence[str] | None = None,
    filters: Filters | None = None,
    judge: Judge | None = None,
    page_limit: bool = True,
) -> Question:
    """Route ``text`` (a follow-up with its conversation's earlier questions in view) and put
    together what the answerer sends. ``filters`` narrow the routing of this question only,
    within what the caller's groups allow. ``judge``: rerank the candidates as
    ``KPOOL_RERANK`` says (``service.rerank``)."""
    turns: list[ConversationTurn] = []
    if conversation_id is not None:
        turns = conversations.turns(
            conversation_id, owner=caller.owner, last=settings.conversation_turns
        )
    top_k = top_k or settings.top_k
    policy = settings.rerank_policy() if judge is not None else RerankPolicy()
    earlier = [turn.question for turn in turns[-EARLIER_QUESTIONS:]]
    routing: dict[str, Any] = {
        "earlier": earlier,
        "tags": tags,
        "filters": filters,
        "groups": caller.groups,
        "options": settings.routing_options(),
    }
    routed = route(
        pool,
        text,
        top_k=policy.depth(top_k),
        # Reranking applies the budget to its own order.
        token_budget=None if policy.enabled else settings.token_budget,
        explain=False,
        **routing,
    )
    usage, abstained = None, False
    # Fewer documents than routed for means every match was seen: nothing deeper to fill from.
    deeper = len(routed.documents) == policy.depth(top_k)
    if judge is not None and policy.enabled:
        reranked = rerank(
            routed,
            judge,
            policy,
            show=lambda documents: candidates_of(pool, documents),
            top_k=top_k,
            token_budget=settings.token_budget,
            earlier=earlier,
        )
        routed, usage, abstained = reranked.route, reranked.usage, reranked.abstained
        if deeper and not abstained and len(routed.documents) < top_k:
            routed = fill(pool, routed, top_k, settings.token_budget, **routing)
    candidates = request_documents(pool, routed)
    history, new = fit_history(
        past_turns(pool, turns, caller.groups),
        candidates,
        settings.token_budget,
        page_limit=page_limit,
    )
    return Question(
        text,
        in_request_order(new),
        history,
        candidates,
        routing_usage=usage,
        abstained=abstained,
    )


class Answering:
    """A question being answered: its routed documents, then the answerer's events; the
    finished answer is recorded in the conversation before it is handed on."""

    def __init__(
        self,
        question: Question,
        reply: Reply,
        record: Callable[[Answer], Answer],
    ) -> None:
        self.question = question
        self._reply = reply
        self._record = record
        #: The answer as the answerer finished it, before it was recorded (its usage is
        #: spent even if recording it fails).
        self.finished: Answer | None = None

    @property
    def documents(self) -> list[RequestDocument]:
        return self.question.routed

    def __iter__(self) -> Iterator[AnswerEvent]:
        for event in self._reply:
            if isinstance(event, Finished):
                self.finished = event.answer
                yield Finished(self._record(event.answer))
            else:
                yield event

    def close(self) -> None:
        self._reply.close()


def start_answer(
    pool: Pool,
    settings: Settings,
    answerer: Answerer,
    conversations: Conversations,
    text: str,
    *,
    caller: Caller,
    conversation_id: str | None = None,
    top_k: int | None = None,
    tags: Sequence[str] | None = None,
    filters: Filters | None = None,
) -> Answering:
    """Route the question and start answering it. Errors that can be known before the answer
    starts (an unknown conversation, an unreachable or refusing API) are raised here."""
    question = prepare(
        pool,
        settings,
        conversations,
        text,
        caller=caller,
        conversation_id=conversation_id,
        top_k=top_k,
        tags=tags,
        filters=filters,
        judge=answerer.judge,
        # Only a Messages request is limited in PDF pages: extractive answers read the text.
        page_limit=answerer.mode == "claude",
    )
    answerable = question.carries_documents and not question.abstained
    if answerable and (question.routed or answerer.mode == "claude"):
        question, reply = open_answer(pool, answerer, question)
    else:
        # Nothing matches, or the reranking model found that nothing answers (even with the
        # conversation's earlier documents at hand), or what matches is too long to send: no
        # answer request, nothing to cite.
        unsendable = [] if question.abstained else question.routed
        said = too_long(unsendable) if unsendable else NOT_COVERED
        reply = StaticReply(Answer(said, [], [], mode=answerer.mode, model=answerer.model))

    def record(answer: Answer) -> Answer:
        if question.routing_usage is not None:
            # The caller's budget and the audit count every upstream call the question made.
            answer = replace(answer, usage=answer.usage + question.routing_usage)
        sent = [d.document_id for d in question.documents]
        kept = conversations.record(
            conversation_id=conversation_id,
            owner=caller.owner,
            question=text,
            answer=answer,
            sent=sent,
        )
        return replace(answer, conversation_id=kept)

    return Answering(question, reply, record)


def too_long(documents: Sequence[RequestDocument]) -> str:
    """Why matching documents were not sent: each is a PDF over the pages a request holds."""
    named = ", ".join(f"“{d.title}” ({d.page_count} pages)" for d in documents[:3])
    return (
        f"{TOO_LONG}: {named}. One question can send at most {MAX_PDF_PAGES} PDF pages; ask "
        "the document's owner to split it."
    )


def open_answer(pool: Pool, answerer: Answerer, question: Question) -> tuple[Question, Reply]:
    """The answerer's reply to ``question``, and the question as it was sent: if a file it
    carries has gone missing upstream (deleted behind the pool's back, or replaced while the
    question was in flight), once more with working files (``repair_question``)."""
    try:
        return question, answerer.open(pool, question)
    except RemoteFileMissing:
        question = repair_question(pool, question)
        if not question.carries_documents:
            # Every document was deleted while the question was in flight.
            answer = Answer(NOT_COVERED, [], [], mode=answerer.mode, model=answerer.model)
            return question, StaticReply(answer)
        return question, answerer.open(pool, question)


def repair_question(pool: Pool, question: Question) -> Question:
    """The question with working file ids throughout, earlier turns included; the routed list
    follows (a document deleted meanwhile leaves it)."""
    history = [
        PastTurn(turn.question, turn.reply, repair(pool, turn.documents))
        for turn in question.history
    ]
    documents = repair(pool, question.documents)
    sent = {d.document_id for d in indexed_documents(question.history, question.documents)}
    now = {d.document_id: d for d in indexed_documents(history, documents)}
    routed = [
        replace(now[d.document_id], score=d.score) if d.document_id in now else d
        for d in question.routed
        if d.document_id in now or d.document_id not in sent
    ]
    # Everything else (what routing spent, whether it abstained) is the question's still.
    return replace(question, documents=documents, history=history, routed=routed)


def repair(pool: Pool, documents: list[RequestDocument]) -> list[RequestDocument]:
    """The same documents with working file ids: the current file of a document replaced in
    the meantime, a fresh upload of one whose file vanished; deleted documents are dropped."""
    live = pool.backend.existing([d.file_id for d in documents])
    repaired = []
    for doc in documents:
        if doc.file_id in live:
            repaired.append(doc)
            continue
        try:
            current = pool.store.get_document(doc.document_id)
        except DocumentNotFound:
            continue
        file_id = current.file_id
        if file_id is None:
            continue
        if file_id == doc.file_id or file_id not in pool.backend.existing([file_id]):
            pool.store.mark_status(document_id=doc.document_id, status="missing_remote")
            try:
                file_id = reupload(pool, doc.document_id)
            except PoolError as exc:
                log.warning("could not re-upload %s: %s", doc.document_id, exc)
                continue
        repaired.append(
            RequestDocument(
                document_id=doc.document_id,
                file_id=file_id,
                title=current.title,
                score=doc.score,
                mime_type=current.mime_type,
                page_count=current.page_count,
                context=doc.context,
                token_estimate=current.token_estimate,
            )
        )
    return repaired


def ask(
    pool: Pool,
    settings: Settings,
    answerer: Answerer,
    text: str,
    *,
    conversations: Conversations | None = None,
    caller: Caller | None = None,
    conversation_id: str | None = None,
    top_k: int | None = None,
    tags: Sequence[str] | None = None,
    filters: Filters | None = None,
) -> Answer:
    """Answer ``text`` from the documents the caller may see, or say none covers it."""
    answering = start_answer(
        pool,
        settings,
        answerer,
        conversations or Conversations(pool.store),
        text,
        caller=caller or Caller(),
        conversation_id=conversation_id,
        top_k=top_k,
        tags=tags,
        filters=filters,
    )
    return collect(answering)
