"""Treatment sessions: toxin injections, acupuncture, herbal and medicine prescriptions, procedures on the facial
nerve (nerve block, radiofrequency ablation), and surgery."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, DateTime, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from hemicare.db.base import NEVER_REUSED, Base, Created


class TreatmentSession(Created, Base):
    """One treatment given. ``data`` holds the kind's validated details (see sessions.schemas)."""

    __tablename__ = "treatment_sessions"
    __table_args__ = (
        Index("ix_treatment_sessions_patient_kind_date", "patient_id", "kind", "date"),
        CheckConstraint(
            "kind IN ('toxin', 'acupuncture', 'herbal', 'mvd', 'medicine', 'procedure')", name="kind_known"
        ),
        NEVER_REUSED,  # a session entered by mistake is removed (migration 0015)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"))
    kind: Mapped[str] = mapped_column(String(16))
    date: Mapped[dt.date]
    clinician: Mapped[str] = mapped_column(String(120))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    # When an outcome was last added or changed (the audit trail keeps what and why): a plan made before it does not
    # know it (sessions.service.recorded_since).
    amended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
