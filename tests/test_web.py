"""Web routes through the ASGI client: sign-in, roles against protected routes, CSRF, API errors, audit, logs."""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import itertools
import logging
import os
import re
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, update
from starlette.datastructures import QueryParams

from hemicare import __version__
from hemicare.audit.models import AuditEntry
from hemicare.db.base import utcnow
from hemicare.db.engine import session_factory
from hemicare.engine import build_plan, load_default, validate_assessment
from hemicare.engine.check import run_all
from hemicare.engine.intake import read_file
from hemicare.errors import quoted
from hemicare.limits import CODE_MAX
from hemicare.outcomes import service as outcome_service
from hemicare.outcomes.models import DiaryEntry, QuestionnaireAnswer, ScaleGrade, StatedPreferences
from hemicare.outcomes.schemas import DiaryCreate, GradesCreate, QuestionnaireCreate
from hemicare.patients import service as patient_service
from hemicare.patients.models import Patient
from hemicare.plans import service as plan_service
from hemicare.plans.models import PlanVersion
from hemicare.recalls import service as recall_service
from hemicare.recalls.models import RecallClosure
from hemicare.sessions import service as session_service
from hemicare.sessions.models import TreatmentSession
from hemicare.sessions.schemas import SessionCreate
from hemicare.users import service as user_service
from hemicare.users.models import SentForm, SignInFailure, WebSession
from hemicare.users.schemas import UserCreate
from hemicare.web import api, create_app, once, pages

from .conftest import DATABASES, EXAMPLES, empty_database
from .test_charts import drawn_squares

PASSWORD = "correct horse battery"
USERS = {
    "neuro": "neurologist",
    "surgeon": "neurosurgeon",
    "tcm": "tcm_practitioner",
    "admin": "admin",
    "patient1": "patient",
    "patient2": "patient",
}


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 with small costs in tests only: the same code path, without seconds of hashing per test."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(user_service, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """The web routes run on SQLite (the storage layer is tested on PostgreSQL too, in test_records); a test that
    takes ``db_url`` as a parameter (``ON_EVERY_DATABASE``) runs on each database the suite has."""
    with empty_database(getattr(request, "param", "sqlite"), tmp_path) as url:
        yield url


ON_EVERY_DATABASE = pytest.mark.parametrize("db_url", DATABASES, indirect=True)


@pytest.fixture
def clinic(engine: Engine) -> Engine:
    from hemicare.assessments import service as assessments
    from hemicare.engine import validate_assessment
    from hemicare.patients import service as patients
    from hemicare.patients.schemas import PatientCreate
    from hemicare.plans import service as plans

    kb = load_default()
    with session_factory(engine)() as s, s.begin():
        for code, name in (("demo-001", "Mei Lin"), ("demo-002", "Arjun Patel")):
            patient = patients.create(s, data=PatientCreate(code=code, name=name, sex="female"), actor="setup")
            data = read_file(EXAMPLES / "demo-001.yaml") | {"id": code}
            assessments.record(
                s, patient=patient, assessment=validate_assessment(data), actor="setup", today=dt.date.today()
            )
            plans.generate(s, patient=patient, kb=kb, actor="setup", today=dt.date.today())
        for username, role in USERS.items():
            link = {"patient1": "demo-001", "patient2": "demo-002"}.get(username)
            user_service.create(
                s,
                data=UserCreate(
                    username=username, full_name=username.title(), role=role, patient_code=link, password=PASSWORD
                ),
                actor="setup",
            )
    return engine


@pytest.fixture
def app(clinic: Engine, db_url: str) -> Iterator[Any]:
    made = create_app(database_url=db_url)
    yield made
    made.state.engine.dispose()


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as test_client:
        yield test_client


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in and return the CSRF token of the session."""
    response = client.post("/login", data={"username": username, "password": password, "next": "/"})
    assert response.status_code == 303, response.text
    # An account made in the test itself may hold a temporary password: its account page carries the token too.
    landing = (
        {"patient": "/me", "admin": "/admin"}.get(USERS[username], "/patients") if username in USERS else "/account"
    )
    page = client.get(landing)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def _audit_count(engine: Engine, **where: str) -> int:
    with session_factory(engine)() as s:
        query = select(func.count()).select_from(AuditEntry)
        for key, value in where.items():
            query = query.where(getattr(AuditEntry, key) == value)
        return int(s.scalar(query) or 0)


def test_pages_need_sign_in_and_api_needs_credentials(client: TestClient) -> None:
    page = client.get("/patients/demo-001")
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/patients/demo-001"
    api = client.get("/api/v1/patients")
    assert api.status_code == 401 and api.json()["errors"][0]["message"].startswith("sign in")


def test_a_session_left_unused_ends_and_the_sign_in_page_says_why(client: TestClient, clinic: Engine) -> None:
    def last_seen(ago: dt.timedelta | None) -> None:
        with session_factory(clinic)() as s, s.begin():
            s.execute(update(WebSession).values(last_seen_at=None if ago is None else utcnow() - ago))

    def written() -> dt.datetime:
        with session_factory(clinic)() as s:
            moment = s.scalar(select(WebSession.last_seen_at))
            assert moment is not None
            return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)

    sign_in(client, "neuro")
    last_seen(dt.timedelta(minutes=29))  # used within the last half hour: still signed in, and the use is written
    assert client.get("/patients").status_code == 200
    assert utcnow() - written() < dt.timedelta(seconds=30)
    last_seen(dt.timedelta(seconds=20))  # written less than a minute ago: not written again on every request
    before = written()
    assert client.get("/patients").status_code == 200 and written() == before
    last_seen(None)  # a session from before idle sign-out: counts as used now
    assert client.get("/patients").status_code == 200 and utcnow() - written() < dt.timedelta(seconds=30)
    last_seen(dt.timedelta(minutes=20))  # typing in a form (app.js) tells the server, with nothing else to do
    assert client.get("/session/alive").status_code == 204 and utcnow() - written() < dt.timedelta(seconds=30)
    last_seen(dt.timedelta(minutes=31))
    ended = client.get("/patients/demo-001")
    assert ended.status_code == 303 and ended.headers["location"] == "/login?next=/patients/demo-001&ended=1"
    assert client.get("/api/v1/patients").status_code == 401
    assert client.get("/session/alive").status_code == 303  # too late to keep alive
    notice = client.get(ended.headers["location"]).text
    assert "You were signed out: 30 minutes passed without use, or 12 hours since you signed in." in notice
    assert "You were signed out" not in client.get("/login?next=/patients").text  # a first visit says nothing


@pytest.mark.parametrize(
    ("address", "secure", "kept"),
    [
        ("http://clinic.example", True, False),  # the browser would drop the Secure cookie: said, not looped
        ("http://127.0.0.1:8000", True, True),  # this machine: browsers keep Secure cookies over HTTP
        ("http://localhost:8000", True, True),
        ("https://clinic.example", True, True),
        ("http://clinic.example", False, True),  # --insecure-cookies
        ("http://clinic.example|https", True, True),  # behind an HTTPS proxy the server was not told to trust
    ],
)
def test_signing_in_where_the_browser_would_drop_the_cookie_says_so(
    clinic: Engine, db_url: str, address: str, secure: bool, kept: bool
) -> None:
    made = create_app(database_url=db_url, cookie_secure=secure)
    address, _, proxied = address.partition("|")
    headers = {"x-forwarded-proto": proxied} if proxied else {}
    with TestClient(made, base_url=address, follow_redirects=False, headers=headers) as browser:
        form_page = browser.get("/login").text
        signed = browser.post("/login", data={"username": "neuro", "password": PASSWORD})
    made.state.engine.dispose()
    words = "Signing in here needs HTTPS"
    if kept:
        assert signed.status_code == 303 and words not in form_page
    else:
        assert words in form_page and signed.status_code == 400 and words in signed.text
        assert "set-cookie" not in signed.headers
        with session_factory(clinic)() as s:
            assert s.scalar(select(func.count()).select_from(WebSession)) == 0  # no session started in vain


@pytest.mark.parametrize(
    ("sent_from", "signed_in"),
    [("cross-site", False), ("same-site", False), ("same-origin", True), ("none", True), (None, True)],
)
def test_a_sign_in_form_sent_from_another_site_is_refused(
    client: TestClient, sent_from: str | None, signed_in: bool
) -> None:
    """Login CSRF: another site's page posting our sign-in form would sign the browser in to the attacker's account."""
    headers = {"sec-fetch-site": sent_from} if sent_from else {}
    answer = client.post("/login", data={"username": "neuro", "password": PASSWORD}, headers=headers)
    if signed_in:
        assert answer.status_code == 303 and "set-cookie" in answer.headers
    else:
        assert answer.status_code == 403 and "set-cookie" not in answer.headers
        assert "a sign-in form sent from another site is refused" in answer.text


def test_signing_out_everywhere_ends_the_sessions_on_other_computers(app: Any, clinic: Engine) -> None:
    with (
        TestClient(app, base_url="https://testserver", follow_redirects=False) as here,
        TestClient(app, base_url="https://testserver", follow_redirects=False) as elsewhere,
    ):
        csrf = sign_in(here, "neuro")
        sign_in(elsewhere, "neuro")
        assert here.post("/account/sign-out-everywhere", data={"csrf_token": "wrong"}).status_code == 403
        assert elsewhere.get("/patients").status_code == 200  # a refused request ends nothing
        assert 'id="sign-out-everywhere"' in here.get("/account").text
        done = here.post("/account/sign-out-everywhere", data={"csrf_token": csrf})
        assert done.status_code == 303 and done.headers["location"] == "/login"
        for browser in (here, elsewhere):
            assert browser.get("/patients").status_code == 303
    with session_factory(clinic)() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "sign_out")).one()
        assert (entry.actor, entry.entity_id, entry.detail) == ("neuro", "neuro", {"ended": 2})


def test_session_cookie_is_secure_httponly_samesite(client: TestClient) -> None:
    response = client.post("/login", data={"username": "neuro", "password": PASSWORD})
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie


def test_wrong_password_and_throttling(client: TestClient) -> None:
    for _ in range(5):
        assert client.post("/login", data={"username": "neuro", "password": "wrong password"}).status_code == 401
    throttled = client.post("/login", data={"username": "neuro", "password": PASSWORD})
    assert throttled.status_code == 429 and "Too many failed attempts" in throttled.text


@ON_EVERY_DATABASE
def test_a_username_no_account_can_have_is_a_wrong_sign_in(client: TestClient, clinic: Engine) -> None:
    # A NUL byte or a name longer than any account's could not be looked up or counted on PostgreSQL (a 500).
    for name in ("ne\x00uro", "n" * 5000, "Neuro", "neuro/..", "é"):
        refused = client.post("/login", data={"username": name, "password": PASSWORD})
        assert refused.status_code == 401 and "Wrong username or password" in refused.text, name
    with session_factory(clinic)() as s:
        assert s.scalar(select(func.count(SignInFailure.id))) == 0
    assert client.post("/login", data={"username": "neuro", "password": PASSWORD}).status_code == 303


def test_open_redirect_is_refused(client: TestClient) -> None:
    response = client.post("/login", data={"username": "neuro", "password": PASSWORD, "next": "//evil.example/x"})
    assert response.headers["location"] == "/"


def app_routes() -> list[tuple[str, str]]:
    """Every method and address template the app answers, read from its routers."""
    mounted = [("" if router is api.router else api.PREFIX, router) for router in api.ROUTERS]
    mounted += [("", router) for router in pages.ROUTERS]
    return sorted(
        (method, prefix + route.path)
        for prefix, router in mounted
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    )


CARE = {"neuro", "surgeon", "tcm"}


def _records_to_act_on(engine: Engine) -> None:
    """Record number 1 of each kind for demo-001, so that a route acting on one finds it (the diary entry and the
    answers sent by the patient, who may remove only answers of their own)."""
    today = dt.date.today()
    kb = load_default()
    with session_factory(engine)() as s, s.begin():
        patient = patient_service.get(s, code="demo-001")
        diary = DiaryCreate(date=today, spasms=3, intensity=2)
        outcome_service.add_diary(s, patient=patient, data=diary, actor="patient1")
        outcome_service.add_grades(s, patient=patient, data=GradesCreate(date=today, smc_grade=2), actor="t")
        answers = QuestionnaireCreate(date=today, instrument="hfs7", answers=[1] * 7)
        outcome_service.add_questionnaire(s, patient=patient, data=answers, actor="patient1")  # theirs to remove
        session_service.record(s, patient=patient, data=SessionCreate.model_validate(_TOXIN), kb=kb, actor="t")
        recall_service.close(s, patient=patient, recall="hfs7", reason="on paper", actor="t", today=today)


_TOXIN = {
    "date": (dt.date.today() - dt.timedelta(days=200)).isoformat(),
    "clinician": "N",
    "details": {
        "kind": "toxin",
        "product": "onabotulinumtoxinA",
        "lot": "L1",
        "sites": [{"site": "upper_lid_medial", "side": "left", "units": 2.5}],
        "override_reason": "as planned",
    },
}


def _request_for(method: str, path: str, csrf: str) -> dict[str, Any]:
    """A request each route would carry out for a user allowed to make it (JSON for the API, a form for pages)."""
    today = dt.date.today().isoformat()
    json_bodies: dict[str, Any] = {  # the bodies the storing routes take for demo-001, and the three others
        path.replace("demo-001", "{code}"): body for path, body in _valid_requests() if "demo-002" not in path
    } | {
        "/api/v1/plans": read_file(EXAMPLES / "demo-001.yaml"),
        "/api/v1/patients/{code}/assessments": read_file(EXAMPLES / "demo-001.yaml"),
        "/api/v1/patients/{code}/sessions/{session_id}": {"effect_weeks": 11},
    }
    forms: dict[str, dict[str, str]] = {
        "/patients/new": {"code": "mx-2", "name": "N", "sex": "female", "birth_year": "1970"},
        "/patients/{code}/edit": {"version": "1", "name": "Mei Lin", "phone": "", "reason": "typo"},
        "/patients/{code}/sign": {"version": "1", "sign_reason": "reviewed"},
        "/patients/{code}/grades": {"date": today, "smc_grade": "2"},
        "/patients/{code}/questionnaires/hfs7": {"date": today} | {f"item.{i}": "1" for i in range(7)},
        "/patients/{code}/questionnaires/hfs30": {"date": today} | {f"item.{i}": "1" for i in range(30)},
        "/patients/{code}/questionnaires/hfs30/subscales": {"date": today} | _SUBSCALES_TYPED,
        "/me/hfs7": {f"item.{i}": "1" for i in range(7)},
        "/me/diary": {"spasms": "3", "intensity": "2"},
        "/me/preferences": {"pref.avoid_surgery": "yes"},
        "/patients/{code}/sessions/toxin": {"product": "onabotulinumtoxinA", "lot": "L1", "date": today}
        | {"units.upper_lid_medial.left": "2.5", "override_reason": "as planned"},
        "/patients/{code}/sessions/acupuncture": {"date": today, "points": "LI4"},
        "/patients/{code}/sessions/herbal": {"date": today, "formula": "qian_zheng_san"},
        "/patients/{code}/sessions/mvd": {"date": today},
        "/patients/{code}/sessions/medicine": {"medicine": "gabapentin", "dose": "300 mg at night"}
        | {"date": today, "override_reason": "declines toxin and surgery"},
        "/patients/{code}/sessions/procedure": {"procedure": "rf_ablation", "side": "left", "date": today}
        | {"override_reason": "toxin failing, declines surgery"},
        "/patients/{code}/sessions/{session_id}/outcome": {"effect_weeks": "11"},
        "/patients/{code}/referral.pdf": {"question": "please advise"},
        "/admin/users": {"username": "new.user", "full_name": "N", "role": "neurologist"},
        "/admin/users/{username}/password": {},
        "/admin/users/{username}/active": {"active": "0", "reason": "left the clinic"},
    }
    if path.startswith("/api/"):
        if method == "DELETE":
            return {"params": {"reason": "entered twice"}}
        return {"json": json_bodies.get(path)} if method in ("POST", "PATCH") else {}
    form = {"reason": "entered twice"} | forms.get(path, {}) | {"csrf_token": csrf}
    return {"data": form} if method == "POST" else {}


_CONV = {"neuro", "surgeon"}
_OWN = CARE | {"patient1"}  # the care team, and demo-001's own account
_PATIENTS = {"patient1", "patient2"}
_SIGNED_IN = set(USERS)
_PUBLIC: set[str | None] = {*USERS, None}
# Who may use each route, acting on demo-001 (the toxin session, the hfs7 recall), for every route the app has.
PERMITTED: dict[tuple[str, str], set[str] | set[str | None]] = {
    ("DELETE", "/api/v1/patients/{code}/diary/{entry_id}"): _OWN,
    ("DELETE", "/api/v1/patients/{code}/grades/{grades_id}"): CARE,
    ("DELETE", "/api/v1/patients/{code}/questionnaires/{answer_id}"): _OWN,
    ("DELETE", "/api/v1/patients/{code}/recall-closures/{closure_id}"): CARE,
    ("DELETE", "/api/v1/patients/{code}/sessions/{session_id}"): _CONV,
    ("GET", "/"): _PUBLIC,
    ("GET", "/about"): _PUBLIC,
    ("GET", "/account"): _SIGNED_IN,
    ("GET", "/admin"): {"admin"},
    ("GET", "/admin/audit"): {"admin"},
    ("GET", "/api/v1/docs"): _PUBLIC,
    ("GET", "/api/v1/due"): CARE,
    ("GET", "/api/v1/health"): _PUBLIC,
    ("GET", "/favicon.ico"): _PUBLIC,
    ("GET", "/api/v1/overrides"): CARE,
    ("GET", "/api/v1/patients"): CARE,
    ("GET", "/api/v1/patients/{code}"): _OWN,
    ("GET", "/api/v1/patients/{code}/diary"): _OWN,
    ("GET", "/api/v1/patients/{code}/plan"): _OWN,
    ("GET", "/api/v1/patients/{code}/plans"): _OWN,
    ("GET", "/api/v1/patients/{code}/plans/{number}"): _OWN,
    ("GET", "/api/v1/patients/{code}/preferences"): _OWN,
    ("GET", "/api/v1/patients/{code}/recall-closures"): CARE,
    ("GET", "/api/v1/patients/{code}/sessions"): _OWN,
    ("GET", "/api/v1/ready"): _PUBLIC,
    ("GET", "/due"): CARE,
    ("GET", "/due.csv"): CARE,
    ("GET", "/login"): _PUBLIC,
    ("GET", "/me"): _PATIENTS,
    ("GET", "/me/hfs7"): _PATIENTS,
    ("GET", "/overrides"): CARE,
    ("GET", "/patients"): CARE,
    ("GET", "/patients/new"): CARE,
    ("GET", "/patients/{code}"): CARE,
    ("GET", "/patients/{code}/assessment"): CARE,
    ("GET", "/patients/{code}/edit"): CARE,
    ("GET", "/patients/{code}/plan.pdf"): _OWN,
    ("GET", "/patients/{code}/plans/{number}"): CARE,
    ("GET", "/session/alive"): _SIGNED_IN,
    ("PATCH", "/api/v1/patients/{code}/sessions/{session_id}"): _CONV,
    ("POST", "/account/password"): _SIGNED_IN,
    ("POST", "/account/sign-out-everywhere"): _SIGNED_IN,
    ("POST", "/admin/users"): {"admin"},
    ("POST", "/admin/users/{username}/active"): {"admin"},
    ("POST", "/admin/users/{username}/password"): {"admin"},
    ("POST", "/api/v1/patients"): CARE,
    ("POST", "/api/v1/patients/{code}/assessments"): CARE,
    ("POST", "/api/v1/patients/{code}/diary"): _OWN,
    ("POST", "/api/v1/patients/{code}/grades"): CARE,
    ("POST", "/api/v1/patients/{code}/plan/sign"): CARE,
    ("POST", "/api/v1/patients/{code}/plans"): CARE,
    ("POST", "/api/v1/patients/{code}/preferences"): _OWN,
    ("POST", "/api/v1/patients/{code}/questionnaires"): _OWN,
    ("POST", "/api/v1/patients/{code}/recall-closures"): _CONV,
    ("POST", "/api/v1/patients/{code}/sessions"): _CONV,
    ("POST", "/api/v1/plans"): CARE,
    ("POST", "/login"): _PUBLIC,
    ("POST", "/logout"): _SIGNED_IN,
    ("POST", "/me/diary"): _PATIENTS,
    ("POST", "/me/diary/{entry_id}/remove"): _PATIENTS,
    ("POST", "/me/hfs7"): _PATIENTS,
    ("POST", "/me/preferences"): _PATIENTS,
    ("POST", "/me/questionnaires/{answer_id}/remove"): _PATIENTS,
    ("POST", "/patients/new"): CARE,
    ("POST", "/patients/{code}/assessment"): CARE,
    ("POST", "/patients/{code}/diary/{entry_id}/remove"): CARE,
    ("POST", "/patients/{code}/edit"): CARE,
    ("POST", "/patients/{code}/grades"): CARE,
    ("POST", "/patients/{code}/grades/{grades_id}/remove"): CARE,
    ("POST", "/patients/{code}/plans"): CARE,
    ("POST", "/patients/{code}/questionnaires/hfs7"): CARE,
    ("POST", "/patients/{code}/questionnaires/hfs30"): CARE,
    ("POST", "/patients/{code}/questionnaires/hfs30/subscales"): CARE,
    ("POST", "/patients/{code}/questionnaires/{answer_id}/remove"): CARE,
    ("POST", "/patients/{code}/recall-closures/{closure_id}/reopen"): CARE,
    ("POST", "/patients/{code}/recalls/{recall}/close"): CARE,
    ("POST", "/patients/{code}/referral.pdf"): CARE,
    ("POST", "/patients/{code}/sessions/acupuncture"): {"tcm"},
    ("POST", "/patients/{code}/sessions/herbal"): {"tcm"},
    ("POST", "/patients/{code}/sessions/medicine"): _CONV,
    ("POST", "/patients/{code}/sessions/mvd"): {"surgeon"},
    ("POST", "/patients/{code}/sessions/procedure"): _CONV,
    ("POST", "/patients/{code}/sessions/toxin"): _CONV,
    ("POST", "/patients/{code}/sessions/{session_id}/outcome"): _CONV,
    ("POST", "/patients/{code}/sessions/{session_id}/remove"): _CONV,
    ("POST", "/patients/{code}/sign"): CARE,
}
# Routes whose answer to everyone permitted is a redirect: home to the caller's own start page, the icon to its file.
_REDIRECTS = {"/": 303, "/favicon.ico": 301}
# Routes that end or change the caller's own sign-in: tested where signing in and out is (not in a loop over routes).
_OWN_SIGN_IN = {"/login", "/logout", "/account/password", "/account/sign-out-everywhere"}


@pytest.mark.parametrize("username", [*sorted(USERS), None])
def test_every_role_against_every_route(client: TestClient, clinic: Engine, username: str | None) -> None:
    """Every route the routers declare, asked by each role (and by no one) with a request it would carry out: those
    not permitted get 403 (no one: 401 from the API, the sign-in page from a page), those permitted never do. A new
    route fails this test until it says who may use it."""
    assert set(PERMITTED) == set(app_routes()), "declare who may use each new route in PERMITTED"
    _records_to_act_on(clinic)
    csrf = sign_in(client, username) if username else ""
    for method, path in app_routes():
        if path in _OWN_SIGN_IN:
            continue
        address = path.replace("{code}", "demo-001").replace("{username}", "surgeon").replace("{recall}", "hfs7")
        address = re.sub(r"\{[a-z_]+\}", "1", address)
        answer = client.request(method, address, headers={"x-csrf-token": csrf}, **_request_for(method, path, csrf))
        said = (username, method, path, answer.status_code, answer.text[:200])
        if username in PERMITTED[(method, path)] and method == "GET":  # the page or the data, not a way round it
            assert answer.status_code in ((_REDIRECTS[path],) if path in _REDIRECTS else (200, 204)), said
        elif username in PERMITTED[(method, path)]:
            assert answer.status_code not in (401, 403), said
        elif username is None and path.startswith("/api/"):
            assert answer.status_code == 401, said
        elif username is None:
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), said
        else:
            assert answer.status_code == 403, said
    # The printable plan as a referral letter is the care team's, although the patient prints their own plan.
    referral = client.get("/patients/demo-001/plan.pdf?kind=referral")
    assert referral.status_code == (200 if username in CARE else 303 if username is None else 403)


def test_an_admin_disables_and_enables_an_account(client: TestClient, app: Any) -> None:
    with app.state.sessions.begin() as session:
        token = user_service.issue_token(session, username="neuro", name="lab link", actor="test")
    neuro = TestClient(app, base_url="https://testserver", follow_redirects=False)
    sign_in(neuro, "neuro")
    assert neuro.get("/patients").status_code == 200

    # Nobody but an admin may change an account.
    for username in ("surgeon", "tcm", "patient1"):
        client.cookies.clear()
        csrf = sign_in(client, username)
        form = {"csrf_token": csrf, "active": "0", "reason": "left the clinic"}
        assert client.post("/admin/users/neuro/active", data=form).status_code == 403, username
    client.cookies.clear()
    csrf = sign_in(client, "admin")
    page = client.get("/admin").text
    assert "admin</td><td>" in page and "active (you)" in page and 'action="/admin/users/neuro/active"' in page
    assert "<td>tcm practitioner</td>" in page and "tcm_practitioner</td>" not in page  # roles in words, as elsewhere
    for form, said in (
        ({"active": "0"}, "<strong>reason</strong>: String should have at least 3 characters"),
        ({"active": "maybe", "reason": "left"}, "<strong>active</strong>: say 1 to enable the account or 0"),
    ):
        refused = client.post("/admin/users/neuro/active", data={"csrf_token": csrf, **form})
        assert refused.status_code == 422 and said in refused.text, refused.text
    assert (
        client.post("/admin/users/admin/active", data={"csrf_token": csrf, "active": "0", "reason": "oops"}).status_code
        == 403
    )
    assert (
        client.post(
            "/admin/users/nobody/active", data={"csrf_token": csrf, "active": "0", "reason": "gone"}
        ).status_code
        == 404
    )
    assert neuro.get("/patients").status_code == 200  # nothing changed yet

    disabled = client.post("/admin/users/neuro/active", data={"csrf_token": csrf, "active": "0", "reason": "left"})
    assert disabled.status_code == 303 and disabled.headers["location"] == "/admin?changed=neuro"
    # At once: the open session is gone, the token is revoked, and signing in fails.
    assert neuro.get("/patients").status_code in (302, 303, 401)
    assert client.get("/api/v1/due", headers={"authorization": f"Bearer {token}"}).status_code == 401
    refused = neuro.post("/login", data={"username": "neuro", "password": PASSWORD, "next": "/"})
    assert refused.status_code != 303
    row = client.get("/admin").text.split('action="/admin/users/neuro/active"')[1].split("</form>")[0]
    assert "disabled" in row and ">Enable</button>" in row
    assert _audit_count(app.state.sessions.kw["bind"], action="disable", entity_id="neuro") == 1

    enabled = client.post("/admin/users/neuro/active", data={"csrf_token": csrf, "active": "1", "reason": "back"})
    assert enabled.status_code == 303
    sign_in(neuro, "neuro")
    assert neuro.get("/patients").status_code == 200
    assert client.get("/api/v1/due", headers={"authorization": f"Bearer {token}"}).status_code == 401  # stays revoked
    neuro.close()


def test_users_change_their_own_password(client: TestClient, app: Any) -> None:
    other_device = TestClient(app, base_url="https://testserver", follow_redirects=False)
    sign_in(other_device, "tcm")
    csrf = sign_in(client, "tcm")
    page = client.get("/account").text
    assert "Signed in as <strong>tcm</strong>" in page and 'href="/account"' in page
    new = "a brand new passphrase"
    form = {"csrf_token": csrf, "current_password": PASSWORD, "new_password": new, "repeat_password": new}
    for changes, field, said in (
        ({"current_password": "wrong one!!"}, "current_password", "this is not your current password"),
        ({"repeat_password": "something else"}, "repeat_password", "the two new passwords differ"),
        ({"new_password": "short", "repeat_password": "short"}, "new_password", "at least 10 characters"),
    ):
        refused = client.post("/account/password", data=form | changes)
        assert refused.status_code == 422, refused.text
        shown = refused.text.split(f'id="{field}"')[1].split("<label")[0]
        assert 'class="field-error"' in shown and said in shown, shown
        assert "short" not in shown.replace(said, "")  # a password typed is never shown back
    assert (
        client.post("/account/password", data={k: v for k, v in form.items() if k != "csrf_token"}).status_code == 403
    )
    assert other_device.get("/patients").status_code == 200  # nothing changed yet

    changed = client.post("/account/password", data=form)
    assert changed.status_code == 303 and changed.headers["location"] == "/account?changed=1"
    assert "Your password was changed" in client.get("/account?changed=1").text  # this browser stays signed in
    assert other_device.get("/patients").status_code in (302, 303, 401)  # every other session ended
    other_device.cookies.clear()
    assert other_device.post("/login", data={"username": "tcm", "password": PASSWORD, "next": "/"}).status_code != 303
    sign_in(other_device, "tcm", password=new)
    other_device.close()


def test_wrong_current_passwords_are_throttled_like_sign_ins(client: TestClient) -> None:
    csrf = sign_in(client, "surgeon")
    form = {
        "csrf_token": csrf,
        "current_password": "not it at all",
        "new_password": "x" * 12,
        "repeat_password": "x" * 12,
    }
    for _ in range(5):
        assert client.post("/account/password", data=form).status_code == 422
    throttled = client.post("/account/password", data=form | {"current_password": PASSWORD})
    assert throttled.status_code == 422 and "too many wrong attempts: wait 15 minutes" in throttled.text


def test_a_patients_name_and_phone_are_corrected_with_a_reason(client: TestClient, clinic: Engine) -> None:
    csrf = sign_in(client, "neuro")
    form_page = client.get("/patients/demo-001/edit").text
    assert 'name="version" value="1"' in form_page and 'value="Mei Lin"' in form_page
    form = {"csrf_token": csrf, "version": "1", "name": "Mei Lin-Okafor", "phone": "+44 20 7946 0000", "reason": ""}
    refused = client.post("/patients/demo-001/edit", data=form | {"name": ""})
    assert refused.status_code == 422
    for field in ("name", "reason"):
        assert f'id="error-{field}"' in refused.text, field
    assert 'value="+44 20 7946 0000"' in refused.text  # what was typed stays
    too_long = client.post("/patients/demo-001/edit", data=form | {"reason": "x" * 501})
    assert too_long.status_code == 422 and "say why the record changes in 3 to 500 characters" in too_long.text
    for version in ("", "0", "²", "9" * 5000):  # int() refuses the last two: they were server errors
        garbled = client.post("/patients/demo-001/edit", data=form | {"version": version, "reason": "typo"})
        assert garbled.status_code == 422 and "missing: reload the page" in garbled.text, version
    saved = client.post("/patients/demo-001/edit", data=form | {"reason": "married name"})
    assert saved.status_code == 303 and saved.headers["location"] == "/patients/demo-001"
    assert "Mei Lin-Okafor" in client.get("/patients/demo-001").text
    stale = client.post("/patients/demo-001/edit", data=form | {"name": "Someone", "reason": "typo"})
    assert stale.status_code == 409  # the form was read at version 1; the record is at 2
    assert _audit_count(clinic, action="update", entity="patient", entity_id="demo-001") == 1
    client.cookies.clear()
    csrf = sign_in(client, "patient1")
    assert client.get("/patients/demo-001/edit").status_code == 403
    assert client.post("/patients/demo-001/edit", data=form | {"csrf_token": csrf, "reason": "me"}).status_code == 403


def test_an_admin_reads_who_did_what_to_a_patients_record(client: TestClient) -> None:
    sign_in(client, "neuro")
    client.get("/patients/demo-002")  # a read, audited
    client.cookies.clear()
    sign_in(client, "admin")
    page = client.get("/admin/audit?patient=demo-002").text
    rows = re.findall(r"<tr><td>[\d-]+ [\d:]+</td><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", page)
    assert ("neuro", "read", "patient demo-002") in rows
    assert all("demo-002" in record for _, _, record in rows if not record.startswith(("assessment", "diary")))
    assert not any("demo-001" in record for _, _, record in rows)
    by_neuro = re.findall(r"<tr><td>[\d-]+ [\d:]+</td><td>([^<]+)</td>", client.get("/admin/audit?actor=neuro").text)
    assert by_neuro and set(by_neuro) == {"neuro"}
    refused = client.get("/admin/audit?page=0")
    assert refused.status_code == 422 and "<strong>page</strong>" in refused.text
    client.cookies.clear()
    sign_in(client, "neuro")
    assert client.get("/admin/audit").status_code == 403


def test_patient_cannot_read_another_patient(client: TestClient) -> None:
    sign_in(client, "patient1")
    assert client.get("/api/v1/patients/demo-002/plan").status_code == 403
    assert client.get("/api/v1/patients/demo-002/diary").status_code == 403
    assert client.get("/patients/demo-002/plan.pdf").status_code == 403
    own = client.get("/api/v1/patients/demo-001/plan")
    assert own.status_code == 200 and own.json()["plan"]["patient_id"] == "demo-001"


