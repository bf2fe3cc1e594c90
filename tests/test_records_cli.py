"""The records commands through the CLI runner: good input works, bad input exits 2 and writes nothing."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, func, select, update
from typer.testing import CliRunner

from hemicare.audit.models import AuditEntry
from hemicare.cli import app
from hemicare.db.engine import session_factory
from hemicare.plans.models import PlanVersion
from hemicare.sessions.models import TreatmentSession

from .conftest import EXAMPLES

runner = CliRunner()


def _run(db_url: str, *args: str) -> Any:
    return runner.invoke(app, [*args, "--db", db_url])


def _audit_count(engine: Engine) -> int:
    with session_factory(engine)() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0)


@pytest.fixture
def clinic(engine: Engine, db_url: str) -> str:
    result = _run(
        db_url,
        "patients",
        "add",
        "--code",
        "demo-001",
        "--name",
        "Mei Lin",
        "--sex",
        "female",
        "--birth-year",
        "1974",
        "--by",
        "dr.n",
    )
    assert result.exit_code == 0, result.output
    return db_url


def test_db_upgrade_and_current(db_url: str) -> None:
    assert "revision 0016" in _run(db_url, "db", "upgrade").stdout
    assert _run(db_url, "db", "current").stdout.strip() == "0016"
    assert "base" in _run(db_url, "db", "downgrade", "--revision", "base").stdout


def test_commands_refuse_an_unmigrated_database(db_url: str) -> None:
    result = _run(db_url, "patients", "list")
    assert result.exit_code == 2 and "run `hemicare db upgrade`" in result.stderr


def _toxin_file(folder: Path, date: str) -> str:
    """A session file for one toxin session on ``date``: 2.5 U at one site."""
    path = folder / "toxin.yaml"
    site = {"site": "upper_lid_medial", "side": "left", "units": 2.5}
    details = {"kind": "toxin", "product": "onabotulinumtoxinA", "lot": "C77", "sites": [site]}
    path.write_text(yaml.safe_dump({"date": date, "clinician": "Dr N", "details": details}))
    return str(path)


def test_a_medicine_prescribed_and_stopped(clinic: str, tmp_path: Path) -> None:
    """By a brand name, kept under its generic one; its stop is refused before its date, with the field named."""
    result = runner.invoke(app, ["plan", str(EXAMPLES / "demo-001.yaml"), "--save", "--db", clinic, "--by", "dr.n"])
    assert result.exit_code == 0, result.output
    medicine = tmp_path / "medicine.yaml"
    details = {"kind": "medicine", "medicine": "Neurontin", "dose": "300 mg at night", "override_reason": "declines"}
    medicine.write_text(yaml.safe_dump({"date": "2026-01-06", "clinician": "Dr N", "details": details}))
    assert _run(clinic, "sessions", "add", "demo-001", str(medicine)).exit_code == 0
    prescribed = json.loads(_run(clinic, "sessions", "list", "demo-001").stdout)[-1]
    assert (prescribed["kind"], prescribed["medicine"]) == ("medicine", "gabapentin")
    early = _run(clinic, "sessions", "outcome", "demo-001", str(prescribed["id"]), "--stopped", "2026-01-01")
    assert (
        early.exit_code == 2 and "field `stopped`: 2026-01-01 is before the prescription of 2026-01-06" in early.stderr
    )
    assert (
        _run(clinic, "sessions", "outcome", "demo-001", str(prescribed["id"]), "--stopped", "2026-02-01").exit_code == 0
    )


def test_a_nerve_procedures_relief_is_shown_with_the_patient(clinic: str, tmp_path: Path) -> None:
    """`patients show` puts each procedure's relief beside the toxin sessions', in words and in its JSON."""
    result = runner.invoke(app, ["plan", str(EXAMPLES / "demo-001.yaml"), "--save", "--db", clinic, "--by", "dr.n"])
    assert result.exit_code == 0, result.output
    assert "Nerve procedures" not in _run(clinic, "patients", "show", "demo-001").stdout
    block = tmp_path / "block.yaml"
    details = {"kind": "procedure", "procedure": "nerve_block", "side": "left", "override_reason": "declines MVD"}
    block.write_text(yaml.safe_dump({"date": "2026-02-03", "clinician": "Dr N", "details": details}))
    assert _run(clinic, "sessions", "add", "demo-001", str(block)).exit_code == 0
    text = _run(clinic, "patients", "show", "demo-001").stdout
    assert "Nerve procedures: facial nerve block (left) of 2026-02-03: relief not yet recorded.\n" in text
    done = json.loads(_run(clinic, "sessions", "list", "demo-001").stdout)[-1]
    told = _run(clinic, "sessions", "outcome", "demo-001", str(done["id"]), "--effect-weeks", "26.5")
    assert told.exit_code == 0, told.output
    shown = json.loads(_run(clinic, "patients", "show", "demo-001", "--json").stdout)
    assert shown["outcomes"]["procedures"] == [
        {"date": "2026-02-03", "procedure": "nerve_block", "side": "left", "effect_weeks": 26.5, "adverse_effects": []}
    ]
    text = _run(clinic, "patients", "show", "demo-001").stdout
    assert "Nerve procedures: facial nerve block (left) of 2026-02-03: relief 26.5 weeks.\n" in text


def test_what_the_patient_says_matters_is_shown_with_the_patient(clinic: str, engine: Engine) -> None:
    """`patients show` gives the patient's latest answers (stated on their page or through the API), each marked
    where the latest assessment records the opposite, in words and in its JSON."""
    from hemicare.outcomes import service as outcome_service
    from hemicare.outcomes.schemas import PreferencesStated
    from hemicare.patients import service as patient_service

    result = runner.invoke(app, ["plan", str(EXAMPLES / "demo-001.yaml"), "--save", "--db", clinic, "--by", "dr.n"])
    assert result.exit_code == 0, result.output
    assert json.loads(_run(clinic, "patients", "show", "demo-001", "--json").stdout)["stated_preferences"] is None
    assert "what the patient says" not in _run(clinic, "patients", "show", "demo-001").stdout
    answers = {"avoid_surgery": "yes", "integrative_care": "no"}  # demo-001: integrative care asked for
    with session_factory(engine)() as s, s.begin():
        patient = patient_service.get(s, code="demo-001")
        data = PreferencesStated.model_validate({"date": "2026-11-02", "answers": answers})
        outcome_service.state_preferences(s, patient=patient, data=data, actor="mei.lin")
    shown = json.loads(_run(clinic, "patients", "show", "demo-001", "--json").stdout)["stated_preferences"]
    assert shown == {
        "date": "2026-11-02",
        "answers": answers,
        "differ_from_the_assessment": ["avoid_surgery", "integrative_care"],
    }
    assert (
        'what the patient says matters to them (2026-11-02): "I would rather not have an operation": yes (the '
        'assessment records the opposite); "I would like Traditional Chinese Medicine beside my medical treatment": '
        "no (the assessment records the opposite)\n"
    ) in _run(clinic, "patients", "show", "demo-001").stdout


def test_plans_show_restates_an_old_versions_options_as_its_statuses_say(
    clinic: str, engine: Engine, tmp_path: Path
) -> None:
    """A version signed before signing kept the decision aid in step still holds HemiCare's proposal there;
    `plans show` prints the options as the items' statuses say, `export` keeps the version as stored."""
    assert runner.invoke(app, ["plan", str(EXAMPLES / "demo-001.yaml"), "--save", "--db", clinic]).exit_code == 0
    edit = "mvd=not_recommended:would rather not"
    signed = _run(clinic, "plans", "sign", "demo-001", "--version", "1", "--role", "neurosurgeon", "--edit", edit)
    assert signed.exit_code == 0, signed.output
    with session_factory(engine)() as s, s.begin():  # as such a version was stored: the aid of the generated one
        generated, later = s.scalars(select(PlanVersion).order_by(PlanVersion.number)).all()
        later.content = {**later.content, "decision_aid": generated.content["decision_aid"]}
    options = [
        c["option"] for c in json.loads(_run(clinic, "plans", "show", "demo-001").stdout)["decision_aid"]["columns"]
    ]
    assert "mvd" not in options and "botulinum_toxin" in options
    out = tmp_path / "export.json"
    assert _run(clinic, "export", "--patient", "demo-001", "--output", str(out)).exit_code == 0
    kept = json.loads(out.read_text())["plans"][1]["content"]["decision_aid"]["columns"]
    assert "mvd" in [c["option"] for c in kept]


