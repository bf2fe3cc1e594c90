"""Sign-in, the account page, the API reference and the admin pages (users and the audit trail)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlparse

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hemicare import __version__
from hemicare.audit import service as audit
from hemicare.engine import decision_aid
from hemicare.engine.check import case_count
from hemicare.engine.intake import validate_model
from hemicare.errors import FieldProblem, InputError
from hemicare.limits import ACTOR_MAX, CODE_MAX
from hemicare.users import service as user_service
from hemicare.users.schemas import ROLES, AccountChange, PasswordChange, UserCreate
from hemicare.web import apidocs, forms
from hemicare.web.auth import COOKIE, PageUser, Principal, check_csrf, require_role, signed_in_user
from hemicare.web.pages._shared import PostedForm, _once, _page, _page_number, _pager

router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or urlparse(target).netloc:
        return "/"
    return target


@router.get("/api/v1/docs")
def api_reference(request: Request) -> HTMLResponse:
    """The API reference, drawn from the OpenAPI document; open to anyone, like the document itself."""
    document = request.app.openapi()
    return _page(
        request,
        "api.html",
        signed_in_user(request),
        version=document["info"]["version"],
        description=document["info"].get("description", ""),
        openapi=document["openapi"],
        operations=apidocs.operations(document),
        schemas=apidocs.schemas(document),
    )


@router.get("/favicon.ico")
def favicon(request: Request) -> Response:
    """Browsers ask for /favicon.ico where a page names no icon (an API answer, a PDF): the site's icon, not a 404."""
    address = request.app.state.templates.env.globals["static"]["favicon.svg"]
    return RedirectResponse(address, status_code=status.HTTP_301_MOVED_PERMANENTLY)


@router.get("/about")
def about_page(request: Request) -> HTMLResponse:
    """What HemiCare's decision support is for and what it rests on, the source attributes a clinic checks before
    relying on it (ONC (b)(11): developer and funding, intended use, evidence, how it is kept up to date, how users
    give feedback); open to anyone, like the API reference: it holds no patient's data."""
    kb = request.app.state.kb
    return _page(
        request,
        "about.html",
        signed_in_user(request),
        kb=kb,
        hemicare_version=__version__,
        issued=decision_aid.about(kb),
        review_years=int(kb.policy("decision_aid_review_years")),
        cases=case_count(kb),
    )


PLAIN_HTTP = (
    "Signing in here needs HTTPS: over plain HTTP at this address the browser would not keep the sign-in, and this "
    "page would only come back. Ask whoever runs HemiCare to serve it over HTTPS (or, on a trusted network, to start "
    "it with --insecure-cookies)."
)


@router.get("/login")
def login_page(request: Request, next: str = "/", ended: str = "") -> HTMLResponse:
    notice = None
    if ended:
        notice = (
            f"You were signed out: {user_service.IDLE_MINUTES} minutes passed without use, or "
            f"{user_service.SESSION_HOURS} hours since you signed in. Sign in again to go on."
        )
    error = PLAIN_HTTP if _cookie_would_be_dropped(request) else None
    return _page(request, "login.html", None, next=_safe_next(next), error=error, notice=notice)


def _sent_from_our_pages(request: Request) -> bool:
    """Whether the sign-in form was sent from one of HemiCare's own pages. The form has no CSRF token (there is no
    session yet to hold one), so another site could sign a browser in to an account of its choosing and read what
    the clinician then types. Browsers say whether a request comes from another site (Sec-Fetch-Site), whatever a
    proxy does to the Host header; a client that does not say (a script, an old browser) is let through."""
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


def _cookie_would_be_dropped(request: Request) -> bool:
    """A Secure cookie sent over plain HTTP to an address that is not this machine: browsers drop it. A request that
    came through an HTTPS proxy says so (X-Forwarded-Proto, or the browser's Origin) even where the server was not
    told to trust that proxy's headers (uvicorn's FORWARDED_ALLOW_IPS)."""
    host = request.url.hostname or ""
    loopback = host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")
    https = (
        request.url.scheme == "https"
        or request.headers.get("x-forwarded-proto", "").lower() == "https"
        or request.headers.get("origin", "").startswith("https://")
    )
    return bool(request.app.state.cookie_secure) and not https and not loopback