def test_csrf_is_required_on_forms(client: TestClient, clinic: Engine) -> None:
    csrf = sign_in(client, "patient1")
    refused = client.post("/me/diary", data={"spasms": "10", "intensity": "4"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    accepted = client.post("/me/diary", data={"spasms": "10", "intensity": "4", "csrf_token": csrf})
    assert accepted.status_code == 303
    assert (
        client.post(
            "/api/v1/patients/demo-001/diary", json={"date": "2026-01-01", "spasms": 1, "intensity": 1}
        ).status_code
        == 403
    )


def test_tcm_practitioner_cannot_sign_or_record_toxin(client: TestClient, clinic: Engine) -> None:
    csrf = sign_in(client, "tcm")
    edit = {"version": 1, "edits": [{"recommendation": "botulinum_toxin", "status": "deferred", "reason": "wait"}]}
    api = client.post("/api/v1/patients/demo-001/plan/sign", json=edit, headers={"x-csrf-token": csrf})
    assert api.status_code == 403 and "cannot change conventional" in api.json()["errors"][0]["message"]
    session = {
        "date": "2026-01-05",
        "clinician": "L",
        "details": {
            "kind": "toxin",
            "product": "onabotulinumtoxinA",
            "lot": "L1",
            "sites": [{"site": "upper_lid_medial", "side": "left", "units": 2.5}],
        },
    }
    recorded = client.post("/api/v1/patients/demo-001/sessions", json=session, headers={"x-csrf-token": csrf})
    assert recorded.status_code == 403
    page = client.post(
        "/patients/demo-001/sessions/toxin",
        data={"csrf_token": csrf, "product": "onabotulinumtoxinA", "lot": "L1", "units.upper_lid_medial.left": "2.5"},
    )
    assert page.status_code == 403
    # Each refusal is in the audit trail: who asked for what of which patient.
    with session_factory(clinic)() as s:
        denied = s.scalars(select(AuditEntry).where(AuditEntry.action == "denied").order_by(AuditEntry.id)).all()
    assert [(e.actor, e.entity, e.entity_id, e.detail["method"], e.detail["path"]) for e in denied] == [
        ("tcm", "patient", "demo-001", "POST", "/api/v1/patients/demo-001/plan/sign"),
        ("tcm", "patient", "demo-001", "POST", "/api/v1/patients/demo-001/sessions"),
        ("tcm", "patient", "demo-001", "POST", "/patients/demo-001/sessions/toxin"),
    ]


def test_a_patient_refused_another_patients_record_is_in_the_audit_trail(client: TestClient, clinic: Engine) -> None:
    sign_in(client, "patient2")
    assert client.get("/patients/demo-001").status_code == 403
    assert client.get("/api/v1/patients/demo-001/plan").status_code == 403
    assert client.get("/admin").status_code == 403  # no patient named: not a patient record
    client.cookies.clear()
    assert client.get("/api/v1/patients/demo-001").status_code == 401  # nobody known: nobody's attempt
    assert _audit_count(clinic, action="denied", entity_id="demo-001", actor="patient2") == 2
    assert _audit_count(clinic, action="denied") == 2


def test_patient_page_names_each_treatment_and_the_diagnosis(client: TestClient) -> None:
    sign_in(client, "neuro")
    page = client.get("/patients/demo-001").text
    assert "Diagnosis: Primary HFS likely</strong>" in page
    kb = load_default()
    plan = client.get("/api/v1/patients/demo-001/plan").json()["plan"]
    heading = r'<div class="rec" id="rec-[^"]+">\s*<h3><span class="badge [a-z_]+">[^<]+</span> ([^<]+) <span'
    shown = re.findall(heading, page)
    assert [html.unescape(name) for name in shown] == [kb.treatments[r["id"]].name for r in plan["recommendations"]]
    assert "Microvascular decompression (MVD)" in shown


def test_signing_from_the_page_creates_a_new_version(client: TestClient, clinic: Engine) -> None:
    csrf = sign_in(client, "neuro")
    form = {"csrf_token": csrf, "version": "1", "status.mvd": "option", "reason.mvd": "prefers toxin first"}
    assert client.post("/patients/demo-001/sign", data=form).status_code == 303
    stale = client.post("/patients/demo-001/sign", data=form)
    assert stale.status_code == 409
    for version in ("", "²", "9" * 5000):
        garbled = client.post("/patients/demo-001/sign", data=form | {"version": version})
        assert garbled.status_code == 422 and "missing: reload the page" in garbled.text, version
    with session_factory(clinic)() as s:
        numbers = list(s.scalars(select(PlanVersion.number).where(PlanVersion.patient_id == 1)))
    assert numbers == [1, 2]


def test_the_sign_off_table_says_which_alerts_hold_each_item(client: TestClient, clinic: Engine) -> None:
    """A contraindication is lifted knowingly: beside each status a signer may change, the critical and warning alerts
    the plan has on that item (needling on warfarin, for the TCM practitioner), and nothing beside an item no alert or
    rule is on. Carbamazepine is not recommended beside MVD, so the plan says nothing of HLA-B*15:02; the table says
    that the contraindication holds if it is given, as recording a prescription would."""
    _assessed(clinic, "hl-1", plan=True, hla_b1502="positive", medications=["Coumadin"])
    sign_in(client, "neuro")

    def rows(page: str) -> dict[str, list[str]]:
        table = html.unescape(page)
        table = table[table.index('id="sign-form"') :]
        table = table[: table.index("</table>")]
        found = re.findall(r'<tr>\s*<td>(.*?)</td>\s*<td><select name="status\.([\w:]+)"', table, re.S)
        said = {rec: re.findall(r'<span class="badge (\w+)">\1</span> ([^<]+)</div>', cell) for cell, rec in found}
        return {rec: [f"{severity}: {title}" for severity, title in alerts] for rec, alerts in said.items()}

    conventional = rows(client.get("/patients/hl-1").text)
    assert conventional["medication:carbamazepine"] == ["critical: Carbamazepine with HLA-B*15:02, if it is given"]
    assert conventional["medication:oxcarbazepine"] == []  # a caution, said when a plan offers it
    assert conventional["mvd"] == [] and "acupuncture" not in conventional
    _assessed(clinic, "pt-1", plan=True, pregnant=True)
    assert rows(client.get("/patients/pt-1").text)["botulinum_toxin"] == ["critical: Botulinum toxin in pregnancy"]
    # Every rule that holds is said, not only the first.
    _assessed(clinic, "rf-1", plan=True, comorbidities=["bleeding_disorder", "pacemaker"])
    assert rows(client.get("/patients/rf-1").text)["rf_ablation"] == [
        "warning: Radiofrequency ablation with a coagulopathy or anticoagulation, if it is given",
        "warning: Radiofrequency ablation with a pacemaker or ICD, if it is given",
    ]
    sign_in(client, "tcm")
    integrative = rows(client.get("/patients/hl-1").text)
    assert integrative["acupuncture"] == integrative["electroacupuncture"] == ["warning: Needling on warfarin"]
    assert "mvd" not in integrative


def test_a_sign_off_without_a_reason_comes_back_with_the_choices_made(client: TestClient, clinic: Engine) -> None:
    csrf = sign_in(client, "neuro")
    mvd = load_default().treatments["mvd"].name
    form = {
        "csrf_token": csrf,
        "version": "1",
        "status.mvd": "deferred",
        "reason.mvd": "",
        "status.botulinum_toxin": "option",
        "reason.botulinum_toxin": "wants to wait until after the wedding",
        "sign_reason": "discussed with the patient",
    }
    refused = client.post("/patients/demo-001/sign", data=form)
    assert refused.status_code == 422
    page = refused.text
    assert "Your sign-off was not recorded" in page
    assert f"<strong>Reason for {mvd}</strong>: say why the status changes" in page
    sign_form = page[page.index('id="sign-form"') : page.index("</form>", page.index('id="sign-form"'))]
    chosen = r'name="status.mvd"[^>]*>(<option value="\w+" >[^<]*</option>)*<option value="deferred" selected>'
    assert re.search(chosen, sign_form)
    assert re.search(r'name="reason.mvd" value=""[^>]*aria-invalid=true aria-describedby=sign-problems>', sign_form)
    assert 'value="wants to wait until after the wedding"' in sign_form
    assert 'value="discussed with the patient"' in sign_form
    with session_factory(clinic)() as s:
        assert list(s.scalars(select(PlanVersion.number).where(PlanVersion.patient_id == 1))) == [1]
    form["reason.mvd"] = "prefers toxin first"
    long_note = client.post("/patients/demo-001/sign", data=form | {"sign_reason": "x" * 501})
    assert long_note.status_code == 422  # the audit trail keeps 500 characters of a note: said, not a server error
    assert "<strong>Note with the signature</strong>: at most 500 characters, got 501" in long_note.text
    assert client.post("/patients/demo-001/sign", data=form).status_code == 303


def test_assessment_form_shows_errors_beside_fields_and_saves_nothing(client: TestClient, clinic: Engine) -> None:
    csrf = sign_in(client, "neuro")
    form = {
        "csrf_token": csrf,
        "age": "500",
        "sex": "female",
        "side": "left",
        "duration_months": "12",
        "regions": "periocular",
        "imaging.mri": "not_done",
    }
    response = client.post("/patients/demo-001/assessment", data=form)
    assert response.status_code == 422
    assert 'id="error-age"' in response.text and "less than or equal to 120" in response.text
    assert 'value="500"' in response.text  # what was typed stays in the form
    with session_factory(clinic)() as s:
        assert s.scalar(select(func.count(PlanVersion.id))) == 2
    response = client.post("/patients/demo-001/assessment", data={**form, "age": "50"})
    assert response.status_code == 303
    with session_factory(clinic)() as s:
        assert s.scalar(select(func.count(PlanVersion.id))) == 3


def test_the_assessment_form_keeps_what_it_has_no_field_for(client: TestClient, clinic: Engine) -> None:
    """Toxin sessions and an operation from records kept before HemiCare, and HFS-30 answers, sent through the API:
    the form says it keeps them, and saving it keeps them (the HFS-30 answers unless their box is cleared) instead of
    dropping them from the next plan's history."""
    from hemicare.assessments import service as assessments

    history = {
        "prior_mvd": {"date": "2019-05-02", "result": "recurred"},
        "botulinum_sessions": [
            {"date": "2025-03-01", "product": "onabotulinumtoxinA", "total_units": 20, "effect_weeks": 10},
            {"date": "2025-06-20", "product": "onabotulinumtoxinA", "total_units": 22.5},
        ],
    }
    hfs30 = [1] * 20 + [2] * 10
    data = read_file(EXAMPLES / "demo-001.yaml")
    data = data | {"history": data["history"] | history, "hfs30": hfs30}
    with session_factory(clinic)() as s, s.begin():
        patient = patient_service.get(s, code="demo-001")
        earlier = dt.date.today() - dt.timedelta(days=3)
        assessments.record(s, patient=patient, assessment=validate_assessment(data), actor="api", today=earlier)
    csrf = sign_in(client, "neuro")
    page = html.unescape(client.get("/patients/demo-001/assessment").text)
    kept = page[page.index('<fieldset id="kept">') : page.index("</fieldset>", page.index('<fieldset id="kept">'))]
    assert f"Kept from the assessment of {earlier.isoformat()}" in kept
    assert "Toxin sessions before HemiCare: 2 (the last on 2025-06-20, onabotulinumtoxinA 22.5 U)" in kept
    assert "Earlier MVD: 2019-05-02, recurred" in kept
    assert re.search(
        r'<input type="checkbox" name="keep.hfs30" checked> keep the HFS-30 answers of [-\d]+ \(total 40\)', kept
    )

    def saved(form: dict[str, str]) -> dict[str, Any]:
        assert client.post("/patients/demo-001/assessment", data=form).status_code == 303
        with session_factory(clinic)() as s:
            return assessments.latest(s, patient=patient_service.get(s, code="demo-001")).data

    form = {
        "csrf_token": csrf,
        "age": "52",
        "sex": "female",
        "side": "left",
        "duration_months": "40",
        "regions": "periocular",
        "imaging.mri": "not_done",
        "keep.hfs30": "on",
    }
    refused = client.post("/patients/demo-001/assessment", data=form | {"age": "500"})
    assert refused.status_code == 422 and 'name="keep.hfs30" checked' in refused.text
    assert "Toxin sessions before HemiCare: 2" in refused.text
    stored = saved(form)
    assert (
        stored["history"]["botulinum_sessions"]
        == validate_assessment(data).model_dump(mode="json")["history"]["botulinum_sessions"]
    )
    assert stored["history"]["prior_mvd"] == history["prior_mvd"] and stored["hfs30"] == hfs30
    assert stored["duration_months"] == 40  # what the form said
    stored = saved({key: value for key, value in form.items() if key != "keep.hfs30"})
    assert stored.get("hfs30") is None and stored["history"]["prior_mvd"] == history["prior_mvd"]
    # The plan made from it still knows the operation (a redo) and the toxin product used last.
    ids = {r["id"]: r for r in client.get("/api/v1/patients/demo-001/plan").json()["plan"]["recommendations"]}
    assert "redo_mvd" in ids and "mvd" not in ids
    assert any("Same product as last time" in line for line in ids["botulinum_toxin"]["rationale"])


def test_api_plans_contract_and_errors(client: TestClient) -> None:
    csrf = sign_in(client, "neuro")
    headers = {"x-csrf-token": csrf}
    data = read_file(EXAMPLES / "demo-001.yaml")
    ok = client.post("/api/v1/plans", json=data, headers=headers)
    assert ok.status_code == 200 and ok.json()["diagnosis"]["status"] == "primary_hfs_likely"
    assert ok.headers["content-type"] == "application/json"
    assert ok.json() == build_plan(validate_assessment(data), load_default()).model_dump(mode="json")
    bad = client.post("/api/v1/plans", json={**data, "age": 212, "shoe": 9}, headers=headers)
    assert bad.status_code == 422
    fields = {e["field"]: e["message"] for e in bad.json()["errors"]}
    assert "less than or equal to 120" in fields["age"] and fields["shoe"].startswith("unknown field")
    broken = client.post("/api/v1/plans", content=b"{not json", headers={**headers, "content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["errors"][0]["field"] == "body"
    wrong_type = client.get("/api/v1/due?horizon=soon")
    assert wrong_type.status_code == 422 and wrong_type.json()["errors"][0]["field"] == "horizon"
    # Nested a few thousand deep (or cut off inside), a body made Python's parser give up with a server error.
    json_headers = {**headers, "content-type": "application/json"}
    for address in ("/api/v1/plans", "/api/v1/patients", "/api/v1/patients/demo-001/diary"):
        for deep in (b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000):
            answer = client.post(address, content=deep, headers=json_headers)
            assert answer.status_code == 422, (address, answer.text)
            assert answer.json()["errors"] == [
                {"field": "body", "message": "nests arrays or objects too deeply to read"}
            ]
    nested = client.post("/api/v1/plans", content=b"[" * 500 + b"]" * 500, headers=json_headers)  # deep but readable
    assert nested.status_code == 422 and "valid dictionary" in nested.json()["errors"][0]["message"]


def test_api_tokens_work_without_cookies_or_csrf(clinic: Engine, app: Any) -> None:
    with session_factory(clinic)() as s, s.begin():
        token = user_service.issue_token(s, username="neuro", name="EHR", actor="admin")
    with TestClient(app, base_url="https://testserver") as machine:
        data = read_file(EXAMPLES / "demo-001.yaml")
        response = machine.post("/api/v1/plans", json=data, headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 200
        assert machine.get("/api/v1/patients", headers={"authorization": "Bearer hc_wrong"}).status_code == 401


def test_every_access_to_a_patient_record_is_audited(client: TestClient, clinic: Engine) -> None:
    sign_in(client, "neuro")
    before = _audit_count(clinic, action="read", entity_id="demo-001")
    client.get("/patients/demo-001")
    client.get("/api/v1/patients/demo-001")
    assert _audit_count(clinic, action="read", entity_id="demo-001") == before + 2


def test_no_patient_data_in_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    sign_in(client, "neuro")
    with caplog.at_level(logging.DEBUG):
        client.get("/patients/demo-001")
        client.get("/api/v1/patients/demo-002")
    # The server's own log lines (the test client logs its requests under its own name).
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("httpx"))
    assert re.search(r"^GET /patients/\{code\} 200 \d+\.\d ms$", text, re.MULTILINE), text
    assert re.search(r"^GET /api/v1/patients/\{code\} 200 \d+\.\d ms$", text, re.MULTILINE), text
    assert "demo-00" not in text and "Mei Lin" not in text and "Arjun" not in text
    with caplog.at_level(logging.INFO):
        client.get("/patients/Mei-Lin/no-such-page")
        client.get("/static/style.css")
    [unmatched] = [r.getMessage() for r in caplog.records if r.name == "hemicare.web" and " 404 " in r.getMessage()]
    assert unmatched.startswith("GET - 404 ")  # no route matched: the path asked for may say anything
    server = [r.getMessage() for r in caplog.records if r.name == "hemicare.web"]
    assert server[-1].startswith("GET /static/{path} 200 "), server


def test_text_holding_a_nul_character_is_refused_naming_where(client: TestClient, clinic: Engine) -> None:
    """PostgreSQL can neither store nor compare with a NUL character: a search, a code, a form or a JSON body holding
    one failed there with a server error."""
    csrf = sign_in(client, "neuro")
    headers = {"x-csrf-token": csrf}
    nul = "holds a NUL character (\\u0000 or %00), which is not text"
    for address, field in (
        ("/patients?q=Mei%00", "q"),
        ("/api/v1/patients?q=Mei%00&limit=5", "q"),
        ("/patients/demo-001%00", ""),
        ("/api/v1/patients/demo%00-001", ""),
    ):
        answer = client.get(address)
        assert answer.status_code == 422, (address, answer.text)
        if address.startswith("/api/"):
            assert answer.json()["errors"][0]["field"] == field
            assert nul in answer.json()["errors"][0]["message"]
        else:
            assert nul in html.unescape(answer.text) and "HemiCare" in answer.text
    entry = {"date": dt.date.today().isoformat(), "spasms": 3, "intensity": 2, "note": "worse\u0000"}
    body = client.post("/api/v1/patients/demo-001/diary", json=entry, headers=headers)  # sent as the escape \\u0000
    assert body.status_code == 422 and body.json()["errors"] == [{"field": "note", "message": nul}]
    assessment = read_file(EXAMPLES / "demo-001.yaml") | {"medications": ["amlodipine\x00"]}
    plan = client.post("/api/v1/plans", json=assessment, headers=headers)  # valid but for it: the fast path too
    assert plan.status_code == 422 and plan.json()["errors"] == [{"field": "medications.0", "message": nul}]
    form = {"csrf_token": csrf, "version": "1", "name": "Mei\x00Lin", "phone": "", "reason": "typo"}
    page = client.post("/patients/demo-001/edit", data=form)
    assert page.status_code == 422 and f"<strong>name</strong>: {nul}" in html.unescape(page.text)
    with session_factory(clinic)() as s:
        assert s.scalar(select(func.count()).select_from(DiaryEntry)) == 0
        assert patient_service.get(s, code="demo-001").name == "Mei Lin"


@pytest.mark.parametrize("number", ["0", "2147483648", "99999999999999999999"])
def test_a_record_number_no_record_can_have_is_refused_naming_it(
    client: TestClient, clinic: Engine, number: str
) -> None:
    """A number beyond 64 bits in an address (a diary entry's, a plan version's...) failed with a server error, as
    SQLite cannot even look it up; a number no record can have is now refused naming that part of the address."""
    csrf = sign_in(client, "neuro")
    headers = {"x-csrf-token": csrf}
    patient = "/api/v1/patients/demo-001"
    for method, address, field in (
        ("GET", f"{patient}/plans/{number}", "number"),
        ("DELETE", f"{patient}/diary/{number}?reason=typed+twice", "entry_id"),
        ("DELETE", f"{patient}/questionnaires/{number}?reason=typed+twice", "answer_id"),
        ("DELETE", f"{patient}/grades/{number}?reason=typed+twice", "grades_id"),
        ("DELETE", f"{patient}/recall-closures/{number}", "closure_id"),
        ("PATCH", f"{patient}/sessions/{number}", "session_id"),
    ):
        body = {"effect_weeks": 10} if method == "PATCH" else None
        answer = client.request(method, address, json=body, headers=headers)
        assert answer.status_code == 422, (address, answer.text)
        assert [error["field"] for error in answer.json()["errors"]] == [field]
    form = {"csrf_token": csrf, "reason": "typed twice", "effect_weeks": "10"}
    for address in (
        f"/patients/demo-001/diary/{number}/remove",
        f"/patients/demo-001/questionnaires/{number}/remove",
        f"/patients/demo-001/grades/{number}/remove",
        f"/patients/demo-001/recall-closures/{number}/reopen",
        f"/patients/demo-001/sessions/{number}/outcome",
    ):
        page = client.post(address, data=form)
        assert page.status_code == 422 and "Please check your input" in page.text, (address, page.text[:300])
    assert client.get(f"/patients/demo-001/plans/{number}").status_code == 422
    own = {"csrf_token": sign_in(client, "patient1")}
    for address in (f"/me/diary/{number}/remove", f"/me/questionnaires/{number}/remove"):
        assert client.post(address, data=own).status_code == 422, address
    sign_in(client, "neuro")
    missing = client.get(f"{patient}/plans/{2**31 - 1}")  # a number a record can have, but none has
    assert missing.status_code == 404 and "has no plan version 2147483647" in missing.json()["errors"][0]["message"]
    with session_factory(clinic)() as s:
        assert s.scalar(select(func.count()).select_from(PlanVersion)) == 2  # nothing was written


def test_a_database_that_does_not_answer_gets_503_and_a_try_again(caplog: pytest.LogCaptureFixture) -> None:
    unreachable = create_app(database_url="postgresql://hemicare@127.0.0.1:9/nowhere")  # port 9: nothing listens
    with TestClient(unreachable, base_url="https://testserver") as client, caplog.at_level(logging.INFO):
        client.cookies.set("hemicare_session", "a-session")
        page = client.get("/patients")
        api = client.get("/api/v1/patients", headers={"authorization": "Bearer hc_token"})
    unreachable.state.engine.dispose()
    assert page.status_code == 503 and page.headers["retry-after"] == "60"
    assert "the database did not answer; nothing was saved. Try again in a minute." in page.text
    assert api.status_code == 503 and api.json()["errors"][0]["message"].startswith("the database did not answer")
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "hemicare.web")
    assert "the database did not answer: sqlalchemy.exc.OperationalError from psycopg.OperationalError at" in text
    assert "GET /patients 503" in text and "nowhere" not in text and "failed, reference" not in text


def test_ready_says_whether_the_database_answers_at_the_schema_this_version_needs(
    client: TestClient, clinic: Engine
) -> None:
    from hemicare.db.engine import downgrade, head_revision

    head = head_revision()
    assert client.get("/api/v1/ready").json() == {"status": "ok", "database": head}  # no sign-in: a monitor's call
    downgrade(clinic, "0003")
    behind = client.get("/api/v1/ready")
    assert behind.status_code == 503
    message = f"the database is at revision 0003; this HemiCare needs {head}: run `hemicare db upgrade`"
    assert behind.json() == {"errors": [{"field": "", "message": message}]}
    away = create_app(database_url="postgresql://hemicare@127.0.0.1:9/nowhere")
    with TestClient(away, base_url="https://testserver") as monitor:
        assert monitor.get("/api/v1/ready").status_code == 503
    away.state.engine.dispose()


def test_a_body_too_large_is_refused_as_it_arrives(client: TestClient) -> None:
    csrf = sign_in(client, "neuro")
    huge = {"id": "x", "medications": ["m" * 300_000]}
    api = client.post("/api/v1/plans", json=huge, headers={"x-csrf-token": csrf})
    assert api.status_code == 413, api.text
    assert api.json() == {"errors": [{"field": "body", "message": "is larger than the 256 KiB a request may carry"}]}
    page = client.post("/patients/demo-001/edit", data={"csrf_token": csrf, "name": "n" * 300_000})
    assert page.status_code == 413 and "256 KiB" in page.text and page.headers["cache-control"] == "no-store"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the body is counted as it arrives
        yield b'{"id": "x", "medications": ["'
        for _ in range(40):
            yield b"m" * 8192
        yield b'"]}'

    streamed = client.post(
        "/api/v1/plans", content=chunks(), headers={"x-csrf-token": csrf, "content-type": "application/json"}
    )
    assert streamed.status_code == 413 and streamed.json()["errors"][0]["field"] == "body"
    small = client.post("/api/v1/plans", json=read_file(EXAMPLES / "demo-001.yaml"), headers={"x-csrf-token": csrf})
    assert small.status_code == 200


def test_an_address_or_method_the_app_does_not_have_is_answered_in_its_own_words(client: TestClient) -> None:
    sign_in(client, "neuro")
    api = client.get("/api/v1/no-such-thing")
    nothing = {"errors": [{"field": "", "message": "there is nothing at this address"}]}
    assert api.status_code == 404 and api.json() == nothing
    method = client.delete("/api/v1/plans")
    refused = {"errors": [{"field": "", "message": "this address does not take DELETE"}]}
    assert method.status_code == 405 and method.json() == refused
    page = client.get("/no-such-page")
    assert page.status_code == 404 and "<h1>Not found</h1>" in page.text and 'href="/patients"' in page.text
    assert "there is nothing at this address" in page.text
    missing = client.get("/patients/nobody")  # a route's own 404 keeps its words
    assert missing.status_code == 404 and "no patient with code &#39;nobody&#39;" in missing.text


def _refuse_diary_entries(engine: Engine) -> None:
    """Make the database fail every new diary entry, as a full disk or a broken constraint would."""
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON diary_entries BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )


def test_a_server_fault_is_answered_with_a_reference_and_logged_without_patient_data(
    client: TestClient, clinic: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    _refuse_diary_entries(clinic)
    csrf = sign_in(client, "patient1")
    entry = {"date": dt.date.today().isoformat(), "spasms": 12, "intensity": 4, "note": "worse at Mei Lin's bakery"}
    with caplog.at_level(logging.INFO):
        api = client.post("/api/v1/patients/demo-001/diary", json=entry, headers={"x-csrf-token": csrf})
        page = client.post("/me/diary", data={**entry, "csrf_token": csrf})
    assert api.status_code == 500 and page.status_code == 500
    [error] = api.json()["errors"]
    reference = re.search(r"\(reference ([0-9a-f]{8})\)", error["message"])
    assert reference and error["field"] == "", error
    assert "Something went wrong on the server" in page.text and "open the page again" in page.text
    assert page.headers["cache-control"] == "no-store" and "HemiCare" in page.text  # the app's page, its headers
    assert 'href="/me"' in page.text  # signed in: the page keeps the patient's menu
    server = [r for r in caplog.records if r.name == "hemicare.web"]
    text = "\n".join(r.getMessage() for r in server)
    # What failed and where, for the maintainer: the types, HemiCare's lines it passed, the last line it reached.
    assert re.search(
        rf"^POST /api/v1/patients/\{{code\}}/diary failed, reference {reference.group(1)}: "
        r"sqlalchemy.exc.IntegrityError from sqlite3.IntegrityError at hemicare/outcomes/router.py:\d+ add_diary > "
        r"hemicare/outcomes/service.py:\d+ add_diary > .* > sqlalchemy/engine/default.py:\d+ do_execute$",
        text,
        re.MULTILINE,
    ), text
    assert re.search(r"^POST /me/diary failed, reference [0-9a-f]{8}: .* at hemicare/web/pages/portal", text, re.M)
    assert re.search(r"^POST /me/diary 500 \d+\.\d ms$", text, re.MULTILINE), text
    for secret in ("bakery", "Mei Lin", "demo-001", "refused", "INSERT"):
        assert secret not in text
    assert all(r.exc_info is None for r in caplog.records)  # no traceback, whose last line quotes the message
    with session_factory(clinic)() as s:
        assert s.scalar(select(func.count()).select_from(DiaryEntry)) == 0


def _pdf_text(body: bytes) -> str:
    """The PDF's text with runs of white space made one space (lines wrap at spaces)."""
    from pypdf import PdfReader

    assert body.startswith(b"%PDF")
    return " ".join(" ".join(page.extract_text() for page in PdfReader(io.BytesIO(body)).pages).split())


class _TextRun(NamedTuple):
    text: str
    font: str  # the font's name, e.g. "...DejaVuSans-Bold"
    points: float  # the type's size


def _text_runs(page: Any) -> list[_TextRun]:
    """A PDF page's pieces of text, in order, each with its font and type size."""
    runs: list[_TextRun] = []

    def seen(text: str, cm: list[float], tm: list[float], font: Any, size: float) -> None:
        if text.strip():
            runs.append(_TextRun(text, str(font.get("/BaseFont")), round(size * tm[3] * cm[3], 1)))

    page.extract_text(visitor_text=seen)
    return runs


def _pdf_type_sizes(body: bytes) -> set[float]:
    """The sizes, in points, of the type of every piece of text in the PDF."""
    from pypdf import PdfReader

    return {run.points for page in PdfReader(io.BytesIO(body)).pages for run in _text_runs(page)}


def test_the_patients_pdf_is_set_in_type_large_enough_to_read(client: TestClient) -> None:
    """Read at home, often by older people with one eye closing in a spasm: nothing smaller than 12 pt. The referral
    letter, for clinicians, may be smaller."""
    from hemicare.web.pdf import PATIENT_TEXT_PT

    for version, username in enumerate(("neuro", "tcm"), start=1):  # both parts signed: the advice lines are in
        client.cookies.clear()
        csrf = sign_in(client, username)
        signed = client.post("/patients/demo-001/sign", data={"csrf_token": csrf, "version": str(version)})
        assert signed.status_code == 303, signed.text
    patient = client.get("/patients/demo-001/plan.pdf?kind=patient").content
    assert "Suggested:" in _pdf_text(patient) and "- Stress and fatigue" in _pdf_text(patient)
    assert min(_pdf_type_sizes(patient)) >= PATIENT_TEXT_PT == 12
    assert min(_pdf_type_sizes(client.get("/patients/demo-001/plan.pdf?kind=referral").content)) < 12


def test_no_page_of_the_patients_pdf_ends_on_a_heading_or_an_items_name() -> None:
    """A heading or a treatment's name at the foot of a page, its text on the next, reads as a heading with nothing to
    say; whatever the number of items, each stays with its first lines."""
    from pypdf import PdfReader

    from hemicare.web.pdf import patient_plan_pdf
    from hemicare.web.plain import PlainItem, PlainPart

    text = "Words a patient reads about this treatment, long enough to run over two lines of the page at this size."
    kb = load_default()
    aid = build_plan(validate_assessment(read_file(EXAMPLES / "demo-001.yaml")), kb).decision_aid
    assert aid is not None
    options = aid.model_dump(mode="json")  # its questions' headings must not end a page either
    seen_breaks = 0
    for count in range(8, 18):
        items = [
            PlainItem(f"Treatment {n}", "option", "To discuss", text, ["- advice"] * (n % 3)) for n in range(count)
        ]
        parts = [PlainPart("conventional", "Medical treatment", "Agreed by your neurologist", False, items)] * 2
        body = patient_plan_pdf(
            patient_name="A B", printed_on=dt.date(2026, 11, 27), parts=parts, warnings=[], due=[], options=options
        )
        pages = PdfReader(io.BytesIO(body)).pages
        seen_breaks += len(pages) - 1
        for number, page in enumerate(pages[:-1], start=1):
            runs = _text_runs(page)
            last_text, last_font, _ = runs[-1]
            assert "Bold" not in last_font, (count, number, last_text)
    assert seen_breaks >= 10  # the loop did put items at the foot of pages


def test_pdfs(client: TestClient) -> None:
    sign_in(client, "neuro")
    kb = load_default()
    mvd = kb.treatments["mvd"]
    unsigned = _pdf_text(client.get("/patients/demo-001/plan.pdf?kind=patient").content)
    assert "Medical treatment Your care team has not reviewed this part of your plan yet" in unsigned
    assert mvd.name not in unsigned and "Acupuncture" not in unsigned
    assert "Sign-off: conventional part not yet signed" in _pdf_text(
        client.get("/patients/demo-001/plan.pdf?kind=referral").content
    )
    headers = {"authorization": f"Bearer {_token_for(client)}"}  # a neurosurgeon's token
    assert client.post("/api/v1/patients/demo-001/plan/sign", json={"version": 1}, headers=headers).is_success
    patient = _pdf_text(client.get("/patients/demo-001/plan.pdf?kind=patient").content)
    # The patient's words, as on their own page: names and plain text, not ids and clinical summaries.
    assert f"Suggested: {mvd.name} {' '.join((mvd.plain or '').split())}" in patient
    assert f"Agreed by your neurosurgeon on {dt.date.today()}." in patient
    # The TCM part waits for a TCM practitioner.
    assert "Traditional Chinese medicine Your care team has not reviewed" in patient and "Acupuncture" not in patient
    assert "Recommended: mvd" not in patient and "medication:" not in patient
    referral = _pdf_text(client.get("/patients/demo-001/plan.pdf?kind=referral").content)
    signoff = f"Sign-off: conventional part signed by surgeon (neurosurgeon) on {dt.date.today()}; integrative part"
    assert f"{signoff} not yet signed (proposed by HemiCare, not agreed)." in referral
    assert "Primary HFS likely: " in referral
    assert f"Recommended: {mvd.name} (conventional). Evidence: moderate certainty [" in referral
    assert f"Not recommended: {kb.treatments['medication:carbamazepine'].name} (conventional)." in referral
    assert "))" not in referral, referral[max(0, referral.find("))") - 200) :][:260]
    assert "TCM pattern Best fit: " in referral
    assert client.get("/patients/demo-001/plan.pdf?kind=poster").status_code == 422


@pytest.mark.parametrize("fonts", ["installed", "none"])
def test_the_referral_prints_chinese_names_when_a_chinese_font_is_installed(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, fonts: str
) -> None:
    from hemicare.web import pdf

    if fonts == "none":
        monkeypatch.setattr(pdf, "CHINESE_FONTS", ())
    elif not any(font.exists() for font in pdf.CHINESE_FONTS):
        if os.environ.get("HEMICARE_REQUIRE_FONTS") == "1":
            pytest.fail("no Chinese font installed (.ci/run installs fonts-droid-fallback)")
        pytest.skip("no Chinese font installed")
    sign_in(client, "neuro")
    referral = _pdf_text(client.get("/patients/demo-001/plan.pdf?kind=referral").content)
    assert "Liver yang rising" in referral
    assert bool(re.search("[\u4e00-\u9fff]", referral)) == (fonts == "installed")
    assert not re.search(r"\(\s*/?\s*\)", referral), "a bracket emptied of its Chinese names"


def _referral(client: TestClient, csrf: str, **form: str) -> Any:
    return client.post("/patients/demo-001/referral.pdf", data={"csrf_token": csrf, **form})


def test_a_referral_goes_to_the_chosen_specialty_with_the_question_and_the_record(
    client: TestClient, clinic: Engine
) -> None:
    csrf = sign_in(client, "neuro")
    today = dt.date.today()
    sessions = [
        {
            "kind": "toxin",
            "product": "onabotulinumtoxinA",
            "lot": "L77",
            "sites": [{"site": "upper_lid_medial", "side": "left", "units": 2.5}],
            "effect_weeks": 11,
            "adverse_effects": ["ptosis"],
        },
        {
            "kind": "herbal",
            "formula": "tian_ma_gou_teng_yin",
            "herbs": [{"latin": "Rhizoma Gastrodiae", "dose_g": 9}],
            "duration_days": 14,
        },
    ]
    with session_factory(clinic)() as s, s.begin():
        patient = patient_service.get(s, code="demo-001")
        for days_ago, details in zip((120, 5), sessions, strict=True):
            data = {"date": (today - dt.timedelta(days=days_ago)).isoformat(), "clinician": "N", "details": details}
            session_service.record(
                s, patient=patient, data=SessionCreate.model_validate(data), kb=load_default(), actor="setup"
            )
    question = "Toxin lasts 11 weeks with ptosis each time; would you consider MVD?"
    letter = _referral(client, csrf, to="neurosurgery", question=question)
    assert letter.status_code == 200 and letter.headers["content-type"] == "application/pdf"
    text = _pdf_text(letter.content)
    assert text.startswith("Referral to neurosurgery: Mei Lin Patient: Mei Lin (demo-001, female).")
    assert f"Question {question}" in text
    # The assessment in words, with what was recorded as absent (not recorded is not absent).
    assert "52-year-old female: left-sided spasm for 36 months" in text
    assert "Recorded as absent: Tonic spasm, Facial weakness, Hearing loss" in text
    assert "MRI done: neurovascular compression yes (aica); structural lesion no." in text
    # The treatment so far, newest first, in the words of the patient page; the formula by its name.
    treated = text.index("Treatment so far")
    herbal = text.index("herbal by N: Tian Ma Gou Teng Yin: Rhizoma Gastrodiae 9 g, 14 days.", treated)
    toxin = text.index("toxin by N: onabotulinumtoxinA 2.5 U, lot L77. Outcome: effect 11 weeks; ptosis.", treated)
    assert herbal < toxin
    started, last = today - dt.timedelta(days=5), today + dt.timedelta(days=8)
    assert (
        "Taken now, as prescribed in HemiCare: Tian Ma Gou Teng Yin: Rhizoma Gastrodiae 9 g, 14 days (from "
        f"{started.isoformat()}, until {last.isoformat()})."
    ) in text
    assert "Mean toxin effect: 11 weeks." in text
    # The receiving specialty's part in full (the dose plan of the conventional toxin item); the sender's brief.
    assert "Dose plan (Botox, onabotulinumtoxinA):" in text and "Points (WHO code" not in text
    tcm = _pdf_text(_referral(client, csrf, to="tcm").content)
    assert tcm.startswith("Referral to Traditional Chinese Medicine: Mei Lin")
    assert "Points (WHO code, pinyin, Chinese, role):" in tcm and "Dose plan (" not in tcm
    assert "Question" not in tcm.split("Sign-off")[0]  # no question asked, no empty heading
    assert "acupuncture and herbs for HFS rest on low or very-low certainty evidence" in tcm
    with session_factory(clinic)() as s:
        exports = s.scalars(select(AuditEntry).where(AuditEntry.action == "export")).all()
    assert [entry.detail for entry in exports][-2:] == [
        {"as": "pdf:referral", "to": "neurosurgery"},
        {"as": "pdf:referral", "to": "Traditional Chinese Medicine"},
    ]
    assert question not in str([entry.detail for entry in exports])  # the question is the letter's, not the trail's


@pytest.mark.parametrize(
    ("user", "form", "status", "field"),
    [
        ("neuro", {"to": "neurology"}, 422, "to"),  # a neurologist refers to the other specialties
        ("tcm", {"to": "tcm"}, 422, "to"),
        ("neuro", {"to": "cardiology"}, 422, "to"),
        ("neuro", {"to": "tcm", "question": "x" * 2001}, 422, "question"),
        ("surgeon", {"to": "neurosurgery"}, 422, "to"),
        ("patient1", {"to": "tcm"}, 403, None),
        ("admin", {"to": "tcm"}, 403, None),
    ],
)
def test_a_referral_refuses_what_it_cannot_send(
    client: TestClient, clinic: Engine, user: str, form: dict[str, str], status: int, field: str | None
) -> None:
    csrf = sign_in(client, user)
    response = _referral(client, csrf, **form)
    assert response.status_code == status, response.text[:300]
    if field is not None:
        assert f"<strong>{field}</strong>" in response.text
    with session_factory(clinic)() as s:
        assert not s.scalars(select(AuditEntry).where(AuditEntry.action == "export")).all()


@pytest.mark.parametrize(("target", "full"), [("neurology", "Sequences:"), ("tcm", "[tradition; VERY LOW]")])
def test_a_referral_gives_the_receiving_part_in_full_the_work_up_with_the_conventional(target: str, full: str) -> None:
    from hemicare.outcomes.service import Summary
    from hemicare.web.pdf import Referral, referral_pdf

    kb = load_default()
    assessment = validate_assessment(read_file(EXAMPLES / "demo-002-red-flags.yaml"))
    plan = build_plan(assessment, kb).model_dump(mode="json")
    assert plan["recommendations"][0]["category"] == "workup"
    referral = Referral(
        target=target,
        question="",
        author="L. Zhang" if target == "neurology" else "Dr Neuro",
        role="tcm_practitioner" if target == "neurology" else "neurologist",
        printed_on=dt.date(2026, 11, 27),
        patient_name="P",
        patient_code=assessment.id,
        sex="male",
        birth_year=None,
        plan=plan,
        plan_number=1,
        assessment=assessment,
        history=[],
        outcomes=Summary(
            patient=assessment.id,
            diary_entries=0,
            monthly=[],
            questionnaires={},
            toxin_sessions=[],
            mean_toxin_effect_weeks=None,
            procedures=[],
        ),
        names=kb.treatment_names(),
        scale_names={},
    )
    text = _pdf_text(referral_pdf(referral))
    assert full in text
    # The MRI work-up goes in full to neurology only; the lifestyle advice items to TCM only.
    assert ("Sequences:" in text) == (target == "neurology")
    assert ("[tradition; VERY LOW]" in text) == (target == "tcm")
    assert "No treatment recorded in HemiCare." in text and "No outcomes recorded yet." in text
    assert "Red flag: Sensorineural hearing loss" in text


def test_a_referral_needs_the_form_token(client: TestClient) -> None:
    sign_in(client, "neuro")
    assert _referral(client, "forged", to="tcm").status_code == 403
    assert client.get("/patients/demo-001/plan.pdf?kind=referral&to=cardiology").status_code == 422
    plain = _pdf_text(client.get("/patients/demo-001/plan.pdf?kind=referral&to=neurosurgery").content)
    assert plain.startswith("Referral to neurosurgery:")


def test_the_patients_page_says_what_to_know_as_their_printed_plan_does(client: TestClient) -> None:
    """The printed plan listed the signed plan's warnings (red flags: the work-up first) under "Things to know"; the
    patient's own page, which they read far more often, left them out."""
    csrf = sign_in(client, "neuro")
    assessment = read_file(EXAMPLES / "demo-001.yaml") | {"findings": {"hearing_loss": True}}
    made = client.post("/api/v1/patients/demo-001/assessments", json=assessment, headers={"x-csrf-token": csrf})
    assert made.status_code == 201, made.text
    client.cookies.clear()
    sign_in(client, "patient1")
    assert "Things to know" not in client.get("/me").text  # nobody has signed the new version yet
    client.cookies.clear()
    csrf = sign_in(client, "neuro")
    form = {"csrf_token": csrf, "version": "2", "sign_reason": "reviewed"}
    assert client.post("/patients/demo-001/sign", data=form).status_code == 303
    client.cookies.clear()
    sign_in(client, "patient1")
    page = html.unescape(client.get("/me").text)
    listed = page[page.index('id="things-to-know"') :]
    listed = re.findall(r"<li>([^<]+)</li>", listed[: listed.index("</ul>")])
    assert listed and any("hearing loss" in message for message in listed), listed
    printed = _pdf_text(client.get("/patients/demo-001/plan.pdf").content)
    assert all(" ".join(message.split()) in printed for message in listed), (listed, printed)


def _aid_columns(page: str) -> list[tuple[str, str]]:
    """The options side by side on a page: each column's name and badge ("" for no treatment)."""
    table = page[page.index('<table class="aid">') :]
    header = table[: table.index("</tr>")]
    found = re.findall(r'<th>([^<]+)(?:<br><span class="badge [a-z_]+">([^<]+)</span>)?</th>', header)
    return [(html.unescape(name), badge) for name, badge in found]


def test_the_patient_sees_the_options_their_care_team_agreed_side_by_side(client: TestClient) -> None:
    """The decision aid was only on the clinicians' page. The patient's page and printed plan now have it, with what
    each signed part suggests or offers to discuss beside doing nothing; a status changed at sign-off is the one
    shown, on the clinicians' page too (an option set aside leaves the table)."""
    sign_in(client, "patient1")
    assert 'id="options"' not in client.get("/me").text  # nobody has signed yet: nothing to weigh
    assert "Your options side by side" not in _pdf_text(client.get("/patients/demo-001/plan.pdf").content)
    client.cookies.clear()
    csrf = sign_in(client, "surgeon")
    form = {"csrf_token": csrf, "version": "1", "status.mvd": "not_recommended", "reason.mvd": "would rather not"}
    assert client.post("/patients/demo-001/sign", data=form).status_code == 303
    clinicians = client.get("/patients/demo-001").text
    assert _aid_columns(clinicians) == [
        ("No treatment (watchful waiting)", ""),
        ("Botulinum toxin injections", "recommended"),
        ("Acupuncture", "option"),  # proposed by HemiCare: the clinicians see it before the TCM practitioner signs
    ]
    client.cookies.clear()
    sign_in(client, "patient1")
    page = client.get("/me").text
    assert _aid_columns(page) == [("No treatment (watchful waiting)", ""), ("Botulinum toxin injections", "suggested")]
    assert "How sure is the evidence?" in page and 'href="https://pubmed.ncbi.nlm.nih.gov/' in page
    # Each chance per 100 is also drawn as a hundred squares, as many filled as it says; other figures are not.
    figures = re.findall(r'<div class="fig">(<svg class="icons".*?</svg>)?[^<]*: <strong>([^<]+)</strong>', page)
    assert len(figures) > 5 and any(words.startswith("about ") for _, words in figures)
    for svg, words in figures:
        counted = re.fullmatch(r"about (\d+) in 100", words)
        assert bool(svg) == ("in 100" in words), words
        filled = len(drawn_squares(svg).get("#1f618d", [])) if svg else 0
        assert filled == (int(counted.group(1)) if counted else 0), words
    printed = _pdf_text(client.get("/patients/demo-001/plan.pdf").content)
    options = printed[printed.index("Your options side by side") : printed.index("What happens next")]
    assert "No treatment (watchful waiting): Nothing now;" in options
    assert "Botulinum toxin injections (suggested): A few small injections" in options
    assert (
        "How sure is the evidence? No treatment (watchful waiting): low. Botulinum toxin injections (suggested)"
        in options
    )
    assert "Microvascular" not in options and "Acupuncture" not in options
    client.cookies.clear()
    csrf = sign_in(client, "tcm")
    assert client.post("/patients/demo-001/sign", data={"csrf_token": csrf, "version": "2"}).status_code == 303
    client.cookies.clear()
    sign_in(client, "patient1")
    assert _aid_columns(client.get("/me").text)[1:] == [
        ("Botulinum toxin injections", "suggested"),
        ("Acupuncture", "to discuss"),
    ]


def test_a_version_signed_before_its_aid_followed_the_statuses_shows_it_as_they_say(
    client: TestClient, clinic: Engine
) -> None:
    """Versions signed before signing restated the decision aid keep HemiCare's proposal in it; the clinicians' page
    and the API show each column as its item's status says (an operation set aside is not in the table), without
    rewriting the record."""
    csrf = sign_in(client, "surgeon")
    form = {"csrf_token": csrf, "version": "1", "status.mvd": "not_recommended", "reason.mvd": "would rather not"}
    assert client.post("/patients/demo-001/sign", data=form).status_code == 303
    with session_factory(clinic)() as s, s.begin():  # as such a version was stored: the aid of the generated one
        patient = patient_service.get(s, code="demo-001")
        query = select(PlanVersion).where(PlanVersion.patient_id == patient.id).order_by(PlanVersion.number)
        generated, signed = s.scalars(query).all()
        signed.content = {**signed.content, "decision_aid": generated.content["decision_aid"]}
        stale = [(c["option"], c["status"]) for c in signed.content["decision_aid"]["columns"]]
    assert ("mvd", "recommended") in stale
    assert [name for name, _ in _aid_columns(client.get("/patients/demo-001").text)] == [
        "No treatment (watchful waiting)",
        "Botulinum toxin injections",
        "Acupuncture",
    ]
    for path in ("/api/v1/patients/demo-001/plan", "/api/v1/patients/demo-001/plans/2"):
        answer = client.get(path).json()["plan"]
        shown = [(c["option"], c["status"]) for c in answer["decision_aid"]["columns"]]
        assert shown == [("no_treatment", None), ("botulinum_toxin", "recommended"), ("acupuncture", "option")], path
        assert [r["status"] for r in answer["recommendations"] if r["id"] == "mvd"] == ["not_recommended"]
    first = client.get("/api/v1/patients/demo-001/plans/1").json()["plan"]  # the proposal, as HemiCare made it
    assert [c["option"] for c in first["decision_aid"]["columns"]] == [option for option, _ in stale]
    with session_factory(clinic)() as s:  # the record itself is as it was stored
        kept = s.scalars(query.where(PlanVersion.number == 2)).one().content["decision_aid"]
        assert [(c["option"], c["status"]) for c in kept["columns"]] == stale


def test_what_clinicians_changed_at_sign_off_is_listed_by_item_with_the_reasons(
    client: TestClient, clinic: Engine
) -> None:
    """The care team sees every status changed at sign-off, grouped by item and change, the most frequent first,
    each with its reason and a link to the version signed; a day to start from narrows it, a bad one is refused
    naming the field; reading it is in the audit trail."""
    csrf = sign_in(client, "neuro")
    assert "No status was changed at sign-off." in client.get("/overrides").text
    client.cookies.clear()
    csrf = sign_in(client, "surgeon")
    for code, reason in (("demo-001", "would rather not"), ("demo-002", "anaesthetic risk too high")):
        version = client.get(f"/api/v1/patients/{code}/plan").json()["number"]
        form = {"csrf_token": csrf, "version": str(version), "status.mvd": "not_recommended", "reason.mvd": reason}
        assert client.post(f"/patients/{code}/sign", data=form).status_code == 303, code
    form = {"csrf_token": csrf, "version": "2", "status.botulinum_toxin": "option", "reason.botulinum_toxin": "later"}
    assert client.post("/patients/demo-001/sign", data=form).status_code == 303
    before = _audit_count(clinic)
    page = client.get("/overrides").text
    assert _audit_count(clinic) == before + 1
    items = re.findall(r'<h2 class="item-name">([^<]+)</h2>', page)
    assert items == ["Microvascular decompression (MVD)", "Botulinum toxin injections"]  # twice, then once
    mvd = page[page.index("Microvascular decompression (MVD)") : page.index("Botulinum toxin injections")]
    assert '<span class="times">2 times</span> <span class="small muted">(2 patients)</span>' in mvd
    assert re.search(
        r'<a href="/patients/demo-002/plans/\d+">demo-002 v\d+</a> <span class="small muted">neurosurgeon'
        r"</span>: anaesthetic risk too high",
        mvd,
    )
    assert mvd.index("demo-002") < mvd.index("demo-001")  # newest first
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    assert f"No status was changed at sign-off since {tomorrow}." in client.get(f"/overrides?since={tomorrow}").text
    assert "anaesthetic risk" in client.get(f"/overrides?since={dt.date.today().isoformat()}").text
    assert "anaesthetic risk" in client.get("/overrides?since=0001-01-01").text  # a day with no UTC midnight
    refused = client.get("/overrides?since=last-week")
    assert refused.status_code == 422
    assert "<li><strong>since</strong>: &#39;last-week&#39; is not a date (YYYY-MM-DD)</li>" in refused.text
    listed = client.get("/api/v1/overrides").json()  # the same for scripts, with the items' codes
    assert [(g["recommendation"], g["from"], g["to"], g["times"], g["patients"]) for g in listed] == [
        ("mvd", "recommended", "not_recommended", 2, 2),
        ("botulinum_toxin", "recommended", "option", 1, 1),
    ]
    assert [(o["patient"], o["role"], o["reason"]) for o in listed[0]["overrides"]] == [
        ("demo-002", "neurosurgeon", "anaesthetic risk too high"),
        ("demo-001", "neurosurgeon", "would rather not"),
    ]
    assert listed[0]["overrides"][0]["on"] == dt.date.today().isoformat()
    assert client.get(f"/api/v1/overrides?since={tomorrow}").json() == []
    assert client.get("/api/v1/overrides?since=0001-01-01").json() == listed  # the calendar's first day: all
    wrong = client.get("/api/v1/overrides?since=last-week")
    assert wrong.status_code == 422 and wrong.json()["errors"] == [
        {"field": "since", "message": "'last-week' is not a date (YYYY-MM-DD)"}
    ]


def _set_about(engine: Engine, change: Callable[[dict[str, Any]], None], version: str | None = None) -> None:
    """Change what demo-001's latest plan version's decision aid says of itself (and the knowledge base version the
    plan was made from), as an older version stored it."""
    with session_factory(engine)() as s, s.begin():
        query = select(PlanVersion).where(PlanVersion.patient_id == patient_service.get(s, code="demo-001").id)
        latest = s.scalars(query.order_by(PlanVersion.number.desc())).first()
        assert latest is not None
        aid = {**latest.content["decision_aid"]}
        change(aid)
        latest.content = {**latest.content, "decision_aid": aid} | ({"knowledge_version": version} if version else {})


def test_the_options_say_when_they_were_issued_and_warn_once_out_of_date(client: TestClient, clinic: Engine) -> None:
    """The options side by side state the month their knowledge base was issued and how they are kept up to date
    (IPDAS's date and update policy), on the clinicians' page, the patient's page and sheet and in the API; a version
    stored before aids said so is given it from its knowledge base version; past the day the clinic's policy sets,
    each says the figures were due to be checked against newer evidence."""
    csrf = sign_in(client, "neuro")
    assert client.post("/patients/demo-001/sign", data={"csrf_token": csrf, "version": "1"}).status_code == 303
    about = client.get("/api/v1/patients/demo-001/plan").json()["plan"]["decision_aid"]["about"]
    page = client.get("/patients/demo-001").text
    assert (
        f'<p class="small muted" id="aid-about">From HemiCare&#39;s knowledge base {about["knowledge_version"]}' in page
    )
    assert 'id="aid-out-of-date"' not in page
    _set_about(clinic, lambda aid: aid.pop("about"))
    assert client.get("/api/v1/patients/demo-001/plan").json()["plan"]["decision_aid"]["about"] == about
    assert 'id="aid-about"' in client.get("/patients/demo-001").text
    # What a version says of itself follows its knowledge base version and today's policy, not what it stored.
    _set_about(clinic, lambda aid: aid.update(about={**about, "review_by": "2099-01-01"}), version="2019.3.1")
    due = "These figures were due to be checked against newer evidence by 2024-03-01"
    assert due in client.get("/patients/demo-001").text
    client.cookies.clear()
    sign_in(client, "patient1")
    mine = client.get("/me").text
    assert 'id="aid-about"' in mine and due in mine
    printed = _pdf_text(client.get("/patients/demo-001/plan.pdf").content)
    assert "From HemiCare's knowledge base 2019.3.1, issued in March 2019" in printed and due in printed


def test_a_disputed_figure_in_the_options_side_by_side_carries_its_note(client: TestClient, clinic: Engine) -> None:
    """A figure the reference sheets mark [DISAGREE] or [unverified] is never shown bare beside the others: the
    options side by side give its note on the clinicians' page, the patient's page and the printed sheet."""
    disputed = "[DISPUTED] Definitions and results vary by series; this prospective cohort found far lower"
    csrf = sign_in(client, "neuro")
    assert client.post("/patients/demo-001/sign", data={"csrf_token": csrf, "version": "1"}).status_code == 303
    page = client.get("/patients/demo-001").text
    aid = page[page.index('<table class="aid">') :]
    assert f'<div class="small muted">{disputed}' in aid
    assert aid.count('<div class="small muted">[') == 2  # the two flagged figures of demo-001's options, no more
    client.cookies.clear()
    sign_in(client, "patient1")
    assert f'<div class="small muted">{disputed}' in client.get("/me").text
    assert disputed in _pdf_text(client.get("/patients/demo-001/plan.pdf").content)


def test_the_plan_shows_its_scores_and_the_tcm_ranking_with_their_basis(client: TestClient, clinic: Engine) -> None:
    """Beside the diagnosis, the care team sees the plan's scores (wording, and the reference sheets' marks where a
    scale's wording is disputed or unverified) and the TCM patterns ranked with the findings for and against each,
    to confirm or overrule; the referral letter keeps a score's mark too."""
    csrf = sign_in(client, "tcm")
    page = client.get("/patients/demo-001").text
    scores = page[page.index('<details class="small" id="scores">') :].split("</details>")[0]
    assert "<summary>Severity and quality-of-life scores (6)</summary>" in scores
    assert "Samsung Medical Center (SMC) grade: <strong>2</strong> (Grade II:" in scores
    assert re.search(r"Cohen-Albert grade: <strong>3</strong>.*?\[UNVERIFIED\] The original grade definitions", scores)
    ranking = page[page.index('<details class="small" id="tcm-ranking">') :].split("</details>")[0]
    names = re.findall(r"<li><strong>(P\d) [^<]+</strong>.*?: score (-?[\d.]+), (\w+)\.", ranking)
    assert names == [
        ("P2", "0.72", "primary"),
        ("P7", "0.54", "secondary"),
        ("P6", "0.17", "considered"),
        ("P4", "-0.10", "considered"),
    ]
    assert "(ICD-11 TM1 SF52, SF56)" in ranking and "Against: tongue red, pulse rapid." in ranking
    letter = client.post(
        "/patients/demo-001/referral.pdf", data={"csrf_token": csrf, "to": "neurology", "question": "q"}
    )
    assert "[UNVERIFIED] The original grade definitions" in _pdf_text(letter.content)


def test_findings_needed_to_rule_out_secondary_hfs_are_asked_for_by_name(client: TestClient, clinic: Engine) -> None:
    """An assessment without an essential finding cannot call primary HFS likely: the plan names what is missing in
    the form's words, with a way to complete the assessment."""
    findings = read_file(EXAMPLES / "demo-001.yaml")["findings"]
    _assessed(clinic, "nr-1", plan=True, findings={k: v for k, v in findings.items() if k != "hearing_loss"})
    sign_in(client, "neuro")
    page = client.get("/patients/nr-1").text
    assert (
        '<div class="alert warning" id="not-recorded">Not recorded, and needed to rule out secondary HFS: '
        '<strong>Hearing loss</strong>. <a href="/patients/nr-1/assessment">Complete the assessment</a></div>'
    ) in page
    assert "<li>Not recorded: Hearing loss; needed to rule out secondary HFS.</li>" in page
    demo = client.get("/patients/demo-001").text
    assert 'id="not-recorded"' not in demo
    # The plan's own next steps, as it set them, under the recommendations.
    steps = demo[demo.index('id="plan-schedule"') :].split("</div>")[0]
    assert "<li>To arrange: Neurosurgical consultation on microvascular decompression" in steps
    assert re.search(r"<li>\d{4}-\d\d-\d\d: Botulinum toxin session: Botox [\d.]+ U", steps)


def test_a_browser_asking_for_favicon_ico_gets_the_icon(client: TestClient) -> None:
    """A JSON answer or a PDF names no icon, so browsers ask for /favicon.ico: it leads to the site's icon."""
    moved = client.get("/favicon.ico", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"].startswith("/static/favicon.svg?v=")
    icon = client.get(moved.headers["location"])
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_the_about_page_gives_the_source_attributes_of_the_advice(client: TestClient) -> None:
    """Anyone can read what HemiCare's advice is for and rests on (the knowledge base version and when it was issued,
    its references, rules and their cases, how it is kept up to date); the care team is pointed to its feedback."""
    kb = load_default()
    open_page = client.get("/about")
    assert open_page.status_code == 200
    issued = dt.date.fromisoformat(f"{kb.version.split('.')[0]}-{int(kb.version.split('.')[1]):02d}-01")
    assert f"Knowledge base {kb.version}, issued in {issued:%B %Y}: {len(kb.references)}" in open_page.text
    cases = len(run_all(kb))  # as many as the knowledge check runs
    assert f"({cases} in all)" in open_page.text and "never as safe" in open_page.text
    source = open_page.text[open_page.text.index('id="about-source"') : open_page.text.index('id="about-evidence"')]
    made_by = _visible_text(source)
    assert f"HemiCare {__version__} is open-source software (Apache License 2.0)" in made_by
    assert "No funding source and no conflict of interest is on record" in made_by
    assert 'href="/overrides"' not in open_page.text
    sign_in(client, "tcm")
    assert '(<a href="/overrides">Changed at sign-off</a>)' in client.get("/about").text
    assert '<a href="/about">About its advice</a>' in client.get("/patients").text
    client.cookies.clear()
    sign_in(client, "patient1")
    assert 'href="/overrides"' not in client.get("/about").text


def _stated_rows(engine: Engine) -> list[dict[str, str]]:
    with session_factory(engine)() as s:
        return [row.answers for row in s.scalars(select(StatedPreferences).order_by(StatedPreferences.id))]


def test_the_patient_says_what_matters_to_them_and_the_care_team_sees_where_the_assessment_differs(
    client: TestClient, clinic: Engine
) -> None:
    """Below their options the patient answers what matters to them (the assessment's preferences, in their words);
    the care team sees the answers beside the plan, each marked where the assessment records the opposite, since the
    plan follows the assessment. Bad answers come back under the statement's words, with nothing stored."""
    csrf = sign_in(client, "neuro")
    assert client.post("/patients/demo-001/sign", data={"csrf_token": csrf, "version": "1"}).status_code == 303
    assert "Not said yet" in client.get("/patients/demo-001").text
    client.cookies.clear()
    csrf = sign_in(client, "patient1")
    page = client.get("/me").text
    assert len(re.findall(r'<fieldset class="stance"', page)) == 5 and 'id="matters-form"' in page
    refused = client.post("/me/preferences", data={"csrf_token": csrf, "pref.avoid_surgery": "maybe"})
    assert refused.status_code == 422 and "Not sent yet: please check" in refused.text
    said = html.unescape(refused.text)
    assert "<strong>I would rather not have an operation</strong>: Input should be 'yes', 'no' or 'not_sure'" in said
    assert re.search(r'<fieldset class="stance" aria-invalid=true aria-describedby=preferences-problems>', said)
    nothing = client.post("/me/preferences", data={"csrf_token": csrf})
    assert nothing.status_code == 422
    assert "<strong>What matters to you</strong>: answer at least one statement (yes, no or not sure)" in nothing.text
    assert _stated_rows(clinic) == [] and _audit_count(clinic, entity="preferences") == 0
    form = {"pref.avoid_surgery": "yes", "pref.wants_definitive_treatment": "yes", "pref.integrative_care": "not_sure"}
    sent = client.post("/me/preferences", data={"csrf_token": csrf, **form})
    assert sent.status_code == 303 and sent.headers["location"] == "/me?saved=preferences#matters"
    assert _stated_rows(clinic) == [{key.removeprefix("pref."): value for key, value in form.items()}]
    assert _audit_count(clinic, entity="preferences", action="create") == 1
    again = client.get(sent.headers["location"]).text  # the answers sent are the ones chosen, to change
    told = again[again.index('id="matters"') :]  # where the patient lands, not at the top of a long page
    assert told.index("Sent. Thank you: your care team will see your answers") < told.index("<fieldset")
    assert "Saved. Thank you." not in again
    assert re.findall(r'name="pref\.([a-z_]+)" value="([a-z_]+)" checked', again) == [
        ("wants_definitive_treatment", "yes"),
        ("avoid_surgery", "yes"),
        ("integrative_care", "not_sure"),
    ]
    assert f"You last told them on {dt.date.today()}" in again
    client.cookies.clear()
    csrf = sign_in(client, "tcm")
    letter = _pdf_text(_referral(client, csrf, to="neurology").content)  # the receiving clinician reads it too
    assert (
        f'What the patient says matters to them Stated {dt.date.today()}: "I want a treatment aimed at the '
        'cause of my spasm, not only at easing it": yes; "I would rather not have an operation": yes (the assessment '
        'records the opposite); "I would like Traditional Chinese Medicine beside my medical treatment": not sure.'
    ) in letter
    card = client.get("/patients/demo-001").text
    card = html.unescape(card[card.index('id="stated-preferences"') :][:2000])
    lines = re.findall(r'<li>"([^"]+)": <strong>([a-z ]+)</strong>( <span class="badge warning">)?', card)
    # demo-001's assessment: wants a definitive treatment and integrative care, does not ask to avoid surgery.
    assert lines == [
        ("I want a treatment aimed at the cause of my spasm, not only at easing it", "yes", ""),
        ("I would rather not have an operation", "yes", ' <span class="badge warning">'),
        ("I would like Traditional Chinese Medicine beside my medical treatment", "not sure", ""),
    ]
    assert f"(stated {dt.date.today()})" in card and 'href="/patients/demo-001/assessment">update' in card

    # The patient list says it too, so that the clinic sees whom to talk to without opening each record.
    def wishes_listed() -> dict[str, str]:
        listed = html.unescape(client.get("/patients").text)
        return dict(
            re.findall(
                r'href="/patients/(demo-\d+)">.*?(?:The patient says the opposite of the assessment: ([^<]+)<|</tr>)',
                listed,
                re.S,
            )
        )

    assert wishes_listed() == {"demo-001": '"I would rather not have an operation": yes', "demo-002": ""}
    client.cookies.clear()
    csrf = sign_in(client, "patient1")  # a change of mind: the latest statement is the one that counts
    client.post("/me/preferences", data={"csrf_token": csrf, "pref.avoid_surgery": "no"})
    client.cookies.clear()
    sign_in(client, "tcm")
    assert wishes_listed() == {"demo-001": "", "demo-002": ""}


def test_the_api_takes_and_gives_what_matters_to_the_patient(client: TestClient, clinic: Engine) -> None:
    headers = {"authorization": f"Bearer {_token_for(client)}"}
    address = "/api/v1/patients/demo-001/preferences"
    today = dt.date.today().isoformat()
    assert client.get(address, headers=headers).json() == {"date": None, "answers": None, "by": None}
    for answers, field, message in (
        ({"avoid_surgery": "maybe"}, "answers.avoid_surgery", "Input should be 'yes', 'no' or 'not_sure'"),
        ({}, "answers", "answer at least one statement (yes, no or not sure)"),
        ({"pizza": "yes"}, "answers.pizza", "Input should be 'avoid_surgery', "),
    ):
        refused = client.post(address, json={"date": today, "answers": answers}, headers=headers)
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert error["field"] == field and error["message"].startswith(message), error
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    late = client.post(address, json={"date": tomorrow, "answers": {"avoid_surgery": "no"}}, headers=headers)
    assert late.status_code == 422 and late.json()["errors"][0]["field"] == "date"
    assert _stated_rows(clinic) == []
    made = client.post(address, json={"date": today, "answers": {"avoid_needles": "no"}}, headers=headers)
    assert made.status_code == 201 and made.json()["date"] == today
    stated = client.get(address, headers=headers).json()
    assert stated == {"date": today, "answers": {"avoid_needles": "no"}, "by": "surgeon"}
    assert _audit_count(clinic, entity="preferences", action="read") == 2


def test_a_patient_states_each_preference_of_the_assessment_and_no_other() -> None:
    """The statements, the answers the API takes and the assessment's preferences are written in three places: one
    added to the assessment alone would never be asked, one added to the statements alone never stored."""
    from typing import get_args

    from hemicare.engine.assessment import Preferences
    from hemicare.outcomes.schemas import PreferenceId

    assert set(outcome_service.PREFERENCE_STATEMENTS) == set(get_args(PreferenceId)) == set(Preferences.model_fields)


def test_a_stated_preference_differs_from_the_assessment_only_where_it_says_the_opposite() -> None:

    answers = {"avoid_needles": "no", "avoid_injections": "yes", "avoid_surgery": "not_sure", "integrative_care": "no"}
    recorded = {"avoid_needles": True, "avoid_injections": True, "avoid_surgery": True}  # integrative care: absent
    assert [(line.stance, line.differs) for line in outcome_service.stated_lines(answers, recorded)] == [
        ("not sure", False),  # avoid surgery: not sure differs from nothing
        ("yes", False),  # avoid injections, as recorded
        ("no", True),  # avoid needles: the assessment says the patient does
        ("no", False),  # integrative care: not asked for, as an absent preference means
    ]
    assert not any(line.differs for line in outcome_service.stated_lines(answers, None))  # no assessment to differ from


@pytest.mark.parametrize(("per_100", "filled"), [("about 7 in 100", 7), ("fewer than 1 in 100", 0), (None, None)])
def test_the_patients_sheet_draws_each_chance_as_a_hundred_squares(per_100: str | None, filled: int | None) -> None:
    """On paper too, a chance per 100 is drawn beside its words, as many squares filled as they say; a figure that is
    not a chance (a number of days) is a line of text."""
    from pypdf import PdfReader

    from hemicare.web.pdf import patient_plan_pdf

    figure = {
        "label": "Ptosis",
        "per_100": per_100,
        "text": "8 days",
        "value": 7.0,
        "evidence": {"references": ["x:1"]},
    }
    column = {
        "name": "Toxin",
        "label": "Suggested",
        "answers": {"q": {"text": "Injections.", "figures": [figure]}},
        "evidence": {"certainty": "moderate"},
    }
    options = {"questions": {"q": "What?"}, "denominator": "Per 100.", "note": "Ask.", "columns": [column]}
    body = patient_plan_pdf(
        patient_name="A B", printed_on=dt.date(2026, 11, 29), parts=[], warnings=[], due=[], options=options
    )
    drawn = PdfReader(io.BytesIO(body)).pages[0].get_contents().get_data().decode("latin-1")
    colour, squares = "", {"filled": 0, "empty": 0}
    for operation in re.finditer(r"([\d.]+ [\d.]+ [\d.]+) rg|\bre\b", drawn):
        if operation.group(1):
            colour = "filled" if operation.group(1) == "0.1216 0.3804 0.5529" else "empty"
        else:
            squares[colour] += 1
    text = _pdf_text(body)
    if filled is None:
        assert squares == {"filled": 0, "empty": 0} and "- Ptosis: 8 days (x:1)" in text
    else:
        assert squares == {"filled": filled, "empty": 100 - filled} and f"Ptosis: {per_100} (x:1)" in text
    assert "Toxin (suggested): Injections." in text and "Toxin (suggested): moderate." in text


def test_the_patient_pdf_says_what_to_know_only_when_there_is_something() -> None:
    from hemicare.plans.service import ReviewedPart
    from hemicare.web.pdf import patient_plan_pdf
    from hemicare.web.plain import things_to_know

    printed = dt.date(2026, 11, 26)
    quiet = _pdf_text(patient_plan_pdf(patient_name="A B", printed_on=printed, parts=[], warnings=[], due=[]))
    assert "Things to know" not in quiet
    assert "Nothing yet: your care team will talk the options through with you." in quiet
    alerts = [
        {"id": "pregnancy:toxin", "severity": "critical", "message": "Not during pregnancy."},
        {"id": "unchecked:drug:x", "severity": "warning", "message": "Drug x is not checked."},
        {"id": "note", "severity": "info", "message": "A note for the team."},
    ]
    signoff = {"by": "n", "role": "neurologist", "at": "2026-11-26T10:00:00+00:00"}
    reviewed = {part: ReviewedPart({"alerts": alerts}, signoff, False) for part in ("conventional", "integrative")}
    warnings = things_to_know(reviewed)
    assert warnings == ["Not during pregnancy."]  # once, though both signed versions carry it
    told = _pdf_text(patient_plan_pdf(patient_name="A B", printed_on=printed, parts=[], warnings=warnings, due=[]))
    assert "Things to know - Not during pregnancy." in told
    assert "Drug x is not checked" not in told and "A note for the team" not in told


def test_the_patients_options_say_the_oldest_issue_where_the_parts_were_signed_from_two() -> None:
    """Each part the patient is shown comes from the version its specialty signed; where those were made from two
    knowledge base versions, the options say when the older was issued, and warn once it is out of date, whichever
    part was signed first."""
    from hemicare.plans.service import ReviewedPart
    from hemicare.web.plain import plain_options

    kb = load_default()
    plan = build_plan(validate_assessment(read_file(EXAMPLES / "demo-001.yaml")), kb).model_dump(mode="json")
    plan["recommendations"] = [{**rec, "status": "recommended"} for rec in plan["recommendations"]]
    newer, older = {**plan, "knowledge_version": "2026.11.1"}, {**plan, "knowledge_version": "2019.3.1"}
    for content in (newer, older):  # as stored before aids said when they were issued
        content["decision_aid"] = {k: v for k, v in plan["decision_aid"].items() if k != "about"}
    signoff = {"by": "n", "role": "neurologist", "at": "2026-11-26T10:00:00+00:00"}
    parts = ["conventional", "integrative"]
    for conventional, integrative in ((newer, older), (older, newer)):
        reviewed = {
            "conventional": ReviewedPart(conventional, signoff, False),
            "integrative": ReviewedPart(integrative, signoff, False),
        }
        shown = plain_options(parts, reviewed, kb)
        assert shown is not None
        assert shown["about"]["knowledge_version"] == "2019.3.1", conventional["knowledge_version"]
        assert shown["about"]["review_by"] == "2024-03-01"
    alone = plain_options(parts, {"conventional": ReviewedPart(newer, signoff, False)}, kb)
    assert alone is not None and alone["about"]["knowledge_version"] == "2026.11.1"


def test_security_headers_and_openapi(client: TestClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and "/api/v1/plans" in response.json()["paths"]
    assert response.headers["x-frame-options"] == "DENY"
    policy = response.headers["content-security-policy"]
    for directive in ("default-src 'self'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"):
        assert directive in policy, directive  # forms post only here; no page is framed elsewhere
    assert "camera=()" in response.headers["permissions-policy"]
    assert response.headers["cross-origin-opener-policy"] == "same-origin"
    # Pages and API answers hold patient data: never cached. Only the static files may be.
    sign_in(client, "neuro")
    for path in ("/patients/demo-001", "/api/v1/patients/demo-001", "/login"):
        assert client.get(path).headers["cache-control"] == "no-store", path
    static = client.get("/static/style.css")
    assert static.status_code == 200 and "cache-control" not in static.headers
    assert static.headers["x-frame-options"] == "DENY"


def test_a_page_names_its_static_files_by_their_contents(client: TestClient, tmp_path: Path) -> None:
    """After an upgrade a browser must not keep the old style sheet or script: their addresses carry a digest of the
    files as served, and change with them."""
    import hashlib

    from hemicare.web import app as web_app

    page = client.get("/login").text
    linked = re.findall(r'(?:href|src)="(/static/[^"?]+)\?v=([0-9a-f]{12})"', page)
    assert sorted(path for path, _ in linked) == ["/static/app.js", "/static/favicon.svg", "/static/style.css"]
    for path, digest in linked:
        served = client.get(f"{path}?v={digest}")
        assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest()[:12] == digest, path
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable", path
    assert "cache-control" not in client.get("/static/app.js").headers  # by its plain address: revalidated
    missing = client.get("/static/nothing.js?v=0123456789ab")
    assert missing.status_code == 404 and "cache-control" not in missing.headers
    (tmp_path / "app.js").write_text("// one version")
    before = web_app.static_addresses(tmp_path)["app.js"]
    (tmp_path / "app.js").write_text("// the next version")
    assert web_app.static_addresses(tmp_path)["app.js"] != before


def test_patient_diary_and_hfs7_from_the_portal(client: TestClient, clinic: Engine) -> None:
    csrf = sign_in(client, "patient1")
    assert client.post("/me/diary", data={"csrf_token": csrf, "spasms": "12", "intensity": "3"}).status_code == 303
    future = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    typed = {"csrf_token": csrf, "spasms": "17", "per": "hour", "intensity": "30", "triggers": ["talking"]}
    bad = client.post("/me/diary", data={**typed, "date": future})
    # The patient's page again, the entry as typed and each problem under the words of its label.
    assert bad.status_code == 422 and 'id="diary-problems"' in bad.text and "Saved. Thank you." not in bad.text
    problems = bad.text[bad.text.index('id="diary-problems"') : bad.text.index("</div></div>")]
    assert "<strong>How strong</strong>: Input should be less than or equal to 10" in problems
    assert f"<strong>Date</strong>: {future} is in the future" in problems
    assert 'name="spasms" type="number" min="0" max="10000" required value="17">' in bad.text
    assert (
        'value="30" aria-invalid=true aria-describedby=diary-problems>' in bad.text
        and '<option value="hour" selected>' in bad.text
    )
    assert 'value="talking" checked>' in bad.text and 'value="stress" >' in bad.text
    with session_factory(clinic)() as s:
        patient = patient_service.get(s, code="demo-001")
        assert len(outcome_service.recent_diary(s, patient=patient)) == 1  # only the first entry was saved
    answers = {f"item.{i}": "2" for i in range(7)}
    assert client.post("/me/hfs7", data={"csrf_token": csrf, **answers}).status_code == 303
    page = client.get("/me")
    assert "Your plan in plain words" in page.text and 'class="series spasms"' in page.text


class _PostForms(HTMLParser):
    """A page's forms that post: each one's address and hidden fields."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "form":
            self.inside = (attr.get("method") or "").lower() == "post"
            if self.inside:
                self.forms.append((str(attr.get("action")), {}))
        elif tag == "input" and self.inside and attr.get("type") == "hidden":
            self.forms[-1][1][str(attr.get("name"))] = str(attr.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False


def _post_forms(page: str) -> list[tuple[str, dict[str, str]]]:
    parser = _PostForms()
    parser.feed(page)
    return parser.forms


def _hidden_fields(client: TestClient, page: str, action: str) -> dict[str, str]:
    """The hidden fields (CSRF token, form key, version...) of the form on ``page`` that posts to ``action``."""
    response = client.get(page)
    assert response.status_code == 200, page
    found = [hidden for posted_to, hidden in _post_forms(response.text) if posted_to == action]
    assert len(found) == 1, (page, action, [posted_to for posted_to, _ in _post_forms(response.text)])
    return found[0]


# Forms carried out as often as they are sent: signing in and out; a password change, which ends the session the
# second sending comes from (it is answered with the sign-in page, or checked against the new password); the admin's
# new and reset passwords, shown once in the answer (answered "done" the second time, the password would be lost);
# the referral letter, which writes nothing but its audit entry.
SENT_EVERY_TIME = {
    "/login",
    "/logout",
    "/account/password",
    "/account/sign-out-everywhere",
    "/admin/users",
    "/admin/users/{username}/password",
    "/patients/{code}/referral.pdf",
}


def _route_of(action: str) -> str:
    """The route template a form's address belongs to."""
    templates = {path for method, path in app_routes() if method == "POST"}
    if action in templates:
        return action
    (template,) = (t for t in templates if re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", t), action))
    return template


def test_every_form_that_writes_is_sent_once(client: TestClient, clinic: Engine) -> None:
    """Each page form that writes carries a form key (one per drawing of the page), and every route the pages post
    to is on a page: a form added without a key, or a route no page shows, fails here."""
    _records_to_act_on(clinic)
    csrf = sign_in(client, "neuro")  # an agreed part: the patient's page shows their options and what matters
    assert client.post("/patients/demo-001/sign", data={"csrf_token": csrf, "version": "1"}).status_code == 303
    pages = {
        "neuro": ["/patients/demo-001", "/patients/demo-001/assessment", "/patients/new", "/patients/demo-001/edit"],
        "surgeon": ["/patients/demo-001"],
        "tcm": ["/patients/demo-001"],
        "admin": ["/admin", "/account"],
        "patient1": ["/me", "/me/hfs7"],
    }
    keyed: dict[str, bool] = {}
    seen_keys: list[str] = []
    for username, paths in pages.items():
        client.cookies.clear()
        sign_in(client, username)
        for path in paths:
            for action, hidden in _post_forms(client.get(path).text):
                route = _route_of(action)
                keyed[route] = keyed.get(route, True) and "form_key" in hidden
                seen_keys += [hidden["form_key"]] if "form_key" in hidden else []
    client.cookies.clear()
    keyed |= {"/login": "form_key" in _post_forms(client.get("/login").text)[0][1]}
    assert {route for route, has_key in keyed.items() if has_key != (route not in SENT_EVERY_TIME)} == set()
    page_posts = {path for method, path in app_routes() if method == "POST" and not path.startswith("/api/")}
    assert page_posts - set(keyed) == set()
    assert len(seen_keys) == len(set(seen_keys)) > 20  # every form drawn has a key of its own


_SENT_ONCE = {
    "assessment": (
        "neuro",
        "/patients/demo-001/assessment",
        "/patients/demo-001/assessment",
        {"age": "50", "sex": "female", "side": "left", "duration_months": "12", "regions": "periocular"},
        PlanVersion,
    ),
    "toxin session": (
        "neuro",
        "/patients/demo-001",
        "/patients/demo-001/sessions/toxin",
        {"product": "onabotulinumtoxinA", "lot": "C9", "units.upper_lid_medial.left": "2.5"},
        TreatmentSession,
    ),
    "acupuncture session": (
        "tcm",
        "/patients/demo-001",
        "/patients/demo-001/sessions/acupuncture",
        {"points": ["LR3", "GB20"]},
        TreatmentSession,
    ),
    "grades": ("neuro", "/patients/demo-001", "/patients/demo-001/grades", {"smc_grade": "2"}, ScaleGrade),
    "new patient": (
        "neuro",
        "/patients/new",
        "/patients/new",
        {"code": "demo-003", "name": "Ana Silva", "sex": "female"},
        Patient,
    ),
    "diary": ("patient1", "/me", "/me/diary", {"spasms": "12", "intensity": "3"}, DiaryEntry),
    "HFS-7": ("patient1", "/me/hfs7", "/me/hfs7", {f"item.{i}": "2" for i in range(7)}, QuestionnaireAnswer),
}


@pytest.mark.parametrize("form", sorted(_SENT_ONCE))
def test_a_form_sent_twice_is_carried_out_once(client: TestClient, clinic: Engine, form: str) -> None:
    """A second click while the first was on its way sends the same form again: it is answered as the first was,
    and stores nothing more (not a second assessment and plan version, not a toxin session entered twice)."""
    username, page, action, fields, model = _SENT_ONCE[form]
    sign_in(client, username)

    def stored() -> int:
        with session_factory(clinic)() as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)

    before = stored()
    hidden = _hidden_fields(client, page, action)
    first, second = (client.post(action, data={**hidden, **fields}) for _ in range(2))
    assert first.status_code == second.status_code == 303, (first.text[:300], second.text[:300])
    assert first.headers["location"] == second.headers["location"]
    assert stored() == before + 1
    again = _hidden_fields(client, page, action)  # the page drawn again: a new form, carried out as new
    assert again["form_key"] != hidden["form_key"]
    if form == "new patient":
        fields = {**fields, "code": "demo-004"}
    if form == "toxin session":
        fields = {**fields, "override_reason": "second eye done separately today"}  # within 12 weeks of the first
    assert client.post(action, data={**again, **fields}).status_code == 303
    assert stored() == before + 2


def test_a_form_refused_or_changed_is_carried_out_again(client: TestClient, clinic: Engine) -> None:
    """Only the same form, carried out, is answered from memory: one refused is checked again each time it is sent,
    one changed after going back is a new entry, and one without a key (not from a page) is carried out each time."""
    sign_in(client, "patient1")

    def entries() -> list[int]:
        with session_factory(clinic)() as s:
            return list(s.scalars(select(DiaryEntry.spasms).order_by(DiaryEntry.id)))

    hidden = _hidden_fields(client, "/me", "/me/diary")
    for _ in range(2):
        refused = client.post("/me/diary", data={**hidden, "spasms": "12", "intensity": "30"})
        assert refused.status_code == 422 and "less than or equal to 10" in refused.text
    assert entries() == []
    for _ in range(2):
        assert client.post("/me/diary", data={**hidden, "spasms": "12", "intensity": "3"}).status_code == 303
    assert entries() == [12]
    assert client.post("/me/diary", data={**hidden, "spasms": "14", "intensity": "3"}).status_code == 303
    assert entries() == [12, 14]
    keyless = {name: value for name, value in hidden.items() if name != "form_key"}
    for _ in range(2):
        assert client.post("/me/diary", data={**keyless, "spasms": "9", "intensity": "3"}).status_code == 303
    assert entries() == [12, 14, 9, 9]
    # Another account sending the same key is not answered from this one's memory.
    client.cookies.clear()
    theirs = {**hidden, "csrf_token": sign_in(client, "patient2"), "spasms": "12", "intensity": "3"}
    assert client.post("/me/diary", data=theirs).status_code == 303
    assert len(entries()) == 5


def test_a_sign_off_sent_twice_signs_once_and_is_not_refused_as_stale(client: TestClient, clinic: Engine) -> None:
    """Without the form key the second click reads "plan version 1 is no longer the latest" (409) although the
    sign-off it repeats went through."""
    sign_in(client, "neuro")
    hidden = _hidden_fields(client, "/patients/demo-001", "/patients/demo-001/sign")
    form = {**hidden, "status.mvd": "option", "reason.mvd": "prefers toxin first"}
    answers = [client.post("/patients/demo-001/sign", data=form) for _ in range(2)]
    assert [answer.status_code for answer in answers] == [303, 303]
    with session_factory(clinic)() as s:
        assert list(s.scalars(select(PlanVersion.number).where(PlanVersion.patient_id == 1))) == [1, 2]
    again = client.post("/patients/demo-001/sign", data={**form, "form_key": "another drawing of the page"})
    assert again.status_code == 409  # a different form for version 1 is still stale


_TODAY = dt.date.today().isoformat()
_API_TOXIN = {
    "date": _TODAY,
    "clinician": "S",
    "details": {
        "kind": "toxin",
        "product": "onabotulinumtoxinA",
        "lot": "L1",
        "sites": [{"site": "upper_lid_medial", "side": "left", "units": 2.5}],
    },
}
# API requests that record something, each with a body and the table it adds a row to.
_API_SENT_ONCE: dict[str, tuple[str, Any, type[Any]]] = {
    "patient": ("/api/v1/patients", {"code": "demo-010", "name": "New One", "sex": "female"}, Patient),
    "assessment": (
        "/api/v1/patients/demo-001/assessments",
        read_file(EXAMPLES / "demo-001.yaml") | {"id": "demo-001"},
        PlanVersion,
    ),
    "new plan version": ("/api/v1/patients/demo-001/plans", None, PlanVersion),
    "sign-off": ("/api/v1/patients/demo-001/plan/sign", {"version": 1}, PlanVersion),
    "toxin session": ("/api/v1/patients/demo-001/sessions", _API_TOXIN, TreatmentSession),
    "diary": ("/api/v1/patients/demo-001/diary", {"date": _TODAY, "spasms": 5, "intensity": 2}, DiaryEntry),
    "HFS-7": (
        "/api/v1/patients/demo-001/questionnaires",
        {"date": _TODAY, "instrument": "hfs7", "answers": [1] * 7},
        QuestionnaireAnswer,
    ),
    "grades": ("/api/v1/patients/demo-001/grades", {"date": _TODAY, "smc_grade": 2}, ScaleGrade),
    "recall closure": (
        "/api/v1/patients/demo-001/recall-closures",
        {"recall": "hfs7", "reason": "answers at another clinic"},
        RecallClosure,
    ),
}


@pytest.mark.parametrize("request_name", sorted(_API_SENT_ONCE))
def test_an_api_request_sent_again_with_its_key_is_carried_out_once(
    client: TestClient, clinic: Engine, request_name: str
) -> None:
    """A client that retries (its answer was lost, or it timed out) sends the request again under the same
    Idempotency-Key: it gets the first answer again, status and body, and nothing more is stored. A new key is a new
    request, carried out as such."""
    path, body, model = _API_SENT_ONCE[request_name]
    headers = {"authorization": f"Bearer {_token_for(client)}", once.HEADER: f"retry-{request_name}"}

    def stored() -> int:
        with session_factory(clinic)() as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)

    before = stored()
    first, second = (client.post(path, json=body, headers=headers) for _ in range(2))
    assert first.status_code in (200, 201), first.text
    assert (second.status_code, second.json()) == (first.status_code, first.json())
    assert second.headers[once.REPLAYED] == "true" and once.REPLAYED not in first.headers
    assert stored() == before + 1
    if request_name == "patient":
        body = {**body, "code": "demo-011"}
    if request_name == "sign-off":
        body = {"version": 2}  # the version the first sign-off made
    if request_name == "toxin session":
        reason = {"override_reason": "second eye done separately today"}  # within 12 weeks of the first
        body = {**_API_TOXIN, "details": {**_API_TOXIN["details"], **reason}}
    other = client.post(path, json=body, headers={**headers, once.HEADER: f"new-{request_name}"})
    assert other.status_code == first.status_code and once.REPLAYED not in other.headers, other.text
    assert stored() == before + 2


def test_a_session_outcome_sent_again_with_its_key_is_recorded_once(client: TestClient, clinic: Engine) -> None:
    """The outcome told at the next visit, sent again by a client that retries: one amendment, the same answer."""
    headers = {"authorization": f"Bearer {_token_for(client)}"}
    made = client.post("/api/v1/patients/demo-001/sessions", json=_API_TOXIN, headers=headers).json()
    path = f"/api/v1/patients/demo-001/sessions/{made['id']}"
    outcome = {"effect_weeks": 6, "adverse_effects": ["ptosis"]}
    first, second = (client.patch(path, json=outcome, headers={**headers, once.HEADER: "o-1"}) for _ in range(2))
    assert first.status_code == second.status_code == 200 and first.json() == second.json()
    assert second.headers[once.REPLAYED] == "true"
    with session_factory(clinic)() as s:
        amended = s.scalars(select(AuditEntry.action).where(AuditEntry.entity == "session")).all()
    assert sorted(amended) == ["amend", "create"]


def test_every_api_request_that_records_something_takes_an_idempotency_key(client: TestClient) -> None:
    """A route added without the key fails here: every POST and PATCH of the API takes it, but the plan for an
    assessment, which stores nothing, and the routes that make credentials."""
    document = client.get("/api/v1/openapi.json").json()["paths"]
    keyed = {
        (method.upper(), path): any(p["in"] == "header" and p["name"] == once.HEADER for p in op.get("parameters", []))
        for path, operations in document.items()
        for method, op in operations.items()
        if method in ("post", "patch")
    }
    assert {route for route, has_key in keyed.items() if not has_key} == {("POST", "/api/v1/plans")}
    assert len(keyed) >= 11


def test_an_idempotency_key_is_refused_when_garbled_or_used_for_another_request(
    client: TestClient, clinic: Engine
) -> None:
    token = _token_for(client)
    diary = "/api/v1/patients/demo-001/diary"

    def entries() -> list[int]:
        with session_factory(clinic)() as s:
            return list(s.scalars(select(DiaryEntry.spasms).order_by(DiaryEntry.id)))

    for key, problem in (("x" * 256, "(got 256 characters)"), ("", "(got 0 characters)"), ("tab\there", "printable")):
        refused = client.post(
            diary,
            json={"date": _TODAY, "spasms": 5, "intensity": 2},
            headers={"authorization": f"Bearer {token}", once.HEADER: key},
        )
        assert refused.status_code == 422, (key, refused.text)
        [error] = refused.json()["errors"]
        assert error["field"] == once.HEADER and problem in error["message"]
    headers = {"authorization": f"Bearer {token}", once.HEADER: "k-1"}
    # Refused by a check: the key is not kept, so the corrected request goes through under it.
    wrong = client.post(diary, json={"date": _TODAY, "spasms": 5, "intensity": 30}, headers=headers)
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "intensity"
    assert client.post(diary, json={"date": _TODAY, "spasms": 5, "intensity": 3}, headers=headers).status_code == 201
    # The same key with another body, or at another address: refused, naming the key; nothing written.
    reused = client.post(diary, json={"date": _TODAY, "spasms": 6, "intensity": 3}, headers=headers)
    assert reused.status_code == 422 and reused.json()["errors"] == [
        {"field": once.HEADER, "message": "was sent in the last day with another request; use a new key"}
    ]
    elsewhere = client.post(
        "/api/v1/patients/demo-002/diary", json={"date": _TODAY, "spasms": 5, "intensity": 3}, headers=headers
    )
    assert elsewhere.status_code == 422 and elsewhere.json()["errors"][0]["field"] == once.HEADER
    assert entries() == [5]
    # Keys are each user's own: the patient's same key is another request.
    with session_factory(clinic)() as s, s.begin():
        own = user_service.issue_token(s, username="patient1", name="phone", actor="test")
    mine = {"authorization": f"Bearer {own}", once.HEADER: "k-1"}
    assert client.post(diary, json={"date": _TODAY, "spasms": 5, "intensity": 3}, headers=mine).status_code == 201
    assert entries() == [5, 5]


def test_an_answer_given_again_is_in_the_audit_trail(client: TestClient, clinic: Engine) -> None:
    """The answer given again holds the patient's record, as the first did: who was given it is recorded."""
    headers = {"authorization": f"Bearer {_token_for(client)}", once.HEADER: "plan-1"}
    for _ in range(2):
        assert client.post("/api/v1/patients/demo-001/plans", headers=headers).status_code == 201
    with session_factory(clinic)() as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.actor == "surgeon").order_by(AuditEntry.id)).all()
    assert [(e.action, e.entity, e.entity_id) for e in entries] == [
        ("create", "plan", "demo-001/v2"),
        ("replayed", "patient", "demo-001"),
    ]
    assert entries[1].detail == {"method": "POST", "path": "/api/v1/patients/demo-001/plans"}


def test_remembered_forms_are_forgotten_after_a_day(client: TestClient, clinic: Engine) -> None:
    sign_in(client, "patient1")
    hidden = _hidden_fields(client, "/me", "/me/diary")
    assert client.post("/me/diary", data={**hidden, "spasms": "12", "intensity": "3"}).status_code == 303
    with session_factory(clinic)() as s, s.begin():
        s.execute(update(SentForm).values(sent_at=utcnow() - once.KEPT - dt.timedelta(minutes=1)))
    other = _hidden_fields(client, "/me", "/me/diary")
    assert client.post("/me/diary", data={**other, "spasms": "12", "intensity": "3"}).status_code == 303
    with session_factory(clinic)() as s:
        assert s.scalar(select(func.count()).select_from(SentForm)) == 1  # the old one went as the new one came


def _recorded_since(page: str) -> str | None:
    """The patient page's notice of sessions recorded since the plan was made, as text."""
    found = re.search(r'<div class="card since" id="recorded-since">(.*?)</div>', page, re.S)
    return _visible_text(found.group(1)) if found else None


def test_sessions_recorded_after_the_plan_are_named_until_a_version_is_made_from_them(
    client: TestClient, clinic: Engine
) -> None:
    """A toxin session given today and the side effects of the one before change the next plan (its interval, its
    doses); the page says what the plan does not know yet, and a new version made from the records knows it."""
    sign_in(client, "neuro")
    today = dt.date.today().isoformat()
    assert _recorded_since(client.get("/patients/demo-001").text) is None
    toxin = {"product": "onabotulinumtoxinA", "lot": "C9", "units.upper_lid_medial.left": "2.5"}
    hidden = _hidden_fields(client, "/patients/demo-001", "/patients/demo-001/sessions/toxin")
    assert client.post("/patients/demo-001/sessions/toxin", data={**hidden, **toxin}).status_code == 303
    client.cookies.clear()
    sign_in(client, "tcm")  # needling is not what a plan is made from: it adds nothing to the notice
    hidden = _hidden_fields(client, "/patients/demo-001", "/patients/demo-001/sessions/acupuncture")
    assert client.post("/patients/demo-001/sessions/acupuncture", data={**hidden, "points": "LR3"}).status_code == 303
    notice = _recorded_since(client.get("/patients/demo-001").text)
    assert notice is not None and notice.startswith(f"Recorded since this plan was made: toxin session of {today}.")
    assert "Make a new version from the records" in notice
    # Signing the plan as it is does not make it know the session: the notice stays on the signed version.
    client.cookies.clear()
    sign_in(client, "neuro")
    asked = f'<p class="small" id="last-outcome">How did the session of {today} go?'  # on the next session's form
    assert asked in client.get("/patients/demo-001").text
    hidden = _hidden_fields(client, "/patients/demo-001", "/patients/demo-001/sign")
    assert client.post("/patients/demo-001/sign", data=hidden).status_code == 303
    assert _recorded_since(client.get("/patients/demo-001").text) is not None
    hidden = _hidden_fields(client, "/patients/demo-001", "/patients/demo-001/plans")
    made = client.post("/patients/demo-001/plans", data=hidden)
    assert made.status_code == 303 and made.headers["location"] == "/patients/demo-001#plan"
    page = client.get("/patients/demo-001").text
    assert _recorded_since(page) is None and "Plan · version 3 (generated)" in page
    with session_factory(clinic)() as s:
        version = plan_service.latest(s, patient=patient_service.get(s, code="demo-001"))
        assert version is not None
        programme = version.content["recommendations"][1]["details"]["programme"]
        entry = s.scalars(select(AuditEntry).where(AuditEntry.entity == "plan").order_by(AuditEntry.id.desc())).first()
        assert entry is not None and entry.detail["via"] == "records"
        session_id = s.scalars(select(TreatmentSession.id).where(TreatmentSession.kind == "toxin")).one()
    assert programme["last_session"] == today and programme["too_soon"] is True
    # The session's outcome, told at the next visit: six weeks and a drooping lid.
    action = f"/patients/demo-001/sessions/{session_id}/outcome"
    outcome = {**_hidden_fields(client, "/patients/demo-001", action), "effect_weeks": "6", "adverse_effects": "ptosis"}
    assert client.post(action, data=outcome).status_code == 303
    assert 'id="last-outcome"' not in client.get("/patients/demo-001").text
    notice = _recorded_since(client.get("/patients/demo-001").text)
    assert notice is not None and notice.startswith(
        f"Recorded since this plan was made: the outcome of the toxin session of {today}."
    )
    hidden = _hidden_fields(client, "/patients/demo-001", "/patients/demo-001/plans")
    assert client.post("/patients/demo-001/plans", data=hidden).status_code == 303
    with session_factory(clinic)() as s:
        version = plan_service.latest(s, patient=patient_service.get(s, code="demo-001"))
        assert version is not None and version.number == 4
        programme = version.content["recommendations"][1]["details"]["programme"]
        signed = plan_service.version(s, patient=patient_service.get(s, code="demo-001"), number=2)
        signed_sites = signed.content["recommendations"][1]["details"]["programme"]["sites"]
    titration = programme["titration"]
    assert any(line.startswith("Last effect lasted only 6 weeks") for line in titration), titration
    assert any("ptosis" in line.lower() for line in titration), titration
    # Before signing again, the reviewer sees each dose that changed since the signed version, not only statuses.
    card = client.get("/patients/demo-001").text
    card = card[card.index('id="since-review"') : card.index("</div>", card.index('id="since-review"'))]
    was = {(site["label"], site["side"]): site["units"] for site in signed_sites}
    changed = [site for site in programme["sites"] if was.get((site["label"], site["side"])) != site["units"]]
    assert changed, "the outcome changed no dose"
    for site in changed:
        before = f"{was[site['label'], site['side']]:g} U" if (site["label"], site["side"]) in was else "absent"
        item = html.escape(f"{site['label']} ({site['side']})")
        assert f"Botulinum toxin injections, {item}: {before} → <strong>{site['units']:g} U</strong>" in card, (
            item,
            card,
        )


def test_a_new_version_from_the_records_through_the_api(client: TestClient, clinic: Engine) -> None:
    token = _token_for(client)
    headers = {"authorization": f"Bearer {token}"}
    made = client.post("/api/v1/patients/demo-001/plans", headers=headers)
    assert made.status_code == 201 and made.json()["number"] == 2 and made.json()["kind"] == "generated"
    assert client.post("/api/v1/patients/no-such/plans", headers=headers).status_code == 404
    with session_factory(clinic)() as s, s.begin():
        s.add(Patient(code="demo-009", name="New", sex="female", created_by="t"))
    missing = client.post("/api/v1/patients/demo-009/plans", headers=headers)
    assert missing.status_code == 404 and "assessment" in missing.text


def test_an_unfinished_hfs7_comes_back_with_its_answers_and_what_is_missing(client: TestClient, clinic: Engine) -> None:
    def answered() -> int:
        with session_factory(clinic)() as s:
            found = outcome_service.records(s, patient=patient_service.get(s, code="demo-001"))
            return len(found.scores.get("hfs7", []))

    before = answered()
    csrf = sign_in(client, "patient1")
    answers = {f"item.{i}": "3" for i in range(7)} | {"item.2": "", "item.5": "9"}
    refused = client.post("/me/hfs7", data={"csrf_token": csrf, **answers})
    assert refused.status_code == 422 and 'id="hfs7-problems"' in refused.text, refused.text
    problems = refused.text[refused.text.index('id="hfs7-problems"') : refused.text.index("</div></div>")]
    said = re.findall(r"<strong>(Item \d)</strong>: choose an answer from 0 to 4(?:</div>|$)", problems)
    assert said == ["Item 3", "Item 6"], problems
    assert "Answer each of the 7 items of your HFS-7 form with its score, from 0 to 4." in refused.text
    for index, marked in ((2, True), (5, True), (0, False)):
        box = re.search(rf'<select id="item-{index}"[^>]*>', refused.text)
        assert box and ("aria-invalid=true" in box.group(0)) is marked, (index, box)
    assert len(re.findall(r"<option selected>3</option>", refused.text)) == 5  # the answers given stay chosen
    assert answered() == before
    assert client.post("/me/hfs7", data={"csrf_token": csrf, **answers, "item.2": "0", "item.5": "4"}).is_redirect
    assert answered() == before + 1


def test_the_care_team_records_an_hfs7_answered_on_paper(client: TestClient, clinic: Engine) -> None:
    """Many patients answer the HFS-7 on paper in the waiting room, or have no portal account: a clinician enters it
    on the patient's page, and it joins the chart and the recalls. Refused answers come back as chosen."""

    def answered() -> list[tuple[str, int, str]]:
        with session_factory(clinic)() as s:
            patient = patient_service.get(s, code="demo-001")
            rows = s.scalars(select(QuestionnaireAnswer).where(QuestionnaireAnswer.patient_id == patient.id))
            return [(row.date.isoformat(), row.total, row.created_by) for row in rows]

    csrf = sign_in(client, "tcm")
    page = client.get("/patients/demo-001").text
    assert 'action="/patients/demo-001/questionnaires/hfs7"' in page
    items = {f"item.{i}": "2" for i in range(7)}
    last_week = (dt.date.today() - dt.timedelta(days=7)).isoformat()

    missing = client.post("/patients/demo-001/questionnaires/hfs7", data={"csrf_token": csrf, **items, "item.4": ""})
    assert missing.status_code == 422 and "The HFS-7 was not recorded" in missing.text
    problems = missing.text[missing.text.index('id="hfs7-problems"') :].split("</div></div>")[0]
    # HFS-7's answer words are not in its source (only HFS-30's are): its range is said in numbers alone.
    assert problems.endswith("<strong>Item 5</strong>: choose an answer from 0 to 4"), problems
    assert 'id="hfs7-items">Items, from 0 to 4</div>' in page
    assert 'id="hfs30-items">Items in the order of the form in use, from 0 (never) to 4 (always)</div>' in page
    assert '<details class="card" id="hfs7-paper" open>' in missing.text
    assert len(re.findall(r"<option selected>2</option>", missing.text)) == 6  # the answers chosen stay chosen
    future = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    ahead = client.post("/patients/demo-001/questionnaires/hfs7", data={"csrf_token": csrf, **items, "date": future})
    assert ahead.status_code == 422 and f"<strong>Date answered</strong>: {future} is in the future" in ahead.text
    assert client.post("/patients/demo-001/questionnaires/hfs7", data=items | {"date": last_week}).status_code == 403
    assert answered() == []  # nothing refused was stored

    saved = client.post("/patients/demo-001/questionnaires/hfs7", data={"csrf_token": csrf, **items, "date": last_week})
    assert saved.status_code == 303 and saved.headers["location"] == "/patients/demo-001#outcomes"
    assert answered() == [(last_week, 14, "tcm")]
    figures = re.search(r'<details id="chart-figures".*?</details>', client.get("/patients/demo-001").text, re.S)
    assert figures and f"total by date: {last_week}: 14." in figures.group(0)

    for username in ("patient1", "admin"):
        client.cookies.clear()
        token = sign_in(client, username)
        refused = client.post("/patients/demo-001/questionnaires/hfs7", data={"csrf_token": token, **items})
        assert refused.status_code == 403, username
    assert len(answered()) == 1


def test_the_care_team_records_an_hfs30_answered_on_paper(client: TestClient, clinic: Engine) -> None:
    """The HFS-30 beside the HFS-7: thirty items, each unanswered one named; stored with its total, and listed with
    the answers that can be removed."""
    csrf = sign_in(client, "neuro")
    page = client.get("/patients/demo-001").text
    form = page[page.index('id="hfs30-form"') : page.index("</form>", page.index('id="hfs30-form"'))]
    assert len(re.findall(r'<select name="item\.\d+" aria-label="HFS-30 item \d+"', form)) == 30
    items = {f"item.{i}": str(i % 5) for i in range(30)}
    missing = client.post(
        "/patients/demo-001/questionnaires/hfs30", data={"csrf_token": csrf, **items, "item.11": "", "item.29": "5"}
    )
    assert missing.status_code == 422 and "The HFS-30 was not recorded" in missing.text
    problems = missing.text[missing.text.index('id="hfs30-problems"') :].split("</div></div>")[0]
    assert "<strong>Item 12</strong>: choose an answer" in problems and "<strong>Item 30</strong>" in problems
    assert 'id="hfs7-problems"' not in missing.text  # the other questionnaire's form is as usual
    assert '<details class="card" id="hfs7-paper" open>' in missing.text
    saved = client.post("/patients/demo-001/questionnaires/hfs30", data={"csrf_token": csrf, **items})
    assert saved.status_code == 303
    with session_factory(clinic)() as s:
        [row] = s.scalars(select(QuestionnaireAnswer).where(QuestionnaireAnswer.instrument == "hfs30"))
        assert row.total == sum(i % 5 for i in range(30)) and row.created_by == "neuro"
    page = html.unescape(client.get("/patients/demo-001").text)
    assert f"{dt.date.today().isoformat()}: HFS-30, total {row.total}" in page


# An HFS-30 typed subscale by subscale on the patient's page, as a form that groups its items prints them (30 items).
_SUBSCALES_TYPED = {
    "subscale.mobility": "1 2 3 4",
    "subscale.activities_of_daily_living": "0 0 1 1 2",
    "subscale.emotional_wellbeing": "1,1,1,1,1",
    "subscale.stigma": " 2  2 2 2 ",
    "subscale.social_support": "0 0 0 0",
    "subscale.cognition": "1 1 1 1",
    "subscale.communication": "3 3 3",
}


def test_the_care_team_records_an_hfs30_grouped_by_subscale(client: TestClient, clinic: Engine) -> None:
    """A form that prints the HFS-30's items under each subscale is typed subscale by subscale: each problem is named
    beside its subscale (an empty one, something that is not an answer, thirty items in all), nothing refused is
    stored, what was typed comes back, and once stored each subscale's score is shown with the total, to the care
    team and to the patient."""

    def stored() -> list[Any]:
        with session_factory(clinic)() as s:
            rows = s.scalars(select(QuestionnaireAnswer).where(QuestionnaireAnswer.instrument == "hfs30"))
            return [row.answers for row in rows]

    csrf = sign_in(client, "neuro")
    page = client.get("/patients/demo-001").text
    form = page[
        page.index('id="hfs30-subscales-form"') : page.index("</form>", page.index('id="hfs30-subscales-form"'))
    ]
    assert re.findall(r'<label for="hfs30-\w+">([^<]+)</label>', form) == [
        "Mobility", "Activities of daily living", "Emotional wellbeing", "Stigma", "Social support", "Cognition",
        "Communication",
    ]  # fmt: skip
    path = "/patients/demo-001/questionnaires/hfs30/subscales"
    typed = {"csrf_token": csrf, **_SUBSCALES_TYPED}
    refused = client.post(path, data=typed | {"subscale.stigma": "2 2 2 7", "subscale.cognition": ""})
    assert refused.status_code == 422 and "The HFS-30 was not recorded" in refused.text
    problems = html.unescape(
        refused.text[refused.text.index('id="hfs30-subscales-problems"') :].split("</div></div>")[0]
    )
    each = "each answer from 0 (never) to 4 (always), in the order printed, separated by spaces"
    assert re.findall(r"<div><strong>([^<]+)</strong>: ([^<]+)", problems) == [
        ("Stigma", f"'7' is not an answer: {each}"),
        ("Cognition", f"type this subscale's answers: {each}"),
    ]
    assert 'name="subscale.stigma" type="text" inputmode="numeric" autocomplete="off" value="2 2 2 7" required' in (
        refused.text.replace(" aria-invalid=true aria-describedby=hfs30-subscales-problems", "")
    )
    assert 'id="hfs30-problems"' not in refused.text  # the thirty-item form is as usual
    short = client.post(path, data=typed)  # communication holds 3 of its items: 29 in all
    problems = html.unescape(short.text[short.text.index('id="hfs30-subscales-problems"') :].split("</div></div>")[0])
    assert short.status_code == 422
    assert "<strong>Subscales</strong>: HFS-30 has 30 items, but the subscales hold 29" in problems
    assert stored() == []

    saved = client.post(path, data=typed | {"subscale.communication": "3 3 3 3"})
    assert saved.status_code == 303 and saved.headers["location"] == "/patients/demo-001#outcomes"
    [answers] = stored()
    assert answers["stigma"] == [2, 2, 2, 2] and sum(map(len, answers.values())) == 30
    scores = (
        "total 43 (mobility 10 of 16, activities of daily living 4 of 20, emotional wellbeing 5 of 20, stigma 8 of 16, "
        "social support 0 of 16, cognition 4 of 16, communication 12 of 16)"
    )
    assert f"{dt.date.today().isoformat()}: HFS-30, {scores}" in html.unescape(client.get("/patients/demo-001").text)
    client.cookies.clear()
    sign_in(client, "patient1")
    mine = html.unescape(client.get("/me").text)
    assert '<td>43<div class="muted">mobility 10 of 16, activities of daily living 4 of 20,' in mine


def test_the_patient_page_names_scales_and_dates_a_new_session_today(client: TestClient) -> None:
    csrf = sign_in(client, "patient1")
    for score in ("3", "1"):  # a change needs two answers
        answers = {f"item.{i}": score for i in range(7)}
        assert client.post("/me/hfs7", data={"csrf_token": csrf, **answers}).status_code == 303
    client.cookies.clear()
    sign_in(client, "neuro")
    page = client.get("/patients/demo-001").text
    assert "HFS-7 quality-of-life scale: 21 → 7 (" in page and "hfs7:" not in page
    assert f'name="date" type="date" value="{dt.date.today().isoformat()}"' in page


@pytest.mark.parametrize("example", sorted(path.name for path in EXAMPLES.iterdir()))
def test_what_is_not_recommended_is_folded_under_a_line_naming_it(
    client: TestClient, clinic: Engine, example: str
) -> None:
    """The options to weigh come first; each category's not-recommended items are folded away under one line that
    names them all, their reasons one click away. Nothing else is folded."""
    from hemicare.assessments import service as assessments
    from hemicare.engine import validate_assessment
    from hemicare.patients.schemas import PatientCreate
    from hemicare.plans import service as plans

    code = "ex-" + example.split(".")[0]
    with session_factory(clinic)() as s, s.begin():
        patient = patient_service.create(s, data=PatientCreate(code=code, name="Example", sex="female"), actor="t")
        data = validate_assessment(read_file(EXAMPLES / example) | {"id": code})
        assessments.record(s, patient=patient, assessment=data, actor="t", today=dt.date.today())
        plans.generate(s, patient=patient, kb=load_default(), actor="t", today=dt.date.today())
    sign_in(client, "neuro")
    page = client.get(f"/patients/{code}").text
    folds = [(m.start(), m.end()) for m in re.finditer(r'<details class="set-aside".*?</details>', page, flags=re.S)]
    cards = re.finditer(r'<div class="rec" id="rec-([\w-]+)">\s*<h3><span class="badge (\w+)">', page)
    seen = {"folded": 0, "open": 0}
    for card in cards:
        folded = any(start < card.start() < end for start, end in folds)
        assert folded == (card.group(2) == "not_recommended"), (card.group(1), card.group(2))
        seen["folded" if folded else "open"] += 1
    assert seen["open"] > 0
    for start, end in folds:
        block = page[start:end]
        count = int(re.search(r"Not recommended for this patient \((\d+)\)", block).group(1))  # type: ignore[union-attr]
        assert count == block.count('<div class="rec"') > 0
    if example == "demo-001.yaml":
        assert seen["folded"] >= 6 and "Baclofen" in page[folds[0][0] : folds[0][0] + 600]


@pytest.mark.parametrize("username", ["neuro", "surgeon", "tcm"])
def test_the_patient_pages_contents_lead_to_its_sections(client: TestClient, username: str) -> None:
    sign_in(client, username)
    page = client.get("/patients/demo-001").text
    nav = re.search(r'<nav class="toc small" aria-label="On this page">(.*?)</nav>', page, flags=re.S)
    assert nav, "no contents"
    targets = re.findall(r'href="#([\w-]+)"', nav.group(1))
    assert {"plan", "signoff", "decision-aid", "toxin", "history", "outcomes", "due"} <= set(targets)
    assert ("integrative-sessions" in targets) == (username == "tcm")
    assert ("surgery" in targets) == (username == "surgeon")
    for target in targets:
        assert f'id="{target}"' in page, target
    # Each part of the plan says whether it is signed.
    assert 'conventional: <span class="awaiting">awaiting sign-off</span>' in page


def test_a_new_plan_shows_what_changed_since_the_signed_one(client: TestClient) -> None:
    csrf = sign_in(client, "neuro")
    assert "since-review" not in client.get("/patients/demo-001").text  # nothing signed yet
    form = {"csrf_token": csrf, "version": "1", "status.mvd": "option", "reason.mvd": "prefers toxin first"}
    assert client.post("/patients/demo-001/sign", data=form).status_code == 303
    assert "since-review" not in client.get("/patients/demo-001").text  # the current version is the signed one
    # A new assessment: pregnant now. The engine's plan drops the clinician's change and adds pregnancy alerts.
    data = read_file(EXAMPLES / "demo-001.yaml") | {"id": "demo-001", "pregnant": True}
    stored = client.post("/api/v1/patients/demo-001/assessments", json=data, headers={"x-csrf-token": csrf})
    assert stored.status_code in (200, 201), stored.text
    page = client.get("/patients/demo-001").text
    card = page[page.index('id="since-review"') : page.index("</div>", page.index('id="since-review"'))]
    assert f"Changed since version 2, signed by neuro on {dt.date.today()}" in card
    assert "Microvascular decompression (MVD): option → <strong>recommended</strong>" in card
    assert "(earlier: Changed by neuro (neurologist) from recommended: prefers toxin first)" in card
    plan = client.get("/api/v1/patients/demo-001/plan").json()["plan"]
    new_alerts = [alert for alert in plan["alerts"] if "pregnan" in alert["id"]]
    assert new_alerts, plan["alerts"]
    for alert in new_alerts:
        assert f"New {alert['severity']} alert: {html.escape(alert['message'])}" in card


def test_pages_date_a_plan_and_its_sign_off_by_the_clinics_day(
    client: TestClient, clinic: Engine, clinic_zone: Callable[[str], None]
) -> None:
    """A plan made and signed at 21:00 in New York is stored on the next day in UTC; every page, the patient's and
    the printed plan give the clinic's day."""
    csrf = sign_in(client, "neuro")
    assert client.post("/patients/demo-001/sign", data={"csrf_token": csrf, "version": "1"}).status_code == 303
    clinic_zone("America/New_York")
    today = dt.date.today()
    evening = dt.datetime.combine(today, dt.time(21), tzinfo=dt.UTC) + dt.timedelta(hours=5)  # 21:00 EST
    with session_factory(clinic)() as s, s.begin():
        for version in s.scalars(select(PlanVersion)):
            version.created_at = evening
            if version.signed_at is not None:
                version.signed_at = evening
                signed = version.content["signoff"]["conventional"] | {"at": evening.isoformat()}
                version.content = version.content | {"signoff": {"conventional": signed}}
    page = client.get("/patients/demo-001").text
    assert f"signed by neuro (neurologist) on {today}" in page
    assert f"<td>{today}</td>" in page[page.index('id="versions"') : page.index('id="history"')]
    assert f"Generated by HemiCare on {today} " in client.get("/patients/demo-001/plans/1").text
    assert f"Signed by neuro (neurologist) on {today}." in client.get("/patients/demo-001/plans/2").text
    assert f"Agreed by your neurologist on {today}" in _pdf_text(client.get("/patients/demo-001/plan.pdf").content)
    letter = _pdf_text(_referral(client, csrf, to="neurosurgery").content)
    assert f"conventional part signed by neuro (neurologist) on {today}" in letter
    client.post("/logout", data={"csrf_token": csrf})
    sign_in(client, "patient1")
    assert f"Agreed by your neurologist on {today}" in client.get("/me").text


def test_every_plan_version_can_be_read_as_it_was(client: TestClient, clinic: Engine) -> None:
    csrf = sign_in(client, "neuro")
    form = {"csrf_token": csrf, "version": "1", "status.mvd": "option", "reason.mvd": "prefers toxin first"}
    assert client.post("/patients/demo-001/sign", data=form).status_code == 303
    page = client.get("/patients/demo-001").text
    listed = page[page.index('id="versions"') : page.index('id="history"')]
    assert '<a href="/patients/demo-001/plans/2">v2</a> (current)' in listed
    assert "signed by neuro (neurologist)" in listed and "generated for setup" in listed
    assert "Microvascular decompression (MVD): recommended → option (prefers toxin first)" in listed

    first = client.get("/patients/demo-001/plans/1").text
    assert "Generated by HemiCare on" in first and 'the current one is <a href="/patients/demo-001/plans/2">' in first
    assert 'conventional: <span class="awaiting">not signed</span>' in first
    assert 'class="badge recommended">recommended</span> Microvascular decompression (MVD)' in first
    second = client.get("/patients/demo-001/plans/2").text
    assert "Signed by neuro (neurologist) on" in second and "An earlier version" not in second
    assert "Microvascular decompression (MVD): recommended → <strong>option</strong> (prefers toxin first)" in second
    assert _audit_count(clinic, action="read", entity="plan", entity_id="demo-001/v1") == 1
    assert client.get("/patients/demo-001/plans/9").status_code == 404
    assert client.get("/patients/demo-001/plans/two").status_code == 422
    assert client.get("/patients/nobody/plans/1").status_code == 404

    headers = {"authorization": f"Bearer {_token_for(client)}"}
    briefs = client.get("/api/v1/patients/demo-001/plans", headers=headers).json()
    assert [(b["number"], b["kind"], b["signed_role"]) for b in briefs] == [
        (2, "reviewed", "neurologist"),
        (1, "generated", None),
    ]
    assert briefs[0]["edits"] == [
        {"recommendation": "mvd", "from": "recommended", "to": "option", "reason": "prefers toxin first"}
    ]
    old = client.get("/api/v1/patients/demo-001/plans/1", headers=headers).json()
    assert old["number"] == 1 and old["kind"] == "generated" and "signoff" not in old["plan"]
    assert client.get("/api/v1/patients/demo-001/plans/3", headers=headers).status_code == 404
    client.cookies.clear()
    sign_in(client, "patient2")
    assert client.get("/api/v1/patients/demo-001/plans").status_code == 403
    assert client.get("/patients/demo-001/plans/1").status_code == 403


def _history_rows(page: str) -> str:
    return page[page.index('id="history"') : page.index('id="outcomes"')]


def _problems_of(page: str, form: str) -> str:
    """The problems listed under a refused form, as text."""
    problems = page[page.index(f'id="{form}-problems"') :]
    return html.unescape(problems[: problems.index("</div></div>")])


def _set_toxin_status(client: TestClient, csrf: str, *, version: int, status: str, reason: str) -> None:
    """Sign demo-002's plan as a neurologist with toxin set to ``status``."""
    form = {
        "csrf_token": csrf,
        "version": str(version),
        "status.botulinum_toxin": status,
        "reason.botulinum_toxin": reason,
    }
    assert client.post("/patients/demo-002/sign", data=form).status_code == 303


def test_a_toxin_session_beyond_a_limit_is_recorded_only_with_a_reason(client: TestClient, clinic: Engine) -> None:
    """A slipped decimal point (25 for 2.5) and a plan that holds toxin back are both said on the form, in its words;
    the session is recorded once a reason is given, and the audit trail keeps the reason."""
    csrf = sign_in(client, "neuro")
    assert 'id="toxin-held-back"' not in client.get("/patients/demo-002").text  # toxin recommended
    _set_toxin_status(client, csrf, version=1, status="deferred", reason="MRI first")
    page = client.get("/patients/demo-002").text
    assert (
        "Plan version 2 has toxin <strong>deferred</strong>: a session given now is recorded only with a reason" in page
    )
    before = _history_rows(page)
    typed = {
        "csrf_token": csrf,
        "product": "onabotulinumtoxinA",
        "lot": "C77",
        "date": dt.date.today().isoformat(),
        "units.upper_lid_medial.left": "2.5",
        "units.lower_lid_lateral.left": "25",
    }
    refused = client.post("/patients/demo-002/sessions/toxin", data=typed)
    assert refused.status_code == 422
    problems = _problems_of(refused.text, "toxin")
    assert (
        "<strong>Units, Lower lid, lateral, left</strong>: 25 U is above the per-site ceiling of 5 U "
        "onabotulinumtoxinA; give the reason below to record it anyway" in problems
    )
    assert (
        "<strong>Reason</strong>: plan version 2 has Botulinum toxin injections deferred (MRI first); "
        "give the reason below to record it anyway" in problems
    )
    assert "details.override_reason" not in problems
    assert (  # demo-002 has had no toxin session
        "<strong>Units</strong>: 27.5 U around the left eye at a first toxin session (none is recorded before "
        f"{dt.date.today().isoformat()}) is above 25 U onabotulinumtoxinA per eye: Initial dose per eye (EU-style "
        "label); give the reason below to record it anyway" in problems
    )
    assert 'id="override" name="override_reason" type="text" value="" aria-invalid=true' in refused.text
    too_long = client.post(
        "/patients/demo-002/sessions/toxin", data={**typed, "adverse_effects": "ptosis, " + "x" * 121}
    )
    assert too_long.status_code == 422  # every later plan would read it back, and fail
    assert "<strong>Side effects</strong>: String should have at most 120 characters" in _problems_of(
        too_long.text, "toxin"
    )
    assert _history_rows(client.get("/patients/demo-002").text) == before
    reason = "MRI normal at the referring hospital; 25 U agreed for the lower lid"
    recorded = client.post("/patients/demo-002/sessions/toxin", data={**typed, "override_reason": reason})
    assert recorded.status_code == 303
    said = html.unescape(_history_rows(client.get("/patients/demo-002").text))
    assert f"onabotulinumtoxinA 27.5 U, lot C77; override reason: {reason}" in said
    with session_factory(clinic)() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.entity == "session")).one()
    assert entry.reason == reason


