"""Patient records in the JSON API: the list, a new patient, one patient with their latest plan."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from hemicare.engine.intake import validate_model as validate
from hemicare.limits import RECORD_NUMBER_MAX
from hemicare.patients import service as patient_service
from hemicare.patients.schemas import PatientCreate, PatientRead
from hemicare.plans import service as plan_service
from hemicare.web import once
from hemicare.web.auth import ApiUser, audit_read, require_care_team, require_patient_access
from hemicare.web.payload import JsonBody, PatientCode, json_input

router = APIRouter(tags=["patients"])


@router.get("/patients", response_model=list[PatientRead])
def list_patients(
    request: Request,
    response: Response,
    user: ApiUser,
    q: Annotated[str | None, Query(max_length=100, description="Part of a code or name, any case")] = None,
    offset: Annotated[int, Query(ge=0, le=RECORD_NUMBER_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[PatientRead]:
    """Patients by code, a page at a time. `X-Total-Count` says how many match; while more follow, a `Link` header
    gives the next page (rel="next")."""
    require_care_team(user)
    audit_read(request, user, entity="patient_list", entity_id="all")
    with request.app.state.readers.begin() as session:
        total, found = patient_service.search(session, text=q, offset=offset, limit=limit)
        listed = [PatientRead.model_validate(p) for p in found]
    response.headers["X-Total-Count"] = str(total)
    if offset + limit < total:
        following = request.url.include_query_params(offset=offset + limit, limit=limit)
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'
    return listed


@router.post(
    "/patients",
    response_model=PatientRead,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=json_input(PatientCreate, "The new patient"),
)
def create_patient(request: Request, user: ApiUser, body: JsonBody, key: once.IdempotencyKey) -> PatientRead:
    """A new patient record (the code must be new); its assessment follows with POST .../assessments."""
    require_care_team(user)
    data = validate(PatientCreate, body)
    with request.app.state.sessions.begin() as session:
        once.claim_request(session, request, username=user.username, key=key, body=body, patient=data.code)
        created = PatientRead.model_validate(patient_service.create(session, data=data, actor=user.username))
        return once.answered(request, created)


@router.get("/patients/{code}")
def read_patient(code: PatientCode, request: Request, user: ApiUser) -> dict[str, Any]:
    """The patient record with their latest plan in brief (version, statuses, alerts, sign-off)."""
    require_patient_access(user, code)
    audit_read(request, user, entity="patient", entity_id=code)
    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        latest = plan_service.latest(session, patient=patient)
        return {
            "patient": PatientRead.model_validate(patient).model_dump(mode="json"),
            "plan": None if latest is None else {"version": latest.number, "kind": latest.kind, **latest.summary},
        }
