"""The JSON API under /api/v1: assessments in, plans out, records, sessions, diary and due lists.

Each domain keeps its routes in its own ``router.py``; this module lists them, with the trivial health endpoint, for
the app to mount side by side under one prefix (a router nested in another costs every request a level of route
matching). Routes are thin: check who may act, validate, call a service, return a schema. Bad input is a 4xx
with the field path and the message, never a 500.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status

from hemicare.assessments import router as assessments
from hemicare.db.engine import current_revision
from hemicare.outcomes import router as outcomes
from hemicare.patients import router as patients
from hemicare.plans import router as plans
from hemicare.recalls import router as recalls
from hemicare.sessions import router as sessions
from hemicare.web.payload import Problems

PREFIX = "/api/v1"
router = APIRouter(prefix=PREFIX)


@router.get("/health", tags=["service"])
async def health() -> dict[str, str]:
    """A trivial endpoint (no database, no engine): the load benchmark's baseline."""
    return {"status": "ok"}


@router.get("/ready", tags=["service"], responses={503: {"model": Problems, "description": "Not ready: why"}})
def ready(request: Request) -> dict[str, str]:
    """Whether this server can serve: its database answers and is at the revision this HemiCare's migrations end at.
    For a monitor or a load balancer: no sign-in, no patient data; 503 with the reason otherwise."""
    at = current_revision(request.app.state.engine)  # a database that does not answer: 503 (the app's handler)
    needed = request.app.state.schema_head
    if at != needed:
        message = f"the database is at revision {at or 'none'}; this HemiCare needs {needed}: run `hemicare db upgrade`"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, message)
    return {"status": "ok", "database": needed}


ROUTERS = [router, *(domain.router for domain in (plans, patients, assessments, sessions, outcomes, recalls))]