def test_plans_overrides_lists_what_was_changed_at_sign_off(clinic: str, engine: Engine) -> None:
    """Each status changed at sign-off, by item and change, with its reason; a bad day to start from exits 2."""
    assert _run(clinic, "plans", "overrides").stdout == "no status was changed at sign-off\n"
    assert runner.invoke(app, ["plan", str(EXAMPLES / "demo-001.yaml"), "--save", "--db", clinic]).exit_code == 0
    edit = "mvd=not_recommended:would rather not"
    signed = _run(clinic, "plans", "sign", "demo-001", "--version", "1", "--role", "neurosurgeon", "--edit", edit)
    assert signed.exit_code == 0, signed.output
    before = _audit_count(engine)
    text = _run(clinic, "plans", "overrides", "--by", "dr.kb").stdout
    assert _audit_count(engine) == before + 1
    today = dt.date.today().isoformat()
    assert text == (
        "Microvascular decompression (MVD): recommended -> not_recommended, 1 time (1 patient)\n"
        f"  {today}  demo-001 v2  neurosurgeon: would rather not\n"
    )
    listed = json.loads(_run(clinic, "plans", "overrides", "--since", today, "--json").stdout)
    assert [(g["recommendation"], g["from"], g["to"], g["times"]) for g in listed] == [
        ("mvd", "recommended", "not_recommended", 1)
    ]
    assert listed[0]["overrides"] == [
        {"patient": "demo-001", "number": 2, "on": today, "role": "neurosurgeon", "reason": "would rather not"}
    ]
    later = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    assert json.loads(_run(clinic, "plans", "overrides", "--since", later, "--json").stdout) == []
    refused = _run(clinic, "plans", "overrides", "--since", "29/11/2026")
    assert refused.exit_code == 2 and "field `--since`: '29/11/2026' is not a date (YYYY-MM-DD)" in refused.stderr


