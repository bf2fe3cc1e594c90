"""Users, password checks, sign-in throttling, web sessions and API tokens."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from hemicare.audit import service as audit
from hemicare.db.base import aware, utcnow
from hemicare.errors import FieldProblem, ForbiddenError, InputError, NotFoundError
from hemicare.limits import TOKEN_NAME_MAX
from hemicare.patients import service as patient_service
from hemicare.users.models import ApiToken, SignInFailure, User, WebSession
from hemicare.users.schemas import USERNAME_MAX, USERNAME_PATTERN, AccountChange, PasswordChange, UserCreate

HASHER = PasswordHasher()
SESSION_HOURS = 12  # a web session ends this long after sign-in,
IDLE_MINUTES = 30  # or this long after its last request: a screen left signed in does not stay open to anyone
SEEN_EVERY = dt.timedelta(minutes=1)  # a session's last use is written at most this often (a write per request
# would make every page view queue for the database's write lock)
MAX_FAILURES = 5
FAILURE_WINDOW = dt.timedelta(minutes=15)


class ThrottledError(Exception):
    """Too many failed sign-ins for this username recently."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Temporary passwords avoid look-alike characters (0/o, 1/l/i), since they are read out or copied by hand.
_TEMPORARY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def temporary_password() -> str:
    """A random password an admin hands over once, in four groups of four (about 79 bits)."""
    groups = ("".join(secrets.choice(_TEMPORARY_ALPHABET) for _ in range(4)) for _ in range(4))
    return "-".join(groups)


def create(session: Session, *, data: UserCreate, actor: str, temporary: bool = False) -> User:
    """Add a user; a patient user must point at an existing patient. A ``temporary`` password (one an admin hands
    over) must be replaced by the user's own before they can do anything else."""
    if session.scalar(select(User.id).where(User.username == data.username)) is not None:
        raise InputError([FieldProblem("username", f"{data.username!r} is taken")])
    if data.patient_code is not None:
        try:
            patient_service.get(session, code=data.patient_code)
        except NotFoundError as exc:
            raise InputError([FieldProblem("patient_code", str(exc))]) from exc
    user = User(
        username=data.username,
        full_name=data.full_name,
        role=data.role,
        patient_code=data.patient_code,
        password_hash=HASHER.hash(data.password),
        must_change_password=temporary,
        created_by=actor,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="user",
        entity_id=data.username,
        detail={"role": data.role, "temporary": temporary},
    )
    return user


def get(session: Session, *, username: str) -> User:
    """The user with this username."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFoundError(f"no user {username!r}")
    return user


class Account(NamedTuple):
    username: str
    full_name: str
    role: str
    patient_code: str | None
    active: bool
    tokens: int  # API tokens not revoked
    must_change_password: bool


def accounts(session: Session) -> list[Account]:
    """Every user by username, with whether they may sign in and how many live API tokens they hold."""
    live = (
        select(ApiToken.user_id, func.count(ApiToken.id).label("tokens"))
        .where(ApiToken.revoked.is_(False))
        .group_by(ApiToken.user_id)
        .subquery()
    )
    rows = session.execute(
        select(
            User.username,
            User.full_name,
            User.role,
            User.patient_code,
            User.active,
            live.c.tokens,
            User.must_change_password,
        )
        .outerjoin(live, live.c.user_id == User.id)
        .order_by(User.username)
    )
    return [
        Account(username, full_name, role, patient_code, active, int(tokens or 0), temporary)
        for username, full_name, role, patient_code, active, tokens, temporary in rows
    ]


def _end_sessions(session: Session, user: User) -> int:
    """End every web session of a user; returns how many there were."""
    live = int(session.scalar(select(func.count(WebSession.id)).where(WebSession.user_id == user.id)) or 0)
    session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    return live


def sign_out_everywhere(session: Session, *, username: str) -> int:
    """End every web session of a user (a browser left signed in elsewhere), recorded in the audit trail; returns how
    many there were."""
    user = get(session, username=username)
    ended = _end_sessions(session, user)
    audit.record(session, actor=username, action="sign_out", entity="user", entity_id=username, detail={"ended": ended})
    return ended


def revoke_tokens(session: Session, *, username: str, actor: str) -> int:
    """Revoke every API token of a user; returns how many were live."""
    user = get(session, username=username)
    tokens = list(session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked.is_(False))))
    for token in tokens:
        token.revoked = True
    audit.record(
        session, actor=actor, action="revoke", entity="api_token", entity_id=username, detail={"tokens": len(tokens)}
    )
    return len(tokens)


def set_active(session: Session, *, username: str, active: bool, change: AccountChange, actor: str) -> User:
    """Disable an account (its web sessions end and its API tokens are revoked, so enabling it again needs new
    tokens) or enable it again. Nobody disables their own account: someone else must, so that a clinic is never
    left without a way in by one slip."""
    user = get(session, username=username)
    if not active and username == actor:
        raise ForbiddenError("you cannot disable your own account; ask another admin")
    if user.active == active:
        raise InputError([FieldProblem("username", f"{username!r} is already {'enabled' if active else 'disabled'}")])
    user.active = active
    detail: dict[str, object] = {}
    if not active:
        detail["sessions_ended"] = _end_sessions(session, user)
        detail["tokens_revoked"] = revoke_tokens(session, username=username, actor=actor)
    audit.record(
        session,
        actor=actor,
        action="enable" if active else "disable",
        entity="user",
        entity_id=username,
        reason=change.reason,
        detail=detail,
    )
    return user


def set_password(
    session: Session, *, username: str, change: PasswordChange, actor: str, temporary: bool = False
) -> User:
    """A new password for a user; their web sessions end (API tokens stay: revoke them separately). A ``temporary``
    one (set by an admin for someone else) must be replaced by the user's own at their next sign-in."""
    user = get(session, username=username)
    user.password_hash = HASHER.hash(change.password)
    user.must_change_password = temporary
    ended = _end_sessions(session, user)
    session.execute(delete(SignInFailure).where(SignInFailure.username == username))
    audit.record(
        session,
        actor=actor,
        action="password",
        entity="user",
        entity_id=username,
        detail={"sessions_ended": ended, "temporary": temporary},
    )
    return user


