"""Who is asking, and what they may do.

Browsers sign in with a session cookie (HttpOnly, Secure, SameSite=Strict) and must echo the session's CSRF token on
every state-changing request; machine clients send ``Authorization: Bearer <token>`` and carry no ambient
credentials, so they need no CSRF token.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from hemicare.recalls.service import RECALLS
from hemicare.users import service as user_service
from hemicare.users.schemas import CARE_TEAM

COOKIE = "hemicare_session"
CONVENTIONAL_SIGNERS = ("neurologist", "neurosurgeon")
INTEGRATIVE_SIGNERS = ("tcm_practitioner",)
# Who closes (and reopens) each kind of recall: those who give that treatment; the HFS-7 is the whole care team's.
RECALL_CLOSERS = {
    "toxin": CONVENTIONAL_SIGNERS,
    "mvd_review": CONVENTIONAL_SIGNERS,
    "acupuncture": INTEGRATIVE_SIGNERS,
    "hfs7": CARE_TEAM,
}
# Who records (and adds the outcome of) each kind of treatment session.
SESSION_ROLES = {
    "toxin": CONVENTIONAL_SIGNERS,
    "mvd": ("neurosurgeon",),
    "acupuncture": INTEGRATIVE_SIGNERS,
    "herbal": INTEGRATIVE_SIGNERS,
    "medicine": CONVENTIONAL_SIGNERS,
    "procedure": CONVENTIONAL_SIGNERS,
}


@dataclass(frozen=True)
class Principal:
    """The signed-in user, detached from any database session."""

    username: str
    full_name: str
    role: str
    patient_code: str | None
    csrf_token: str | None
    via: str
    must_change_password: bool = False  # a temporary password an admin gave: the user must choose their own first

    @property
    def in_care_team(self) -> bool:
        return self.role in CARE_TEAM


class SignInRequired(Exception):
    """A page needs a signed-in user; the browser is sent to the sign-in page."""


class PasswordChangeRequired(Exception):
    """The user signed in with a temporary password; the browser is sent to the account page to choose their own."""


# What a user with a temporary password may reach: the page to change it, and signing out.
_WHILE_TEMPORARY = ("/account", "/account/password", "/logout")


TOKEN_CACHE_SECONDS = 30.0
_TOKENS: dict[str, tuple[float, Principal]] = {}


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def _remembered(token: str) -> Principal | None:
    """A bearer token's user, when it was looked up less than TOKEN_CACHE_SECONDS ago in this process."""
    cached = _TOKENS.get(token)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    return None


def _principal(request: Request) -> Principal | None:
    factory = request.app.state.readers
    token = _bearer(request)
    if token is not None:
        # Machine clients call often; a token's user is remembered briefly (cookie sessions are never cached,
        # so signing out takes effect at once).
        remembered = _remembered(token)
        if remembered is not None:
            return remembered
        with factory.begin() as session:
            user = user_service.from_token(session, token=token)
            if user is None:
                return None
            principal = Principal(user.username, user.full_name, user.role, user.patient_code, None, "token")
        _TOKENS[token] = (time.monotonic() + TOKEN_CACHE_SECONDS, principal)
        return principal
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:  # looked up once a request: the error page and the audit of a refusal ask again
        return known
    with factory.begin() as session:
        found = user_service.from_session(session, token=cookie)
        if found is None:
            return None
        user = found.user
        principal = Principal(
            user.username, user.full_name, user.role, user.patient_code, found.csrf, "cookie", user.must_change_password
        )
    if found.stale:  # a short write of its own, once a minute at most, after the read
        with request.app.state.sessions.begin() as session:
            user_service.seen(session, token=cookie)
    request.state.principal = principal
    return principal


async def api_user(request: Request) -> Principal:
    """The API caller; 401 when there is none.

    Async so that a remembered token costs no hop to the thread pool; a database lookup still runs there.
    """
    token = _bearer(request)
    principal = _remembered(token) if token is not None else None
    if principal is None:
        principal = await run_in_threadpool(_principal, request)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "sign in or send a valid API token")
    if principal.must_change_password:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "choose your own password on your account page first")
    if principal.via == "cookie" and request.method not in ("GET", "HEAD", "OPTIONS"):
        check_csrf(principal, request.headers.get("x-csrf-token"))
    return principal


def signed_in_user(request: Request) -> Principal | None:
    """The browser's signed-in user, or None: for pages anyone may see, such as error pages."""
    principal = _principal(request)
    return principal if principal is not None and principal.via == "cookie" else None


def page_user(request: Request) -> Principal:
    """The signed-in browser user; otherwise the browser goes to the sign-in page."""
    principal = _principal(request)
    if principal is None or principal.via != "cookie":
        raise SignInRequired()
    if principal.must_change_password and request.url.path not in _WHILE_TEMPORARY:
        raise PasswordChangeRequired()
    return principal


def check_csrf(principal: Principal, sent: str | None) -> None:
    """Refuse a state-changing browser request without the session's CSRF token."""
    if principal.via != "cookie":
        return
    if not sent or not principal.csrf_token or not secrets.compare_digest(sent, principal.csrf_token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token: reload the page and try again")


def audit_read(request: Request, principal: Principal, *, entity: str, entity_id: str) -> None:
    """Record that someone looked at a patient record (a short write of its own)."""
    from hemicare.audit import service as audit

    with request.app.state.sessions.begin() as session:
        audit.record(session, actor=principal.username, action="read", entity=entity, entity_id=entity_id)


def audit_refusal(request: Request) -> None:
    """Record that someone was refused a patient's record (403 on an address naming a patient): who, and what they
    asked for. A refusal before anyone is known (no credentials) is not a person's attempt and is not recorded."""
    from hemicare.audit import service as audit

    code = request.path_params.get("code")
    if code is None:
        return
    principal = _principal(request)
    if principal is None:
        return
    with request.app.state.sessions.begin() as session:
        detail = {"method": request.method, "path": request.url.path}
        audit.record(
            session, actor=principal.username, action="denied", entity="patient", entity_id=code, detail=detail
        )


def require_care_team(principal: Principal) -> None:
    """Only the care team reads and changes clinical records."""
    if not principal.in_care_team:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a {principal.role} cannot do this")


def require_patient_access(principal: Principal, code: str) -> None:
    """The care team sees every patient; a patient sees only their own records."""
    if principal.in_care_team:
        return
    if principal.role == "patient" and principal.patient_code == code:
        return
    raise HTTPException(status.HTTP_403_FORBIDDEN, "you may not see this patient's records")


def may_close_recall(principal: Principal, recall: str) -> None:
    """Those who give a treatment close and reopen its recalls (RECALL_CLOSERS)."""
    require_role(principal, RECALL_CLOSERS[recall], f"close or reopen {RECALLS[recall].name}")


def require_role(principal: Principal, roles: tuple[str, ...], what: str) -> None:
    """Only the named roles may do this."""
    if principal.role not in roles:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"only {' or '.join(roles)} may {what}")


ApiUser = Annotated[Principal, Depends(api_user)]
PageUser = Annotated[Principal, Depends(page_user)]