def test_patient_workflow(clinic: str, engine: Engine, tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", str(EXAMPLES / "demo-001.yaml"), "--save", "--db", clinic, "--by", "dr.n"])
    assert result.exit_code == 0, result.output
    assert "plan version 1" in result.stderr
    assert _run(clinic, "sessions", "add", "demo-001", _toxin_file(tmp_path, "2026-01-05")).exit_code == 0
    session_id = str(json.loads(_run(clinic, "sessions", "list", "demo-001").stdout)[0]["id"])
    wrong_kind = _run(clinic, "sessions", "outcome", "demo-001", session_id, "--result", "cured")
    assert wrong_kind.exit_code == 2 and "field `result`: does not apply to a toxin session" in wrong_kind.stderr
    missing = _run(clinic, "sessions", "outcome", "demo-001", "999", "--effect-weeks", "12")
    assert missing.exit_code != 0 and "patient 'demo-001' has no session 999" in missing.stderr
    told = _run(
        clinic, "sessions", "outcome", "demo-001", session_id, "--effect-weeks", "13", "--adverse-effect", "ptosis"
    )
    assert told.exit_code == 0, told.output
    listed = json.loads(_run(clinic, "sessions", "list", "demo-001").stdout)[0]
    assert (listed["effect_weeks"], listed["adverse_effects"]) == (13.0, ["ptosis"])
    assert _run(clinic, "diary", "add", "demo-001", "--spasms", "20", "--intensity", "5").exit_code == 0
    assert (
        _run(
            clinic, "diary", "questionnaire", "demo-001", "--instrument", "hfs7", "--answers", "1,2,1,2,1,2,1"
        ).exit_code
        == 0
    )
    signed = _run(
        clinic,
        "plans",
        "sign",
        "demo-001",
        "--version",
        "1",
        "--role",
        "neurologist",
        "--edit",
        "mvd=option:patient prefers toxin first",
        "--by",
        "dr.n",
    )
    assert signed.exit_code == 0, signed.output
    shown = json.loads(_run(clinic, "patients", "show", "demo-001", "--json").stdout)
    assert shown["plan"]["version"] == 2 and shown["plan"]["statuses"]["mvd"] == "option"
    first = json.loads(_run(clinic, "plans", "show", "demo-001", "--version", "1").stdout)
    current = json.loads(_run(clinic, "plans", "show", "demo-001").stdout)
    assert (first["number"], first["kind"], first["edits"]) == (1, "generated", [])
    assert (current["number"], current["kind"], current["edits"][0]["to"]) == (2, "reviewed", "option")
    text = _run(clinic, "patients", "show", "demo-001").stdout
    assert f"plan: version 2 (reviewed)\n  conventional: signed by dr.n (neurologist) on {dt.date.today()}\n" in text
    # The latest assessment in words, as on the patient page and in the referral letter.
    assert shown["assessment"]["assessed_on"] == dt.date.today().isoformat()
    assert "  MRI done: neurovascular compression yes (aica); structural lesion no.\n" in text
    assert [f"  {line}" for line in shown["assessment"]["in_words"]] == text.split("\n")[
        2 : 2 + len(shown["assessment"]["in_words"])
    ]
    due = json.loads(_run(clinic, "due", "--horizon", "400", "--json").stdout)
    assert any(item["what"] == "botulinum toxin session" for item in due)
    out = tmp_path / "export.json"
    assert _run(clinic, "export", "--patient", "demo-001", "--output", str(out)).exit_code == 0
    exported = json.loads(out.read_text())
    assert len(exported["plans"]) == 2 and len(exported["sessions"]) == 1 and len(exported["diary"]) == 1
    assert exported["stated_preferences"] == []  # what the patient says matters to them, once they say it
    assert [e["action"] for e in exported["audit"]][:1] == ["create"]
    assert "intact" in _run(clinic, "audit", "verify").stdout
    # The ptosis after the session recorded in January lowers the upper lid's doses in the next plan: a recheck
    # names each dose that changed (no status or alert did), and finds nothing once the new plan is saved.
    recheck = _run(clinic, "recheck")
    assert recheck.exit_code == 0 and "1 of 1 patients' plans changed" in recheck.stdout, recheck.output
    assert "demo-001: botulinum_toxin, Upper lid, medial pretarsal (left): 2.5 U -> 1.25 U; " in recheck.stdout
    assert [c["item"] for c in json.loads(_run(clinic, "recheck", "--json").stdout)[0]["given_changes"]][:2] == [
        "Upper lid, medial pretarsal (left)",
        "Upper lid, lateral pretarsal (left)",
    ]
    assert _run(clinic, "recheck", "--save").exit_code == 0
    assert "0 of 1 patients' plans changed" in _run(clinic, "recheck").stdout


def test_signing_says_what_a_lifted_item_brings(clinic: str, tmp_path: Path) -> None:
    """Carbamazepine lifted beside MVD for a carrier of HLA-B*15:02: the command says the contraindication now on it;
    a change that lifts nothing says nothing more."""
    carrier = yaml.safe_load((EXAMPLES / "demo-001.yaml").read_text()) | {"hla_b1502": "positive"}
    (tmp_path / "carrier.yaml").write_text(yaml.safe_dump(carrier))
    assert _run(clinic, "plan", str(tmp_path / "carrier.yaml"), "--save", "--by", "dr.n").exit_code == 0
    sign = ["plans", "sign", "demo-001", "--role", "neurologist", "--by", "dr.n"]
    held = _run(clinic, *sign, "--version", "1", "--edit", "mvd=option:prefers toxin first")
    assert held.stdout == "signed plan version 2 for patient demo-001 as neurologist\n"
    lifted = _run(clinic, *sign, "--version", "2", "--edit", "medication:carbamazepine=option:asks for tablets")
    assert lifted.stdout.splitlines() == [
        "signed plan version 3 for patient demo-001 as neurologist",
        "  Carbamazepine: Lifted at sign-off while these hold for the patient: Carbamazepine with HLA-B*15:02.",
    ]


def test_patients_show_dates_a_sign_off_by_the_clinics_day(
    clinic: str, engine: Engine, clinic_zone: Callable[[str], None]
) -> None:
    """Signed at 21:00 in New York, stored on the next day in UTC: the clinic's day is shown."""
    assert _run(clinic, "plan", str(EXAMPLES / "demo-001.yaml"), "--save", "--by", "dr.n").exit_code == 0
    signed = _run(clinic, "plans", "sign", "demo-001", "--version", "1", "--role", "neurologist", "--by", "dr.n")
    assert signed.exit_code == 0, signed.output
    clinic_zone("America/New_York")
    today = dt.date.today()
    evening = dt.datetime.combine(today, dt.time(21), tzinfo=dt.UTC) + dt.timedelta(hours=5)  # 21:00 EST
    with session_factory(engine)() as s, s.begin():
        version = s.scalars(select(PlanVersion).where(PlanVersion.number == 2)).one()
        signoff = version.content["signoff"]["conventional"] | {"at": evening.isoformat()}
        version.content = version.content | {"signoff": {"conventional": signoff}}
    text = _run(clinic, "patients", "show", "demo-001").stdout
    assert f"  conventional: signed by dr.n (neurologist) on {today}\n" in text


def test_a_plan_version_made_from_the_sessions_recorded_since_the_last(clinic: str, tmp_path: Path) -> None:
    """`patients show` names the toxin session recorded after the plan was made; `plans new` makes a version that
    knows it (its programme's last session), after which nothing is left to name."""
    assert runner.invoke(app, ["plan", str(EXAMPLES / "demo-001.yaml"), "--save", "--db", clinic]).exit_code == 0
    assert _run(clinic, "sessions", "add", "demo-001", _toxin_file(tmp_path, "2026-01-05")).exit_code == 0
    shown = json.loads(_run(clinic, "patients", "show", "demo-001", "--json").stdout)
    assert shown["plan"]["recorded_since"] == ["toxin session of 2026-01-05"]
    text = _run(clinic, "patients", "show", "demo-001").stdout
    assert "  recorded since this plan was made: toxin session of 2026-01-05\n" in text
    assert "`hemicare plans new demo-001` makes a version that does" in text
    made = _run(clinic, "plans", "new", "demo-001", "--by", "dr.n")
    assert made.exit_code == 0, made.output
    assert made.stdout == "made plan version 2 for patient demo-001 from the latest assessment and the records\n"
    shown = json.loads(_run(clinic, "patients", "show", "demo-001", "--json").stdout)
    assert (shown["plan"]["version"], shown["plan"]["kind"], shown["plan"]["recorded_since"]) == (2, "generated", [])
    toxin = json.loads(_run(clinic, "plans", "show", "demo-001").stdout)["recommendations"][1]
    assert toxin["id"] == "botulinum_toxin" and toxin["details"]["programme"]["last_session"] == "2026-01-05"
    assert "recorded since" not in _run(clinic, "patients", "show", "demo-001").stdout


# An HFS-30 grouped by subscale on the command line, 30 items with a total of 43 (the last subscale: communication).
_SUBSCALES = [
    *("--subscale", "mobility=1,2,3,4"),
    *("--subscale", "activities_of_daily_living=0,0,1,1,2"),
    *("--subscale", "emotional_wellbeing=1,1,1,1,1"),
    *("--subscale", "stigma=2,2,2,2"),
    *("--subscale", "social_support=0,0,0,0"),
    *("--subscale", "cognition=1,1,1,1"),
    *("--subscale", "communication=3,3,3,3"),
]


def test_an_hfs30_grouped_by_subscale_is_listed_with_each_subscale_score(clinic: str) -> None:
    added = _run(clinic, "diary", "questionnaire", "demo-001", "--instrument", "hfs30", *_SUBSCALES)
    assert added.exit_code == 0, added.output
    assert added.stdout.endswith(" for patient demo-001: total 43\n")
    text = _run(clinic, "diary", "list", "demo-001").stdout
    assert (
        "instrument hfs30; total 43; created by cli:" in text
        and "; subscales mobility 10 of 16, activities of daily living 4 of 20, emotional wellbeing 5 of 20, "
        "stigma 8 of 16, social support 0 of 16, cognition 4 of 16, communication 12 of 16\n"
        in text
    )
    hfs7 = _run(clinic, "diary", "questionnaire", "demo-001", "--instrument", "hfs7", "--answers", "1,1,1,1,1,1,1")
    assert hfs7.exit_code == 0, hfs7.output
    listed = json.loads(_run(clinic, "diary", "list", "demo-001", "--json").stdout)["questionnaire"]
    by_instrument = {row["instrument"]: row for row in listed}
    assert by_instrument["hfs30"]["total"] == 43
    assert by_instrument["hfs30"]["subscales"]["communication"] == {"score": 12, "max": 16}
    assert by_instrument["hfs7"]["subscales"] is None  # items as one list: their subscales are not known


def test_outcomes_entered_by_mistake_are_listed_and_removed_with_a_reason(clinic: str, engine: Engine) -> None:
    added = _run(clinic, "diary", "grades", "demo-001", "--smc", "2", "--date", "2026-03-02", "--by", "dr.s")
    assert added.exit_code == 0 and added.stdout == "grades 1 recorded for patient demo-001 on 2026-03-02\n"
    answers = "1,2,1,2,1,2,1"
    added = _run(clinic, "diary", "questionnaire", "demo-001", "--instrument", "hfs7", "--answers", answers)
    assert added.exit_code == 0 and added.stdout == "hfs7 answers 1 for patient demo-001: total 10\n"
    assert (
        _run(clinic, "diary", "add", "demo-001", "--spasms", "20", "--intensity", "5", "--trigger", "stress").exit_code
        == 0
    )
    text = _run(clinic, "diary", "list", "demo-001").stdout
    assert "  smc grade 2; created by dr.s\n" in text and "instrument hfs7; total 10;" in text
    assert "spasms 20; per day; intensity 5; triggers stress;" in text
    listed = json.loads(_run(clinic, "diary", "list", "demo-001", "--json").stdout)
    assert [row["id"] for row in listed["grades"]] == [1] and listed["grades"][0]["cohen_albert"] is None

    removed = _run(clinic, "diary", "remove", "demo-001", "--kind", "grades", "--id", "1", "--reason", "wrong patient")
    assert removed.exit_code == 0 and removed.stdout == "removed graded visit 1 of patient demo-001\n"
    listed = json.loads(_run(clinic, "diary", "list", "demo-001", "--json").stdout)
    assert listed["grades"] == [] and len(listed["questionnaire"]) == len(listed["diary"]) == 1
    assert "grades: none\n" in _run(clinic, "diary", "list", "demo-001").stdout
    again = _run(clinic, "diary", "remove", "demo-001", "--kind", "grades", "--id", "1", "--reason", "wrong patient")
    assert again.exit_code != 0 and "patient 'demo-001' has no graded visit 1" in again.stderr
    trail = json.loads(_run(clinic, "audit", "list", "--patient", "demo-001", "--json").stdout)
    deleted = [entry for entry in trail if entry["action"] == "delete"]
    assert [(e["record"], e["reason"], e["detail"]["entry"]["smc_grade"]) for e in deleted] == [
        ("grades 1", "wrong patient", 2)
    ]


@pytest.mark.parametrize("number", ["0", "2147483648", "99999999999999999999"])
def test_a_record_number_no_record_can_have_exits_2_naming_the_option(clinic: str, number: str) -> None:
    """SQLite cannot look up a number beyond 64 bits: these ended in an OverflowError's traceback."""
    for args, option in (
        (("plans", "show", "demo-001", "--version", number), "--version"),
        (("diary", "remove", "demo-001", "--kind", "diary", "--id", number, "--reason", "typed twice"), "--id"),
        (("recalls", "reopen", "demo-001", "--id", number), "--id"),
        (("sessions", "outcome", "demo-001", number, "--effect-weeks", "10"), "SESSION_ID"),
        (("sessions", "remove", "demo-001", number, "--reason", "typed twice"), "SESSION_ID"),
    ):
        refused = _run(clinic, *args)
        said = f"error: field `{option}`: {number} is not a record number (1 to 2147483647)\n"
        assert refused.exit_code == 2 and refused.stderr == said, (args, refused.stderr)
    missing = _run(clinic, "diary", "remove", "demo-001", "--kind", "diary", "--id", "2147483647", "--reason", "typo")
    assert missing.exit_code != 0 and "patient 'demo-001' has no diary entry 2147483647" in missing.stderr


def test_a_session_entered_by_mistake_is_removed_and_plans_are_made_again(
    clinic: str, engine: Engine, tmp_path: Path
) -> None:
    """A toxin session stored before sessions were held to 1,000 U (1200 U typed for 12): no plan can be made from
    it, and the error says which session and how to mend it; removed with a reason, the plans go on."""
    given = (dt.date.today() - dt.timedelta(days=100)).isoformat()
    assert _run(clinic, "sessions", "add", "demo-001", _toxin_file(tmp_path, given)).exit_code == 0
    saved = runner.invoke(app, ["plan", str(EXAMPLES / "demo-001.yaml"), "--save", "--db", clinic, "--by", "dr.n"])
    assert saved.exit_code == 0, saved.output  # made while the session still held 2.5 U

    def recorded_since() -> list[str]:
        shown = json.loads(_run(clinic, "patients", "show", "demo-001", "--json").stdout)
        return list(shown["plan"]["recorded_since"])

    assert recorded_since() == []
    sites = [{"site": "upper_lid_medial", "side": "left", "units": 400.0}] * 3
    data = {"kind": "toxin", "product": "onabotulinumtoxinA", "lot": "C77", "sites": sites, "total_units": 1200.0}
    with engine.begin() as connection:
        connection.execute(update(TreatmentSession).where(TreatmentSession.id == 1).values(data=data))
    said = f"the toxin session of {given} holds 1200 U, more than a session can (1000 U): remove it"
    refused = _run(clinic, "plans", "new", "demo-001", "--by", "dr.n")
    assert refused.exit_code == 2 and said in refused.stderr and "Traceback" not in refused.output, refused.output
    checked = _run(clinic, "recheck")
    assert checked.exit_code == 2 and f"patient demo-001: {said}" in checked.stderr, checked.output

    for args, problem in (
        (("--reason", "x"), "field `reason`"),
        (("--reason", "typed 1200 U for 12"), None),
    ):
        removed = _run(clinic, "sessions", "remove", "demo-001", "1", *args, "--by", "dr.n")
        if problem:
            assert removed.exit_code == 2 and problem in removed.stderr, removed.output
            assert len(json.loads(_run(clinic, "sessions", "list", "demo-001").stdout)) == 1  # nothing removed
        else:
            assert (
                removed.exit_code == 0
                and removed.stdout == f"removed toxin session 1 of {given} for patient demo-001\n"
            )
    assert json.loads(_run(clinic, "sessions", "list", "demo-001").stdout) == []
    assert recorded_since() == [f"the removal of the toxin session of {given}"]  # the latest plan counts it
    again = _run(clinic, "sessions", "remove", "demo-001", "1", "--reason", "typed twice", "--by", "dr.n")
    assert again.exit_code == 2 and "patient 'demo-001' has no session 1" in again.stderr
    assert _run(clinic, "plans", "new", "demo-001", "--by", "dr.n").exit_code == 0
    assert _run(clinic, "recheck").exit_code == 0 and recorded_since() == []
    trail = json.loads(_run(clinic, "audit", "list", "--patient", "demo-001", "--json").stdout)
    (deleted,) = [entry for entry in trail if entry["action"] == "delete"]
    assert deleted["reason"] == "typed 1200 U for 12" and deleted["user"] == "dr.n" and deleted["record"] == "session 1"
    assert deleted["detail"]["session"]["data"]["total_units"] == 1200 and deleted["detail"]["kind"] == "toxin"
    # The patient's export keeps what was removed from their record, with who removed it and why.
    exported = json.loads(_run(clinic, "export", "--patient", "demo-001").stdout)
    (gone,) = [entry for entry in exported["audit"] if entry["action"] == "delete"]
    assert (gone["entity"], gone["entity_id"], gone["actor"], gone["reason"]) == (
        "session",
        "1",
        "dr.n",
        deleted["reason"],
    )
    assert gone["detail"]["session"]["data"]["total_units"] == 1200 and exported["sessions"] == []


def test_a_recall_is_closed_and_reopened_from_the_command_line(clinic: str, tmp_path: Path) -> None:
    injected = (dt.date.today() - dt.timedelta(days=200)).isoformat()
    assert _run(clinic, "sessions", "add", "demo-001", _toxin_file(tmp_path, injected)).exit_code == 0
    assert "demo-001           botulinum toxin session" in _run(clinic, "due").stdout
    only = _run(clinic, "due", "--recall", "hfs7").stdout
    assert "botulinum toxin session" not in only and "demo-001           HFS-7 questionnaire" in only
    closed = _run(
        clinic, "recalls", "close", "demo-001", "--recall", "toxin", "--reason", " chose MVD ", "--by", "dr.n"
    )
    assert closed.exit_code == 0, closed.output
    assert closed.stdout == "closed toxin recalls of patient demo-001 (closure 1) until the next toxin session\n"
    assert "botulinum toxin session" not in _run(clinic, "due").stdout
    shown = _run(clinic, "patients", "show", "demo-001").stdout
    assert f"closed {dt.date.today()} by dr.n: botulinum toxin session (chose MVD); " in shown
    assert "`hemicare recalls reopen demo-001 --id 1` to reopen" in shown
    assert not [line for line in shown.splitlines() if line.startswith("due ") and "botulinum" in line], shown
    shown_json = json.loads(_run(clinic, "patients", "show", "demo-001", "--json").stdout)
    assert [c["item"]["recall"] for c in shown_json["closed_recalls"]] == ["toxin"]
    (held,) = json.loads(_run(clinic, "recalls", "closed", "demo-001", "--json").stdout)
    assert (held["closure"], held["reason"], held["closed_by"], held["item"]["recall"]) == (
        1,
        "chose MVD",
        "dr.n",
        "toxin",
    )
    assert "     1  botulinum toxin session (would be due " in _run(clinic, "recalls", "closed", "demo-001").stdout
    reopened = _run(clinic, "recalls", "reopen", "demo-001", "--id", "1", "--by", "dr.m")
    assert reopened.exit_code == 0 and "botulinum toxin session" in _run(clinic, "due").stdout
    assert _run(clinic, "recalls", "closed", "demo-001").stdout == "0 closed\n"
    trail = json.loads(_run(clinic, "audit", "list", "--patient", "demo-001", "--json").stdout)
    assert [(e["action"], e["user"]) for e in trail if e["record"].startswith("recall_closure")] == [
        ("delete", "dr.m"),
        ("create", "dr.n"),
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["patients", "add", "--code", "bad code", "--name", "X", "--sex", "female"], "field `code`"),
        (["patients", "add", "--code", "x1", "--name", "X", "--sex", "robot"], "field `sex`"),
        (["patients", "add", "--code", "demo-001", "--name", "X", "--sex", "male"], "already exists"),
        (["patients", "show", "nobody"], "no patient with code 'nobody'"),
        (["diary", "add", "demo-001", "--spasms", "5", "--intensity", "11"], "field `intensity`"),
        (["diary", "add", "demo-001", "--spasms", "-1", "--intensity", "3"], "field `spasms`"),
        (["diary", "add", "demo-001", "--spasms", "5", "--intensity", "3", "--per", "week"], "field `per`"),
        (["diary", "add", "demo-001", "--spasms", "5", "--intensity", "3", "--date", "2999-01-01"], "in the future"),
        (["diary", "add", "demo-001", "--spasms", "5", "--intensity", "3", "--date", "yesterday"], "field `date`"),
        (["diary", "questionnaire", "demo-001", "--instrument", "hfs7", "--answers", "1,2"], "has 7 items"),
        (["diary", "questionnaire", "demo-001", "--instrument", "hfs30"], "field `--answers`: give either"),
        (
            ["diary", "questionnaire", "demo-001", "--instrument", "hfs30", "--answers", "1", "--subscale", "stigma=1"],
            "field `--answers`: give either --answers or --subscale (HFS-30 only)",
        ),
        (
            ["diary", "questionnaire", "demo-001", "--instrument", "hfs30", "--subscale", "stigma 1,2"],
            "field `--subscale[0]`: 'stigma 1,2' is not NAME=SCORES",
        ),
        (
            ["diary", "questionnaire", "demo-001", "--instrument", "hfs30", "--subscale", "a=1", "--subscale", "a=2"],
            "field `--subscale[1]`: 'a' is given twice",
        ),
        (
            ["diary", "questionnaire", "demo-001", "--instrument", "hfs30", *_SUBSCALES[:-2], "--subscale", "looks=1"],
            "field `answers.looks`: unknown field; expected one of: activities_of_daily_living, cognition",
        ),
        (
            ["diary", "questionnaire", "demo-001", "--instrument", "hfs30", *_SUBSCALES[:-2]],
            "field `answers.communication`: is required",
        ),
        (
            ["diary", "questionnaire", "demo-001", "--instrument", "hfs7", *_SUBSCALES],
            "field `answers`: answers grouped by subscale are for hfs30 only",
        ),
        (["diary", "grades", "demo-001", "--smc", "9"], "field `smc_grade`"),
        (["diary", "grades", "demo-001", "--date", "2026-01-05"], "record at least one grade"),
        (["diary", "remove", "demo-001", "--kind", "grade", "--id", "1", "--reason", "wrong"], "field `--kind`"),
        (["diary", "remove", "demo-001", "--kind", "grades", "--id", "1", "--reason", " x "], "field `reason`"),
        (["diary", "remove", "demo-001", "--kind", "grades", "--id", "1", "--reason", "wrong"], "no graded visit 1"),
        (["diary", "list", "nobody"], "no patient with code 'nobody'"),
        (["recalls", "close", "demo-001", "--recall", "laser", "--reason", "stopped"], "field `recall`"),
        (["recalls", "close", "demo-001", "--recall", "toxin", "--reason", "no"], "field `reason`"),
        (["recalls", "close", "nobody", "--recall", "toxin", "--reason", "stopped"], "no patient with code 'nobody'"),
        (["recalls", "reopen", "demo-001", "--id", "1"], "patient 'demo-001' has no recall closure 1"),
        (["recalls", "closed", "nobody"], "no patient with code 'nobody'"),
        (["diary", "list", "demo-001", "--limit", "0"], "--limit"),
        (["plans", "sign", "demo-001", "--version", "1", "--role", "neurologist"], "has no plan"),
        (["plans", "show", "demo-001"], "patient 'demo-001' has no plan yet"),
        (["plans", "new", "demo-001"], "patient 'demo-001' has no assessment yet"),
        (["plans", "new", "nobody"], "no patient with code 'nobody'"),
        (["plans", "show", "demo-001", "--version", "9"], "patient 'demo-001' has no plan version 9"),
        (["plans", "sign", "demo-001", "--version", "1", "--role", "neurologist", "--edit", "mvd"], "--edit[0]"),
        (["patients", "update", "demo-001", "--version", "7", "--reason", "x", "--name", "Y"], "not 7"),
        (["due", "--horizon", "-3"], "field `--horizon`: -3 is outside 0-3650 days"),
        (["due", "--horizon", "99999999999"], "field `--horizon`: 99999999999 is outside 0-3650 days"),
        (["recheck", "--workers", "-1"], "field `--workers`: -1 is not between 0 (one per core) and 64"),
        (["recheck", "--workers", "100000"], "field `--workers`: 100000 is not between 0 (one per core) and 64"),
        (["due", "--recall", "laser"], "field `--recall`: 'laser' is not one of toxin"),
        (["export", "--patient", "nobody"], "no patient"),
    ],
)
def test_bad_input_exits_with_a_clear_error_and_writes_nothing(
    clinic: str, engine: Engine, args: list[str], fragment: str
) -> None:
    before = _audit_count(engine)
    result = _run(clinic, *args)
    assert result.exit_code in (2, 3), result.output
    assert fragment in result.stderr
    assert _audit_count(engine) == before


