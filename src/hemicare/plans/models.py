"""Plans: every generated or reviewed plan is a new, immutable version."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hemicare.db.base import Base, Created
from hemicare.limits import ACTOR_MAX


class PlanVersion(Created, Base):
    """One version of a patient's plan. Review and sign-off create the next version; nothing is updated."""

    __tablename__ = "plan_versions"
    __table_args__ = (
        UniqueConstraint("patient_id", "number"),
        # the sign-off list reads the few versions whose signer changed a status, never every plan's content
        Index("ix_plan_versions_changes_signed_at", "changes", "signed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    number: Mapped[int]
    assessment_id: Mapped[int] = mapped_column(ForeignKey("assessments.id"))
    kind: Mapped[str] = mapped_column(String(16), doc="generated or reviewed")
    knowledge_version: Mapped[str] = mapped_column(String(32))
    hemicare_version: Mapped[str] = mapped_column(String(32))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[dict[str, Any]] = mapped_column(
        JSON, doc="Statuses by recommendation and alert ids: what a recheck compares"
    )
    edits: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    changes: Mapped[int] = mapped_column(
        default=0, server_default="0", doc="How many statuses the signer changed: len(edits), kept where it is indexed"
    )
    signed_by: Mapped[str | None] = mapped_column(String(ACTOR_MAX))
    signed_role: Mapped[str | None] = mapped_column(String(32))
    signed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
