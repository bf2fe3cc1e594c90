"""Outcomes in the JSON API: the symptom diary, questionnaires, a visit's grades, and the outcome summary."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from hemicare.audit import service as audit
from hemicare.engine.intake import validate_model as validate
from hemicare.limits import REASON_MAX
from hemicare.outcomes import service as outcome_service
from hemicare.outcomes.schemas import DiaryCreate, GradesCreate, PreferencesStated, QuestionnaireCreate, Removal
from hemicare.patients import service as patient_service
from hemicare.web import once
from hemicare.web.auth import ApiUser, require_care_team, require_patient_access
from hemicare.web.payload import JsonBody, PatientCode, RecordNumber, Why, json_input

router = APIRouter(tags=["outcomes"])


@router.post(
    "/patients/{code}/diary",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=json_input(DiaryCreate, "One diary entry"),
)
def add_diary(
    code: PatientCode, request: Request, user: ApiUser, body: JsonBody, key: once.IdempotencyKey
) -> dict[str, Any]:
    """One day's spasm count (per hour or per day), intensity 0-10 and triggers; by the patient or the care team."""
    require_patient_access(user, code)
    data = validate(DiaryCreate, body)
    with request.app.state.sessions.begin() as session:
        once.claim_request(session, request, username=user.username, key=key, body=body)
        patient = patient_service.get(session, code=code)
        entry = outcome_service.add_diary(session, patient=patient, data=data, actor=user.username)
        return once.answered(request, {"id": entry.id, "date": entry.date.isoformat()})


@router.delete("/patients/{code}/diary/{entry_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_diary(
    code: PatientCode,
    entry_id: RecordNumber,
    request: Request,
    user: ApiUser,
    reason: Annotated[
        str | None,
        Query(
            description="Why it is removed (3-500 characters): required from the care team; without one, a "
            "patient's own removal is kept as 'removed by the patient'",
            json_schema_extra={"minLength": 3, "maxLength": REASON_MAX},
        ),
    ] = None,
) -> Response:
    """Remove a diary entry entered by mistake (the patient, or the care team saying why); the audit trail keeps its
    values and the reason."""
    require_patient_access(user, code)
    if reason is None and not user.in_care_team:
        reason = outcome_service.BY_THE_PATIENT
    return _remove(request, user, code, "diary", entry_id, reason)


@router.get("/patients/{code}/diary")
def read_outcomes(code: PatientCode, request: Request, user: ApiUser) -> dict[str, Any]:
    """The outcome summary: monthly diary trends, questionnaire change against the minimal clinically important
    change, and each toxin session's and nerve procedure's recorded effect."""
    require_patient_access(user, code)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        audit.record(session, actor=user.username, action="read", entity="outcomes", entity_id=code)
        summary: dict[str, Any] = outcome_service.summary(session, patient=patient, kb=request.app.state.kb).model_dump(
            mode="json"
        )
        return summary


@router.post(
    "/patients/{code}/preferences",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=json_input(PreferencesStated, "What matters to the patient in choosing a treatment"),
)
def state_preferences(
    code: PatientCode, request: Request, user: ApiUser, body: JsonBody, key: once.IdempotencyKey
) -> dict[str, Any]:
    """What the patient says matters to them, each of the assessment's preferences (`avoid_surgery`,
    `wants_definitive_treatment`, `avoid_injections`, `avoid_needles`, `integrative_care`) answered `yes`, `no` or
    `not_sure`, at least one; by the patient or the care team from a paper form. A new statement each time: the care
    team sees the latest beside the plan, and where it is the opposite of the assessment's, which the plan follows."""
    require_patient_access(user, code)
    data = validate(PreferencesStated, body)
    with request.app.state.sessions.begin() as session:
        once.claim_request(session, request, username=user.username, key=key, body=body)
        patient = patient_service.get(session, code=code)
        row = outcome_service.state_preferences(session, patient=patient, data=data, actor=user.username)
        return once.answered(request, {"id": row.id, "date": row.date.isoformat()})


