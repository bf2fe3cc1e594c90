"""Recalls in the JSON API: who is due, or due within a horizon; a patient's recalls closed by the care team."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request, Response, status

from hemicare.engine.intake import validate_model as validate
from hemicare.errors import FieldProblem, InputError, quoted
from hemicare.patients import service as patient_service
from hemicare.recalls import service as recall_service
from hemicare.recalls.schemas import RecallClose
from hemicare.recalls.service import RECALLS, ClosedItem, DueItem
from hemicare.web import once
from hemicare.web.auth import ApiUser, may_close_recall, require_care_team
from hemicare.web.payload import JsonBody, PatientCode, RecordNumber, json_input

router = APIRouter(tags=["recalls"])


@router.get("/due", response_model=list[DueItem])
def due(request: Request, user: ApiUser, horizon: int = 0, recall: str | None = None) -> list[DueItem]:
    """Everything due today or within `horizon` days (toxin sessions, acupuncture course sessions, post-MVD reviews,
    questionnaires), overdue ones flagged; with `recall` (`toxin`, `acupuncture`, `mvd_review`, `hfs7`) only that
    kind. Recalls closed on a patient's record are left out."""
    require_care_team(user)
    problems = []
    if not 0 <= horizon <= recall_service.HORIZON_MAX_DAYS:
        problems.append(FieldProblem("horizon", f"{horizon} is outside 0-{recall_service.HORIZON_MAX_DAYS} days"))
    if recall is not None and recall not in RECALLS:
        problems.append(FieldProblem("recall", f"{quoted(recall)} is not one of {', '.join(RECALLS)}"))
    if problems:
        raise InputError(problems)
    with request.app.state.sessions.begin() as session:
        return recall_service.due(
            session, kb=request.app.state.kb, today=dt.date.today(), horizon_days=horizon, recall=recall
        )


@router.get("/patients/{code}/recall-closures", response_model=list[ClosedItem])
def closed(code: PatientCode, request: Request, user: ApiUser) -> list[ClosedItem]:
    """The patient's recalls held back by a closure in force, each with when it would be due, who closed it and why."""
    require_care_team(user)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        return recall_service.closed(session, kb=request.app.state.kb, today=dt.date.today(), patient_id=patient.id)


@router.post(
    "/patients/{code}/recall-closures",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=json_input(RecallClose, "The kind of recall to close and why"),
)
def close(
    code: PatientCode, request: Request, user: ApiUser, body: JsonBody, key: once.IdempotencyKey
) -> dict[str, Any]:
    """Close a kind of recall (`toxin`, `acupuncture`, `mvd_review`, `hfs7`) that no longer applies, with a reason
    (3 characters or more). It is due again once its treatment happens again (the next toxin or acupuncture session,
    operation, or HFS-7 answered), or when the closure is deleted. Toxin and post-MVD recalls by neurologists and
    neurosurgeons, acupuncture by TCM practitioners, the HFS-7 by any of the care team."""
    require_care_team(user)
    data = validate(RecallClose, body)
    may_close_recall(user, data.recall)
    with request.app.state.sessions.begin() as session:
        once.claim_request(session, request, username=user.username, key=key, body=body)
        patient = patient_service.get(session, code=code)
        row = recall_service.close(
            session, patient=patient, recall=data.recall, reason=data.reason, actor=user.username, today=dt.date.today()
        )
        return once.answered(request, {"id": row.id, "recall": row.recall, "closed_on": row.closed_on.isoformat()})


@router.delete("/patients/{code}/recall-closures/{closure_id}", status_code=status.HTTP_204_NO_CONTENT)
def reopen(code: PatientCode, closure_id: RecordNumber, request: Request, user: ApiUser) -> Response:
    """Reopen a closed recall (closed by mistake, or the patient changed their mind); the audit trail keeps the
    closure."""
    require_care_team(user)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        closure = recall_service.closure(session, patient=patient, closure_id=closure_id)
        may_close_recall(user, closure.recall)
        recall_service.reopen(session, patient=patient, closure=closure, actor=user.username)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
