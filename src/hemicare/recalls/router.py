"""Recalls in the JSON API: who is due, or due within a horizon."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request

from hemicare.errors import FieldProblem, InputError
from hemicare.recalls import service as recall_service
from hemicare.recalls.service import DueItem
from hemicare.web.auth import ApiUser, require_care_team

router = APIRouter(tags=["recalls"])


@router.get("/due", response_model=list[DueItem])
def due(request: Request, user: ApiUser, horizon: int = 0) -> list[DueItem]:
    """Everything due today or within `horizon` days (toxin sessions, acupuncture course sessions, post-MVD reviews,
    questionnaires), overdue ones flagged."""
    require_care_team(user)
    if horizon < 0 or horizon > 3650:
        raise InputError([FieldProblem("horizon", f"{horizon} is outside 0-3650 days")])
    with request.app.state.sessions.begin() as session:
        return recall_service.due(session, kb=request.app.state.kb, today=dt.date.today(), horizon_days=horizon)