def test_needling_against_a_safety_rule_or_the_plan_is_recorded_only_with_a_reason(
    client: TestClient, clinic: Engine
) -> None:
    """A pregnant patient with a pacemaker: LI4 is never in her plan and electroacupuncture is deferred; the form
    says so before, the refusal names the point in the form's words, and a reason records the session."""
    headers = {"x-csrf-token": sign_in(client, "neuro")}
    assessment = read_file(EXAMPLES / "demo-001.yaml") | {"id": "demo-002", "pregnant": True}
    assessment["comorbidities"] = [*assessment.get("comorbidities", []), "pacemaker"]
    assert client.post("/api/v1/patients/demo-002/assessments", json=assessment, headers=headers).status_code == 201
    client.cookies.clear()
    csrf = sign_in(client, "tcm")
    page = client.get("/patients/demo-002").text
    assert 'id="electroacupuncture-held-back"' in page and 'id="acupuncture-held-back"' not in page
    assert _held_notice(page, "acupuncture-held")[1] == (
        "Electroacupuncture (distal, hand), deferred: Electroacupuncture with a pacemaker or ICD; a session with "
        "electroacupuncture needs a reason"
    )
    assert 'name="points" value="LI4" checked' not in page
    typed = {"csrf_token": csrf, "date": dt.date.today().isoformat(), "points": ["ST4", "LI4"], "electro": "on"}
    refused = client.post("/patients/demo-002/sessions/acupuncture", data=typed)
    assert refused.status_code == 422
    problems = _problems_of(refused.text, "acupuncture")
    assert (
        "<strong>Point LI4</strong>: LI4 is taken out of this patient's plans: Traditionally forbidden acupoints in "
        "pregnancy (tradition-based); give the reason below to record it anyway" in problems
    )
    assert "<strong>Reason</strong>: plan version 2 has Electroacupuncture (distal, hand) deferred" in problems
    assert 'id="acu-override" name="override_reason" type="text" value="" aria-invalid=true' in refused.text
    reason = "obstetrician and cardiologist agreed; LI4 at the patient's request"
    recorded = client.post("/patients/demo-002/sessions/acupuncture", data={**typed, "override_reason": reason})
    assert recorded.status_code == 303
    said = html.unescape(_history_rows(client.get("/patients/demo-002").text))
    assert f"ST4, LI4 (EA); override reason: {reason}" in said


