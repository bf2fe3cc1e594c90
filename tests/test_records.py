"""Care records on a real database: migrations, patients, plans, sessions, outcomes, recalls, audit, concurrency."""

from __future__ import annotations

import datetime as dt
import functools
import json
import threading
import time
import typing
from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from hemicare.assessments import service as assessment_service
from hemicare.audit import service as audit
from hemicare.audit.models import AuditEntry
from hemicare.db.base import local_day
from hemicare.db.engine import current_revision, downgrade, session_factory, upgrade
from hemicare.db.models import metadata
from hemicare.engine import KnowledgeBase, validate_assessment
from hemicare.engine.intake import read_file, validate_model
from hemicare.errors import ConflictError, FieldProblem, ForbiddenError, InputError, NotFoundError
from hemicare.limits import CODE_MAX, REASON_MAX, TOKEN_NAME_MAX
from hemicare.outcomes import service as outcomes
from hemicare.outcomes.models import DiaryEntry
from hemicare.outcomes.schemas import DiaryCreate, GradesCreate, QuestionnaireCreate
from hemicare.patients import service as patients
from hemicare.patients.models import Patient
from hemicare.patients.schemas import PatientCreate, PatientUpdate
from hemicare.plans import service as plans
from hemicare.plans.models import PlanVersion
from hemicare.plans.schemas import PlanEdit, SignRequest
from hemicare.recalls import service as recalls
from hemicare.sessions import service as sessions
from hemicare.sessions.models import TreatmentSession
from hemicare.sessions.schemas import SessionCreate, SessionOutcome
from hemicare.users.models import SentForm

from .conftest import EXAMPLES

TODAY = dt.date.today()


@pytest.fixture(autouse=True)
def _today() -> None:
    """Each test takes the day when it starts, as the services do: a run that crosses midnight would otherwise date
    sessions on the day before the plans its later tests make."""
    global TODAY
    TODAY = dt.date.today()


def _session(engine: Engine) -> Session:
    return session_factory(engine)()


def _add_patient(engine: Engine, code: str = "p-001", **extra: Any) -> None:
    with _session(engine) as s, s.begin():
        patients.create(s, data=PatientCreate(code=code, name="Test Patient", sex="female", **extra), actor="tester")


def _assess(
    engine: Engine, kb: KnowledgeBase, patient_data: dict[str, Any], code: str = "p-001", days_ago: int = 0
) -> None:
    with _session(engine) as s, s.begin():
        patient = patients.get(s, code=code)
        assessment = validate_assessment({**patient_data, "id": code})
        on = TODAY - dt.timedelta(days=days_ago)
        assessment_service.record(s, patient=patient, assessment=assessment, actor="tester", today=on)


def _sign(s: Session, kb: KnowledgeBase, *, number: int, edits: list[PlanEdit], by: str, role: str) -> PlanVersion:
    """Sign p-001's plan version ``number`` with these edits."""
    patient = patients.get(s, code="p-001")
    return plans.sign(s, patient=patient, expected_number=number, edits=edits, signer=by, role=role, kb=kb)


def _toxin(days_ago: int, **extra: Any) -> SessionCreate:
    details = {
        "kind": "toxin",
        "product": "onabotulinumtoxinA",
        "lot": "C1234",
        "sites": [{"site": "upper_lid_medial", "side": "left", "units": 2.5}],
        **extra,
    }
    return SessionCreate.model_validate(
        {"date": (TODAY - dt.timedelta(days=days_ago)).isoformat(), "clinician": "Dr N", "details": details}
    )


def test_migrations_go_up_and_down_and_match_the_models(db_url: str) -> None:
    from hemicare.db.engine import make_engine

    engine = make_engine(db_url)
    upgrade(engine)
    assert current_revision(engine) == "0016"
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
    downgrade(engine, "base")
    assert current_revision(engine) is None
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) != []
    upgrade(engine)
    assert current_revision(engine) == "0016"
    engine.dispose()


def test_outcomes_recorded_before_ids_were_never_reused_are_kept(db_url: str) -> None:
    """Upgrading a clinic's database from 0005 rebuilds four tables on SQLite: every row, id and check stays."""
    from hemicare.db.engine import make_engine

    engine = make_engine(db_url)
    upgrade(engine, "0005")
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO patients (code, name, sex, version, created_at, created_by, updated_at) "
                "VALUES ('p-old', 'Old', 'female', 1, :now, 'setup', :now)"
            ),
            {"now": now},
        )
        for spasms in (12, 30):
            connection.execute(
                text(
                    "INSERT INTO diary_entries (patient_id, date, spasms, per, intensity, triggers, created_at, "
                    "created_by) SELECT id, :today, :spasms, 'day', 4, '[]', :now, 'p' FROM patients"
                ),
                {"today": TODAY, "now": now, "spasms": spasms},
            )
        before = connection.execute(text("SELECT id, spasms FROM diary_entries ORDER BY id")).all()
    upgrade(engine)
    with engine.begin() as connection:
        assert connection.execute(text("SELECT id, spasms FROM diary_entries ORDER BY id")).all() == before
    with _session(engine) as s, s.begin():
        patient = patients.get(s, code="p-old")
        outcomes.remove(s, patient=patient, entity="diary", row_id=before[-1][0], actor="p", reason=None)
    with _session(engine) as s, s.begin():
        added = outcomes.add_diary(
            s, patient=patients.get(s, code="p-old"), data=DiaryCreate(date=TODAY, spasms=5, intensity=2), actor="p"
        )
        s.flush()
        assert added.id > before[-1][0]
    with pytest.raises(DBAPIError), engine.begin() as connection:
        connection.execute(text("UPDATE diary_entries SET intensity = 11"))
    engine.dispose()


def test_sessions_amended_before_0008_take_the_time_of_their_latest_amendment(db_url: str) -> None:
    """Upgrading from 0007: a session whose outcome was amended (twice) takes its latest amendment's time from the
    audit trail, so that a plan made before it still names it; a session never amended stays without one."""
    from hemicare.db.engine import make_engine

    engine = make_engine(db_url)
    upgrade(engine, "0007")
    made = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO patients (code, name, sex, version, created_at, created_by, updated_at) "
                "VALUES ('p-old', 'Old', 'female', 1, :at, 'setup', :at)"
            ),
            {"at": made},
        )
        for day in (1, 2):
            connection.execute(
                text(
                    "INSERT INTO treatment_sessions (patient_id, kind, date, clinician, data, created_at, created_by) "
                    "SELECT id, 'toxin', :date, 'N', '{}', :at, 'n' FROM patients"
                ),
                {"date": dt.date(2026, 1, day), "at": made},
            )
        first = connection.execute(text("SELECT min(id) FROM treatment_sessions")).scalar_one()
        for number, (action, hours) in enumerate((("amend", 1), ("amend", 5), ("read", 9))):
            connection.execute(
                text(
                    "INSERT INTO audit_log (at, actor, action, entity, entity_id, detail, prev_hash, hash) "
                    "VALUES (:at, 'n', :action, 'session', :session, '{}', :prev, :hash)"
                ),
                {
                    "at": made + dt.timedelta(hours=hours),
                    "action": action,
                    "session": str(first),
                    "prev": str(number),
                    "hash": str(number + 1),
                },
            )
    upgrade(engine)
    with engine.begin() as connection:
        latest = connection.execute(text("SELECT max(at) FROM audit_log WHERE action = 'amend'")).scalar_one()
        amended = connection.execute(text("SELECT amended_at FROM treatment_sessions ORDER BY id")).scalars().all()
    assert amended == [latest, None]
    downgrade(engine, "0007")
    engine.dispose()


def test_plans_stored_before_0009_are_summarised_with_what_they_give(
    db_url: str, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    """Upgrading from 0008: every stored version's summary gains what it gives, read from its own content, so that
    the first recheck after the upgrade compares doses with the plan's, not with nothing; the rest stays."""
    from hemicare.db.engine import make_engine

    engine = make_engine(db_url)
    upgrade(engine)  # the models are today's: plans are made at the head, then taken back to 0008
    for code in ("p-001", "p-002"):
        _add_patient(engine, code=code)
        _assess(engine, kb, {**baseline, "pregnant": code == "p-002"}, code=code)
        with _session(engine) as s, s.begin():
            plans.generate(s, patient=patients.get(s, code=code), kb=kb, actor="t", today=TODAY)
    with _session(engine) as s:
        made = {v.id: v.summary for v in s.scalars(select(PlanVersion).order_by(PlanVersion.id))}

    def stored_summaries() -> list[dict[str, Any]]:  # read as rows: an older schema lacks the models' later columns
        with engine.connect() as connection:
            found = connection.scalars(text("SELECT summary FROM plan_versions ORDER BY id")).all()
        return [json.loads(summary) if isinstance(summary, str) else summary for summary in found]

    downgrade(engine, "0008")
    assert all("given" not in summary and summary["statuses"] for summary in stored_summaries())
    upgrade(engine)
    with _session(engine) as s:
        after = {v.id: v.summary for v in s.scalars(select(PlanVersion))}
    assert after == made
    given = [summary["given"] for summary in made.values()]
    assert given[0] != given[1] and all(g["botulinum_toxin"] for g in given)  # each from its own plan
    downgrade(engine, "0008")
    assert all("given" not in summary and summary["statuses"] for summary in stored_summaries())
    engine.dispose()


def test_accounts_made_before_temporary_passwords_keep_their_own(db_url: str) -> None:
    """Upgrading a clinic's database from 0002: existing users are not asked to change their password."""
    from hemicare.db.engine import make_engine

    engine = make_engine(db_url)
    upgrade(engine, "0002")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (username, full_name, role, password_hash, active, created_at, created_by) "
                "VALUES ('dr.old', 'Dr Old', 'neurologist', 'x', :yes, :now, 'setup')"
            ),
            {"yes": True, "now": dt.datetime.now(dt.UTC)},
        )
        # A signed-in browser refers to the user, as in any clinic's database.
        connection.execute(
            text(
                "INSERT INTO web_sessions (token_hash, user_id, csrf_token, expires_at) "
                "SELECT 'h', id, 'c', :now FROM users WHERE username = 'dr.old'"
            ),
            {"now": dt.datetime.now(dt.UTC)},
        )
    upgrade(engine)
    with engine.connect() as connection:
        flag = connection.execute(text("SELECT must_change_password FROM users WHERE username = 'dr.old'")).scalar()
    assert flag in (False, 0)
    downgrade(engine, "0002")  # and back, with the session still there
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM web_sessions"))
    downgrade(engine, "base")
    engine.dispose()


def test_patient_create_get_update(engine: Engine) -> None:
    _add_patient(engine, birth_year=1970)
    with _session(engine) as s, s.begin():
        patient = patients.update(
            s, code="p-001", expected_version=1, changes=PatientUpdate(phone="123"), actor="tester", reason="called"
        )
        assert patient.version == 2
    with _session(engine) as s:
        assert patients.get(s, code="p-001").phone == "123"


def test_duplicate_patient_code_is_refused(engine: Engine) -> None:
    _add_patient(engine)
    with pytest.raises(InputError, match="already exists"), _session(engine) as s, s.begin():
        patients.create(s, data=PatientCreate(code="p-001", name="Other", sex="male"), actor="tester")


def test_stale_edit_is_refused_not_lost(engine: Engine) -> None:
    _add_patient(engine)
    with _session(engine) as s, s.begin():
        patients.update(s, code="p-001", expected_version=1, changes=PatientUpdate(name="A"), actor="a", reason="r")
    with pytest.raises(ConflictError, match="version 2, not 1"), _session(engine) as s, s.begin():
        patients.update(s, code="p-001", expected_version=1, changes=PatientUpdate(name="B"), actor="b", reason="r")
    with _session(engine) as s:
        assert patients.get(s, code="p-001").name == "A"


def test_concurrent_flushes_are_caught_by_the_version_column(engine: Engine) -> None:
    _add_patient(engine)
    first, second = _session(engine), _session(engine)
    a = patients.get(first, code="p-001")
    first.commit()
    b = patients.get(second, code="p-001")
    second.commit()
    a.name = "Edited in A"
    first.commit()
    b.name = "Edited in B"
    from sqlalchemy.orm.exc import StaleDataError

    with pytest.raises(StaleDataError):
        second.commit()
    first.close()
    second.close()


def test_plans_are_versioned_and_signed_by_role(engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]) -> None:
    _add_patient(engine)
    _assess(engine, kb, {**baseline, "preferences": {"integrative_care": True}})
    with _session(engine) as s, s.begin():
        patient = patients.get(s, code="p-001")
        first = plans.generate(s, patient=patient, kb=kb, actor="tester", today=TODAY)
        assert first.number == 1 and first.kind == "generated"
        original = dict(first.content)
    edit = PlanEdit(recommendation="mvd", status="recommended", reason="Patient now wants surgery")
    with _session(engine) as s, s.begin():
        patient = patients.get(s, code="p-001")
        signed = plans.sign(
            s, patient=patient, expected_number=1, edits=[edit], signer="Dr N", role="neurologist", kb=kb
        )
        assert signed.number == 2 and signed.edits[0]["to"] == "recommended"
        assert signed.content["signoff"]["conventional"]["role"] == "neurologist"
    with _session(engine) as s:
        versions = plans.history(s, patient=patients.get(s, code="p-001"))
        assert [v.number for v in versions] == [1, 2]
        assert versions[0].content == original  # the earlier version is untouched


def test_reviewed_parts_are_the_versions_each_specialty_signed(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    _add_patient(engine)
    _assess(engine, kb, {**baseline, "preferences": {"integrative_care": True}})

    def step(action: Any) -> tuple[list[str], dict[str, Any]]:
        with _session(engine) as s, s.begin():
            action(s, patients.get(s, code="p-001"))
        with _session(engine) as s:
            parts, reviewed = plans.reviewed_parts(s, patient=patients.get(s, code="p-001"))
            return parts, {part: (r.signoff["by"], r.update_pending) for part, r in reviewed.items()}

    with _session(engine) as s:
        assert plans.reviewed_parts(s, patient=patients.get(s, code="p-001")) == ([], {})
    parts, reviewed = step(lambda s, p: plans.generate(s, patient=p, kb=kb, actor="t", today=TODAY))  # v1
    assert parts == ["conventional", "integrative"] and reviewed == {}
    sign = functools.partial(plans.sign, kb=kb)
    _, reviewed = step(lambda s, p: sign(s, patient=p, expected_number=1, edits=[], signer="N", role="neurologist"))
    assert reviewed == {"conventional": ("N", False)}  # v2
    _, reviewed = step(
        lambda s, p: sign(s, patient=p, expected_number=2, edits=[], signer="T", role="tcm_practitioner")
    )
    assert reviewed == {"conventional": ("N", False), "integrative": ("T", False)}  # v3 carries both signatures
    _, reviewed = step(lambda s, p: plans.generate(s, patient=p, kb=kb, actor="t", today=TODAY))  # v4, unsigned
    assert reviewed == {"conventional": ("N", True), "integrative": ("T", True)}
    _, reviewed = step(lambda s, p: sign(s, patient=p, expected_number=4, edits=[], signer="S", role="neurosurgeon"))
    assert reviewed == {"conventional": ("S", False), "integrative": ("T", True)}  # v5


def test_sign_off_permissions_and_conflicts(engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]) -> None:
    _add_patient(engine)
    _assess(engine, kb, baseline)
    with _session(engine) as s, s.begin():
        plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="tester", today=TODAY)
    toxin_edit = PlanEdit(recommendation="botulinum_toxin", status="deferred", reason="wants to wait")
    with pytest.raises(ForbiddenError, match="tcm_practitioner cannot change conventional"), _session(engine) as s:
        _sign(s, kb, number=1, edits=[toxin_edit], by="L", role="tcm_practitioner")
    acupuncture_edit = PlanEdit(recommendation="acupuncture", status="not_recommended", reason="needle phobia")
    with pytest.raises(ForbiddenError), _session(engine) as s:
        _sign(s, kb, number=1, edits=[acupuncture_edit], by="N", role="neurologist")
    with _session(engine) as s, s.begin():
        _sign(s, kb, number=1, edits=[acupuncture_edit], by="L", role="tcm_practitioner")
    with pytest.raises(ConflictError, match="at version 2, not 1"), _session(engine) as s:
        _sign(s, kb, number=1, edits=[], by="N", role="neurologist")


def test_plan_uses_recorded_toxin_sessions(engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]) -> None:
    _add_patient(engine)
    _assess(engine, kb, baseline)
    with _session(engine) as s, s.begin():
        sessions.record(s, patient=patients.get(s, code="p-001"), data=_toxin(30), kb=kb, actor="Dr N")
    with _session(engine) as s, s.begin():
        version = plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="tester", today=TODAY)
    toxin = next(r for r in version.content["recommendations"] if r["id"] == "botulinum_toxin")
    assert toxin["details"]["programme"]["too_soon"] is True


def test_toxin_sooner_than_12_weeks_needs_a_reason(engine: Engine, kb: KnowledgeBase) -> None:
    _add_patient(engine)
    with _session(engine) as s, s.begin():
        sessions.record(s, patient=patients.get(s, code="p-001"), data=_toxin(60), kb=kb, actor="Dr N")
    with pytest.raises(InputError) as info, _session(engine) as s, s.begin():
        sessions.record(s, patient=patients.get(s, code="p-001"), data=_toxin(10), kb=kb, actor="Dr N")
    assert info.value.problems[0].path == "date"
    with _session(engine) as s, s.begin():
        override = _toxin(10, override_reason="severe breakthrough spasm, discussed with patient")
        sessions.record(s, patient=patients.get(s, code="p-001"), data=override, kb=kb, actor="Dr N")


def _record_toxin(engine: Engine, kb: KnowledgeBase, data: SessionCreate) -> list[tuple[str, str]]:
    """Record a toxin session: the problems that refused it (path, message), or none and the session stored."""
    try:
        with _session(engine) as s, s.begin():
            sessions.record(s, patient=patients.get(s, code="p-001"), data=data, kb=kb, actor="Dr N")
    except InputError as exc:
        return [(problem.path, problem.message) for problem in exc.problems]
    return []


def _sites(*units: float) -> list[dict[str, Any]]:
    """One dose per site, on the left, in the programme's order of sites."""
    names = ["upper_lid_medial", "upper_lid_lateral", "lower_lid_lateral", "lateral_orbital", "zygomaticus"]
    return [{"site": names[index], "side": "left", "units": dose} for index, dose in enumerate(units)]


