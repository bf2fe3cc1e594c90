"""One patient's record for the care team: the plan, decision aid, face map, history and chart; the assessment
form, sign-off, session forms and the printed plan and referral letter."""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from pydantic import BaseModel
from sqlalchemy.orm import Session

from hemicare.assessments import service as assessment_service
from hemicare.assessments.models import StoredAssessment
from hemicare.audit import service as audit
from hemicare.engine import KnowledgeBase, validate_assessment
from hemicare.engine.assessment import MvdResult
from hemicare.engine.facemap import face_map_svg
from hemicare.engine.intake import validate_model
from hemicare.engine.planner import alert_title
from hemicare.engine.render import describe_assessment
from hemicare.engine.rules import Facts
from hemicare.engine.safety import held_back_for
from hemicare.engine.schema import SafetyRule
from hemicare.engine.toxin import ToxinPlan
from hemicare.errors import FieldProblem, InputError, NotFoundError, quoted
from hemicare.limits import REASON_MAX
from hemicare.outcomes import service as outcome_service
from hemicare.outcomes.schemas import GradesCreate, QuestionnaireCreate, Removal
from hemicare.patients import service as patient_service
from hemicare.patients.models import Patient
from hemicare.plans import service as plan_service
from hemicare.plans.models import PlanVersion
from hemicare.plans.schemas import PlanEdit, parts_of
from hemicare.recalls import service as recall_service
from hemicare.recalls.schemas import RecallClose
from hemicare.recalls.service import RECALLS
from hemicare.sessions import service as session_service
from hemicare.sessions.schemas import SessionCreate, SessionOutcome
from hemicare.web import forms
from hemicare.web.auth import (
    CONVENTIONAL_SIGNERS,
    INTEGRATIVE_SIGNERS,
    RECALL_CLOSERS,
    SESSION_ROLES,
    PageUser,
    Principal,
    audit_read,
    check_csrf,
    may_close_recall,
    require_care_team,
    require_patient_access,
    require_role,
)
from hemicare.web.pages._shared import (
    QUESTIONNAIRES,
    FieldNames,
    PostedForm,
    _chart,
    _once,
    _page,
    _refused,
    questionnaire_answers,
    questionnaire_items,
    subscale_answers,
)
from hemicare.web.payload import PatientCode, RecordNumber
from hemicare.web.plain import plain_options, plain_parts, things_to_know
from hemicare.web.referrals import QUESTION_MAX, SPECIALTY_NAMES, referral_targets

router = APIRouter(include_in_schema=False)
M = TypeVar("M", bound=BaseModel)


STATUSES = ("recommended", "option", "deferred", "not_recommended", "contraindicated")
# Rows of the prescription form where a herb of the knowledge base is written with its dose: herbs added to the plan's
# formula, or the whole prescription where the plan gives none (a classical formula has about eight to twelve herbs).
ADDED_HERB_ROWS = 12


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


def _alerts_on(
    content: dict[str, Any] | None, held: dict[str, list[SafetyRule]], kb: KnowledgeBase
) -> dict[str, list[tuple[str, str]]]:
    """What the sign-off table says beside each status a signer may change, as (severity, words), so that a
    contraindication is lifted knowingly: the plan's critical and warning alerts on the item, and the rules that
    ``held`` it back for the patient where the plan, not offering the item, said nothing of them (carbamazepine not
    recommended beside MVD, for a patient with HLA-B*15:02)."""
    said: dict[str, list[tuple[str, str]]] = {}
    alerted = set()
    for alert in content["alerts"] if content else []:
        alerted |= {(alert["id"], item) for item in alert["affects"]}
        if alert["severity"] in ("critical", "warning"):
            for item in alert["affects"]:
                said.setdefault(item, []).append((alert["severity"], alert_title(alert["id"], kb)))
    for item, rules in held.items():
        for rule in rules:
            if (rule.id, item) not in alerted:
                said.setdefault(item, []).append((rule.severity, f"{rule.title}, if it is given"))
    return said


def _conventional_held(facts: Facts | None, kb: KnowledgeBase) -> dict[str, list[str]]:
    """By form (toxin, medicine, procedure), what the safety rules hold back and caution for the patient today, said
    above it (`session_service.held_back_said`, `session_service.cautions_said`)."""
    medicines = [f"{session_service.MEDICINE}{id_}" for id_ in session_service.known_medicines(kb)]
    forms = {
        "toxin": (["botulinum_toxin"], "toxin session"),
        "medicine": (medicines, "medicine"),
        "procedure": (list(session_service.PROCEDURES), "procedure"),
    }
    return {
        form: session_service.held_back_said(facts, kb, items=items, one=one)
        + session_service.cautions_said(facts, kb, items=items)
        for form, (items, one) in forms.items()
    }