def test_the_toxin_form_gives_each_site_one_row_with_the_patients_right_first(client: TestClient) -> None:
    """As on the face map beside it: the patient's right, then left; the spasm's side is named in its heading and
    holds the plan's doses (demo-001's spasm is on the left)."""
    sign_in(client, "neuro")
    page = client.get("/patients/demo-001").text
    table = page[page.index('<table class="small doses">') :]
    table = table[: table.index("</table>")]
    header, *rows = table.split("<tr>")[1:]
    assert re.findall(r"<th>(.*?)</th>", header) == [
        "Site",
        "Patient's right, units",
        'Patient\'s left, units <span class="muted">(spasm)</span>',
    ]
    sites = load_default().toxin_programme().sites
    assert len(rows) == len(sites)
    planned = 0
    for row, site in zip(rows, sites, strict=True):
        boxes = re.findall(r'name="units\.([a-z_]+)\.(left|right)" value="([^"]*)"', row)
        assert [(name, side) for name, side, _ in boxes] == [(site.id, "right"), (site.id, "left")]
        assert boxes[0][2] == ""  # nothing planned on the side without spasm
        planned += boxes[1][2] != ""
    assert planned >= 3
    client.cookies.clear()


def test_a_refused_session_form_comes_back_as_typed_with_its_problems(client: TestClient) -> None:
    csrf = sign_in(client, "neuro")
    before = _history_rows(client.get("/patients/demo-001").text)
    typed = {
        "csrf_token": csrf,
        "product": "incobotulinumtoxinA",
        "lot": "",
        "date": "2026-01-10",
        "units.upper_lid_medial.left": "3.5",
        "units.zygomaticus.left": "200",
        "adverse_effects": "mild ptosis",
    }
    refused = client.post("/patients/demo-001/sessions/toxin", data=typed)
    assert refused.status_code == 422
    page = refused.text
    assert 'id="form-errors"' in page and "The toxin session was not recorded" in page
    problems = page[page.index('id="toxin-problems"') :]
    problems = problems[: problems.index("</div></div>")]
    # Each problem under the label the clinician sees; the dose box at fault is marked.
    assert "<strong>Lot</strong>: String should have at least 1 character" in problems
    assert (
        "<strong>Units, Zygomaticus major (cheek), left</strong>: Input should be less than or equal to 100" in problems
    )
    zygomaticus = 'name="units.zygomaticus.left" value="200" aria-label="Zygomaticus major (cheek), left: units"'
    assert zygomaticus + " aria-invalid=true aria-describedby=toxin-problems>" in page
    assert (
        'name="units.upper_lid_medial.left" value="3.5" aria-label="Upper lid, medial pretarsal, left: units">' in page
    )
    assert page.count("aria-invalid") == 2  # the box and the lot
    # What was typed is there again, not the plan's defaults.
    assert "<option selected>incobotulinumtoxinA</option>" in page
    assert 'name="date" type="date" value="2026-01-10"' in page and 'value="mild ptosis"' in page
    # The other forms are as usual, and nothing was saved.
    assert 'id="acupuncture-problems"' not in page
    assert _history_rows(client.get("/patients/demo-001").text) == before
    client.cookies.clear()
    csrf = sign_in(client, "tcm")
    needles = {"csrf_token": csrf, "date": "2026-01-11", "notes": "patient anxious", "electro": "on"}
    refused = client.post("/patients/demo-001/sessions/acupuncture", data=needles)
    assert refused.status_code == 422
    assert "<strong>Points</strong>: needs at least 1 entry, got 0" in refused.text
    assert 'value="patient anxious"' in refused.text and 'name="electro" checked' in refused.text
    assert 'name="points" value="LI4" checked' not in refused.text  # none chosen, none ticked back
    kept = {"csrf_token": csrf, "date": "2026-01-11", "points": ["LI4", "ZZ9"]}
    refused = client.post("/patients/demo-001/sessions/acupuncture", data=kept)
    assert refused.status_code == 422 and "<strong>Point ZZ9</strong>: unknown WHO point code" in refused.text
    assert 'name="points" value="LI4" checked' in refused.text
    herbs = {
        "csrf_token": csrf,
        "formula": "tian_ma_gou_teng_yin",
        "dose.Rhizoma Gastrodiae": "7.5",
        "duration_days": "0",
    }
    refused = client.post("/patients/demo-001/sessions/herbal", data=herbs)
    assert (
        refused.status_code == 422
        and "<strong>Days</strong>: Input should be greater than or equal to 1" in refused.text
    )
    assert (
        'name="dose.Rhizoma Gastrodiae" value="7.5"' in refused.text
        and 'name="duration_days" type="number" value="0"' in refused.text
    )


