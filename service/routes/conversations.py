"""``/v1/conversations/{id}``: a conversation's turns, and forgetting it.

A turn that drew on a document the caller may no longer read is not shown (nor replayed to the
model): its answer carries that document's words.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from service.ask import visible_turns
from service.deps import AskerDep, ConversationsDep, PoolDep
from service.errors import API_ERRORS, error_responses
from service.routes.ask import AnswerDocumentOut, CitationOut, UsageOut

router = APIRouter(tags=["conversations"], responses={**API_ERRORS, **error_responses(404)})


class TurnOut(BaseModel):
    question: str
    answer: str
    citations: list[CitationOut]
    documents: list[AnswerDocumentOut]
    usage: UsageOut
    mode: str
    created_at: datetime


class ConversationOut(BaseModel):
    conversation_id: str
    created_at: datetime
    updated_at: datetime
    turns: list[TurnOut]


@router.get("/v1/conversations/{conversation_id}", response_model=ConversationOut)
async def get_conversation(
    conversation_id: str, conversations: ConversationsDep, pool: PoolDep, caller: AskerDep
) -> dict[str, Any]:
    """A conversation with its questions and answers, oldest first."""

    def load() -> dict[str, Any]:
        found = conversations.get(conversation_id, owner=caller.owner)
        turns = conversations.turns(conversation_id, owner=caller.owner)
        turns = visible_turns(pool, turns, caller.groups)
        return {
            "conversation_id": found.id,
            "created_at": found.created_at,
            "updated_at": found.updated_at,
            "turns": [turn.public() for turn in turns],
        }

    return await run_in_threadpool(load)


@router.delete("/v1/conversations/{conversation_id}", status_code=204, response_model=None)
async def delete_conversation(
    conversation_id: str, conversations: ConversationsDep, caller: AskerDep
) -> Response:
    """Forget a conversation and all its turns."""
    await run_in_threadpool(conversations.delete, conversation_id, owner=caller.owner)
    return Response(status_code=204)
