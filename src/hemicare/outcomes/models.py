"""Outcomes: the patient's diary, questionnaires and scale grades at visits."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from hemicare.db.base import NEVER_REUSED, Base, Created


class DiaryEntry(Created, Base):
    """A day's spasms as the patient records them."""

    __tablename__ = "diary_entries"
    __table_args__ = (
        Index("ix_diary_entries_patient_date", "patient_id", "date"),
        CheckConstraint("intensity BETWEEN 0 AND 10", name="intensity_range"),
        CheckConstraint("spasms >= 0", name="spasms_not_negative"),
        CheckConstraint("per IN ('hour', 'day')", name="per_unit"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    date: Mapped[dt.date]
    spasms: Mapped[int]
    per: Mapped[str] = mapped_column(String(8), doc="hour or day")
    intensity: Mapped[int]
    triggers: Mapped[list[str]] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(String(500))


class QuestionnaireAnswer(Created, Base):
    """HFS-7 or HFS-30 answers with their total."""

    __tablename__ = "questionnaires"
    __table_args__ = (Index("ix_questionnaires_patient_date", "patient_id", "date"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    date: Mapped[dt.date]
    instrument: Mapped[str] = mapped_column(String(8))
    answers: Mapped[Any] = mapped_column(JSON)
    total: Mapped[int]


class ScaleGrade(Created, Base):
    """Severity grades recorded at a visit."""

    __tablename__ = "scale_grades"
    __table_args__ = (Index("ix_scale_grades_patient_date", "patient_id", "date"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    date: Mapped[dt.date]
    smc_grade: Mapped[int | None]
    jankovic_severity: Mapped[int | None]
    jankovic_frequency: Mapped[int | None]
    cohen_albert: Mapped[int | None]


class StatedPreferences(Created, Base):
    """What the patient says matters to them in choosing a treatment: statements of the assessment's preferences
    (``engine.assessment.Preferences``), each answered yes, no or not sure. Kept, never edited: a change of mind is
    stated again, and the latest is what the care team sees."""

    __tablename__ = "stated_preferences"
    __table_args__ = (Index("ix_stated_preferences_patient_date", "patient_id", "date"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    date: Mapped[dt.date]
    answers: Mapped[Any] = mapped_column(JSON)