def test_session_errors_name_the_field_as_the_caller_wrote_it(client: TestClient) -> None:
    """Inside a session's details the path is the caller's (details.points), not pydantic's (details.acupuncture...),
    and an unknown field lists the fields of the kind of session sent."""
    headers = {"x-csrf-token": sign_in(client, "tcm")}
    session = {"date": "2026-01-05", "clinician": "L", "details": {"kind": "acupuncture", "points": [], "needle": 1}}
    answer = client.post("/api/v1/patients/demo-001/sessions", json=session, headers=headers)
    assert answer.status_code == 422
    assert {e["field"]: e["message"] for e in answer.json()["errors"]} == {
        "details.points": "needs at least 1 entry, got 0",
        "details.needle": "unknown field; expected one of: electro, kind, notes, override_reason, points",
    }


def test_a_neurologist_records_a_medicine_the_plan_does_not_recommend_only_with_a_reason(client: TestClient) -> None:
    """The form names each medicine with the plan's status for it; a prescription without a dose, or of a medicine
    the plan does not recommend, comes back with the problem beside its box, and with a reason it is kept."""
    csrf = sign_in(client, "neuro")
    page = client.get("/patients/demo-001").text
    assert 'href="#medicines"' in page
    assert '<option value="gabapentin" >Gabapentin (plan version 1: not recommended)</option>' in page
    before = _history_rows(page)
    typed = {"csrf_token": csrf, "medicine": "gabapentin", "dose": "", "date": dt.date.today().isoformat()}
    refused = client.post("/patients/demo-001/sessions/medicine", data=typed)
    assert refused.status_code == 422
    problems = _problems_of(refused.text, "medicine")
    assert "Dose: String should have at least 1 character" in re.sub("<[^>]+>", "", problems)
    assert (
        'id="medicine-dose" name="dose" type="text" maxlength="120" placeholder="e.g. 100 mg twice a day" '
        'value="" aria-invalid=true' in refused.text
    )
    typed["dose"] = "300 mg at night"
    refused = client.post("/patients/demo-001/sessions/medicine", data=typed)
    assert refused.status_code == 422
    problems = re.sub("<[^>]+>", "", _problems_of(refused.text, "medicine"))
    assert problems.endswith(
        "Reason: plan version 1 has Gabapentin not recommended (Low response rate and almost only anecdotal "
        "evidence; botulinum toxin and MVD are the evidence-based options for this patient); give the reason below "
        "to record it anyway"
    )
    assert '<option value="gabapentin" selected>' in refused.text  # the form as it was typed
    assert _history_rows(client.get("/patients/demo-001").text) == before
    reason = "declines toxin and surgery for now"
    recorded = client.post("/patients/demo-001/sessions/medicine", data={**typed, "override_reason": reason})
    assert recorded.status_code == 303
    page = client.get("/patients/demo-001").text
    said = html.unescape(_history_rows(page))
    assert f"gabapentin 300 mg at night; override reason: {reason}" in said
    # The plan does not know it yet; stopped from its history row, it is said to have been stopped.
    assert "prescription of " in (_recorded_since(page) or "")
    today = dt.date.today().isoformat()
    running = re.search(r'<div class="alert info" id="medicines-running">(.*?)</div>', page, re.S)
    assert running is not None
    assert _visible_text(running.group(1)).startswith(f"Still taken: gabapentin (the prescription of {today}).")
    client.cookies.clear()
    sign_in(client, "patient1")
    assert f"<li>Gabapentin, 300 mg at night (since {today})</li>" in client.get("/me").text
    client.cookies.clear()
    csrf = typed["csrf_token"] = sign_in(client, "neuro")
    # A new dose while it runs: refused beside the medicine, with the plan's own reason asked for too.
    refused = client.post("/patients/demo-001/sessions/medicine", data={**typed, "dose": "600 mg at night"})
    assert refused.status_code == 422
    said = re.sub("<[^>]+>", "", html.unescape(_problems_of(refused.text, "medicine")))
    assert f"Medicine: gabapentin is prescribed already on some of the same days (the prescription of {today})" in said
    form = re.search(r'action="([^"]+/outcome)"((?!</form>).)*name="stopped"', _history_rows(page), re.S)
    assert form is not None
    action = form.group(1)
    stopped = {"csrf_token": csrf, "stopped": today}
    assert client.post(action, data=stopped).status_code == 303
    page = client.get("/patients/demo-001").text
    history = html.unescape(_history_rows(page))
    assert f"stopped {today}" in history and action not in history
    assert 'id="medicines-running"' not in page
    client.cookies.clear()
    sign_in(client, "tcm")
    assert 'id="medicine-form"' not in client.get("/patients/demo-001").text


def test_a_procedure_on_the_facial_nerve_is_recorded_on_the_spasms_side_and_its_relief_follows(
    client: TestClient,
) -> None:
    """The form names each procedure with the plan's status for it and offers the spasm's side first; one the plan
    does not recommend, or on the other side, comes back with the problems beside their boxes; with a reason it is
    kept, and its weeks of relief are added on its history row."""
    csrf = sign_in(client, "neuro")
    page = client.get("/patients/demo-001").text
    assert 'href="#procedures"' in page
    assert (
        '<option value="rf_ablation" >Percutaneous radiofrequency ablation at the stylomastoid foramen '
        "(plan version 1: not recommended)</option>" in page
    )
    assert '<option value="left" selected>left (spasm)</option>' in page  # demo-001's spasm is on the left
    before = _history_rows(page)
    typed = {"csrf_token": csrf, "procedure": "rf_ablation", "side": "", "date": dt.date.today().isoformat()}
    refused = client.post("/patients/demo-001/sessions/procedure", data=typed)
    assert refused.status_code == 422
    assert "Side: Input should be 'left' or 'right'" in re.sub("<[^>]+>", "", _problems_of(refused.text, "procedure"))
    assert 'id="procedure-side" name="side" aria-invalid=true' in refused.text
    typed["side"] = "right"
    refused = client.post("/patients/demo-001/sessions/procedure", data=typed)
    assert refused.status_code == 422
    problems = re.sub("<[^>]+>", "", _problems_of(refused.text, "procedure"))
    assert (
        "Side: the spasm is on the left side by the latest assessment, not the right; give the reason below to record "
        "it anyway" in problems
    )
    assert (
        "Reason: plan version 1 has Percutaneous radiofrequency ablation at the stylomastoid foramen not recommended"
        in problems
    )
    assert '<option value="right" selected>right</option>' in refused.text  # the form as it was typed
    assert _history_rows(client.get("/patients/demo-001").text) == before
    reason = "toxin no longer helps; declines surgery"
    recorded = client.post(
        "/patients/demo-001/sessions/procedure", data={**typed, "side": "left", "override_reason": reason}
    )
    assert recorded.status_code == 303
    page = client.get("/patients/demo-001").text
    history = _history_rows(page)
    assert f"radiofrequency ablation, left side; override reason: {reason}" in html.unescape(history)
    chart = f'<g class="marker procedure"><title>Radiofrequency ablation, left side {typed["date"]}</title>'
    assert chart in page and ">RF</text></g>" in page
    said = f"Nerve procedures: radiofrequency ablation (left) of {typed['date']}: relief not yet recorded."
    assert said in _outcomes_of(page)
    form = re.search(r'action="([^"]+/outcome)"((?!</form>).)*aria-label="weeks the procedure of', history, re.S)
    assert form is not None
    relief = {"csrf_token": csrf, "effect_weeks": "40", "adverse_effects": "facial weakness"}
    assert client.post(form.group(1), data=relief).status_code == 303
    history = html.unescape(_history_rows(client.get("/patients/demo-001").text))
    assert "effect 40 weeks; facial weakness" in history and form.group(1) not in history
    said = (
        f"Nerve procedures: radiofrequency ablation (left) of {typed['date']}: relief 40 weeks, with facial weakness."
    )
    assert said in _outcomes_of(client.get("/patients/demo-001").text)
    assert said in _pdf_text(client.get("/patients/demo-001/plan.pdf?kind=referral").content)  # as the letter says
    client.cookies.clear()
    sign_in(client, "tcm")
    assert 'id="procedure-form"' not in client.get("/patients/demo-001").text
    client.cookies.clear()
    # The API holds it to the same checks (a neurosurgeon's token), each problem on its field.
    headers = {"authorization": f"Bearer {_token_for(client)}"}
    block = {"kind": "procedure", "procedure": "nerve_block", "side": "both"}
    body = {"date": dt.date.today().isoformat(), "clinician": "Dr S", "details": block}
    refused = client.post("/api/v1/patients/demo-001/sessions", json=body, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {"field": "details.side", "message": "Input should be 'left' or 'right' (got 'both')"}
    ]
    refused = client.post(
        "/api/v1/patients/demo-001/sessions", json=body | {"details": block | {"side": "left"}}, headers=headers
    )
    assert refused.status_code == 422
    ((field, message),) = [(error["field"], error["message"]) for error in refused.json()["errors"]]
    assert field == "details.override_reason" and "Facial nerve block (neurolytic)" in message
    assert "not recommended" in message
    # The outcome summary puts each procedure's relief beside the toxin sessions'.
    summary = client.get("/api/v1/patients/demo-001/diary", headers=headers).json()
    assert summary["procedures"] == [
        {
            "date": typed["date"],
            "procedure": "rf_ablation",
            "side": "left",
            "effect_weeks": 40.0,
            "adverse_effects": ["facial weakness"],
        }
    ]


def _outcomes_of(page: str) -> str:
    """The words under the outcome chart of a patient page."""
    outcomes = page[page.index('<h2 id="outcomes">') :]
    outcomes = outcomes[outcomes.index('<div class="small">') :]
    return html.unescape(outcomes[: outcomes.index("</div>")])


_LID = {"site": "upper_lid_medial", "side": "left", "units": 2.5}


@pytest.mark.parametrize(
    ("sites", "error", "put_right"),
    [
        (
            [_LID, {"site": "zygomaticus", "side": "left", "units": 12.5}],
            ("details.sites.1.units", "12.5 U is above the per-site ceiling of 5 U onabotulinumtoxinA; "
             "give details.override_reason to record it anyway"),
            {"override_reason": "dose doubled after two sessions that lasted six weeks"},
        ),
        (  # no reason records a site twice: the dose is corrected
            [_LID, _LID | {"units": 5}],
            ("details.sites.1.site", "upper_lid_medial (left) is given twice (also details.sites.0); "
             "give each once, with its whole dose"),
            {"sites": [_LID]},
        ),
    ],
)  # fmt: skip
def test_the_api_names_the_dose_it_refuses(
    client: TestClient, sites: list[dict[str, Any]], error: tuple[str, str], put_right: dict[str, Any]
) -> None:
    headers = {"x-csrf-token": sign_in(client, "neuro")}
    details = {"kind": "toxin", "product": "onabotulinumtoxinA", "lot": "L1", "sites": sites}
    session = {"date": dt.date.today().isoformat(), "clinician": "N", "details": details}
    answer = client.post("/api/v1/patients/demo-001/sessions", json=session, headers=headers)
    assert answer.status_code == 422
    assert answer.json()["errors"] == [{"field": error[0], "message": error[1]}]
    session["details"] = details | put_right
    assert client.post("/api/v1/patients/demo-001/sessions", json=session, headers=headers).status_code == 201


def test_an_operation_the_plan_holds_back_is_recorded_only_with_a_reason(client: TestClient) -> None:
    """Like a toxin session: the form says beforehand that the plan holds MVD back, an operation recorded without a
    reason is refused with the plan's words, and with one it is kept, the history saying why."""
    csrf = sign_in(client, "surgeon")
    assert 'id="mvd-held-back"' not in client.get("/patients/demo-002").text  # MVD recommended
    form = {"csrf_token": csrf, "version": "1", "status.mvd": "not_recommended", "reason.mvd": "prefers toxin"}
    assert client.post("/patients/demo-002/sign", data=form).status_code == 303
    page = client.get("/patients/demo-002").text
    assert "Plan version 2 has MVD <strong>not recommended</strong>: an operation given now is recorded only" in page
    typed = {"csrf_token": csrf, "date": dt.date.today().isoformat(), "notes": "AICA moved"}
    refused = client.post("/patients/demo-002/sessions/mvd", data=typed)
    assert refused.status_code == 422
    assert (
        "<strong>Reason</strong>: plan version 2 has Microvascular decompression (MVD) not recommended (prefers "
        "toxin); give the reason below to record it anyway" in _problems_of(refused.text, "mvd")
    )
    assert 'id="mvd-override" name="override_reason" type="text" value="" aria-invalid=true' in refused.text
    reason = "changed her mind after two failed toxin sessions"
    assert client.post("/patients/demo-002/sessions/mvd", data=typed | {"override_reason": reason}).is_redirect
    history = html.unescape(_history_rows(client.get("/patients/demo-002").text))
    assert f"override reason: {reason}" in history


def test_a_neurosurgeon_records_an_operation(client: TestClient) -> None:
    for username in ("neuro", "tcm"):
        client.cookies.clear()
        csrf = sign_in(client, username)
        assert 'id="mvd-form"' not in client.get("/patients/demo-001").text
        refused = client.post("/patients/demo-001/sessions/mvd", data={"csrf_token": csrf, "result": "improved"})
        assert refused.status_code == 403, username
    client.cookies.clear()
    csrf = sign_in(client, "surgeon")
    assert 'id="mvd-form"' in client.get("/patients/demo-001").text
    future = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    for form, said in (
        ({"result": "maybe"}, "<strong>Result</strong>: Input should be &#39;cured&#39;"),
        ({"date": future}, f"<strong>Date</strong>: {future} is in the future"),
    ):
        bad = client.post("/patients/demo-001/sessions/mvd", data={"csrf_token": csrf, **form})
        assert bad.status_code == 422 and said in bad.text, bad.text
    operated = (dt.date.today() - dt.timedelta(days=60)).isoformat()  # the 3-month review falls within 60 days
    form = {"csrf_token": csrf, "date": operated, "notes": "AICA moved"}  # the result is not known yet
    done = client.post("/patients/demo-001/sessions/mvd", data=form)
    assert done.status_code == 303 and done.headers["location"] == "/patients/demo-001#history"
    page = client.get("/patients/demo-001").text
    history = page[page.index('id="history"') : page.index('id="outcomes"')]
    assert history.count("<td>mvd</td>") == 1 and '<td class="small">Surgeon: AICA moved</td>' in history
    # The outcome chart has its line, so that a fall in the spasms is read against the operation.
    assert f'<g class="marker surgery"><title>Microvascular decompression {operated}</title>' in page
    # Months later, the result, from the history.
    url = re.search(r'action="(/patients/demo-001/sessions/\d+/outcome)"', history)
    assert url and 'name="result"' in history
    assert client.post(url.group(1), data={"csrf_token": csrf, "result": "improved"}).status_code == 303
    page = client.get("/patients/demo-001").text
    history = page[page.index('id="history"') : page.index('id="outcomes"')]
    assert '<td class="small">improved' in history and 'name="result"' not in history
    assert "post-MVD review at 3 months" in page[page.index('id="due"') :]


def test_grades_from_a_post_mvd_review_are_recorded_on_the_page_and_answer_its_recall(
    client: TestClient, clinic: Engine
) -> None:
    """The post-MVD review recall is answered by grades recorded at the review; without a page to record them the
    recall stayed due for ever in the web app. A visit with no grade at all is refused."""
    csrf = sign_in(client, "surgeon")
    operated = (dt.date.today() - dt.timedelta(days=100)).isoformat()  # the 3-month review is now
    assert client.post("/patients/demo-001/sessions/mvd", data={"csrf_token": csrf, "date": operated}).is_redirect
    due = client.get("/patients/demo-001").text
    assert "post-MVD review at 3 months" in due[due.index('id="due"') :]
    assert 'action="/patients/demo-001/grades"' in due

    future = (dt.date.today() + dt.timedelta(days=2)).isoformat()
    for form, said in (
        ({}, "<strong>Grades</strong>: record at least one grade (SMC, Jankovic severity or frequency, Cohen-Albert)"),
        ({"smc_grade": "9"}, "<strong>SMC grade</strong>: Input should be less than or equal to 4"),
        ({"smc_grade": "2", "date": future}, f"<strong>Date of the visit</strong>: {future} is in the future"),
    ):
        refused = client.post("/patients/demo-001/grades", data={"csrf_token": csrf, **form})
        assert refused.status_code == 422 and "The grading was not recorded" in refused.text, form
        assert said in refused.text, refused.text[refused.text.index('id="grades-problems"') :][:400]
        assert '<details class="card" id="grades" open>' in refused.text
    assert client.post("/patients/demo-001/grades", data={"smc_grade": "2"}).status_code == 403  # no CSRF token

    form = {"csrf_token": csrf, "smc_grade": "2", "jankovic_severity": "1"}
    saved = client.post("/patients/demo-001/grades", data=form)
    assert saved.status_code == 303 and saved.headers["location"] == "/patients/demo-001#outcomes"
    page = client.get("/patients/demo-001").text
    assert "post-MVD review at 3 months" not in page[page.index('id="due"') :]
    assert f"<li>{dt.date.today().isoformat()}: SMC 2, Jankovic severity 1 <span" in page
    # The same through the API, for a machine client; refused input names its field.
    today, headers = dt.date.today().isoformat(), {"x-csrf-token": csrf}
    api = client.post("/api/v1/patients/demo-001/grades", json={"date": today, "cohen_albert": 1}, headers=headers)
    assert api.status_code == 201 and api.json()["date"] == today
    for body, field in (({"date": today}, ""), ({"date": today, "smc_grade": 0}, "smc_grade"), ({}, "date")):
        refused = client.post("/api/v1/patients/demo-001/grades", json=body, headers=headers)
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == field, refused.json()
    for username in ("patient1", "admin"):
        client.cookies.clear()
        token = sign_in(client, username)
        assert client.post("/patients/demo-001/grades", data={**form, "csrf_token": token}).status_code == 403
        api = client.post(
            "/api/v1/patients/demo-001/grades", json={"date": today, "smc_grade": 1}, headers={"x-csrf-token": token}
        )
        assert api.status_code == 403, username
    with session_factory(clinic)() as s:
        patient = patient_service.get(s, code="demo-001")
        assert [(g.smc_grade, g.created_by) for g in outcome_service.recent_grades(s, patient=patient)] == [
            (None, "surgeon"),
            (2, "surgeon"),
        ]


def test_a_sessions_outcome_is_added_later_and_moves_the_recall(client: TestClient, clinic: Engine) -> None:
    kb = load_default()
    csrf = sign_in(client, "neuro")
    site = {"site": "upper_lid_medial", "side": "left", "units": 2.5}
    injected = dt.date.today() - dt.timedelta(weeks=10)
    session = {
        "date": injected.isoformat(),
        "clinician": "N",
        "details": {"kind": "toxin", "product": "onabotulinumtoxinA", "lot": "L1", "sites": [site]},
    }
    made = client.post("/api/v1/patients/demo-001/sessions", json=session, headers={"x-csrf-token": csrf})
    assert made.status_code == 201, made.text
    session_id = made.json()["id"]

    def toxin_due() -> dt.date:
        with session_factory(clinic)() as s:
            patient = patient_service.get(s, code="demo-001")
            due = recall_service.due(s, kb=kb, today=dt.date.today(), horizon_days=400, patient_id=patient.id)
        return next(item.due for item in due if item.what == "botulinum toxin session")

    assert toxin_due() == injected + dt.timedelta(weeks=26)  # no effect recorded yet: the longest usual interval
    page = client.get("/patients/demo-001").text
    assert f'action="/patients/demo-001/sessions/{session_id}/outcome"' in page
    url = f"/patients/demo-001/sessions/{session_id}/outcome"
    # Refused, the patient's page comes back with the problem beside this row's form, as it was typed.
    long_effect = "e" * 121
    for form, said, marked in (
        ({}, "<strong>Outcome</strong>: give effect_weeks, adverse_effects, result or stopped", None),
        ({"effect_weeks": "0"}, "<strong>Weeks it worked</strong>: Input should be greater than 0", "effect_weeks"),
        ({"result": "cured"}, "<strong>Result</strong>: does not apply to a toxin session", None),
        (
            {"effect_weeks": "12", "adverse_effects": f"ptosis, {long_effect}"},
            "<strong>Side effects</strong>: String should have at most 120 characters",
            "adverse_effects",
        ),
    ):
        refused = client.post(url, data={"csrf_token": csrf, **form})
        assert refused.status_code == 422 and said in refused.text, refused.text
        assert "The outcome was not saved" in refused.text and 'href="#outcome-problems"' in refused.text
        before, after = refused.text.split(f'action="/patients/demo-001/sessions/{session_id}/outcome"')
        assert 'id="outcome-problems"' in before.rsplit("<tr>", 1)[1], before
        if marked:
            box = after.split("</form>")[0].split(f'name="{marked}"')[1].split(">")[0]
            assert f'value="{form[marked]}"' in box and "aria-invalid=true" in box, box
    assert (
        client.post(
            f"/patients/demo-001/sessions/{session_id + 99}/outcome", data={"csrf_token": csrf, "effect_weeks": "9"}
        ).status_code
        == 404
    )
    saved = client.post(url, data={"csrf_token": csrf, "effect_weeks": "16", "adverse_effects": "ptosis, dry eye"})
    assert saved.status_code == 303
    assert toxin_due() == injected + dt.timedelta(weeks=16)  # the patient's own interval now
    history = client.get("/patients/demo-001").text
    assert "effect 16 weeks; ptosis, dry eye" in history and f"sessions/{session_id}/outcome" not in history

    # Changing a recorded value needs a reason; the audit trail keeps both.
    headers = {"authorization": f"Bearer {_token_for(client)}"}
    api = f"/api/v1/patients/demo-001/sessions/{session_id}"
    unexplained = client.patch(api, json={"effect_weeks": 14}, headers=headers)
    assert unexplained.status_code == 422 and unexplained.json()["errors"][0]["field"] == "reason"
    explained = client.patch(api, json={"effect_weeks": 14, "reason": "misread the diary"}, headers=headers)
    assert explained.status_code == 200 and explained.json()["details"]["effect_weeks"] == 14
    with session_factory(clinic)() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "amend").order_by(AuditEntry.id.desc())).first()
    assert entry is not None and entry.reason == "misread the diary"
    assert entry.detail["changes"] == {"effect_weeks": [16.0, 14.0]}
    # Only those who give toxin record its outcome.
    client.cookies.clear()
    tcm_csrf = sign_in(client, "tcm")
    assert client.post(url, data={"csrf_token": tcm_csrf, "effect_weeks": "12", "reason": "x y z"}).status_code == 403


def test_patients_of_the_same_name_are_told_apart_in_the_list(client: TestClient, clinic: Engine) -> None:
    from hemicare.patients.schemas import PatientCreate

    with session_factory(clinic)() as s, s.begin():
        for code, year, sex in (("hf-101", 1961, "female"), ("hf-102", 1988, "male")):
            data = PatientCreate(code=code, name="Wei Okafor", sex=sex, birth_year=year)
            patient_service.create(s, data=data, actor="setup")
    sign_in(client, "neuro")
    page = client.get("/patients", params={"q": "Wei Okafor"}).text
    rows = re.findall(
        r'<a href="/patients/([^"]+)">[^<]+</a></td>\s*<td>([^<]+)<div class="small muted">([^<]+)</div>', page
    )
    assert rows == [("hf-101", "Wei Okafor", "born 1961, female"), ("hf-102", "Wei Okafor", "born 1988, male")]


def test_the_due_worklist_puts_overdue_first(client: TestClient, clinic: Engine) -> None:
    csrf = sign_in(client, "neuro")
    site = {"site": "upper_lid_medial", "side": "left", "units": 2.5}
    for code, weeks in (("demo-001", 40), ("demo-002", 25)):
        session = {
            "date": (dt.date.today() - dt.timedelta(weeks=weeks)).isoformat(),
            "clinician": "N",
            "details": {"kind": "toxin", "product": "onabotulinumtoxinA", "lot": "L1", "sites": [site]},
        }
        assert client.post(f"/api/v1/patients/{code}/sessions", json=session, headers={"x-csrf-token": csrf}).is_success
    with session_factory(clinic)() as s, s.begin():
        s.execute(update(Patient).where(Patient.code == "demo-001").values(phone="+44 20 7946 0000"))
    page = client.get("/due?days=30").text
    rows = re.findall(
        r'<td[^>]*><a href="/patients/([^"]+)">[^<]+</a></td><td>([^<]*)<div class="small muted">([^<]*)</div></td>'
        r'<td class="nowrap">([^<]*)</td><td>([^<]+)</td>',
        page,
    )
    toxin = [(code, name, who, phone) for code, name, who, phone, what in rows if what == "botulinum toxin session"]
    # 14 weeks overdue, then due in a week; each with their sex (and birth year, where recorded) beside the name, and
    # the phone number to call them on.
    assert toxin == [("demo-001", "Mei Lin", "female", "+44 20 7946 0000"), ("demo-002", "Arjun Patel", "female", "–")]
    late = (dt.timedelta(weeks=40) - dt.timedelta(weeks=26)).days
    assert f'<strong class="overdue">(overdue, {late} days)</strong>' in page
    assert page.index("demo-001") < page.index("demo-002")
    refused = client.get("/due?days=15")
    assert (
        refused.status_code == 422
        and "<strong>days</strong>: &#39;15&#39; is not one of 7, 14, 30, 60, 90" in refused.text
    )
    assert 'href="/due"' in client.get("/patients").text

    # One kind of recall only: a TCM practitioner's acupuncture, a neurologist's toxin sessions.
    whats = {what for *_, what in rows}
    assert whats == {"botulinum toxin session", "HFS-7 questionnaire"}, whats
    only = client.get("/due?days=30&recall=toxin").text
    assert '<option value="toxin" selected>botulinum toxin sessions</option>' in only
    assert "HFS-7 questionnaire</td>" not in only and only.count("botulinum toxin session</td>") == 2
    none = client.get("/due?days=30&recall=acupuncture").text
    assert "No acupuncture sessions due within 30 days." in none
    wrong = client.get("/due?days=30&recall=laser")
    assert wrong.status_code == 422 and "<strong>recall</strong>: &#39;laser&#39; is not one of toxin" in wrong.text
    api = client.get("/api/v1/due?horizon=30&recall=hfs7").json()
    assert {item["recall"] for item in api} == {"hfs7"} and len(api) == 2, api
    wrong = client.get("/api/v1/due?horizon=-1&recall=laser")
    assert wrong.status_code == 422 and [e["field"] for e in wrong.json()["errors"]] == ["horizon", "recall"]


def test_the_due_worklist_downloads_as_a_call_list(client: TestClient, clinic: Engine) -> None:
    """Whoever phones patients to book them works from a spreadsheet: the same list, with phone numbers, and no cell
    a spreadsheet would run as a formula (a name typed as one, or a phone number starting with +)."""
    csrf = sign_in(client, "tcm")
    acupuncture = {"kind": "acupuncture", "points": ["LI4"]}
    session = {"date": dt.date.today().isoformat(), "clinician": "L", "details": acupuncture}
    assert client.post("/api/v1/patients/demo-002/sessions", json=session, headers={"x-csrf-token": csrf}).is_success
    with session_factory(clinic)() as s, s.begin():
        s.execute(
            update(Patient)
            .where(Patient.code == "demo-002")
            .values(name='=HYPERLINK("http://evil.example","call")', phone="+44 161 496 0000")
        )
    page = client.get("/due?days=7&recall=acupuncture").text
    assert 'href="/due.csv?days=7&amp;recall=acupuncture"' in page
    answer = client.get("/due.csv?days=7&recall=acupuncture")
    assert answer.status_code == 200 and answer.headers["content-type"] == "text/csv; charset=utf-8"
    today = dt.date.today().isoformat()
    assert (
        answer.headers["content-disposition"] == f'attachment; filename="hemicare-due-{today}-7-days-acupuncture.csv"'
    )
    header, *rows = list(csv.reader(io.StringIO(answer.text)))
    assert header == ["due", "how late", "patient", "name", "born, sex", "phone", "what", "why", "plan"]
    assert rows == [
        [
            (dt.date.today() + dt.timedelta(days=3)).isoformat(),
            "",
            "demo-002",
            '\'=HYPERLINK("http://evil.example","call")',
            "female",
            "'+44 161 496 0000",
            "acupuncture session",
            "session 2 of 10 in the current course",
            "",
        ]
    ]
    assert len(list(csv.reader(io.StringIO(client.get("/due.csv?days=90").text)))) > 2  # everything, the HFS-7 too
    for query, field in (
        ("days=15", "days"),
        ("days=%C2%B2", "days"),
        ("days=" + "9" * 5000, "days"),
        ("days=7&recall=laser", "recall"),
    ):
        refused = client.get(f"/due.csv?{query}")
        assert refused.status_code == 422 and f"<strong>{field}</strong>" in refused.text
    client.cookies.clear()
    sign_in(client, "patient1")
    assert client.get("/due.csv").status_code == 403


def test_a_recall_the_plan_holds_back_is_marked_wherever_it_is_listed(client: TestClient, clinic: Engine) -> None:
    """Toxin falls due from the last session, but the signed plan now defers it: the worklist, the call list, the API
    and the patient page say so, and the patient is not asked to book it."""
    csrf = sign_in(client, "neuro")
    given = (dt.date.today() - dt.timedelta(weeks=40)).isoformat()
    details = {"kind": "toxin", "product": "onabotulinumtoxinA", "lot": "L1"}
    session = {
        "date": given,
        "clinician": "N",
        "details": details | {"sites": [{"site": "zygomaticus", "side": "left", "units": 2.5}]},
    }
    assert client.post("/api/v1/patients/demo-002/sessions", json=session, headers={"x-csrf-token": csrf}).is_success

    def toxin_row(text: str) -> str:
        return next(line for line in text.splitlines() if "demo-002" in line and "botulinum toxin" in line)

    assert "plan:" not in toxin_row(client.get("/due.csv?days=7").text)
    _set_toxin_status(client, csrf, version=1, status="deferred", reason="MRI")
    page = client.get("/due?days=7").text
    badge = '<span class="badge deferred" title="the latest plan holds this treatment back: decide before booking">'
    assert badge + "plan: deferred</span>" in page
    assert toxin_row(client.get("/due.csv?days=7").text).endswith(",deferred: ask the care team before booking")
    (item,) = [i for i in client.get("/api/v1/due?recall=toxin").json() if i["patient"] == "demo-002"]
    assert item["plan"] == "deferred" and item["overdue"]
    patient_page = client.get("/patients/demo-002").text
    assert badge in patient_page[patient_page.index('id="due-now"') :]
    assert "plan: deferred" not in client.get("/patients/demo-001").text  # the other patient is not held back
    client.cookies.clear()
    sign_in(client, "patient2")
    own = html.unescape(client.get("/me").text)
    assert "botulinum toxin session: your care team will tell you whether and when it goes ahead" in own
    assert "please book it" not in own
    client.cookies.clear()
    csrf = sign_in(client, "neuro")
    _set_toxin_status(client, csrf, version=2, status="recommended", reason="MRI clear")
    (item,) = [i for i in client.get("/api/v1/due?recall=toxin").json() if i["patient"] == "demo-002"]
    assert item["plan"] is None


