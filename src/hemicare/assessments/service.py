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


def newest(session: Session, *, patient: Patient, on: dt.date | None = None) -> StoredAssessment | None:
    """The patient's most recent assessment, or the most recent recorded on or before ``on``; None if there is none."""
    query = select(StoredAssessment).where(StoredAssessment.patient_id == patient.id)
    if on is not None:
        query = query.where(StoredAssessment.assessed_on <= on)
    return session.scalar(query.order_by(StoredAssessment.id.desc()).limit(1))


def latest(session: Session, *, patient: Patient) -> StoredAssessment:
    """The patient's most recent assessment."""
    found = newest(session, patient=patient)
    if found is None:
        raise NotFoundError(f"patient {patient.code!r} has no assessment yet")
    return found


def _read(stored: StoredAssessment | None) -> tuple[StoredAssessment | None, Assessment | None]:
    if stored is None:
        return None, None
    try:
        return stored, validate_assessment(stored.data)
    except InputError:
        return stored, None


def latest_read(session: Session, *, patient: Patient) -> tuple[StoredAssessment | None, Assessment | None]:
    """The latest assessment as stored, and as the model reads it: (None, None) before the first one; the model is
    None for one stored before a change of the assessment's form (what was stored can still be shown)."""
    return _read(newest(session, patient=patient))


def in_force_read(
    session: Session, *, patient: Patient, on: dt.date
) -> tuple[StoredAssessment | None, Assessment | None]:
    """The assessment in force on a day (the newest recorded on or before it), read as `latest_read` reads."""
    return _read(newest(session, patient=patient, on=on))