@pytest.mark.parametrize(
    ("product", "units", "refused"),
    [
        ("onabotulinumtoxinA", [2.5, 5], None),
        ("onabotulinumtoxinA", [2.5, 25], ("details.sites.1.units", "25 U is above the per-site ceiling of 5 U")),
        ("onabotulinumtoxinA", [5.25], ("details.sites.0.units", "5.25 U is above the per-site ceiling of 5 U")),
        ("abobotulinumtoxinA", [12.5], None),  # 2.5 Dysport units to one onabotulinumtoxinA unit
        ("abobotulinumtoxinA", [13], ("details.sites.0.units", "13 U is above the per-site ceiling of 12.5 U")),
        ("incobotulinumtoxinA", [50], ("details.sites.0.units", "50 U is above the per-site ceiling of 5 U")),
    ],
)
def test_toxin_doses_above_the_per_site_ceiling_need_a_reason(
    engine: Engine, kb: KnowledgeBase, product: str, units: list[float], refused: tuple[str, str] | None
) -> None:
    _add_patient(engine)
    data = _toxin(1, product=product, sites=_sites(*units))
    problems = _record_toxin(engine, kb, data)
    if refused is None:
        assert problems == []
        return
    (path, message), *around_the_eye = problems
    in_reference_units = " (5 U onabotulinumtoxinA)" if product == "abobotulinumtoxinA" else ""
    assert path == refused[0]
    assert message == f"{refused[1]} {product}{in_reference_units}; give details.override_reason to record it anyway"
    # Its first toxin session: above the initial dose per eye too where the upper lids hold more than 25 U.
    assert [path for path, _ in around_the_eye] == (["details.sites"] if sum(units) > 25 else [])
    with _session(engine) as s:
        assert sessions.list_for(s, patient=patients.get(s, code="p-001")) == []  # nothing half-written
    reason = "dose agreed with the patient after two short-lived sessions"
    assert _record_toxin(engine, kb, _toxin(1, product=product, sites=_sites(*units), override_reason=reason)) == []
    with _session(engine) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.entity == "session")).one()
    assert entry.reason == reason


def test_a_toxin_session_above_the_session_cap_needs_a_reason(engine: Engine, kb: KnowledgeBase) -> None:
    """Twenty sites at the ceiling make the cap exactly; one dose above it is above both."""
    _add_patient(engine)
    sites = [
        {"site": site.id, "side": side, "units": 5} for site in kb.toxin_programme().sites for side in ("left", "right")
    ]
    assert len(sites) * 5 == 100
    sites[-1]["units"] = 6
    problems = _record_toxin(engine, kb, _toxin(1, sites=sites))
    assert [path for path, _ in problems] == [f"details.sites.{len(sites) - 1}.units", "details.sites"]
    assert problems[1][1] == (
        "101 U in all is above the session cap, 100 U onabotulinumtoxinA: Most per 12 weeks (EU-style text, "
        "blepharospasm); give details.override_reason to record it anyway"
    )
    sites[-1]["units"] = 5
    assert _record_toxin(engine, kb, _toxin(1, sites=sites)) == []


def _periocular(units: float, side: str = "left") -> list[dict[str, Any]]:
    """The four periocular sites of one side, each at this dose."""
    return [dict(site, side=side) for site in _sites(units, units, units, units)]


@pytest.mark.parametrize(
    ("product", "units", "above"),
    [
        ("onabotulinumtoxinA", 7, "28 U around the left eye at a first toxin session (none is recorded before {date}) "
         "is above 25 U onabotulinumtoxinA per eye: Initial dose per eye (EU-style label)"),
        ("abobotulinumtoxinA", 17.5, "70 U around the left eye at a first toxin session (none is recorded before "
         "{date}) is above 62.5 U abobotulinumtoxinA (25 U onabotulinumtoxinA) per eye"),
        ("onabotulinumtoxinA", 6.25, None),  # 25 U: at the initial dose, not above it
    ],
)  # fmt: skip
def test_a_first_toxin_session_above_the_initial_dose_per_eye_needs_a_reason(
    engine: Engine, kb: KnowledgeBase, product: str, units: float, above: str | None
) -> None:
    """The label's initial dose is at most 25 U per eye: the four periocular sites of one side at a patient's first
    session, whatever else the session gives. After an earlier session, recorded or in the assessment's history,
    the same doses need a reason for the per-site ceiling only."""
    _add_patient(engine)
    sites = (
        _periocular(units)
        + _periocular(units, side="right")[:1]
        + [{"site": "zygomaticus", "side": "left", "units": 5}]
    )
    problems = _record_toxin(engine, kb, _toxin(0, product=product, sites=sites))
    ceilings = [path for path, _ in problems if path.endswith(".units")]
    assert [path for path, _ in problems if not path.endswith(".units")] == (["details.sites"] if above else [])
    if above is not None:
        message = dict(problems)["details.sites"]
        assert message.startswith(above.format(date=TODAY.isoformat()))
        assert message.endswith("; give details.override_reason to record it anyway")
    with _session(engine) as s:
        assert sessions.list_for(s, patient=patients.get(s, code="p-001")) == []
    # Recorded 13 weeks before: not the first session any more.
    assert _record_toxin(engine, kb, _toxin(91, sites=_sites(2.5))) == []
    assert [path for path, _ in _record_toxin(engine, kb, _toxin(0, product=product, sites=sites))] == ceilings