def reset_password(session: Session, *, username: str, actor: str) -> str:
    """Give someone else's account a new temporary password and return it (for the admin to hand over once)."""
    if username == actor:
        raise ForbiddenError("change your own password on your account page")
    password = temporary_password()
    set_password(session, username=username, change=PasswordChange(password=password), actor=actor, temporary=True)
    return password


def count(session: Session) -> int:
    """How many users exist."""
    return int(session.scalar(select(func.count(User.id))) or 0)


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    """The user if the password is right; None otherwise. Raises ThrottledError after repeated failures."""
    if len(username) > USERNAME_MAX or not re.fullmatch(USERNAME_PATTERN, username):
        # No account has such a name (a NUL, 5,000 characters): nothing to look up, nor a failure to count against it.
        return None
    since = utcnow() - FAILURE_WINDOW
    failures = session.scalar(
        select(func.count(SignInFailure.id)).where(SignInFailure.username == username, SignInFailure.at >= since)
    )
    if (failures or 0) >= MAX_FAILURES:
        raise ThrottledError(username)
    user = session.scalar(select(User).where(User.username == username, User.active.is_(True)))
    try:
        if user is not None and HASHER.verify(user.password_hash, password):
            session.execute(delete(SignInFailure).where(SignInFailure.username == username))
            return user
    except (VerificationError, InvalidHashError):
        pass
    session.add(SignInFailure(username=username, at=utcnow()))
    return None


def start_session(session: Session, *, user: User) -> tuple[str, str]:
    """A new web session: returns the cookie token and the CSRF token (only hashes are stored)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_hash=_digest(token),
            user_id=user.id,
            csrf_token=csrf,
            expires_at=utcnow() + dt.timedelta(hours=SESSION_HOURS),
            last_seen_at=utcnow(),
        )
    )
    audit.record(session, actor=user.username, action="sign_in", entity="user", entity_id=user.username)
    return token, csrf


class LiveSession(NamedTuple):
    user: User
    csrf: str
    stale: bool  # its last use was written more than SEEN_EVERY ago: write this one (``seen``)


def from_session(session: Session, *, token: str) -> LiveSession | None:
    """The user of a live web session: one signed in less than SESSION_HOURS ago and used in the last IDLE_MINUTES."""
    row = session.scalar(select(WebSession).where(WebSession.token_hash == _digest(token)))
    if row is None:
        return None
    now = utcnow()
    if aware(row.expires_at) < now:
        return None
    last = aware(row.last_seen_at) if row.last_seen_at is not None else None
    if last is not None and last + dt.timedelta(minutes=IDLE_MINUTES) < now:
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return LiveSession(user, row.csrf_token, last is None or last + SEEN_EVERY < now)


def seen(session: Session, *, token: str) -> None:
    """Write that a web session was used just now."""
    session.execute(update(WebSession).where(WebSession.token_hash == _digest(token)).values(last_seen_at=utcnow()))


def end_session(session: Session, *, token: str) -> None:
    """Sign out: the session token stops working."""
    session.execute(delete(WebSession).where(WebSession.token_hash == _digest(token)))


def issue_token(session: Session, *, username: str, name: str, actor: str) -> str:
    """A new API token for a user; the token itself is shown once and never stored."""
    if not 1 <= len(name.strip()) <= TOKEN_NAME_MAX:
        raise InputError([FieldProblem("name", f"say what the token is for in 1 to {TOKEN_NAME_MAX} characters")])
    user = get(session, username=username)
    token = "hc_" + secrets.token_urlsafe(32)
    session.add(ApiToken(token_hash=_digest(token), user_id=user.id, name=name, created_by=actor))
    audit.record(session, actor=actor, action="create", entity="api_token", entity_id=username, detail={"name": name})
    return token


def from_token(session: Session, *, token: str) -> User | None:
    """The user an API token acts for."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token), ApiToken.revoked.is_(False)))
    if row is None:
        return None
    user = session.get(User, row.user_id)
    return user if user is not None and user.active else None
