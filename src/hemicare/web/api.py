"""The JSON API under /api/v1: assessments in, plans out, records, sessions, diary and due lists.

Each domain keeps its routes in its own ``router.py``; this module lists them, with the trivial health endpoint, for
the app to mount side by side under one prefix (a router nested in another costs every request a level of route
matching). Routes are thin: check who may act, validate, call a service, return a schema. Bad input is a 4xx
with the field path and the message, never a 500.
"""

from __future__ import annotations

from fastapi import APIRouter

from hemicare.assessments import router as assessments
from hemicare.outcomes import router as outcomes
from hemicare.patients import router as patients
from hemicare.plans import router as plans
from hemicare.recalls import router as recalls
from hemicare.sessions import router as sessions

PREFIX = "/api/v1"
router = APIRouter(prefix=PREFIX)


@router.get("/health", tags=["service"])
async def health() -> dict[str, str]:
    """A trivial endpoint (no database, no engine): the load benchmark's baseline."""
    return {"status": "ok"}


ROUTERS = [router, *(domain.router for domain in (plans, patients, assessments, sessions, outcomes, recalls))]
