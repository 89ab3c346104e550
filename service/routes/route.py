"""``POST /v1/route``: the documents a question would be answered from, without a model call."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from service.deps import PoolDep, ReaderDep, SettingsDep
from service.edge import QuestionText, Text
from service.errors import API_ERRORS
from service.filters import RequestFilters, request_filters
from service.router import Route, route

router = APIRouter(tags=["routing"], responses=API_ERRORS)


class RouteRequest(BaseModel):
    question: QuestionText = Field(min_length=1, max_length=4000)
    top_k: int | None = Field(default=None, ge=1, le=100)
    tags: list[Text] | None = Field(default=None, max_length=20)
    filters: RequestFilters | None = None
    token_budget: int | None = Field(default=None, ge=1)


class PassageSpan(BaseModel):
    """Where the document's best-matching passage lies in its extracted text."""

    start_char: int
    end_char: int


class RoutedDocumentOut(BaseModel):
    document_id: str
    file_id: str
    title: str
    score: float
    token_estimate: int
    matched_terms: dict[str, float]
    passage: PassageSpan | None = None


class RouteResponse(BaseModel):
    question: str
    terms: list[str]
    documents: list[RoutedDocumentOut]
    token_estimate: int


@router.post("/v1/route", response_model=RouteResponse)
async def post_route(
    body: RouteRequest, pool: PoolDep, settings: SettingsDep, caller: ReaderDep
) -> RouteResponse:
    """Route a question to the best documents, with scores and matched terms."""

    def routed() -> Route:
        return route(
            pool,
            body.question,
            top_k=body.top_k or settings.top_k,
            token_budget=body.token_budget or settings.token_budget,
            tags=body.tags,
            filters=request_filters(body.filters),
            groups=caller.groups,
            options=settings.routing_options(),
        )

    # BM25 alone runs inline on the event loop: about a millisecond, less than a thread hop, and
    # index refreshes hold the index lock only for small batches (Pool.refresh). The question's
    # sentence vector costs about 12 ms of CPU, which would stall every other request: a thread.
    result = await run_in_threadpool(routed) if pool.config.semantic else routed()
    return RouteResponse.model_validate(result.as_dict())
