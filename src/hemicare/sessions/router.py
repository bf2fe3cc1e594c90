"""Treatment sessions in the JSON API: recording one (by the role that may give it) and the list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status

from hemicare.audit import service as audit
from hemicare.engine.intake import validate_model as validate
from hemicare.patients import service as patient_service
from hemicare.sessions import service as session_service
from hemicare.sessions.schemas import SessionCreate
from hemicare.web.auth import CONVENTIONAL_SIGNERS, INTEGRATIVE_SIGNERS, ApiUser, require_patient_access, require_role
from hemicare.web.payload import JsonBody, json_input

router = APIRouter(tags=["sessions"])

SESSION_ROLES = {
    "toxin": CONVENTIONAL_SIGNERS,
    "mvd": ("neurosurgeon",),
    "acupuncture": INTEGRATIVE_SIGNERS,
    "herbal": INTEGRATIVE_SIGNERS,
}


@router.post(
    "/patients/{code}/sessions",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=json_input(SessionCreate, "The treatment session: toxin, acupuncture or herbal prescription"),
)
def add_session(code: str, request: Request, user: ApiUser, body: JsonBody) -> dict[str, Any]:
    """Record a treatment session; toxin by neurologists and neurosurgeons, MVD by neurosurgeons, acupuncture and
    herbal prescriptions by TCM practitioners."""
    data = validate(SessionCreate, body)
    require_role(user, SESSION_ROLES[data.details.kind], f"record a {data.details.kind} session")
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        row = session_service.record(session, patient=patient, data=data, kb=request.app.state.kb, actor=user.username)
        return {"id": row.id, "kind": row.kind, "date": row.date.isoformat()}


@router.get("/patients/{code}/sessions")
def list_sessions(code: str, request: Request, user: ApiUser) -> list[dict[str, Any]]:
    require_patient_access(user, code)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        audit.record(session, actor=user.username, action="read", entity="sessions", entity_id=code)
        return [
            {"id": r.id, "kind": r.kind, "date": r.date.isoformat(), "clinician": r.clinician, "details": r.data}
            for r in session_service.list_for(session, patient=patient)
        ]