def test_user_accounts_from_the_command_line(clinic: str, engine: Engine) -> None:
    added = runner.invoke(
        app,
        ["users", "add", "--username", "dr.n", "--full-name", "Dr N", "--role", "neurologist", "--password-stdin"],
        input="first password 1\n",
        env={"HEMICARE_DATABASE_URL": clinic},
    )
    assert added.exit_code == 0, added.output
    assert _run(clinic, "users", "token", "--username", "dr.n", "--name", "lab").exit_code == 0
    listed = json.loads(_run(clinic, "users", "list", "--json").stdout)
    assert listed == [
        {
            "username": "dr.n",
            "full_name": "Dr N",
            "role": "neurologist",
            "patient_code": None,
            "active": True,
            "tokens": 1,
            "must_change_password": False,
        }
    ]
    before = _audit_count(engine)
    for args, fragment in (
        (["users", "disable", "dr.n", "--reason", "x"], "field `reason`"),
        (["users", "disable", "nobody", "--reason", "left"], "no user 'nobody'"),
        (["users", "disable", "dr.n", "--reason", "left", "--by", "dr.n"], "cannot disable your own account"),
        (["users", "enable", "dr.n", "--reason", "back"], "'dr.n' is already enabled"),
        (["users", "revoke-tokens", "nobody"], "no user 'nobody'"),
    ):
        result = _run(clinic, *args)
        assert result.exit_code in (2, 4) and fragment in result.stderr, (args, result.output)
    short = runner.invoke(app, ["users", "password", "dr.n", "--password-stdin", "--db", clinic], input="short\n")
    assert short.exit_code == 2 and "field `password`" in short.stderr and "short" not in short.stderr
    assert _audit_count(engine) == before  # nothing written by any of them

    assert _run(clinic, "users", "disable", "dr.n", "--reason", "left the clinic").exit_code == 0
    assert json.loads(_run(clinic, "users", "list", "--json").stdout)[0] | {} == listed[0] | {
        "active": False,
        "tokens": 0,
    }
    assert "dr.n                 neurologist       DISABLED" in _run(clinic, "users", "list").stdout
    assert _run(clinic, "users", "enable", "dr.n", "--reason", "came back").exit_code == 0
    changed = runner.invoke(
        app, ["users", "password", "dr.n", "--password-stdin", "--db", clinic], input="new password 22\n"
    )
    assert changed.exit_code == 0 and "web sessions have ended" in changed.stdout
    assert _run(clinic, "users", "token", "--username", "dr.n", "--name", "lab 2").exit_code == 0
    assert _run(clinic, "users", "revoke-tokens", "dr.n").stdout.strip() == "revoked 1 API token of dr.n"
    with session_factory(engine)() as s:
        from hemicare.users import service as user_service

        assert user_service.authenticate(s, username="dr.n", password="new password 22") is not None
        assert user_service.authenticate(s, username="dr.n", password="first password 1") is None
    with session_factory(engine)() as s:
        done = set(s.scalars(select(AuditEntry.action).where(AuditEntry.entity_id == "dr.n")))
    assert {"disable", "enable", "password", "revoke"} <= done

    # A temporary password: HemiCare makes it, prints it once, and the account must choose its own.
    both = runner.invoke(app, ["users", "password", "dr.n", "--temporary", "--password-stdin", "--db", clinic])
    assert both.exit_code == 2 and "--temporary" in both.stderr
    temporary = _run(clinic, "users", "password", "dr.n", "--temporary", "--by", "admin")
    assert temporary.exit_code == 0, temporary.output
    found = re.search(r"temporary password for dr.n: (\S+)", temporary.stdout)
    assert found
    with session_factory(engine)() as s:
        from hemicare.users import service as user_service

        assert user_service.authenticate(s, username="dr.n", password=found.group(1)) is not None
        assert user_service.get(s, username="dr.n").must_change_password
    assert "(temporary password)" in _run(clinic, "users", "list").stdout
    ownself = _run(clinic, "users", "password", "dr.n", "--temporary", "--by", "dr.n")
    assert ownself.exit_code == 4 and "your own password" in ownself.stderr  # not allowed, whoever asks


