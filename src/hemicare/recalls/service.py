"""Who is due for what: toxin re-injection, acupuncture course sessions, post-MVD reviews, questionnaires; and the
recalls the care team has closed.

Built from a handful of set-based queries so that a clinic-sized (or much larger) database answers in seconds.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection
from typing import Any, NamedTuple

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hemicare.audit import service as audit
from hemicare.engine import KnowledgeBase
from hemicare.errors import NotFoundError
from hemicare.outcomes.models import QuestionnaireAnswer, ScaleGrade
from hemicare.patients import service as patient_service
from hemicare.patients.models import Patient
from hemicare.plans import service as plan_service
from hemicare.recalls.models import RecallClosure
from hemicare.sessions.models import TreatmentSession
from hemicare.sessions.service import (  # by kind: toxin and acupuncture recalls
    COURSE_GAP,
    HELD_BACK,
    PLAN_ITEMS,
    acupuncture_courses,
)


class Recall(NamedTuple):
    name: str  # in words, plural
    until: str  # what makes it due again once closed


HORIZON_MAX_DAYS = 3650  # how far ahead a due list looks at most: ten years
RECALLS = {
    "toxin": Recall("botulinum toxin sessions", "the next toxin session"),
    "acupuncture": Recall("acupuncture sessions", "the next acupuncture session"),
    "mvd_review": Recall("post-MVD reviews", "the next operation"),
    "hfs7": Recall("HFS-7 questionnaires", "the next HFS-7 answered"),
}


class DueItem(BaseModel):
    patient: str
    recall: str  # the kind of recall (RECALLS): what a closure names
    what: str
    due: dt.date
    overdue: bool
    days_late: int  # days past the due date on the day asked; 0 when due that day, negative while still to come
    detail: str
    plan: str | None = Field(
        default=None,
        description="The status the patient's latest plan gives this treatment when it holds it back (deferred, "
        "not_recommended, contraindicated): the recall still counts from the last session, but the care team decides "
        "whether it goes ahead before anyone books it. Null otherwise, and for post-MVD reviews and questionnaires.",
    )


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


class ClosedItem(BaseModel):
    """A recall that would be due but for a closure in force."""

    item: DueItem
    closure: int
    closed_on: dt.date
    closed_by: str
    reason: str


def due(
    session: Session,
    *,
    kb: KnowledgeBase,
    today: dt.date,
    horizon_days: int = 0,
    patient_id: int | None = None,
    patient_ids: Collection[int] | None = None,
    recall: str | None = None,
) -> list[DueItem]:
    """Everything due by ``today + horizon_days`` (for the whole clinic, one patient or some), overdue items flagged,
    sorted by date; only one kind of recall (RECALLS) if ``recall`` names one. Recalls the care team closed are left
    out (``closed`` lists them)."""
    items = due_and_closed(
        session, kb=kb, today=today, horizon_days=horizon_days, patient_id=patient_id, patient_ids=patient_ids
    )[0]
    return items if recall is None else [item for item in items if item.recall == recall]


def closed(session: Session, *, kb: KnowledgeBase, today: dt.date, patient_id: int) -> list[ClosedItem]:
    """A patient's recalls that a closure in force holds back, whenever they would fall due."""
    return due_and_closed(session, kb=kb, today=today, patient_id=patient_id)[1]


