"""Who is due for what: toxin re-injection, acupuncture course sessions, post-MVD reviews, questionnaires.

Built from a handful of set-based queries so that a clinic-sized (or much larger) database answers in seconds.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hemicare.engine import KnowledgeBase
from hemicare.outcomes.models import QuestionnaireAnswer, ScaleGrade
from hemicare.patients.models import Patient
from hemicare.sessions.models import TreatmentSession


class DueItem(BaseModel):
    patient: str
    what: str
    due: dt.date
    overdue: bool
    days_late: int  # days past the due date on the day asked; 0 when due that day, negative while still to come
    detail: str


def lateness(item: DueItem) -> str:
    """How late a recall is, in words for the clinic's lists: "overdue, 40 days", "11 days ago", "today", or nothing
    while it is still to come."""
    late = item.days_late
    if item.overdue:
        return f"overdue, {late} days"
    if late > 0:
        return f"{late} day{'s' if late != 1 else ''} ago"
    return "today" if late == 0 else ""


def _months(start: dt.date, months: int) -> dt.date:
    year, month = divmod(start.month - 1 + months, 12)
    day = min(start.day, 28)
    return dt.date(start.year + year, month + 1, day)


def due(
    session: Session,
    *,
    kb: KnowledgeBase,
    today: dt.date,
    horizon_days: int = 0,
    patient_id: int | None = None,
    patient_ids: Collection[int] | None = None,
) -> list[DueItem]:
    """Everything due by ``today + horizon_days`` (for the whole clinic, one patient or some), overdue items flagged,
    sorted by date."""

    # The loops below reuse the name patient_id for each row.
    wanted = [patient_id] if patient_id is not None else None if patient_ids is None else list(patient_ids)

    def only(query: Any, column: Any) -> Any:
        return query if wanted is None else query.where(column.in_(wanted))

    limit = today + dt.timedelta(days=horizon_days)
    grace = dt.timedelta(days=kb.policy("recall_grace_days"))
    limits = kb.toxin_programme().limits
    min_weeks = limits["min_interval_weeks"].value
    max_weeks = limits["usual_interval_max_weeks"].value
    codes = dict(session.execute(only(select(Patient.id, Patient.code), Patient.id)).all())
    items: list[DueItem] = []

    def add(patient_id: int, what: str, when: dt.date, detail: str) -> None:
        if when <= limit:
            items.append(
                DueItem(
                    patient=codes[patient_id],
                    what=what,
                    due=when,
                    overdue=today > when + grace,
                    days_late=(today - when).days,
                    detail=detail,
                )
            )

    toxin: dict[int, list[tuple[dt.date, Any]]] = defaultdict(list)
    rows = session.execute(
        only(
            select(TreatmentSession.patient_id, TreatmentSession.date, TreatmentSession.data).where(
                TreatmentSession.kind == "toxin"
            ),
            TreatmentSession.patient_id,
        )
    )
    for patient_id, date, data in rows:
        toxin[patient_id].append((date, data.get("effect_weeks")))
    for patient_id, sessions in toxin.items():
        last = max(date for date, _ in sessions)
        effects = [float(w) for _, w in sessions if w is not None]
        usual = sum(effects) / len(effects) if effects else max_weeks
        weeks = min(max(usual, min_weeks), max_weeks)
        add(
            patient_id,
            "botulinum toxin session",
            last + dt.timedelta(weeks=weeks),
            f"last session {last.isoformat()}; usual interval {weeks:.0f} weeks (never sooner than {min_weeks:g})",
        )

    protocol = kb.acupuncture
    assert protocol is not None, "the loader guarantees the acupuncture protocol"
    gap = dt.timedelta(days=14)
    acupuncture: dict[int, list[dt.date]] = defaultdict(list)
    recent = session.execute(
        only(
            select(TreatmentSession.patient_id, TreatmentSession.date).where(
                TreatmentSession.kind == "acupuncture", TreatmentSession.date >= today - dt.timedelta(days=120)
            ),
            TreatmentSession.patient_id,
        )
    )
    for patient_id, date in recent:
        acupuncture[patient_id].append(date)
    for patient_id, dates in acupuncture.items():
        dates.sort()
        course = [dates[-1]]
        for date in reversed(dates[:-1]):
            if course[-1] - date > gap:
                break
            course.append(date)
        if len(course) < protocol.course_sessions and today - dates[-1] <= gap:
            add(
                patient_id,
                "acupuncture session",
                dates[-1] + dt.timedelta(days=7 // protocol.sessions_per_week),
                f"session {len(course) + 1} of {protocol.course_sessions} in the current course",
            )

    assert kb.recalls is not None, "the loader guarantees the recall schedule"
    last_grade = dict(
        session.execute(
            only(select(ScaleGrade.patient_id, func.max(ScaleGrade.date)), ScaleGrade.patient_id).group_by(
                ScaleGrade.patient_id
            )
        ).all()
    )
    surgeries = session.execute(
        only(
            select(TreatmentSession.patient_id, TreatmentSession.date).where(TreatmentSession.kind == "mvd"),
            TreatmentSession.patient_id,
        )
    )
    for patient_id, date in surgeries:
        for months in kb.recalls.mvd_review_months:
            point = _months(date, months)
            graded = last_grade.get(patient_id)
            if graded is not None and graded >= point - dt.timedelta(days=14):
                continue
            add(patient_id, f"post-MVD review at {months} months", point, f"MVD on {date.isoformat()}")
            break

    interval = dt.timedelta(weeks=kb.policy("questionnaire_interval_weeks"))
    last_hfs7 = dict(
        session.execute(
            only(
                select(QuestionnaireAnswer.patient_id, func.max(QuestionnaireAnswer.date)).where(
                    QuestionnaireAnswer.instrument == "hfs7"
                ),
                QuestionnaireAnswer.patient_id,
            ).group_by(QuestionnaireAnswer.patient_id)
        ).all()
    )
    active = session.scalars(
        only(
            select(TreatmentSession.patient_id).where(TreatmentSession.date >= today - dt.timedelta(days=365)),
            TreatmentSession.patient_id,
        ).distinct()
    )
    for patient_id in active:
        answered = last_hfs7.get(patient_id)
        if answered is None:
            add(patient_id, "HFS-7 questionnaire", today, "never answered")
        else:
            add(patient_id, "HFS-7 questionnaire", answered + interval, f"last answered {answered.isoformat()}")
    items.sort(key=lambda item: (item.due, item.patient, item.what))
    return items