def test_a_toxin_session_the_assessment_reports_counts_as_an_earlier_one(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    """Toxin given elsewhere before the patient came, as the assessment's history has it."""
    _add_patient(engine)
    given = {"date": (TODAY - dt.timedelta(days=120)).isoformat(), "product": "onabotulinumtoxinA", "total_units": 20}
    _assess(engine, kb, baseline | {"history": baseline["history"] | {"botulinum_sessions": [given]}})
    sites = _periocular(7)
    assert [path for path, _ in _record_toxin(engine, kb, _toxin(0, sites=sites))] == [
        f"details.sites.{index}.units" for index in range(4)
    ]
    _assess(engine, kb, baseline | {"history": baseline["history"] | {"botulinum_sessions": []}})
    assert "details.sites" in dict(_record_toxin(engine, kb, _toxin(0, sites=sites)))


def test_a_site_or_herb_given_twice_in_one_session_is_refused_even_with_a_reason(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    """Entry by entry, two doses of 5 U at one site and Scorpio beside Quan Xie pass the per-site ceiling and the
    reference dose; their totals would go unchecked. The same site on the other side is another site."""
    _add_patient(engine)
    _assess(engine, kb, baseline)
    twice = [
        {"site": "upper_lid_medial", "side": "left", "units": 5},
        {"site": "upper_lid_medial", "side": "right", "units": 5},
        {"site": "upper_lid_medial", "side": "left", "units": 5},
    ]
    reason = "agreed with the patient"
    assert _record_toxin(engine, kb, _toxin(0, sites=twice, override_reason=reason)) == [
        (
            "details.sites.2.site",
            "upper_lid_medial (left) is given twice (also details.sites.0); give each once, with its whole dose",
        )
    ]
    herbs = [
        {"latin": "Scorpio", "dose_g": 5},
        {"latin": "Bombyx Batryticatus", "dose_g": 6},
        {"latin": "quan xie", "dose_g": 5},
    ]
    prescription = {"kind": "herbal", "herbs": herbs, "duration_days": 7, "override_reason": reason}
    assert _record(engine, kb, prescription) == [
        (
            "details.herbs.2.latin",
            "Scorpio (Quan Xie) is given twice (also details.herbs.0); give each once, with its whole dose",
        )
    ]
    with _session(engine) as s:
        assert sessions.list_for(s, patient=patients.get(s, code="p-001")) == []
    assert _record_toxin(engine, kb, _toxin(0, sites=twice[:2])) == []
    assert _record(engine, kb, {**prescription, "herbs": herbs[:2]}) == []


def _at_the_ceiling(kb: KnowledgeBase, count: int, per_site: float = 5) -> list[dict[str, Any]]:
    """``count`` sites at this dose on both sides of the face (20 U per eye at most, within a first session's limit)."""
    sites = kb.toxin_programme().sites
    return [{"site": site.id, "side": side, "units": per_site} for site in sites for side in ("left", "right")][:count]


@pytest.mark.parametrize(("product", "per_ona"), [("onabotulinumtoxinA", 1), ("abobotulinumtoxinA", 2.5)])
def test_toxin_sessions_within_12_weeks_count_together_against_the_cap(
    engine: Engine, kb: KnowledgeBase, product: str, per_ona: float
) -> None:
    """The cap is "most per 12 weeks": a session sooner than the interval allows (which needs a reason) that takes
    the two past 100 U onabotulinumtoxinA is said to, so that the reason given knows it."""
    _add_patient(engine)
    assert _record_toxin(engine, kb, _toxin(56, sites=_at_the_ceiling(kb, 12))) == []  # 60 U, 8 weeks ago
    earlier = (TODAY - dt.timedelta(days=56)).isoformat()
    fifty = _at_the_ceiling(kb, 10, per_site=5 * per_ona)
    problems = _record_toxin(engine, kb, _toxin(0, product=product, sites=fifty))
    assert [path for path, _ in problems] == ["date", "details.sites"]
    assert problems[1][1] == (
        f"110 U onabotulinumtoxinA in the 12 weeks from {earlier} with the toxin session of {earlier} is above the "
        "session cap, 100 U: Most per 12 weeks (EU-style text, blepharospasm); give details.override_reason to "
        "record it anyway"
    )
    forty = _at_the_ceiling(kb, 8, per_site=5 * per_ona)
    assert [path for path, _ in _record_toxin(engine, kb, _toxin(0, product=product, sites=forty))] == ["date"]
    reason = "top-up after a short effect, agreed with the patient"
    assert _record_toxin(engine, kb, _toxin(0, product=product, sites=fifty, override_reason=reason)) == []


def test_a_period_of_12_weeks_holds_only_the_sessions_within_it(engine: Engine, kb: KnowledgeBase) -> None:
    """Sessions of 60 U 13 weeks apart pass. One entered late between the first two, 6 weeks after one and 7 before
    the other, makes 120 U with either; no period of 12 weeks holds all three (180 U)."""
    _add_patient(engine)
    for days_ago in (182, 91, 0):
        assert _record_toxin(engine, kb, _toxin(days_ago, sites=_at_the_ceiling(kb, 12))) == []
    problems = _record_toxin(engine, kb, _toxin(140, sites=_at_the_ceiling(kb, 12)))
    assert [path for path, _ in problems] == ["date", "details.sites"]
    assert problems[1][1].startswith("120 U onabotulinumtoxinA in the 12 weeks from ")


def _plan_for(engine: Engine, kb: KnowledgeBase, assessment: dict[str, Any]) -> dict[str, str]:
    """Assess the patient and make their plan: its statuses by item."""
    _assess(engine, kb, assessment)
    with _session(engine) as s, s.begin():
        version = plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="tester", today=TODAY)
        statuses: dict[str, str] = version.summary["statuses"]
    return statuses


def test_every_procedure_a_session_takes_is_a_plan_item_with_words_for_the_history_and_the_chart(
    kb: KnowledgeBase,
) -> None:
    """The procedures are named in the session schema, the history's words and the chart's labels: one added to the
    schema alone would be recorded and then fail to show."""
    from hemicare.sessions.schemas import ProcedureDetails
    from hemicare.web.pages._shared import PROCEDURE_LABELS

    taken = set(typing.get_args(ProcedureDetails.model_fields["procedure"].annotation))
    assert taken == set(sessions.PROCEDURES) == set(PROCEDURE_LABELS) == {"nerve_block", "rf_ablation"}
    assert taken <= set(kb.treatments)


def test_a_procedure_on_the_facial_nerve_is_held_to_the_spasms_side_the_plan_and_the_safety_rules(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    """A nerve block or radiofrequency ablation weakens the face on the side done: one on the side without spasm, or
    with no assessment to say the side, needs a reason; so does one the plan holds back, or one a deferral rule holds
    for the patient (a pacemaker recorded after the plan) where the plan does not say it."""
    _add_patient(engine)
    ablation = {"kind": "procedure", "procedure": "rf_ablation", "side": "left", "notes": "CT-guided, 80 degrees"}
    assert _record(engine, kb, ablation) == [
        (
            "details.side",
            "no assessment is recorded, so the left side is unchecked; give details.override_reason to record it "
            "anyway",
        )
    ]
    assert _record(engine, kb, {**ablation, "procedure": "laser"})[0][0] == "details.procedure"
    out_of_options = patient(preferences={"avoid_surgery": True, "avoid_injections": True})  # spasm on the left
    assert _plan_for(engine, kb, out_of_options)["rf_ablation"] == "option"
    assert _record(engine, kb, {**ablation, "side": "right"}) == [
        (
            "details.side",
            "the spasm is on the left side by the latest assessment, not the right; give details.override_reason to "
            "record it anyway",
        )
    ]
    assert _record(engine, kb, ablation) == []
    with _session(engine) as s:
        (row,) = sessions.list_for(s, patient=patients.get(s, code="p-001"))
        assert row.kind == "procedure"
        assert sessions.describe(row.kind, row.data) == "radiofrequency ablation, left side; CT-guided, 80 degrees"
        assert sessions.outcome_words(row.kind, row.data) == ""
        session_id = row.id
    # A pacemaker fitted since the plan: the deferral rule asks, by the assessment that says so.
    _assess(
        engine, kb, patient(preferences={"avoid_surgery": True, "avoid_injections": True}, comorbidities=["pacemaker"])
    )
    ((path, message),) = _record(engine, kb, ablation)
    assert path == "details.override_reason"
    assert message.startswith(
        "Percutaneous radiofrequency ablation at the stylomastoid foramen is deferred for this patient"
    )
    assert "Radiofrequency ablation with a pacemaker or ICD" in message
    assert _record(engine, kb, {**ablation, "procedure": "nerve_block"}) == []  # no rule holds a nerve block back
    # A plan made since says it itself: its status asks, once.
    with _session(engine) as s, s.begin():
        version = plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="tester", today=TODAY)
        assert version.summary["statuses"]["rf_ablation"] == "deferred"
    ((path, message),) = _record(engine, kb, ablation)
    assert message.startswith(f"plan version {version.number} has Percutaneous radiofrequency ablation")
    assert "deferred" in message
    # Every rule is asked, not only the first that holds: a plan that said the bleeding disorder does not speak for a
    # pacemaker fitted since.
    no_injections = {"avoid_surgery": True, "avoid_injections": True}
    _plan_for(engine, kb, patient(preferences=no_injections, comorbidities=["bleeding_disorder"]))
    _assess(engine, kb, patient(preferences=no_injections, comorbidities=["bleeding_disorder", "pacemaker"]))
    (_, by_plan), (_, by_rule) = _record(engine, kb, ablation)
    assert "Radiofrequency ablation with a coagulopathy or anticoagulation" in by_plan
    assert "Radiofrequency ablation with a pacemaker or ICD" in by_rule
    # What came of it follows, as a toxin session's does: weeks of relief and side effects, not an operation's result.
    with _session(engine) as s, s.begin():
        p001 = patients.get(s, code="p-001")
        with pytest.raises(InputError) as refused:
            sessions.record_outcome(
                s, patient=p001, session_id=session_id, outcome=SessionOutcome(result="cured"), actor="Dr N"
            )
        assert [(p.path, p.message) for p in refused.value.problems] == [
            ("result", "does not apply to a procedure session (it takes effect_weeks, adverse_effects)")
        ]
        outcome = SessionOutcome(effect_weeks=40, adverse_effects=["facial weakness"])
        row = sessions.record_outcome(s, patient=p001, session_id=session_id, outcome=outcome, actor="Dr N")
        assert sessions.outcome_words(row.kind, row.data) == "effect 40 weeks; facial weakness"


def test_a_toxin_session_holds_only_what_its_plans_can_read_back(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    """Every plan reads the toxin sessions recorded back into the assessment's history, which holds side effects of 1
    to 120 characters and up to 1000 U a session: a session holding more was stored, and every later plan for the
    patient failed (a server error). It is refused naming the field, recorded or amended; one stored before is read
    back as the history holds it (an empty effect dropped, a long one cut), and the session keeps what was written."""
    _add_patient(engine)
    _assess(engine, kb, baseline)

    def refused(model: type[SessionCreate | SessionOutcome], data: dict[str, Any]) -> list[tuple[str, str]]:
        with pytest.raises(InputError) as caught:
            validate_model(model, data)
        return [(problem.path, problem.message) for problem in caught.value.problems]

    made = {"date": TODAY.isoformat(), "clinician": "Dr N"}
    toxin = _toxin(0).details.model_dump(mode="json")
    assert refused(SessionCreate, {**made, "details": {**toxin, "adverse_effects": ["x" * 121, ""]}}) == [
        ("details.adverse_effects.0", "String should have at most 120 characters"),
        ("details.adverse_effects.1", "String should have at least 1 character (got '')"),
    ]
    sites = [{"site": f"site-{index}", "side": "left", "units": 100} for index in range(10)]
    assert validate_model(SessionCreate, {**made, "details": {**toxin, "sites": sites}})  # 1000 U: the most
    assert refused(SessionCreate, {**made, "details": {**toxin, "sites": [*sites, {**sites[0], "units": 0.5}]}}) == [
        ("details.sites", "the sites add up to 1000.5 U; a session holds at most 1000 U")
    ]
    assert refused(SessionOutcome, {"adverse_effects": ["ptosis", "x" * 121]}) == [
        ("adverse_effects.1", "String should have at most 120 characters")
    ]
    assert validate_model(SessionOutcome, {"adverse_effects": ["x" * 120]})
    # A session stored before, holding what is now refused.
    assert _record_toxin(engine, kb, _toxin(100, adverse_effects=["ptosis"])) == []
    written = ["", "ptosis of the left upper lid " * 6]
    with _session(engine) as s, s.begin():
        row = s.scalars(select(TreatmentSession)).one()
        row.data = {**row.data, "adverse_effects": written}
    with _session(engine) as s, s.begin():
        version = plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="t", today=TODAY)
        toxin_plan = next(rec for rec in version.content["recommendations"] if rec["id"] == "botulinum_toxin")
        assert f"Adverse effect {written[1][:117] + '...'!r} has no titration rule" in " ".join(toxin_plan["rationale"])
        assert s.scalars(select(TreatmentSession)).one().data["adverse_effects"] == written


def test_a_medicine_prescription_is_checked_against_the_plan(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    """Its safety rules act through the plan: carbamazepine for a carrier of HLA-B*15:02 needs a reason, for a tested
    non-carrier in mild HFS it does not; before any plan it is unchecked, and needs a reason too."""
    _add_patient(engine)
    gabapentin = {"kind": "medicine", "medicine": "gabapentin", "dose": "300 mg at night"}
    assert _record(engine, kb, gabapentin) == [
        (
            "details.override_reason",
            "no plan is made for this patient, so gabapentin is unchecked against the safety rules; record an "
            "assessment first, or give details.override_reason to record it anyway",
        )
    ]
    assert _record(engine, kb, {**gabapentin, "medicine": "aspirin", "override_reason": "only one he tolerates"}) == [
        (
            "details.medicine",
            "unknown medicine 'aspirin'; known: baclofen, carbamazepine, clonazepam, gabapentin, levetiracetam, "
            "oxcarbazepine",
        )
    ]
    carbamazepine = {"kind": "medicine", "medicine": "carbamazepine", "dose": "100 mg twice a day", "duration_days": 30}
    mild = {"severity": {"smc_grade": 1}, "ancestry": ["Han Chinese"]}
    assert _plan_for(engine, kb, patient(hla_b1502="positive", **mild))["medication:carbamazepine"] == "contraindicated"
    ((path, message),) = _record(engine, kb, carbamazepine)
    assert path == "details.override_reason"
    assert message.startswith("plan version 1 has Carbamazepine contraindicated (")
    assert "Carbamazepine with HLA-B*15:02: Avoid carbamazepine" in message
    with _session(engine) as s:
        assert sessions.list_for(s, patient=patients.get(s, code="p-001")) == []
    assert _plan_for(engine, kb, patient(hla_b1502="negative", **mild))["medication:carbamazepine"] == "option"
    assert _record(engine, kb, carbamazepine) == []
    with _session(engine) as s:
        (row,) = sessions.list_for(s, patient=patients.get(s, code="p-001"))
        assert (row.kind, row.clinician) == ("medicine", "L. Zhang")
        assert sessions.describe(row.kind, row.data) == "carbamazepine 100 mg twice a day, 30 days"
    reason = "patient prefers tablets; reviewed the risks"
    neurontin = {**gabapentin, "medicine": "Neurontin", "notes": "titrate", "override_reason": reason}
    assert _record(engine, kb, neurontin) == []  # a brand the knowledge base knows: kept under its generic name
    with _session(engine) as s:
        row = sessions.list_for(s, patient=patients.get(s, code="p-001"), kind="medicine")[-1]
        assert (
            sessions.describe(row.kind, row.data) == f"gabapentin 300 mg at night; titrate; override reason: {reason}"
        )
    # Checked as its generic: Tegretol for a carrier of HLA-B*15:02 is carbamazepine.
    _plan_for(engine, kb, patient(hla_b1502="positive", **mild))
    (again, (path, message)) = _record(engine, kb, {**carbamazepine, "medicine": "TEGRETOL"})
    assert message.startswith("plan version 3 has Carbamazepine contraindicated (")
    # The carbamazepine recorded above runs today too: one medicine, two prescriptions.
    assert again == (
        "details.medicine",
        f"carbamazepine is prescribed already on some of the same days (the prescription of {TODAY.isoformat()} "
        f"(until {(TODAY + dt.timedelta(days=29)).isoformat()})): doses as written cannot be added up; stop the "
        "other prescription on the day this one starts, or give details.override_reason to record it anyway",
    )
    known = sorted(t.removeprefix("medication:") for t in kb.treatments if t.startswith("medication:"))
    assert _record(engine, kb, {**gabapentin, "medicine": "warfarin", "override_reason": reason}) == [
        ("details.medicine", f"unknown medicine 'warfarin'; known: {', '.join(known)}")  # a drug, not an HFS one
    ]


def _lift(engine: Engine, kb: KnowledgeBase, item: str, *, to: str, role: str) -> None:
    """Sign the latest plan, changing ``item`` to ``to``: a clinician lifting an item the plan set aside."""
    edit = PlanEdit(recommendation=item, status=to, reason="the patient asks for it; discussed")
    with _session(engine) as s, s.begin():
        number = plans.latest(s, patient=patients.get(s, code="p-001")).number
        _sign(s, kb, number=number, edits=[edit], by="Dr N", role=role)


def test_an_item_lifted_at_sign_off_brings_the_alerts_the_plan_would_have_raised(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    """Carbamazepine is not recommended beside MVD and toxin, so the plan says nothing of HLA-B*15:02. A neurologist
    who lifts it to an option signs a version that says it (the critical alert on the item, a line in its rationale),
    and keeps the status chosen: a prescription then goes through, lifted knowingly. Electroacupuncture declined with
    a pacemaker likewise brings the device rule; acupuncture lifted for a patient on warfarin brings the needling
    caution, and its points are those the plan would give (no Taiyang)."""
    _add_patient(engine)
    statuses = _plan_for(engine, kb, patient(hla_b1502="positive", ancestry=["Han Chinese"]))
    assert statuses["medication:carbamazepine"] == "not_recommended"
    with _session(engine) as s:
        before = plans.latest(s, patient=patients.get(s, code="p-001")).content
    assert not [a for a in before["alerts"] if a["id"] == "carbamazepine_hla_positive"]
    _lift(engine, kb, "medication:carbamazepine", to="option", role="neurologist")
    with _session(engine) as s:
        signed = plans.latest(s, patient=patients.get(s, code="p-001"))
        (alert,) = [a for a in signed.content["alerts"] if a["id"] == "carbamazepine_hla_positive"]
        rec = next(r for r in signed.content["recommendations"] if r["id"] == "medication:carbamazepine")
        assert signed.summary["severities"]["carbamazepine_hla_positive"] == "critical"
    assert alert["affects"] == ["medication:carbamazepine"] and alert["severity"] == "critical"
    assert signed.content["alerts"][0]["severity"] == "critical"  # critical alerts stay first
    assert rec["status"] == "option"
    assert (
        rec["rationale"][-1] == "Lifted at sign-off while these hold for the patient: Carbamazepine with HLA-B*15:02."
    )
    carbamazepine = {"kind": "medicine", "medicine": "carbamazepine", "dose": "100 mg twice a day", "duration_days": 30}
    assert _record(engine, kb, carbamazepine) == []

    statuses = _plan_for(
        engine, kb, patient(comorbidities=["pacemaker"], medications=["Coumadin"], preferences={"avoid_needles": True})
    )
    assert statuses["acupuncture"] == statuses["electroacupuncture"] == "not_recommended"
    _lift(engine, kb, "acupuncture", to="option", role="tcm_practitioner")
    _lift(engine, kb, "electroacupuncture", to="option", role="tcm_practitioner")
    with _session(engine) as s:
        signed = plans.latest(s, patient=patients.get(s, code="p-001")).content
    affected = {a["id"]: a["affects"] for a in signed["alerts"]}
    assert affected["device_electroacupuncture"] == ["electroacupuncture"]
    assert affected["warfarin_needling"] == ["acupuncture", "electroacupuncture"]
    acupuncture = next(r for r in signed["recommendations"] if r["id"] == "acupuncture")
    assert "EX-HN5" not in {p["code"] for p in acupuncture["details"]["points"]}
    # Taiyang was taken out when the plan was made (removals act on a declined item's points): the caution is new.
    assert acupuncture["rationale"][-1] == "Lifted at sign-off while these hold for the patient: Needling on warfarin."
    # Lifting an item to another held-back status, or changing an offered one, brings nothing.
    _lift(engine, kb, "medication:carbamazepine", to="deferred", role="neurologist")
    with _session(engine) as s:
        again = plans.latest(s, patient=patients.get(s, code="p-001")).content
    assert again["alerts"] == signed["alerts"]


def test_the_options_side_by_side_follow_the_statuses_a_clinician_signs(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    """The decision aid of a signed version shows what the signer decided: an option set aside leaves it, an item
    lifted to an offer joins it with its figures and their citations, a changed status is the one its column says."""

    def aid() -> tuple[list[tuple[str, str | None]], dict[str, Any]]:
        with _session(engine) as s:
            content = plans.latest(s, patient=patients.get(s, code="p-001")).content
        return [(c["option"], c["status"]) for c in content["decision_aid"]["columns"]], content

    _add_patient(engine)
    statuses = _plan_for(engine, kb, patient())
    assert statuses["mvd"] == "option" and statuses["rf_ablation"] == "not_recommended"
    columns, generated = aid()
    assert columns[:3] == [("no_treatment", None), ("botulinum_toxin", "recommended"), ("mvd", "option")]
    assert "rf_ablation" not in dict(columns)
    _lift(engine, kb, "mvd", to="not_recommended", role="neurosurgeon")
    _lift(engine, kb, "botulinum_toxin", to="option", role="neurologist")
    _lift(engine, kb, "rf_ablation", to="option", role="neurologist")
    columns, signed = aid()
    assert "mvd" not in dict(columns)
    assert dict(columns)["botulinum_toxin"] == "option" and dict(columns)["rf_ablation"] == "option"
    assert [option for option, _ in columns] == [  # in the plan's order, nothing else moved
        option
        for option in ["no_treatment", *(rec["id"] for rec in signed["recommendations"])]
        if option in dict(columns)
    ]
    rf = next(c for c in signed["decision_aid"]["columns"] if c["option"] == "rf_ablation")
    cited = set(rf["evidence"]["references"]) | {
        ref for cell in rf["answers"].values() for figure in cell["figures"] for ref in figure["evidence"]["references"]
    }
    assert cited and cited <= set(signed["references"])
    unchanged = {c["option"]: c for c in generated["decision_aid"]["columns"]}["no_treatment"]
    assert signed["decision_aid"]["columns"][0] == unchanged
    _lift(engine, kb, "mvd", to="recommended", role="neurosurgeon")
    assert dict(aid()[0])["mvd"] == "recommended"  # back, with the column the knowledge base gives


def test_a_contraindication_holds_at_recording_where_the_plan_in_force_does_not_say_it(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    """A pacemaker in the latest assessment, the plan in force made before it, offering electroacupuncture: the
    session needs a reason naming the device rule, as the plan would have deferred it. Needling alone does not."""
    _add_patient(engine)
    assert _plan_for(engine, kb, patient())["electroacupuncture"] == "option"
    _assess(engine, kb, patient(comorbidities=["pacemaker"]))  # no new plan made from it
    needles = {"kind": "acupuncture", "points": ["LI4", "LR3"]}
    assert _record(engine, kb, needles) == []
    _refused_until_a_reason(
        engine,
        kb,
        {**needles, "electro": True},
        path="details.override_reason",
        starts="Electroacupuncture (distal, hand) is deferred for this patient: Electroacupuncture with a pacemaker or "
        "ICD. No electroacupuncture without cardiology input",
        ends="Hold it, or give details.override_reason to record it anyway",
    )


def test_a_medicine_prescribed_again_while_the_last_prescription_runs_needs_a_reason(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    """Baclofen without a course from 20 days ago, not stopped: a new dose today overlaps it, and so does one entered
    late for 5 days from 25 days ago; one ending the day before it began does not, nor does another medicine. Stopped
    today, it no longer overlaps a prescription from today."""
    _add_patient(engine)
    _plan_for(engine, kb, patient())
    reason = "spasm worse at night; reviewed"
    baclofen = {"kind": "medicine", "medicine": "baclofen", "dose": "5 mg three times a day", "override_reason": reason}
    assert _record(engine, kb, baclofen, days_ago=20) == []
    started = (TODAY - dt.timedelta(days=20)).isoformat()
    again = (
        "details.medicine",
        f"baclofen is prescribed already on some of the same days (the prescription of {started}): doses as written "
        "cannot be added up; stop the other prescription on the day this one starts, or give details.override_reason "
        "to record it anyway",
    )
    assert _record(engine, kb, {**baclofen, "override_reason": None, "dose": "10 mg three times a day"})[0] == again
    assert _record(engine, kb, {**baclofen, "override_reason": None, "duration_days": 6}, days_ago=25)[0] == again
    assert _record(engine, kb, {**baclofen, "duration_days": 5}, days_ago=25) == []  # its last day: the 21st
    assert _record(engine, kb, {**baclofen, "medicine": "gabapentin"}) == []
    with _session(engine) as s, s.begin():
        patient_row = patients.get(s, code="p-001")
        [first] = [
            r for r in sessions.list_for(s, patient=patient_row, kind="medicine") if r.date.isoformat() == started
        ]
        sessions.record_outcome(
            s, patient=patient_row, session_id=first.id, outcome=SessionOutcome(stopped=TODAY), actor="t"
        )
    assert _record(engine, kb, {**baclofen, "dose": "10 mg three times a day"}) == []


def _unknown_to_the_plan(engine: Engine, kb: KnowledgeBase) -> tuple[list[str], list[str]]:
    """What p-001's page says was recorded since the plan was made, and the alerts a recheck finds the plan would
    gain."""
    with _session(engine) as s:
        since = sessions.recorded_since(s, patient=patients.get(s, code="p-001"))
        [change] = plans.recheck(s, kb=kb, today=TODAY, actor="t")
    return since, change.alerts_added


def _stop_today(engine: Engine, kind: str, prescribed: str) -> None:
    """Record today as the day p-001's prescription (of a medicine or herbs) of that date was stopped, after seeing the
    day before it refused."""
    day_before = (dt.date.fromisoformat(prescribed) - dt.timedelta(days=1)).isoformat()
    with _session(engine) as s, s.begin():
        patient = patients.get(s, code="p-001")
        [row] = [r for r in sessions.list_for(s, patient=patient, kind=kind) if r.date.isoformat() == prescribed]
        with pytest.raises(InputError) as refused:
            sessions.record_outcome(
                s, patient=patient, session_id=row.id, outcome=SessionOutcome(stopped=day_before), actor="t"
            )
        assert [(p.path, p.message) for p in refused.value.problems] == [
            ("stopped", f"{day_before} is before the prescription of {prescribed}")
        ]
        sessions.record_outcome(s, patient=patient, session_id=row.id, outcome=SessionOutcome(stopped=TODAY), actor="t")
        assert sessions.outcome_words(row.kind, row.data) == f"stopped {TODAY.isoformat()}"


def test_a_medicine_the_patient_still_takes_is_read_by_the_next_plan(engine: Engine, kb: KnowledgeBase) -> None:
    """Carbamazepine prescribed in the records: the patient page and the recheck say the plan does not know it; the
    next version warns about herbs with it (as it would with carbamazepine in the assessment); once stopped, or
    once its course is over, it is not read any more."""
    _add_patient(engine)
    demo = read_file(EXAMPLES / "demo-001.yaml")  # wants integrative care, with the findings a formula is chosen on
    assert _plan_for(engine, kb, demo | {"medications": []})["herbal_formula"] in ("recommended", "option")
    reason = "declines toxin for now"
    prescribed = (TODAY - dt.timedelta(days=5)).isoformat()
    course = {"kind": "medicine", "medicine": "carbamazepine", "dose": "100 mg bd", "override_reason": reason}
    assert _record(engine, kb, {**course, "duration_days": 30}, days_ago=5) == []
    assert _record(engine, kb, {**course, "duration_days": 30}, days_ago=40) == []  # over 10 days ago
    since, added = _unknown_to_the_plan(engine, kb)
    assert since == [f"prescription of {(TODAY - dt.timedelta(days=40)).isoformat()}", f"prescription of {prescribed}"]
    assert "carbamazepine_herbs" in added

    def alerts() -> dict[str, list[str]]:
        with _session(engine) as s, s.begin():
            version = plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="t", today=TODAY)
            return {alert["id"]: alert["affects"] for alert in version.content["alerts"]}

    assert "herbal_formula" in alerts()["carbamazepine_herbs"]
    _stop_today(engine, "medicine", prescribed)
    with _session(engine) as s:
        assert sessions.recorded_since(s, patient=patients.get(s, code="p-001")) == [
            f"the outcome of the prescription of {prescribed}"
        ]
    assert "carbamazepine_herbs" not in alerts()


def test_a_herbal_prescription_still_taken_is_read_by_the_next_plan(engine: Engine, kb: KnowledgeBase) -> None:
    """Tian Ma Gou Teng Yin's Tian Ma and Gou Teng with Chai Hu added, prescribed 3 days ago for 14: the patient page
    and the recheck say the plan does not know it; the next version says the formula's two herbs are taken already
    (not that they are unchecked) and that Chai Hu, outside the formula, is not checked against the plan. Once
    stopped, or once its days are over, it is not read any more."""
    _add_patient(engine)
    demo = read_file(EXAMPLES / "demo-001.yaml")
    assert _plan_for(engine, kb, demo)["herbal_formula"] in ("recommended", "option")
    herbs = [
        {"latin": "Tian Ma", "dose_g": 9},
        {"latin": "Ramulus Uncariae cum Uncis", "dose_g": 12},
        {"latin": "Chai Hu", "dose_g": 6},
    ]
    prescription = {"kind": "herbal", "formula": "tian_ma_gou_teng_yin", "herbs": herbs, "duration_days": 14}
    assert _record(engine, kb, prescription, days_ago=3) == []
    assert _record(engine, kb, {**prescription, "herbs": herbs[-1:]}, days_ago=20) == []  # its last day was 7 days ago
    prescribed = (TODAY - dt.timedelta(days=3)).isoformat()
    since, added = _unknown_to_the_plan(engine, kb)
    assert since == [
        f"herbal prescription of {(TODAY - dt.timedelta(days=20)).isoformat()}",
        f"herbal prescription of {prescribed}",
    ]
    assert {"herbs_already_taken", "unchecked:herb:Radix Bupleuri"} <= set(added)

    def alerts() -> dict[str, dict[str, Any]]:
        with _session(engine) as s, s.begin():
            version = plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="t", today=TODAY)
            return {alert["id"]: alert for alert in version.content["alerts"]}

    found = alerts()
    assert found["herbs_already_taken"]["affects"] == ["herb:Rhizoma Gastrodiae", "herb:Ramulus Uncariae cum Uncis"]
    assert found["unchecked:herb:Radix Bupleuri"]["severity"] == "warning"
    assert not [name for name in found if name.startswith("unchecked:herb:R") and "Bupleuri" not in name]
    _stop_today(engine, "herbal", prescribed)
    found = alerts()
    assert "herbs_already_taken" not in found and "unchecked:herb:Radix Bupleuri" not in found


def test_a_safety_rule_on_a_medicine_reaches_one_prescribed_in_the_records(
    engine: Engine, baseline: dict[str, Any], kb_tree: Any
) -> None:
    """A knowledge base in which sedation takes Jiang Can out of the plans (in the packaged one it is a caution): a
    prescription of Jiang Can for a patient the records show taking clonazepam needs a reason, as it would if the
    assessment listed clonazepam; after clonazepam is stopped it does not."""
    import yaml

    from hemicare.engine import load

    rule = kb_tree / "rules/safety/sedative_combination.yaml"
    rule.write_text(yaml.safe_dump(yaml.safe_load(rule.read_text()) | {"action": "remove"}, sort_keys=False))
    kb = load(kb_tree)
    _add_patient(engine)
    _assess(engine, kb, baseline | {"medications": []})
    clonazepam = {"kind": "medicine", "medicine": "clonazepam", "dose": "0.5 mg at night", "override_reason": "tried"}
    assert _record(engine, kb, clonazepam, days_ago=3) == []
    jiang_can = {
        "kind": "herbal",
        "herbs": [{"latin": "Jiang Can", "dose_g": 5}],
        "duration_days": 7,
    }  # twice is 10 g, the top
    ((path, message),) = _record(engine, kb, jiang_can)
    assert path == "details.herbs.0.latin"
    assert message.startswith("Bombyx Batryticatus is taken out of this patient's plans: Additive sedation")
    assert _record(engine, kb, jiang_can, days_ago=4) == []  # before clonazepam was started
    with _session(engine) as s, s.begin():
        patient = patients.get(s, code="p-001")
        [row] = sessions.list_for(s, patient=patient, kind="medicine")
        sessions.record_outcome(s, patient=patient, session_id=row.id, outcome=SessionOutcome(stopped=TODAY), actor="t")
    assert _record(engine, kb, jiang_can) == []


def test_a_toxic_herb_prescribed_again_on_days_another_prescription_gives_it_adds_up(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    """Quan Xie 4 g a day boiled for 14 days from 10 days ago (its reference top is 6 g): a renewal of 4 g today makes
    8 g a day and needs a reason naming that prescription; 2 g does not pass 6, and a prescription ending the day the
    other began does not overlap it. Quan Xie as a powder on those days cannot be added to the boiled dose. Once the
    first is stopped today, the renewal passes."""
    _add_patient(engine)
    _assess(engine, kb, baseline)
    reason = "written from the paper chart"
    quan_xie = {"kind": "herbal", "herbs": [{"latin": "Quan Xie", "dose_g": 4}], "duration_days": 14}
    assert _record(engine, kb, {**quan_xie, "override_reason": reason}, days_ago=10) == []
    started, last = (TODAY - dt.timedelta(days=10)).isoformat(), (TODAY + dt.timedelta(days=3)).isoformat()

    def overlap(details: dict[str, Any], days_ago: int = 0) -> list[str]:
        problems = _record(engine, kb, details, days_ago=days_ago)
        return [message for path, message in problems if path == "details.herbs.0.dose_g"]

    assert overlap(quan_xie) == [
        f"4 g a day of Scorpio (Quan Xie) with 4 g from the prescription of {started} (until {last}) is 8 g a day, "
        "above its reference daily decoction dose of 6 g (Decoction 3-6 g, powder 0.6-1 g (ChP-based); Bensky 2-4.5 g "
        "decoction); stop the other prescription on the day this one starts, or give details.override_reason to "
        "record it anyway"
    ]
    assert overlap({**quan_xie, "herbs": [{"latin": "Scorpio", "dose_g": 2}]}) == []
    assert overlap({**quan_xie, "duration_days": 5}, days_ago=15) == []  # its last day is the day before
    assert len(overlap({**quan_xie, "duration_days": 2}, days_ago=11)) == 1  # entered late, its last day overlaps
    # Alone above the top, it is said once, as the dose it is.
    [alone] = overlap({**quan_xie, "herbs": [{"latin": "Scorpio", "dose_g": 7}]})
    assert alone.startswith("7 g of Scorpio (Quan Xie) is above its reference daily decoction dose of 6 g")
    assert overlap({**quan_xie, "preparation": "powder", "herbs": [{"latin": "Scorpio", "dose_g": 0.5}]}) == [
        f"Scorpio (Quan Xie) is toxic and the prescription of {started} (until {last}) gives it boiled on some of the "
        "same days: doses taken both ways cannot be added up, so the day's dose is unchecked; stop the other "
        "prescription on the day this one starts, or give details.override_reason to record it anyway"
    ]
    assert overlap({**quan_xie, "herbs": [{"latin": "Tian Ma", "dose_g": 9}]}) == []  # no reference top to pass
    with _session(engine) as s, s.begin():
        patient = patients.get(s, code="p-001")
        [first] = [r for r in sessions.list_for(s, patient=patient, kind="herbal") if r.date.isoformat() == started]
        stopped = SessionOutcome(stopped=TODAY)
        sessions.record_outcome(s, patient=patient, session_id=first.id, outcome=stopped, actor="t")
    # Those that passed were recorded: 2 g from today (4 + 2 is not above 6) and Tian Ma.
    assert overlap(quan_xie) == []
    assert len(overlap({**quan_xie, "herbs": [{"latin": "Scorpio", "dose_g": 0.5}]})) == 1  # 2 + 4 + 0.5


def test_a_herb_written_by_another_name_is_kept_under_its_latin_name(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    """As a medicine is kept under its generic name: the history, the referral and the checks read one name."""
    _add_patient(engine)
    _assess(engine, kb, baseline)
    herbs = [
        {"latin": "quan xie", "dose_g": 3},
        {"latin": "天麻", "dose_g": 9},
        {"latin": "Radix Bupleuri", "dose_g": 6},
    ]
    assert _record(engine, kb, {"kind": "herbal", "herbs": herbs, "duration_days": 7}) == []
    with _session(engine) as s:
        [row] = sessions.list_for(s, patient=patients.get(s, code="p-001"), kind="herbal")
    assert [herb["latin"] for herb in row.data["herbs"]] == ["Scorpio", "Rhizoma Gastrodiae", "Radix Bupleuri"]
    assert sessions.describe(row.kind, row.data).startswith("Scorpio 3 g, Rhizoma Gastrodiae 9 g, Radix Bupleuri 6 g")


def test_a_medicine_that_takes_out_a_herb_being_taken_needs_a_reason(
    engine: Engine, baseline: dict[str, Any], kb_tree: Any
) -> None:
    """The other way round: Jiang Can prescribed for 14 days from 20 days ago, and clonazepam (with sedation taking
    Jiang Can out, as in the test above) dated within those days needs a reason naming the prescription and its last
    day; dated before or after them it does not. The check says only what the medicine changes."""
    import yaml

    from hemicare.engine import load

    rule = kb_tree / "rules/safety/sedative_combination.yaml"
    rule.write_text(yaml.safe_dump(yaml.safe_load(rule.read_text()) | {"action": "remove"}, sort_keys=False))
    kb = load(kb_tree)
    _add_patient(engine)
    _assess(engine, kb, baseline | {"medications": []})
    jiang_can = {"kind": "herbal", "herbs": [{"latin": "Jiang Can", "dose_g": 6}], "duration_days": 14}
    assert _record(engine, kb, jiang_can, days_ago=20) == []
    clonazepam = {"kind": "medicine", "medicine": "clonazepam", "dose": "0.5 mg at night"}
    started, last = (TODAY - dt.timedelta(days=20)).isoformat(), (TODAY - dt.timedelta(days=7)).isoformat()
    taken_out = (
        "details.medicine",
        f"clonazepam takes Bombyx Batryticatus out of this patient's plans (Additive sedation), and the prescription "
        f"of {started} gives it until {last}; give details.override_reason to record it anyway",
    )
    for days_ago in (20, 10, 7):
        assert taken_out in _record(engine, kb, clonazepam, days_ago=days_ago), days_ago
    for days_ago in (21, 6, 0):  # the day before the first, the day after the last
        assert taken_out not in _record(engine, kb, clonazepam, days_ago=days_ago), days_ago
    with _session(engine) as s:  # nothing stored: with no plan made, a medicine needs a reason anyway
        assert sessions.list_for(s, patient=patients.get(s, code="p-001"), kind="medicine") == []
    assert _record(engine, kb, {**clonazepam, "override_reason": "herbs stopped by phone"}, days_ago=10) == []
    # Taking clonazepam already, a second prescription of it changes nothing for the herbs.
    assert taken_out not in _record(engine, kb, {**clonazepam, "dose": "0.25 mg at night"}, days_ago=9)
    # Jiang Can stopped 12 days ago: clonazepam from then on takes nothing out, and before then the refusal names the
    # day before the stop as the prescription's last, not the last of its course.
    with _session(engine) as s, s.begin():
        patient = patients.get(s, code="p-001")
        [row] = sessions.list_for(s, patient=patient, kind="herbal")
        stopped = SessionOutcome(stopped=TODAY - dt.timedelta(days=12))
        sessions.record_outcome(s, patient=patient, session_id=row.id, outcome=stopped, actor="t")
    taken_until_stopped = (
        "details.medicine",
        taken_out[1].replace(f"until {last}", f"until {(TODAY - dt.timedelta(days=13)).isoformat()}"),
    )
    assert taken_until_stopped in _record(engine, kb, clonazepam, days_ago=13)
    assert taken_out not in _record(engine, kb, clonazepam, days_ago=13)
    assert not [said for _, said in _record(engine, kb, clonazepam, days_ago=12) if "Bombyx" in said]


def test_every_rule_that_takes_a_herb_out_is_named_not_only_the_first(
    engine: Engine, baseline: dict[str, Any], kb_tree: Any
) -> None:
    """Quan Xie for a pregnant patient with kidney disease is refused for both, each said on the herb. A knowledge
    base in which kidney disease takes Jiang Can out and sedation does too: Jiang Can given with a reason, then
    clonazepam needs one of its own, though a rule held the herb already: its prescriber is told of the herb."""
    import yaml

    from hemicare.engine import load

    for name, change in (
        ("sedative_combination", lambda rule: rule | {"action": "remove"}),
        (
            "toxic_herbs_organ_impairment",
            lambda rule: rule | {"targets": {"herbs": [*rule["targets"]["herbs"], "Bombyx Batryticatus"]}},
        ),
    ):
        path = kb_tree / f"rules/safety/{name}.yaml"
        path.write_text(yaml.safe_dump(change(yaml.safe_load(path.read_text())), sort_keys=False))
    kb = load(kb_tree)
    _add_patient(engine)
    kidneys = {"sex": "female", "age": 34, "medications": [], "comorbidities": ["chronic_kidney_disease"]}
    _assess(engine, kb, baseline | kidneys | {"pregnant": True})
    quan_xie = {"kind": "herbal", "herbs": [{"latin": "Quan Xie", "dose_g": 3}], "duration_days": 14}
    refused = _record(engine, kb, quan_xie)
    assert [path for path, _ in refused] == ["details.herbs.0.latin"] * 2
    assert (
        "Herbs forbidden in pregnancy" in refused[0][1] and "Toxic herbs with kidney or liver disease" in refused[1][1]
    )
    _assess(engine, kb, baseline | kidneys)
    jiang_can = {"kind": "herbal", "herbs": [{"latin": "Jiang Can", "dose_g": 6}], "duration_days": 14}
    assert _record(engine, kb, {**jiang_can, "override_reason": "renal team agreed"}, days_ago=3) == []
    clonazepam = {"kind": "medicine", "medicine": "clonazepam", "dose": "0.5 mg at night"}
    said = [message for path, message in _record(engine, kb, clonazepam) if path == "details.medicine"]
    assert [message for message in said if "takes Bombyx Batryticatus out" in message] == [
        f"clonazepam takes Bombyx Batryticatus out of this patient's plans (Additive sedation), and the prescription "
        f"of {(TODAY - dt.timedelta(days=3)).isoformat()} gives it until {TODAY + dt.timedelta(days=10)}; give "
        "details.override_reason to record it anyway"
    ]


def test_a_medicine_that_brings_a_caution_on_herbs_being_taken_needs_a_reason(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    """The other way round of the caution checks at prescribing: Jiang Can prescribed three days ago for 14 days, then
    a sedating medicine (the packaged rule cautions, not removes) or carbamazepine (monitor its levels if herbs are
    started) needs a reason naming the prescription; levetiracetam does not."""
    _add_patient(engine)
    _assess(engine, kb, baseline | {"medications": []})
    jiang_can = {"kind": "herbal", "herbs": [{"latin": "Jiang Can", "dose_g": 6}], "duration_days": 14}
    assert _record(engine, kb, jiang_can, days_ago=3) == []
    given = f"the prescription of {(TODAY - dt.timedelta(days=3)).isoformat()} (until {TODAY + dt.timedelta(days=10)})"

    def cautions(medicine: str) -> list[str]:
        prescription = {"kind": "medicine", "medicine": medicine, "dose": "as on the label"}
        return [said for _, said in _record(engine, kb, prescription) if "is cautioned for this patient" in said]

    (sedation,) = cautions("clonazepam")
    assert sedation.startswith(
        f"clonazepam with Bombyx Batryticatus, which {given} gives, is cautioned for this patient: Additive sedation. "
    )
    assert sedation.endswith("Leave it out, or give details.override_reason to record it anyway")
    assert cautions("baclofen") == [sedation.replace("clonazepam with", "baclofen with", 1)]
    (levels,) = cautions("carbamazepine")
    assert levels.startswith(
        f"carbamazepine with the herbs {given} gives is cautioned for this patient: Herbs with carbamazepine. "
    )
    assert "Monitor carbamazepine levels if herbs are started." in levels
    assert cautions("levetiracetam") == []
    # Jiang Can stopped today: nothing is taken from today on, so nothing is cautioned.
    with _session(engine) as s, s.begin():
        patient = patients.get(s, code="p-001")
        [row] = sessions.list_for(s, patient=patient, kind="herbal")
        sessions.record_outcome(s, patient=patient, session_id=row.id, outcome=SessionOutcome(stopped=TODAY), actor="t")
    assert cautions("carbamazepine") == [] and cautions("clonazepam") == []


def test_a_medicine_dated_back_is_held_to_the_assessment_in_force_on_its_day(
    engine: Engine, baseline: dict[str, Any], kb_tree: Any
) -> None:
    """A knowledge base in which sedation takes Jiang Can out in pregnancy only. The assessment of 30 days ago records
    a pregnancy that today's does not; Jiang Can runs from 20 days ago for 14 days. Clonazepam dated 10 days ago, in
    the pregnancy's weeks, needs a reason naming that assessment; dated today, after the prescription, it does not."""
    import yaml

    from hemicare.engine import load

    rule = kb_tree / "rules/safety/sedative_combination.yaml"
    data = yaml.safe_load(rule.read_text())
    data |= {"action": "remove", "when": {"all": [data["when"], {"fact": "pregnant", "equals": True}]}}
    rule.write_text(yaml.safe_dump(data, sort_keys=False))
    kb = load(kb_tree)
    _add_patient(engine)
    _assess(engine, kb, baseline | {"sex": "female", "age": 34, "pregnant": True, "medications": []}, days_ago=30)
    _assess(engine, kb, baseline | {"sex": "female", "age": 34, "medications": []})
    jiang_can = {"kind": "herbal", "herbs": [{"latin": "Jiang Can", "dose_g": 6}], "duration_days": 14}
    assert _record(engine, kb, {**jiang_can, "override_reason": "checked with obstetrics"}, days_ago=20) == []
    clonazepam = {"kind": "medicine", "medicine": "clonazepam", "dose": "0.5 mg at night"}
    in_force = (TODAY - dt.timedelta(days=30)).isoformat()
    started, last = (TODAY - dt.timedelta(days=20)).isoformat(), (TODAY - dt.timedelta(days=7)).isoformat()
    assert (
        "details.medicine",
        f"clonazepam takes Bombyx Batryticatus out of this patient's plans by the assessment of {in_force}, in force "
        f"on that day (Additive sedation), and the prescription of {started} gives it until {last}; give "
        "details.override_reason to record it anyway",
    ) in _record(engine, kb, clonazepam, days_ago=10)
    assert not [path for path, _ in _record(engine, kb, clonazepam) if path == "details.medicine"]


@pytest.mark.parametrize(
    ("revision", "kind", "refusal"),
    [("0011", "medicine", "1 medicine prescriptions are recorded"), ("0012", "procedure", "1 procedures are recorded")],
)
def test_a_migration_adding_a_kind_of_session_takes_it_and_goes_back_only_without_it(
    db_url: str, revision: str, kind: str, refusal: str
) -> None:
    from hemicare.db.engine import make_engine

    engine = make_engine(db_url)
    upgrade(engine, revision)
    previous = f"{int(revision) - 1:04d}"
    insert = text(
        "INSERT INTO treatment_sessions (patient_id, kind, date, clinician, data, created_at, created_by) "
        "SELECT id, :kind, :today, 'Dr N', '{}', :now, 'test' FROM patients"
    )
    _add_patient(engine)
    with engine.begin() as connection:
        connection.execute(insert, {"kind": kind, "today": TODAY, "now": dt.datetime.now(dt.UTC)})
    with pytest.raises(DBAPIError), engine.begin() as connection:  # the check on kinds is still there
        connection.execute(insert, {"kind": "massage", "today": TODAY, "now": dt.datetime.now(dt.UTC)})
    with pytest.raises(RuntimeError, match=refusal):
        downgrade(engine, previous)
    assert current_revision(engine) == revision
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM treatment_sessions"))
    downgrade(engine, previous)
    with pytest.raises(DBAPIError), engine.begin() as connection:
        connection.execute(insert, {"kind": kind, "today": TODAY, "now": dt.datetime.now(dt.UTC)})
    engine.dispose()


def test_the_stated_preferences_migration_goes_back_only_with_nothing_stated(db_url: str) -> None:
    from sqlalchemy import inspect

    from hemicare.db.engine import make_engine

    engine = make_engine(db_url)
    upgrade(engine, "0013")
    _add_patient(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO stated_preferences (patient_id, date, answers, created_at, created_by) "
                "SELECT id, :today, '{\"avoid_surgery\": \"yes\"}', :now, 'p' FROM patients"
            ),
            {"today": TODAY, "now": dt.datetime.now(dt.UTC)},
        )
    with pytest.raises(RuntimeError, match="1 statements of what matters to patients are recorded"):
        downgrade(engine, "0012")
    assert current_revision(engine) == "0013"
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM stated_preferences"))
    downgrade(engine, "0012")
    assert "stated_preferences" not in inspect(engine).get_table_names()
    engine.dispose()


def test_versions_signed_before_changes_were_counted_are_counted_from_their_edits(
    db_url: str, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    """Upgrading to 0014 counts each reviewed version's edits, so the sign-off list, which now reads only versions
    with changes, still lists what was changed before the upgrade."""
    from hemicare.db.engine import make_engine

    engine = make_engine(db_url)
    upgrade(engine, "0013")
    _add_patient(engine)
    edits = [
        {"recommendation": "mvd", "from": "recommended", "to": "option", "reason": "Anaesthetic risk"},
        {"recommendation": "baclofen", "from": "not_recommended", "to": "option", "reason": "Refuses injections"},
    ]
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO assessments (patient_id, assessed_on, schema_version, data, created_by, created_at) "
                "SELECT id, :today, 1, :data, 't', :now FROM patients"
            ),
            {"today": TODAY, "data": json.dumps(baseline), "now": dt.datetime.now(dt.UTC)},
        )
        for number, kind, edited in ((1, "generated", []), (2, "reviewed", edits), (3, "reviewed", [])):
            connection.execute(
                text(
                    "INSERT INTO plan_versions (patient_id, number, assessment_id, kind, knowledge_version, "
                    "hemicare_version, content, summary, edits, signed_by, signed_role, signed_at, created_by, "
                    "created_at) SELECT p.id, :number, a.id, :kind, 'k', 'h', '{}', '{}', :edits, 'Dr N', "
                    "'neurologist', :now, 't', :now FROM patients p JOIN assessments a ON a.patient_id = p.id"
                ),
                {"number": number, "kind": kind, "edits": json.dumps(edited), "now": dt.datetime.now(dt.UTC)},
            )
    upgrade(engine)
    with _session(engine) as s:
        counted = s.execute(select(PlanVersion.number, PlanVersion.changes).order_by(PlanVersion.number)).all()
        assert [tuple(row) for row in counted] == [(1, 0), (2, 2), (3, 0)]
        listed = plans.overrides(s)
    assert [(g.recommendation, g.before, g.after, [o.number for o in g.overrides]) for g in listed] == [
        ("baclofen", "not_recommended", "option", [2]),
        ("mvd", "recommended", "option", [2]),
    ]
    downgrade(engine, "0013")
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT edits FROM plan_versions WHERE number = 2")) is not None
    engine.dispose()


def test_the_sign_off_list_starts_at_the_clinics_midnight_and_skips_versions_without_changes(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any], clinic_zone: Callable[[str], None]
) -> None:
    """In Shanghai a day starts at 16:00 UTC the day before: a change signed at 00:30 there is stored on the day
    before in UTC and belongs to the list from that local day on, not to the list from the day before's."""
    clinic_zone("Asia/Shanghai")
    today = dt.date.today()
    _add_patient(engine)
    _assess(engine, kb, {**baseline, "preferences": {"integrative_care": True}})
    edit = PlanEdit(recommendation="mvd", status="recommended", reason="Patient now wants surgery")
    with _session(engine) as s, s.begin():
        plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="t", today=today)
        _sign(s, kb, number=1, edits=[edit], by="Dr N", role="neurologist")
        _sign(s, kb, number=2, edits=[], by="Dr T", role="tcm_practitioner")
    with _session(engine) as s:
        counted = s.execute(select(PlanVersion.number, PlanVersion.changes).order_by(PlanVersion.number)).all()
    assert [tuple(row) for row in counted] == [(1, 0), (2, 1), (3, 0)]

    def listed_from(day: dt.date, *, signed: dt.datetime) -> list[int]:
        with _session(engine) as s, s.begin():
            at = signed.astimezone(dt.UTC)  # stored in UTC, as every timestamp (SQLite keeps no zone)
            s.execute(update(PlanVersion).where(PlanVersion.number == 2).values(signed_at=at))
        with _session(engine) as s:
            return [o.number for group in plans.overrides(s, since=day) for o in group.overrides]

    yesterday = today - dt.timedelta(days=1)
    half_past_midnight = dt.datetime.combine(today, dt.time(0, 30)).astimezone()
    assert half_past_midnight.astimezone(dt.UTC).date() == yesterday  # stored on the day before
    assert listed_from(today, signed=half_past_midnight) == [2]
    assert listed_from(yesterday, signed=half_past_midnight) == [2]
    half_an_hour_before = half_past_midnight - dt.timedelta(hours=1)
    assert listed_from(today, signed=half_an_hour_before) == []
    assert listed_from(yesterday, signed=half_an_hour_before) == [2]
    # The calendar's first and last days (a midnight that has no UTC time before year 1) list from the start, or
    # nothing.
    assert listed_from(dt.date.min, signed=half_past_midnight) == [2]
    assert listed_from(dt.date.max, signed=half_past_midnight) == []


def test_toxin_against_the_latest_plan_needs_a_reason(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    """Red flags defer toxin until the work-up; a session on or after the plan's day must say why."""
    _add_patient(engine)
    _assess(engine, kb, patient(findings={"hearing_loss": True}))
    with _session(engine) as s, s.begin():
        version = plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="tester", today=TODAY)
        assert version.summary["statuses"]["botulinum_toxin"] == "deferred"
    problems = _record_toxin(engine, kb, _toxin(0))
    assert problems == [
        (
            "details.override_reason",
            "plan version 1 has Botulinum toxin injections deferred (Deferred: red flags for secondary HFS; complete "
            "the work-up first); give details.override_reason to record it anyway",
        )
    ]
    assert _record_toxin(engine, kb, _toxin(400)) == []  # given before the plan was made: entered from old records
    assert _record_toxin(engine, kb, _toxin(0, override_reason="MRI done elsewhere last week: normal")) == []


@pytest.mark.parametrize(
    ("zone", "stored_at", "session_day", "checked"),
    [
        # New York, 21:00 on the plan's day: stored in UTC on the next day. The same evening's session was let through
        # unchecked when the plan's day was read off the stored time.
        ("America/New_York", dt.timedelta(hours=26), 0, True),
        # Tokyo, 05:00 on the plan's day: stored in UTC on the day before. The day before's session, entered from
        # earlier records, was checked against a plan not made yet.
        ("Asia/Tokyo", dt.timedelta(hours=-4), 1, False),
    ],
)
def test_the_plans_day_is_the_clinics_day_not_the_day_in_utc(
    engine: Engine,
    kb: KnowledgeBase,
    patient: Callable[..., dict[str, Any]],
    clinic_zone: Callable[[str], None],
    zone: str,
    stored_at: dt.timedelta,
    session_day: int,
    checked: bool,
) -> None:
    clinic_zone(zone)
    today = dt.date.today()  # the clinic's, which may not be TODAY (the day in UTC when the tests started)
    _add_patient(engine)
    _assess(engine, kb, patient(findings={"hearing_loss": True}))
    with _session(engine) as s, s.begin():
        plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="tester", today=today)
    made = dt.datetime.combine(today, dt.time(), tzinfo=dt.UTC) + stored_at
    with engine.begin() as connection:
        connection.execute(text("UPDATE plan_versions SET created_at = :made"), {"made": made})
    with _session(engine) as s:
        shown = local_day(plans.history(s, patient=patients.get(s, code="p-001"))[0].created_at)
    assert shown == today  # what the pages print as the plan's date
    problems = _record_toxin(engine, kb, _toxin(session_day + (TODAY - today).days))
    assert [path for path, _ in problems] == (["details.override_reason"] if checked else [])


def test_a_signed_change_of_status_decides_and_its_reason_is_quoted(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    _add_patient(engine)
    _assess(engine, kb, baseline)
    with _session(engine) as s, s.begin():
        plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="tester", today=TODAY)
    with _session(engine) as s, s.begin():
        edit = PlanEdit(recommendation="botulinum_toxin", status="not_recommended", reason="patient declines needles")
        _sign(s, kb, number=1, edits=[edit], by="N", role="neurologist")
    assert _record_toxin(engine, kb, _toxin(0)) == [
        (
            "details.override_reason",
            "plan version 2 has Botulinum toxin injections not recommended (patient declines needles); "
            "give details.override_reason to record it anyway",
        )
    ]
    with _session(engine) as s, s.begin():
        back = PlanEdit(recommendation="botulinum_toxin", status="recommended", reason="patient changed her mind")
        _sign(s, kb, number=2, edits=[back], by="N", role="neurologist")
    assert _record_toxin(engine, kb, _toxin(0)) == []


def test_a_session_is_checked_against_the_plan_in_force_on_its_day(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]], baseline: dict[str, Any]
) -> None:
    """Version 1 (red flags: toxin deferred) 30 days ago, version 2 from an assessment without them 10 days ago,
    version 3 signed today with toxin not recommended: a session entered late is held to the plan of its day, and a
    status changed at sign-off holds from that sign-off, not from the day the plan it signs was made."""
    _add_patient(engine)
    _assess(engine, kb, patient(findings={"hearing_loss": True}))
    with _session(engine) as s, s.begin():
        plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="tester", today=TODAY)
    _assess(engine, kb, baseline)
    with _session(engine) as s, s.begin():
        plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="tester", today=TODAY)
        edit = PlanEdit(recommendation="botulinum_toxin", status="not_recommended", reason="patient declines needles")
        _sign(s, kb, number=2, edits=[edit], by="N", role="neurologist")
    with engine.begin() as connection:
        for number, days_ago in ((1, 30), (2, 10)):
            noon = dt.datetime.combine(TODAY - dt.timedelta(days=days_ago), dt.time(12)).astimezone()
            connection.execute(
                text("UPDATE plan_versions SET created_at = :at WHERE number = :number"), {"at": noon, "number": number}
            )
    ((_, today),) = _record_toxin(engine, kb, _toxin(0))
    assert today.startswith("plan version 3 has Botulinum toxin injections not recommended (patient declines needles)")
    ((_, late),) = _record_toxin(engine, kb, _toxin(20))
    assert late.startswith("plan version 1 has Botulinum toxin injections deferred (Deferred: red flags")
    assert _record_toxin(engine, kb, _toxin(5, lot="B5")) == []  # version 2 recommended it, before the sign-off
    assert _record_toxin(engine, kb, _toxin(100)) == []  # before the first plan: from earlier records