@router.get("/patients/{code}/preferences")
def read_preferences(code: PatientCode, request: Request, user: ApiUser) -> dict[str, Any]:
    """The patient's latest statement of what matters to them (`date`, `answers`, `by`), or nulls before any."""
    require_patient_access(user, code)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        audit.record(session, actor=user.username, action="read", entity="preferences", entity_id=code)
        row = outcome_service.stated_preferences(session, patient=patient)
        if row is None:
            return {"date": None, "answers": None, "by": None}
        return {"date": row.date.isoformat(), "answers": row.answers, "by": row.created_by}


@router.post(
    "/patients/{code}/questionnaires",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=json_input(QuestionnaireCreate, "A questionnaire's answers (HFS-7 or HFS-30)"),
)
def add_questionnaire(
    code: PatientCode, request: Request, user: ApiUser, body: JsonBody, key: once.IdempotencyKey
) -> dict[str, Any]:
    """HFS-7 or HFS-30 answers (0-4 each); the total is computed and returned, and for HFS-30 answers grouped by
    subscale each subscale's score (`subscales`: {"mobility": {"score": 6, "max": 16}, ...}; null otherwise)."""
    require_patient_access(user, code)
    data = validate(QuestionnaireCreate, body)
    with request.app.state.sessions.begin() as session:
        once.claim_request(session, request, username=user.username, key=key, body=body)
        patient = patient_service.get(session, code=code)
        row = outcome_service.add_questionnaire(session, patient=patient, data=data, actor=user.username)
        scores = outcome_service.subscales_json(outcome_service.subscale_scores(row.answers))
        return once.answered(request, {"id": row.id, "total": row.total, "subscales": scores})


@router.delete("/patients/{code}/questionnaires/{answer_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_questionnaire(
    code: PatientCode, answer_id: RecordNumber, request: Request, user: ApiUser, reason: Why
) -> Response:
    """Remove questionnaire answers entered by mistake (the patient, or the care team), saying why in ``reason`` (3
    characters or more); the audit trail keeps the answers and the reason. A recall they answered falls due again."""
    require_patient_access(user, code)
    return _remove(request, user, code, "questionnaire", answer_id, reason)


@router.post(
    "/patients/{code}/grades",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=json_input(GradesCreate, "A visit's severity grades (at least one)"),
)
def add_grades(
    code: PatientCode, request: Request, user: ApiUser, body: JsonBody, key: once.IdempotencyKey
) -> dict[str, Any]:
    """The severity grades of a visit, by the care team (SMC 1-4; Jankovic severity and frequency, Cohen-Albert 0-4;
    at least one). Grades at a post-MVD review answer that review's recall."""
    require_care_team(user)
    require_patient_access(user, code)
    data = validate(GradesCreate, body)
    with request.app.state.sessions.begin() as session:
        once.claim_request(session, request, username=user.username, key=key, body=body)
        patient = patient_service.get(session, code=code)
        row = outcome_service.add_grades(session, patient=patient, data=data, actor=user.username)
        return once.answered(request, {"id": row.id, "date": row.date.isoformat()})


@router.delete("/patients/{code}/grades/{grades_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_grades(code: PatientCode, grades_id: RecordNumber, request: Request, user: ApiUser, reason: Why) -> Response:
    """Remove a visit's grades entered by mistake (the care team), saying why in ``reason`` (3 characters or more);
    the audit trail keeps the grades and the reason. A post-MVD review recall they answered falls due again."""
    require_care_team(user)
    require_patient_access(user, code)
    return _remove(request, user, code, "grades", grades_id, reason)


def _remove(request: Request, user: ApiUser, code: str, entity: str, row_id: int, reason: str | None) -> Response:
    data = validate(Removal, {} if reason is None else {"reason": reason})
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        outcome_service.remove(
            session,
            patient=patient,
            entity=entity,
            row_id=row_id,
            actor=user.username,
            reason=data.reason,
            by_patient=not user.in_care_team,
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
