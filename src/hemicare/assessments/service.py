"""Store validated assessments."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from hemicare.assessments.models import StoredAssessment
from hemicare.audit import service as audit
from hemicare.engine.assessment import SCHEMA_VERSION, Assessment
from hemicare.errors import NotFoundError
from hemicare.patients.models import Patient


def record(
    session: Session, *, patient: Patient, assessment: Assessment, actor: str, today: dt.date
) -> StoredAssessment:
    """Store an assessment (already validated) with the schema version it was validated against."""
    stored = StoredAssessment(
        patient_id=patient.id,
        assessed_on=today,
        schema_version=SCHEMA_VERSION,
        data=assessment.model_dump(mode="json"),
        created_by=actor,
    )
    audit.add_created(session, stored, actor=actor, entity="assessment", detail={"patient": patient.code})
    return stored


def latest(session: Session, *, patient: Patient) -> StoredAssessment:
    """The patient's most recent assessment."""
    query = select(StoredAssessment).where(StoredAssessment.patient_id == patient.id)
    found = session.scalar(query.order_by(StoredAssessment.id.desc()).limit(1))
    if found is None:
        raise NotFoundError(f"patient {patient.code!r} has no assessment yet")
    return found
