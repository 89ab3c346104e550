"""The answerer that asks Claude: one Messages request per question, documents by file id.

SDK errors become the pool's errors here (and only here): 429/529/5xx after the SDK's own
retries → ``UpstreamUnavailable``; timeouts → ``UpstreamTimeout``; 401/403 → a misconfigured
server key (never echoed). A routed file that the Files API no longer has (deleted out of band,
or replaced while the question was in flight) is ``RemoteFileMissing``, which
``service.ask.open_answer`` repairs before sending the question once more.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import anthropic
import httpx2
from anthropic.lib.streaming import MessageStream
from anthropic.types import Message

from indexing.anthropic_files import retry_after_seconds
from indexing.errors import (
    PoolError,
    RemoteFileMissing,
    UpstreamAuthError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from indexing.pool import Pool
from service.answer import (
    Answer,
    AnswerEvent,
    Citation,
    CitationFound,
    CitationNumbers,
    Finished,
    Mode,
    Reply,
    Spent,
    TextDelta,
    Usage,
    cited_document,
    markers,
)
from service.prompt import Question, RequestDocument, build_request, indexed_documents
from service.rerank import Judge


class ClaudeAnswerer:
    mode: Mode = "claude"

    def __init__(
        self,
        client: anthropic.Anthropic,
        *,
        model: str,
        max_tokens: int,
        system: str,
        judge: Judge | None = None,
    ):
        self.client = client
        self.model: str | None = model
        self.max_tokens = max_tokens
        self.system = system
        self.judge = judge

    def open(self, pool: Pool, question: Question) -> Reply:
        """Send the request and wait for the API's 200, so that refusals, rate limits and
        missing files (``RemoteFileMissing``, for ``service.ask.open_answer`` to repair)
        surface here, before the caller has been told anything."""
        return self._open(question)

    def _open(self, question: Question) -> ClaudeReply:
        assert self.model is not None
        request = build_request(
            model=self.model,
            max_tokens=self.max_tokens,
            system=self.system,
            question=question.text,
            documents=question.documents,
            history=question.history,
        )
        documents = indexed_documents(question.history, question.documents)
        try:
            # Streamed even when the caller wants the answer whole: a long answer never meets
            # an idle-connection timeout.
            stream = self.client.messages.stream(**request).__enter__()
        except anthropic.APIError as exc:
            raise translate(exc, documents) from exc
        return ClaudeReply(stream, documents, question.routed)


class ClaudeReply:
    """The events of one streamed reply. Iterate once; ``close`` ends it early."""

    def __init__(
        self,
        stream: MessageStream[Any],
        documents: list[RequestDocument],
        routed: list[RequestDocument],
    ) -> None:
        self._stream = stream
        self._documents = documents
        self._routed = routed

    def __iter__(self) -> Iterator[AnswerEvent]:
        numbers = CitationNumbers()
        cited_in_block: dict[int, list[Citation]] = {}
        said = False
        try:
            for event in self._stream:
                if event.type in ("message_start", "message_delta"):
                    # The snapshot's usage: a delta's counts are totals, and may leave out
                    # the input counts the start gave.
                    yield Spent(usage_of(self._stream.current_message_snapshot.usage))
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    said = said or bool(event.delta.text.strip())
                    yield TextDelta(event.delta.text)
                elif event.type == "content_block_delta" and event.delta.type == "citations_delta":
                    known = len(numbers.citations)
                    citation = to_citation(event.delta.citation, self._documents, numbers)
                    if citation is None:
                        continue
                    cited_in_block.setdefault(event.index, []).append(citation)
                    if len(numbers.citations) > known:
                        yield CitationFound(citation)
                elif event.type == "content_block_stop" and event.index in cited_in_block:
                    yield TextDelta(markers(cited_in_block.pop(event.index)))
            message = self._stream.get_final_message()
        except anthropic.APIError as exc:
            raise translate(exc, self._documents) from exc
        except httpx2.TimeoutException as exc:
            raise UpstreamTimeout("Anthropic stopped sending the answer; try again.") from exc
        except httpx2.TransportError as exc:
            raise UpstreamUnavailable(
                "The connection to Anthropic broke during the answer; try again."
            ) from exc
        finally:
            self.close()
        note = closing_note(message)
        if note:
            yield TextDelta(f"\n\n{note}" if said else note)
        yield Finished(
            answer_from_message(message, self._documents, self._stream.request_id, self._routed)
        )

    def close(self) -> None:
        self._stream.close()


def to_citation(
    raw: Any, documents: Sequence[RequestDocument], numbers: CitationNumbers
) -> Citation | None:
    """The API's citation as ours, numbered; ``None`` if it points outside the request."""
    doc = cited_document(documents, getattr(raw, "document_index", -1))
    if doc is None:
        return None
    return numbers.number(
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


def answer_from_message(
    message: Message,
    documents: Sequence[RequestDocument],
    request_id: str | None = None,
    routed: Sequence[RequestDocument] | None = None,
) -> Answer:
    """The reply as an ``Answer``: text with ``[n]`` markers after each cited passage.

    ``documents`` are the request's document blocks in order; ``routed`` the documents routed
    for this question (the request's documents when not given)."""
    numbers = CitationNumbers()
    parts: list[str] = []
    said: list[str] = []
    for block in message.content:
        if block.type != "text":
            continue
        parts.append(block.text)
        said.append(block.text)
        cited = [c for raw in block.citations or [] if (c := to_citation(raw, documents, numbers))]
        if cited:
            parts.append(markers(cited))
    usage = message.usage
    note = closing_note(message)
    answer = "".join(parts).strip()
    return Answer(
        answer=f"{answer}\n\n{note}" if answer and note else answer or note,
        citations=numbers.citations,
        documents=list(documents if routed is None else routed),
        mode="claude",
        model=message.model,
        usage=usage_of(usage),
        request_id=request_id or getattr(message, "_request_id", None),
        reply="".join(said).strip(),
    )


def usage_of(usage: Any) -> Usage:
    """The API's usage as ours (the cache counts may be missing or null: 0)."""
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
        cache_read_input_tokens=usage.cache_read_input_tokens or 0,
    )


