"""Plan versions as other services read them. The sessions service checks a session against the plan in force on
its day, and the plans service imports the sessions service, so the queries both need live here, importing neither."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from hemicare.db.base import local_day
from hemicare.patients.models import Patient
from hemicare.plans.models import PlanVersion


def latest(session: Session, *, patient: Patient, kind: str | None = None) -> PlanVersion | None:
    """The patient's newest plan version, if any (of ``kind``, "generated" or "reviewed", if given)."""
    query = select(PlanVersion).where(PlanVersion.patient_id == patient.id)
    if kind is not None:
        query = query.where(PlanVersion.kind == kind)
    return session.scalar(query.order_by(PlanVersion.number.desc()).limit(1))


def in_force(session: Session, *, patient: Patient, on: dt.date) -> PlanVersion | None:
    """The patient's plan version in force on a day: the newest made on or before it, by the clinic's calendar day
    (the day a session is dated in), not the UTC day of its stored time. None before the first plan."""
    made = session.execute(
        select(PlanVersion.id, PlanVersion.created_at)
        .where(PlanVersion.patient_id == patient.id)
        .order_by(PlanVersion.number.desc())
    ).all()
    chosen = next((version_id for version_id, at in made if local_day(at) <= on), None)
    return None if chosen is None else session.get(PlanVersion, chosen)
