"""The declarative base every domain's models share, with stable constraint names for migrations."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hemicare.limits import ACTOR_MAX

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    """Now, timezone-aware in UTC: every stored timestamp is UTC."""
    return dt.datetime.now(dt.UTC)


def aware(moment: dt.datetime) -> dt.datetime:
    """A stored timestamp with its zone: SQLite gives it back naive, in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def local_day(moment: dt.datetime | str) -> dt.date:
    """The server's calendar day of a stored timestamp (or its ISO text, as a plan's sign-off keeps it): the day a
    clinic means, as ``dt.date.today()`` and the dates of its sessions do (a plan made at 21:00 in New York is stored
    on the next day in UTC)."""
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    return aware(moment).astimezone().date()


class Base(DeclarativeBase):
    """Base of all HemiCare tables."""

    metadata = MetaData(naming_convention=NAMING)


# Table options for records that can be removed: SQLite numbers their rows with AUTOINCREMENT, so that a removed
# record's id is never given to a new one and the audit trail's "grades 7" stays one record (migrations 0006, 0015).
NEVER_REUSED = {"sqlite_autoincrement": True}


class Created:
    """A creation timestamp and author on every record."""

    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(ACTOR_MAX))