def test_a_diary_entry_entered_by_mistake_is_removed(client: TestClient, clinic: Engine) -> None:
    csrf = sign_in(client, "patient1")
    for spasms in ("20", "200"):  # the second one by mistake
        assert (
            client.post("/me/diary", data={"csrf_token": csrf, "spasms": spasms, "intensity": "4"}).status_code == 303
        )
    page = client.get("/me").text
    entries = page[page.index('id="entries"') :]
    ids = re.findall(r'action="/me/diary/(\d+)/remove"', entries)
    assert len(ids) == 2 and "<td>200 a day</td>" in entries and "<td>20 a day</td>" in entries
    mistake = ids[0]  # newest first
    # Not another patient's to remove, and not without the form's token.
    client.cookies.clear()
    other = sign_in(client, "patient2")
    assert client.post(f"/me/diary/{mistake}/remove", data={"csrf_token": other}).status_code == 404
    client.cookies.clear()
    csrf = sign_in(client, "patient1")
    assert client.post(f"/me/diary/{mistake}/remove", data={}).status_code == 403
    assert client.delete(f"/api/v1/patients/demo-001/diary/{mistake}").status_code == 403  # a cookie needs the token
    removed = client.post(f"/me/diary/{mistake}/remove", data={"csrf_token": csrf})
    assert removed.status_code == 303 and "The entry was removed." in client.get(removed.headers["location"]).text
    entries = client.get("/me").text.split('id="entries"')[1]
    assert "<td>200 a day</td>" not in entries and "<td>20 a day</td>" in entries
    with session_factory(clinic)() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "delete", AuditEntry.entity == "diary")).one()
    assert entry.detail["entry"]["spasms"] == 200 and entry.actor == "patient1"
    # Through the API: the care team may remove one too, saying why; a wrong id is 404.
    headers = {"authorization": f"Bearer {_token_for(client)}"}
    remaining = re.findall(r'action="/me/diary/(\d+)/remove"', entries)[0]
    unsaid = client.delete(f"/api/v1/patients/demo-001/diary/{remaining}", headers=headers)
    assert unsaid.status_code == 422 and unsaid.json()["errors"] == [{"field": "reason", "message": "is required"}]
    why = {"reason": "the patient phoned: another day's count"}
    assert client.delete(f"/api/v1/patients/demo-001/diary/{mistake}", params=why, headers=headers).status_code == 404
    assert client.delete(f"/api/v1/patients/demo-002/diary/{remaining}", params=why, headers=headers).status_code == 404
    assert client.delete(f"/api/v1/patients/demo-001/diary/{remaining}", params=why, headers=headers).status_code == 204
    # The patient through the API needs no reason: their removal says who made it.
    assert client.post("/me/diary", data={"csrf_token": csrf, "spasms": "7", "intensity": "1"}).is_redirect
    (own,) = re.findall(r'action="/me/diary/(\d+)/remove"', client.get("/me").text)
    gone = client.delete(f"/api/v1/patients/demo-001/diary/{own}", headers={"x-csrf-token": csrf})
    assert gone.status_code == 204
    reasons = [entry.reason for entry in _deleted(clinic, "diary")]
    assert reasons == ["removed by the patient", "the patient phoned: another day's count", "removed by the patient"]


def test_a_session_entered_by_mistake_is_removed_with_a_reason(client: TestClient, clinic: Engine) -> None:
    """A toxin session typed on the wrong patient or with a wrong dose: removed by those who record toxin, with a
    reason, from its row in the treatment history or the API; the plan made from it asks for a new version."""
    _records_to_act_on(clinic)  # session 1: a toxin session of demo-001, 200 days ago
    with session_factory(clinic)() as s:
        patient = patient_service.get(s, code="demo-001")
        plan_service.generate(s, patient=patient, kb=load_default(), actor="t", today=dt.date.today())
        s.commit()
    given = (dt.date.today() - dt.timedelta(days=200)).isoformat()
    action = "/patients/demo-001/sessions/1/remove"
    tcm = sign_in(client, "tcm")
    assert action not in client.get("/patients/demo-001").text  # not a TCM practitioner's to remove
    assert client.post(action, data={"csrf_token": tcm, "reason": "wrong patient"}).status_code == 403
    client.cookies.clear()
    csrf = sign_in(client, "neuro")
    page = client.get("/patients/demo-001").text
    assert f'action="{action}"' in _history_rows(page) and 'id="recorded-since"' not in page
    # A reason too short: the page again with the problem beside that row's form, and nothing removed.
    short = client.post(action, data={"csrf_token": csrf, "reason": "x"})
    assert short.status_code == 422 and "The session was not removed" in short.text
    assert "say why (3 characters or more)" in _problems_of(short.text, "remove-session")
    row = short.text.split(f'action="{action}"')[0].rsplit("<tr>", 1)[1]
    assert '<details class="why" open>' in row, row
    assert (
        client.post("/patients/demo-001/sessions/99/remove", data={"csrf_token": csrf, "reason": "wrong"}).status_code
        == 404
    )
    assert not _deleted(clinic, "session")
    removed = client.post(action, data={"csrf_token": csrf, "reason": "typed on the wrong patient"})
    assert removed.status_code == 303 and removed.headers["location"] == "/patients/demo-001?removed=session#history"
    page = client.get(removed.headers["location"]).text
    assert 'id="session-removed"' in page and f"{given}</td><td>toxin" not in _history_rows(page)
    since = html.unescape(page[page.index('id="recorded-since"') :].split("</strong>")[0])
    assert since.endswith(f"<strong>Recorded since this plan was made: the removal of the toxin session of {given}.")
    (entry,) = _deleted(clinic, "session")
    assert entry.actor == "neuro" and entry.reason == "typed on the wrong patient" and entry.entity_id == "1"
    assert entry.detail["kind"] == "toxin" and entry.detail["session"]["date"] == given
    assert entry.detail["session"]["data"]["sites"][0]["units"] == 2.5 and entry.detail["patient"] == "demo-001"
    # Through the API: the roles that record the kind, a reason, 404 once gone.
    headers = {"authorization": f"Bearer {_token_for(client)}"}
    assert (
        client.delete("/api/v1/patients/demo-001/sessions/1", params={"reason": "again"}, headers=headers).status_code
        == 404
    )
    made = client.post("/api/v1/patients/demo-001/sessions", json=_TOXIN, headers=headers)
    assert made.status_code == 201, made.text
    api = f"/api/v1/patients/demo-001/sessions/{made.json()['id']}"
    unsaid = client.delete(api, headers=headers)
    assert unsaid.status_code == 422 and unsaid.json()["errors"] == [{"field": "reason", "message": "is required"}]
    assert client.delete(api, params={"reason": "ab"}, headers=headers).status_code == 422
    assert client.delete(api, params={"reason": "entered twice"}, headers=headers).status_code == 204
    assert made.json()["id"] not in [
        row["id"] for row in client.get("/api/v1/patients/demo-001/sessions", headers=headers).json()
    ]
    # One recorded after the plan was made, and removed, is nothing the plan knew.
    assert len(_deleted(clinic, "session")) == 2
    page = client.get("/patients/demo-001").text
    assert page.count("the removal of the toxin session") == 1  # the first one, which the plan was made from


def _deleted(clinic: Engine, entity: str) -> list[AuditEntry]:
    with session_factory(clinic)() as s:
        query = select(AuditEntry).where(AuditEntry.action == "delete", AuditEntry.entity == entity)
        return list(s.scalars(query.order_by(AuditEntry.id)))


def test_the_care_team_removes_a_diary_entry_that_distorts_the_chart(client: TestClient, clinic: Engine) -> None:
    """2,000 spasms typed for 20 makes the chart useless, and a patient without a portal account cannot remove it:
    the care team removes it from the patient page, saying why."""
    csrf = sign_in(client, "patient1")
    for spasms in ("20", "2000"):
        assert client.post("/me/diary", data={"csrf_token": csrf, "spasms": spasms, "intensity": "4"}).is_redirect
    mine = client.get("/me").text
    wrong = re.findall(r'action="/me/diary/(\d+)/remove"', mine)[0]  # newest first
    remove = f"/patients/demo-001/diary/{wrong}/remove"
    assert client.post(remove, data={"csrf_token": csrf, "reason": "typed 2000"}).status_code == 403  # not this way
    client.cookies.clear()
    csrf = sign_in(client, "tcm")
    page = client.get("/patients/demo-001").text
    listed = page[page.index('<details class="card" id="diary">') :].split("</ul>")[0]
    assert f'{dt.date.today()}: 2000 spasms a day, strength 4 of 10 <span class="muted">(patient1)</span>' in listed
    assert f'action="{remove}"' in listed
    refused = client.post(remove, data={"csrf_token": csrf, "reason": ""})
    assert refused.status_code == 422 and "The diary entry was not removed" in refused.text
    assert '<details class="card" id="diary" open>' in refused.text and "Nothing was removed." in refused.text
    assert _deleted(clinic, "diary") == []
    removed = client.post(remove, data={"csrf_token": csrf, "reason": "typed 2000 for 20, the patient says"})
    assert removed.status_code == 303 and removed.headers["location"] == "/patients/demo-001?removed=diary#outcomes"
    page = client.get(removed.headers["location"]).text
    assert "The diary entry was removed; the audit trail keeps it with your reason." in page
    assert "2000 spasms" not in page and "20 spasms a day" in page
    (entry,) = _deleted(clinic, "diary")
    assert (entry.actor, entry.reason, entry.detail["entry"]["spasms"]) == (
        "tcm",
        "typed 2000 for 20, the patient says",
        2000,
    )


def test_grades_entered_by_mistake_are_removed_with_a_reason_and_their_recall_falls_due_again(
    client: TestClient, clinic: Engine
) -> None:
    """Grades typed on the wrong patient, or with a wrong date, used to stay for ever and clear a post-MVD review
    recall that never happened. The care team removes them saying why; the audit trail keeps the values."""
    csrf = sign_in(client, "surgeon")
    operated = (dt.date.today() - dt.timedelta(days=100)).isoformat()  # the 3-month review is now
    assert client.post("/patients/demo-001/sessions/mvd", data={"csrf_token": csrf, "date": operated}).is_redirect
    form = {"csrf_token": csrf, "smc_grade": "2", "cohen_albert": "1"}
    assert client.post("/patients/demo-001/grades", data=form).is_redirect
    page = client.get("/patients/demo-001").text
    assert "post-MVD review at 3 months" not in page[page.index('id="due"') :]
    (grades_id,) = re.findall(r'action="/patients/demo-001/grades/(\d+)/remove"', page)
    remove = f"/patients/demo-001/grades/{grades_id}/remove"

    for reason, said in (("", "say why (3 characters or more)"), ("  x ", "say why ("), ("y" * 501, "at most 500")):
        refused = client.post(remove, data={"csrf_token": csrf, "reason": reason} if reason else {"csrf_token": csrf})
        assert refused.status_code == 422 and "The grades were not removed" in refused.text, reason
        problems = refused.text[refused.text.index('id="remove-grades-problems"') :].split("</div></div>")[0]
        assert "<strong>Why remove it</strong>" in problems and said in problems, problems
        assert '<details class="card" id="grades" open>' in refused.text
        assert '<details class="why" open>' in refused.text and "Nothing was removed." in refused.text
    assert client.post(remove, data={"reason": "typed on the wrong patient"}).status_code == 403  # no CSRF token
    not_an_id = client.post("/patients/demo-001/grades/first/remove", data={"csrf_token": csrf, "reason": "wrong"})
    assert not_an_id.status_code == 422 and "grades_id" in not_an_id.text, not_an_id.text[:300]
    assert (
        client.post(f"/patients/demo-002/grades/{grades_id}/remove", data={**form, "reason": "wrong"}).status_code
        == 404
    )
    for username in ("patient1", "admin"):
        client.cookies.clear()
        token = sign_in(client, username)
        assert client.post(remove, data={"csrf_token": token, "reason": "not mine"}).status_code == 403, username
    assert _deleted(clinic, "grades") == []

    client.cookies.clear()
    csrf = sign_in(client, "neuro")
    removed = client.post(remove, data={"csrf_token": csrf, "reason": " typed on the wrong patient "})
    assert removed.status_code == 303 and removed.headers["location"] == "/patients/demo-001?removed=grades#outcomes"
    page = client.get(removed.headers["location"]).text
    assert "The grades were removed; the audit trail keeps them with your reason." in page
    assert "post-MVD review at 3 months" in page[page.index('id="due"') :]  # due again
    assert f"/grades/{grades_id}/remove" not in page
    (entry,) = _deleted(clinic, "grades")
    assert (entry.actor, entry.entity_id, entry.reason) == ("neuro", grades_id, "typed on the wrong patient")
    assert entry.detail["patient"] == "demo-001"
    assert entry.detail["entry"] | {"smc_grade": 2, "cohen_albert": 1, "created_by": "surgeon"} == entry.detail["entry"]
    assert client.post(remove, data={"csrf_token": csrf, "reason": "once more"}).status_code == 404

    # Through the API: the reason is required there too, and named when it is missing.
    document = client.get("/api/v1/openapi.json").json()["paths"]["/api/v1/patients/{code}/grades/{grades_id}"]
    (said,) = [p for p in document["delete"]["parameters"] if p["name"] == "reason"]
    assert said["required"] and (said["schema"]["minLength"], said["schema"]["maxLength"]) == (3, 500)
    today, headers = dt.date.today().isoformat(), {"x-csrf-token": csrf}
    made = client.post("/api/v1/patients/demo-001/grades", json={"date": today, "smc_grade": 3}, headers=headers)
    address = f"/api/v1/patients/demo-001/grades/{made.json()['id']}"
    for query, message in (("", "is required"), ("?reason=ab", "at least 3 characters")):
        refused = client.delete(address + query, headers=headers)
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "reason", refused.json()
        assert message in refused.json()["errors"][0]["message"]
    assert (
        client.delete(
            f"/api/v1/patients/demo-002/grades/{made.json()['id']}?reason=wrong patient", headers=headers
        ).status_code
        == 404
    )
    assert client.delete(address + "?reason=wrong patient").status_code == 403  # a cookie needs the token
    client.cookies.clear()
    token = sign_in(client, "patient1")
    assert client.delete(address + "?reason=not mine", headers={"x-csrf-token": token}).status_code == 403
    client.cookies.clear()
    bearer = {"authorization": f"Bearer {_token_for(client)}"}
    assert client.delete(address + "?reason=entered twice", headers=bearer).status_code == 204
    assert [e.reason for e in _deleted(clinic, "grades")] == ["typed on the wrong patient", "entered twice"]


def test_questionnaire_answers_sent_by_mistake_are_removed(client: TestClient, clinic: Engine) -> None:
    """A patient who sends the HFS-7 twice removes the extra one from their page; what the care team entered from
    paper only the care team removes, with a reason. The chart and the audit trail follow."""
    csrf = sign_in(client, "patient1")
    for score in ("1", "3"):  # the second one by mistake
        assert client.post("/me/hfs7", data={"csrf_token": csrf, **{f"item.{i}": score for i in range(7)}}).is_redirect
    client.cookies.clear()
    csrf = sign_in(client, "tcm")
    paper = {"csrf_token": csrf, **{f"item.{i}": "2" for i in range(7)}, "date": "2026-01-05"}
    assert client.post("/patients/demo-001/questionnaires/hfs7", data=paper).is_redirect
    page = client.get("/patients/demo-001").text
    listed = page[page.index('id="hfs7-paper"') :].split("</details>\n")[0]
    assert (
        listed.count("HFS-7, total") == 3 and '2026-01-05: HFS-7, total 14 <span class="muted">(tcm)</span>' in listed
    )
    ids = re.findall(r'action="/patients/demo-001/questionnaires/(\d+)/remove"', page)
    twice, first, on_paper = ids  # newest first: today's two, then January's

    client.cookies.clear()
    csrf = sign_in(client, "patient1")
    mine = client.get("/me").text
    answers = mine[mine.index('id="answers"') :]
    assert re.findall(r'action="/me/questionnaires/(\d+)/remove"', answers) == [twice, first]
    assert '<td>14</td>\n<td><span class="small muted">from your care team</span>' in answers
    assert client.post(f"/me/questionnaires/{on_paper}/remove", data={"csrf_token": csrf}).status_code == 403
    api = f"/api/v1/patients/demo-001/questionnaires/{on_paper}?reason=not mine"
    assert client.delete(api, headers={"x-csrf-token": csrf}).status_code == 403  # nor through the API
    assert client.post(f"/me/questionnaires/{twice}/remove", data={}).status_code == 403  # no CSRF token
    client.cookies.clear()
    other = sign_in(client, "patient2")
    assert client.post(f"/me/questionnaires/{twice}/remove", data={"csrf_token": other}).status_code == 404
    assert _deleted(clinic, "questionnaire") == []
    client.cookies.clear()
    csrf = sign_in(client, "patient1")
    removed = client.post(f"/me/questionnaires/{twice}/remove", data={"csrf_token": csrf})
    assert removed.status_code == 303 and removed.headers["location"] == "/me?saved=removed-questionnaire#answers"
    mine = client.get(removed.headers["location"]).text
    assert "The answers were removed." in mine
    assert re.findall(r'action="/me/questionnaires/(\d+)/remove"', mine) == [first]
    figures = re.search(r'<details id="chart-figures".*?</details>', mine, re.S)
    assert figures and f"total by date: {dt.date.today()}: 7; 2026-01-05: 14." in figures.group(0)  # 3 x 7 is gone

    client.cookies.clear()
    csrf = sign_in(client, "neuro")
    remove = f"/patients/demo-001/questionnaires/{on_paper}/remove"
    refused = client.post(remove, data={"csrf_token": csrf, "reason": "no"})
    assert refused.status_code == 422 and "The answers were not removed" in refused.text
    assert '<details class="card" id="hfs7-paper" open>' in refused.text and 'value="no"' in refused.text
    assert client.post(remove, data={"csrf_token": csrf, "reason": "another patient's paper form"}).is_redirect
    deleted = _deleted(clinic, "questionnaire")
    assert [(e.actor, e.reason) for e in deleted] == [
        ("patient1", "removed by the patient"),
        ("neuro", "another patient's paper form"),
    ]
    assert deleted[0].detail["entry"]["answers"] == [3] * 7 and deleted[1].detail["entry"]["date"] == "2026-01-05"
    with session_factory(clinic)() as s:
        left = s.scalars(select(QuestionnaireAnswer.total)).all()
    assert left == [7]


def _due_part(page: str) -> str:
    return page[page.index('<h2 id="due">') :]


def test_a_recall_that_no_longer_applies_is_closed_with_a_reason_and_reopened(client: TestClient) -> None:
    """A patient who stopped toxin stayed overdue on the clinic's list for ever. Whoever gives the treatment closes
    its recall, saying why; it comes back with the next session, or when reopened."""
    csrf = sign_in(client, "neuro")
    site = {"site": "upper_lid_medial", "side": "left", "units": 2.5}
    toxin = {"kind": "toxin", "product": "onabotulinumtoxinA", "lot": "L1", "sites": [site]}
    injected = (dt.date.today() - dt.timedelta(days=200)).isoformat()
    made = client.post(
        "/api/v1/patients/demo-001/sessions",
        json={"date": injected, "clinician": "N", "details": toxin},
        headers={"x-csrf-token": csrf},
    )
    assert made.status_code == 201, made.text
    due = _due_part(client.get("/patients/demo-001").text)
    assert "botulinum toxin session" in due and 'action="/patients/demo-001/recalls/toxin/close"' in due
    assert 'action="/patients/demo-001/recalls/hfs7/close"' in due and "Closed recalls" not in due
    close = "/patients/demo-001/recalls/toxin/close"

    client.cookies.clear()
    tcm = sign_in(client, "tcm")
    due = _due_part(client.get("/patients/demo-001").text)
    assert "/recalls/toxin/close" not in due and "/recalls/hfs7/close" in due  # only what they give, and the HFS-7
    assert client.post(close, data={"csrf_token": tcm, "reason": "stopped"}).status_code == 403
    client.cookies.clear()
    csrf = sign_in(client, "neuro")
    for form, status, said in (
        ({"reason": ""}, 422, "<strong>Why close it</strong>: say why (3 characters or more)"),
        ({"reason": "z" * 501}, 422, "<strong>Why close it</strong>: String should have at most 500 characters"),
    ):
        refused = client.post(close, data={"csrf_token": csrf, **form})
        assert refused.status_code == status and "The recall was not closed" in refused.text
        assert said in refused.text and "Nothing was changed." in refused.text
        assert _due_part(refused.text).count('<details class="why" open>') == 1
    assert (
        client.post("/patients/demo-001/recalls/laser/close", data={"csrf_token": csrf, "reason": "x" * 5}).status_code
        == 404
    )
    assert client.post(close, data={"reason": "stopped"}).status_code == 403  # no CSRF token
    closed = client.post(close, data={"csrf_token": csrf, "reason": "chose MVD instead"})
    assert closed.status_code == 303 and closed.headers["location"] == "/patients/demo-001?recalls=closed#due"
    due = _due_part(client.get(closed.headers["location"]).text)
    assert "The recall was closed; the audit trail keeps your reason." in due
    listed, held = due.split("Closed recalls")
    assert "botulinum toxin session" not in listed and "HFS-7 questionnaire" in listed
    assert "by neuro, “chose MVD instead”; open again with the next toxin session." in held
    assert "demo-001" not in [row for row in client.get("/due").text.split("<tr>") if "botulinum toxin" in row]
    (closure_id,) = re.findall(r'action="/patients/demo-001/recall-closures/(\d+)/reopen"', held)

    api = client.get("/api/v1/patients/demo-001/recall-closures").json()
    assert [(c["item"]["recall"], c["reason"], c["closure"]) for c in api] == [
        ("toxin", "chose MVD instead", int(closure_id))
    ]
    reopen = f"/patients/demo-001/recall-closures/{closure_id}/reopen"
    client.cookies.clear()
    tcm = sign_in(client, "tcm")
    assert client.post(reopen, data={"csrf_token": tcm}).status_code == 403
    client.cookies.clear()
    csrf = sign_in(client, "surgeon")
    assert (
        client.post(f"/patients/demo-002/recall-closures/{closure_id}/reopen", data={"csrf_token": csrf}).status_code
        == 404
    )
    reopened = client.post(reopen, data={"csrf_token": csrf})
    assert reopened.is_redirect and reopened.headers["location"] == "/patients/demo-001?recalls=reopened#due"
    due = _due_part(client.get(reopened.headers["location"]).text)
    assert "The recall was reopened." in due and "botulinum toxin session" in due and "Closed recalls" not in due

    # The API: the same rules, each refusal naming its field.
    headers = {"x-csrf-token": csrf}
    address = "/api/v1/patients/demo-001/recall-closures"
    for body, fields in (
        ({"recall": "laser", "reason": "x"}, ["recall", "reason"]),
        ({"recall": "toxin"}, ["reason"]),
        ({"recall": "toxin", "reason": "stopped", "until": "2027"}, ["until"]),
    ):
        refused = client.post(address, json=body, headers=headers)
        assert refused.status_code == 422 and [e["field"] for e in refused.json()["errors"]] == fields, refused.text
    made = client.post(address, json={"recall": "toxin", "reason": "followed up elsewhere"}, headers=headers)
    assert made.status_code == 201 and made.json()["closed_on"] == dt.date.today().isoformat(), made.text
    assert (
        client.delete(f"/api/v1/patients/demo-002/recall-closures/{made.json()['id']}", headers=headers).status_code
        == 404
    )
    client.cookies.clear()
    tcm = sign_in(client, "tcm")
    assert (
        client.post(address, json={"recall": "toxin", "reason": "stopped"}, headers={"x-csrf-token": tcm}).status_code
        == 403
    )
    acupuncture = client.post(
        address, json={"recall": "acupuncture", "reason": "course stopped"}, headers={"x-csrf-token": tcm}
    )
    assert acupuncture.status_code == 201
    client.cookies.clear()
    patient = sign_in(client, "patient1")
    assert client.get(address).status_code == 403
    assert client.delete(f"{address}/{made.json()['id']}", headers={"x-csrf-token": patient}).status_code == 403
    client.cookies.clear()
    csrf = sign_in(client, "neuro")
    assert client.delete(f"{address}/{made.json()['id']}", headers={"x-csrf-token": csrf}).status_code == 204
    assert client.delete(f"{address}/{made.json()['id']}", headers={"x-csrf-token": csrf}).status_code == 404


def _portal_parts(client: TestClient) -> dict[str, str]:
    """The patient's page, each part of the plan as its own text."""
    page = client.get("/me").text
    found = re.findall(r'<section class="part" id="part-(\w+)">(.*?)</section>', page, flags=re.S)
    return {part: " ".join(re.sub(r"<[^>]+>", " ", body).split()) for part, body in found}


def test_the_patient_sees_only_what_their_care_team_signed(client: TestClient, clinic: Engine) -> None:
    kb = load_default()
    mvd, acupuncture = kb.treatments["mvd"].name, kb.treatments["acupuncture"].name
    sign_in(client, "patient1")
    before = _portal_parts(client)
    assert set(before) == {"conventional", "integrative"}
    for text in before.values():
        assert "has not reviewed this part of your plan yet" in text
    assert mvd not in client.get("/me").text and acupuncture not in client.get("/me").text

    # The surgeon signs the medical part, moving MVD from suggested to "to discuss".
    surgeon = {"authorization": f"Bearer {_token_for(client)}"}
    edits = [{"recommendation": "mvd", "status": "option", "reason": "wants toxin first"}]
    signed = client.post("/api/v1/patients/demo-001/plan/sign", json={"version": 1, "edits": edits}, headers=surgeon)
    assert signed.status_code == 200, signed.text
    after = _portal_parts(client)
    assert f"Agreed by your neurosurgeon on {dt.date.today()}." in after["conventional"]
    assert f"to discuss {mvd}" in after["conventional"] and "update" not in after["conventional"]
    assert "has not reviewed" in after["integrative"] and acupuncture not in after["integrative"]

    # A new assessment makes a new version nobody has signed: the patient keeps the agreed part, marked as updating.
    with session_factory(clinic)() as s, s.begin():
        plan_service.generate(
            s, patient=patient_service.get(s, code="demo-001"), kb=kb, actor="test", today=dt.date.today()
        )
    updating = _portal_parts(client)
    assert f"to discuss {mvd}" in updating["conventional"]
    assert "Your care team is reviewing an update to this part" in updating["conventional"]
    assert "has not reviewed" in updating["integrative"]

    # The TCM practitioner signs the new version: the TCM part appears, the medical part still awaits its update.
    with session_factory(clinic)() as s, s.begin():
        patient = patient_service.get(s, code="demo-001")
        plan_service.sign(
            s, patient=patient, expected_number=3, edits=[], signer="tcm", role="tcm_practitioner", kb=load_default()
        )
    final = _portal_parts(client)
    assert f"Agreed by your TCM practitioner on {dt.date.today()}." in final["integrative"]
    assert f"to discuss {acupuncture}" in final["integrative"] and "update" not in final["integrative"]
    assert "reviewing an update" in final["conventional"] and f"to discuss {mvd}" in final["conventional"]
    # The other patient's plan was never signed: they see none of it, and nothing of this one.
    client.cookies.clear()
    sign_in(client, "patient2")
    assert all("has not reviewed" in text for text in _portal_parts(client).values())


def test_a_write_waiting_for_the_database_does_not_hold_up_other_requests(app: Any, db_url: str) -> None:
    """Routes that write run in the thread pool: while one waits for SQLite's write lock (held here by another
    connection, as a long CLI import would), the event loop still answers everyone else."""
    import asyncio
    import sqlite3

    import httpx2

    with app.state.sessions.begin() as session:
        token = user_service.issue_token(session, username="neuro", name="lock test", actor="test")
    holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, until COMMIT

    async def scenario() -> tuple[int, float, bool]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="https://testserver") as http:
            entry = {"date": "2026-01-02", "spasms": 4, "intensity": 2}
            writing = asyncio.create_task(
                http.post("/api/v1/patients/demo-001/diary", json=entry, headers={"authorization": f"Bearer {token}"})
            )
            await asyncio.sleep(0.3)  # the write is now waiting for the lock
            started = time.monotonic()
            health = await asyncio.wait_for(http.get("/api/v1/health"), timeout=5)
            answered_in = time.monotonic() - started
            still_waiting = not writing.done()
            holder.execute("COMMIT")
            written = await writing
            assert health.status_code == 200
            return written.status_code, answered_in, still_waiting

    try:
        status, answered_in, still_waiting = asyncio.run(scenario())
    finally:
        holder.close()
    assert still_waiting, "the write should still have been waiting for the lock"
    assert answered_in < 1.0, f"health answered only after {answered_in:.1f} s"
    assert status == 201


def test_plain_function_routes_share_a_few_threads(client: TestClient) -> None:
    import anyio.to_thread

    from hemicare.web.app import SYNC_THREADS

    assert client.portal is not None
    tokens = client.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)
    assert tokens == SYNC_THREADS < 40  # anyio's default is 40
    sign_in(client, "neuro")
    assert client.get("/patients/demo-001").status_code == 200


def test_the_plan_links_its_pubmed_and_doi_citations(client: TestClient) -> None:
    sign_in(client, "neuro")
    page = client.get("/patients/demo-001").text
    assert re.search(r'<a href="https://pubmed\.ncbi\.nlm\.nih\.gov/\d+/"[^>]*>pmid:\d+</a>', page)
    assert re.search(r'<a href="https://doi\.org/10\.[^"]+"[^>]*>doi:10\.', page)
    aid = page[page.index('<table class="aid">') : page.index("</table>", page.index('<table class="aid">'))]
    assert re.search(r'<a href="https://pubmed\.ncbi\.nlm\.nih\.gov/\d+/"', aid), "the decision aid's figures too"


def test_error_pages_keep_the_signed_in_users_menu(client: TestClient) -> None:
    anonymous = client.get("/no-such-page")
    assert anonymous.status_code == 404 and "Sign out" not in anonymous.text
    sign_in(client, "neuro")
    missing = client.get("/patients/nobody")
    assert missing.status_code == 404
    assert "no patient with code &#39;nobody&#39;" in missing.text
    assert "Sign out" in missing.text and 'href="/patients"' in missing.text
    # "Go back" goes to the page the browser came from, on this site only; no javascript: link (the CSP refuses it).
    assert "javascript:" not in missing.text
    came = client.get("/patients/nobody", headers={"referer": "https://testserver/patients?x=1"})
    assert '<a href="/patients?x=1">Go back</a>' in came.text
    foreign = client.get("/patients/nobody", headers={"referer": "https://elsewhere.example/patients"})
    assert '<a href="/">Go back</a>' in foreign.text


def test_the_api_link_is_for_staff_not_patients(client: TestClient) -> None:
    csrf = sign_in(client, "patient1")
    assert 'href="/api/v1/docs"' not in client.get("/me").text
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    sign_in(client, "neuro")
    assert 'href="/api/v1/docs"' in client.get("/patients").text


def test_the_chart_draws_an_hourly_count_per_day_and_says_so(client: TestClient, clinic: Engine) -> None:
    hours = load_default().policy("chart_waking_hours_per_day")
    today = dt.date.today().isoformat()
    entry = {"date": today, "spasms": 3, "intensity": 2, "per": "hour"}
    headers = {"authorization": f"Bearer {_token_for(client)}"}
    assert client.post("/api/v1/patients/demo-001/diary", json=entry, headers=headers).status_code == 201
    sign_in(client, "neuro")
    page = client.get("/patients/demo-001")
    assert f"spasms {today}: {3 * hours:g} (3 per hour x {hours:g} waking hours, a clinic setting)" in page.text


def test_the_chart_is_also_given_in_figures_month_by_month(client: TestClient, clinic: Engine) -> None:
    """A screen reader meets the chart as one picture; below it the same records are given as figures: each month's
    diary means (a count per hour apart from one per day) and each questionnaire total, newest first, on the
    clinician's page and the patient's own."""
    sign_in(client, "neuro")
    assert 'id="chart-figures"' not in client.get("/patients/demo-001").text  # no records, no table
    headers = {"authorization": f"Bearer {_token_for(client)}"}
    entries = [
        ("2026-03-02", "day", 10, 2),
        ("2026-03-20", "day", 21, 5),
        ("2026-03-21", "hour", 3, 4),
        ("2026-04-05", "day", 7, 1),
    ]
    for date, per, spasms, intensity in entries:
        entry = {"date": date, "per": per, "spasms": spasms, "intensity": intensity}
        assert client.post("/api/v1/patients/demo-001/diary", json=entry, headers=headers).status_code == 201
    for date, answers in (("2026-03-01", [3] * 7), ("2026-04-01", [1] * 7)):
        answered = {"date": date, "instrument": "hfs7", "answers": answers}
        assert client.post("/api/v1/patients/demo-001/questionnaires", json=answered, headers=headers).is_success
    sign_in(client, "neuro")
    page = client.get("/patients/demo-001").text
    figures = re.search(r'<details id="chart-figures".*?</details>', page, flags=re.S)
    assert figures, "the figures are under the chart"
    rows = [_visible_text(row) for row in re.findall(r"<tr><td>.*?</tr>", figures.group(0), flags=re.S)]
    assert rows == ["2026-04 1 7.0 per day 1.0", "2026-03 2 15.5 per day 3.5", "2026-03 1 3.0 per hour 4.0"], rows
    hfs7 = load_default().scales["hfs7"].name
    assert f"{hfs7}, total by date: 2026-04-01: 7; 2026-03-01: 21." in _visible_text(figures.group(0))
    # The patient's own page gives the same figures under their chart.
    client.cookies.clear()
    sign_in(client, "patient1")
    own = re.search(r'<details id="chart-figures".*?</details>', client.get("/me").text, flags=re.S)
    assert own and own.group(0) == figures.group(0)


def test_portal_tells_the_patient_what_is_due_now(client: TestClient, clinic: Engine) -> None:
    today = dt.date.today()
    csrf = sign_in(client, "neuro")
    session = {
        "date": (today - dt.timedelta(weeks=40)).isoformat(),
        "clinician": "N",
        "details": {
            "kind": "toxin",
            "product": "onabotulinumtoxinA",
            "lot": "L1",
            "sites": [{"site": "upper_lid_medial", "side": "left", "units": 2.5}],
        },
    }
    assert client.post("/api/v1/patients/demo-001/sessions", json=session, headers={"x-csrf-token": csrf}).is_success
    client.post("/logout", data={"csrf_token": csrf})
    sign_in(client, "patient1")
    page = client.get("/me").text
    with session_factory(clinic)() as s:
        patient = patient_service.get(s, code="demo-001")
        items = recall_service.due(s, kb=load_default(), today=today, horizon_days=120, patient_id=patient.id)
    assert any(item.due < today for item in items), items
    assert any(item.overdue for item in items), items  # 40 weeks after a toxin session
    # The printed plan says it in the same words (its own 90 days ahead).
    printed = _pdf_text(client.get("/patients/demo-001/plan.pdf?kind=patient").content)
    for item in items:
        if item.due < today:
            book = "; please book it with the clinic" if item.overdue else ""
            assert f"<strong>Due now:</strong> {item.what} (since {item.due}){book}</div>" in page
            assert f"- Due now: {item.what} (since {item.due}){book}" in printed
        elif item.due == today:
            assert f"<strong>Due today:</strong> {item.what}</div>" in page
            assert f"- Due today: {item.what}" in printed
        else:
            assert f"<strong>{item.due}:</strong> {item.what}</div>" in page
            assert f"- {item.due}: {item.what}" in printed or item.due > today + dt.timedelta(days=90)


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)


@ON_EVERY_DATABASE  # PostgreSQL refuses what SQLite stores (a NUL character, text longer than its column)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(JSONISH, st.fixed_dictionaries({"age": JSONISH, "sex": JSONISH, "regions": JSONISH})))
def test_api_never_answers_bad_input_with_a_server_error(client: TestClient, body: Any) -> None:
    token = _token_for(client)
    headers = {"authorization": f"Bearer {token}"}
    for path in (
        "/api/v1/plans",
        "/api/v1/patients",
        "/api/v1/patients/demo-001/sessions",
        "/api/v1/patients/demo-001/diary",
        "/api/v1/patients/demo-001/plan/sign",
    ):
        response = client.post(path, json=body, headers=headers)
        assert response.status_code < 500, (path, body, response.text)
        if response.status_code == 422:
            assert all("field" in e and e["message"] for e in response.json()["errors"])


@ON_EVERY_DATABASE  # PostgreSQL refused to put a code too long for its column into the audit trail
@pytest.mark.parametrize("username", ["neuro", "patient2"])
def test_every_address_naming_a_patient_refuses_a_code_no_patient_can_have(client: TestClient, username: str) -> None:
    """Asked for by the care team (the access is audited) or by another patient (the refusal is audited), a code
    longer than any code was a server error on PostgreSQL. Every route whose address names a patient is tried."""
    csrf = sign_in(client, username)
    routes = [(method, path) for method, path in app_routes() if "{code}" in path]
    assert len(routes) >= 40
    too_long = "x" * (CODE_MAX + 1)
    for method, path in routes:
        address = re.sub(r"\{[a-z_]+\}", "1", path.replace("{code}", too_long))
        if address.startswith("/api/"):
            answer = client.request(method, address, json={}, headers={"x-csrf-token": csrf})
            assert answer.status_code == 422, (method, path, answer.text)
            assert "code" in [e["field"] for e in answer.json()["errors"]], (method, path, answer.text)
        else:
            answer = client.request(method, address, data={"csrf_token": csrf} if method == "POST" else None)
            assert answer.status_code == 422 and "<strong>code</strong>" in answer.text, (method, path)
    assert client.get(f"/api/v1/patients/{'x' * CODE_MAX}").status_code in (403, 404)  # a code's length: looked up


# What a hand-edited address or a broken client puts where a route expects a code, a record's number or a name:
# each found a 500 once (numbers beyond 64 bits, codes longer than their column, '²', which isdigit() takes and
# int() refuses, and more digits than int() reads).
GARBLED = ["0", "-1", "2147483648", "9" * 20, "9" * 5000, "1.5", "²", "x" * 49, "x" * 300, "..", " ", "null"]
# Values only a query parameter meets: the calendar's first and last days (the sign-off list's "since" failed on the
# first: Python cannot place its midnight in UTC).
GARBLED_QUERY = [*GARBLED, "0001-01-01", "9999-12-31", "2026-02-30"]


def _query_keys_read(client: TestClient, method: str, address: str) -> set[str]:
    """The query parameters a route reads (asked once without any), whether the route reads them itself or FastAPI
    does for it: found, not listed, so a parameter added to a route is tried with the rest."""
    read: set[str] = set()
    getlist, getitem, contains = QueryParams.getlist, QueryParams.__getitem__, QueryParams.__contains__

    def spy(original: Callable[..., Any]) -> Callable[..., Any]:
        def reading(params: QueryParams, key: Any, *args: Any) -> Any:
            read.add(key)
            return original(params, key, *args)

        return reading

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(QueryParams, "get", spy(Mapping.get))
        patched.setattr(QueryParams, "getlist", spy(getlist))
        patched.setattr(QueryParams, "__getitem__", spy(getitem))
        patched.setattr(QueryParams, "__contains__", spy(contains))
        _requests_to(client, method, address)
    return read


def _requests_to(client: TestClient, method: str, address: str, **kwargs: Any) -> Any:
    """The request as a machine client (API, bearer token) or a browser (pages, cookie and CSRF token) sends it."""
    if address.startswith("/api/"):
        return client.request(method, address, headers={"authorization": f"Bearer {_token_for(client)}"}, **kwargs)
    csrf = _csrf_for(client)  # signs in on the first page asked for
    if method == "POST":
        kwargs["data"] = kwargs.pop("data", {}) | {"csrf_token": csrf}
    return client.request(method, address, **kwargs)


@ON_EVERY_DATABASE
def test_no_route_answers_a_garbled_address_with_a_server_error(client: TestClient) -> None:
    """Every route the routers declare, each garbled value in each part of its address (the patient's code, or the
    rest with a real code) and in each query parameter it reads: a 4xx at worst, never a 500."""
    tried: set[str] = set()
    for method, path in app_routes():
        if path in _OWN_SIGN_IN:
            continue
        parts = [quote(value, safe="") for value in GARBLED]
        addresses = {
            address
            for part in parts
            for address in (
                re.sub(r"\{[a-z_]+\}", part, path),
                re.sub(r"\{[a-z_]+\}", part, path.replace("{code}", "demo-001")),
                re.sub(r"\{[a-z_]+\}", "1", path.replace("{code}", part)),
            )
        }
        for address in sorted(addresses):
            answer = _requests_to(client, method, address)
            assert answer.status_code < 500, (method, address[:120], answer.text[:300])
        if method == "GET" and not path.startswith("/admin"):
            tried |= _garble_query(client, re.sub(r"\{[a-z_]+\}", "1", path.replace("{code}", "demo-001")))
    client.cookies.clear()
    sign_in(client, "admin")  # the admin's pages read their parameters only for an admin
    for path in [path for method, path in app_routes() if method == "GET" and path.startswith("/admin")]:
        tried |= _garble_query(client, path)
    assert {"since", "page", "q", "horizon", "recall", "kind", "to", "actor"} <= tried  # the spy sees what is read