def test_the_audit_trail_is_listed_by_patient_and_by_user(clinic: str) -> None:
    assert (
        _run(
            clinic,
            "patients",
            "update",
            "demo-001",
            "--version",
            "1",
            "--name",
            "N. Other",
            "--reason",
            "married name",
            "--by",
            "dr.n",
        ).exit_code
        == 0
    )
    listed = _run(clinic, "audit", "list", "--patient", "demo-001", "--limit", "1").stdout.splitlines()
    assert len(listed) == 1 and re.fullmatch(
        r"[\d-]+ [\d:]+  dr\.n  update  patient demo-001  reason: married name  name: N\. Other", listed[0]
    ), listed
    rows = json.loads(_run(clinic, "audit", "list", "--user", "dr.n", "--json").stdout)
    assert rows and {row["user"] for row in rows} == {"dr.n"}
    assert rows[0] | {"at": None} == {
        "at": None,
        "user": "dr.n",
        "action": "update",
        "record": "patient demo-001",
        "reason": "married name",
        "detail": {"name": "N. Other"},
    }
    assert _run(clinic, "audit", "list", "--user", "nobody").stdout == "no entries match\n"
    for args, message in (
        (["--limit", "0"], "field `--limit`: 0 is not between 1 and 1000"),
        (["--patient", "c" * 49], "field `--patient`: a patient code of 1 to 48 characters"),
    ):
        refused = _run(clinic, "audit", "list", *args)
        assert refused.exit_code == 2 and message in refused.stderr


