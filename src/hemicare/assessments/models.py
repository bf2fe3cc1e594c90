"""Assessments: each validated assessment, stored whole with the schema version it was validated against."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from hemicare.db.base import Base, Created


class StoredAssessment(Created, Base):
    """One assessment of one patient; never changed after it is written."""

    __tablename__ = "assessments"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    assessed_on: Mapped[dt.date]
    schema_version: Mapped[int]
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