def test_an_operation_against_the_latest_plan_needs_a_reason(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    """No MRI yet defers MVD; an operation recorded on or after the plan's day says why, as a toxin session does (an
    operation recorded without a look at the plan was the one treatment no check reached)."""
    _add_patient(engine)
    _assess(
        engine,
        kb,
        patient(
            imaging={
                "mri": "not_done",
                "neurovascular_compression": None,
                "offending_vessel": None,
                "structural_lesion": None,
            }
        ),
    )
    with _session(engine) as s, s.begin():
        version = plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="tester", today=TODAY)
        assert version.summary["statuses"]["mvd"] == "deferred"
    operation = {"kind": "mvd", "surgeon": "Dr S", "result": "cured"}
    problems = _record(engine, kb, operation)
    assert [path for path, _ in problems] == ["details.override_reason"]
    assert problems[0][1].startswith("plan version 1 has Microvascular decompression (MVD) deferred (")
    assert _record(engine, kb, operation, days_ago=400) == []  # before the plan: entered from old records
    assert _record(engine, kb, operation | {"override_reason": "MRI at the referring hospital: no tumour"}) == []


OVERRIDE = "give details.override_reason to record it anyway"


def _refused_until_a_reason(
    engine: Engine, kb: KnowledgeBase, details: dict[str, Any], *, path: str, starts: str | None, ends: str = OVERRIDE
) -> None:
    """Record a session with these details: with ``starts`` None it is recorded at once; else it is refused by one
    problem, at ``path``, that starts and ends so, and recorded when given a reason."""
    problems = _record(engine, kb, details)
    if starts is None:
        assert problems == []
        return
    ((where, message),) = problems
    assert where == path
    assert message.startswith(starts) and message.endswith(ends), message
    assert _record(engine, kb, {**details, "override_reason": "weighed with the patient, checked"}) == []