@router.get("/patients/{code}")
def patient_page(code: PatientCode, request: Request, user: PageUser) -> HTMLResponse:
    require_care_team(user)
    return _patient_page(request, user, code)


def _patient_page(
    request: Request, user: Principal, code: str, *, posted: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """The patient's page; ``posted`` brings back a form that was refused (a session form or the sign-off), as
    _shared._refused describes it: what was typed, the problems under their labels, the inputs to mark."""
    kb = request.app.state.kb
    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        plan = plan_service.latest(session, patient=patient)
        stored, assessment = assessment_service.latest_read(session, patient=patient)
        found = outcome_service.records(session, patient=patient)
        history = _history(found, kb)
        outcomes = outcome_service.summarise(found, patient=patient, kb=kb)
        due, closed = recall_service.due_and_closed(
            session, kb=kb, today=dt.date.today(), horizon_days=60, patient_id=patient.id
        )
        chart = _chart(found, patient, kb)
        signable = _signable(user, plan)
        facts = session_service.facts_today(assessment, found.sessions, today=dt.date.today(), kb=kb)
        stated = outcome_service.stated_preferences(session, patient=patient)
        content = plan_service.as_signed(plan.content, kb) if plan else None
        context = {
            "patient": patient,
            "plan": plan,
            "content": content,
            "since": plan_service.since_review(session, current=plan) if plan else None,
            "recorded_since": session_service.recorded_since(session, patient=patient),
            "versions": plan_service.versions(session, patient=patient),
            "parts": parts_of(plan.content) if plan else [],
            "assessment": stored.data if stored else None,
            "assessed_on": stored.assessed_on if stored else None,
            "assessment_words": describe_assessment(assessment) if assessment else [],
            "history": history,
            "herbs_held": session_service.herbs_held_for(facts, kb) if user.role in INTEGRATIVE_SIGNERS else [],
            "points_held": session_service.points_held_for(facts, kb) if user.role in INTEGRATIVE_SIGNERS else [],
            "conventional_held": _conventional_held(facts, kb) if user.role in CONVENTIONAL_SIGNERS else {},
            "outcomes": outcomes,
            "aid": content.get("decision_aid") if content else None,
            "stated_on": stated.date if stated else None,
            "stated": outcome_service.stated_against(stated, stored.data if stored else None),
            "scores": found.scores,
            "due": due,
            "closed": closed,
            "recalls": RECALLS,
            "recall_closers": RECALL_CLOSERS,
            "chart": chart,
            "face_map": _face_map(plan, code),
            "signable": signable,
            "alerts_on": _alerts_on(
                plan.content if plan else None,
                held_back_for(facts, kb, items=[r["id"] for r in signable]) if facts and signable else {},
                kb,
            ),
            "statuses": STATUSES,
            "reference_urls": kb.reference_links(),
            "treatment_names": kb.treatment_names(),
            "scale_names": kb.scale_names(),
            "mvd_results": [result.value for result in MvdResult],
            "session_roles": SESSION_ROLES,
            "today": dt.date.today().isoformat(),
            "toxin_sites": kb.toxin_programme().sites,
            "acupoints": sorted(kb.acupoints.values(), key=lambda p: p.code),
            "herbs": kb.herbs,
            "added_herb_rows": ADDED_HERB_ROWS,
            "medicines": [{"id": id_, "name": name} for id_, name in session_service.known_medicines(kb).items()],
            "procedures": session_service.PROCEDURES,
            "referral_targets": referral_targets(user.role),
            "specialty_names": SPECIALTY_NAMES,
            "question_max": QUESTION_MAX,
            "questionnaires": {instrument: questionnaire_items(kb, instrument) for instrument in QUESTIONNAIRES},
            "questionnaire_names": QUESTIONNAIRES,
            "hfs30_subscales": kb.scales["hfs30"].domains,
            "grades": outcome_service.recent_grades(session, patient=patient),
            "answers": outcome_service.recent_questionnaires(session, patient=patient),
            "diary": outcome_service.recent_diary(session, patient=patient),
            "posted": posted,
            "removed": None if posted else request.query_params.get("removed"),
            "recalls_changed": None if posted else request.query_params.get("recalls"),
        }
    audit_read(request, user, entity="patient", entity_id=code)
    return _page(request, "patient.html", user, status_code=status_code, **context)


def _history(found: outcome_service.Records, kb: KnowledgeBase) -> list[dict[str, Any]]:
    """The patient's treatment sessions, oldest first, each with what was given and what came of it in words, and
    whether a prescription is still taken (a herbal one can be marked stopped until its days are over)."""
    formula_names = {formula.id: formula.pinyin for formula in kb.formulas.values()}
    taken = {row.id for row in session_service.running(found.sessions, today=dt.date.today())}
    return [
        {
            "id": row.id,
            "kind": row.kind,
            "date": row.date,
            "clinician": row.clinician,
            "data": row.data,
            "what": session_service.describe(row.kind, row.data, formula_names=formula_names),
            "outcome": session_service.outcome_words(row.kind, row.data),
            "running": row.id in taken,
            "last_day": session_service.last_day(row) if row.kind in ("herbal", "medicine") else None,
        }
        for row in found.sessions
    ]


@router.get("/patients/{code}/plans/{number}")
def plan_version_page(code: PatientCode, number: RecordNumber, request: Request, user: PageUser) -> HTMLResponse:
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
        reference_urls=kb.reference_links(),
        treatment_names=kb.treatment_names(),
        herbs=kb.herbs,
    )


