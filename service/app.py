"""The FastAPI application.

``create_app`` takes the settings and, optionally, an already-open pool (``kpool serve`` opens it
first so a bad configuration is reported before the server starts). A background thread applies
document changes made by other processes (a cron bulk ingest, another replica) every
``refresh_seconds`` and forgets conversations idle for ``conversation_days`` and audit entries
older than ``audit_days``. With semantic routing on, another gives newly ingested documents
their sentence vectors (``indexing.ingest.vectorise``), one at a time; with ``KPOOL_EXPAND``,
another has a small model describe them (``indexing.expansion``). One ``Limiter`` per app holds
every caller's rate limit and token budget (tests may pass their own, with a clock of their
own).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from indexing.expansion import ExpandReport, expand
from indexing.ingest import vectorise
from indexing.models import utcnow
from indexing.pool import Pool
from service import cors, errors
from service.accounting import Accounting
from service.ask import Answerer, make_answerer
from service.audit import AuditLog
from service.conversations import Conversations
from service.edge import RefuseNulInUrl
from service.expand import make_describer
from service.keys import Keys
from service.limits import Limiter
from service.pool import open_pool
from service.routes import ask, audit, conversations, documents, health, route, web
from service.settings import Settings

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 3600.0


def create_app(
    settings: Settings,
    *,
    pool: Pool | None = None,
    answerer: Answerer | None = None,
    limiter: Limiter | None = None,
) -> FastAPI:
    """Build the app; it opens (and closes) its own pool unless one is given, and answers
    with Claude or extractively as the settings say unless an answerer is given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = pool is None
        app.state.pool = open_pool(settings) if pool is None else pool
        app.state.conversations = Conversations(app.state.pool.store)
        app.state.keys = Keys(app.state.pool.store)
        app.state.accounting = Accounting(
            app.state.limiter,
            AuditLog(app.state.pool.store),
            keep_questions=settings.audit_questions,
        )
        stop = threading.Event()
        loops = {"maintenance": _maintain}
        if app.state.pool.config.semantic:
            loops["vectors"] = _vectorise
        if settings.expand:
            loops["descriptions"] = _describe
        workers = [
            threading.Thread(
                target=loop, args=(app.state.pool, settings, stop), name=name, daemon=True
            )
            for name, loop in loops.items()
        ]
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=10)
            if owned and not any(worker.is_alive() for worker in workers):
                app.state.pool.close()
            if answerer is None:
                _close_client(app.state.answerer)

    app = FastAPI(
        title="Knowledge Pool",
        summary="Answers questions from your company's documents, sending them by file id.",
        version=health.VERSION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.answerer = answerer or make_answerer(settings)
    app.state.limiter = limiter or Limiter.from_settings(settings)
    warning = settings.deprecated_model_warning()
    if warning and app.state.answerer.mode == "claude":
        log.warning(warning)
    errors.install(app)
    app.add_middleware(RefuseNulInUrl)
    cors.install(app, settings)
    app.include_router(health.router)
    app.include_router(route.router)
    app.include_router(documents.router)
    app.include_router(ask.router)
    app.include_router(conversations.router)
    app.include_router(audit.router)
    app.include_router(web.router)
    return app


def _close_client(answerer: Answerer) -> None:
    """Close the Anthropic client of an answerer the app made. Its pooled connections would
    otherwise be left to the garbage collector, which closes them with a ResourceWarning."""
    client = getattr(answerer, "client", None)
    if client is not None:
        client.close()


def _vectorise(pool: Pool, settings: Settings, stop: threading.Event) -> None:
    """Give documents without sentence vectors theirs, on one thread so that questions keep
    the other cores; when none is left, look again every ``refresh_seconds``. The refresh
    thread applies the stored vectors to the index like any other change."""
    while not stop.is_set():
        done = 0
        try:
            if pool.params_mismatch is None:
                # From the other end of the queue than `kpool ingest`, so the two rarely meet.
                done = vectorise(pool, limit=8, descending=True, stop=stop)
        except Exception:  # a database blip must not kill the loop; try again next tick
            log.exception("could not compute sentence vectors")
        if done:
            log.info("gave %d documents their sentence vectors", done)
        elif stop.wait(settings.refresh_seconds):
            return


#: Seconds the describing loop waits after a run that stopped early, doubled after each further
#: run that stops the same way, up to ``LONGEST_PAUSE_SECONDS``.
OUTAGE_PAUSE_SECONDS = 60.0
LONGEST_PAUSE_SECONDS = 3600.0


def _describe(pool: Pool, settings: Settings, stop: threading.Event) -> None:
    """Describe documents that have no description yet (``KPOOL_EXPAND``), a few at a time;
    when none is left, look again every ``refresh_seconds``. A run that stops early (an outage,
    failures in a row) is followed by a pause of ``OUTAGE_PAUSE_SECONDS``, doubled while runs
    keep stopping, and failures in a row are counted on across runs: an account that refuses
    every request costs one request a pause, not one a document. The refresh thread applies
    the new summaries like any change."""
    describer = make_describer(settings)
    assert describer is not None
    streak, stopped_runs = 0, 0
    try:
        while not stop.is_set():
            report = ExpandReport(streak=streak)
            try:
                if pool.params_mismatch is None:
                    # From the other end of the queue than `kpool ingest`, so the two rarely
                    # pay for the same document.
                    report = expand(
                        pool,
                        describer,
                        limit=8,
                        workers=2,
                        descending=True,
                        stop=stop,
                        streak=streak,
                    )
            except Exception as exc:  # a database blip must not kill the loop
                log.exception("could not describe documents")
                report.interrupted = type(exc).__name__
            streak = report.streak
            if report.described or report.failed:
                log.info(
                    "described %d documents, %d could not be (%d input, %d output tokens)",
                    report.described,
                    report.failed,
                    report.input_tokens,
                    report.output_tokens,
                )
            stopped_runs = stopped_runs + 1 if report.interrupted else 0
            pause = settings.refresh_seconds
            if report.interrupted:
                backoff = OUTAGE_PAUSE_SECONDS * 2 ** min(stopped_runs - 1, 16)
                pause = max(pause, min(backoff, LONGEST_PAUSE_SECONDS))
                log.warning("describing documents paused for %.0f s: %s", pause, report.interrupted)
            elif report.described:
                continue  # more may be waiting
            if stop.wait(pause):
                return
    finally:
        describer.client.close()


def _maintain(pool: Pool, settings: Settings, stop: threading.Event) -> None:
    """Apply other processes' document changes every ``refresh_seconds``, and forget idle
    conversations and old audit entries once an hour (the first time at start-up)."""
    conversations = Conversations(pool.store)
    next_prune = time.monotonic()
    while True:
        try:
            pool.refresh()
            if time.monotonic() >= next_prune:
                cutoff = utcnow() - timedelta(days=settings.conversation_days)
                if forgotten := conversations.prune(idle_since=cutoff):
                    log.info("forgot %d conversations idle since %s", forgotten, cutoff)
                audit_cutoff = utcnow() - timedelta(days=settings.audit_days)
                if pruned := AuditLog(pool.store).prune(before=audit_cutoff):
                    log.info("pruned %d audit entries older than %s", pruned, audit_cutoff)
                next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        except Exception:  # a database blip must not kill the loop; try again next tick
            log.exception("could not refresh the index or prune conversations")
        if stop.wait(settings.refresh_seconds):
            return
