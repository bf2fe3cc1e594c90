"""Server-rendered pages: plain HTML forms that work without JavaScript.

Clinicians: patient list, patient page (plan, decision aid, face map, history, outcome chart), assessment form,
sign-off, recording sessions. Patients: their diary, the HFS-7, their plan in plain language, what is next.
Every view of a patient record is written to the audit trail.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any
from urllib.parse import urlencode, urlparse

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy.orm import Session

from hemicare.assessments import service as assessment_service
from hemicare.audit import service as audit
from hemicare.engine import KnowledgeBase, validate_assessment
from hemicare.engine.assessment import MvdResult
from hemicare.engine.facemap import face_map_svg
from hemicare.engine.intake import validate_model
from hemicare.engine.planner import alert_title
from hemicare.engine.toxin import ToxinPlan
from hemicare.errors import FieldProblem, InputError, NotFoundError
from hemicare.outcomes import service as outcome_service
from hemicare.outcomes.schemas import DiaryCreate, QuestionnaireCreate
from hemicare.patients import service as patient_service
from hemicare.patients.models import Patient
from hemicare.patients.schemas import PatientCreate, PatientUpdate
from hemicare.plans import service as plan_service
from hemicare.plans.models import PlanVersion
from hemicare.plans.schemas import PlanEdit, parts_of
from hemicare.recalls import service as recall_service
from hemicare.sessions import service as session_service
from hemicare.sessions.schemas import SessionCreate, SessionOutcome
from hemicare.users import service as user_service
from hemicare.users.schemas import ROLES, AccountChange, PasswordChange, UserCreate
from hemicare.web import apidocs, forms
from hemicare.web.app import template
from hemicare.web.auth import (
    CONVENTIONAL_SIGNERS,
    COOKIE,
    INTEGRATIVE_SIGNERS,
    SESSION_ROLES,
    PageUser,
    Principal,
    audit_read,
    check_csrf,
    require_care_team,
    require_patient_access,
    require_role,
    signed_in_user,
)
from hemicare.web.charts import Point, outcome_chart
from hemicare.web.plain import due_words, plain_parts, things_to_know
from hemicare.web.referrals import QUESTION_MAX, SPECIALTY_NAMES, referral_targets

router = APIRouter(include_in_schema=False)
STATUSES = ("recommended", "option", "deferred", "not_recommended", "contraindicated")


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or urlparse(target).netloc:
        return "/"
    return target


def _page(request: Request, name: str, user: Principal | None, status_code: int = 200, **context: Any) -> HTMLResponse:
    return template(request, name, {"user": user, **context}, status_code=status_code)


async def _form(request: Request) -> forms.FormData:
    raw = await request.form()
    single = {key: str(value) for key, value in raw.items()}
    multi = {key: [str(v) for v in raw.getlist(key)] for key in raw}
    return forms.FormData(single, multi)


# The posted form as a route parameter: read on the event loop, so that the route can be a plain function run in the
# thread pool (a route that waits on the database must not hold up the event loop).
PostedForm = Annotated[forms.FormData, Depends(_form)]


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


# --- sign-in ------------------------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return _page(request, "login.html", None, next=_safe_next(next), error=None)


@router.post("/login")
def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    next: str = Form("/"),
) -> Response:
    target = _safe_next(next)
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
    if len(actor) > 120:
        problems.append(FieldProblem("actor", "a username of at most 120 characters"))
    if len(patient) > 64:
        problems.append(FieldProblem("patient", "a patient code of at most 64 characters"))
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
        user_service.set_active(
            session, username=username, active=form.get("active") == "1", change=change, actor=user.username
        )
    return RedirectResponse(f"/admin?{urlencode({'changed': username})}", status_code=303)


# --- clinicians -----------------------------------------------------------------------------------------------------


def _signoff(plan: plan_service.LatestPlan) -> list[tuple[str, str | None]]:
    """Each part of the plan with who signed it, None while it awaits sign-off."""
    if "parts" not in plan.summary:  # a version stored before parts were summarised
        return [("plan", plan.signed_by)]
    return [(part, plan.summary["signoff"].get(part)) for part in plan.summary["parts"]]


PAGE_SIZE = 50


def _page_number(text: str) -> int:
    """The ``page`` query parameter: 1, 2, ..."""
    if not text.isdigit() or int(text) < 1:
        raise InputError([FieldProblem("page", f"{text!r} is not a page number (1, 2, ...)")])
    return int(text)


def _pager(path: str, query: dict[str, str], page: int, total: int, size: int) -> dict[str, Any]:
    """A list's page (its last one if asked past the end: the list got shorter), how many there are, the number of
    the page's first row, and links to the pages before and after that keep the rest of the query."""
    pages = max(1, -(-total // size))
    page = min(page, pages)

    def link(to_page: int) -> str:
        return f"{path}?" + urlencode({**query, "page": to_page})

    return {
        "page": page,
        "pages": pages,
        "first": (page - 1) * size + 1,
        "previous": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if page < pages else None,
    }


LIST_FILTERS = {
    "all": "All patients",
    "due": "Due now or in the next 14 days",
    "unsigned": "Plan awaiting sign-off",
    "critical": "Open critical alerts",
}


def _awaits_signoff(plan: plan_service.LatestPlan) -> bool:
    return any(by is None for _, by in _signoff(plan))


def _list_query(request: Request) -> tuple[str, str, int]:
    """The patient list's search text, filter and page, checked."""
    params = request.query_params
    text = params.get("q", "").strip()
    show = params.get("show", "all")
    problems = []
    if len(text) > 100:
        problems.append(FieldProblem("q", "a search of at most 100 characters"))
    if show not in LIST_FILTERS:
        problems.append(FieldProblem("show", f"{show!r} is not one of {', '.join(LIST_FILTERS)}"))
    if problems:
        raise InputError(problems)
    return text, show, _page_number(params.get("page", "1"))


@router.get("/patients")
def patients(request: Request, user: PageUser) -> HTMLResponse:
    """The care team's list: search by code or name, filter to who is due, awaits sign-off or has a critical
    alert, fifty to a page. Only the filters read the whole clinic; a page of the plain list reads its own rows."""
    require_care_team(user)
    text, show, page = _list_query(request)
    kb = request.app.state.kb
    today = dt.date.today()
    with request.app.state.readers.begin() as session:
        query = {"q": text, "show": show}
        if show == "all":  # counted and paged in the database
            total = patient_service.count(session, text=text or None)
            pager = _pager("/patients", query, page, total, PAGE_SIZE)
            shown = patient_service.find(session, text=text or None, offset=pager["first"] - 1, limit=PAGE_SIZE)
        else:
            found = patient_service.find(session, text=text or None)
            if show == "due":
                due = recall_service.due(session, kb=kb, today=today, horizon_days=14)
                due_codes = {item.patient for item in due}
                found = [row for row in found if row[1] in due_codes]
            else:
                summaries = plan_service.latest_summaries(session)
                if show == "unsigned":
                    keep = {pid for pid, plan in summaries.items() if _awaits_signoff(plan)}
                else:
                    keep = {
                        pid
                        for pid, plan in summaries.items()
                        if "critical" in plan.summary.get("severities", {}).values()
                    }
                found = [row for row in found if row[0] in keep]
            total = len(found)
            pager = _pager("/patients", query, page, total, PAGE_SIZE)
            shown = found[pager["first"] - 1 : pager["first"] - 1 + PAGE_SIZE]
        ids = [row[0] for row in shown]
        by_patient: dict[str, list[Any]] = {}
        for item in recall_service.due(session, kb=kb, today=today, horizon_days=14, patient_ids=ids):
            by_patient.setdefault(item.patient, []).append(item)
        plans = plan_service.latest_summaries(session, patient_ids=ids)
        rows = []
        for patient_id, code, name in shown:
            plan = plans.get(patient_id)
            severities = plan.summary.get("severities", {}) if plan else {}
            titles = {
                level: [alert_title(alert, kb) for alert, severity in severities.items() if severity == level]
                for level in ("critical", "warning")
            }
            rows.append(
                {
                    "code": code,
                    "name": name,
                    "plan": plan,
                    "parts": _signoff(plan) if plan else [],
                    "critical": titles["critical"],
                    "warnings": titles["warning"],
                    "due": by_patient.get(code, []),
                }
            )
    audit_read(request, user, entity="patient_list", entity_id=show)
    return _page(
        request,
        "patients.html",
        user,
        rows=rows,
        q=text,
        show=show,
        filters=LIST_FILTERS,
        total=total,
        last=pager["first"] - 1 + len(rows),
        **pager,
    )


DUE_HORIZONS = (7, 14, 30, 60, 90)


@router.get("/due")
def due_page(request: Request, user: PageUser) -> HTMLResponse:
    """The clinic's worklist: everything due by a horizon, overdue first, then by date, each with its patient."""
    require_care_team(user)
    horizon_text = request.query_params.get("days", "14")
    if not horizon_text.isdigit() or int(horizon_text) not in DUE_HORIZONS:
        raise InputError([FieldProblem("days", f"{horizon_text!r} is not one of {', '.join(map(str, DUE_HORIZONS))}")])
    horizon = int(horizon_text)
    today = dt.date.today()
    with request.app.state.readers.begin() as session:
        items = recall_service.due(session, kb=request.app.state.kb, today=today, horizon_days=horizon)
        names = {code: name for _, code, name in patient_service.find(session)}
    audit_read(request, user, entity="due_list", entity_id=str(horizon))
    items.sort(key=lambda item: (not item.overdue, item.due, item.patient))
    rows = [{"item": item, "name": names.get(item.patient, "")} for item in items]
    return _page(request, "due.html", user, rows=rows, days=horizon, horizons=DUE_HORIZONS, today=today.isoformat())


@router.get("/patients/new")
def new_patient_page(request: Request, user: PageUser) -> HTMLResponse:
    require_care_team(user)
    return _page(request, "patient_new.html", user, values={}, errors={})


@router.post("/patients/new")
def new_patient(request: Request, user: PageUser, form: PostedForm) -> Response:
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    values = {name: form.get(name) for name in ("code", "name", "sex", "birth_year", "phone")}
    try:
        data = validate_model(PatientCreate, {k: v for k, v in values.items() if v})
        with request.app.state.sessions.begin() as session:
            patient_service.create(session, data=data, actor=user.username)
    except InputError as exc:
        errors = forms.errors_by_field(exc.problems)
        return _page(request, "patient_new.html", user, status_code=422, values=values, errors=errors)
    return RedirectResponse(f"/patients/{data.code}/assessment", status_code=303)


@router.get("/patients/{code}/edit")
def edit_patient_page(code: str, request: Request, user: PageUser) -> HTMLResponse:
    require_care_team(user)
    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        values = {"name": patient.name, "phone": patient.phone or "", "version": str(patient.version), "reason": ""}
    return _page(request, "patient_edit.html", user, code=code, values=values, errors={})


@router.post("/patients/{code}/edit")
def edit_patient(code: str, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Correct a patient's name or phone, with a reason; an edit of a record someone changed meanwhile is refused."""
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    values = {name: form.get(name) for name in ("name", "phone", "version", "reason")}
    problems = []
    if len(values["reason"].strip()) < 3:
        problems.append(FieldProblem("reason", "say why the record changes (3 characters or more)"))
    if not values["version"].isdigit():
        problems.append(FieldProblem("version", "missing: reload the page"))
    try:
        changes = validate_model(PatientUpdate, {"name": values["name"], "phone": values["phone"] or None})
    except InputError as exc:
        problems += exc.problems
    if problems:
        errors = forms.errors_by_field(problems)
        return _page(request, "patient_edit.html", user, status_code=422, code=code, values=values, errors=errors)
    with request.app.state.sessions.begin() as session:
        patient_service.update(
            session,
            code=code,
            expected_version=int(values["version"]),
            changes=changes,
            actor=user.username,
            reason=values["reason"].strip(),
        )
    return RedirectResponse(f"/patients/{code}", status_code=303)


def _chart(found: outcome_service.Records, patient: Patient, kb: KnowledgeBase) -> Markup:
    hours = kb.policy("chart_waking_hours_per_day")
    svg = outcome_chart(
        spasms=[
            Point(d.date, d.spasms)
            if d.per == "day"
            else Point(d.date, d.spasms * hours, f"{d.spasms:g} per hour x {hours:g} waking hours, a clinic setting")
            for d in found.diary
        ],
        intensity=[Point(d.date, d.intensity) for d in found.diary],
        hfs7=[Point(q.date, q.total) for q in found.scores.get("hfs7", [])],
        toxin=[s.date for s in found.sessions if s.kind == "toxin"],
        acupuncture=[s.date for s in found.sessions if s.kind == "acupuncture"],
        hfs7_max=kb.scales["hfs7"].max,
        title=f"Outcomes over time for {patient.code}",
    )
    return Markup(svg)


def _face_map(plan: PlanVersion | None, code: str) -> Markup | None:
    if plan is None:
        return None
    toxin = next((r for r in plan.content["recommendations"] if r["id"] == "botulinum_toxin"), None)
    if toxin is None:
        return None
    return Markup(face_map_svg(ToxinPlan.model_validate(toxin["details"]["programme"]), patient_id=code))


def _signable(user: Principal, plan: PlanVersion | None) -> list[dict[str, Any]]:
    if plan is None or user.role not in CONVENTIONAL_SIGNERS + INTEGRATIVE_SIGNERS:
        return []
    mine = "integrative" if user.role in INTEGRATIVE_SIGNERS else "conventional"
    return [r for r in plan.content["recommendations"] if (r["category"] == "integrative") == (mine == "integrative")]


@router.get("/patients/{code}")
def patient_page(code: str, request: Request, user: PageUser) -> HTMLResponse:
    require_care_team(user)
    return _patient_page(request, user, code)


def _patient_page(
    request: Request, user: Principal, code: str, *, posted: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """The patient's page; ``posted`` brings back a session form that was refused, with what was typed in it and the
    problems (form: the kind of session, typed: the form, problems: the field problems)."""
    kb = request.app.state.kb
    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        plan = plan_service.latest(session, patient=patient)
        try:
            assessment = assessment_service.latest(session, patient=patient).data
        except NotFoundError:
            assessment = None
        found = outcome_service.records(session, patient=patient)
        history = _history(found, kb)
        outcomes = outcome_service.summarise(found, patient=patient, kb=kb)
        due = recall_service.due(session, kb=kb, today=dt.date.today(), horizon_days=60, patient_id=patient.id)
        chart = _chart(found, patient, kb)
        context = {
            "patient": patient,
            "plan": plan,
            "content": plan.content if plan else None,
            "since": plan_service.since_review(session, current=plan) if plan else None,
            "versions": plan_service.versions(session, patient=patient),
            "parts": parts_of(plan.content) if plan else [],
            "assessment": assessment,
            "history": history,
            "outcomes": outcomes,
            "due": due,
            "chart": chart,
            "face_map": _face_map(plan, code),
            "signable": _signable(user, plan),
            "statuses": STATUSES,
            "reference_urls": {ref.id: ref.link for ref in kb.references.values()},
            "treatment_names": kb.treatment_names(),
            "scale_names": {scale_id: scale.name for scale_id, scale in kb.scales.items()},
            "mvd_results": [result.value for result in MvdResult],
            "today": dt.date.today().isoformat(),
            "toxin_sites": kb.toxin_programme().sites,
            "acupoints": sorted(kb.acupoints.values(), key=lambda p: p.code),
            "referral_targets": referral_targets(user.role),
            "specialty_names": SPECIALTY_NAMES,
            "question_max": QUESTION_MAX,
            "posted": posted,
        }
    audit_read(request, user, entity="patient", entity_id=code)
    return _page(request, "patient.html", user, status_code=status_code, **context)


def _history(found: outcome_service.Records, kb: KnowledgeBase) -> list[dict[str, Any]]:
    """The patient's treatment sessions, oldest first, each with what was given and what came of it in words."""
    formula_names = {formula.id: formula.pinyin for formula in kb.formulas.values()}
    return [
        {
            "id": row.id,
            "kind": row.kind,
            "date": row.date,
            "clinician": row.clinician,
            "data": row.data,
            "what": session_service.describe(row.kind, row.data, formula_names=formula_names),
            "outcome": session_service.outcome_words(row.kind, row.data),
        }
        for row in found.sessions
    ]


@router.get("/patients/{code}/plans/{number}")
def plan_version_page(code: str, number: int, request: Request, user: PageUser) -> HTMLResponse:
    """One stored version of a patient's plan, as it was: who made or signed it, the changes made at sign-off and
    their reasons, and the plan itself. Nothing can be changed here; sign-off is on the patient's page."""
    require_care_team(user)
    kb = request.app.state.kb
    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        shown = plan_service.version(session, patient=patient, number=number)
        newest = plan_service.latest(session, patient=patient)
    audit_read(request, user, entity="plan", entity_id=f"{code}/v{number}")
    return _page(
        request,
        "plan_version.html",
        user,
        patient=patient,
        version=shown,
        content=shown.content,
        latest_number=newest.number if newest else number,
        parts=parts_of(shown.content),
        reference_urls={ref.id: ref.link for ref in kb.references.values()},
        treatment_names=kb.treatment_names(),
    )


@router.get("/patients/{code}/assessment")
def assessment_page(code: str, request: Request, user: PageUser) -> HTMLResponse:
    require_care_team(user)
    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        try:
            values = forms.form_from_assessment(assessment_service.latest(session, patient=patient).data)
        except NotFoundError:
            values = forms.form_from_assessment({"sex": patient.sex})
    return _page(request, "assessment.html", user, patient_code=code, values=values, errors={})


@router.post("/patients/{code}/assessment")
def assessment_submit(code: str, request: Request, user: PageUser, form: PostedForm) -> Response:
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    data = forms.assessment_from_form(code, form)
    try:
        assessment = validate_assessment(data)
    except InputError as exc:
        values = {**forms.form_from_assessment({}), **{k: v for k, v in form.single.items()}}
        for name in ("regions", "tcm.pulse", "tcm.findings"):
            values[name] = form.all(name)
        for name in ("pregnant", "breastfeeding", *(f"preferences.{p}" for p in forms.PREFERENCES)):
            values[name] = form.get(name) == "on"
        return _page(
            request,
            "assessment.html",
            user,
            status_code=422,
            patient_code=code,
            values=values,
            errors=forms.errors_by_field(exc.problems),
        )
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        plan_service.assess(
            session,
            patient=patient,
            assessment=assessment,
            kb=request.app.state.kb,
            actor=user.username,
            today=dt.date.today(),
        )
    return RedirectResponse(f"/patients/{code}#plan", status_code=303)


# A form's problems by path: the form's input and the words its label uses (session forms and sign-off).
FieldNames = dict[str, tuple[str, str]]
_COMMON: FieldNames = {"date": ("date", "Date"), "details.notes": ("notes", "Notes")}


def _refused(kind: str, form: forms.FormData, problems: list[FieldProblem], names: FieldNames) -> dict[str, Any]:
    """A refused form of the patient page: what was typed, each problem under its label, and the inputs
    to mark (a dose box named by its site, not "details.sites.4.units")."""
    shown, invalid = [], set()
    for problem in problems:
        name, label = names.get(problem.path) or _COMMON.get(problem.path) or ("", problem.path or "form")
        if name:
            invalid.add(name)
        shown.append({"label": label, "message": problem.message})
    return {"form": kind, "typed": form, "problems": shown, "invalid": invalid}


@router.post("/patients/{code}/sign")
def sign(code: str, request: Request, user: PageUser, form: PostedForm) -> Response:
    require_role(user, CONVENTIONAL_SIGNERS + INTEGRATIVE_SIGNERS, "sign a plan")
    check_csrf(user, form.get("csrf_token"))
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        current = plan_service.latest(session, patient=patient)
        if current is None:
            raise NotFoundError(f"patient {code!r} has no plan to sign")
        edits = []
        problems = []
        names: FieldNames = {}
        treatment_names = request.app.state.kb.treatment_names()
        for rec in _signable(user, current):
            chosen = form.get(f"status.{rec['id']}")
            label = treatment_names.get(rec["id"], rec["id"])
            names[f"reason.{rec['id']}"] = (f"reason.{rec['id']}", f"Reason for {label}")
            names[f"status.{rec['id']}"] = (f"status.{rec['id']}", f"Status of {label}")
            if chosen and chosen != rec["status"]:
                reason = form.get(f"reason.{rec['id']}")
                if len(reason) < 3:
                    problems.append(
                        FieldProblem(f"reason.{rec['id']}", "say why the status changes (3 characters or more)")
                    )
                    continue
                try:
                    edits.append(
                        validate_model(PlanEdit, {"recommendation": rec["id"], "status": chosen, "reason": reason})
                    )
                except InputError as exc:  # named by the item's own field on the form
                    problems += [FieldProblem(f"{p.path}.{rec['id']}", p.message) for p in exc.problems]
        version = form.get("version")
        if not version.isdigit():
            raise InputError([FieldProblem("version", "missing: reload the page")])
        if not problems:
            plan_service.sign(
                session,
                patient=patient,
                expected_number=int(version),
                edits=edits,
                signer=user.username,
                role=user.role,
                reason=form.get("sign_reason") or None,
            )
    if problems:  # the page again, with the choices made and the reasons typed (outside the write transaction)
        return _patient_page(request, user, code, posted=_refused("sign", form, problems, names), status_code=422)
    return RedirectResponse(f"/patients/{code}#plan", status_code=303)


def _may_record(form: forms.FormData, user: Principal, roles: tuple[str, ...], what: str) -> None:
    """Check the role and the CSRF token of a session-recording form."""
    require_role(user, roles, what)
    check_csrf(user, form.get("csrf_token"))


def _record_session(
    request: Request,
    user: Principal,
    code: str,
    form: forms.FormData,
    details: dict[str, Any],
    names: FieldNames,
) -> Response:
    """Validate and store a session from one of the session forms, then show the history; a refused one comes back
    on the patient's page (``names``: the form's inputs and labels by problem path)."""
    payload = {"date": form.get("date") or dt.date.today().isoformat(), "clinician": user.full_name, "details": details}
    try:
        data = validate_model(SessionCreate, payload)
        with request.app.state.sessions.begin() as session:
            patient = patient_service.get(session, code=code)
            session_service.record(session, patient=patient, data=data, kb=request.app.state.kb, actor=user.username)
    except InputError as exc:
        # The page again, the form as it was typed (a dozen dose boxes are not retyped) and its problems beside it.
        posted = _refused(details["kind"], form, exc.problems, names)
        return _patient_page(request, user, code, posted=posted, status_code=422)
    return RedirectResponse(f"/patients/{code}#history", status_code=303)


@router.post("/patients/{code}/sessions/toxin")
def record_toxin(code: str, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Record a toxin session from the face-map form: units per site and side."""
    _may_record(form, user, CONVENTIONAL_SIGNERS, "record a toxin session")
    labels = {site.id: site.label for site in request.app.state.kb.toxin_programme().sites}
    sites: list[dict[str, str]] = []
    names: FieldNames = {
        "details.product": ("product", "Product"),
        "details.lot": ("lot", "Lot"),
        "details.sites": ("", "Units"),
        "details.override_reason": ("override_reason", "Reason"),
    }
    for name, value in form.single.items():
        if name.startswith("units.") and value.strip():
            _, site, side = name.split(".", 2)
            label = f"Units, {labels.get(site, site)}, {side}"
            names[f"details.sites.{len(sites)}.units"] = (name, label)
            names[f"details.sites.{len(sites)}.side"] = (name, label)
            names[f"details.sites.{len(sites)}.site"] = (name, label)
            sites.append({"site": site, "side": side, "units": value.strip()})
    details: dict[str, Any] = {
        "kind": "toxin",
        "product": form.get("product"),
        "lot": form.get("lot"),
        "sites": sites,
        "adverse_effects": [a.strip() for a in form.get("adverse_effects").split(",") if a.strip()],
    }
    if form.get("override_reason"):
        details["override_reason"] = form.get("override_reason")
    return _record_session(request, user, code, form, details, names)


@router.post("/patients/{code}/sessions/acupuncture")
def record_acupuncture(code: str, request: Request, user: PageUser, form: PostedForm) -> Response:
    _may_record(form, user, INTEGRATIVE_SIGNERS, "record an acupuncture session")
    details = {
        "kind": "acupuncture",
        "points": form.all("points"),
        "electro": form.get("electro") == "on",
        "notes": form.get("notes") or None,
    }
    names: FieldNames = {"details.points": ("", "Points")}
    names |= {f"details.points.{index}": ("", f"Point {point}") for index, point in enumerate(form.all("points"))}
    return _record_session(request, user, code, form, details, names)


@router.post("/patients/{code}/sessions/herbal")
def record_herbal(code: str, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Record the plan's formula (as shown, after safety removals) as a prescription."""
    _may_record(form, user, INTEGRATIVE_SIGNERS, "record a prescription")
    herbs: list[dict[str, str]] = []
    names: FieldNames = {"details.herbs": ("", "Doses"), "details.duration_days": ("duration_days", "Days")}
    for name, value in form.single.items():
        if name.startswith("dose.") and value.strip():
            latin = name.removeprefix("dose.")
            names[f"details.herbs.{len(herbs)}.dose_g"] = (name, f"Dose of {latin}")
            names[f"details.herbs.{len(herbs)}.latin"] = (name, f"Dose of {latin}")
            herbs.append({"latin": latin, "dose_g": value.strip()})
    details = {
        "kind": "herbal",
        "formula": form.get("formula") or None,
        "herbs": herbs,
        "duration_days": form.get("duration_days"),
    }
    return _record_session(request, user, code, form, details, names)


@router.post("/patients/{code}/sessions/mvd")
def record_mvd(code: str, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Record a microvascular decompression: the neurosurgeon signed in is the surgeon; the result may follow later."""
    _may_record(form, user, SESSION_ROLES["mvd"], "record an operation")
    details = {
        "kind": "mvd",
        "surgeon": user.full_name,
        "result": form.get("result") or None,
        "notes": form.get("notes") or None,
    }
    return _record_session(request, user, code, form, details, {"details.result": ("result", "Result")})


@router.post("/patients/{code}/sessions/{session_id}/outcome")
def record_session_outcome(code: str, session_id: int, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Add a toxin session's effect and side effects, or an operation's result, from the treatment history."""
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    payload: dict[str, Any] = {"reason": form.get("reason") or None}
    if form.get("effect_weeks"):
        payload["effect_weeks"] = form.get("effect_weeks")
    if form.get("adverse_effects"):
        payload["adverse_effects"] = [a.strip() for a in form.get("adverse_effects").split(",") if a.strip()]
    if form.get("result"):
        payload["result"] = form.get("result")
    outcome = validate_model(SessionOutcome, payload)
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        row = session_service.get(session, patient=patient, session_id=session_id)
        require_role(user, SESSION_ROLES[row.kind], f"record the outcome of a {row.kind} session")
        session_service.record_outcome(
            session, patient=patient, session_id=session_id, outcome=outcome, actor=user.username
        )
    return RedirectResponse(f"/patients/{code}#history", status_code=303)


@router.get("/patients/{code}/plan.pdf")
def plan_pdf(code: str, request: Request, user: PageUser, kind: str = "patient", to: str | None = None) -> Response:
    """The plan as a printable PDF: for the patient, or as a referral letter to another specialty (``to``; the
    patient page's form also adds the sender's question)."""
    require_patient_access(user, code)
    if kind not in ("patient", "referral"):
        raise InputError([FieldProblem("kind", f"{kind!r} is not patient or referral")])
    if kind == "referral":
        return _referral(code, request, user, target=to, question="")
    from hemicare.web.pdf import patient_plan_pdf

    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        plan = _plan_or_404(session, patient)
        parts, reviewed = plan_service.reviewed_parts(session, patient=patient)
        due = recall_service.due(
            session, kb=request.app.state.kb, today=dt.date.today(), horizon_days=90, patient_id=patient.id
        )
    _audit_export(request, user, code, plan, detail={"as": "pdf:patient"})
    body = patient_plan_pdf(
        patient_name=patient.name,
        printed_on=dt.date.today(),
        parts=plain_parts(parts, reviewed, request.app.state.kb),
        warnings=things_to_know(reviewed),
        due=due,
    )
    return _pdf(body, f"{code}-patient.pdf")


@router.post("/patients/{code}/referral.pdf")
def referral_letter(code: str, request: Request, user: PageUser, form: PostedForm) -> Response:
    """A referral letter to the specialty chosen on the patient's page, with the sender's question."""
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    return _referral(code, request, user, target=form.get("to"), question=form.get("question") or "")


def _referral(code: str, request: Request, user: Principal, *, target: str | None, question: str) -> Response:
    from hemicare.web.pdf import Referral, referral_pdf

    require_care_team(user)
    targets = referral_targets(user.role)
    problems = []
    if target is None:
        target = targets[0]
    elif target not in targets:
        allowed = " or ".join(targets)
        problems.append(FieldProblem("to", f"{target!r} is not a specialty you refer to ({allowed})"))
    if len(question) > QUESTION_MAX:
        problems.append(FieldProblem("question", f"{len(question)} characters; at most {QUESTION_MAX}"))
    if problems:
        raise InputError(problems)
    kb = request.app.state.kb
    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        plan = _plan_or_404(session, patient)
        try:
            assessment = validate_assessment(assessment_service.latest(session, patient=patient).data)
        except (NotFoundError, InputError):  # none yet, or stored before a change of the assessment's form
            assessment = None
        found = outcome_service.records(session, patient=patient)
        referral = Referral(
            target=target,
            question=question,
            author=user.full_name,
            role=user.role,
            printed_on=dt.date.today(),
            patient_name=patient.name,
            patient_code=patient.code,
            sex=patient.sex,
            birth_year=patient.birth_year,
            plan=plan.content,
            plan_number=plan.number,
            assessment=assessment,
            history=_history(found, kb),
            outcomes=outcome_service.summarise(found, patient=patient, kb=kb),
            names=kb.treatment_names(),
            scale_names={scale_id: scale.name for scale_id, scale in kb.scales.items()},
        )
    _audit_export(request, user, code, plan, detail={"as": "pdf:referral", "to": SPECIALTY_NAMES[target]})
    return _pdf(referral_pdf(referral), f"{code}-referral.pdf")


def _plan_or_404(session: Session, patient: Patient) -> PlanVersion:
    plan = plan_service.latest(session, patient=patient)
    if plan is None:
        raise NotFoundError(f"patient {patient.code!r} has no plan yet")
    return plan


def _audit_export(request: Request, user: Principal, code: str, plan: PlanVersion, *, detail: dict[str, str]) -> None:
    with request.app.state.sessions.begin() as session:
        audit.record(
            session,
            actor=user.username,
            action="export",
            entity="plan",
            entity_id=f"{code}/v{plan.number}",
            detail=detail,
        )


def _pdf(body: bytes, filename: str) -> Response:
    return Response(
        body, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{filename}"'}
    )


# --- patients -----------------------------------------------------------------------------------------------------


def _own_code(user: Principal) -> str:
    require_role(user, ("patient",), "use the patient pages")
    assert user.patient_code is not None
    return user.patient_code


@router.get("/me")
def my_page(request: Request, user: PageUser) -> HTMLResponse:
    code = _own_code(user)
    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        parts, reviewed = plan_service.reviewed_parts(session, patient=patient)
        due = recall_service.due(
            session, kb=request.app.state.kb, today=dt.date.today(), horizon_days=120, patient_id=patient.id
        )
        chart = _chart(outcome_service.records(session, patient=patient), patient, request.app.state.kb)
        plain = plain_parts(parts, reviewed, request.app.state.kb)
        entries = outcome_service.recent_diary(session, patient=patient)
    audit_read(request, user, entity="patient", entity_id=code)
    return _page(
        request,
        "me.html",
        user,
        patient=patient,
        plain=plain,
        entries=entries,
        due=[due_words(item) for item in due],
        chart=chart,
        errors={},
        today=dt.date.today().isoformat(),
        saved=request.query_params.get("saved"),
    )


@router.post("/me/diary")
def my_diary(request: Request, user: PageUser, form: PostedForm) -> Response:
    code = _own_code(user)
    check_csrf(user, form.get("csrf_token"))
    payload = {
        "date": form.get("date") or dt.date.today().isoformat(),
        "spasms": form.get("spasms"),
        "per": form.get("per") or "day",
        "intensity": form.get("intensity"),
        "triggers": form.all("triggers"),
        "note": form.get("note") or None,
    }
    data = validate_model(DiaryCreate, payload)
    with request.app.state.sessions.begin() as session:
        outcome_service.add_diary(
            session, patient=patient_service.get(session, code=code), data=data, actor=user.username
        )
    return RedirectResponse("/me?saved=diary", status_code=303)


@router.post("/me/diary/{entry_id}/remove")
def my_diary_remove(entry_id: int, request: Request, user: PageUser, form: PostedForm) -> Response:
    """The patient removes one of their diary entries entered by mistake."""
    code = _own_code(user)
    check_csrf(user, form.get("csrf_token"))
    with request.app.state.sessions.begin() as session:
        patient = patient_service.get(session, code=code)
        outcome_service.remove_diary(
            session, patient=patient, entry_id=entry_id, actor=user.username, reason="removed by the patient"
        )
    return RedirectResponse("/me?saved=removed#entries", status_code=303)


@router.get("/me/hfs7")
def my_hfs7_page(request: Request, user: PageUser) -> HTMLResponse:
    _own_code(user)
    return _page(request, "hfs7.html", user, errors={})


@router.post("/me/hfs7")
def my_hfs7(request: Request, user: PageUser, form: PostedForm) -> Response:
    code = _own_code(user)
    check_csrf(user, form.get("csrf_token"))
    answers = [form.get(f"item.{index}") for index in range(7)]
    data = validate_model(
        QuestionnaireCreate, {"date": dt.date.today().isoformat(), "instrument": "hfs7", "answers": answers}
    )
    with request.app.state.sessions.begin() as session:
        outcome_service.add_questionnaire(
            session, patient=patient_service.get(session, code=code), data=data, actor=user.username
        )
    return RedirectResponse("/me?saved=hfs7", status_code=303)