def _garble_query(client: TestClient, address: str) -> set[str]:
    """Each query parameter the page or API answer at ``address`` reads, given each garbled value: never a 500."""
    keys = _query_keys_read(client, "GET", address)
    for key, value in itertools.product(sorted(keys), GARBLED_QUERY):
        answer = _requests_to(client, "GET", address, params={key: value})
        assert answer.status_code < 500, (address, key, value[:20], answer.text[:300])
    return keys


@ON_EVERY_DATABASE
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_route_answers_a_garbled_body_with_a_server_error(client: TestClient, data: st.DataObject) -> None:
    """Any route that takes a body, sent any JSON (the API) or any mix of its forms' fields with garbled values (the
    pages): a 4xx at worst, never a 500."""
    posts = [route for route in app_routes() if route[0] in ("POST", "PATCH") and route[1] not in _OWN_SIGN_IN]
    method, path = data.draw(st.sampled_from(posts))
    address = path.replace("{code}", "demo-001").replace("{recall}", "toxin")
    address = re.sub(r"\{[a-z_]+\}", "1", address)
    value = st.one_of(st.sampled_from(GARBLED), st.text(max_size=30))
    if path.startswith("/api/"):
        body: Any = data.draw(JSONISH)
        answer = _requests_to(client, method, address, json=body)
    else:
        body = data.draw(st.dictionaries(st.sampled_from(FORM_FIELDS), value, max_size=6))
        answer = _requests_to(client, method, address, data=body)
    assert answer.status_code < 500, (method, address, body, answer.text[:300])


FORM_FIELDS = [
    "version", "reason", "sign_reason", "date", "code", "name", "sex", "birth_year", "phone", "spasms", "intensity",
    "per", "item.0", "product", "lot", "units.upper_lid_medial.left", "override_reason", "points", "electro",
    "formula", "effect_weeks", "adverse_effects", "result", "question", "status.mvd", "reason.mvd", "smc_grade",
]  # fmt: skip
_CSRF: weakref.WeakKeyDictionary[TestClient, str] = weakref.WeakKeyDictionary()


def _csrf_for(client: TestClient) -> str:
    """A clinician signed in once per client (reused across hypothesis examples), and the session's CSRF token."""
    if client not in _CSRF:
        _CSRF[client] = sign_in(client, "neuro")
    return _CSRF[client]


# Text a person or a program may send: short, about as long as a column holds, or holding a NUL character.
ANY_TEXT = st.one_of(
    st.text(max_size=30),
    st.text(min_size=100, max_size=130),
    st.text(min_size=490, max_size=520),
    st.builds(lambda before, after: f"{before}\x00{after}", st.text(max_size=5), st.text(max_size=5)),
)


def _valid_requests() -> list[tuple[str, dict[str, Any]]]:
    """A valid body for each API route that stores what it is sent."""
    today = dt.date.today().isoformat()
    toxin = {"kind": "toxin", "product": "onabotulinumtoxinA", "lot": "L1", "override_reason": "severe spasm"}
    site = {"site": "upper_lid_medial", "side": "left", "units": 2.5}
    edit = {"recommendation": "mvd", "status": "deferred", "reason": "wants to wait"}
    return [
        ("/api/v1/patients", {"code": "fz-1", "name": "N", "sex": "female", "phone": "0"}),
        (
            "/api/v1/patients/demo-001/diary",
            {"date": today, "spasms": 3, "intensity": 2, "note": "n", "triggers": ["x"]},
        ),
        ("/api/v1/patients/demo-001/sessions", {"date": today, "clinician": "N", "details": toxin | {"sites": [site]}}),
        ("/api/v1/patients/demo-001/plan/sign", {"version": 1, "edits": [edit], "reason": "note"}),
        ("/api/v1/patients/demo-002/assessments", read_file(EXAMPLES / "demo-001.yaml") | {"id": "demo-002"}),
        ("/api/v1/patients/demo-001/questionnaires", {"date": today, "instrument": "hfs7", "answers": [1] * 7}),
        ("/api/v1/patients/demo-001/grades", {"date": today, "smc_grade": 2}),
        ("/api/v1/patients/demo-001/preferences", {"date": today, "answers": {"avoid_surgery": "yes"}}),
        ("/api/v1/patients/demo-001/recall-closures", {"recall": "toxin", "reason": "chose MVD"}),
    ]


def _text_places(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(data, str):
        return [path]
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    return [place for key, value in items for place in _text_places(value, (*path, key))]


@ON_EVERY_DATABASE  # what PostgreSQL cannot store must be refused before it gets there
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_api_stores_or_refuses_any_text_in_a_valid_request(client: TestClient, data: st.DataObject) -> None:
    token = _token_for(client)
    path, body = data.draw(st.sampled_from(_valid_requests()))
    *outer, last = data.draw(st.sampled_from(_text_places(body)))
    target = body
    for key in outer:
        target = target[key]
    target[last] = data.draw(ANY_TEXT)
    response = client.post(path, json=body, headers={"authorization": f"Bearer {token}"})
    assert response.status_code < 500, (path, body, response.text)


@ON_EVERY_DATABASE
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reason=ANY_TEXT, kind=st.sampled_from(["grades", "questionnaires"]))
@example(reason="00\x1f", kind="grades")  # two characters and a control one Python counts as blank: refused
def test_a_removal_keeps_or_refuses_any_reason(client: TestClient, reason: str, kind: str) -> None:
    """The reason travels in the address of a DELETE: whatever it holds, the record is removed with it in the audit
    trail, or refused naming ``reason`` with the record still there."""
    headers = {"authorization": f"Bearer {_token_for(client)}"}
    body = dict(_valid_requests())[f"/api/v1/patients/demo-001/{kind}"]
    made = client.post(f"/api/v1/patients/demo-001/{kind}", json=body, headers=headers)
    assert made.status_code == 201, made.text
    address = f"/api/v1/patients/demo-001/{kind}/{made.json()['id']}"
    response = client.delete(address, params={"reason": reason}, headers=headers)
    assert response.status_code in (204, 422), (reason, response.text)
    again = client.delete(address, params={"reason": "entered twice"}, headers=headers)
    if response.status_code == 422:
        assert [error["field"] for error in response.json()["errors"]] == ["reason"], response.text
        assert again.status_code == 204  # the refused removal left it in place
    else:
        assert again.status_code == 404
        with client.app.state.sessions() as session:  # type: ignore[attr-defined]
            kept = session.scalars(
                select(AuditEntry.reason).where(AuditEntry.action == "delete").order_by(AuditEntry.id.desc())
            ).first()
        assert kept == reason.strip()


# Keyed by the app itself, weakly: keyed by id(), a later test's app could land at a freed app's address and be
# handed a token from another database; its requests would all be refused 401, which a "never a 500" test passes.
_TOKENS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def _token_for(client: TestClient) -> str:
    """One API token per app (the client fixture is reused across hypothesis examples)."""
    if client.app not in _TOKENS:
        with client.app.state.sessions.begin() as session:  # type: ignore[attr-defined]
            _TOKENS[client.app] = user_service.issue_token(session, username="surgeon", name="fuzz", actor="test")
    return _TOKENS[client.app]