def _record(engine: Engine, kb: KnowledgeBase, details: dict[str, Any], days_ago: int = 0) -> list[tuple[str, str]]:
    """Record a session with these details: the problems that refused it (path, message), or none and it is stored."""
    date = (TODAY - dt.timedelta(days=days_ago)).isoformat()
    try:
        data = validate_model(SessionCreate, {"date": date, "clinician": "L. Zhang", "details": details})
        with _session(engine) as s, s.begin():
            sessions.record(s, patient=patients.get(s, code="p-001"), data=data, kb=kb, actor="l.zhang")
    except InputError as exc:
        return [(problem.path, problem.message) for problem in exc.problems]
    return []


def test_a_point_a_safety_rule_takes_out_needs_a_reason(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    """LI4 ticked for a pregnant patient: the plan never offers it, and a session that gives it must say why."""
    _add_patient(engine)
    needles = {"kind": "acupuncture", "points": ["ST4", "LI4", "ST6"]}
    assert _record(engine, kb, needles, days_ago=30) == [  # fails closed: nothing to check against is not "safe"
        (
            "details.override_reason",
            "no assessment is recorded, so the points are unchecked against the safety rules; record an assessment "
            "first, or give details.override_reason to record it anyway",
        )
    ]
    _assess(engine, kb, patient(pregnant=True))
    assert _record(engine, kb, needles) == [
        (
            "details.points.1",
            "LI4 is taken out of this patient's plans: Traditionally forbidden acupoints in pregnancy "
            "(tradition-based); give details.override_reason to record it anyway",
        )
    ]
    assert _record(engine, kb, {**needles, "points": ["ST4", "ST6"]}) == []
    assert _record(engine, kb, {**needles, "override_reason": "   "}) == [
        ("details.override_reason", "String should have at least 3 characters (got '')")
    ]  # a blank reason is no reason
    assert _record(engine, kb, {**needles, "override_reason": "postpartum since the assessment"}) == []
    with _session(engine) as s:
        kinds = [row.kind for row in sessions.list_for(s, patient=patients.get(s, code="p-001"))]
    assert kinds == ["acupuncture"] * 2


def test_a_session_entered_late_is_held_to_the_assessment_of_its_day_too(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    """Pregnant at the assessment 60 days ago, not at the one 10 days ago: needling entered now from the notes of 30
    days ago is held to the pregnancy then; today's is not. Pregnant only at the latest: held to it whatever the day
    (a pregnancy found later was there before it was recorded)."""
    _add_patient(engine)
    _assess(engine, kb, patient(pregnant=True), days_ago=60)
    _assess(engine, kb, patient(pregnant=False), days_ago=10)
    needles = {"kind": "acupuncture", "points": ["ST4", "LI4"]}
    then = (TODAY - dt.timedelta(days=60)).isoformat()
    assert _record(engine, kb, needles, days_ago=30) == [
        (
            "details.points.1",
            f"LI4 is taken out of this patient's plans by the assessment of {then}, in force on that day: "
            "Traditionally forbidden acupoints in pregnancy (tradition-based); give details.override_reason to "
            "record it anyway",
        )
    ]
    assert _record(engine, kb, needles, days_ago=10) == []  # the day of the latest assessment
    assert _record(engine, kb, needles, days_ago=70) == []  # before any assessment: the latest only
    _add_patient(engine, code="p-002")
    _assess(engine, kb, patient(pregnant=False), code="p-002", days_ago=60)
    _assess(engine, kb, patient(pregnant=True), code="p-002", days_ago=10)
    late = {"date": (TODAY - dt.timedelta(days=30)).isoformat(), "clinician": "L. Zhang", "details": needles}
    data = validate_model(SessionCreate, late)
    with _session(engine) as s, pytest.raises(InputError) as refused:
        sessions.record(s, patient=patients.get(s, code="p-002"), data=data, kb=kb, actor="l.zhang")
    [problem] = refused.value.problems
    assert problem.message.startswith("LI4 is taken out of this patient's plans: Traditionally forbidden")


def test_a_herb_a_safety_rule_takes_out_needs_a_reason(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    """Dang Gui written (by its pinyin) for a patient on warfarin."""
    _add_patient(engine)
    _assess(engine, kb, patient(medications=["warfarin"]))
    herbs = [{"latin": "Radix Paeoniae Alba", "dose_g": 9}, {"latin": "Dang Gui", "dose_g": 9}]
    prescription = {"kind": "herbal", "herbs": herbs, "duration_days": 14}
    ((path, message),) = _record(engine, kb, prescription)
    assert path == "details.herbs.1.latin"
    assert message.startswith("Radix Angelicae Sinensis is taken out of this patient's plans: ")
    assert message.endswith("; give details.override_reason to record it anyway")
    assert _record(engine, kb, {**prescription, "override_reason": "INR monitored weekly by the GP"}) == []


POWDER_ABOVE = "a day of Scorpio (Quan Xie) as a powder is above its reference powder dose of 1 g (Decoction 3-6 g, "


@pytest.mark.parametrize(
    ("preparation", "herb", "dose", "refused"),
    [
        ("decoction", "Scorpio", 6, None),
        ("decoction", "Quan Xie", 60, "60 g of Scorpio (Quan Xie) is above its reference daily decoction dose of 6 g"),
        ("decoction", "Scolopendra", 5.5, "5.5 g of Scolopendra (Wu Gong) is above its reference daily decoction dose"),
        ("decoction", "Rhizoma Typhonii", 7, "7 g of Rhizoma Typhonii (Bai Fu Zi) is above its reference daily decoct"),
        ("decoction", "Rhizoma Gastrodiae", 90, None),  # no reference maximum in the knowledge base: nothing to hold
        # A powder swallows the whole herb: the decoction dose that passes above is six times its powder dose.
        ("powder", "Scorpio", 1, None),
        ("powder", "Scorpio", 6, f"6 g {POWDER_ABOVE}"),
        ("powder", "Wu Gong", 1.5, "1.5 g a day of Scolopendra (Wu Gong) as a powder is above its reference powder"),
        # Toxic, and no powder dose in the knowledge base: unchecked as a powder, which is not safe.
        ("powder", "Rhizoma Typhonii", 0.5, "Rhizoma Typhonii (Bai Fu Zi) is toxic and the knowledge base gives no "),
        ("powder", "Rhizoma Gastrodiae", 9, None),  # not toxic, no powder figure: as with its decoction
    ],
)
def test_a_herb_above_its_reference_dose_needs_a_reason(
    engine: Engine,
    kb: KnowledgeBase,
    baseline: dict[str, Any],
    preparation: str,
    herb: str,
    dose: float,
    refused: str | None,
) -> None:
    _add_patient(engine)
    _assess(engine, kb, baseline)
    prescription = {
        "kind": "herbal",
        "preparation": preparation,
        "herbs": [{"latin": "Bombyx Batryticatus", "dose_g": 1.5}, {"latin": herb, "dose_g": dose}],
        "duration_days": 7,
    }
    _refused_until_a_reason(engine, kb, prescription, path="details.herbs.1.dose_g", starts=refused)


BAN_XIA = "Rhizoma Pinelliae Praeparatum (Ban Xia)"


@pytest.mark.parametrize(
    ("formula", "dose", "refused"),
    [
        # Ban Xia is toxic and herbs.yaml gives no dose of its own: a formula that doses it holds it there.
        ("ban_xia_bai_zhu_tian_ma_tang", 9, None),
        (
            "ban_xia_bai_zhu_tian_ma_tang",
            35,  # the web recipe's 35 g the TCM reference warns of
            f"35 g of {BAN_XIA} is above its dose in Ban Xia Bai Zhu Tian Ma Tang, 4.5-9 g (the knowledge base gives "
            "none of its own)",
        ),
        ("wen_dan_tang", 6, None),  # the source's single dose is the top
        ("wen_dan_tang", 6.5, f"6.5 g of {BAN_XIA} is above its dose in Wen Dan Tang, 6 g"),
        # Without a formula, or with one that does not give it, nothing holds it: unchecked, not safe.
        (None, 6, f"{BAN_XIA} is toxic and the knowledge base gives no decoction dose for it outside a formula that "),
        (
            "qian_zheng_san",
            6,
            f"{BAN_XIA} is toxic and the knowledge base gives no decoction dose for it, nor does Qian ",
        ),
    ],
)
def test_a_toxic_herb_without_a_reference_dose_is_held_to_its_formula_or_unchecked(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any], formula: str | None, dose: float, refused: str | None
) -> None:
    _add_patient(engine)
    _assess(engine, kb, baseline)
    prescription = {
        "kind": "herbal",
        "formula": formula,
        "herbs": [{"latin": "Rhizoma Gastrodiae", "dose_g": 6}, {"latin": "Ban Xia", "dose_g": dose}],
        "duration_days": 7,
    }
    _refused_until_a_reason(engine, kb, prescription, path="details.herbs.1.dose_g", starts=refused)


def test_a_renewal_of_a_formula_adds_its_toxic_herb_up_to_the_formula_dose(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    _add_patient(engine)
    _assess(engine, kb, baseline)
    course = {
        "kind": "herbal",
        "formula": "ban_xia_bai_zhu_tian_ma_tang",
        "herbs": [{"latin": "Ban Xia", "dose_g": 6}],
        "duration_days": 14,
    }
    assert _record(engine, kb, course, days_ago=7) == []
    ((path, message),) = _record(engine, kb, course)
    assert path == "details.herbs.0.dose_g"
    assert message.startswith(f"6 g a day of {BAN_XIA} with 6 g from the prescription of ")
    assert "is 12 g a day, above its dose in Ban Xia Bai Zhu Tian Ma Tang, 4.5-9 g" in message


@pytest.mark.parametrize(
    ("patch", "herb", "cautioned"),
    [
        (
            {"pregnant": True},
            "Chuan Xiong",
            "Rhizoma Chuanxiong is cautioned for this patient: Blood-moving herbs in pregnancy (tradition-based). "
            "Niu Xi, Chuan Xiong, Hong Hua",
        ),
        ({"medications": ["clonazepam"]}, "Jiang Can", "Bombyx Batryticatus is cautioned for this patient: Additive "),
        (
            {"medications": ["warfarin"]},
            "Hong Hua",
            "Flos Carthami is cautioned for this patient: Other herbs reviewed",
        ),
        ({}, "Chuan Xiong", None),  # the baseline patient: not pregnant, no warfarin, no sedative
        ({"pregnant": True}, "Jiang Can", None),  # its pregnancy status is unverified, not "caution"
    ],
)
def test_a_herb_a_caution_names_for_the_patient_needs_a_reason(
    engine: Engine,
    kb: KnowledgeBase,
    patient: Callable[..., dict[str, Any]],
    patch: dict[str, Any],
    herb: str,
    cautioned: str | None,
) -> None:
    """The plan cautions the herbs of its own formula that a rule names for this patient; a herb added beyond the
    plan's formula is held to the same rules when it is prescribed."""
    _add_patient(engine)
    _assess(engine, kb, patient(**patch))
    prescription = {
        "kind": "herbal",
        "herbs": [{"latin": "Rhizoma Gastrodiae", "dose_g": 9}, {"latin": herb, "dose_g": 3}],
        "duration_days": 14,
    }
    _refused_until_a_reason(
        engine, kb, prescription, path="details.herbs.1.latin", starts=cautioned, ends=". Leave it out, or " + OVERRIDE
    )


def test_any_herbal_prescription_for_a_patient_on_carbamazepine_needs_a_reason(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    """The reference's rule: monitor carbamazepine levels if herbs are started. It cautions the formula as a whole,
    so every herbal prescription for the patient is held to it, said once for the prescription."""
    _add_patient(engine)
    _assess(engine, kb, patient(medications=["carbamazepine"]))
    prescription = {"kind": "herbal", "herbs": [{"latin": "Tian Ma", "dose_g": 9}], "duration_days": 14}
    ((path, message),) = _record(engine, kb, prescription)
    assert path == "details.herbs"
    assert message.startswith(
        "any herbal prescription is cautioned for this patient: Herbs with carbamazepine. Herbs (peony root"
    )
    assert "Monitor carbamazepine levels if herbs are started." in message
    assert message.endswith("Leave it out, or give details.override_reason to record it anyway")
    assert _record(engine, kb, {**prescription, "override_reason": "carbamazepine level booked for week 2"}) == []
    # Without carbamazepine the same prescription needs nothing.
    _add_patient(engine, code="p-002")
    _assess(engine, kb, patient(), code="p-002")
    with _session(engine) as s, s.begin():
        data = validate_model(
            SessionCreate, {"date": TODAY.isoformat(), "clinician": "L. Zhang", "details": prescription}
        )
        sessions.record(s, patient=patients.get(s, code="p-002"), data=data, kb=kb, actor="L. Zhang")


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("Mandragora", "unknown herb 'Mandragora'"),
        # Aristolochia and the names it was sold under are blocked, with why; no reason records them.
        ("Guan Mu Tong", "'Guan Mu Tong' is a blocked herb name: it is never prescribed (Aristolochic acid causes "),
        ("Aristolochia manshuriensis", "'Aristolochia manshuriensis' is a blocked herb name: it is never prescribed"),
        ("关木通", "'关木通' is a blocked herb name: it is never prescribed"),
        # A name several species share: which one is meant must be written.
        ("Mu Tong", "unknown herb 'Mu Tong': several species are sold under that name (Aristolochic acid causes "),
        ("Fang Ji", "unknown herb 'Fang Ji': several species are sold under that name"),
    ],
)
def test_an_unknown_herb_is_refused_and_a_blocked_or_ambiguous_name_says_why(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any], written: str, said: str
) -> None:
    _add_patient(engine)
    _assess(engine, kb, baseline)
    prescription = {
        "kind": "herbal",
        "herbs": [{"latin": "Rhizoma Gastrodiae", "dose_g": 9}, {"latin": written, "dose_g": 3}],
        "duration_days": 14,
        "override_reason": "the patient brought it from abroad",
    }
    ((path, message),) = _record(engine, kb, prescription)
    assert path == "details.herbs.1.latin"
    assert message.startswith(said)
    with _session(engine) as s:
        assert sessions.list_for(s, patient=patients.get(s, code="p-001"), kind="herbal") == []


LICORICE_RISK = "With older age, a diuretic, a corticosteroid or low potassium, 6 g/day or more of licorice is a risk"


@pytest.mark.parametrize(
    ("patch", "herbs", "refused"),
    [
        # Over 60: 6 g a day of licorice, in one herb or the two kinds together, is the caution rule's dose.
        ({"age": 70}, [("Gan Cao", 6)], "6 g a day of licorice for this patient. "),
        ({"age": 70}, [("Radix Glycyrrhizae", 3), ("Zhi Gan Cao", 3)], "6 g a day of licorice for this patient. "),
        ({"age": 70}, [("Gan Cao", 5.5)], None),
        ({"medications": ["furosemide"]}, [("Gan Cao", 9)], "9 g a day of licorice for this patient. "),
        ({}, [("Gan Cao", 9)], None),  # aged 52, no diuretic, no low potassium: the rule does not hold
    ],
)
def test_a_licorice_heavy_prescription_for_a_patient_at_risk_needs_a_reason(
    engine: Engine,
    kb: KnowledgeBase,
    patient: Callable[..., dict[str, Any]],
    patch: dict[str, Any],
    herbs: list[tuple[str, float]],
    refused: str | None,
) -> None:
    """The plan cautions its own formula when its licorice reaches 6 g a day for a patient at risk; a prescription
    written with more licorice than the plan's formula is held to the same rule."""
    _add_patient(engine)
    _assess(engine, kb, patient(**patch))
    prescription = {
        "kind": "herbal",
        "herbs": [{"latin": "Rhizoma Gastrodiae", "dose_g": 9}] + [{"latin": n, "dose_g": g} for n, g in herbs],
        "duration_days": 14,
    }
    _refused_until_a_reason(  # at the first licorice herb's dose
        engine,
        kb,
        prescription,
        path="details.herbs.1.dose_g",
        starts=None if refused is None else refused + LICORICE_RISK,
        ends="check potassium and blood pressure. Lower it, or " + OVERRIDE,
    )


def test_licorice_is_counted_with_the_prescriptions_taken_on_the_same_days(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    _add_patient(engine)
    _assess(engine, kb, patient(age=70))
    course = {"kind": "herbal", "herbs": [{"latin": "Gan Cao", "dose_g": 3}], "duration_days": 14}
    assert _record(engine, kb, course, days_ago=20) == []
    # The course of 20 days ago ended a week ago: nothing overlaps today's.
    assert _record(engine, kb, {**course, "herbs": [{"latin": "Zhi Gan Cao", "dose_g": 3}]}) == []
    ((path, message),) = _record(
        engine, kb, course | {"herbs": [{"latin": "Rhizoma Gastrodiae", "dose_g": 9}, *course["herbs"]]}
    )
    assert path == "details.herbs.1.dose_g"
    last = TODAY + dt.timedelta(days=13)
    assert message.startswith(
        f"6 g a day of licorice (3 g here, 3 g from the prescription of {TODAY.isoformat()} "
        f"(until {last.isoformat()})) for this patient. "
    )


def test_a_powder_is_kept_and_said_as_one_and_an_unknown_preparation_is_refused(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    _add_patient(engine)
    _assess(engine, kb, baseline)
    powder = {
        "kind": "herbal",
        "preparation": "powder",
        "herbs": [{"latin": "Scorpio", "dose_g": 1}],
        "duration_days": 7,
    }
    assert _record(engine, kb, powder) == []
    with _session(engine) as s:
        (row,) = sessions.list_for(s, patient=patients.get(s, code="p-001"), kind="herbal")
        assert sessions.describe(row.kind, row.data) == "Scorpio 1 g as a powder (grams a day), 7 days"
    problems = _record(engine, kb, powder | {"preparation": "tea"})
    assert [path for path, _ in problems] == ["details.preparation"]
    assert "'decoction' or 'powder'" in problems[0][1]


def test_electroacupuncture_the_plan_defers_needs_a_reason(
    engine: Engine, kb: KnowledgeBase, patient: Callable[..., dict[str, Any]]
) -> None:
    _add_patient(engine)
    _assess(engine, kb, patient(comorbidities=["pacemaker"]))
    with _session(engine) as s, s.begin():
        version = plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="tester", today=TODAY)
    statuses = version.summary["statuses"]
    assert (statuses["acupuncture"], statuses["electroacupuncture"]) == ("option", "deferred")
    needles = {"kind": "acupuncture", "points": ["ST4", "ST6"]}
    assert _record(engine, kb, needles) == []
    ((path, message),) = _record(engine, kb, {**needles, "electro": True})
    assert path == "details.override_reason"
    assert message.startswith(
        "plan version 1 has Electroacupuncture (distal, hand) deferred (Deferred. Electroacupuncture with a pacemaker"
    )
    assert _record(engine, kb, {**needles, "electro": True, "override_reason": "cardiology agreed: distal only"}) == []


def test_a_record_dated_before_the_patient_was_born_is_refused(engine: Engine, kb: KnowledgeBase) -> None:
    """1926 typed for 2026 would stretch the patient's chart over a century: every kind of record refuses it."""
    _add_patient(engine, birth_year=1970)
    _add_patient(engine, code="p-unknown")
    typo = dt.date(1926, 5, 4)
    writers: dict[str, Callable[[Session, Patient], object]] = {
        "session": lambda s, p: sessions.record(
            s,
            patient=p,
            data=validate_model(
                SessionCreate, {"date": typo, "clinician": "S", "details": {"kind": "mvd", "surgeon": "S"}}
            ),
            kb=kb,
            actor="S",
        ),
        "diary": lambda s, p: outcomes.add_diary(
            s, patient=p, data=DiaryCreate(date=typo, spasms=3, intensity=2), actor="p"
        ),
        "questionnaire": lambda s, p: outcomes.add_questionnaire(
            s, patient=p, data=QuestionnaireCreate(date=typo, instrument="hfs7", answers=[1] * 7), actor="p"
        ),
        "grades": lambda s, p: outcomes.add_grades(s, patient=p, data=GradesCreate(date=typo, smc_grade=2), actor="n"),
    }
    for kind, write in writers.items():
        with pytest.raises(InputError) as info, _session(engine) as s, s.begin():
            write(s, patients.get(s, code="p-001"))
        assert [(p.path, p.message) for p in info.value.problems] == [
            ("date", "1926-05-04 is before the patient was born (1970)")
        ], kind
        with _session(engine) as s, s.begin():  # with no year of birth there is nothing to hold the date to
            write(s, patients.get(s, code="p-unknown"))
    with _session(engine) as s:
        kept = outcomes.records(s, patient=patients.get(s, code="p-001"))
        assert (kept.sessions, kept.diary, kept.scores) == ([], [], {})
        assert outcomes.recent_grades(s, patient=patients.get(s, code="p-001")) == []


def test_toxin_history_entered_late_is_checked_against_both_neighbours(engine: Engine, kb: KnowledgeBase) -> None:
    _add_patient(engine)
    with _session(engine) as s, s.begin():
        for days_ago in (20, 200):
            sessions.record(s, patient=patients.get(s, code="p-001"), data=_toxin(days_ago), kb=kb, actor="Dr N")

    def refusal(days_ago: int) -> str | None:
        try:
            with _session(engine) as s, s.begin():
                sessions.record(s, patient=patients.get(s, code="p-001"), data=_toxin(days_ago), kb=kb, actor="N")
        except InputError as exc:
            assert [p.path for p in exc.problems] == ["date"]
            return exc.problems[0].message
        return None

    day = {ago: (TODAY - dt.timedelta(days=ago)).isoformat() for ago in (20, 60, 150, 200)}
    # 60 days ago: 40 days before the latest session (the old rule only saw "after the last one" and misdated it).
    assert refusal(60) == (
        f"{day[60]} is less than 12 weeks before the toxin session of {day[20]}; "
        "give details.override_reason to record it anyway"
    )
    assert refusal(150) == (
        f"{day[150]} is less than 12 weeks after the toxin session of {day[200]}; "
        "give details.override_reason to record it anyway"
    )
    assert refusal(110) is None  # 90 days from each: a gap in the history, recorded as it was
    with _session(engine) as s:
        dates = sorted(row.date for row in sessions.list_for(s, patient=patients.get(s, code="p-001")))
    assert [str(d) for d in dates] == [
        str(TODAY - dt.timedelta(days=ago)) for ago in (200, 110, 20)
    ]  # nothing half-written


def _meanwhile(engine: Engine, first: Callable[[Session], object], second: Callable[[Session], object]) -> object:
    """Run ``first`` in a transaction and, while it is still open, ``second`` in another from a second thread; commit
    the first once the second waits for a lock (on SQLite, after a moment) and return what the second returned or
    raised. Both do the same check-then-write on one patient's record, as two clinicians (or a double click) do."""
    result: dict[str, object] = {}

    def run_second() -> None:
        try:
            with _session(engine) as s, s.begin():
                result["second"] = second(s)
        except Exception as exc:  # returned for the test to judge
            result["second"] = exc

    with _session(engine) as s, s.begin():
        first(s)
        s.flush()
        thread = threading.Thread(target=run_second)
        thread.start()
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        deadline = time.monotonic() + 20
        while thread.is_alive() and time.monotonic() < deadline:
            if engine.dialect.name != "postgresql":
                time.sleep(0.3)  # SQLite's second writer waits in BEGIN IMMEDIATE; nothing shows it
                break
            with engine.connect() as probe:
                if probe.scalar(text(waiting)):
                    break
            time.sleep(0.02)
    thread.join(60)
    assert not thread.is_alive()
    return result["second"]


def test_a_form_sent_again_while_the_first_is_written_waits_and_is_not_carried_out_twice(engine: Engine) -> None:
    """A second click arrives while the first is still being written: it waits for the first (PostgreSQL holds its
    insert of the same fingerprint, SQLite its whole transaction) and is then told the form was sent already. A
    first that is rolled back (a check refused it) leaves the form to be carried out when sent again."""
    from hemicare.web import once
    from hemicare.web.forms import FormData

    form = FormData({"form_key": "k1", "spasms": "12"}, {"form_key": ["k1"], "spasms": ["12"]})

    def send(s: Session) -> str:
        once.claim(s, username="patient1", path="/me/diary", form=form, location="/me?saved=diary")
        return "carried out"

    second = _meanwhile(engine, send, send)
    assert isinstance(second, once.SentAlready) and second.location == "/me?saved=diary"
    other = FormData({"form_key": "k2"}, {"form_key": ["k2"]})
    with pytest.raises(InputError), _session(engine) as s, s.begin():
        once.claim(s, username="patient1", path="/me/diary", form=other, location="/me")
        raise InputError([FieldProblem("intensity", "refused after the claim")])
    with _session(engine) as s, s.begin():
        once.claim(s, username="patient1", path="/me/diary", form=other, location="/me")  # not SentAlready


def test_an_api_request_sent_again_while_the_first_is_written_waits_and_is_given_its_answer(engine: Engine) -> None:
    """A client retries while its first request is still being written: the retry waits for the first and is then
    given the first one's answer (not carried out, not refused). A first that is rolled back leaves the key free."""
    from types import SimpleNamespace

    from starlette.requests import Request

    from hemicare.web import once

    def request() -> Request:
        route = SimpleNamespace(status_code=201)
        return Request(
            {
                "type": "http",
                "method": "POST",
                "path": "/api/v1/patients/p-001/diary",
                "query_string": b"",
                "headers": [],
                "path_params": {"code": "p-001"},
                "route": route,
            }
        )

    def send(s: Session) -> object:
        asked = request()
        once.claim_request(s, asked, username="dr.n", key="k-1", body={"spasms": 12})
        return once.answered(asked, {"id": 7, "date": "2026-11-27"})

    second = _meanwhile(engine, send, send)
    assert isinstance(second, once.Replayed), second
    assert (second.status, second.answer, second.username, second.patient) == (
        201,
        {"id": 7, "date": "2026-11-27"},
        "dr.n",
        "p-001",
    )
    with pytest.raises(InputError), _session(engine) as s, s.begin():
        once.claim_request(s, request(), username="dr.n", key="k-2", body={"spasms": 12})
        raise InputError([FieldProblem("intensity", "refused after the claim")])
    with _session(engine) as s, s.begin():
        once.claim_request(s, request(), username="dr.n", key="k-2", body={"spasms": 12})  # the refused kept nothing
        once.claim_request(s, request(), username="dr.n", key=None, body={"spasms": 12})  # no key: nothing kept
    with _session(engine) as s:
        assert s.scalar(select(func.count()).select_from(SentForm)) == 2


def test_a_database_error_does_not_quote_the_values_it_was_writing(engine: Engine) -> None:
    """Its message may reach a log or a terminal; names and notes must not go with it."""
    _add_patient(engine)
    with pytest.raises(DBAPIError) as info, _session(engine) as s, s.begin():
        s.add(Patient(code="p-001", name="Lucia Okafor", sex="female", created_by="tester"))  # a code already used
    assert "Lucia" not in str(info.value) and "hidden due to hide_parameters" in str(info.value)
    # PostgreSQL's own detail still names a duplicated key ("Key (code)=(p-001) already exists"): that is why the
    # server's log never carries an error's message (test_web, test_serve).


def test_text_longer_than_the_records_keep_is_refused_naming_the_field(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    """PostgreSQL refuses text longer than its column with a server error (SQLite keeps it): each input is checked
    first, and text at the limit is kept."""
    from hemicare.users import service as users
    from hemicare.users.schemas import UserCreate

    code = "c" * CODE_MAX  # the longest code: the audit trail still names its plan versions ("CODE/v2")
    _add_patient(engine, code=code)
    _assess(engine, kb, baseline, code=code)
    with _session(engine) as s, s.begin():
        plans.generate(s, patient=patients.get(s, code=code), kb=kb, actor="tester", today=TODAY)
        users.create(
            s, data=UserCreate(username="dr.n", full_name="N", role="neurologist", password="p" * 12), actor="t"
        )

    def update(reason: str) -> Callable[[Session], object]:
        return lambda s: patients.update(
            s, code=code, expected_version=1, changes=PatientUpdate(name="B"), actor="t", reason=reason
        )

    def sign(reason: str) -> Callable[[Session], object]:
        return lambda s: plans.sign(
            s,
            patient=patients.get(s, code=code),
            expected_number=1,
            edits=[],
            signer="N",
            role="neurologist",
            reason=reason,
            kb=kb,
        )

    def token(name: str) -> Callable[[Session], object]:
        return lambda s: users.issue_token(s, username="dr.n", name=name, actor="t")

    too_long = [
        (update("x" * (REASON_MAX + 1)), "reason", f"at most {REASON_MAX} characters, got {REASON_MAX + 1}"),
        (sign("x" * (REASON_MAX + 1)), "reason", f"at most {REASON_MAX} characters, got {REASON_MAX + 1}"),
        (token("x" * (TOKEN_NAME_MAX + 1)), "name", f"say what the token is for in 1 to {TOKEN_NAME_MAX} characters"),
    ]
    for write, field, message in too_long:
        with pytest.raises(InputError) as info, _session(engine) as s, s.begin():
            write(s)
        assert [(p.path, p.message) for p in info.value.problems] == [(field, message)]
    for write in (update("x" * REASON_MAX), sign("x" * REASON_MAX), token("x" * TOKEN_NAME_MAX)):
        with _session(engine) as s, s.begin():
            write(s)
    with _session(engine) as s:
        assert plans.latest(s, patient=patients.get(s, code=code)).number == 2
        assert audit.verify(s).ok
    # The inputs say their limits before anything is written.
    too_soon = _toxin(1).model_dump(mode="json")
    too_soon["details"]["override_reason"] = "x" * (REASON_MAX + 1)
    for model, data, field in (
        (PatientCreate, {"code": "c" * (CODE_MAX + 1), "name": "N", "sex": "male"}, "code"),
        (SignRequest, {"version": 1, "reason": "x" * (REASON_MAX + 1)}, "reason"),
        (SessionCreate, too_soon, "details.override_reason"),
    ):
        with pytest.raises(InputError) as refused:
            validate_model(model, data)
        assert refused.value.problems[0].path.startswith(field), refused.value.problems


def test_two_toxin_sessions_entered_at_once_cannot_both_pass_the_interval_check(
    engine: Engine, kb: KnowledgeBase
) -> None:
    _add_patient(engine)

    def record(days_ago: int) -> Callable[[Session], object]:
        return lambda s: sessions.record(
            s, patient=patients.get(s, code="p-001"), data=_toxin(days_ago), kb=kb, actor="N"
        )

    second = _meanwhile(engine, record(10), record(9))
    assert isinstance(second, InputError), second
    assert "less than 12 weeks after the toxin session of" in second.problems[0].message
    with _session(engine) as s:
        assert len(sessions.list_for(s, patient=patients.get(s, code="p-001"), kind="toxin")) == 1


def test_an_outcome_entered_twice_at_once_is_not_overwritten_without_a_reason(
    engine: Engine, kb: KnowledgeBase
) -> None:
    _add_patient(engine)
    with _session(engine) as s, s.begin():
        row = sessions.record(s, patient=patients.get(s, code="p-001"), data=_toxin(100), kb=kb, actor="Dr N")
        s.flush()
        session_id = row.id

    def outcome(weeks: int) -> Callable[[Session], object]:
        return lambda s: sessions.record_outcome(
            s,
            patient=patients.get(s, code="p-001"),
            session_id=session_id,
            outcome=SessionOutcome(effect_weeks=weeks),
            actor="Dr N",
        )

    second = _meanwhile(engine, outcome(12), outcome(14))
    assert isinstance(second, InputError), second
    assert [(p.path, p.message) for p in second.problems] == [
        ("reason", "say why effect_weeks already recorded changes")
    ]
    with _session(engine) as s:
        assert sessions.get(s, patient=patients.get(s, code="p-001"), session_id=session_id).data["effect_weeks"] == 12


def test_a_diary_entry_removed_twice_at_once_is_removed_once(engine: Engine) -> None:
    _add_patient(engine)
    with _session(engine) as s, s.begin():
        entry = outcomes.add_diary(
            s, patient=patients.get(s, code="p-001"), data=DiaryCreate(date=TODAY, spasms=5, intensity=3), actor="p"
        )
        s.flush()
        entry_id = entry.id

    def remove(s: Session) -> None:
        outcomes.remove(
            s, patient=patients.get(s, code="p-001"), entity="diary", row_id=entry_id, actor="p", reason=None
        )

    second = _meanwhile(engine, remove, remove)
    assert isinstance(second, NotFoundError), second
    with _session(engine) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "delete")) == 1
        assert audit.verify(s).ok


def test_two_assessments_entered_at_once_become_consecutive_plan_versions(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    _add_patient(engine)

    def assess(months: int) -> Callable[[Session], object]:
        assessment = validate_assessment({**baseline, "id": "p-001", "duration_months": months})
        return lambda s: (
            plans.assess(
                s, patient=patients.get(s, code="p-001"), assessment=assessment, kb=kb, actor="N", today=TODAY
            ).number
        )

    # Not refused as a conflict: neither clinician's work is lost (storing the assessment takes the audit trail's
    # lock before the next version number is read).
    assert _meanwhile(engine, assess(24), assess(36)) == 2
    with _session(engine) as s:
        versions = plans.history(s, patient=patients.get(s, code="p-001"))
        assert [(v.number, v.assessment_id) for v in versions] == [(1, 1), (2, 2)]


def test_session_details_are_checked_against_the_knowledge_base(engine: Engine, kb: KnowledgeBase) -> None:
    _add_patient(engine)
    bad_site = _toxin(100, sites=[{"site": "nose_tip", "side": "left", "units": 2}])
    with pytest.raises(InputError) as info, _session(engine) as s, s.begin():
        sessions.record(s, patient=patients.get(s, code="p-001"), data=bad_site, kb=kb, actor="Dr N")
    assert info.value.problems[0].path == "details.sites.0.site"
    needles = SessionCreate.model_validate(
        {"date": TODAY.isoformat(), "clinician": "L", "details": {"kind": "acupuncture", "points": ["LI4", "ZZ9"]}}
    )
    with pytest.raises(InputError) as info, _session(engine) as s, s.begin():
        sessions.record(s, patient=patients.get(s, code="p-001"), data=needles, kb=kb, actor="L")
    assert info.value.problems[0].path == "details.points.1"


def test_recalls(engine: Engine, kb: KnowledgeBase) -> None:
    for code in ("toxin-due", "toxin-recent", "course", "post-mvd"):
        _add_patient(engine, code=code)
    with _session(engine) as s, s.begin():
        sessions.record(
            s, patient=patients.get(s, code="toxin-due"), data=_toxin(120, effect_weeks=14), kb=kb, actor="N"
        )
        sessions.record(s, patient=patients.get(s, code="toxin-recent"), data=_toxin(20), kb=kb, actor="N")
        for days in (12, 8, 4):  # from paper records, before any assessment: unchecked, so with a reason
            acupuncture = {"kind": "acupuncture", "points": ["LI4"], "override_reason": "from the paper record"}
            sessions.record(
                s,
                patient=patients.get(s, code="course"),
                data=SessionCreate.model_validate(
                    {"date": (TODAY - dt.timedelta(days=days)).isoformat(), "clinician": "L", "details": acupuncture}
                ),
                kb=kb,
                actor="L",
            )
        mvd = {"kind": "mvd", "surgeon": "Dr S", "result": "cured"}
        sessions.record(
            s,
            patient=patients.get(s, code="post-mvd"),
            data=SessionCreate.model_validate(
                {"date": (TODAY - dt.timedelta(days=100)).isoformat(), "clinician": "Dr S", "details": mvd}
            ),
            kb=kb,
            actor="S",
        )
    with _session(engine) as s:
        items = recalls.due(s, kb=kb, today=TODAY)
    by_patient = {(i.patient, i.what) for i in items}
    assert ("toxin-due", "botulinum toxin session") in by_patient
    assert ("toxin-recent", "botulinum toxin session") not in by_patient
    assert ("course", "acupuncture session") in by_patient
    assert ("post-mvd", "post-MVD review at 3 months") in by_patient
    assert ("course", "HFS-7 questionnaire") in by_patient
    due_toxin = next(i for i in items if i.patient == "toxin-due" and i.what.startswith("botulinum"))
    assert due_toxin.due == TODAY - dt.timedelta(days=120) + dt.timedelta(weeks=14)


def test_acupuncture_sessions_up_to_two_weeks_apart_are_one_course() -> None:
    day = dt.date(2026, 3, 2)
    dates = [day + dt.timedelta(days=n) for n in (32, 0, 3, 17, 34, 49)]  # out of order, as a caller may give them
    assert sessions.acupuncture_courses(dates) == [
        [day, day + dt.timedelta(days=3), day + dt.timedelta(days=17)],  # 14 days apart: still the course
        [day + dt.timedelta(days=32), day + dt.timedelta(days=34)],  # 15 days after the last: a new course
        [day + dt.timedelta(days=49)],
    ]
    assert sessions.acupuncture_courses([]) == []


def _mvd(days_ago: int) -> SessionCreate:
    details = {"kind": "mvd", "surgeon": "Dr S", "result": "cured"}
    date = (TODAY - dt.timedelta(days=days_ago)).isoformat()
    return SessionCreate.model_validate({"date": date, "clinician": "Dr S", "details": details})


def test_a_closed_recall_is_held_back_until_its_treatment_happens_again(engine: Engine, kb: KnowledgeBase) -> None:
    """A patient who stops toxin, or never answers questionnaires, stayed overdue on the clinic's list for ever. A
    closure holds that recall back until its treatment happens again; an operation after the last injection ends the
    toxin recall by itself (the post-MVD reviews follow the patient)."""
    for code in ("stopped", "operated", "declines"):
        _add_patient(engine, code=code)
    yesterday = TODAY - dt.timedelta(days=1)
    with _session(engine) as s, s.begin():
        sessions.record(s, patient=patients.get(s, code="stopped"), data=_toxin(120, effect_weeks=14), kb=kb, actor="N")
        sessions.record(s, patient=patients.get(s, code="operated"), data=_toxin(300), kb=kb, actor="N")
        sessions.record(s, patient=patients.get(s, code="operated"), data=_mvd(100), kb=kb, actor="S")
        sessions.record(s, patient=patients.get(s, code="declines"), data=_toxin(30), kb=kb, actor="N")

    def due(horizon: int = 0) -> set[tuple[str, str]]:
        with _session(engine) as s:
            return {(i.patient, i.recall) for i in recalls.due(s, kb=kb, today=TODAY, horizon_days=horizon)}

    before = due()
    assert {("stopped", "toxin"), ("declines", "hfs7"), ("operated", "mvd_review")} <= before
    assert ("operated", "toxin") not in before  # operated since the last injection

    with _session(engine) as s, s.begin():
        for code, recall in (("stopped", "toxin"), ("declines", "hfs7")):
            reason = f"{code}: no more"
            recalls.close(
                s, patient=patients.get(s, code=code), recall=recall, reason=reason, actor="dr.n", today=yesterday
            )
    assert due() == before - {("stopped", "toxin"), ("declines", "hfs7")}
    with _session(engine) as s:
        (held,) = recalls.closed(s, kb=kb, today=TODAY, patient_id=patients.get(s, code="stopped").id)
        assert (held.item.recall, held.closed_on, held.closed_by, held.reason) == (
            "toxin",
            yesterday,
            "dr.n",
            "stopped: no more",
        )
        assert held.item.due == TODAY - dt.timedelta(days=120) + dt.timedelta(weeks=14)  # when it would have been

    # The treatment again, after the closure: the recalls come back, counted from it.
    with _session(engine) as s, s.begin():
        sessions.record(s, patient=patients.get(s, code="stopped"), data=_toxin(0), kb=kb, actor="N")
        sessions.record(s, patient=patients.get(s, code="operated"), data=_toxin(0), kb=kb, actor="N")
        data = QuestionnaireCreate(date=TODAY, instrument="hfs7", answers=[1] * 7)
        outcomes.add_questionnaire(s, patient=patients.get(s, code="declines"), data=data, actor="p")
    later = due(horizon=400)
    assert {("stopped", "toxin"), ("operated", "toxin"), ("declines", "hfs7")} <= later
    with _session(engine) as s:
        assert recalls.closed(s, kb=kb, today=TODAY, patient_id=patients.get(s, code="stopped").id) == []

    # Closed today, reopened: the audit trail keeps both, and the closure is gone.
    with _session(engine) as s, s.begin():
        stopped = patients.get(s, code="stopped")
        closure = recalls.close(s, patient=stopped, recall="toxin", reason="moved away", actor="dr.n", today=TODAY)
        s.flush()
        closure_id = closure.id
    assert ("stopped", "toxin") not in due(horizon=400)
    with _session(engine) as s, s.begin(), pytest.raises(NotFoundError, match="no recall closure"):
        recalls.closure(s, patient=patients.get(s, code="declines"), closure_id=closure_id)
    with _session(engine) as s, s.begin():
        stopped = patients.get(s, code="stopped")
        recalls.reopen(
            s, patient=stopped, closure=recalls.closure(s, patient=stopped, closure_id=closure_id), actor="dr.m"
        )
    assert ("stopped", "toxin") in due(horizon=400)
    with _session(engine) as s:
        trail = [(e.action, e.actor) for e in audit.search(s, patient="stopped") if e.entity == "recall_closure"]
        assert trail == [("delete", "dr.m"), ("create", "dr.n"), ("create", "dr.n")]
        assert audit.verify(s).ok


def test_a_recall_reopened_twice_at_once_is_reopened_once(engine: Engine) -> None:
    _add_patient(engine)
    with _session(engine) as s, s.begin():
        closure = recalls.close(
            s, patient=patients.get(s, code="p-001"), recall="hfs7", reason="declines", actor="n", today=TODAY
        )
        s.flush()
        closure_id = closure.id

    def reopen(s: Session) -> None:
        patient = patients.get(s, code="p-001")
        recalls.reopen(
            s, patient=patient, closure=recalls.closure(s, patient=patient, closure_id=closure_id), actor="n"
        )

    second = _meanwhile(engine, reopen, reopen)
    assert isinstance(second, NotFoundError), second
    with _session(engine) as s:
        deleted = select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "delete")
        assert s.scalar(deleted) == 1 and audit.verify(s).ok


def test_outcome_summary_against_mcid(engine: Engine, kb: KnowledgeBase) -> None:
    _add_patient(engine)
    with _session(engine) as s, s.begin():
        patient = patients.get(s, code="p-001")
        for days, answers in ((90, [3, 3, 3, 2, 2, 2, 2]), (10, [1, 1, 1, 1, 1, 1, 1])):
            data = QuestionnaireCreate(date=TODAY - dt.timedelta(days=days), instrument="hfs7", answers=answers)
            outcomes.add_questionnaire(s, patient=patient, data=data, actor="p")
        outcomes.add_diary(s, patient=patient, data=DiaryCreate(date=TODAY, spasms=30, intensity=6), actor="p")
        outcomes.add_grades(s, patient=patient, data=GradesCreate(date=TODAY, smc_grade=2), actor="n")
        summary = outcomes.summary(s, patient=patient, kb=kb)
    change = summary.questionnaires["hfs7"]
    assert (change.first, change.latest, change.change) == (17, 7, -10)
    assert change.response.startswith("improved")
    assert summary.diary_entries == 1 and summary.monthly[0]["mean_spasms"] == 30


@pytest.mark.parametrize("wrong", [{"per": "week"}, {"intensity": 11}, {"spasms": -1}])
def test_diary_constraints_hold_in_the_database(engine: Engine, wrong: dict[str, Any]) -> None:
    """Each check the diary's table makes, one at a time (migration 0006 rebuilt the table on SQLite)."""
    _add_patient(engine)
    entry = {
        "patient_id": 1,
        "date": TODAY,
        "spasms": 5,
        "per": "day",
        "intensity": 3,
        "triggers": [],
        "created_by": "x",
    }
    with pytest.raises(DBAPIError, match=r"(?i)check"), _session(engine) as s, s.begin():
        s.add(DiaryEntry(**entry | wrong))
        s.flush()
    with _session(engine) as s, s.begin():
        s.add(DiaryEntry(**entry))  # the same entry, right, is stored


def test_a_removed_records_id_is_never_given_to_a_new_one(engine: Engine, kb: KnowledgeBase) -> None:
    """SQLite gave a new row the largest id plus one: removing the newest grades and recording others gave them the
    removed record's id, and the audit trail named two records "grades 1"."""
    _add_patient(engine)
    for entity, make in (
        (
            "grades",
            lambda s, p: outcomes.add_grades(s, patient=p, data=GradesCreate(date=TODAY, smc_grade=2), actor="n"),
        ),
        (
            "diary",
            lambda s, p: outcomes.add_diary(
                s, patient=p, data=DiaryCreate(date=TODAY, spasms=3, intensity=2), actor="p"
            ),
        ),
        (
            "questionnaire",
            lambda s, p: outcomes.add_questionnaire(
                s, patient=p, data=QuestionnaireCreate(date=TODAY, instrument="hfs7", answers=[1] * 7), actor="p"
            ),
        ),
    ):
        with _session(engine) as s, s.begin():
            row = make(s, patients.get(s, code="p-001"))
            s.flush()
            first = row.id
            outcomes.remove(
                s, patient=patients.get(s, code="p-001"), entity=entity, row_id=first, actor="n", reason="x1"
            )
        with _session(engine) as s, s.begin():
            row = make(s, patients.get(s, code="p-001"))
            s.flush()
            assert row.id > first, entity
    with _session(engine) as s, s.begin():
        patient = patients.get(s, code="p-001")
        closure = recalls.close(s, patient=patient, recall="hfs7", reason="declines", actor="n", today=TODAY)
        s.flush()
        first = closure.id
        recalls.reopen(s, patient=patient, closure=closure, actor="n")
    with _session(engine) as s, s.begin():
        again = recalls.close(
            s, patient=patients.get(s, code="p-001"), recall="hfs7", reason="again", actor="n", today=TODAY
        )
        s.flush()
        assert again.id > first
    # A treatment session entered by mistake, removed and recorded again as it was given.
    with _session(engine) as s, s.begin():
        patient = patients.get(s, code="p-001")
        wrong = sessions.record(s, patient=patient, data=_toxin(30), kb=kb, actor="n")
        s.flush()
        first = wrong.id
        sessions.remove(s, patient=patient, session_id=first, actor="n", reason="typed on the wrong patient")
    with _session(engine) as s, s.begin():
        right = sessions.record(s, patient=patients.get(s, code="p-001"), data=_toxin(30), kb=kb, actor="n")
        s.flush()
        assert right.id > first


def test_sessions_recorded_before_their_ids_were_never_reused_are_kept(db_url: str, kb: KnowledgeBase) -> None:
    """Upgrading a clinic's database from 0014 rebuilds treatment_sessions on SQLite: every row, id and check stays,
    and a removed session's id is not given to the next one."""
    from hemicare.db.engine import make_engine

    engine = make_engine(db_url)
    upgrade(engine, "0014")
    _add_patient(engine)
    with _session(engine) as s, s.begin():
        for days in (200, 100):
            sessions.record(s, patient=patients.get(s, code="p-001"), data=_toxin(days), kb=kb, actor="n")
    with engine.begin() as connection:
        before = connection.execute(text("SELECT id, kind, date, data FROM treatment_sessions ORDER BY id")).all()
    upgrade(engine)
    assert current_revision(engine) == "0016"
    with engine.begin() as connection:
        assert (
            connection.execute(text("SELECT id, kind, date, data FROM treatment_sessions ORDER BY id")).all() == before
        )
    with _session(engine) as s, s.begin():
        sessions.remove(s, patient=patients.get(s, code="p-001"), session_id=before[-1][0], actor="n", reason="twice")
    with _session(engine) as s, s.begin():
        added = sessions.record(s, patient=patients.get(s, code="p-001"), data=_toxin(100), kb=kb, actor="n")
        s.flush()
        assert added.id > before[-1][0]
    with pytest.raises(DBAPIError), engine.begin() as connection:
        connection.execute(text("UPDATE treatment_sessions SET kind = 'massage'"))
    downgrade(engine, "0014")
    with engine.begin() as connection:
        assert len(connection.execute(text("SELECT id FROM treatment_sessions")).all()) == 2
    engine.dispose()


def test_audit_trail_is_append_only_and_verifiable(engine: Engine) -> None:
    _add_patient(engine)
    _add_patient(engine, code="p-002")
    with _session(engine) as s:
        result = audit.verify(s)
        assert result.ok and result.checked == 2
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE id = 1"))


def _drop_audit_triggers(engine: Engine) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "sqlite":
            connection.execute(text("DROP TRIGGER audit_log_no_update"))
            connection.execute(text("DROP TRIGGER audit_log_no_delete"))
        else:
            connection.execute(text("DROP TRIGGER audit_log_append_only ON audit_log"))


def test_an_entrys_detail_reads_as_words_with_what_a_removed_record_held() -> None:
    removed = {
        "patient": "p-001",
        "entry": {"date": "2026-08-30", "smc_grade": 2, "cohen_albert": None, "answers": [1, 0, 2], "triggers": []},
    }
    assert audit.detail_words(removed) == "patient: p-001; entry: (date 2026-08-30, smc grade 2, answers 1/0/2)"
    assert audit.detail_words({"ended": 2}) == "ended: 2" and audit.detail_words(None) == ""


def test_audit_verify_catches_an_edited_entry(engine: Engine) -> None:
    for code in ("p-001", "p-002", "p-003"):
        _add_patient(engine, code=code)
    _drop_audit_triggers(engine)  # an attacker with database access
    with engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE id = 2"))
    with _session(engine) as s:
        result = audit.verify(s)
    assert not result.ok and result.problems == ["entry 2: content does not match its hash (edited?)"]


def test_audit_verify_catches_a_deleted_entry(engine: Engine) -> None:
    for code in ("p-001", "p-002", "p-003"):
        _add_patient(engine, code=code)
    _drop_audit_triggers(engine)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id = 2"))
    with _session(engine) as s:
        result = audit.verify(s)
    assert not result.ok
    assert "entries 2..2 are missing (deleted?)" in result.problems
    assert "entry 3: does not follow the entry before it (chain broken)" in result.problems


def test_failed_write_leaves_nothing_half_written(engine: Engine, kb: KnowledgeBase) -> None:
    _add_patient(engine)
    with _session(engine) as s:
        before = (s.scalar(select(func.count()).select_from(AuditEntry)), s.scalar(select(func.count(DiaryEntry.id))))
    with pytest.raises(RuntimeError), _session(engine) as s, s.begin():
        outcomes.add_diary(
            s, patient=patients.get(s, code="p-001"), data=DiaryCreate(date=TODAY, spasms=1, intensity=1), actor="p"
        )
        raise RuntimeError("crash after the diary row and its audit entry were flushed")
    with _session(engine) as s:
        after = (s.scalar(select(func.count()).select_from(AuditEntry)), s.scalar(select(func.count(DiaryEntry.id))))
    assert after == before


def test_recheck_lists_changed_plans(engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any], kb_tree: Any) -> None:
    import yaml

    from hemicare.engine import load

    _add_patient(engine)
    _assess(engine, kb, {**baseline, "medications": ["gentamicin"]})
    with _session(engine) as s, s.begin():
        plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="tester", today=TODAY)
    with _session(engine) as s:
        assert plans.recheck(s, kb=kb, today=TODAY, actor="t") == []
    rule = kb_tree / "rules/safety/potentiating_drugs_toxin.yaml"
    data = yaml.safe_load(rule.read_text())
    data["action"] = "defer"
    rule.write_text(yaml.safe_dump(data, sort_keys=False))
    updated = load(kb_tree)
    with _session(engine) as s, s.begin():
        changes = plans.recheck(s, kb=updated, today=TODAY, actor="t", save=True)
    assert len(changes) == 1 and changes[0].patient == "p-001"
    assert {"recommendation": "botulinum_toxin", "from": "recommended", "to": "deferred"} in changes[0].status_changes
    with _session(engine) as s:
        assert plans.latest(s, patient=patients.get(s, code="p-001")).number == 2  # type: ignore[union-attr]
        assert plans.recheck(s, kb=updated, today=TODAY, actor="t") == []


