"""The FastAPI application.

``create_app`` takes the settings and, optionally, an already-open pool (``kpool serve`` opens it
first so a bad configuration is reported before the server starts). A background thread applies
document changes made by other processes (a cron bulk ingest, another replica) every
``refresh_seconds``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from indexing.pool import Pool
from service import errors
from service.ask import Answerer, make_answerer
from service.conversations import Conversations
from service.pool import open_pool
from service.routes import ask, conversations, documents, health, route
from service.settings import Settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, pool: Pool | None = None, answerer: Answerer | None = None
) -> FastAPI:
    """Build the app; it opens (and closes) its own pool unless one is given, and answers
    with Claude or extractively as the settings say unless an answerer is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = pool is None
        app.state.pool = open_pool(settings) if pool is None else pool
        app.state.conversations = Conversations(app.state.pool.store)
        stop = threading.Event()
        refresher = threading.Thread(
            target=_refresh_loop,
            args=(app.state.pool, settings.refresh_seconds, stop),
            name="index-refresh",
            daemon=True,
        )
        refresher.start()
        try:
            yield
        finally:
            stop.set()
            refresher.join(timeout=10)
            if owned:
                app.state.pool.close()

    app = FastAPI(
        title="Knowledge Pool",
        summary="Answers questions from your company's documents, sending them by file id.",
        version=health.VERSION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.answerer = answerer or make_answerer(settings)
    warning = settings.deprecated_model_warning()
    if warning and app.state.answerer.mode == "claude":
        log.warning(warning)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(route.router)
    app.include_router(documents.router)
    app.include_router(ask.router)
    app.include_router(conversations.router)
    return app


def _refresh_loop(pool: Pool, every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        try:
            pool.refresh()
        except Exception:  # a database blip must not kill the refresher; try again next tick
            log.exception("could not refresh the index from the store")