@router.post("/login")
def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    next: str = Form("/"),
) -> Response:
    target = _safe_next(next)
    if not _sent_from_our_pages(request):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a sign-in form sent from another site is refused")
    if _cookie_would_be_dropped(request):  # said before the password is checked: no session is started in vain
        return _page(request, "login.html", None, status_code=400, next=target, error=PLAIN_HTTP)
    with request.app.state.sessions.begin() as session:
        try:
            user = user_service.authenticate(session, username=username.strip(), password=password)
        except user_service.ThrottledError:
            user = None
            error, code = "Too many failed attempts for this username: wait 15 minutes and try again.", 429
        else:
            error, code = "Wrong username or password.", 401
        if user is None:
            return _page(request, "login.html", None, status_code=code, next=target, error=error)
        token, _ = user_service.start_session(session, user=user)
    return _signed_in(request, RedirectResponse(target, status_code=303), token)


def _signed_in(request: Request, response: Response, token: str) -> Response:
    """Set the session cookie (secure where the server says so, never readable by scripts, same site only)."""
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        secure=request.app.state.cookie_secure,
        samesite="strict",
        max_age=user_service.SESSION_HOURS * 3600,
    )
    return response


@router.get("/session/alive", status_code=204)
def session_alive(user: PageUser) -> Response:
    """Nothing but a use of the session (see app.js: typing in a form counts as use); an ended one goes to sign-in."""
    return Response(status_code=204)


@router.get("/account")
def account_page(request: Request, user: PageUser) -> HTMLResponse:
    return _page(request, "account.html", user, errors={}, changed=request.query_params.get("changed") == "1")


@router.post("/account/password")
def change_own_password(request: Request, user: PageUser, form: PostedForm) -> Response:
    """Change one's own password: the current one first (a wrong one counts as a failed sign-in); every session of
    the account ends, and this browser gets a new one."""
    check_csrf(user, form.get("csrf_token"))
    problems = []
    new = form.get("new_password")
    if new != form.get("repeat_password"):
        problems.append(FieldProblem("repeat_password", "the two new passwords differ"))
    try:
        change = validate_model(PasswordChange, {"password": new})
    except InputError as exc:
        problems += [FieldProblem("new_password", problem.message) for problem in exc.problems]
    with request.app.state.sessions.begin() as session:
        try:
            known = user_service.authenticate(session, username=user.username, password=form.get("current_password"))
        except user_service.ThrottledError:
            raise InputError([FieldProblem("current_password", "too many wrong attempts: wait 15 minutes")]) from None
        if known is None:
            problems.insert(0, FieldProblem("current_password", "this is not your current password"))
        if known is not None and not problems:
            user_service.set_password(session, username=user.username, change=change, actor=user.username)
            token, _ = user_service.start_session(session, user=known)
    if problems:  # only a failed attempt was written: it throttles guessing
        errors = forms.errors_by_field(problems)
        return _page(request, "account.html", user, status_code=422, errors=errors, changed=False)
    return _signed_in(request, RedirectResponse("/account?changed=1", status_code=303), token)


@router.post("/logout")
def logout(request: Request, user: PageUser, csrf_token: str = Form("")) -> Response:
    check_csrf(user, csrf_token)
    with request.app.state.sessions.begin() as session:
        user_service.end_session(session, token=request.cookies.get(COOKIE, ""))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.post("/account/sign-out-everywhere")
def sign_out_everywhere(request: Request, user: PageUser, csrf_token: str = Form("")) -> Response:
    """End every session of one's account, this one too: for a browser left signed in on another computer."""
    check_csrf(user, csrf_token)
    with request.app.state.sessions.begin() as session:
        user_service.sign_out_everywhere(session, username=user.username)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


@router.get("/")
def home(user: PageUser) -> Response:
    if user.role == "patient":
        return RedirectResponse("/me", status_code=303)
    if user.role == "admin":
        return RedirectResponse("/admin", status_code=303)
    return RedirectResponse("/patients", status_code=303)


