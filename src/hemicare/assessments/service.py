"""Store validated assessments."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from hemicare.assessments.models import StoredAssessment
from hemicare.audit import service as audit
from hemicare.engine.assessment import SCHEMA_VERSION, Assessment
from hemicare.engine.intake import validate_assessment
from hemicare.errors import InputError, NotFoundError
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


def latest_read(session: Session, *, patient: Patient) -> tuple[StoredAssessment | None, Assessment | None]:
    """The latest assessment as stored, and as the model reads it: (None, None) before the first one; the model is
    None for one stored before a change of the assessment's form (what was stored can still be shown)."""
    try:
        stored = latest(session, patient=patient)
    except NotFoundError:
        return None, None
    try:
        return stored, validate_assessment(stored.data)
    except InputError:
        return stored, None
