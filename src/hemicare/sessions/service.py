"""Record treatment sessions, checked against the knowledge base and the toxin interval."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from hemicare.audit import service as audit
from hemicare.engine import KnowledgeBase
from hemicare.errors import FieldProblem, InputError
from hemicare.patients.models import Patient
from hemicare.sessions.models import TreatmentSession
from hemicare.sessions.schemas import AcupunctureDetails, HerbalDetails, SessionCreate, ToxinDetails


def _check_against_knowledge(data: SessionCreate, kb: KnowledgeBase) -> list[FieldProblem]:
    details = data.details
    problems: list[FieldProblem] = []
    if isinstance(details, ToxinDetails):
        known = {site.id for site in kb.toxin_programme().sites}
        for index, site in enumerate(details.sites):
            if site.site not in known:
                problems.append(
                    FieldProblem(
                        f"details.sites.{index}.site", f"unknown site {site.site!r}; known: {', '.join(sorted(known))}"
                    )
                )
    elif isinstance(details, AcupunctureDetails):
        for index, code in enumerate(details.points):
            if code not in kb.acupoints:
                problems.append(FieldProblem(f"details.points.{index}", f"unknown WHO point code {code!r}"))
    elif isinstance(details, HerbalDetails):
        if details.formula is not None and details.formula not in kb.formulas:
            problems.append(FieldProblem("details.formula", f"unknown formula {details.formula!r}"))
        for index, herb in enumerate(details.herbs):
            if kb.resolve_herb(herb.latin) is None:
                problems.append(FieldProblem(f"details.herbs.{index}.latin", f"unknown herb {herb.latin!r}"))
    return problems


def last_of_kind(session: Session, *, patient: Patient, kind: str) -> TreatmentSession | None:
    """The patient's most recent session of a kind."""
    query = select(TreatmentSession).where(TreatmentSession.patient_id == patient.id, TreatmentSession.kind == kind)
    return session.scalar(query.order_by(TreatmentSession.date.desc(), TreatmentSession.id.desc()).limit(1))


def record(
    session: Session, *, patient: Patient, data: SessionCreate, kb: KnowledgeBase, actor: str
) -> TreatmentSession:
    """Store a session. A toxin session sooner than the minimum interval needs an override reason."""
    problems = _check_against_knowledge(data, kb)
    details = data.details
    if isinstance(details, ToxinDetails):
        weeks = kb.toxin_programme().limits["min_interval_weeks"].value
        last = last_of_kind(session, patient=patient, kind="toxin")
        if last is not None and data.date < last.date + dt.timedelta(weeks=weeks) and not details.override_reason:
            problems.append(
                FieldProblem(
                    "date",
                    f"{data.date.isoformat()} is less than {weeks:g} weeks after the last toxin session "
                    f"({last.date.isoformat()}); give details.override_reason to record it anyway",
                )
            )
    if problems:
        raise InputError(problems)
    payload = details.model_dump(mode="json")
    if isinstance(details, ToxinDetails):
        payload["total_units"] = details.total_units
    row = TreatmentSession(
        patient_id=patient.id,
        kind=details.kind,
        date=data.date,
        clinician=data.clinician,
        data=payload,
        created_by=actor,
    )
    audit.add_created(
        session,
        row,
        actor=actor,
        entity="session",
        reason=getattr(details, "override_reason", None),
        detail={"patient": patient.code, "kind": details.kind},
    )
    return row


def list_for(session: Session, *, patient: Patient, kind: str | None = None) -> list[TreatmentSession]:
    """A patient's sessions, oldest first."""
    query = select(TreatmentSession).where(TreatmentSession.patient_id == patient.id)
    if kind is not None:
        query = query.where(TreatmentSession.kind == kind)
    return list(session.scalars(query.order_by(TreatmentSession.date, TreatmentSession.id)))
