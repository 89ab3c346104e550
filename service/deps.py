"""FastAPI dependencies: the settings, the open pool and who is calling, injected, never global.

They are ``async`` where they are cheap so FastAPI calls them inline: a plain function would cost
a thread-pool hop per dependency per request. Authentication reads the key table (one indexed
query), so it runs in the thread pool.

``AskerDep``, ``ReaderDep`` and ``AdminDep`` authenticate the request and check the key's role:
widget keys only ask; user keys also route and read the document list; admin keys do
everything. Each then counts the request against the caller's rate limit (``service.limits``),
so health checks and pages, which use none of them, are never limited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from indexing.errors import Forbidden
from indexing.pool import Pool
from service.accounting import Accounting
from service.ask import Answerer
from service.auth import GROUPS_HEADER, USER_HEADER, Caller, authenticate, presented_secret
from service.conversations import Conversations
from service.keys import Keys, Role
from service.limits import Limiter, identity
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


async def get_limiter(request: Request) -> Limiter:
    limiter: Limiter = request.app.state.limiter
    return limiter


async def get_accounting(request: Request) -> Accounting:
    accounting: Accounting = request.app.state.accounting
    return accounting


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def get_keys(request: Request) -> Keys:
    keys: Keys = request.app.state.keys
    return keys


async def get_caller(
    request: Request,
    keys: Annotated[Keys, Depends(get_keys)],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Caller:
    """The caller the request's key makes (anonymous when the service has no keys)."""
    secret = presented_secret(authorization, x_api_key)
    caller: Caller = await run_in_threadpool(
        authenticate,
        keys,
        secret=secret,
        origin=request.headers.get("origin"),
        user=request.headers.get(USER_HEADER),
        groups=request.headers.get(GROUPS_HEADER),
    )
    return caller


def _allowing(*roles: Role) -> object:
    names = " or ".join(roles)

    async def check(
        request: Request,
        caller: Annotated[Caller, Depends(get_caller)],
        limiter: Annotated[Limiter, Depends(get_limiter)],
    ) -> Caller:
        if not caller.allowed(roles):
            raise Forbidden(f"this needs an {names} key; this key's role is {caller.role}")
        limiter.admit(identity(caller, client_address(request)))
        return caller

    return Depends(check)


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
PoolDep = Annotated[Pool, Depends(get_pool)]
AnswererDep = Annotated[Answerer, Depends(get_answerer)]
ConversationsDep = Annotated[Conversations, Depends(get_conversations)]
KeysDep = Annotated[Keys, Depends(get_keys)]
AccountingDep = Annotated[Accounting, Depends(get_accounting)]
#: Any key: asking, one's own conversations, how the server answers.
AskerDep = Annotated[Caller, _allowing("admin", "user", "widget")]
#: User and admin keys: routing and reading the document list.
ReaderDep = Annotated[Caller, _allowing("admin", "user")]
#: Admin keys: adding, changing and removing documents.
AdminDep = Annotated[Caller, _allowing("admin")]
