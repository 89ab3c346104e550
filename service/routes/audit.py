"""``GET /v1/audit``: the audit log, newest first, for admin keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from indexing.errors import InvalidInput
from service.audit import parse_since
from service.deps import AccountingDep, AdminDep
from service.errors import API_ERRORS
from service.routes.ask import UsageOut

router = APIRouter(tags=["audit"], responses=API_ERRORS)


class RerankShareOut(BaseModel):
    """The reranking model's share of the entry's tokens (``KPOOL_RERANK``)."""

    model: str
    input_tokens: int
    output_tokens: int


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    key_id: str | None
    owner: str
    role: str | None
    address: str | None
    conversation_id: str | None
    mode: str
    model: str | None
    streamed: bool
    file_ids: list[str]
    document_ids: list[str]
    usage: UsageOut
    #: Part of ``usage``: what the model that reranked the candidates spent, if one did.
    rerank: RerankShareOut | None
    outcome: str
    error: str | None
    request_id: str | None
    duration_ms: int
    question: str | None


class AuditPage(BaseModel):
    data: list[AuditEntryOut]


@router.get("/v1/audit", response_model=AuditPage)
def get_audit(
    accounting: AccountingDep,
    _admin: AdminDep,
    since: Annotated[str | None, Query(max_length=40, description="ISO date or time")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The latest questions: who asked, the files sent, the tokens used, how each ended."""
    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise InvalidInput(f"since: {exc}") from None
    entries = accounting.audit.entries(since=start, limit=limit)
    return {"data": [entry.public() for entry in entries]}
