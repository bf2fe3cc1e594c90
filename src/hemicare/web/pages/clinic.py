"""The clinic's lists (patients, who is due) and adding or correcting a patient."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any, NamedTuple

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from hemicare.engine.intake import validate_model
from hemicare.engine.planner import alert_title
from hemicare.errors import FieldProblem, InputError, quoted
from hemicare.limits import REASON_MAX
from hemicare.outcomes import service as outcome_service
from hemicare.patients import service as patient_service
from hemicare.patients.schemas import PatientCreate, PatientUpdate
from hemicare.plans import service as plan_service
from hemicare.recalls import service as recall_service
from hemicare.recalls.service import RECALLS, lateness
from hemicare.web import forms
from hemicare.web.auth import PageUser, Principal, audit_read, check_csrf, require_care_team
from hemicare.web.pages._shared import PostedForm, _once, _page, _page_number, _pager
from hemicare.web.payload import PatientCode

router = APIRouter(include_in_schema=False)


def _signoff(plan: plan_service.LatestPlan) -> list[tuple[str, str | None]]:
    """Each part of the plan with who signed it, None while it awaits sign-off."""
    if "parts" not in plan.summary:  # a version stored before parts were summarised
        return [("plan", plan.signed_by)]
    return [(part, plan.summary["signoff"].get(part)) for part in plan.summary["parts"]]


PAGE_SIZE = 50


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
        problems.append(FieldProblem("show", f"{quoted(show)} is not one of {', '.join(LIST_FILTERS)}"))
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
                found = [row for row in found if row.code in due_codes]
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
                found = [row for row in found if row.id in keep]
            total = len(found)
            pager = _pager("/patients", query, page, total, PAGE_SIZE)
            shown = found[pager["first"] - 1 : pager["first"] - 1 + PAGE_SIZE]
        ids = [row.id for row in shown]
        by_patient: dict[str, list[Any]] = {}
        for item in recall_service.due(session, kb=kb, today=today, horizon_days=14, patient_ids=ids):
            by_patient.setdefault(item.patient, []).append(item)
        plans = plan_service.latest_summaries(session, patient_ids=ids)
        differing = outcome_service.wishes_differing(session, patient_ids=ids)
        rows = []
        for listed in shown:
            plan = plans.get(listed.id)
            severities = plan.summary.get("severities", {}) if plan else {}
            titles = {
                level: [alert_title(alert, kb) for alert, severity in severities.items() if severity == level]
                for level in ("critical", "warning")
            }
            rows.append(
                {
                    "code": listed.code,
                    "name": listed.name,
                    "who": listed.who(),
                    "plan": plan,
                    "parts": _signoff(plan) if plan else [],
                    "critical": titles["critical"],
                    "warnings": titles["warning"],
                    "due": by_patient.get(listed.code, []),
                    "wishes": [line.quoted() for line in differing.get(listed.id, [])],
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


class DueRow(NamedTuple):
    item: recall_service.DueItem
    patient: patient_service.Listed | None


def _due_rows(request: Request, user: Principal, *, also: str = "") -> tuple[int, str, list[DueRow]]:
    """The worklist the query asks for (``days``, ``recall``): overdue first, then by date, each with its patient."""
    require_care_team(user)
    horizon_text = request.query_params.get("days", "14")
    horizon = forms.counting_number(horizon_text)
    if horizon not in DUE_HORIZONS:
        known = ", ".join(map(str, DUE_HORIZONS))
        raise InputError([FieldProblem("days", f"{quoted(horizon_text)} is not one of {known}")])
    kind = request.query_params.get("recall", "")
    if kind and kind not in RECALLS:
        known = ", ".join(RECALLS)
        raise InputError([FieldProblem("recall", f"{quoted(kind)} is not one of {known} (or empty for all)")])
    with request.app.state.readers.begin() as session:
        items = recall_service.due(
            session, kb=request.app.state.kb, today=dt.date.today(), horizon_days=horizon, recall=kind or None
        )
        listed = {row.code: row for row in patient_service.find(session)}
    audit_read(request, user, entity="due_list", entity_id=f"{horizon} {kind} {also}".strip())
    items.sort(key=lambda item: (not item.overdue, item.due, item.patient))
    return horizon, kind, [DueRow(item, listed.get(item.patient)) for item in items]


@router.get("/due")
def due_page(request: Request, user: PageUser) -> HTMLResponse:
    """The clinic's worklist: everything due by a horizon, overdue first, then by date, each with its patient."""
    horizon, kind, rows = _due_rows(request, user)
    return _page(
        request,
        "due.html",
        user,
        rows=rows,
        days=horizon,
        horizons=DUE_HORIZONS,
        recall=kind,
        recalls=RECALLS,
        today=dt.date.today().isoformat(),
    )


