"""The JSON API under /api/v1: assessments in, plans out, records, sessions, diary and due lists.

Routes are thin: check who may act, validate, call a service, return a schema. Bad input is a 4xx with the field
path and the message, never a 500.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json

from hemicare.audit import service as audit
from hemicare.engine import build_plan, validate_assessment
from hemicare.engine.intake import validate_assessment_json
from hemicare.engine.intake import validate_model as validate
from hemicare.engine.plan import Plan
from hemicare.errors import FieldProblem, InputError
from hemicare.outcomes import service as outcome_service
from hemicare.outcomes.schemas import DiaryCreate, QuestionnaireCreate
from hemicare.patients import service as patient_service
from hemicare.patients.schemas import PatientCreate, PatientRead
from hemicare.plans import service as plan_service
from hemicare.plans.schemas import PlanEdit
from hemicare.recalls import service as recall_service
from hemicare.recalls.service import DueItem
from hemicare.sessions import service as session_service
from hemicare.sessions.schemas import SessionCreate
from hemicare.web.auth import (
    CONVENTIONAL_SIGNERS,
    INTEGRATIVE_SIGNERS,
    ApiUser,
    audit_read,
    require_care_team,
    require_patient_access,
    require_role,
)

router = APIRouter(prefix="/api/v1", tags=["api"])


async def _body(request: Request) -> Any:
    return _decoded(await request.body())


def _decoded(raw: bytes) -> Any:
    if not raw:
        raise InputError([FieldProblem("body", "is empty; send a JSON object")])
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError([FieldProblem("body", f"is not valid JSON: {exc.msg} at line {exc.lineno}")]) from exc


class SignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    edits: list[PlanEdit] = []
    reason: str | None = None


class PlanVersionOut(BaseModel):
    number: int
    kind: str
    signed_by: str | None
    plan: dict[str, Any]


@router.get("/health", include_in_schema=True)
async def health() -> dict[str, str]:
    """A trivial endpoint (no database, no engine): the load benchmark's baseline."""
    return {"status": "ok"}


@router.post("/plans", responses={200: {"model": Plan, "description": "The plan (the plan contract)"}})
async def make_plan(request: Request, user: ApiUser) -> Response:
    """An assessment in, the plan out (the plan contract). Nothing is stored."""
    require_care_team(user)
    assessment = validate_assessment_json(await request.body(), parse=_decoded)
    plan = build_plan(assessment, request.app.state.kb)
    # Serialised once, straight to bytes by pydantic-core (model_dump_json would decode to str for the response to
    # encode again); re-validating a plan the engine just built would only cost time.
    return Response(to_json(plan), media_type="application/json")


@router.get("/patients", response_model=list[PatientRead])
def list_patients(request: Request, user: ApiUser) -> list[PatientRead]:
    require_care_team(user)
    audit_read(request, user, entity="patient_list", entity_id="all")
    with request.app.state.readers.begin() as session:
        return [PatientRead.model_validate(p) for p in patient_service.list_all(session)]


@router.post("/patients", response_model=PatientRead, status_code=status.HTTP_201_CREATED)
async def create_patient(request: Request, user: ApiUser) -> PatientRead:
    require_care_team(user)
    data = validate(PatientCreate, await _body(request))
    with request.app.state.sessions.begin() as session:
        return PatientRead.model_validate(patient_service.create(session, data=data, actor=user.username))


@router.get("/patients/{code}")
def read_patient(code: str, request: Request, user: ApiUser) -> dict[str, Any]:
    require_patient_access(user, code)
    audit_read(request, user, entity="patient", entity_id=code)
    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        latest = plan_service.latest(session, patient=patient)
        return {
            "patient": PatientRead.model_validate(patient).model_dump(mode="json"),
            "plan": None if latest is None else {"version": latest.number, "kind": latest.kind, **latest.summary},
        }


