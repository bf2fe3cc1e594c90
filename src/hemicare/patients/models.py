"""Patients: who is in the clinic's care."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from hemicare.db.base import Base, Created, utcnow


class Patient(Created, Base):
    """A patient. ``version`` guards against lost updates: a stale edit is refused."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True, doc="The clinic's identifier, as in assessments")
    name: Mapped[str] = mapped_column(String(200))
    birth_year: Mapped[int | None]
    sex: Mapped[str] = mapped_column(String(16))
    phone: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012
