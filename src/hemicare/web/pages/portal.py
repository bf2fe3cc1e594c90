"""The patient's own pages: their diary, the HFS-7, their plan in plain words and what is next."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from hemicare.engine.intake import validate_model
from hemicare.errors import InputError
from hemicare.outcomes import service as outcome_service
from hemicare.outcomes.schemas import DiaryCreate, PreferencesStated, QuestionnaireCreate
from hemicare.patients import service as patient_service
from hemicare.plans import service as plan_service
from hemicare.recalls import service as recall_service
from hemicare.sessions import service as session_service
from hemicare.web import forms
from hemicare.web.auth import PageUser, Principal, audit_read, check_csrf, require_role
from hemicare.web.pages._shared import (
    FieldNames,
    PostedForm,
    _chart,
    _once,
    _page,
    _refused,
    questionnaire_answers,
    questionnaire_items,
)
from hemicare.web.payload import RecordNumber
from hemicare.web.plain import due_words, plain_options, plain_parts, taking_words, things_to_know

router = APIRouter(include_in_schema=False)


def _own_code(user: Principal) -> str:
    require_role(user, ("patient",), "use the patient pages")
    assert user.patient_code is not None
    return user.patient_code


@router.get("/me")
def my_page(request: Request, user: PageUser) -> HTMLResponse:
    return _my_page(request, user)


def _my_page(
    request: Request, user: Principal, *, posted: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """The patient's page; ``posted`` brings back a diary entry that was refused, as typed, with its problems."""
    code = _own_code(user)
    with request.app.state.readers.begin() as session:
        patient = patient_service.get(session, code=code)
        parts, reviewed = plan_service.reviewed_parts(session, patient=patient)
        due = recall_service.due(
            session, kb=request.app.state.kb, today=dt.date.today(), horizon_days=120, patient_id=patient.id
        )
        found = outcome_service.records(session, patient=patient)
        taking = taking_words(session_service.running(found.sessions, today=dt.date.today()), request.app.state.kb)
        chart = _chart(found, patient, request.app.state.kb)
        monthly = outcome_service.summarise(found, patient=patient, kb=request.app.state.kb).monthly
        plain = plain_parts(parts, reviewed, request.app.state.kb)
        entries = outcome_service.recent_diary(session, patient=patient)
        stated = outcome_service.stated_preferences(session, patient=patient)
        answers = outcome_service.recent_questionnaires(session, patient=patient)
    audit_read(request, user, entity="patient", entity_id=code)
    return _page(
        request,
        "me.html",
        user,
        patient=patient,
        plain=plain,
        warnings=things_to_know(reviewed),  # as the printed plan says them
        options=plain_options(parts, reviewed, request.app.state.kb),
        statements=outcome_service.PREFERENCE_STATEMENTS,
        stances=outcome_service.STANCES,
        stated=stated,
        reference_urls=request.app.state.kb.reference_links(),
        entries=entries,
        answers=answers,
        due=[due_words(item) for item in due],
        taking=taking,
        chart=chart,
        monthly=monthly,
        scores=found.scores,
        scale_names=request.app.state.kb.scale_names(),
        posted=posted,
        today=dt.date.today().isoformat(),
        saved=None if posted else request.query_params.get("saved"),
        status_code=status_code,
    )


# The diary form's inputs by problem path, with the words of their labels.
_DIARY_FIELDS: FieldNames = {
    "date": ("date", "Date"),
    "spasms": ("spasms", "How many spasms"),
    "per": ("per", "Counted per"),
    "intensity": ("intensity", "How strong"),
    "triggers": ("", "What made it worse"),
}


@router.post("/me/diary")
def my_diary(request: Request, user: PageUser, form: PostedForm) -> Response:
    _own_code(user)
    check_csrf(user, form.get("csrf_token"))
    payload = {
        "date": form.get("date") or dt.date.today().isoformat(),
        "spasms": form.get("spasms"),
        "per": form.get("per") or "day",
        "intensity": form.get("intensity"),
        "triggers": form.all("triggers"),
        "note": form.get("note") or None,
    }
    return _store_mine(
        request, user, form, DiaryCreate, payload, kind="diary", fields=_DIARY_FIELDS, store=outcome_service.add_diary
    )


