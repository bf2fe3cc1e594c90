"""Treatment sessions in the JSON API: recording one (by the role that may give it) and the list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from hemicare.audit import service as audit
from hemicare.engine.intake import validate_model as validate
from hemicare.outcomes.schemas import Removal
from hemicare.patients import service as patient_service
from hemicare.sessions import service as session_service
from hemicare.sessions.schemas import SessionCreate, SessionOutcome
from hemicare.web import once
from hemicare.web.auth import SESSION_ROLES, ApiUser, require_patient_access, require_role
from hemicare.web.payload import JsonBody, PatientCode, RecordNumber, Why, json_input

router = APIRouter(tags=["sessions"])


@router.post(
    "/patients/{code}/sessions",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=json_input(
        SessionCreate,
        "The treatment session: toxin, acupuncture, herbal or medicine prescription, a nerve block or radiofrequency "
        "ablation, or an operation",
    ),
)
def add_session(
    code: PatientCode, request: Request, user: ApiUser, body: JsonBody, key: once.IdempotencyKey
) -> dict[str, Any]:
    """Record a treatment session; toxin, oral medicines, nerve blocks and radiofrequency ablation by neurologists and
    neurosurgeons, MVD by neurosurgeons, acupuncture and herbal prescriptions by TCM practitioners."""
    data = validate(SessionCreate, body)
    require_role(user, SESSION_ROLES[data.details.kind], f"record a {data.details.kind} session")
    with request.app.state.sessions.begin() as session:
        once.claim_request(session, request, username=user.username, key=key, body=body)
        patient = patient_service.get(session, code=code)
        row = session_service.record(session, patient=patient, data=data, kb=request.app.state.kb, actor=user.username)
        return once.answered(request, {"id": row.id, "kind": row.kind, "date": row.date.isoformat()})


@router.patch(
    "/patients/{code}/sessions/{session_id}",
    openapi_extra=json_input(SessionOutcome, "What was learnt after the session; a reason to change a recorded value"),
)
def record_outcome(
    code: PatientCode,
    session_id: RecordNumber,
    request: Request,
    user: ApiUser,
    body: JsonBody,
    key: once.IdempotencyKey,
) -> dict[str, Any]:
    """Add a session's outcome: a toxin session's effect in weeks and side effects, an operation's result (by the
    roles that may record that kind of session)."""
    outcome = validate(SessionOutcome, body)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        row = session_service.get(session, patient=patient, session_id=session_id)
        require_role(user, SESSION_ROLES[row.kind], f"record the outcome of a {row.kind} session")
        once.claim_request(session, request, username=user.username, key=key, body=body)
        row = session_service.record_outcome(
            session, patient=patient, session_id=session_id, outcome=outcome, actor=user.username
        )
        return once.answered(
            request, {"id": row.id, "kind": row.kind, "date": row.date.isoformat(), "details": row.data}
        )


@router.delete("/patients/{code}/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_session(
    code: PatientCode, session_id: RecordNumber, request: Request, user: ApiUser, reason: Why
) -> Response:
    """Remove a session entered by mistake (on the wrong patient, with a wrong dose, twice), saying why in ``reason``
    (3 characters or more), by the roles that may record that kind of session; record the right one again. The
    audit trail keeps the session and the reason; the patient's latest plan, made from it, asks for a new version."""
    data = validate(Removal, {"reason": reason})
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        row = session_service.get(session, patient=patient, session_id=session_id)
        require_role(user, SESSION_ROLES[row.kind], f"remove a {row.kind} session")
        session_service.remove(session, patient=patient, session_id=session_id, actor=user.username, reason=data.reason)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/patients/{code}/sessions")
def list_sessions(code: PatientCode, request: Request, user: ApiUser) -> list[dict[str, Any]]:
    """The patient's treatment sessions, oldest first, with their details and recorded outcomes."""
    require_patient_access(user, code)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        audit.record(session, actor=user.username, action="read", entity="sessions", entity_id=code)
        return [
            {"id": r.id, "kind": r.kind, "date": r.date.isoformat(), "clinician": r.clinician, "details": r.data}
            for r in session_service.list_for(session, patient=patient)
        ]