def due_and_closed(
    session: Session,
    *,
    kb: KnowledgeBase,
    today: dt.date,
    horizon_days: int = 0,
    patient_id: int | None = None,
    patient_ids: Collection[int] | None = None,
) -> tuple[list[DueItem], list[ClosedItem]]:
    """What ``due`` lists and what ``closed`` lists, read once (the patient page shows both). Each recall counts from
    a date (its basis: the last toxin or acupuncture session, the operation, the last HFS-7); a closure made on or
    after that date holds it back, whenever it would fall due (the horizon limits only what is due)."""

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
    held: list[ClosedItem] = []
    closures: dict[tuple[int, str], RecallClosure] = {}
    for closure in session.scalars(
        only(select(RecallClosure), RecallClosure.patient_id).order_by(RecallClosure.closed_on, RecallClosure.id)
    ):
        closures[(closure.patient_id, closure.recall)] = closure  # the latest of each kind

    def add(patient_id: int, recall: str, what: str, when: dt.date, detail: str, basis: dt.date) -> None:
        closure = closures.get((patient_id, recall))
        if when > limit and closure is None:
            return
        item = DueItem(
            patient=codes[patient_id],
            recall=recall,
            what=what,
            due=when,
            overdue=today > when + grace,
            days_late=(today - when).days,
            detail=detail,
        )
        if closure is None or closure.closed_on < basis:
            if when <= limit:
                items.append(item)
        else:
            held.append(
                ClosedItem(
                    item=item,
                    closure=closure.id,
                    closed_on=closure.closed_on,
                    closed_by=closure.created_by,
                    reason=closure.reason,
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
    operated: dict[int, list[dt.date]] = defaultdict(list)
    for patient_id, date in session.execute(
        only(
            select(TreatmentSession.patient_id, TreatmentSession.date).where(TreatmentSession.kind == "mvd"),
            TreatmentSession.patient_id,
        )
    ):
        operated[patient_id].append(date)
    for patient_id, sessions in toxin.items():
        last = max(date for date, _ in sessions)
        if any(date > last for date in operated.get(patient_id, [])):
            continue  # an operation since the last injection: the post-MVD reviews follow the patient now
        effects = [float(w) for _, w in sessions if w is not None]
        usual = sum(effects) / len(effects) if effects else max_weeks
        weeks = min(max(usual, min_weeks), max_weeks)
        add(
            patient_id,
            "toxin",
            "botulinum toxin session",
            last + dt.timedelta(weeks=weeks),
            f"last session {last.isoformat()}; usual interval {weeks:.0f} weeks (never sooner than {min_weeks:g})",
            last,
        )

    protocol = kb.acupuncture
    assert protocol is not None, "the loader guarantees the acupuncture protocol"
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
        course = acupuncture_courses(dates)[-1]
        if len(course) < protocol.course_sessions and today - course[-1] <= COURSE_GAP:
            add(
                patient_id,
                "acupuncture",
                "acupuncture session",
                course[-1] + dt.timedelta(days=7 // protocol.sessions_per_week),
                f"session {len(course) + 1} of {protocol.course_sessions} in the current course",
                course[-1],
            )

    assert kb.recalls is not None, "the loader guarantees the recall schedule"
    last_grade = dict(
        session.execute(
            only(select(ScaleGrade.patient_id, func.max(ScaleGrade.date)), ScaleGrade.patient_id).group_by(
                ScaleGrade.patient_id
            )
        ).all()
    )
    for patient_id, dates in operated.items():
        for date in dates:
            for months in kb.recalls.mvd_review_months:
                point = _months(date, months)
                graded = last_grade.get(patient_id)
                if graded is not None and graded >= point - dt.timedelta(days=14):
                    continue
                add(
                    patient_id,
                    "mvd_review",
                    f"post-MVD review at {months} months",
                    point,
                    f"MVD on {date.isoformat()}",
                    max(dates),
                )
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
            add(patient_id, "hfs7", "HFS-7 questionnaire", today, "never answered", dt.date.min)
        else:
            add(
                patient_id,
                "hfs7",
                "HFS-7 questionnaire",
                answered + interval,
                f"last answered {answered.isoformat()}",
                answered,
            )
    _mark_held_back(session, [*items, *(closed.item for closed in held)], codes=codes)
    items.sort(key=lambda item: (item.due, item.patient, item.what))
    held.sort(key=lambda closed: (closed.item.due, closed.item.what))
    return items, held


def _mark_held_back(session: Session, items: list[DueItem], *, codes: dict[int, str]) -> None:
    """Give each toxin or acupuncture recall the status of the patient's latest plan where that plan holds the
    treatment back. Only those patients' plans are read, a thousand at a time (a query's list of ids stays short)."""
    ids = {code: patient_id for patient_id, code in codes.items()}
    booked = [item for item in items if item.recall in PLAN_ITEMS]
    patients = sorted({ids[item.patient] for item in booked})
    statuses: dict[int, dict[str, str]] = {}
    for start in range(0, len(patients), 1000):
        latest = plan_service.latest_summaries(session, patient_ids=patients[start : start + 1000])
        statuses |= {patient_id: plan.summary["statuses"] for patient_id, plan in latest.items()}
    for item in booked:
        status = statuses.get(ids[item.patient], {}).get(PLAN_ITEMS[item.recall])
        item.plan = status if status in HELD_BACK else None


def close(session: Session, *, patient: Patient, recall: str, reason: str, actor: str, today: dt.date) -> RecallClosure:
    """Close a kind of recall for the patient as of today, with the reason; it is due again once what it counts from
    happens again (RECALLS). ``recall`` is one of RECALLS (the caller checks it)."""
    patient_service.lock(session, patient=patient)
    closure = RecallClosure(patient_id=patient.id, recall=recall, closed_on=today, reason=reason, created_by=actor)
    audit.add_created(
        session, closure, actor=actor, entity="recall_closure", detail={"patient": patient.code, "recall": recall}
    )
    return closure


def closure(session: Session, *, patient: Patient, closure_id: int) -> RecallClosure:
    """One of the patient's closures, locking the patient's record for a change to it."""
    patient_service.lock(session, patient=patient)
    found = session.get(RecallClosure, closure_id)
    if found is None or found.patient_id != patient.id:
        raise NotFoundError(f"patient {patient.code!r} has no recall closure {closure_id}")
    return found


def reopen(session: Session, *, patient: Patient, closure: RecallClosure, actor: str) -> None:
    """Undo a closure (closed by mistake, or the patient changed their mind); the audit trail keeps it."""
    closure_id = closure.id
    said = {
        "recall": closure.recall,
        "closed_on": closure.closed_on.isoformat(),
        "reason": closure.reason,
        "created_by": closure.created_by,
    }
    session.delete(closure)
    audit.record(
        session,
        actor=actor,
        action="delete",
        entity="recall_closure",
        entity_id=closure_id,
        detail={"patient": patient.code, "closure": said},
    )