def test_who_is_acting_is_named_within_what_the_records_keep(clinic: str) -> None:
    add = ["patients", "add", "--code", "new-1", "--name", "N", "--sex", "male"]
    refused = _run(clinic, *add, "--by", "x" * 121)
    assert refused.exit_code == 2 and "field `--by`: name who is acting in 1 to 120 characters" in refused.stderr
    assert "no patient with code 'new-1'" in _run(clinic, "patients", "show", "new-1").stderr  # nothing written
    assert _run(clinic, *add, "--by", "x" * 120).exit_code == 0
    token = _run(clinic, "users", "token", "--username", "nobody", "--name", "x" * 121)
    assert token.exit_code == 2 and "field `name`: say what the token is for in 1 to 120 characters" in token.stderr


def test_a_patient_without_an_assessment_says_so(clinic: str) -> None:
    assert _run(clinic, "patients", "add", "--code", "new-1", "--name", "N", "--sex", "male").exit_code == 0
    shown = _run(clinic, "patients", "show", "new-1")
    assert shown.exit_code == 0 and "assessment: none yet\nplan: none yet\n" in shown.stdout
    assert shown.stdout.startswith("new-1: N (male), record v1\n")  # no birth year recorded: none shown
    added = _run(clinic, "patients", "add", "--code", "new-2", "--name", "N", "--sex", "female", "--birth-year", "1961")
    assert added.exit_code == 0
    assert _run(clinic, "patients", "show", "new-2").stdout.startswith("new-2: N (born 1961, female), record v1\n")
    listed = _run(clinic, "patients", "list").stdout.splitlines()
    assert re.search(r"^new-1 +N +male +record v1$", listed[-2]) and re.search(
        r"^new-2 +N +born 1961, female +record v1$", listed[-1]
    ), listed  # two patients of one name told apart
    assert json.loads(_run(clinic, "patients", "show", "new-1", "--json").stdout)["assessment"] is None


