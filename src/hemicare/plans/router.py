"""Plans in the JSON API: a plan for any assessment (nothing stored), a patient's current plan, a new version made
from the records, and sign-off."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, HTTPException, Request, Response, status

from hemicare.audit import service as audit
from hemicare.engine import build_plan
from hemicare.engine.assessment import Assessment
from hemicare.engine.intake import validate_assessment_json
from hemicare.engine.intake import validate_model as validate
from hemicare.engine.plan import Plan, plan_json
from hemicare.patients import service as patient_service
from hemicare.plans import service as plan_service
from hemicare.plans.schemas import OverrideGroupOut, PlanVersionBrief, PlanVersionOut, SignRequest
from hemicare.web import once
from hemicare.web.auth import (
    CONVENTIONAL_SIGNERS,
    INTEGRATIVE_SIGNERS,
    ApiUser,
    require_care_team,
    require_patient_access,
    require_role,
)
from hemicare.web.payload import JsonBody, PatientCode, RecordNumber, decoded, json_input
from hemicare.web.turns import Turns

router = APIRouter(tags=["plans"])


@router.post(
    "/plans",
    responses={200: {"model": Plan, "description": "The plan (the plan contract)"}},
    openapi_extra=json_input(Assessment, "The assessment (the assessment contract)"),
)
async def make_plan(request: Request, user: ApiUser) -> Response:
    """An assessment in, the plan out (the plan contract). Nothing is stored."""
    require_care_team(user)
    body = await request.body()
    turns: Turns = request.app.state.plan_turns
    async with turns.turn():  # the CPU-heavy part, in arrival order (see hemicare.web.turns)
        assessment = validate_assessment_json(body, parse=decoded)
        plan = build_plan(assessment, request.app.state.kb)
        # Serialised once, straight to bytes; re-validating a plan the engine just built would only cost time.
        content = plan_json(plan)
    return Response(content, media_type="application/json")


@router.get("/patients/{code}/plan", response_model=PlanVersionOut)
def read_plan(code: PatientCode, request: Request, user: ApiUser) -> PlanVersionOut:
    """The latest version of the patient's plan, signed or not: its `signoff` says which parts a clinician agreed
    (an app for patients should show only those). Its options side by side are as its items' statuses say."""
    require_patient_access(user, code)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        latest = plan_service.latest(session, patient=patient)
        if latest is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"patient {code!r} has no plan yet")
        audit.record(session, actor=user.username, action="read", entity="plan", entity_id=f"{code}/v{latest.number}")
        plan = plan_service.as_signed(latest.content, request.app.state.kb)
        return PlanVersionOut(number=latest.number, kind=latest.kind, signed_by=latest.signed_by, plan=plan)


@router.get("/patients/{code}/plans", response_model=list[PlanVersionBrief])
def list_plan_versions(code: PatientCode, request: Request, user: ApiUser) -> list[PlanVersionBrief]:
    """Every version of the patient's plan, newest first: who made or signed it, and the changes made at sign-off."""
    require_patient_access(user, code)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        found = plan_service.versions(session, patient=patient)
        audit.record(session, actor=user.username, action="read", entity="plan_versions", entity_id=code)
        return [PlanVersionBrief(**brief._asdict()) for brief in found]


@router.get("/patients/{code}/plans/{number}", response_model=PlanVersionOut)
def read_plan_version(code: PatientCode, number: RecordNumber, request: Request, user: ApiUser) -> PlanVersionOut:
    """One stored version of the patient's plan, as it was signed (its options side by side as its items' statuses
    say, `as_signed`)."""
    require_patient_access(user, code)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        shown = plan_service.version(session, patient=patient, number=number)
        audit.record(session, actor=user.username, action="read", entity="plan", entity_id=f"{code}/v{number}")
        plan = plan_service.as_signed(shown.content, request.app.state.kb)
        return PlanVersionOut(number=shown.number, kind=shown.kind, signed_by=shown.signed_by, plan=plan)


@router.post("/patients/{code}/plans", response_model=PlanVersionOut, status_code=status.HTTP_201_CREATED)
def new_plan_version(code: PatientCode, request: Request, user: ApiUser, key: once.IdempotencyKey) -> PlanVersionOut:
    """A new version of the patient's plan from their latest assessment and the sessions recorded since the last one
    was made (a toxin session, its effect and side effects, an operation's result), to be signed again."""
    require_care_team(user)
    with request.app.state.sessions.begin() as session:
        once.claim_request(session, request, username=user.username, key=key, body=None)
        patient = patient_service.get(session, code=code)
        made = plan_service.generate(
            session, patient=patient, kb=request.app.state.kb, actor=user.username, today=dt.date.today(), via="records"
        )
        return once.answered(
            request, PlanVersionOut(number=made.number, kind=made.kind, signed_by=made.signed_by, plan=made.content)
        )


@router.get("/overrides", response_model=list[OverrideGroupOut])
def list_overrides(request: Request, user: ApiUser, since: str | None = None) -> list[OverrideGroupOut]:
    """Every status clinicians changed at sign-off (on or after `since`, YYYY-MM-DD), grouped by item and change,
    the most frequent first, each sign-off with its reason, newest first: where HemiCare's proposals and the
    clinic's decisions part, for whoever keeps the knowledge base."""
    require_care_team(user)
    start = plan_service.since_day(since, field="since")
    with request.app.state.sessions.begin() as session:
        groups = plan_service.overrides(session, since=start)
        audit.record(
            session, actor=user.username, action="read", entity="overrides", entity_id=f"since {start or 'start'}"
        )
        return [OverrideGroupOut.of(group) for group in groups]


@router.post(
    "/patients/{code}/plan/sign",
    response_model=PlanVersionOut,
    openapi_extra=json_input(SignRequest, "Status changes with their reasons, and the version being signed"),
)
def sign_plan(
    code: PatientCode, request: Request, user: ApiUser, body: JsonBody, key: once.IdempotencyKey
) -> PlanVersionOut:
    """Change statuses (with reasons) and sign the caller's part; conventional for neurologists and
    neurosurgeons, integrative for TCM practitioners."""
    require_role(user, CONVENTIONAL_SIGNERS + INTEGRATIVE_SIGNERS, "sign a plan")
    data = validate(SignRequest, body)
    with request.app.state.sessions.begin() as session:
        once.claim_request(session, request, username=user.username, key=key, body=body)
        patient = patient_service.get(session, code=code)
        signed = plan_service.sign(
            session,
            patient=patient,
            expected_number=data.version,
            edits=data.edits,
            signer=user.username,
            role=user.role,
            kb=request.app.state.kb,
            reason=data.reason,
        )
        return once.answered(
            request,
            PlanVersionOut(number=signed.number, kind=signed.kind, signed_by=signed.signed_by, plan=signed.content),
        )
