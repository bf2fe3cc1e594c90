"""Assessments in the JSON API: a stored assessment generates the patient's next plan version."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request, status

from hemicare.engine import validate_assessment
from hemicare.engine.assessment import Assessment
from hemicare.errors import FieldProblem, InputError, quoted
from hemicare.patients import service as patient_service
from hemicare.plans import service as plan_service
from hemicare.web import once
from hemicare.web.auth import ApiUser, require_care_team
from hemicare.web.payload import JsonBody, PatientCode, json_input

router = APIRouter(tags=["assessments"])


@router.post(
    "/patients/{code}/assessments",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=json_input(Assessment, "The assessment (its id, when given, must be the patient code)"),
)
def add_assessment(
    code: PatientCode, request: Request, user: ApiUser, data: JsonBody, key: once.IdempotencyKey
) -> dict[str, Any]:
    """Store an assessment for the patient and generate the next plan version from it."""
    require_care_team(user)
    if isinstance(data, dict) and data.get("id") not in (None, code):
        raise InputError([FieldProblem("id", f"{quoted(data.get('id'))} does not match the patient code {code!r}")])
    assessment = validate_assessment({**data, "id": code} if isinstance(data, dict) else data)
    with request.app.state.sessions.begin() as session:
        once.claim_request(session, request, username=user.username, key=key, body=data)
        patient = patient_service.get(session, code=code)
        version = plan_service.assess(
            session,
            patient=patient,
            assessment=assessment,
            kb=request.app.state.kb,
            actor=user.username,
            today=dt.date.today(),
        )
        return once.answered(request, {"plan_version": version.number, **version.summary})
