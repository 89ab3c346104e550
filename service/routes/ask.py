"""``POST /v1/ask``: answer a question from the pool, with citations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from service.ask import ask
from service.deps import AnswererDep, PoolDep, SettingsDep
from service.routes.route import ANONYMOUS_GROUPS

router = APIRouter(tags=["answers"])


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=4000)
    top_k: int | None = Field(default=None, ge=1, le=20)
    tags: list[str] | None = Field(default=None, max_length=20)


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


@router.post("/v1/ask", response_model=AskResponse)
async def post_ask(
    body: AskRequest, pool: PoolDep, settings: SettingsDep, answerer: AnswererDep
) -> dict[str, Any]:
    """Answer a question from the documents, citing the passages it rests on."""
    answer = await run_in_threadpool(
        ask,
        pool,
        settings,
        answerer,
        body.question,
        top_k=body.top_k,
        tags=body.tags,
        groups=ANONYMOUS_GROUPS,
    )
    return answer.as_dict()