def _admin_page(request: Request, user: Principal, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The accounts and the audit trail's state, with the add-account form (blank unless ``context`` fills it)."""
    with request.app.state.sessions.begin() as session:
        accounts = user_service.accounts(session)
        chain = audit.verify(session)
    shown: dict[str, Any] = {"changed": None, "issued": None, "errors": {}, "values": {}, "roles": ROLES, **context}
    return _page(request, "admin.html", user, status_code=status_code, users=accounts, chain=chain, **shown)


@router.get("/admin")
def admin(request: Request, user: PageUser) -> HTMLResponse:
    require_role(user, ("admin",), "manage users")
    return _admin_page(request, user, changed=request.query_params.get("changed"))


@router.post("/admin/users")
def admin_add_user(request: Request, user: PageUser, form: PostedForm) -> HTMLResponse:
    """Add an account with a temporary password, shown to the admin once; its owner chooses their own at first
    sign-in. A patient's account names their patient code."""
    require_role(user, ("admin",), "manage users")
    check_csrf(user, form.get("csrf_token"))
    values = {name: form.get(name).strip() for name in ("username", "full_name", "role", "patient_code")}
    password = user_service.temporary_password()
    data = {**values, "patient_code": values["patient_code"] or None, "password": password}
    try:
        with request.app.state.sessions.begin() as session:
            user_service.create(session, data=validate_model(UserCreate, data), actor=user.username, temporary=True)
    except InputError as exc:
        # A problem of the whole form (a patient account without a patient) shows beside the patient code.
        problems = [FieldProblem(p.path or "patient_code", p.message) for p in exc.problems]
        return _admin_page(request, user, 422, errors=forms.errors_by_field(problems), values=values)
    return _admin_page(request, user, issued={"username": values["username"], "password": password, "new": True})


@router.post("/admin/users/{username}/password")
def admin_reset_password(username: str, request: Request, user: PageUser, form: PostedForm) -> HTMLResponse:
    """A new temporary password for someone who forgot theirs: shown to the admin once; every web session of the
    account ends and its owner chooses their own password at the next sign-in."""
    require_role(user, ("admin",), "manage users")
    check_csrf(user, form.get("csrf_token"))
    with request.app.state.sessions.begin() as session:
        password = user_service.reset_password(session, username=username, actor=user.username)
    return _admin_page(request, user, issued={"username": username, "password": password, "new": False})


AUDIT_PAGE = 100


@router.get("/admin/audit")
def audit_page(request: Request, user: PageUser) -> HTMLResponse:
    """The audit trail, newest first, by one user and/or about one patient: who read or changed what, when, why."""
    require_role(user, ("admin",), "read the audit trail")
    params = request.query_params
    actor, patient = params.get("actor", "").strip(), params.get("patient", "").strip()
    problems = []
    if len(actor) > ACTOR_MAX:
        problems.append(FieldProblem("actor", f"a username of at most {ACTOR_MAX} characters"))
    if len(patient) > CODE_MAX:
        problems.append(FieldProblem("patient", f"a patient code of at most {CODE_MAX} characters"))
    if problems:
        raise InputError(problems)
    page = _page_number(params.get("page", "1"))
    wanted = {"actor": actor or None, "patient": patient or None}
    with request.app.state.readers.begin() as session:
        total = audit.count(session, **wanted)
        pager = _pager("/admin/audit", {"actor": actor, "patient": patient}, page, total, AUDIT_PAGE)
        entries = audit.search(session, **wanted, offset=pager["first"] - 1, limit=AUDIT_PAGE)
    return _page(request, "audit.html", user, entries=entries, actor=actor, patient=patient, total=total, **pager)


@router.post("/admin/users/{username}/active")
def admin_set_active(username: str, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Disable an account (sessions end, API tokens revoked) or enable it again, with a reason."""
    require_role(user, ("admin",), "manage users")
    check_csrf(user, form.get("csrf_token"))
    if form.get("active") not in ("0", "1"):
        raise InputError([FieldProblem("active", "say 1 to enable the account or 0 to disable it")])
    change = validate_model(AccountChange, {"reason": form.get("reason") or ""})
    with request.app.state.sessions.begin() as session:
        answer = _once(session, request, user, form, f"/admin?{urlencode({'changed': username})}")
        user_service.set_active(
            session, username=username, active=form.get("active") == "1", change=change, actor=user.username
        )
    return answer
