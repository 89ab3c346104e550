"""The FastAPI application.

``create_app`` takes the settings and, optionally, an already-open pool (``kpool serve`` opens it
first so a bad configuration is reported before the server starts). A background thread applies
document changes made by other processes (a cron bulk ingest, another replica) every
``refresh_seconds`` and forgets conversations idle for ``conversation_days``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from indexing.models import utcnow
from indexing.pool import Pool
from service import cors, errors
from service.ask import Answerer, make_answerer
from service.conversations import Conversations
from service.keys import Keys
from service.pool import open_pool
from service.routes import ask, conversations, documents, health, route, web
from service.settings import Settings

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 3600.0


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
        app.state.keys = Keys(app.state.pool.store)
        stop = threading.Event()
        refresher = threading.Thread(
            target=_maintain,
            args=(app.state.pool, settings, stop),
            name="maintenance",
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
    cors.install(app, settings)
    app.include_router(health.router)
    app.include_router(route.router)
    app.include_router(documents.router)
    app.include_router(ask.router)
    app.include_router(conversations.router)
    app.include_router(web.router)
    return app


def _maintain(pool: Pool, settings: Settings, stop: threading.Event) -> None:
    """Apply other processes' document changes every ``refresh_seconds``, and forget idle
    conversations once an hour (the first time at start-up)."""
    conversations = Conversations(pool.store)
    next_prune = time.monotonic()
    while True:
        try:
            pool.refresh()
            if time.monotonic() >= next_prune:
                cutoff = utcnow() - timedelta(days=settings.conversation_days)
                if forgotten := conversations.prune(idle_since=cutoff):
                    log.info("forgot %d conversations idle since %s", forgotten, cutoff)
                next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        except Exception:  # a database blip must not kill the loop; try again next tick
            log.exception("could not refresh the index or prune conversations")
        if stop.wait(settings.refresh_seconds):
            return
