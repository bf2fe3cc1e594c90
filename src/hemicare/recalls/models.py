"""A recall the care team has closed: the patient stopped that treatment, chose another, or is followed elsewhere."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from hemicare.db.base import NEVER_REUSED, Base, Created
from hemicare.limits import REASON_MAX


class RecallClosure(Created, Base):
    """Closes one kind of recall for a patient as of ``closed_on``: it stays closed until what the recall counts from
    happens again after that day (a toxin session, an acupuncture session, an operation, an HFS-7 answered)."""

    __tablename__ = "recall_closures"
    __table_args__ = (
        Index("ix_recall_closures_patient", "patient_id"),
        CheckConstraint("recall IN ('toxin', 'acupuncture', 'mvd_review', 'hfs7')", name="recall_kind"),
        NEVER_REUSED,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    recall: Mapped[str] = mapped_column(String(16))
    closed_on: Mapped[dt.date]
    reason: Mapped[str] = mapped_column(String(REASON_MAX))