def test_a_file_holding_a_nul_character_is_refused_naming_where(clinic: str, tmp_path: Path) -> None:
    session = tmp_path / "session.yaml"
    session.write_text(
        'date: 2026-01-05\nclinician: "Dr\\0 N"\ndetails: {kind: acupuncture, points: [LI4], notes: "a\\x00b"}\n'
    )
    refused = _run(clinic, "sessions", "add", "demo-001", str(session))
    assert refused.exit_code == 2
    nul = "holds a NUL character (\\u0000 or %00), which is not text"
    assert f"field `clinician`: {nul}" in refused.stderr and f"field `details.notes`: {nul}" in refused.stderr


def test_bad_session_file_exits_2(clinic: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"date": "2026-01-05", "clinician": "Dr N", "details": {"kind": "laser", "power": 5}})
    )
    result = _run(clinic, "sessions", "add", "demo-001", str(bad))
    assert result.exit_code == 2 and "details" in result.stderr


def test_tcm_practitioner_cannot_sign_a_toxin_change(clinic: str) -> None:
    assert runner.invoke(app, ["plan", str(EXAMPLES / "demo-001.yaml"), "--save", "--db", clinic]).exit_code == 0
    result = _run(
        clinic,
        "plans",
        "sign",
        "demo-001",
        "--version",
        "1",
        "--role",
        "tcm_practitioner",
        "--edit",
        "botulinum_toxin=deferred:wait",
    )
    assert result.exit_code == 4 and "cannot change conventional" in result.stderr