# The form of what matters to the patient: each statement's answers by problem path, under the statement's words.
_PREFERENCE_FIELDS: FieldNames = {
    "answers": ("", "What matters to you"),
    **{f"answers.{key}": (f"pref.{key}", words) for key, words in outcome_service.PREFERENCE_STATEMENTS.items()},
}


@router.post("/me/preferences")
def my_preferences(request: Request, user: PageUser, form: PostedForm) -> Response:
    """The patient says what matters to them in choosing a treatment, for their care team to see beside the plan."""
    _own_code(user)
    check_csrf(user, form.get("csrf_token"))
    answers = {key: form.get(f"pref.{key}") for key in outcome_service.PREFERENCE_STATEMENTS if form.get(f"pref.{key}")}
    payload = {"date": dt.date.today().isoformat(), "answers": answers}
    return _store_mine(
        request,
        user,
        form,
        PreferencesStated,
        payload,
        kind="preferences",
        fields=_PREFERENCE_FIELDS,
        store=outcome_service.state_preferences,
        back="#matters",
    )


def _store_mine(
    request: Request,
    user: Principal,
    form: forms.FormData,
    model: type[BaseModel],
    payload: dict[str, Any],
    *,
    kind: str,
    fields: FieldNames,
    store: Callable[..., object],
    back: str = "",
) -> Response:
    """Store what the patient sent from a form of their page (``kind``: its name, and the ``saved`` word of the page it
    goes back to, at ``back``), or show the page again with it as typed, each problem under the words of its label."""
    try:
        data = validate_model(model, payload)
    except InputError as exc:  # the page again with what was typed: nothing to type twice
        return _my_page(request, user, posted=_refused(kind, form, exc.problems, fields), status_code=422)
    with request.app.state.sessions.begin() as session:
        answer = _once(session, request, user, form, f"/me?saved={kind}{back}")
        store(session, patient=patient_service.get(session, code=_own_code(user)), data=data, actor=user.username)
    return answer


@router.post("/me/diary/{entry_id}/remove")
def my_diary_remove(entry_id: RecordNumber, request: Request, user: PageUser, form: PostedForm) -> Response:
    """The patient removes one of their diary entries entered by mistake."""
    return _remove_mine(request, user, form, "diary", entry_id, "#entries")


@router.post("/me/questionnaires/{answer_id}/remove")
def my_questionnaire_remove(answer_id: RecordNumber, request: Request, user: PageUser, form: PostedForm) -> Response:
    """The patient removes questionnaire answers of theirs sent by mistake (twice, say)."""
    return _remove_mine(request, user, form, "questionnaire", answer_id, "#answers")


def _remove_mine(
    request: Request, user: Principal, form: forms.FormData, entity: str, row_id: int, anchor: str
) -> Response:
    code = _own_code(user)
    check_csrf(user, form.get("csrf_token"))
    with request.app.state.sessions.begin() as session:
        answer = _once(session, request, user, form, f"/me?saved=removed-{entity}{anchor}")
        patient = patient_service.get(session, code=code)
        outcome_service.remove(
            session,
            patient=patient,
            entity=entity,
            row_id=row_id,
            actor=user.username,
            reason=outcome_service.BY_THE_PATIENT,
            by_patient=True,
        )
    return answer


@router.get("/me/hfs7")
def my_hfs7_page(request: Request, user: PageUser) -> HTMLResponse:
    _own_code(user)
    return _page(request, "hfs7.html", user, form=questionnaire_items(request.app.state.kb), posted=None)


@router.post("/me/hfs7")
def my_hfs7(request: Request, user: PageUser, form: PostedForm) -> Response:
    code = _own_code(user)
    check_csrf(user, form.get("csrf_token"))
    given, problems, names = questionnaire_answers(request.app.state.kb, form)
    if problems:  # the answers given come back chosen
        posted = _refused("hfs7", form, problems, names)
        shown = questionnaire_items(request.app.state.kb)
        return _page(request, "hfs7.html", user, form=shown, posted=posted, status_code=422)
    data = validate_model(
        QuestionnaireCreate, {"date": dt.date.today().isoformat(), "instrument": "hfs7", "answers": given}
    )
    with request.app.state.sessions.begin() as session:
        answer = _once(session, request, user, form, "/me?saved=hfs7")
        outcome_service.add_questionnaire(
            session, patient=patient_service.get(session, code=code), data=data, actor=user.username
        )
    return answer
