"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import EngineDep
from api.errors import problem
from geoserver.database.migrate import compare_status

router = APIRouter(tags=["health"])


@router.get("/health", summary="Process is alive")
def health() -> dict[str, str]:
    """Answer 200 while the process runs."""
    return {"status": "ok"}


@router.get("/ready", summary="Database reachable and schema current")
def ready(engine: EngineDep) -> JSONResponse:
    """Answer 200 when the database answers and its schema matches the code, else 503."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT kind, name, sha256 FROM gridgov_meta.applied_sql")
            ).all()
    except Exception:
        return problem(503, "the database is not reachable", headers={"Retry-After": "5"})
    status = compare_status([tuple(r) for r in rows])
    if not status.current:
        return problem(503, status.explain())
    return JSONResponse({"status": "ready"})