@router.post("/patients/{code}/assessments", status_code=status.HTTP_201_CREATED)
async def add_assessment(code: str, request: Request, user: ApiUser) -> dict[str, Any]:
    """Store an assessment for the patient and generate the next plan version from it."""
    require_care_team(user)
    data = await _body(request)
    if isinstance(data, dict) and data.get("id") not in (None, code):
        raise InputError([FieldProblem("id", f"{data.get('id')!r} does not match the patient code {code!r}")])
    assessment = validate_assessment({**data, "id": code} if isinstance(data, dict) else data)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        version = plan_service.assess(
            session,
            patient=patient,
            assessment=assessment,
            kb=request.app.state.kb,
            actor=user.username,
            today=dt.date.today(),
        )
        return {"plan_version": version.number, **version.summary}


@router.get("/patients/{code}/plan", response_model=PlanVersionOut)
def read_plan(code: str, request: Request, user: ApiUser) -> PlanVersionOut:
    require_patient_access(user, code)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        latest = plan_service.latest(session, patient=patient)
        if latest is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"patient {code!r} has no plan yet")
        audit.record(session, actor=user.username, action="read", entity="plan", entity_id=f"{code}/v{latest.number}")
        return PlanVersionOut(number=latest.number, kind=latest.kind, signed_by=latest.signed_by, plan=latest.content)


@router.post("/patients/{code}/plan/sign", response_model=PlanVersionOut)
async def sign_plan(code: str, request: Request, user: ApiUser) -> PlanVersionOut:
    """Change statuses (with reasons) and sign the caller's part; conventional for neurologists and
    neurosurgeons, integrative for TCM practitioners."""
    require_role(user, CONVENTIONAL_SIGNERS + INTEGRATIVE_SIGNERS, "sign a plan")
    data = validate(SignRequest, await _body(request))
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        signed = plan_service.sign(
            session,
            patient=patient,
            expected_number=data.version,
            edits=data.edits,
            signer=user.username,
            role=user.role,
            reason=data.reason,
        )
        return PlanVersionOut(number=signed.number, kind=signed.kind, signed_by=signed.signed_by, plan=signed.content)


SESSION_ROLES = {
    "toxin": CONVENTIONAL_SIGNERS,
    "mvd": ("neurosurgeon",),
    "acupuncture": INTEGRATIVE_SIGNERS,
    "herbal": INTEGRATIVE_SIGNERS,
}


@router.post("/patients/{code}/sessions", status_code=status.HTTP_201_CREATED)
async def add_session(code: str, request: Request, user: ApiUser) -> dict[str, Any]:
    """Record a treatment session; toxin by neurologists and neurosurgeons, MVD by neurosurgeons, acupuncture and
    herbal prescriptions by TCM practitioners."""
    data = validate(SessionCreate, await _body(request))
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


@router.post("/patients/{code}/diary", status_code=status.HTTP_201_CREATED)
async def add_diary(code: str, request: Request, user: ApiUser) -> dict[str, Any]:
    require_patient_access(user, code)
    data = validate(DiaryCreate, await _body(request))
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        entry = outcome_service.add_diary(session, patient=patient, data=data, actor=user.username)
        return {"id": entry.id, "date": entry.date.isoformat()}


@router.get("/patients/{code}/diary")
def read_outcomes(code: str, request: Request, user: ApiUser) -> dict[str, Any]:
    require_patient_access(user, code)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        audit.record(session, actor=user.username, action="read", entity="outcomes", entity_id=code)
        summary: dict[str, Any] = outcome_service.summary(session, patient=patient, kb=request.app.state.kb).model_dump(
            mode="json"
        )
        return summary


@router.post("/patients/{code}/questionnaires", status_code=status.HTTP_201_CREATED)
async def add_questionnaire(code: str, request: Request, user: ApiUser) -> dict[str, Any]:
    require_patient_access(user, code)
    data = validate(QuestionnaireCreate, await _body(request))
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        row = outcome_service.add_questionnaire(session, patient=patient, data=data, actor=user.username)
        return {"id": row.id, "total": row.total}


@router.get("/due", response_model=list[DueItem])
def due(request: Request, user: ApiUser, horizon: int = 0) -> list[DueItem]:
    require_care_team(user)
    if horizon < 0 or horizon > 3650:
        raise InputError([FieldProblem("horizon", f"{horizon} is outside 0-3650 days")])
    with request.app.state.sessions.begin() as session:
        return recall_service.due(session, kb=request.app.state.kb, today=dt.date.today(), horizon_days=horizon)
