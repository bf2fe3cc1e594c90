"""The audit trail: append-only, each entry carrying the hash of the one before."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from hemicare.db.base import Base
from hemicare.limits import ACTOR_MAX, REASON_MAX


class AuditEntry(Base):
    """Who did what to which record, when and why."""

    __tablename__ = "audit_log"
    # What was done to which kind of record, and when: the sessions removed since a plan are found among the few
    # removals (sessions.service.recorded_since, on every patient page), not by reading every entry (migration 0016).
    __table_args__ = (Index("ix_audit_log_entity_action_at", "entity", "action", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(ACTOR_MAX))
    action: Mapped[str] = mapped_column(String(16))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(REASON_MAX))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
