"""Engines and migrations.

SQLite runs in WAL mode with foreign keys on, full fsync and ``BEGIN IMMEDIATE`` transactions, so a write either
commits whole or not at all, and two writers queue instead of failing half-way. Alembic migrations are the only way
the schema is made.
"""

from __future__ import annotations

import os
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_URL = "sqlite:///hemicare.db"
URL_VARIABLE = "HEMICARE_DATABASE_URL"
BACKENDS = ("sqlite", "postgresql")


class DatabaseUrlError(ValueError):
    """A database URL HemiCare cannot use. The message never repeats the URL: it may hold a password."""


def database_url(explicit: str | None = None) -> str:
    """The database to use: an explicit URL, else $HEMICARE_DATABASE_URL, else ``hemicare.db`` here."""
    return explicit or os.environ.get(URL_VARIABLE) or DEFAULT_URL


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see the "begin" hook).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=FULL", "busy_timeout=10000"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the write lock up front (IMMEDIATE) so they never fail half-way; read-only work can ask
        # for DEFERRED (see read_only) so that it does not queue behind writers.
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An engine for the URL, configured for safe concurrent writes on SQLite."""
    resolved = database_url(url)
    try:
        backend = make_url(resolved).get_backend_name()
    except ArgumentError as exc:
        raise DatabaseUrlError(
            "not a database URL: write a SQLite file as sqlite:///path/to/hemicare.db "
            "and a PostgreSQL database as postgresql://user@host:5432/name"
        ) from exc
    if backend not in BACKENDS:
        raise DatabaseUrlError(f"HemiCare keeps its records in SQLite or PostgreSQL, not {backend}")
    if resolved.startswith("postgresql://"):
        resolved = "postgresql+psycopg://" + resolved.removeprefix("postgresql://")
    # A database error's message leaves out the values it was writing (names, notes): it may reach a log.
    engine = create_engine(resolved, hide_parameters=True, **kwargs)
    if engine.dialect.name == "sqlite":
        _sqlite_setup(engine)
    return engine


def read_only(engine: Engine) -> Engine:
    """The same engine for read-only work: on SQLite its transactions do not take the write lock."""
    return engine.execution_options(sqlite_begin="DEFERRED")


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (the CLI prints them afterwards)."""
    return sessionmaker(engine, expire_on_commit=False)


def _config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(str(resources.files("hemicare.db") / "migrations"))))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision``."""
    command.upgrade(_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Migrate the database down to ``revision`` (``base`` removes every table)."""
    command.downgrade(_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def revisions() -> set[str]:
    """Every revision the migrations of this version of HemiCare know."""
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}


def head_revision() -> str:
    """The revision the migrations of this version of HemiCare end at."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def backup_sqlite(engine: Engine, target: Path) -> None:
    """Copy a SQLite database to ``target``, consistent while other processes write to it (SQLite's online backup:
    committed transactions only, including those still in the write-ahead log, which a copy of the file misses).
    The copy is one self-contained file; it is written beside ``target`` and renamed, so a backup that fails leaves
    nothing that looks like one."""
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    with engine.connect() as connection:
        source = connection.connection.driver_connection
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)  # type: ignore[union-attr]
            copy.execute("PRAGMA journal_mode=DELETE")  # no -wal file beside the copy
        finally:
            copy.close()
    os.replace(partial, target)
