"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from indexing.errors import PoolError
from service.deps import AnswererDep, AskerDep, PoolDep, SettingsDep
from service.errors import API_ERRORS

router = APIRouter(tags=["health"])

VERSION = "0.1.0"


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(pool: PoolDep, settings: SettingsDep) -> dict[str, Any] | JSONResponse:
    """Store reachable, index loaded and Files backend reachable."""
    checks: dict[str, str] = {}
    try:
        documents = pool.store.count_documents()
        checks["store"] = "ok"
    except Exception as exc:  # any driver error means "not ready", reported, not raised
        documents = -1
        checks["store"] = f"unavailable: {type(exc).__name__}"
    if pool.params_mismatch:
        checks["index"] = f"stale, restart needed: {pool.params_mismatch}"
    else:
        checks["index"] = "ok" if pool.loaded else "loading"
    try:
        pool.backend.check()
        checks["files_backend"] = "ok"
    except PoolError as exc:
        checks["files_backend"] = f"unavailable: {exc}"
    body: dict[str, Any] = {
        "status": "ok" if all(v == "ok" for v in checks.values()) else "unavailable",
        "checks": checks,
        "documents": documents,
        "indexed": len(pool.index),
        "backend": settings.backend_name,
    }
    if checks["store"] == "ok":
        try:
            if pool.config.semantic:
                # Routed by their words until the background thread gives them their vectors.
                body["awaiting_vectors"] = pool.store.count_awaiting_vectors()
            if settings.expand:
                # Routed by their own words until the model has described them.
                body["awaiting_descriptions"] = pool.store.count_awaiting_expansion()
        except Exception as exc:  # as for the store check above
            checks["store"] = f"unavailable: {type(exc).__name__}"
            body["status"] = "unavailable"
    if body["status"] != "ok":
        return JSONResponse(body, status_code=503)
    return body


@router.get("/v1/info", responses=API_ERRORS)
async def info(answerer: AnswererDep, settings: SettingsDep, _caller: AskerDep) -> dict[str, Any]:
    """How this server answers: with Claude (and which model) or extractively, without a key."""
    return {
        "mode": answerer.mode,
        "model": answerer.model,
        "top_k": settings.top_k,
        "version": VERSION,
    }