#: Said when the model's reply holds no text: an empty answer would look like a fault, and
#: an empty turn sent back with a follow-up is refused by the API.
NO_REPLY = "The model gave no answer to this question; try asking it another way."
REFUSED = "The model declined to answer this question."
STOPPED = "(The model declined to go on with this answer.)"
CUT_SHORT = "(The answer was cut short at the length limit.)"


def closing_note(message: Message) -> str:
    """What the reply's end adds to its text: why there is none, or why it stopped early."""
    if not any(block.type == "text" and block.text.strip() for block in message.content):
        return REFUSED if message.stop_reason == "refusal" else NO_REPLY
    return {"max_tokens": CUT_SHORT, "refusal": STOPPED}.get(message.stop_reason or "", "")


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
    message = str(exc.message)
    missing = next((d.file_id for d in documents if d.file_id in message), "")
    # The API's docs show a deleted or foreign file as a 404 and as a 400 invalid request:
    # a 404 about a file, or a 400 saying a file of the request is not found, is a missing
    # file. (Another 400 naming a file, too many pages say, is a refusal like any other.)
    lost = any(w in message.lower() for w in ("not found", "does not exist", "deleted"))
    if (status == 404 and (missing or "file" in message.lower())) or (
        status == 400 and missing and lost
    ):
        return RemoteFileMissing(f"a routed file is missing upstream ({detail})", file_id=missing)
    # An error event after the stream began arrives with status 200: its type says what it is.
    if status in (408, 504) or kind == "timeout_error":
        return UpstreamTimeout(f"Anthropic timed out ({detail}).")
    passing = ("overloaded_error", "api_error", "rate_limit_error")
    if status in (409, 429) or status >= 500 or kind in passing:
        return UpstreamUnavailable(
            f"Anthropic is overloaded or rate limiting; try again shortly ({detail}).",
            retry_after=retry_after_seconds(exc.response.headers),
        )
    return UpstreamError(f"Anthropic refused the request: {exc.message} ({detail}).")