@router.get("/patients/{code}/assessment")
def assessment_page(code: PatientCode, request: Request, user: PageUser) -> HTMLResponse:
    require_care_team(user)
    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        latest = assessment_service.newest(session, patient=patient)
    values = forms.form_from_assessment(latest.data if latest else {"sex": patient.sex})
    values["keep.hfs30"] = True
    return _page(request, "assessment.html", user, patient_code=code, values=values, errors={}, **_kept_context(latest))


def _kept_context(latest: StoredAssessment | None) -> dict[str, Any]:
    """What the form keeps of the latest assessment without showing it in a field, and that assessment's date."""
    return {
        "kept": forms.not_on_form(latest.data if latest else None),
        "kept_from": latest.assessed_on if latest else None,
    }


@router.post("/patients/{code}/assessment")
def assessment_submit(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    with request.app.state.readers.begin() as session:
        latest = assessment_service.newest(session, patient=patient_service.get(session, code=code))
    kept = _kept_context(latest)
    data = forms.with_kept(
        forms.assessment_from_form(code, form), kept["kept"], keep_hfs30=form.get("keep.hfs30") == "on"
    )
    try:
        assessment = validate_assessment(data)
    except InputError as exc:
        values = {**forms.form_from_assessment({}), **{k: v for k, v in form.single.items()}}
        for name in ("regions", "tcm.pulse", "tcm.findings"):
            values[name] = form.all(name)
        for name in ("pregnant", "breastfeeding", "keep.hfs30", *(f"preferences.{p}" for p in forms.PREFERENCES)):
            values[name] = form.get(name) == "on"
        return _page(
            request,
            "assessment.html",
            user,
            status_code=422,
            patient_code=code,
            values=values,
            errors=forms.errors_by_field(exc.problems),
            **kept,
        )
    with request.app.state.sessions.begin() as session:
        answer = _once(session, request, user, form, f"/patients/{code}#plan")
        patient = patient_service.get(session, code=code)
        plan_service.assess(
            session,
            patient=patient,
            assessment=assessment,
            kb=request.app.state.kb,
            actor=user.username,
            today=dt.date.today(),
        )
    return answer


@router.post("/patients/{code}/plans")
def new_plan_version(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
    """A new version of the plan from the latest assessment and the sessions recorded since the last one was made
    (a toxin session, its effect and side effects, an operation's result, a medicine or herbs prescribed or stopped),
    for the clinicians to sign again."""
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    with request.app.state.sessions.begin() as session:
        answer = _once(session, request, user, form, f"/patients/{code}#plan")
        patient = patient_service.get(session, code=code)
        today = dt.date.today()
        plan_service.generate(
            session, patient=patient, kb=request.app.state.kb, actor=user.username, today=today, via="records"
        )
    return answer


@router.post("/patients/{code}/sign")
def sign(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
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
        names["sign_reason"] = ("sign_reason", "Note with the signature")
        if len(form.get("sign_reason")) > REASON_MAX:
            problems.append(
                FieldProblem("sign_reason", f"at most {REASON_MAX} characters, got {len(form.get('sign_reason'))}")
            )
        version = forms.counting_number(form.get("version"))
        if version is None:
            raise InputError([FieldProblem("version", "missing: reload the page")])
        if not problems:
            done = _once(session, request, user, form, f"/patients/{code}#plan")
            plan_service.sign(
                session,
                patient=patient,
                expected_number=version,
                edits=edits,
                signer=user.username,
                role=user.role,
                kb=request.app.state.kb,
                reason=form.get("sign_reason") or None,
            )
    if problems:  # the page again, with the choices made and the reasons typed (outside the write transaction)
        return _patient_page(request, user, code, posted=_refused("sign", form, problems, names), status_code=422)
    return done


def _may_record(form: forms.FormData, user: Principal, roles: tuple[str, ...], what: str) -> None:
    """Check the role and the CSRF token of a session-recording form."""
    require_role(user, roles, what)
    check_csrf(user, form.get("csrf_token"))


_OVERRIDE_HERE = "give the reason below to record it anyway"
_OVERRIDE_BOX: FieldNames = {"details.override_reason": ("override_reason", "Reason")}
# The session forms' inputs that every kind has.
_COMMON: FieldNames = {"date": ("date", "Date"), "details.notes": ("notes", "Notes")}


def _record_session(
    request: Request,
    user: Principal,
    code: str,
    form: forms.FormData,
    details: dict[str, Any],
    names: FieldNames,
    unfinished: list[FieldProblem] | None = None,
) -> Response:
    """Validate and store a session from one of the session forms, then show the history; a refused one comes back
    on the patient's page (``names``: the form's inputs and labels by problem path). ``unfinished``: problems the
    form found itself (a row half filled in), shown beside those of the rest, which is checked all the same."""
    payload = {"date": form.get("date") or dt.date.today().isoformat(), "clinician": user.full_name, "details": details}
    unfinished = unfinished or []
    try:
        with request.app.state.sessions.begin() as session:
            try:
                data = validate_model(SessionCreate, payload)
                answer = _once(session, request, user, form, f"/patients/{code}#history")
                patient = patient_service.get(session, code=code)
                session_service.record(
                    session, patient=patient, data=data, kb=request.app.state.kb, actor=user.username
                )
            except InputError as exc:
                raise InputError([*unfinished, *exc.problems]) from None
            if unfinished:  # the rest passed its checks; raising here rolls its writing back
                raise InputError(unfinished)
    except InputError as exc:
        # The page again, the form as it was typed (a dozen dose boxes are not retyped) and its problems beside it,
        # in the form's words: the reason is the box below, not the API's details.override_reason.
        said = [FieldProblem(p.path, p.message.replace(session_service.OVERRIDE, _OVERRIDE_HERE)) for p in exc.problems]
        posted = _refused(details["kind"], form, said, {**_COMMON, **names})
        return _patient_page(request, user, code, posted=posted, status_code=422)
    return answer


@router.post("/patients/{code}/sessions/toxin")
def record_toxin(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Record a toxin session from the face-map form: units per site and side."""
    _may_record(form, user, CONVENTIONAL_SIGNERS, "record a toxin session")
    labels = {site.id: site.label for site in request.app.state.kb.toxin_programme().sites}
    sites: list[dict[str, str]] = []
    names: FieldNames = {
        "details.product": ("product", "Product"),
        "details.lot": ("lot", "Lot"),
        "details.sites": ("", "Units"),
        **_OVERRIDE_BOX,
    }
    for name, value in form.single.items():
        if name.startswith("units.") and value.strip():
            _, site, side = name.split(".", 2)
            label = f"Units, {labels.get(site, site)}, {side}"
            for field in ("units", "side", "site"):  # any problem with this row is the dose box's
                names[f"details.sites.{len(sites)}.{field}"] = (name, label)
            sites.append({"site": site, "side": side, "units": value.strip()})
    effects = _side_effects(form, names, "details.")
    details: dict[str, Any] = {
        "kind": "toxin",
        "product": form.get("product"),
        "lot": form.get("lot"),
        "sites": sites,
        "adverse_effects": effects,
    }
    details["override_reason"] = form.get("override_reason") or None
    return _record_session(request, user, code, form, details, names)


@router.post("/patients/{code}/sessions/acupuncture")
def record_acupuncture(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
    _may_record(form, user, INTEGRATIVE_SIGNERS, "record an acupuncture session")
    details = {
        "kind": "acupuncture",
        "points": form.all("points"),
        "electro": form.get("electro") == "on",
        "notes": form.get("notes") or None,
        "override_reason": form.get("override_reason") or None,
    }
    names: FieldNames = {"details.points": ("", "Points"), **_OVERRIDE_BOX}
    names |= {f"details.points.{index}": ("", f"Point {point}") for index, point in enumerate(form.all("points"))}
    return _record_session(request, user, code, form, details, names)


@router.post("/patients/{code}/sessions/herbal")
def record_herbal(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Record a herbal prescription: the plan's formula (as shown, after safety removals) at the doses typed, and
    any herbs written in the rows below it (added to the formula, or the whole prescription where the plan gives no
    formula). The formula is named only if one of its own herbs is given."""
    _may_record(form, user, INTEGRATIVE_SIGNERS, "record a prescription")
    herbs: list[dict[str, str]] = []
    names: FieldNames = {
        "details.herbs": ("", "Herbs"),
        "details.preparation": ("preparation", "Taken as"),
        "details.duration_days": ("duration_days", "Days"),
        **_OVERRIDE_BOX,
    }
    for name, value in form.single.items():
        if name.startswith("dose.") and value.strip():
            latin = name.removeprefix("dose.")
            names[f"details.herbs.{len(herbs)}.dose_g"] = (name, f"Dose of {latin}")
            names[f"details.herbs.{len(herbs)}.latin"] = (name, f"Dose of {latin}")
            herbs.append({"latin": latin, "dose_g": value.strip()})
    of_formula = len(herbs)
    unfinished: list[FieldProblem] = []
    row_name = "Added herb" if form.get("formula") else "Herb"  # as the form's rows are labelled
    for row in range(ADDED_HERB_ROWS):
        chosen, dose = form.get(f"added.{row}.latin"), form.get(f"added.{row}.dose")
        label = f"{row_name} {row + 1}" + (f" ({chosen})" if chosen else "")
        if not chosen and not dose:
            continue
        if not chosen or not dose:  # half a row: said in the form's words, beside the box left empty
            box, said = (
                (f"added.{row}.latin", "choose the herb this dose is for")
                if dose
                else (f"added.{row}.dose", "give its dose in grams a day")
            )
            unfinished.append(FieldProblem(box, f"{said}, or clear the row"))
            names[box] = (box, label)
            continue
        names[f"details.herbs.{len(herbs)}.latin"] = (f"added.{row}.latin", label)
        names[f"details.herbs.{len(herbs)}.dose_g"] = (f"added.{row}.dose", f"{label}: dose")
        herbs.append({"latin": chosen, "dose_g": dose})
    details = {
        "kind": "herbal",
        "formula": (form.get("formula") or None) if of_formula else None,
        "preparation": form.get("preparation") or "decoction",
        "herbs": herbs,
        "duration_days": form.get("duration_days"),
        "override_reason": form.get("override_reason") or None,
    }
    return _record_session(request, user, code, form, details, names, unfinished)


@router.post("/patients/{code}/sessions/medicine")
def record_medicine(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Record an oral medicine prescribed: the medicine, the dose as written, the course's days if any."""
    _may_record(form, user, SESSION_ROLES["medicine"], "record a prescription")
    details = {
        "kind": "medicine",
        "medicine": form.get("medicine"),
        "dose": form.get("dose"),
        "duration_days": form.get("duration_days") or None,
        "notes": form.get("notes") or None,
        "override_reason": form.get("override_reason") or None,
    }
    names: FieldNames = {
        "details.medicine": ("medicine", "Medicine"),
        "details.dose": ("dose", "Dose"),
        "details.duration_days": ("duration_days", "Days"),
        **_OVERRIDE_BOX,
    }
    return _record_session(request, user, code, form, details, names)


@router.post("/patients/{code}/sessions/procedure")
def record_procedure(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Record a nerve block or a radiofrequency ablation of the facial nerve: which, the side done, notes."""
    _may_record(form, user, SESSION_ROLES["procedure"], "record a procedure")
    details = {
        "kind": "procedure",
        "procedure": form.get("procedure"),
        "side": form.get("side"),
        "notes": form.get("notes") or None,
        "override_reason": form.get("override_reason") or None,
    }
    names: FieldNames = {
        "details.procedure": ("procedure", "Procedure"),
        "details.side": ("side", "Side"),
        "details.notes": ("notes", "Notes"),
        **_OVERRIDE_BOX,
    }
    return _record_session(request, user, code, form, details, names)


@router.post("/patients/{code}/sessions/mvd")
def record_mvd(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Record a microvascular decompression: the neurosurgeon signed in is the surgeon; the result may follow later."""
    _may_record(form, user, SESSION_ROLES["mvd"], "record an operation")
    details = {
        "kind": "mvd",
        "surgeon": user.full_name,
        "result": form.get("result") or None,
        "notes": form.get("notes") or None,
        "override_reason": form.get("override_reason") or None,
    }
    return _record_session(
        request, user, code, form, details, {"details.result": ("result", "Result"), **_OVERRIDE_BOX}
    )


def _record_questionnaire(
    code: str, request: Request, user: Principal, form: forms.FormData, instrument: str, *, grouped: bool = False
) -> Response:
    """Answers the patient gave on paper or in the clinic, entered by the care team: they join the patient's own
    answers on the chart and in the recalls (no portal account needed). An HFS-30 is entered item by item or, from a
    form that groups its items by subscale, subscale by subscale (its form is "hfs30-subscales")."""
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    kb = request.app.state.kb
    given: Any
    given, problems, names = subscale_answers(kb, form) if grouped else questionnaire_answers(kb, form, instrument)
    kind = f"{instrument}-subscales" if grouped else instrument
    data = None
    if not problems:
        payload = {"date": form.get("date") or dt.date.today().isoformat(), "instrument": instrument, "answers": given}
        try:
            data = validate_model(QuestionnaireCreate, payload)
        except InputError as exc:
            problems = exc.problems
    if data is None:  # the page again, the answers as chosen and each problem beside its label
        posted = _refused(kind, form, problems, {**names, "date": ("date", "Date answered")})
        return _patient_page(request, user, code, posted=posted, status_code=422)
    with request.app.state.sessions.begin() as session:
        answer = _once(session, request, user, form, f"/patients/{code}#outcomes")
        patient = patient_service.get(session, code=code)
        outcome_service.add_questionnaire(session, patient=patient, data=data, actor=user.username)
    return answer


@router.post("/patients/{code}/questionnaires/hfs7")
def record_hfs7(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
    """An HFS-7 answered on paper."""
    return _record_questionnaire(code, request, user, form, "hfs7")


@router.post("/patients/{code}/questionnaires/hfs30")
def record_hfs30(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
    """An HFS-30 answered on paper, its thirty items in the order of the form in use (its subscales not known)."""
    return _record_questionnaire(code, request, user, form, "hfs30")


@router.post("/patients/{code}/questionnaires/hfs30/subscales")
def record_hfs30_by_subscale(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
    """An HFS-30 answered on a form that groups its items by subscale: each subscale's answers, and its score kept."""
    return _record_questionnaire(code, request, user, form, "hfs30", grouped=True)


# The grades form's inputs and labels by problem path ("" is a problem of the whole form: no grade at all).
_GRADES: FieldNames = {
    "": ("", "Grades"),
    "date": ("date", "Date of the visit"),
    "smc_grade": ("smc_grade", "SMC grade"),
    "jankovic_severity": ("jankovic_severity", "Jankovic severity"),
    "jankovic_frequency": ("jankovic_frequency", "Jankovic frequency"),
    "cohen_albert": ("cohen_albert", "Cohen-Albert grade"),
}


@router.post("/patients/{code}/grades")
def record_grades(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Severity grades from a visit, entered by the care team; grades at a post-MVD review clear that recall."""
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    payload = {name: form.get(name) or None for name in _GRADES if name not in ("", "date")}
    try:
        data = validate_model(GradesCreate, {"date": form.get("date") or dt.date.today().isoformat(), **payload})
    except InputError as exc:
        posted = _refused("grades", form, exc.problems, _GRADES)
        return _patient_page(request, user, code, posted=posted, status_code=422)
    with request.app.state.sessions.begin() as session:
        answer = _once(session, request, user, form, f"/patients/{code}#outcomes")
        patient = patient_service.get(session, code=code)
        outcome_service.add_grades(session, patient=patient, data=data, actor=user.username)
    return answer


@router.post("/patients/{code}/questionnaires/{answer_id}/remove")
def remove_questionnaire(
    code: PatientCode, answer_id: RecordNumber, request: Request, user: PageUser, form: PostedForm
) -> Response:
    """Questionnaire answers entered by mistake (the wrong patient, a wrong date), removed by the care team with a
    reason; the audit trail keeps them."""
    return _remove_outcome(request, user, code, form, "questionnaire", answer_id)


@router.post("/patients/{code}/diary/{entry_id}/remove")
def remove_diary(
    code: PatientCode, entry_id: RecordNumber, request: Request, user: PageUser, form: PostedForm
) -> Response:
    """A diary entry that distorts the chart (2,000 spasms for 20, another patient's day), removed by the care team
    with a reason; the audit trail keeps it."""
    return _remove_outcome(request, user, code, form, "diary", entry_id)


@router.post("/patients/{code}/grades/{grades_id}/remove")
def remove_grades(
    code: PatientCode, grades_id: RecordNumber, request: Request, user: PageUser, form: PostedForm
) -> Response:
    """A visit's grades entered by mistake, removed by the care team with a reason; the audit trail keeps them."""
    return _remove_outcome(request, user, code, form, "grades", grades_id)


@router.post("/patients/{code}/sessions/{session_id}/remove")
def remove_session(
    code: PatientCode, session_id: RecordNumber, request: Request, user: PageUser, form: PostedForm
) -> Response:
    """A treatment session entered by mistake (the wrong patient, a wrong dose, twice), removed with a reason by the
    roles that record its kind, to be recorded again as it was; the audit trail keeps it."""
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    with request.app.state.readers.begin() as session:
        row = session_service.get(session, patient=patient_service.get(session, code=code), session_id=session_id)
        kind = row.kind
    require_role(user, SESSION_ROLES[kind], f"remove a {kind} session")
    try:
        data = _why(form, Removal, {})
    except InputError as exc:  # the page again, this row's form open with its problem
        posted = _refused("remove-session", form, exc.problems, {"reason": ("reason", "Why remove it")})
        return _patient_page(request, user, code, posted={**posted, "row": session_id}, status_code=422)
    with request.app.state.sessions.begin() as session:
        answer = _once(session, request, user, form, f"/patients/{code}?removed=session#history")
        patient = patient_service.get(session, code=code)
        session_service.remove(session, patient=patient, session_id=session_id, actor=user.username, reason=data.reason)
    return answer


def _remove_outcome(
    request: Request, user: Principal, code: str, form: forms.FormData, entity: str, row_id: int
) -> Response:
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    try:
        data = _why(form, Removal, {})
    except InputError as exc:  # the page again, this row's form open with its problem
        posted = _refused(f"remove-{entity}", form, exc.problems, {"reason": ("reason", "Why remove it")})
        return _patient_page(request, user, code, posted={**posted, "row": row_id}, status_code=422)
    with request.app.state.sessions.begin() as session:
        answer = _once(session, request, user, form, f"/patients/{code}?removed={entity}#outcomes")
        patient = patient_service.get(session, code=code)
        outcome_service.remove(
            session, patient=patient, entity=entity, row_id=row_id, actor=user.username, reason=data.reason
        )
    return answer


def _why(form: forms.FormData, model: type[M], values: dict[str, Any]) -> M:
    """A form asking why (_why.html) as ``model``: a reason too short is said in the page's words."""
    if len(form.get("reason").strip()) < 3:
        raise InputError([FieldProblem("reason", "say why (3 characters or more)")])
    return validate_model(model, {**values, "reason": form.get("reason")})


@router.post("/patients/{code}/recalls/{recall}/close")
def close_recall(code: PatientCode, recall: str, request: Request, user: PageUser, form: PostedForm) -> Response:
    """Close a kind of recall that no longer applies (the patient stopped that treatment, chose another, or is
    followed elsewhere), with a reason; it is due again once its treatment happens again."""
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    if recall not in RECALLS:
        raise NotFoundError(f"there is no recall {quoted(recall)} (one of {', '.join(RECALLS)})")
    may_close_recall(user, recall)
    try:
        data = _why(form, RecallClose, {"recall": recall})
    except InputError as exc:
        posted = _refused("close-recall", form, exc.problems, {"reason": ("reason", "Why close it")})
        return _patient_page(request, user, code, posted={**posted, "row": recall}, status_code=422)
    with request.app.state.sessions.begin() as session:
        answer = _once(session, request, user, form, f"/patients/{code}?recalls=closed#due")
        patient = patient_service.get(session, code=code)
        recall_service.close(
            session, patient=patient, recall=recall, reason=data.reason, actor=user.username, today=dt.date.today()
        )
    return answer


@router.post("/patients/{code}/recall-closures/{closure_id}/reopen")
def reopen_recall(
    code: PatientCode, closure_id: RecordNumber, request: Request, user: PageUser, form: PostedForm
) -> Response:
    """Reopen a recall closed by mistake, or when the patient changes their mind."""
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    with request.app.state.sessions.begin() as session:
        answer = _once(session, request, user, form, f"/patients/{code}?recalls=reopened#due")
        patient = patient_service.get(session, code=code)
        closure = recall_service.closure(session, patient=patient, closure_id=closure_id)
        may_close_recall(user, closure.recall)
        recall_service.reopen(session, patient=patient, closure=closure, actor=user.username)
    return answer


@router.post("/patients/{code}/sessions/{session_id}/outcome")
def record_session_outcome(
    code: PatientCode, session_id: RecordNumber, request: Request, user: PageUser, form: PostedForm
) -> Response:
    """Add a toxin session's or a procedure's effect and side effects, an operation's result or the day a medicine or
    a herbal prescription was stopped, from the treatment history."""
    require_care_team(user)
    check_csrf(user, form.get("csrf_token"))
    payload: dict[str, Any] = {"reason": form.get("reason") or None}
    if form.get("effect_weeks"):
        payload["effect_weeks"] = form.get("effect_weeks")
    names = dict(_OUTCOME)
    if form.get("adverse_effects"):
        payload["adverse_effects"] = _side_effects(form, names, "")
    if form.get("result"):
        payload["result"] = form.get("result")
    if form.get("stopped"):
        payload["stopped"] = form.get("stopped")
    try:
        outcome = validate_model(SessionOutcome, payload)
        with request.app.state.sessions.begin() as session:
            answer = _once(session, request, user, form, f"/patients/{code}#history")
            patient = patient_service.get(session, code=code)
            row = session_service.get(session, patient=patient, session_id=session_id)
            require_role(user, SESSION_ROLES[row.kind], f"record the outcome of a {row.kind} session")
            session_service.record_outcome(
                session, patient=patient, session_id=session_id, outcome=outcome, actor=user.username
            )
    except InputError as exc:  # the page again, this row's form as it was typed and its problems beside it
        posted = _refused("outcome", form, exc.problems, names)
        return _patient_page(request, user, code, posted={**posted, "row": session_id}, status_code=422)
    return answer


_SIDE_EFFECTS = ("adverse_effects", "Side effects")  # the box of the toxin form and of an outcome form


def _side_effects(form: forms.FormData, names: FieldNames, prefix: str) -> list[str]:
    """The side effects typed in a form's box, comma-separated; a problem with any one of them (``prefix``
    ``adverse_effects.N``, too long say) is shown beside the box that holds them all."""
    effects = [effect.strip() for effect in form.get("adverse_effects").split(",") if effect.strip()]
    for index in range(len(effects)):
        names[f"{prefix}adverse_effects.{index}"] = _SIDE_EFFECTS
    return effects


# The treatment history's outcome forms (one per row, patient.html), by problem path.
_OUTCOME: FieldNames = {
    "": ("", "Outcome"),
    "effect_weeks": ("effect_weeks", "Weeks it worked"),
    "adverse_effects": _SIDE_EFFECTS,
    "result": ("result", "Result"),
    "stopped": ("stopped", "Day stopped"),
    "reason": ("", "Reason"),
}


@router.get("/patients/{code}/plan.pdf")
def plan_pdf(
    code: PatientCode, request: Request, user: PageUser, kind: str = "patient", to: str | None = None
) -> Response:
    """The plan as a printable PDF: for the patient, or as a referral letter to another specialty (``to``; the
    patient page's form also adds the sender's question)."""
    require_patient_access(user, code)
    if kind not in ("patient", "referral"):
        raise InputError([FieldProblem("kind", f"{quoted(kind)} is not patient or referral")])
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
        options=plain_options(parts, reviewed, request.app.state.kb),
        due=due,
    )
    return _pdf(body, f"{code}-patient.pdf")


@router.post("/patients/{code}/referral.pdf")
def referral_letter(code: PatientCode, request: Request, user: PageUser, form: PostedForm) -> Response:
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
        problems.append(FieldProblem("to", f"{quoted(target)} is not a specialty you refer to ({allowed})"))
    if len(question) > QUESTION_MAX:
        problems.append(FieldProblem("question", f"{len(question)} characters; at most {QUESTION_MAX}"))
    if problems:
        raise InputError(problems)
    kb = request.app.state.kb
    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        plan = _plan_or_404(session, patient)
        stored, assessment = assessment_service.latest_read(session, patient=patient)
        found = outcome_service.records(session, patient=patient)
        stated = outcome_service.stated_preferences(session, patient=patient)
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
            scale_names=kb.scale_names(),
            stated=outcome_service.stated_against(stated, stored.data if stored else None),
            stated_on=stated.date if stated else None,
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
