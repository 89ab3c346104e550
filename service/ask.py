"""Answering a question: route it, build the request documents, hand them to an answerer.

The answerer is Claude when the pool's files live in Anthropic's Files API (an API key is
configured), and the extractive one otherwise; both return the same ``Answer``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from indexing.errors import DocumentNotFound
from indexing.pool import Pool
from service.answer import NOT_COVERED, Answer, Mode
from service.extractive import answer_extractively
from service.prompt import (
    SYSTEM_PROMPT,
    RequestDocument,
    document_context,
    in_request_order,
    within_page_limit,
)
from service.router import Route, route
from service.settings import Settings

log = logging.getLogger(__name__)


class Answerer(Protocol):
    mode: Mode
    model: str | None

    def answer(self, pool: Pool, question: str, documents: Sequence[RequestDocument]) -> Answer: ...


class ExtractiveAnswerer:
    mode: Mode = "extractive"
    model: str | None = None

    def answer(self, pool: Pool, question: str, documents: Sequence[RequestDocument]) -> Answer:
        return answer_extractively(pool, question, documents)


def make_answerer(settings: Settings) -> Answerer:
    """Claude when the files are in Anthropic's Files API; the extractive answerer otherwise."""
    if settings.backend_name != "anthropic":
        return ExtractiveAnswerer()
    from indexing.anthropic_client import make_client
    from service.claude import ClaudeAnswerer

    assert settings.anthropic_api_key is not None
    client = make_client(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        timeout=settings.anthropic_timeout,
        max_retries=settings.anthropic_max_retries,
    )
    return ClaudeAnswerer(
        client,
        model=settings.model,
        max_tokens=settings.max_tokens,
        system=settings.system_prompt or SYSTEM_PROMPT,
    )


def request_documents(pool: Pool, routed: Route) -> list[RequestDocument]:
    """The routed documents with what the request needs to know about each."""
    documents = []
    for hit in routed.documents:
        try:
            doc = pool.store.get_document(hit.document_id)
        except DocumentNotFound:
            continue  # deleted between routing and now
        metadata = {"source": doc.filename, "tags": doc.tags, **doc.attributes}
        documents.append(
            RequestDocument(
                document_id=hit.document_id,
                file_id=hit.file_id,
                title=hit.title,
                score=hit.score,
                mime_type=doc.mime_type,
                page_count=doc.page_count,
                context=document_context(metadata),
            )
        )
    return documents


def ask(
    pool: Pool,
    settings: Settings,
    answerer: Answerer,
    question: str,
    *,
    top_k: int | None = None,
    tags: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
) -> Answer:
    """Answer ``question`` from the documents the caller may see, or say none covers it."""
    routed = route(
        pool,
        question,
        top_k=top_k or settings.top_k,
        token_budget=settings.token_budget,
        tags=tags,
        groups=groups,
        explain=False,
    )
    documents = in_request_order(within_page_limit(request_documents(pool, routed)))
    if not documents:
        # Nothing matches: no model call, and nothing to cite.
        return Answer(NOT_COVERED, [], [], mode=answerer.mode, model=answerer.model)
    return answerer.answer(pool, question, documents)