def test_recheck_lists_doses_changed_by_a_recorded_session(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    """A toxin session recorded after the plan, whose effect lasted only six weeks, raises the next session's doses
    without changing a status or an alert: the recheck names each dose that changed."""
    _add_patient(engine)
    _assess(engine, kb, baseline)
    with _session(engine) as s, s.begin():
        first = plans.generate(s, patient=patients.get(s, code="p-001"), kb=kb, actor="tester", today=TODAY)
        before = first.summary["given"]["botulinum_toxin"]
        sessions.record(s, patient=patients.get(s, code="p-001"), data=_toxin(100, effect_weeks=6), kb=kb, actor="N")
    with _session(engine) as s, s.begin():
        [change] = plans.recheck(s, kb=kb, today=TODAY, actor="t", save=True)
    assert not change.new and not change.status_changes and not change.alerts_added and not change.alerts_removed
    factor = kb.toxin_programme().limits["short_effect_dose_factor"].value
    site = "Upper lid, medial pretarsal (left)"  # the one site the session recorded, at 2.5 U
    assert before[site] == "2.5 U"
    assert {"recommendation": "botulinum_toxin", "item": site, "from": "2.5 U", "to": f"{2.5 * factor:g} U"} in (
        change.given_changes
    )
    assert {c["item"] for c in change.given_changes} >= {site, "total"}
    assert all(c["recommendation"] == "botulinum_toxin" for c in change.given_changes)
    with _session(engine) as s:
        saved = plans.latest(s, patient=patients.get(s, code="p-001"))
        assert saved is not None and saved.number == 2
        assert saved.summary["given"] == plans.given((r["id"], r["details"]) for r in saved.content["recommendations"])
        assert plans.recheck(s, kb=kb, today=TODAY, actor="t") == []


def test_given_changes_name_each_item_added_changed_or_gone() -> None:
    before = {
        "herbal_formula": {"formula": "A", "Gou Teng": "12 g", "Tian Ma": "9 g"},
        "acupuncture": {"points": "LI4"},
    }
    after = {"herbal_formula": {"formula": "A", "Tian Ma": "6 g", "Zhi Zi": "9 g"}, "diet": {"points": "ST36"}}
    assert plans.given_changes(before, after) == [
        {"recommendation": "herbal_formula", "item": "Tian Ma", "from": "9 g", "to": "6 g"},
        {"recommendation": "herbal_formula", "item": "Zhi Zi", "from": "absent", "to": "9 g"},
        {"recommendation": "herbal_formula", "item": "Gou Teng", "from": "12 g", "to": "absent"},
        {"recommendation": "diet", "item": "points", "from": "absent", "to": "ST36"},
        {"recommendation": "acupuncture", "item": "points", "from": "LI4", "to": "absent"},
    ]
    assert plans.given_changes(after, after) == []


def test_recheck_in_worker_processes_matches_one_process(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(7):
        code = f"p-{index:03d}"
        _add_patient(engine, code=code)
        _assess(engine, kb, {**baseline, "age": 40 + index, "pregnant": index % 2 == 0}, code=code)
        if index % 3 == 0:  # some patients already have a plan, in every worker's range
            with _session(engine) as s, s.begin():
                plans.generate(s, patient=patients.get(s, code=code), kb=kb, actor="t", today=TODAY)
    monkeypatch.setattr(plans, "RECHECK_TASK_PATIENTS", 2)
    progress: list[int] = []
    with _session(engine) as s:
        one = plans.recheck(s, kb=kb, today=TODAY, actor="t", workers=1)
        two = plans.recheck(s, kb=kb, today=TODAY, actor="t", workers=2, progress=progress.append)
    assert [c.model_dump() for c in one] == [c.model_dump() for c in two]
    assert [c.patient for c in one] == ["p-001", "p-002", "p-004", "p-005"] and all(c.new for c in one)
    # Progress comes task by task (two patients each), not once per worker at the end.
    assert progress == [2, 2, 2, 1]


def test_recheck_names_the_patient_whose_session_no_plan_can_be_made_from(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A toxin session stored before sessions were held to 1,000 U: the recheck stops naming the patient and the
    session, in one process and in worker processes (whose error crosses back pickled, its problems intact)."""
    for index in range(4):
        _add_patient(engine, code=f"p-{index:03d}")
        _assess(engine, kb, baseline, code=f"p-{index:03d}")
    with _session(engine) as s, s.begin():
        row = sessions.record(s, patient=patients.get(s, code="p-002"), data=_toxin(60), kb=kb, actor="N")
        row.data = {**row.data, "sites": [{**row.data["sites"][0], "units": 400}] * 3, "total_units": 1200}
    monkeypatch.setattr(plans, "RECHECK_TASK_PATIENTS", 2)
    said = f"patient p-002: the toxin session of {TODAY - dt.timedelta(days=60)} holds 1200 U, more than a session can"
    for workers in (1, 2):
        with _session(engine) as s, pytest.raises(InputError) as raised:
            plans.recheck(s, kb=kb, today=TODAY, actor="t", workers=workers)
        (problem,) = raised.value.problems
        assert problem.path == "sessions" and problem.message.startswith(said), (workers, problem)
        assert str(raised.value) == f"field `sessions`: {problem.message}"


def test_recalls_for_one_patient_match_the_clinic_list(engine: Engine, kb: KnowledgeBase) -> None:
    for code in ("a", "b"):
        _add_patient(engine, code=code)
    with _session(engine) as s, s.begin():
        for code, days in (("a", 120), ("b", 150)):
            sessions.record(s, patient=patients.get(s, code=code), data=_toxin(days), kb=kb, actor="N")
    with _session(engine) as s:
        everyone = recalls.due(s, kb=kb, today=TODAY, horizon_days=200)
        one = recalls.due(s, kb=kb, today=TODAY, horizon_days=200, patient_id=patients.get(s, code="b").id)
        some = recalls.due(s, kb=kb, today=TODAY, horizon_days=200, patient_ids=[patients.get(s, code="a").id])
        none = recalls.due(s, kb=kb, today=TODAY, horizon_days=200, patient_ids=[])
    assert one == [item for item in everyone if item.patient == "b"] and one
    assert some == [item for item in everyone if item.patient == "a"] and some
    assert none == []


def test_the_audit_trail_is_searched_by_patient_and_by_user(
    engine: Engine, kb: KnowledgeBase, baseline: dict[str, Any]
) -> None:
    for code in ("p-001", "p-0011"):  # one code the start of the other: no mix-up
        _add_patient(engine, code=code)
        _assess(engine, kb, baseline, code=code)
    with _session(engine) as s, s.begin():
        patient = patients.get(s, code="p-001")
        plans.generate(s, patient=patient, kb=kb, actor="dr.n", today=TODAY)
        sessions.record(s, patient=patient, data=_toxin(100), kb=kb, actor="dr.n")
        entry = outcomes.add_diary(s, patient=patient, data=DiaryCreate(date=TODAY, spasms=5, intensity=2), actor="pt")
        outcomes.remove(s, patient=patient, entity="diary", row_id=entry.id, actor="pt", reason=None)
        audit.record(s, actor="dr.n", action="read", entity="plan", entity_id="p-001/v1")
        audit.record(s, actor="dr.m", action="read", entity="patient", entity_id="p-0011")
    with _session(engine) as s:
        found = audit.search(s, patient="p-001")
        about = [(e.entity, e.action) for e in found]
        assert audit.count(s, patient="p-001") == len(found) == 7, about
        assert {entity for entity, _ in about} == {"patient", "assessment", "plan", "session", "diary"}
        assert [e.id for e in found] == sorted((e.id for e in found), reverse=True)  # newest first
        by_n = audit.search(s, actor="dr.n")
        assert audit.count(s, actor="dr.n") == len(by_n) == 3 and {e.actor for e in by_n} == {"dr.n"}
        assert audit.search(s, actor="dr.n", patient="p-0011") == [] and audit.count(s, patient="p-0011") >= 2
        page = audit.search(s, patient="p-001", offset=2, limit=2)
        assert [e.id for e in page] == [e.id for e in found[2:4]]


def test_patients_are_found_by_part_of_their_code_or_name(engine: Engine) -> None:
    with _session(engine) as s, s.begin():
        for code, name in (
            ("hf-001", "Mei Lin"),
            ("hf-002", "Arjun Patel"),
            ("hf_100", "Linh Tran"),
            ("x-1", "O. 100%"),
        ):
            patients.create(s, data=PatientCreate(code=code, name=name, sex="female"), actor="t")
    with _session(engine) as s:

        def codes(text: str | None) -> list[str]:
            return [row.code for row in patients.find(s, text=text)]

        assert codes(None) == ["hf-001", "hf-002", "hf_100", "x-1"]
        assert codes("LIN") == ["hf-001", "hf_100"]  # any case, code or name
        assert codes("hf-00") == ["hf-001", "hf-002"]
        assert codes("_") == ["hf_100"] and codes("%") == ["x-1"]  # wildcards are taken as they are
        assert codes("nobody") == []
        # A page of them, counted in the database.
        assert [row.code for row in patients.find(s, text="hf", offset=1, limit=1)] == ["hf-002"]
        assert patients.count(s, text="lin") == 2 and patients.count(s) == 4
