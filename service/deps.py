"""FastAPI dependencies: the settings and the open pool, injected, never global.

They are ``async`` only so FastAPI calls them inline: a plain function would cost a thread-pool
hop per dependency per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from indexing.pool import Pool
from service.ask import Answerer, Caller
from service.conversations import ANONYMOUS, Conversations
from service.settings import Settings


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_pool(request: Request) -> Pool:
    pool: Pool = request.app.state.pool
    return pool


async def get_answerer(request: Request) -> Answerer:
    answerer: Answerer = request.app.state.answerer
    return answerer


async def get_conversations(request: Request) -> Conversations:
    conversations: Conversations = request.app.state.conversations
    return conversations


async def get_caller() -> Caller:
    """Until callers carry an identity, every HTTP caller is the same anonymous one, who sees
    only the documents open to everyone."""
    return Caller(owner=ANONYMOUS, groups=())


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
PoolDep = Annotated[Pool, Depends(get_pool)]
AnswererDep = Annotated[Answerer, Depends(get_answerer)]
ConversationsDep = Annotated[Conversations, Depends(get_conversations)]
CallerDep = Annotated[Caller, Depends(get_caller)]