def test_api_patient_list_searches_and_pages(client: TestClient, clinic: Engine) -> None:
    from hemicare.patients.schemas import PatientCreate

    with session_factory(clinic)() as s, s.begin():
        for index in range(5):
            patient_service.create(s, data=PatientCreate(code=f"zz-{index}", name="Zed Okafor", sex="male"), actor="t")
    headers = {"authorization": f"Bearer {_token_for(client)}"}
    everyone = client.get("/api/v1/patients", headers=headers)
    assert [p["code"] for p in everyone.json()] == ["demo-001", "demo-002"] + [f"zz-{i}" for i in range(5)]
    assert everyone.headers["x-total-count"] == "7" and "link" not in everyone.headers
    first = client.get("/api/v1/patients?q=OKAFOR&limit=2", headers=headers)
    assert [p["code"] for p in first.json()] == ["zz-0", "zz-1"] and first.headers["x-total-count"] == "5"
    assert first.headers["link"] == '</api/v1/patients?q=OKAFOR&offset=2&limit=2>; rel="next"'
    last = client.get("/api/v1/patients?q=OKAFOR&limit=2&offset=4", headers=headers)
    assert [p["code"] for p in last.json()] == ["zz-4"] and "link" not in last.headers
    for query, field in (
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("offset=-1", "offset"),
        ("offset=9223372036854775808", "offset"),  # beyond 64 bits, which SQLite cannot take: a server error
        ("q=" + "x" * 101, "q"),
    ):
        refused = client.get(f"/api/v1/patients?{query}", headers=headers)
        assert refused.status_code == 422, refused.text
        assert [error["field"] for error in refused.json()["errors"]] == [field], refused.text


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/api/v1/patients/nobody/diary", {"date": "2026-01-01", "spasms": 1, "intensity": 1}, 404, ""),
        ("/api/v1/patients/demo-001/diary", {"date": "2026-01-01", "spasms": 1, "intensity": 99}, 422, "intensity"),
        (
            "/api/v1/patients/demo-001/sessions",
            {"date": "2026-01-01", "clinician": "x", "details": {"kind": "laser"}},
            422,
            "details",
        ),
        ("/api/v1/patients/demo-001/assessments", {"id": "someone-else", "age": 50}, 422, "id"),
        ("/api/v1/patients", {"code": "demo-001", "name": "Dup", "sex": "male"}, 422, "code"),
        ("/api/v1/patients/demo-001/plan/sign", {"version": 7, "edits": []}, 409, ""),
        (
            "/api/v1/patients/demo-001/questionnaires",
            {"date": "2026-01-01", "instrument": "hfs9", "answers": []},
            422,
            "instrument",
        ),
    ],
)
def test_api_bad_input_gets_a_clear_4xx(client: TestClient, path: str, body: Any, status: int, field: str) -> None:
    token = _token_for(client)
    response = client.post(path, json=body, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == status, response.text
    errors = response.json()["errors"]
    assert errors and errors[0]["message"]
    if field:
        assert any(e["field"].startswith(field) for e in errors), errors


@pytest.mark.parametrize(
    ("answers", "errors"),
    [
        ([1] * 29, [("answers", "hfs30 has 30 items, got 29")]),
        (
            [1, 2, "x", *[1] * 27],
            [("answers.2", "Input should be a valid integer, unable to parse string as an integer (got 'x')")],
        ),
        (
            {"mobility": [9]},
            [("answers.mobility.0", "Input should be less than or equal to 4 (got 9)")]
            + [(f"answers.{name}", "is required") for name in ("activities_of_daily_living", "emotional_wellbeing")]
            + [(f"answers.{name}", "is required") for name in ("stigma", "social_support", "cognition")]
            + [("answers.communication", "is required")],
        ),
        (
            {"mobility": [1] * 5, "activities_of_daily_living": [1] * 5, "emotional_wellbeing": [1] * 5}
            | {"stigma": [1] * 5, "social_support": [1] * 3, "cognition": [1] * 3, "communication": [1] * 3},
            [("answers", "HFS-30 has 30 items, but the subscales hold 29")],
        ),
        (  # neither form at all: both are named
            "all fine",
            [
                ("answers", "Input should be a valid list (got 'all fine')"),
                ("answers", "Input should be a valid dictionary or instance of Hfs30ByDomain"),
            ],
        ),
    ],
)
def test_hfs30_answers_are_refused_on_the_form_the_caller_sent(
    client: TestClient, answers: Any, errors: list[tuple[str, str]]
) -> None:
    """HFS-30 answers come as thirty items or grouped by subscale. Answers sent in one form are refused with that
    form's problems alone (a list with a bad item is not also told that it is not a dictionary), and a wrong count
    is a problem of `answers`, not of the whole request."""
    body = {"date": "2026-01-01", "instrument": "hfs30", "answers": answers}
    headers = {"authorization": f"Bearer {_token_for(client)}"}
    response = client.post("/api/v1/patients/demo-001/questionnaires", json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert [(e["field"], e["message"]) for e in response.json()["errors"]] == errors


def test_hfs30_answers_grouped_by_subscale_are_answered_with_each_subscale_score(client: TestClient) -> None:
    grouped = {
        name: [int(answer) for answer in typed.replace(",", " ").split()] for name, typed in _SUBSCALES_TYPED.items()
    }
    grouped = {name.removeprefix("subscale."): answers for name, answers in grouped.items()}
    grouped["communication"].append(4)  # thirty items in all
    headers = {"authorization": f"Bearer {_token_for(client)}"}
    body = {"date": "2026-01-01", "instrument": "hfs30", "answers": grouped}
    answered = client.post("/api/v1/patients/demo-001/questionnaires", json=body, headers=headers)
    assert answered.status_code == 201, answered.text
    assert answered.json()["total"] == 44
    assert answered.json()["subscales"]["communication"] == {"score": 13, "max": 16}
    assert answered.json()["subscales"]["mobility"] == {"score": 10, "max": 16}
    listed = client.post("/api/v1/patients/demo-001/questionnaires", json=body | {"answers": [1] * 30}, headers=headers)
    assert listed.status_code == 201 and listed.json()["total"] == 30 and listed.json()["subscales"] is None


def test_a_bad_patient_code_is_explained_in_words_not_as_a_pattern(client: TestClient) -> None:
    words = "use only letters, digits, '.', '_' and '-', starting with a letter or digit (got 'bad code!')"
    token = _token_for(client)
    body = {"code": "bad code!", "name": "X", "sex": "male"}
    response = client.post("/api/v1/patients", json=body, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 422
    assert {"field": "code", "message": words} in response.json()["errors"]
    csrf = sign_in(client, "neuro")
    page = client.post("/patients/new", data={"csrf_token": csrf, **body})
    assert page.status_code == 422
    assert words in html.unescape(page.text) and "A-Za-z" not in page.text


def test_patient_list_counts_open_alerts_by_severity_and_names_the_critical_ones(
    client: TestClient, clinic: Engine
) -> None:
    from hemicare.assessments import service as assessments
    from hemicare.patients.schemas import PatientCreate

    with session_factory(clinic)() as s, s.begin():
        patient = patient_service.create(s, data=PatientCreate(code="rf-1", name="R F", sex="male"), actor="t")
        data = read_file(EXAMPLES / "demo-002-red-flags.yaml") | {"id": "rf-1"}
        assessments.record(s, patient=patient, assessment=validate_assessment(data), actor="t", today=dt.date.today())
        plan_service.generate(s, patient=patient, kb=load_default(), actor="t", today=dt.date.today())
    sign_in(client, "neuro")
    page = client.get("/patients").text
    row = page[page.index("/patients/demo-001") : page.index("/patients/demo-002")]
    # What each warning is, on hover; no critical alert, so no critical line.
    assert '<span class="badge warning" title="Not checked: amlodipine">1 warning</span>' in row
    assert "critical" not in row
    assert "v1<" in row and 'conventional: <span class="awaiting">awaiting sign-off' in row
    flagged = page[page.index("/patients/rf-1") :]
    flagged = flagged[: flagged.index("</tr>")]
    assert (
        "1 critical</span>" in flagged
        and '<div class="small critical-titles">Red flags for secondary HFS</div>' in flagged
    )


def test_the_patient_page_gives_the_whole_assessment_in_words(client: TestClient, clinic: Engine) -> None:
    sign_in(client, "surgeon")
    page = client.get("/patients/demo-001").text
    assert f"<strong>Latest assessment ({dt.date.today().isoformat()}):</strong>" in page
    words = page[page.index('id="assessment-words"') : page.index("</details>", page.index('id="assessment-words"'))]
    assessment = validate_assessment(read_file(EXAMPLES / "demo-001.yaml"))
    from hemicare.engine.render import describe_assessment

    assert [html.unescape(line) for line in re.findall(r"<li>(.*?)</li>", words)] == describe_assessment(assessment)
    assert "MRI done: neurovascular compression yes (aica)" in words


def _assessed(clinic: Engine, code: str, *, plan: bool, **changes: Any) -> dict[str, Any]:
    """A patient ``code`` assessed today as demo-001 with these changes; with ``plan``, a plan made from it, and the
    details of its herbal formula (else empty)."""
    from hemicare.assessments import service as assessments
    from hemicare.patients.schemas import PatientCreate

    with session_factory(clinic)() as s, s.begin():
        patient = patient_service.create(s, data=PatientCreate(code=code, name="H F", sex="female"), actor="t")
        data = read_file(EXAMPLES / "demo-001.yaml") | {"id": code, **changes}
        assessments.record(s, patient=patient, assessment=validate_assessment(data), actor="t", today=dt.date.today())
        if not plan:
            return {}
        made = plan_service.generate(s, patient=patient, kb=load_default(), actor="t", today=dt.date.today())
        return dict(next(r for r in made.content["recommendations"] if r["id"] == "herbal_formula")["details"])


def test_a_differential_to_consider_is_named_on_the_page_and_in_the_referral(
    client: TestClient, clinic: Engine
) -> None:
    """A mimic the findings point to is named as a differential, with the reason, on the patient page and in the
    referral letter."""
    findings = read_file(EXAMPLES / "demo-001.yaml")["findings"] | {"bilateral_synchronous": True}
    _assessed(clinic, "bl-1", plan=True, findings=findings)
    csrf = sign_in(client, "neuro")
    page = client.get("/patients/bl-1").text
    said = re.search(r'<div class="alert">Differential to consider: <strong>([^<]+)</strong>\. ([^<]+)<br>', page)
    assert said is not None, page[page.index("Diagnosis") :][:800]
    assert said.group(1) == "Benign essential blepharospasm"
    assert said.group(2).startswith("Both eyes close together")
    form = {"csrf_token": csrf, "to": "neurosurgery", "question": "please advise"}
    letter = client.post("/patients/bl-1/referral.pdf", data=form)
    assert letter.status_code == 200
    assert "Differential to consider: Benign essential blepharospasm. Both eyes close together" in _pdf_text(
        letter.content
    )


def test_a_toxic_herb_shows_its_reference_dose_where_its_dose_is_typed(client: TestClient, clinic: Engine) -> None:
    kb = load_default()
    wind = {
        "tongue": {"body": "pale", "coating": "thin_white"},
        "pulse": ["floating", "thin"],
        "findings": ["worse_with_wind_cold", "acute_onset", "aversion_to_cold", "blurred_vision", "dizziness"],
    }
    formula = _assessed(clinic, "qz-1", plan=True, tcm=wind)
    assert formula["formula"] == "qian_zheng_san"
    toxic = [h["latin"] for h in formula["ingredients"] if h["toxic"]]
    assert "Scorpio" in toxic
    sign_in(client, "tcm")
    page = html.unescape(client.get("/patients/qz-1").text)
    prescription = page[page.index('action="/patients/qz-1/sessions/herbal"') :]
    prescription = prescription[: prescription.index("</form>")]
    for latin in toxic:
        row = prescription[prescription.index(f"<td>{latin} (") :]
        row = row[: row.index("</tr>")]
        herb = kb.herbs[latin]
        assert '<span class="badge critical">toxic</span>' in row and "; ".join(herb.cautions) in row
        assert herb.dose_note is None or f"reference dose: {herb.dose_note}." in row
    untouched = prescription[prescription.index("<td>Bombyx Batryticatus (") :]
    assert "toxic" not in untouched[: untouched.index("</tr>")]
    # The plan's formula table says the reference dose too.
    assert f"reference dose: {kb.herbs['Scorpio'].dose_note}." in page

    # The same formula as a powder: the decoction doses the form starts with are refused beside their boxes, with the
    # powder still chosen; with a reason it is kept, and the history says it is a powder.
    assert '<option value="decoction" selected>a decoction (boiled)</option>' in prescription
    doses = dict(re.findall(r'name="(dose\.[^"]+)" value="([^"]*)"', prescription))
    form = {"csrf_token": sign_in(client, "tcm"), "formula": "qian_zheng_san", "duration_days": "7", **doses}
    refused = client.post("/patients/qz-1/sessions/herbal", data=form | {"preparation": "powder"})
    assert refused.status_code == 422
    said = _problems_of(refused.text, "herbal")
    assert (
        f"Dose of Scorpio</strong>: {doses['dose.Scorpio']} g a day of Scorpio (Quan Xie) as a powder is above" in said
    )
    assert "Rhizoma Typhonii (Bai Fu Zi) is toxic and the knowledge base gives no powder dose" in said
    assert re.search(r'name="dose\.Scorpio" value="[^"]*" aria-label="[^"]*" aria-invalid=true', refused.text)
    assert '<option value="powder" selected>' in refused.text
    odd = client.post("/patients/qz-1/sessions/herbal", data=form | {"preparation": "tea"})
    assert odd.status_code == 422
    assert "<strong>Taken as</strong>: Input should be 'decoction' or 'powder'" in html.unescape(odd.text)
    reason = {"preparation": "powder", "override_reason": "doses set for the powder by the pharmacist, checked"}
    assert client.post("/patients/qz-1/sessions/herbal", data=form | reason).status_code == 303
    assert "as a powder (grams a day), 7 days" in html.unescape(client.get("/patients/qz-1").text)

    # Boiled from today while the powder runs: the two cannot be added up, so the toxic herbs need a reason, or the
    # powder stopped today from its history row.
    refused = client.post("/patients/qz-1/sessions/herbal", data=form)
    assert refused.status_code == 422
    said = html.unescape(_problems_of(refused.text, "herbal"))
    today = dt.date.today().isoformat()
    assert (
        f"Dose of Scorpio</strong>: Scorpio (Quan Xie) is toxic and the prescription of {today} (until "
        f"{(dt.date.today() + dt.timedelta(days=6)).isoformat()}) gives it as a powder on some of the same days"
    ) in said
    assert "stop the other prescription on the day this one starts" in said
    action = re.search(r'action="(/patients/qz-1/sessions/\d+/outcome)"', _history_rows(refused.text))
    assert action is not None
    stopped = client.post(action.group(1), data={"csrf_token": form["csrf_token"], "stopped": today})
    assert stopped.status_code == 303
    assert client.post("/patients/qz-1/sessions/herbal", data=form).status_code == 303


def test_a_toxic_herb_without_a_reference_dose_is_held_to_the_formulas_on_the_form(
    client: TestClient, clinic: Engine
) -> None:
    """Ban Xia has no reference dose of its own: the form says the formula's dose holds it, and a dose above that is
    refused beside its box (the 35 g of a web recipe the TCM reference warns of)."""
    kb = load_default()
    phlegm = {
        "tongue": {"coating": "white_greasy"},
        "pulse": ["wiry", "slippery"],
        "findings": ["heavy_head", "chest_oppression", "obesity"],
    }
    formula = _assessed(clinic, "bx-1", plan=True, tcm=phlegm)
    assert formula["formula"] == "ban_xia_bai_zhu_tian_ma_tang"
    assert kb.herbs["Rhizoma Pinelliae Praeparatum"].dose_note is None
    csrf = sign_in(client, "tcm")
    page = html.unescape(client.get("/patients/bx-1").text)
    prescription = page[page.index('action="/patients/bx-1/sessions/herbal"') :]
    row = prescription[prescription.index("<td>Rhizoma Pinelliae Praeparatum (") :]
    assert "no reference dose of its own: held to this formula's 4.5-9 g a day." in row[: row.index("</tr>")]
    doses = dict(re.findall(r'name="(dose\.[^"]+)" value="([^"]*)"', prescription[: prescription.index("</form>")]))
    form = {"csrf_token": csrf, "formula": "ban_xia_bai_zhu_tian_ma_tang", "duration_days": "7", **doses}
    refused = client.post("/patients/bx-1/sessions/herbal", data=form | {"dose.Rhizoma Pinelliae Praeparatum": "35"})
    assert refused.status_code == 422
    said = html.unescape(_problems_of(refused.text, "herbal"))
    assert (
        "35 g of Rhizoma Pinelliae Praeparatum (Ban Xia) is above its dose in Ban Xia Bai Zhu Tian Ma Tang, 4.5-9 g"
    ) in said
    assert _herbal_sessions(client, "bx-1") == []
    assert client.post("/patients/bx-1/sessions/herbal", data=form).status_code == 303
    assert [
        h["dose_g"] for h in _herbal_sessions(client, "bx-1")[0]["herbs"] if h["latin"].startswith("Rhizoma P")
    ] == [4.5]


def test_an_added_herb_a_caution_names_for_the_patient_is_refused_beside_its_row(
    client: TestClient, clinic: Engine
) -> None:
    """Hong Hua added for a patient on warfarin: the caution is said beside the row it was typed in, with the reason
    box the way to record it all the same."""
    _assessed(clinic, "wf-1", plan=False, medications=["warfarin"])
    csrf = sign_in(client, "tcm")
    # Before anything is typed, the form says what will need a reason for this patient.
    assert _held_notice(client.get("/patients/wf-1").text, "herbal-held") == [
        "Dang Gui, Dan Shen: taken out of this patient's plans (Herbs that potentiate warfarin)",
        "Zhi Gan Cao, Gan Cao, Chuan Xiong, Hong Hua, Tao Ren: cautioned for this patient (Other herbs reviewed with "
        "warfarin)",
    ]
    # Pregnant as well: a herb two rules name is listed under each.
    _assessed(clinic, "wf-2", plan=False, medications=["warfarin"], pregnant=True)
    assert _held_notice(client.get("/patients/wf-2").text, "herbal-held")[2:] == [
        "Chuan Niu Xi, Huai Niu Xi, Chuan Xiong, Hong Hua, Tao Ren, Zhi Shi, Zhi Ke: cautioned for this patient "
        "(Blood-moving herbs in pregnancy)",
        "Zhi Gan Cao, Gan Cao, Chuan Xiong, Hong Hua, Tao Ren: cautioned for this patient (Other herbs reviewed with "
        "warfarin)",
    ]
    form = {
        "csrf_token": csrf,
        "added.0.latin": "Tian Ma",
        "added.0.dose": "9",
        "added.1.latin": "Hong Hua",
        "added.1.dose": "6",
        "duration_days": "14",
    }
    refused = client.post("/patients/wf-1/sessions/herbal", data=form)
    assert refused.status_code == 422
    said = html.unescape(_problems_of(refused.text, "herbal"))
    assert "Herb 2 (Hong Hua)</strong>: Flos Carthami is cautioned for this patient: Other herbs reviewed with " in said
    assert "Leave it out, or give the reason below to record it anyway" in said
    assert re.search(r'name="added\.1\.latin"[^>]*aria-invalid=true', refused.text)
    assert _herbal_sessions(client, "wf-1") == []
    reason = {"override_reason": "INR checked weekly by the anticoagulation clinic"}
    assert client.post("/patients/wf-1/sessions/herbal", data=form | reason).status_code == 303
    assert [h["latin"] for h in _herbal_sessions(client, "wf-1")[0]["herbs"]] == ["Rhizoma Gastrodiae", "Flos Carthami"]


def test_the_prescription_form_says_what_needs_a_reason_only_where_something_does(
    client: TestClient, clinic: Engine
) -> None:
    """No notice for a patient nothing holds (demo-001 as it is); one saying every herb is unchecked for a patient
    with no assessment; none on a neurologist's page, which has no prescription form."""
    sign_in(client, "tcm")
    assert 'id="herbal-held"' not in client.get("/patients/demo-001").text
    with session_factory(clinic)() as s, s.begin():
        from hemicare.patients.schemas import PatientCreate

        patient_service.create(s, data=PatientCreate(code="na-1", name="N A", sex="female"), actor="t")
    page = html.unescape(client.get("/patients/na-1").text)
    assert "<li>any herb: no assessment this version can read is recorded, so herbs are unchecked" in page
    _assessed(clinic, "cb-1", plan=False, medications=["carbamazepine"], age=70)
    assert _held_notice(client.get("/patients/cb-1").text, "herbal-held") == [
        "any herb: cautioned for this patient (Herbs with carbamazepine)",
        "licorice at 6 g a day or more: cautioned for this patient (Licorice-heavy formula with hypokalaemia risk)",
    ]
    sign_in(client, "neuro")
    assert 'id="herbal-held"' not in client.get("/patients/cb-1").text


def _held_notice(page: str, notice: str) -> list[str]:
    """The items of a form's notice of what this patient's safety rules hold, as the page shows them."""
    page = html.unescape(page)
    held = page[page.index(f'id="{notice}"') :]
    return re.findall(r"<li>(.*?)</li>", held[: held.index("</div>")])


def test_the_acupuncture_form_says_which_points_need_a_reason_and_how_to_needle(
    client: TestClient, clinic: Engine
) -> None:
    """A patient on warfarin: Taiyang is taken out (a session giving it needs a reason, as the recording checks) and
    needling is cautioned (fine, superficial needles), before any point is ticked. A pregnant patient: the forbidden
    points in the rule's order, marked as tradition. Nothing for demo-001 as it is, every point unchecked without an
    assessment, and no notice on a neurologist's page, which has no acupuncture form."""
    _assessed(clinic, "wn-1", plan=False, medications=["warfarin"])
    csrf = sign_in(client, "tcm")
    assert _held_notice(client.get("/patients/wn-1").text, "acupuncture-held") == [
        "EX-HN5 Taiyang: taken out of this patient's plans (Bleeding-prone facial points with anticoagulation or a "
        "bleeding disorder); a session giving it needs a reason",
        "Needling on warfarin, a caution: Bleeding after acupuncture is more likely (adjusted OR 4.95 in "
        "13.4 million sessions). Fine (0.20 mm), superficial needles only, at appropriate locations and depth; check "
        "the INR.",
    ]
    # What the notice says needs a reason does, and what it calls a caution does not.
    session = {"csrf_token": csrf, "date": dt.date.today().isoformat(), "points": ["LI4", "EX-HN5"]}
    refused = client.post("/patients/wn-1/sessions/acupuncture", data=session)
    assert refused.status_code == 422
    assert "EX-HN5 is taken out of this patient's plans" in html.unescape(_problems_of(refused.text, "acupuncture"))
    assert client.post("/patients/wn-1/sessions/acupuncture", data=session | {"points": ["LI4"]}).status_code == 303

    _assessed(clinic, "pg-1", plan=False, pregnant=True)
    assert _held_notice(client.get("/patients/pg-1").text, "acupuncture-held") == [
        "LI4 Hegu, SP6 Sanyinjiao, BL60 Kunlun, BL67 Zhiyin, GB21 Jianjing, CV4 Guanyuan, CV6 Qihai: taken out of "
        "this patient's plans (Traditionally forbidden acupoints in pregnancy (tradition-based)); a session giving "
        "them needs a reason"
    ]
    assert 'id="acupuncture-held"' not in client.get("/patients/demo-001").text
    with session_factory(clinic)() as s, s.begin():
        from hemicare.patients.schemas import PatientCreate

        patient_service.create(s, data=PatientCreate(code="nn-1", name="N N", sex="female"), actor="t")
    assert _held_notice(client.get("/patients/nn-1").text, "acupuncture-held") == [
        "any point: no assessment this version can read is recorded, so points are unchecked against the safety "
        "rules; a session needs a reason"
    ]
    sign_in(client, "neuro")
    assert 'id="acupuncture-held"' not in client.get("/patients/wn-1").text


def test_the_conventional_forms_say_what_the_safety_rules_hold_back_and_caution_for_the_patient(
    client: TestClient, clinic: Engine
) -> None:
    """A patient with a bleeding disorder and a pacemaker: the procedure form says both rules deferring
    radiofrequency ablation before it is chosen, and what it says needs a reason does, though no plan is made yet.
    HLA-B*15:02 positive and pregnant: carbamazepine contraindicated on the medicine form, the toxin deferred on the
    toxin form, oxcarbazepine cautioned. Gentamicin and clonazepam taken: the toxin and the sedating medicines
    cautioned. demo-001 (Han Chinese, untested): carbamazepine deferred. Unchecked without an assessment; no notice
    on a TCM practitioner's page, which has none of these forms."""
    _assessed(clinic, "rf-2", plan=False, comorbidities=["bleeding_disorder", "pacemaker"], hla_b1502="negative")
    csrf = sign_in(client, "neuro")
    page = client.get("/patients/rf-2").text
    assert _held_notice(page, "procedure-held") == [
        "Percutaneous radiofrequency ablation at the stylomastoid foramen, deferred: Radiofrequency ablation with a "
        "coagulopathy or anticoagulation; Radiofrequency ablation with a pacemaker or ICD"
    ]
    assert 'id="medicine-held"' not in page and 'id="toxin-held"' not in page  # nothing holds those for her
    typed = {"csrf_token": csrf, "procedure": "rf_ablation", "side": "left", "date": dt.date.today().isoformat()}
    refused = client.post("/patients/rf-2/sessions/procedure", data=typed)
    assert refused.status_code == 422
    problems = html.unescape(_problems_of(refused.text, "procedure"))
    assert "Radiofrequency ablation with a coagulopathy or anticoagulation" in problems
    assert "Radiofrequency ablation with a pacemaker or ICD" in problems
    block = client.post("/patients/rf-2/sessions/procedure", data=typed | {"procedure": "nerve_block"})
    assert block.status_code == 303  # not named, not held
    recorded = client.post(
        "/patients/rf-2/sessions/procedure", data=typed | {"override_reason": "INR normal; cardiology agrees"}
    )
    assert recorded.status_code == 303

    _assessed(clinic, "hp-1", plan=False, hla_b1502="positive", pregnant=True)
    page = client.get("/patients/hp-1").text
    assert _held_notice(page, "medicine-held") == [
        "Carbamazepine, contraindicated: Carbamazepine with HLA-B*15:02",
        "Oxcarbazepine, a caution: Oxcarbazepine with HLA-B*15:02. The CPIC guideline covers "
        "HLA genotype for oxcarbazepine as well as carbamazepine; consult it before prescribing.",
    ]
    assert _held_notice(page, "toxin-held") == ["Botulinum toxin injections, deferred: Botulinum toxin in pregnancy"]
    # Cautions are said too, a rule once with every item it names: gentamicin before an injection, clonazepam taken.
    _assessed(clinic, "gm-1", plan=False, medications=["gentamicin", "clonazepam"], hla_b1502="negative")
    page = client.get("/patients/gm-1").text
    rules = load_default().safety
    assert _held_notice(page, "toxin-held") == [
        "Botulinum toxin injections, a caution: Drugs that potentiate botulinum toxin. "
        + rules["potentiating_drugs_toxin"].message
    ]
    assert _held_notice(page, "medicine-held") == [
        f"Baclofen, Clonazepam, Gabapentin, a caution: Additive sedation. {rules['sedative_combination'].message}"
    ]
    assert _held_notice(client.get("/patients/demo-001").text, "medicine-held") == [
        "Carbamazepine, deferred: Carbamazepine without an HLA-B*15:02 test in at-risk ancestry"
    ]
    with session_factory(clinic)() as s, s.begin():
        from hemicare.patients.schemas import PatientCreate

        patient_service.create(s, data=PatientCreate(code="nc-1", name="N C", sex="male"), actor="t")
    page = client.get("/patients/nc-1").text
    assert _held_notice(page, "procedure-held") == [
        "any procedure: no assessment this version can read is recorded, so procedures are unchecked against the "
        "safety rules"
    ]
    assert _held_notice(page, "medicine-held")[0].startswith("any medicine: no assessment")
    assert _held_notice(page, "toxin-held")[0].startswith("any toxin session: no assessment")
    client.cookies.clear()
    sign_in(client, "tcm")
    page = client.get("/patients/rf-2").text
    assert not any(f'id="{notice}"' in page for notice in ("procedure-held", "medicine-held", "toxin-held"))


def _herbal_sessions(client: TestClient, code: str) -> list[dict[str, Any]]:
    recorded = client.get(f"/api/v1/patients/{code}/sessions").json()
    return [s["details"] for s in recorded if s["details"]["kind"] == "herbal"]


def test_a_prescription_adds_herbs_to_the_plans_formula(client: TestClient) -> None:
    """A practitioner modifies the plan's formula for the secondary pattern: a herb chosen in a row below the
    formula's is prescribed with it; a formula with all its own doses cleared is not named."""
    csrf = sign_in(client, "tcm")
    form = html.unescape(client.get("/patients/demo-001").text)
    form = form[form.index('id="herbal-form"') : form.index("</form>", form.index('id="herbal-form"'))]
    assert "Prescribe Tian Ma Gou Teng Yin" in form and "Herbs added to the formula, if any" in form
    assert re.findall(r'name="added\.(\d+)\.latin"', form) == ["0", "1", "2"]
    assert '<option value="Scorpio">Quan Xie, toxic</option>' in form  # the browser's list, by Latin and pinyin
    assert 'aria-label="Added herb 1: dose in grams"' in form
    doses = dict(re.findall(r'name="(dose\.[^"]+)" value="([^"]*)"', form))
    base = {"csrf_token": csrf, "formula": "tian_ma_gou_teng_yin", "duration_days": "14"}
    added = {"added.0.latin": "Chai Hu", "added.0.dose": "6", "added.2.latin": "Radix Paeoniae Alba"}
    refused = client.post("/patients/demo-001/sessions/herbal", data=base | doses | added)
    assert refused.status_code == 422
    said = _problems_of(refused.text, "herbal")
    assert "Added herb 3 (Radix Paeoniae Alba)</strong>: give its dose in grams a day, or clear the row" in said
    assert "Added herb 1" not in said
    assert re.search(r'name="added\.2\.dose" value="" aria-label="[^"]*" aria-invalid=true', refused.text)
    assert re.search(r'name="added\.0\.latin" [^>]*value="Chai Hu"', refused.text)  # kept as typed
    assert _herbal_sessions(client, "demo-001") == []
    kept = client.post("/patients/demo-001/sessions/herbal", data=base | doses | added | {"added.2.dose": "9"})
    assert kept.status_code == 303
    [prescription] = _herbal_sessions(client, "demo-001")
    assert prescription["formula"] == "tian_ma_gou_teng_yin"
    given = {herb["latin"]: herb["dose_g"] for herb in prescription["herbs"]}
    assert given == {key.removeprefix("dose."): float(dose) for key, dose in doses.items()} | {
        "Radix Bupleuri": 6.0,
        "Radix Paeoniae Alba": 9.0,
    }
    assert "Tian Ma Gou Teng Yin: Rhizoma Gastrodiae 9 g" in html.unescape(client.get("/patients/demo-001").text)

    # Every dose of the formula cleared: what is left is not that formula.
    cleared = {key: "" for key in doses} | {"added.0.latin": "Radix Bupleuri", "added.0.dose": "6"}
    assert client.post("/patients/demo-001/sessions/herbal", data=base | cleared).status_code == 303
    latest = _herbal_sessions(client, "demo-001")[-1]
    assert latest["formula"] is None and latest["herbs"] == [{"latin": "Radix Bupleuri", "dose_g": 6.0}]
    # A herb given twice (in the formula and again in a row) is refused beside the row.
    twice = base | doses | {"added.1.latin": "Rhizoma Gastrodiae", "added.1.dose": "3"}
    refused = client.post("/patients/demo-001/sessions/herbal", data=twice)
    assert refused.status_code == 422
    assert "Added herb 2 (Rhizoma Gastrodiae)</strong>: Rhizoma Gastrodiae (Tian Ma) is given twice" in html.unescape(
        refused.text
    )
    assert len(_herbal_sessions(client, "demo-001")) == 2


def test_a_herbal_prescription_taken_is_read_by_the_next_version_until_it_is_stopped(client: TestClient) -> None:
    """Tian Ma and Gou Teng of the plan's formula with Chai Hu added: the page says the plan does not know it; the
    version made from the records says the two are taken already and Chai Hu is unchecked. The practitioner marks it
    stopped from its history row (a neurologist cannot), and the next version says neither."""
    csrf = sign_in(client, "tcm")
    herbs = {"dose.Rhizoma Gastrodiae": "9", "dose.Ramulus Uncariae cum Uncis": "12"}
    added = {"added.0.latin": "Chai Hu", "added.0.dose": "6"}
    form = {"csrf_token": csrf, "formula": "tian_ma_gou_teng_yin", "duration_days": "14", **herbs, **added}
    assert client.post("/patients/demo-001/sessions/herbal", data=form).status_code == 303
    page = client.get("/patients/demo-001").text
    today = dt.date.today().isoformat()
    assert (_recorded_since(page) or "").startswith(
        f"Recorded since this plan was made: herbal prescription of {today}"
    )
    last = (dt.date.today() + dt.timedelta(days=13)).isoformat()
    running = re.search(r'<div class="alert info" id="herbal-running">(.*?)</div>', page, re.S)
    assert running is not None and _visible_text(running.group(1)).startswith(
        f"Still taken: the prescription of {today} (until {last}). If this one replaces it, mark it stopped"
    )

    def taking() -> str | None:  # what the patient reads on their own page
        client.cookies.clear()
        sign_in(client, "patient1")
        found = re.search(r'<div id="taking">(.*?)</div>', client.get("/me").text, re.S)
        client.cookies.clear()
        sign_in(client, "tcm")
        return _visible_text(found.group(1)) if found else None

    assert taking() == (
        f"What you take now, as prescribed by your care team: Herbal medicine, Tian Ma Gou Teng Yin, 3 herbs (since "
        f"{today}, until {last})"
    )

    def new_version() -> str:
        hidden = _hidden_fields(client, "/patients/demo-001", "/patients/demo-001/plans")
        assert client.post("/patients/demo-001/plans", data=hidden).status_code == 303
        page = client.get("/patients/demo-001").text
        return html.unescape(page[page.index('id="alerts"') : page.index('<div class="rec"')])

    alerts = new_version()
    assert "The patient already takes Rhizoma Gastrodiae (Tian Ma), Ramulus Uncariae cum Uncis (Gou Teng)" in alerts
    assert "Radix Bupleuri (Chai Hu) is recognised, but no safety rule covers it" in alerts
    assert "Rhizoma Gastrodiae (Tian Ma) is recognised" not in alerts
    row = re.search(r'action="(/patients/demo-001/sessions/\d+/outcome)"((?!</form>).)*name="stopped"', page, re.S)
    assert row is not None
    action = row.group(1)
    client.cookies.clear()
    neuro = sign_in(client, "neuro")
    assert action not in client.get("/patients/demo-001").text
    assert client.post(action, data={"csrf_token": neuro, "stopped": today}).status_code == 403
    client.cookies.clear()
    csrf = sign_in(client, "tcm")
    early = client.post(action, data={"csrf_token": csrf, "stopped": "2001-01-01"})
    assert (
        early.status_code == 422 and "<strong>Day stopped</strong>: 2001-01-01 is before the prescription" in early.text
    )
    box = early.text.split(f'action="{action}"')[1].split('name="stopped"')[1].split(">")[0]
    assert 'value="2001-01-01"' in box and "aria-invalid=true" in box, box
    assert client.post(action, data={"csrf_token": csrf, "stopped": today}).status_code == 303
    history = html.unescape(_history_rows(client.get("/patients/demo-001").text))
    assert f"stopped {today}" in history and action not in history
    assert 'id="herbal-running"' not in client.get("/patients/demo-001").text
    assert taking() is None
    alerts = new_version()
    assert "already takes" not in alerts and "Chai Hu" not in alerts


def test_a_prescription_is_recorded_where_the_plan_holds_the_formula_back(client: TestClient) -> None:
    """The practitioner defers demo-002's formula at sign-off: the form is still there, without the formula, warns
    that a reason will be needed and has rows for the whole prescription; every problem shows at once and nothing is
    saved until all are answered."""
    csrf = sign_in(client, "tcm")
    signed = {"csrf_token": csrf, "version": "1", "status.herbal_formula": "deferred", "reason.herbal_formula": "MRI"}
    assert client.post("/patients/demo-002/sign", data=signed).status_code == 303
    page = html.unescape(client.get("/patients/demo-002").text)
    form = page[page.index('id="herbal-form"') : page.index("</form>", page.index('id="herbal-form"'))]
    assert "Record a herbal prescription" in form and 'name="formula"' not in form and 'name="dose.' not in form
    assert re.search(
        r"Plan version \d+ has the herbal formula <strong>deferred</strong>: a prescription given now is recorded "
        "only with a reason below.",
        form,
    )
    assert len(re.findall(r'name="added\.\d+\.latin"', form)) == 12 and 'aria-label="Herb 1"' in form
    typed = {
        "csrf_token": csrf,
        "duration_days": "7",
        "added.0.latin": "Scorpio",
        "added.0.dose": "20",
        "added.1.dose": "5",
        "added.3.latin": "Mandragora",
        "added.3.dose": "1",
    }
    refused = client.post("/patients/demo-002/sessions/herbal", data=typed)
    assert refused.status_code == 422
    said = _problems_of(refused.text, "herbal")
    assert "Herb 2</strong>: choose the herb this dose is for, or clear the row" in said
    assert "Herb 4 (Mandragora)</strong>: unknown herb 'Mandragora'" in said
    assert "Herb 1 (Scorpio): dose</strong>: 20 g of Scorpio (Quan Xie) is above its reference daily decoction" in said
    assert re.search(r"plan version \d+ has Chinese herbal formula deferred", said)
    assert re.search(r'name="added\.1\.latin" [^>]*aria-label="Herb 2" aria-invalid=true', refused.text)
    assert re.search(r'name="added\.0\.dose" value="20" aria-label="[^"]*" aria-invalid=true', refused.text)
    assert _herbal_sessions(client, "demo-002") == []
    # The half row cleared, the unknown herb gone, the dose within the reference: the plan still needs its reason.
    fixed = typed | {"added.0.dose": "3", "added.1.dose": "", "added.3.latin": "", "added.3.dose": ""}
    refused = client.post("/patients/demo-002/sessions/herbal", data=fixed)
    assert refused.status_code == 422
    assert _problems_of(refused.text, "herbal").count("</strong>") == 1
    reason = {"override_reason": "prescribed by the patient's own practitioner; reviewed with neurology"}
    assert client.post("/patients/demo-002/sessions/herbal", data=fixed | reason).status_code == 303
    [prescription] = _herbal_sessions(client, "demo-002")
    assert prescription["formula"] is None and prescription["herbs"] == [{"latin": "Scorpio", "dose_g": 3.0}]
    # Nothing chosen at all.
    empty = client.post("/patients/demo-002/sessions/herbal", data={"csrf_token": csrf, "duration_days": "7"})
    assert empty.status_code == 422 and "<strong>Herbs</strong>: needs at least 1 entry" in empty.text


def test_an_alert_names_what_it_affects_once(client: TestClient, clinic: Engine) -> None:
    from hemicare.assessments import service as assessments
    from hemicare.patients.schemas import PatientCreate

    with session_factory(clinic)() as s, s.begin():
        patient = patient_service.create(s, data=PatientCreate(code="rf-2", name="R F", sex="male"), actor="t")
        data = read_file(EXAMPLES / "demo-002-red-flags.yaml") | {"id": "rf-2"}
        assessments.record(s, patient=patient, assessment=validate_assessment(data), actor="t", today=dt.date.today())
        plan_service.generate(s, patient=patient, kb=load_default(), actor="t", today=dt.date.today())
    sign_in(client, "neuro")
    names = load_default().treatment_names()
    flagged = client.get("/patients/rf-2").text
    alerts = flagged[flagged.index('id="alerts"') :]
    alerts = alerts[: alerts.index('<div class="rec"')]
    # The treatments held back by the red flags, by name, not by id.
    assert f"(affects: {names['mvd']}, {names['botulinum_toxin']}," in html.unescape(alerts)
    assert "(mvd," not in alerts
    # A herb or medicine the message already names is not repeated after it.
    plain = client.get("/patients/demo-001").text
    plain = plain[plain.index('id="alerts"') : plain.index('<div class="rec"')]
    assert "Amlodipine is recognised" in plain and "drug:amlodipine" not in plain
    assert "No interaction rule covers these herbs" in plain and "herb:" not in plain


@pytest.mark.parametrize(
    ("alert", "title"),
    [
        ("carbamazepine_hla_positive", "Carbamazepine with HLA-B*15:02"),
        ("secondary_hfs_suspected", "Red flags for secondary HFS"),
        ("unchecked:herb:Radix Rehmanniae Praeparata", "Not checked: Radix Rehmanniae Praeparata"),
        ("unchecked:herb_drug_interactions", "Not checked: herb drug interactions"),
        ("formula_conflict:tian_ma_gou_teng_yin:p7", "The formula conflicts with the secondary TCM pattern"),
        ("herbs_already_taken", "Herbs of the formula already taken"),
    ],
)
def test_every_kind_of_alert_has_a_title_for_lists(alert: str, title: str) -> None:
    from hemicare.engine.planner import alert_title

    assert alert_title(alert, load_default()) == title


def _listed(client: TestClient, query: str) -> list[str]:
    response = client.get(f"/patients?{query}")
    assert response.status_code == 200, response.text
    return re.findall(r'<td><a href="/patients/([^"]+)">', response.text)


def test_patient_list_searches_filters_and_pages(client: TestClient, clinic: Engine) -> None:
    from hemicare.assessments import service as assessments
    from hemicare.patients.schemas import PatientCreate

    kb = load_default()
    with session_factory(clinic)() as s, s.begin():
        flagged = patient_service.create(s, data=PatientCreate(code="rf-001", name="Ravi Flag", sex="male"), actor="t")
        data = read_file(EXAMPLES / "demo-002-red-flags.yaml") | {"id": "rf-001"}
        assessments.record(s, patient=flagged, assessment=validate_assessment(data), actor="t", today=dt.date.today())
        plan = plan_service.generate(s, patient=flagged, kb=kb, actor="t", today=dt.date.today())
        assert any(alert["severity"] == "critical" for alert in plan.content["alerts"])
        for signer, role in (("neuro", "neurologist"), ("tcm", "tcm_practitioner")):
            number = plan_service.latest(s, patient=flagged).number  # type: ignore[union-attr]
            plan_service.sign(
                s, patient=flagged, expected_number=number, edits=[], signer=signer, role=role, kb=load_default()
            )
        for index in range(120):
            patient_service.create(s, data=PatientCreate(code=f"zz-{index:03d}", name="Zed", sex="male"), actor="t")
    csrf = sign_in(client, "neuro")
    site = {"site": "upper_lid_medial", "side": "left", "units": 2.5}
    details = {"kind": "toxin", "product": "onabotulinumtoxinA", "lot": "L1", "sites": [site]}
    toxin = {"date": (dt.date.today() - dt.timedelta(weeks=14)).isoformat(), "clinician": "N", "details": details}
    assert client.post("/api/v1/patients/demo-002/sessions", json=toxin, headers={"x-csrf-token": csrf}).is_success

    assert _listed(client, "q=mei") == ["demo-001"]  # by name, any case
    assert _listed(client, "q=demo") == ["demo-001", "demo-002"]
    assert _listed(client, "show=due") == ["demo-002"]
    assert _listed(client, "show=critical") == ["rf-001"]
    assert _listed(client, "q=demo&show=unsigned") == ["demo-001", "demo-002"] and "rf-001" not in _listed(
        client, "show=unsigned"
    )
    assert _listed(client, "q=nobody") == [] and "No patients match this search." in client.get("/patients?q=x").text
    # Fifty to a page, in code order; the count and the links keep the search.
    first = client.get("/patients?q=zz").text
    assert _listed(client, "q=zz") == [f"zz-{index:03d}" for index in range(50)]
    assert "1–50 of 120 patients" in first and 'href="/patients?q=zz&amp;show=all&amp;page=2" rel="next"' in first
    assert _listed(client, "q=zz&page=3") == [f"zz-{index:03d}" for index in range(100, 120)]
    assert _listed(client, "q=zz&page=9") == _listed(client, "q=zz&page=3")  # past the end: the last page
    for query, said in (
        ("page=0", "<strong>page</strong>: &#39;0&#39; is not a page number"),
        ("page=two", "<strong>page</strong>: &#39;two&#39; is not a page number"),
        ("page=%C2%B2", "<strong>page</strong>: &#39;²&#39; is not a page number"),  # a digit to isdigit(), not int()
        ("page=" + "9" * 5000, "<strong>page</strong>: &#39;" + "9" * 39 + "... (5,000 characters) is not a page"),
        ("show=everyone", "<strong>show</strong>: &#39;everyone&#39; is not one of all, due, unsigned, critical"),
        ("q=" + "x" * 101, "<strong>q</strong>: a search of at most 100 characters"),
    ):
        refused = client.get(f"/patients?{query}")
        assert refused.status_code == 422 and said in refused.text, refused.text


@pytest.mark.parametrize(
    ("address", "field"),
    [
        ("/patients?page=" + "9" * 5000, "page"),
        ("/patients?show=" + "x" * 5000, "show"),
        ("/due?days=" + "9" * 5000, "days"),
        ("/due?recall=" + "x" * 5000, "recall"),
        ("/patients/demo-001/plan.pdf?kind=" + "x" * 5000, "kind"),
        ("/patients/demo-001/plan.pdf?kind=referral&to=" + "x" * 5000, "to"),
    ],
)
def test_a_garbled_value_is_quoted_by_its_start_and_length(client: TestClient, address: str, field: str) -> None:
    """5,000 characters where a word belongs are said as their start and their length, not echoed whole."""
    sign_in(client, "neuro")
    refused = client.get(address)
    assert refused.status_code == 422 and f"<strong>{field}</strong>: &#39;" in refused.text
    assert "... (5,000 characters)" in refused.text and "x" * 100 not in refused.text and "9" * 100 not in refused.text


def test_quoted_keeps_a_short_value_whole() -> None:
    assert quoted("laser") == "'laser'" and quoted(None) == "None"
    assert quoted("x" * 58) == "'" + "x" * 58 + "'"  # 60 with its quotes
    assert quoted("x" * 59) == "'" + "x" * 39 + "... (59 characters)"


def test_patient_list_shows_who_signed_the_latest_plan(client: TestClient) -> None:
    headers = {"authorization": f"Bearer {_token_for(client)}"}  # a neurosurgeon's token
    signed = client.post("/api/v1/patients/demo-001/plan/sign", json={"version": 1, "edits": []}, headers=headers)
    assert signed.status_code == 200, signed.text
    sign_in(client, "neuro")
    page = client.get("/patients").text
    row = page[page.index("/patients/demo-001") : page.index("/patients/demo-002")]
    # The surgeon signed the conventional part; the integrative part still waits for a TCM practitioner.
    assert f"v{signed.json()['number']}<" in row and "conventional: signed by surgeon" in row
    assert 'integrative: <span class="awaiting">awaiting sign-off' in row
    other = page[page.index("/patients/demo-002") :]
    assert 'conventional: <span class="awaiting">awaiting sign-off' in other


def test_a_serving_app_keeps_its_start_up_objects_out_of_full_collections(clinic: Engine, db_url: str) -> None:
    """A server process freezes what it made at start-up, so a full collection does not pause every request in
    flight to scan the knowledge base again; a plain app (tests, embedding) leaves the collector alone."""
    import gc

    from hemicare.web.app import serving_app

    gc.unfreeze()
    try:
        plain = create_app(database_url=db_url)
        assert gc.get_freeze_count() == 0
        assert any(o is plain.state.kb.treatments for o in gc.get_objects(generation=2))
        served = serving_app(database_url=db_url)
        assert gc.get_freeze_count() > 100_000
        scanned = {id(o) for o in gc.get_objects()}
        assert id(served.state.kb.treatments) not in scanned
        assert id(served.router) not in scanned
        with TestClient(served, base_url="https://testserver") as test_client:
            assert test_client.get("/api/v1/health").status_code == 200
    finally:
        gc.unfreeze()


class _PageAudit(HTMLParser):
    """What a screen reader or keyboard user needs of a page, read from its HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.lang: str | None = None
        self.ids: set[str] = set()
        self.labelled: set[str] = set()  # ids named by a <label for>
        self.controls: list[tuple[str, dict[str, str | None], bool]] = []
        self.headings: list[int] = []
        self.open_labels = 0
        self.referred: set[str] = set()  # ids named by aria-describedby or aria-labelledby

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        names = [name for name, _ in attrs]
        for twice in sorted({name for name in names if names.count(name) > 1}):  # the browser keeps the first only
            self.problems.append(f"<{tag}> has {twice} twice")
        for refers in ("aria-describedby", "aria-labelledby"):
            self.referred.update((attr.get(refers) or "").split())
        ident = attr.get("id")
        if ident:
            if ident in self.ids:
                self.problems.append(f"id {ident!r} used twice")
            self.ids.add(ident)
        if tag == "html":
            self.lang = attr.get("lang")
        elif tag == "label":
            self.open_labels += 1
            if attr.get("for"):
                self.labelled.add(str(attr["for"]))
        elif tag in ("input", "select", "textarea") and attr.get("type") not in ("hidden", "submit", "button"):
            self.controls.append((tag, attr, self.open_labels > 0))
        elif re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        elif tag == "img" and "alt" not in attr:
            self.problems.append(f"image {attr.get('src')!r} without alt text")
        elif tag == "svg" and not (attr.get("role") or attr.get("aria-label") or attr.get("aria-hidden")):
            self.problems.append("drawing (svg) with neither a role nor a label")

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.open_labels = max(0, self.open_labels - 1)

    def report(self) -> list[str]:
        problems = list(self.problems)
        if not self.lang:
            problems.append("no language on <html>")
        for ident in sorted(self.referred - self.ids):
            problems.append(f"aria refers to id {ident!r}, which is not on the page")
        for tag, attr, inside_label in self.controls:
            named = inside_label or attr.get("id") in self.labelled or attr.get("aria-label") or attr.get("title")
            if not named:
                problems.append(f"{tag} {attr.get('name')!r} has no label")
        if self.headings.count(1) != 1:
            problems.append(f"{self.headings.count(1)} top-level headings")
        for before, after in itertools.pairwise([0, *self.headings]):
            if after > before + 1:
                problems.append(f"heading level jumps from h{before} to h{after}")
        return problems


def test_every_page_can_be_used_with_a_screen_reader(client: TestClient) -> None:
    """Every page names its language, has one title heading and no skipped levels, labels every field, and gives
    every picture (the face map, the charts) a text alternative."""
    pages = {"anonymous": ["/login", "/about"]}
    pages["neuro"] = ["/patients", "/patients/new", "/patients/demo-001", "/patients/demo-001/assessment"]
    pages["neuro"] += [
        "/api/v1/docs",
        "/patients/no-such-patient",
        "/patients/demo-001/plans/1",
        "/patients?q=zzz",
        "/due",
        "/overrides",
    ]
    pages["admin"] = ["/admin", "/admin/audit"]
    pages["patient1"] = ["/me", "/me/hfs7"]
    found: dict[str, list[str]] = {}
    for username, paths in pages.items():
        client.cookies.clear()
        if username != "anonymous":
            sign_in(client, username)
        for path in paths:
            response = client.get(path)
            assert response.status_code == (404 if "no-such" in path else 200), path
            audit = _PageAudit()
            audit.feed(response.text)
            found[f"{username} {path}"] = audit.report()
    # ... and so do the forms the server sends back refused, their fields marked and pointing at their messages.
    refused = {
        ("neuro", "/patients/new"): {"code": "x"},
        ("neuro", "/patients/demo-001/assessment"): {"age": "250"},
        ("neuro", "/patients/demo-001/edit"): {"name": "", "version": "1"},
        ("neuro", "/patients/demo-001/sessions/toxin"): {"lot": "", "units.zygomaticus.left": "200"},
        ("neuro", "/patients/demo-001/sessions/procedure"): {"procedure": "laser", "side": ""},
        ("neuro", "/account/password"): {"current_password": "not it", "new_password": "x", "repeat_password": "y"},
        ("patient1", "/me/diary"): {"spasms": "-1", "intensity": "30"},
        ("patient1", "/me/hfs7"): {"item.0": "2"},
        ("neuro", "/patients/demo-001/questionnaires/hfs7"): {"item.0": "2"},
        ("neuro", "/patients/demo-001/grades"): {"smc_grade": "9"},
        ("admin", "/admin/users"): {"username": "Not A Name!", "full_name": "", "role": ""},
    }
    for (username, path), form in refused.items():
        client.cookies.clear()
        response = client.post(path, data={"csrf_token": sign_in(client, username), **form})
        assert response.status_code in (400, 422) and re.search('aria-invalid="?true', response.text), (path, response)
        audit = _PageAudit()
        audit.feed(response.text)
        found[f"{username} POST {path}"] = audit.report()
    assert {page: problems for page, problems in found.items() if problems} == {}
    # The audit itself must see what it checks: a field without a label is reported.
    audit = _PageAudit()
    audit.feed('<html lang="en"><h1>x</h1><input name="lot"><h3>y</h3></html>')
    assert audit.report() == ["input 'lot' has no label", "heading level jumps from h1 to h3"]
    audit = _PageAudit()
    audit.feed('<html lang="en"><h1>x</h1><input name="a" class="x" class="y" aria-describedby="gone" aria-label="a">')
    assert audit.report() == ["<input> has class twice", "aria refers to id 'gone', which is not on the page"]


def _visible_text(markup: str) -> str:
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", markup).split()))


def _rec_card(page: str, rec_id: str) -> str:
    """One recommendation's card on the clinician's page, as text."""
    found = re.search(rf'<div class="rec" id="rec-{re.escape(rec_id.replace(":", "-"))}">(.*?)\n  </div>', page, re.S)
    assert found, rec_id
    return _visible_text(found.group(1))


def test_the_clinicians_page_shows_what_the_text_plan_prints(client: TestClient) -> None:
    """Warnings, safety rules, technique, cautions, disputed figures and the advice itself: everything a clinician
    acts on, taken from the stored plan rather than written out here."""
    sign_in(client, "neuro")
    page = client.get("/patients/demo-001").text
    plan = client.get("/api/v1/patients/demo-001/plan").json()["plan"]
    details = {rec["id"]: rec["details"] for rec in plan["recommendations"]}
    toxin = _rec_card(page, "botulinum_toxin")
    assert f"Warning: {details['botulinum_toxin']['warning']}" in toxin
    for cap in details["botulinum_toxin"]["programme"]["caps"]:
        assert f"{cap['label']}: {cap['text']}" in toxin
    disputed = [
        f for f in details["botulinum_toxin"]["figures"] if (f["evidence"]["note"] or "").startswith("[DISPUTED]")
    ]
    assert disputed and all(f["evidence"]["note"] in toxin for f in disputed)
    # A medicine the plan does not recommend still shows its safety rules: a clinician may prescribe it anyway.
    carbamazepine = _rec_card(page, "medication:carbamazepine")
    assert "HLA-B*15:02" in carbamazepine
    assert all(line in carbamazepine for line in details["medication:carbamazepine"]["safety"])
    acupuncture = _rec_card(page, "acupuncture")
    assert all(line in acupuncture for line in details["acupuncture"]["technique"] + details["acupuncture"]["course"])
    assert "Ashi Ashi" not in acupuncture and re.search(r"\bAshi\b", acupuncture)
    herbal = _rec_card(page, "herbal_formula")
    assert all(f"Caution: {line}" in herbal for line in details["herbal_formula"]["cautions"])
    assert details["herbal_formula"]["formula_evidence"]["note"] in herbal
    for rec_id in ("diet", "lifestyle"):
        card = _rec_card(page, rec_id)
        for item in details[rec_id]["items"]:
            assert item["text"] in card
            assert f"({item['origin']}; {item['evidence']['certainty'].replace('_', ' ')} certainty" in card


def test_the_patient_reads_the_diet_and_lifestyle_advice_their_team_agreed(client: TestClient, clinic: Engine) -> None:
    from hemicare.web.plain import ADVICE_ORIGIN

    sign_in(client, "patient1")
    plan = client.get("/api/v1/patients/demo-001/plan").json()["plan"]
    advice = [item for rec in plan["recommendations"] for item in rec["details"].get("items", [])]
    assert {item["origin"] for item in advice} == {"study", "tradition"}
    assert not any(item["text"] in _portal_parts(client)["integrative"] for item in advice)  # nobody signed it yet
    with session_factory(clinic)() as s, s.begin():
        patient = patient_service.get(s, code="demo-001")
        plan_service.sign(
            s, patient=patient, expected_number=1, edits=[], signer="tcm", role="tcm_practitioner", kb=load_default()
        )
    shown = html.unescape(_portal_parts(client)["integrative"])
    printed = _pdf_text(client.get("/patients/demo-001/plan.pdf?kind=patient").content)
    for item in advice:
        told = item["text"] + ADVICE_ORIGIN[item["origin"]]
        assert told in shown
        assert f"- {' '.join(told.split())}" in printed
    kb = load_default()
    for rec_id in ("diet", "lifestyle"):  # the patient's wording, not the clinician's summary
        plain = " ".join((kb.treatments[rec_id].plain or "").split())
        assert plain and plain in shown and kb.treatments[rec_id].summary not in shown
    tradition = next(item["text"] for item in advice if item["origin"] == "tradition")
    assert f"{tradition} (TCM tradition; not tested in trials)" in shown
    study = next(item["text"] for item in advice if item["origin"] == "study")
    assert f"{study} (" not in shown


def test_advice_from_an_unknown_source_is_never_shown_as_established() -> None:
    from hemicare.web.plain import plain_items

    rec = {
        "id": "diet",
        "category": "integrative",
        "status": "option",
        "summary": "s",
        "details": {"items": [{"text": "Eat well.", "origin": "hearsay"}, {"text": "Sleep.", "origin": "study"}]},
    }
    (item,) = plain_items({"recommendations": [rec]}, load_default())
    assert item.advice == ["Eat well. (not tested in trials)", "Sleep."]


def test_each_list_of_what_is_due_says_how_late(client: TestClient) -> None:
    """A recall a week late (within the clinic's grace period, so not yet "overdue") says so on the worklist, the
    patient list and the patient's page alike; the API gives the same count."""
    csrf = sign_in(client, "neuro")
    assert 'id="due-now"' not in client.get("/patients/demo-001").text  # nothing is due yet
    site = {"site": "upper_lid_medial", "side": "left", "units": 2.5}
    usual_weeks = load_default().toxin_programme().limits["usual_interval_max_weeks"].value  # without an effect
    session = {
        "date": (dt.date.today() - dt.timedelta(weeks=usual_weeks + 1)).isoformat(),
        "clinician": "N",
        "details": {"kind": "toxin", "product": "onabotulinumtoxinA", "lot": "L1", "sites": [site]},
    }
    assert client.post("/api/v1/patients/demo-001/sessions", json=session, headers={"x-csrf-token": csrf}).is_success
    (toxin,) = [i for i in client.get("/api/v1/due?horizon=0").json() if i["what"] == "botulinum toxin session"]
    late = (dt.date.today() - dt.date.fromisoformat(toxin["due"])).days
    assert toxin["days_late"] == late and late > 0 and not toxin["overdue"]
    said = f'{toxin["due"]} <span class="small late">({late} day{"s" if late != 1 else ""} ago)</span>'
    for url in ("/due?days=14", "/patients", "/patients/demo-001"):
        assert said in client.get(url).text, url
    # On the patient's page it is said at the top too, before the plan, not only in the Due section at its foot.
    page = client.get("/patients/demo-001").text
    top = re.search(r'<p class="due-now" id="due-now">(.*?)</p>', page, flags=re.S)
    assert top and f"botulinum toxin session {said}" in top.group(1), top
    assert page.index('id="due-now"') < page.index('id="plan"')


def test_an_admin_adds_an_account_whose_owner_chooses_their_own_password(client: TestClient, app: Any) -> None:
    # Only an admin adds accounts or hands out new passwords.
    csrf = sign_in(client, "neuro")
    form = {"csrf_token": csrf, "username": "dr.new", "full_name": "Dr New", "role": "neurologist"}
    assert client.post("/admin/users", data=form).status_code == 403
    assert client.post("/admin/users/tcm/password", data={"csrf_token": csrf}).status_code == 403
    client.cookies.clear()
    csrf = sign_in(client, "admin")
    assert client.post("/admin/users", data={**form, "csrf_token": "forged"}).status_code == 403

    # Bad input: each problem beside its field, the values kept, nothing written.
    before = _audit_count(app.state.sessions.kw["bind"], action="create")
    for changes, field, said in (
        ({"username": "Dr New!"}, "username", "String should match pattern"),
        ({"username": "neuro"}, "username", "'neuro' is taken"),
        ({"full_name": ""}, "full_name", "at least 1 character"),
        ({"role": "surgeon-in-chief"}, "role", "Input should be"),
        ({"role": ""}, "role", "Input should be"),  # no role is chosen for the admin, least of all admin
        ({"role": "patient"}, "patient_code", "a patient user needs patient_code"),
        ({"role": "patient", "patient_code": "demo-999"}, "patient_code", "demo-999"),
        ({"patient_code": "demo-001"}, "patient_code", "only a patient user is linked"),
    ):
        refused = client.post("/admin/users", data={**form, "csrf_token": csrf, **changes})
        assert refused.status_code == 422, (changes, refused.status_code)
        beside = refused.text.split(f'id="new-{field}"')[1].split("<label")[0]
        assert 'class="invalid"' in beside and said in html.unescape(beside), (changes, beside)
        assert "Temporary password" not in refused.text
    assert _audit_count(app.state.sessions.kw["bind"], action="create") == before

    added = client.post("/admin/users", data={**form, "csrf_token": csrf})
    assert added.status_code == 200 and added.headers["cache-control"] == "no-store"
    temporary = re.search(r'<code class="password">([^<]+)</code>', added.text)
    assert temporary and len(temporary.group(1)) >= 10
    assert '<option value="" selected' not in added.text and '<option value="">choose a role</option>' in added.text
    assert client.get("/admin").text.count(temporary.group(1)) == 0  # shown once only

    # The new user signs in with it and can do nothing but choose their own.
    newcomer = TestClient(app, base_url="https://testserver", follow_redirects=False)
    new_csrf = sign_in(newcomer, "dr.new", temporary.group(1))
    for path in ("/patients", "/patients/demo-001", "/due"):
        sent = newcomer.get(path)
        assert sent.status_code == 303 and sent.headers["location"] == "/account", path
    assert newcomer.get("/api/v1/due").status_code == 403
    assert "temporary password from your administrator" in newcomer.get("/account").text
    own = "my own good passphrase"
    change = {"csrf_token": new_csrf, "current_password": temporary.group(1), "new_password": own}
    assert newcomer.post("/account/password", data={**change, "repeat_password": own}).status_code == 303
    assert newcomer.get("/patients").status_code == 200
    assert "temporary password from your administrator" not in newcomer.get("/account").text

    # Forgotten: the admin sets a new temporary one; the open session ends, the old password stops working.
    assert client.post("/admin/users/admin/password", data={"csrf_token": csrf}).status_code == 403  # not one's own
    assert client.post("/admin/users/nobody/password", data={"csrf_token": csrf}).status_code == 404
    reset = client.post("/admin/users/dr.new/password", data={"csrf_token": csrf})
    assert reset.status_code == 200 and "every browser signed in to the account has been signed out" in reset.text
    again = re.search(r'<code class="password">([^<]+)</code>', reset.text)
    assert again and again.group(1) != temporary.group(1)
    assert newcomer.get("/patients").status_code == 303  # signed out
    assert newcomer.post("/login", data={"username": "dr.new", "password": own, "next": "/"}).status_code == 401
    sign_in(newcomer, "dr.new", again.group(1))
    assert newcomer.get("/patients").headers["location"] == "/account"
    newcomer.close()
    engine = app.state.sessions.kw["bind"]
    assert _audit_count(engine, action="create", entity_id="dr.new") == 1
    assert _audit_count(engine, action="password", entity_id="dr.new") == 2  # their own, then the reset


def test_temporary_passwords_are_random_and_long_enough() -> None:
    from hemicare.users.schemas import PasswordChange

    passwords = {user_service.temporary_password() for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        PasswordChange(password=password)  # passes the same rule as a chosen one
        assert not set(password) & set("01ilo")


def test_integrative_sessions_are_recorded_on_the_day_they_happened(client: TestClient) -> None:
    """A TCM practitioner enters Monday's needling or prescription on Wednesday: both forms carry a date."""
    csrf = sign_in(client, "tcm")
    page = client.get("/patients/demo-001").text
    today = dt.date.today().isoformat()
    for form_id in ("acu-date", "herbal-date"):
        assert f'id="{form_id}" name="date" type="date" value="{today}"' in page, form_id
    monday = (dt.date.today() - dt.timedelta(days=2)).isoformat()
    acupuncture = {"csrf_token": csrf, "date": monday, "points": ["LI4", "LR3"]}
    assert client.post("/patients/demo-001/sessions/acupuncture", data=acupuncture).status_code == 303
    herbal = {"csrf_token": csrf, "date": monday, "formula": "tian_ma_gou_teng_yin", "dose.Rhizoma Gastrodiae": "9"}
    assert client.post("/patients/demo-001/sessions/herbal", data={**herbal, "duration_days": "14"}).status_code == 303
    recorded = client.get("/api/v1/patients/demo-001/sessions").json()
    assert sorted((s["details"]["kind"], s["date"]) for s in recorded) == [("acupuncture", monday), ("herbal", monday)]
    refused = client.post("/patients/demo-001/sessions/acupuncture", data={**acupuncture, "date": "last monday"})
    assert refused.status_code == 422 and "<strong>Date</strong>" in refused.text
    assert 'id="acu-date" name="date" type="date" value="last monday" max="' in refused.text
    assert re.search(r'id="acu-date"[^>]*aria-invalid=true aria-describedby=acupuncture-problems>', refused.text)


def test_sex_and_side_are_chosen_never_assumed(client: TestClient) -> None:
    """A new patient's sex and the side of their spasm start blank: a form left as it opened would otherwise record
    'female' and 'left' (and plan toxin for the left face)."""
    csrf = sign_in(client, "neuro")
    blank = client.get("/patients/new").text
    assert (
        '<option value="">choose</option>' in blank
        and "selected" not in blank.split('id="sex"')[1].split("</select>")[0]
    )
    refused = client.post("/patients/new", data={"csrf_token": csrf, "code": "new-001", "name": "New One", "sex": ""})
    assert refused.status_code == 422
    assert 'id="error-sex">is required</div>' in refused.text
    made = client.post("/patients/new", data={"csrf_token": csrf, "code": "new-001", "name": "New One", "sex": "male"})
    assert made.status_code == 303
    form = client.get("/patients/new-001/assessment").text
    side = form.split('id="f-side"')[1].split("</select>")[0]
    assert '<option value="">choose</option>' in side and "selected" not in side
    assert 'value="male" selected' in form.split('id="f-sex"')[1].split("</select>")[0]  # from the record
    answers = {"csrf_token": csrf, "age": "60", "sex": "male", "duration_months": "12", "regions": "periocular"}
    unsided = client.post("/patients/new-001/assessment", data={**answers, "imaging.mri": "not_done"})
    assert unsided.status_code == 422 and 'id="error-side"' in unsided.text


def _red_flag_page(client: TestClient, clinic: Engine) -> tuple[str, dict[str, dict[str, Any]]]:
    """The clinician's page of a patient with red flags (the work-up first, treatments deferred), and its plan's
    details by item."""
    from hemicare.assessments import service as assessments
    from hemicare.patients.schemas import PatientCreate

    kb = load_default()
    with session_factory(clinic)() as s, s.begin():
        patient = patient_service.create(s, data=PatientCreate(code="rf-002", name="Red Flag", sex="male"), actor="t")
        data = read_file(EXAMPLES / "demo-002-red-flags.yaml") | {"id": "rf-002"}
        assessments.record(s, patient=patient, assessment=validate_assessment(data), actor="t", today=dt.date.today())
        plan_service.generate(s, patient=patient, kb=kb, actor="t", today=dt.date.today())
    sign_in(client, "neuro")
    plan = client.get("/api/v1/patients/rf-002/plan").json()["plan"]
    return client.get("/patients/rf-002").text, {rec["id"]: rec for rec in plan["recommendations"]}


def test_deferred_items_show_their_figures_but_not_how_to_deliver_them(client: TestClient, clinic: Engine) -> None:
    """As the text plan does: a deferred item is weighed (figures, how to judge it, its safety rules), not delivered
    (no points, technique or dose plan until the work-up is done)."""
    page, recs = _red_flag_page(client, clinic)
    assert recs["mvd"]["status"] == recs["acupuncture"]["status"] == "deferred"
    mvd = _rec_card(page, "mvd")
    assert "Figures (" in mvd and recs["mvd"]["details"]["judging_the_result"] in mvd
    acupuncture = _rec_card(page, "acupuncture")
    assert "Figures (" in acupuncture and "Technique:" not in acupuncture and "Point choice:" not in acupuncture
    toxin = _rec_card(page, "botulinum_toxin")
    assert "Warning: " in toxin and "Dose caps and sites to avoid" not in toxin
    assert "HLA-B*15:02" in _rec_card(page, "medication:carbamazepine")


def test_the_work_up_says_which_sequences_when_and_what_imaging_cannot_tell(client: TestClient, clinic: Engine) -> None:
    page, recs = _red_flag_page(client, clinic)
    details = recs["mri_workup"]["details"]
    card = _rec_card(page, "mri_workup")
    assert all(f"{q['name']}: {q['purpose']}" in card for q in details["sequences"])
    assert f"Timing: {details['timing']}" in card and f"Caution: {details['caution']}" in card


def test_chinese_runs_are_marked_and_the_rest_escaped() -> None:
    from hemicare.web.chinese import mark_chinese

    marked = mark_chinese("Liver yang rising (肝阳上亢 / 肝风内动) & <b>, 天麻 9 g")
    assert marked == (
        'Liver yang rising (<span lang="zh-Hans">肝阳上亢 / 肝风内动</span>) &amp; &lt;b&gt;, '
        '<span lang="zh-Hans">天麻</span> 9 g'
    )
    assert mark_chinese("no Chinese here") == "no Chinese here" and mark_chinese("") == ""
