"""Users and their credentials: password hashes, web sessions, API tokens, failed sign-ins, forms and requests sent."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, CheckConstraint, DateTime, ForeignKey, String, false
from sqlalchemy.orm import Mapped, mapped_column

from hemicare.db.base import Base, Created
from hemicare.limits import TOKEN_NAME_MAX

ROLE_CHECK = "role IN ('admin', 'neurologist', 'neurosurgeon', 'tcm_practitioner', 'patient')"


class User(Created, Base):
    """Someone who signs in. A patient user is linked to exactly one patient record."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(ROLE_CHECK, name="role_known"),
        CheckConstraint("role <> 'patient' OR patient_code IS NOT NULL", name="patient_linked"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    patient_code: Mapped[str | None] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(default=True)
    # Set when an admin gave the account a temporary password: it must choose its own before anything else.
    must_change_password: Mapped[bool] = mapped_column(default=False, server_default=false())


class WebSession(Base):
    """A signed-in browser. Only the token's hash is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), doc="noted once a minute")


class SentForm(Base):
    """A form sent from a page, or an API request sent with an idempotency key, and carried out, kept for a day
    (`hemicare.web.once`): the same form or request sent again (a second click while the first was on its way, a
    client retrying after a lost answer) is answered as the first was instead of being carried out twice.

    For a form only a fingerprint of who sent what from which page is stored, not the form. For an API request the
    fingerprint is of who sent which key; a hash of what was asked tells a retry from another request under the same
    key, and the answer is kept to be given again."""

    __tablename__ = "sent_forms"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    request: Mapped[str | None] = mapped_column(String(64), doc="an API request's hash: method, address, body")
    status: Mapped[int | None] = mapped_column(doc="the API answer's HTTP status")
    answer: Mapped[Any] = mapped_column(JSON, nullable=True, doc="the API answer's JSON body")


class ApiToken(Created, Base):
    """A token for a machine client, acting as its user. Only the hash is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(TOKEN_NAME_MAX))
    revoked: Mapped[bool] = mapped_column(default=False)


class SignInFailure(Base):
    """A failed sign-in, for throttling."""

    __tablename__ = "sign_in_failures"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
