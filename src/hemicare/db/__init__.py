"""Database access: engines, sessions and migrations. SQLite by default; PostgreSQL by URL."""

from __future__ import annotations

from hemicare.db.base import Base
from hemicare.db.engine import DEFAULT_URL, database_url, downgrade, make_engine, session_factory, upgrade

__all__ = ["DEFAULT_URL", "Base", "database_url", "downgrade", "make_engine", "session_factory", "upgrade"]