def test_demo_clinic_loads(db_url: str) -> None:
    result = runner.invoke(app, ["demo", "--patients", "3", "--db", db_url])
    assert result.exit_code == 0, result.output
    listed = json.loads(_run(db_url, "patients", "list", "--json").stdout)
    assert len(listed) >= 6
    assert "intact" in _run(db_url, "audit", "verify").stdout
    from hemicare.demo import FIRST_NAMES

    female, male = set(FIRST_NAMES["female"]), set(FIRST_NAMES["male"])
    assert female and male and not female & male
    for patient in listed:  # the invented names agree with each record's sex
        first = patient["name"].split()[0]
        assert first in {"female": female, "male": male}.get(patient["sex"], female | male), patient
        # A number to call for the due list, from the range kept for drama: never a real line.
        assert re.fullmatch(r"\+44 20 7946 0\d{3}", patient["phone"] or ""), patient
    # Plans in every stage of review, as in a running clinic: fully signed, medical part only, not yet.
    from hemicare.db.engine import make_engine, session_factory
    from hemicare.outcomes import service as outcomes
    from hemicare.patients import service as patients
    from hemicare.plans import service as plans

    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as s:
            stages = {
                code: tuple(sorted(plans.reviewed_parts(s, patient=patients.get(s, code=code))[1]))
                for code in (patient["code"] for patient in listed)
            }
            stated = {
                code: outcomes.stated_preferences(s, patient=patients.get(s, code=code)) is not None for code in stages
            }
    finally:
        engine.dispose()
    assert stages["demo-001"] == ("conventional", "integrative")
    assert {("conventional",), ()} <= set(stages.values()), stages
    # Those who have read their agreed options have said what matters to them, some the opposite of the assessment.
    assert stated == {code: stage == ("conventional", "integrative") for code, stage in stages.items()}
    differing = [
        code
        for code in stages
        if stated[code] and "(the assessment records the opposite)" in _run(db_url, "patients", "show", code).stdout
    ]
    assert differing and len(differing) < sum(stated.values()), differing


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["db", "downgrade", "--revision", "nonsense"], "field `--revision`"),
        (["db", "upgrade", "--revision", "9999"], "field `--revision`"),
        # Text alembic met with a failed assertion (a traceback, exit 1).
        (["db", "upgrade", "--revision", ""], "field `--revision`: '' is not a revision: give head, base, a"),
        (["db", "upgrade", "--revision", "0001-01-01"], "field `--revision`: '0001-01-01' is not a revision"),
        (["db", "downgrade", "--revision", "head+5"], "field `--revision`: 'head+5' is not a revision"),
    ],
)
def test_db_commands_refuse_bad_revisions(db_url: str, args: list[str], fragment: str) -> None:
    result = _run(db_url, *args)
    assert result.exit_code == 2 and fragment in result.stderr


EVERY_KIND_OF_COMMAND = [
    ["db", "current"],
    ["demo", "--patients", "0"],
    ["due"],
    ["patients", "list"],
    ["recheck"],
    ["audit", "verify"],
    ["users", "list"],
    ["serve", "--port", "8765"],
]


@pytest.mark.parametrize("command", EVERY_KIND_OF_COMMAND, ids=" ".join)
@pytest.mark.parametrize(
    ("database", "said"),
    [
        ("{tmp}/plain.db", "not a database URL: write a SQLite file as sqlite:///path/to/hemicare.db"),
        ("nosuchdriver://x", "HemiCare keeps its records in SQLite or PostgreSQL, not nosuchdriver"),
        ("mysql://clinic@db/hemicare", "HemiCare keeps its records in SQLite or PostgreSQL, not mysql"),
        ("sqlite:///{tmp}/no/such/folder/h.db", "cannot open the database: unable to open database file"),
        ("postgresql://clinic:s3cret@127.0.0.1:1/h", "cannot open the database: connection failed"),
        (" ", "is empty; leave it out to use sqlite:///hemicare.db"),
    ],
    ids=["a path", "unknown scheme", "another database", "no such folder", "no server", "empty"],
)
def test_commands_refuse_a_database_they_cannot_use(
    tmp_path: Path, command: list[str], database: str, said: str
) -> None:
    """A mistyped --db is bad input named as such (exit 2), never a traceback, and its password is not repeated."""
    result = runner.invoke(app, [*command, "--db", database.format(tmp=tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: field `--db`: {said}")
    assert "s3cret" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_reads_are_audited_with_the_reader(clinic: str, engine: Engine) -> None:
    assert _run(clinic, "patients", "show", "demo-001", "--by", "dr.reader").exit_code == 0
    with session_factory(engine)() as s:
        last = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).one()
    assert (last.actor, last.action, last.entity_id) == ("dr.reader", "read", "demo-001")


def test_due_marks_a_recall_the_plan_holds_back(clinic: str, tmp_path: Path) -> None:
    """Red flags defer toxin: the recall still counts from the last session, marked so that nobody books it blindly."""
    given = (dt.date.today() - dt.timedelta(weeks=40)).isoformat()
    assert _run(clinic, "sessions", "add", "demo-001", _toxin_file(tmp_path, given)).exit_code == 0
    (line,) = [line for line in _run(clinic, "due").stdout.splitlines() if "botulinum toxin session" in line]
    assert "[plan:" not in line
    flagged = yaml.safe_load((EXAMPLES / "demo-002-red-flags.yaml").read_text()) | {"id": "demo-001"}
    (tmp_path / "flagged.yaml").write_text(yaml.safe_dump(flagged))
    assert _run(clinic, "plan", str(tmp_path / "flagged.yaml"), "--save").exit_code == 0
    (line,) = [line for line in _run(clinic, "due").stdout.splitlines() if "botulinum toxin session" in line]
    assert "demo-001           botulinum toxin session [plan: deferred] (last session" in line


@pytest.mark.parametrize(("weeks_ago", "said"), [(27, "7 days ago"), (40, "OVERDUE, 98 DAYS"), (26, "today")])
def test_due_says_how_late_in_words(clinic: str, tmp_path: Path, weeks_ago: int, said: str) -> None:
    """A toxin session with no recorded effect is due 26 weeks later; the clinic's grace period is 28 days."""
    given = (dt.date.today() - dt.timedelta(weeks=weeks_ago)).isoformat()
    assert _run(clinic, "sessions", "add", "demo-001", _toxin_file(tmp_path, given)).exit_code == 0
    (line,) = [line for line in _run(clinic, "due").stdout.splitlines() if "botulinum toxin session" in line]
    due = dt.date.today() - dt.timedelta(weeks=weeks_ago - 26)
    assert re.fullmatch(rf"{due}  {re.escape(said)} +demo-001 +botulinum toxin session \(.*\)", line), line
