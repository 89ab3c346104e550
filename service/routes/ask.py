"""``POST /v1/ask``: answer a question from the pool, with citations; whole or streamed (SSE).

The stream's events, each ``event: <name>`` with one JSON ``data`` line:

* ``documents`` — ``{"documents": [...]}``, the routed documents, first;
* ``text`` — ``{"text": "..."}``, more of the answer (``[n]`` markers included);
* ``citation`` — one citation, as in the JSON answer, before the first marker that uses it;
* ``done`` — the whole answer exactly as the JSON response gives it, last;
* ``error`` — ``{"error": {"type", "message"}}`` when the answer fails after the stream began.

Everything that can fail before the model starts answering (validation, an unknown
conversation, Anthropic refusing or rate limiting the request) fails before the stream starts,
as an ordinary JSON error with its status code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from indexing.errors import PoolError
from service.answer import CitationFound, Finished, TextDelta, collect, documents_dict
from service.ask import Answering, start_answer
from service.deps import (
    AccountingDep,
    AnswererDep,
    AskerDep,
    ConversationsDep,
    PoolDep,
    SettingsDep,
    client_address,
)
from service.edge import QuestionText, Text
from service.errors import API_ERRORS, error_body, error_responses
from service.filters import RequestFilters, request_filters

log = logging.getLogger(__name__)

router = APIRouter(
    tags=["answers"], responses={**API_ERRORS, **error_responses(404, 502, 503, 504)}
)

EVENT_STREAM = "text/event-stream"


class AskRequest(BaseModel):
    question: QuestionText = Field(min_length=1, max_length=4000)
    top_k: int | None = Field(default=None, ge=1, le=20)
    tags: list[Text] | None = Field(default=None, max_length=20)
    filters: RequestFilters | None = None
    conversation_id: Text | None = Field(
        default=None,
        max_length=40,
        description="Continue this conversation (from an earlier answer); omit to start one.",
    )
    stream: bool = Field(default=False, description="Answer as server-sent events.")


class CitationOut(BaseModel):
    number: int
    file_id: str
    document_id: str
    document_title: str
    cited_text: str
    type: str
    start_char_index: int | None = None
    end_char_index: int | None = None
    start_page_number: int | None = None
    end_page_number: int | None = None


class AnswerDocumentOut(BaseModel):
    document_id: str
    file_id: str
    title: str
    score: float


class UsageOut(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int


class AskResponse(BaseModel):
    answer: str
    citations: list[CitationOut]
    documents: list[AnswerDocumentOut]
    usage: UsageOut
    model: str | None
    mode: str
    request_id: str | None
    conversation_id: str | None


_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        # Each event's data is one JSON object (documents, text, citation, done or error).
        "content": {EVENT_STREAM: {"schema": {"type": "object"}}},
        "description": "The answer as JSON, or as server-sent events when streaming was asked for.",
    }
}


@router.post("/v1/ask", response_model=AskResponse, responses=_STREAMED)
async def post_ask(
    body: AskRequest,
    request: Request,
    pool: PoolDep,
    settings: SettingsDep,
    answerer: AnswererDep,
    conversations: ConversationsDep,
    caller: AskerDep,
    accounting: AccountingDep,
) -> Any:
    """Answer a question from the documents, citing the passages it rests on."""
    streamed = body.stream or EVENT_STREAM in request.headers.get("accept", "")
    tally = accounting.tally(
        caller,
        address=client_address(request),
        answerer=answerer,
        text=body.question,
        conversation_id=body.conversation_id,
        streamed=streamed,
    )
    answering = await run_in_threadpool(
        tally.run,
        start_answer,
        pool,
        settings,
        tally.answerer,
        conversations,
        body.question,
        caller=caller,
        conversation_id=body.conversation_id,
        top_k=body.top_k,
        tags=body.tags,
        filters=request_filters(body.filters),
    )
    answering = tally.follow(answering)
    if streamed:
        return StreamingResponse(
            server_sent_events(answering),
            media_type=EVENT_STREAM,
            # Proxies must pass each event on at once, not buffer the answer.
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    answer = await run_in_threadpool(collect, answering)
    return answer.as_dict()


def sse(event: Literal["documents", "text", "citation", "done", "error"], data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def server_sent_events(answering: Answering) -> AsyncIterator[str]:
    """The answer's events as SSE frames. The answerer runs in a worker thread; if the client
    goes away, the upstream stream is closed so the model stops spending tokens."""
    events = iter(answering)
    try:
        yield sse("documents", {"documents": documents_dict(answering.documents)})
        while (event := await run_in_threadpool(next, events, None)) is not None:
            if isinstance(event, TextDelta):
                yield sse("text", {"text": event.text})
            elif isinstance(event, CitationFound):
                # Through the response models, so events and the JSON answer have one shape.
                citation = CitationOut.model_validate(event.citation.as_dict())
                yield sse("citation", citation.model_dump(mode="json"))
            elif isinstance(event, Finished):
                answer = AskResponse.model_validate(event.answer.as_dict())
                yield sse("done", answer.model_dump(mode="json"))
    except PoolError as exc:
        yield sse("error", error_body(exc.kind, str(exc)))
    except Exception:
        log.exception("the answer failed while streaming")
        yield sse("error", error_body("internal_error", "the server hit an unexpected error"))
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(answering.close)