def _inert(text: str) -> str:
    """A cell a spreadsheet will not run: text that would start a formula (a name typed as "=HYPERLINK(...)", or a
    phone number as "+44 ...") is kept as text behind an apostrophe (OWASP, CSV injection)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/due.csv")
def due_csv(request: Request, user: PageUser) -> Response:
    """The same worklist as a spreadsheet, for whoever phones the patients to book them."""
    horizon, kind, rows = _due_rows(request, user, also="csv")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["due", "how late", "patient", "name", "born, sex", "phone", "what", "why", "plan"])
    for item, patient in rows:
        values = [
            item.due.isoformat(),
            lateness(item),
            item.patient,
            *((patient.name, patient.who(), patient.phone or "") if patient else ("", "", "")),
            item.what,
            item.detail,
            f"{item.plan.replace('_', ' ')}: ask the care team before booking" if item.plan else "",
        ]
        writer.writerow([_inert(value) for value in values])
    name = f"hemicare-due-{dt.date.today().isoformat()}-{horizon}-days{'-' + kind if kind else ''}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/overrides")
def overrides_page(request: Request, user: PageUser) -> HTMLResponse:
    """What clinicians changed at sign-off, by item and change, the most frequent first, with each reason (from the
    day ``since`` if given): where HemiCare's proposals and the clinic's decisions part."""
    require_care_team(user)
    since = request.query_params.get("since", "")
    start = plan_service.since_day(since, field="since")
    with request.app.state.readers.begin() as session:
        groups = plan_service.overrides(session, since=start)
    audit_read(request, user, entity="overrides", entity_id=f"since {start or 'start'}")
    return _page(
        request,
        "overrides.html",
        user,
        groups=groups,
        since=start.isoformat() if start else "",
        treatment_names=request.app.state.kb.treatment_names(),
    )


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
            answer = _once(session, request, user, form, f"/patients/{data.code}/assessment")
            patient_service.create(session, data=data, actor=user.username)
    except InputError as exc:
        errors = forms.errors_by_field(exc.problems)
        return _page(request, "patient_new.html", user, status_code=422, values=values, errors=errors)
    return answer


@router.get("/patients/{code}/edit")
def edit_patient_page(code: PatientCode, request: Request, user: PageUser) -> HTMLResponse:
    require_care_team(user)
    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        values = {"name": patient.name, "phone": patient.phone or "", "version": str(patient.version), "reason": ""}
    return _page(request, "patient_edit.html", user, code=code, values=values, errors={})


@router.post("/patients/{code}/edit")
def edit_patient(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Correct a patient's name or phone, with a reason; an edit of a record someone changed meanwhile is refused."""
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    values = {name: form.get(name) for name in ("name", "phone", "version", "reason")}
    problems = []
    if not 3 <= len(values["reason"].strip()) <= REASON_MAX:
        problems.append(FieldProblem("reason", f"say why the record changes in 3 to {REASON_MAX} characters"))
    version = forms.counting_number(values["version"])
    if version is None:
        problems.append(FieldProblem("version", "missing: reload the page"))
    try:
        changes = validate_model(PatientUpdate, {"name": values["name"], "phone": values["phone"] or None})
    except InputError as exc:
        problems += exc.problems
    if problems or version is None:
        errors = forms.errors_by_field(problems)
        return _page(request, "patient_edit.html", user, status_code=422, code=code, values=values, errors=errors)
    with request.app.state.sessions.begin() as session:
        answer = _once(session, request, user, form, f"/patients/{code}")
        patient_service.update(
            session,
            code=code,
            expected_version=version,
            changes=changes,
            actor=user.username,
            reason=values["reason"].strip(),
        )
    return answer
