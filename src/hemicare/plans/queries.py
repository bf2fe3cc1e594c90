"""Plan versions as other services read them. The sessions service checks a session against the latest plan, and
the plans service imports the sessions service, so the query both need lives here, importing neither."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hemicare.patients.models import Patient
from hemicare.plans.models import PlanVersion


def latest(session: Session, *, patient: Patient, kind: str | None = None) -> PlanVersion | None:
    """The patient's newest plan version, if any (of ``kind``, "generated" or "reviewed", if given)."""
    query = select(PlanVersion).where(PlanVersion.patient_id == patient.id)
    if kind is not None:
        query = query.where(PlanVersion.kind == kind)
    return session.scalar(query.order_by(PlanVersion.number.desc()).limit(1))
