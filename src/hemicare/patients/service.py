"""Patient records: create, find, list and update with optimistic concurrency."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import ColumnElement, func, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from hemicare.audit import service as audit
from hemicare.errors import ConflictError, FieldProblem, InputError, NotFoundError
from hemicare.patients.models import Patient
from hemicare.patients.schemas import PatientCreate, PatientUpdate


def create(session: Session, *, data: PatientCreate, actor: str) -> Patient:
    """Add a patient; the code must be new."""
    if session.scalar(select(Patient.id).where(Patient.code == data.code)) is not None:
        raise InputError([FieldProblem("code", f"a patient with code {data.code!r} already exists")])
    patient = Patient(**data.model_dump(), created_by=actor)
    session.add(patient)
    try:
        session.flush()
    except IntegrityError as exc:
        raise ConflictError(f"patient {data.code!r} was created by someone else at the same time") from exc
    audit.record(session, actor=actor, action="create", entity="patient", entity_id=patient.code)
    return patient


def get(session: Session, *, code: str) -> Patient:
    """The patient with this code."""
    patient = session.scalar(select(Patient).where(Patient.code == code))
    if patient is None:
        raise NotFoundError(f"no patient with code {code!r}")
    return patient


def lock(session: Session, *, patient: Patient) -> None:
    """Hold the patient's record until the transaction ends, for a write that checks the record before it changes it
    (the toxin interval, an outcome already recorded, an entry still there): a second such write waits here and then
    sees the first. On PostgreSQL this locks the patient's row, and what the transaction had read is read again;
    SQLite's BEGIN IMMEDIATE already lets one writer in at a time."""
    session.execute(select(Patient.id).where(Patient.id == patient.id).with_for_update())
    session.expire_all()  # changes made so far were flushed by the query above; nothing is lost


def before_birth(patient: Patient, date: dt.date) -> list[FieldProblem]:
    """A record dated before the patient's year of birth, most often 1926 typed for 2026: refused, for it would stretch
    every chart of theirs over a century (nothing is checked while the year of birth is unknown)."""
    if patient.birth_year is None or date.year >= patient.birth_year:
        return []
    return [FieldProblem("date", f"{date.isoformat()} is before the patient was born ({patient.birth_year})")]


def list_all(session: Session, *, limit: int | None = None) -> list[Patient]:
    """Patients by code."""
    query = select(Patient).order_by(Patient.code)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def _matching(text: str | None) -> ColumnElement[bool]:
    """Patients whose code or name contains ``text`` (any case; wildcards taken as they are), or all if none."""
    if not text:
        return true()
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return or_(Patient.code.ilike(pattern, escape="\\"), Patient.name.ilike(pattern, escape="\\"))


class Listed(NamedTuple):
    """A patient as lists show them: the code, and the name with the birth year and sex that tell apart two patients
    of the same name."""

    id: int
    code: str
    name: str
    birth_year: int | None
    sex: str
    phone: str | None  # for the clinic's call list of who is due

    def who(self) -> str:
        """The birth year and sex in words ("born 1974, female")."""
        return who(birth_year=self.birth_year, sex=self.sex)


def who(*, birth_year: int | None, sex: str) -> str:
    """A patient's birth year and sex in words, as lists give them beside the name: "born 1974, female", or just
    "female" when the year is not recorded."""
    return ", ".join(([f"born {birth_year}"] if birth_year else []) + [sex])


def find(session: Session, *, text: str | None = None, offset: int = 0, limit: int | None = None) -> list[Listed]:
    """The patients whose code or name contains ``text`` (all if none), by code; ``limit`` of them from ``offset`` if
    given."""
    query = (
        select(Patient.id, Patient.code, Patient.name, Patient.birth_year, Patient.sex, Patient.phone)
        .where(_matching(text))
        .order_by(Patient.code)
    )
    if limit is not None:
        query = query.offset(offset).limit(limit)
    return [Listed(*row) for row in session.execute(query)]


def count(session: Session, *, text: str | None = None) -> int:
    """How many patients ``find`` would list."""
    return int(session.scalar(select(func.count(Patient.id)).where(_matching(text))) or 0)


def search(
    session: Session, *, text: str | None = None, offset: int = 0, limit: int = 100
) -> tuple[int, list[Patient]]:
    """How many patients match ``text`` (as in ``find``), and their records by code: ``limit`` from ``offset``."""
    query = select(Patient).where(_matching(text)).order_by(Patient.code).offset(offset).limit(limit)
    return count(session, text=text), list(session.scalars(query))


def update(
    session: Session, *, code: str, expected_version: int, changes: PatientUpdate, actor: str, reason: str
) -> Patient:
    """Change a patient's details, refusing the edit if the record changed since ``expected_version`` was read."""
    patient = get(session, code=code)
    if patient.version != expected_version:
        raise ConflictError(
            f"patient {code!r} is at version {patient.version}, not {expected_version}: someone else changed it; "
            "reload and try again"
        )
    fields = changes.model_dump(exclude_unset=True)
    for name, value in fields.items():
        setattr(patient, name, value)
    try:
        session.flush()
    except StaleDataError as exc:
        raise ConflictError(f"patient {code!r} was changed by someone else; reload and try again") from exc
    audit.record(session, actor=actor, action="update", entity="patient", entity_id=code, reason=reason, detail=fields)
    return patient
