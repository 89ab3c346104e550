"""The answerer that asks Claude: one Messages request per question, documents by file id.

SDK errors become the pool's errors here (and only here): 429/529/5xx after the SDK's own
retries → ``UpstreamUnavailable``; timeouts → ``UpstreamTimeout``; 401/403 → a misconfigured
server key (never echoed). A routed file that the Files API no longer has (deleted out of band,
or replaced while the question was in flight) is repaired — re-uploaded from the stored original,
or swapped for the document's current file — and the question is sent once more.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import anthropic
from anthropic.types import Message

from indexing.anthropic_files import retry_after_seconds
from indexing.errors import (
    DocumentNotFound,
    PoolError,
    RemoteFileMissing,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from indexing.ingest import reupload
from indexing.pool import Pool
from service.answer import (
    NOT_COVERED,
    Answer,
    Citation,
    CitationNumbers,
    Mode,
    Usage,
    cited_document,
    markers,
)
from service.prompt import RequestDocument, build_request

log = logging.getLogger(__name__)


class ClaudeAnswerer:
    mode: Mode = "claude"

    def __init__(self, client: anthropic.Anthropic, *, model: str, max_tokens: int, system: str):
        self.client = client
        self.model: str | None = model
        self.max_tokens = max_tokens
        self.system = system

    def answer(self, pool: Pool, question: str, documents: Sequence[RequestDocument]) -> Answer:
        documents = list(documents)
        try:
            return self._ask(question, documents)
        except RemoteFileMissing:
            documents = repair(pool, documents)
            if not documents:
                # Every routed document was deleted while the question was in flight.
                return Answer(NOT_COVERED, [], [], mode=self.mode, model=self.model)
            return self._ask(question, documents)

    def _ask(self, question: str, documents: list[RequestDocument]) -> Answer:
        assert self.model is not None
        request = build_request(
            model=self.model,
            max_tokens=self.max_tokens,
            system=self.system,
            question=question,
            documents=documents,
        )
        message, request_id = self._create(request, documents)
        return answer_from_message(message, documents, request_id)

    def _create(
        self, request: dict[str, Any], documents: list[RequestDocument]
    ) -> tuple[Message, str | None]:
        """The reply and its request id. Streamed even though the caller gets it whole: a long
        answer never meets an idle-connection timeout, and an error the API sends after its
        200 (``event: error``) arrives as an exception like any other."""
        try:
            with self.client.messages.stream(**request) as stream:
                message = stream.get_final_message()
                return message, stream.response.headers.get("request-id")
        except anthropic.APIError as exc:
            raise translate(exc, documents) from exc


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
            )
        )
    return repaired


def answer_from_message(
    message: Message, documents: Sequence[RequestDocument], request_id: str | None = None
) -> Answer:
    """The reply as an ``Answer``: text with ``[n]`` markers after each cited passage."""
    numbers = CitationNumbers()
    parts: list[str] = []
    for block in message.content:
        if block.type != "text":
            continue
        parts.append(block.text)
        cited = []
        for raw in block.citations or []:
            doc = cited_document(documents, getattr(raw, "document_index", -1))
            if doc is None:
                continue
            cited.append(
                numbers.number(
                    Citation(
                        number=0,
                        file_id=doc.file_id,
                        document_id=doc.document_id,
                        document_title=doc.title,
                        cited_text=raw.cited_text,
                        type=raw.type,
                        start_char_index=getattr(raw, "start_char_index", None),
                        end_char_index=getattr(raw, "end_char_index", None),
                        start_page_number=getattr(raw, "start_page_number", None),
                        end_page_number=getattr(raw, "end_page_number", None),
                    )
                )
            )
        if cited:
            parts.append(markers(cited))
    usage = message.usage
    return Answer(
        answer="".join(parts).strip(),
        citations=numbers.citations,
        documents=list(documents),
        mode="claude",
        model=message.model,
        usage=Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
            cache_read_input_tokens=usage.cache_read_input_tokens or 0,
        ),
        request_id=request_id or getattr(message, "_request_id", None),
    )


def translate(exc: anthropic.APIError, documents: Sequence[RequestDocument]) -> PoolError:
    """An SDK error as the pool's error; never includes the key or request headers."""
    if isinstance(exc, anthropic.APITimeoutError):
        return UpstreamTimeout("Anthropic did not answer in time; try again.")
    if isinstance(exc, anthropic.APIConnectionError):
        return UpstreamUnavailable("Anthropic cannot be reached right now; try again shortly.")
    if not isinstance(exc, anthropic.APIStatusError):
        return UpstreamError(f"Anthropic's API failed ({type(exc).__name__}).")
    status, kind = exc.status_code, exc.type or "error"
    detail = f"HTTP {status} {kind}" + (f", request id {exc.request_id}" if exc.request_id else "")
    if status in (401, 403):
        return UpstreamAuthError(
            "Anthropic refused the server's credentials: the server's Anthropic API key is "
            f"missing or misconfigured ({detail})."
        )
    if status == 404:
        missing = next((d.file_id for d in documents if d.file_id in str(exc.message)), "")
        return RemoteFileMissing(f"a routed file is missing upstream ({detail})", file_id=missing)
    if status in (408, 504):
        return UpstreamTimeout(f"Anthropic timed out ({detail}).")
    if status in (409, 429) or status >= 500 or kind in ("overloaded_error", "api_error"):
        return UpstreamUnavailable(
            f"Anthropic is overloaded or rate limiting; try again shortly ({detail}).",
            retry_after=retry_after_seconds(exc.response.headers),
        )
    return UpstreamError(f"Anthropic refused the request: {exc.message} ({detail}).")
