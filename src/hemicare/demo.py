"""A realistic demo clinic: synthetic patients with two years of treatment and outcomes, made through the services
(so the audit trail and plans are real). Never real people."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from hemicare.assessments import service as assessment_service
from hemicare.engine import KnowledgeBase, validate_assessment
from hemicare.engine.assessment import Assessment
from hemicare.engine.intake import read_file
from hemicare.engine.plan import Status
from hemicare.engine.rules import facts_of
from hemicare.engine.safety import held_back_for
from hemicare.outcomes import service as outcome_service
from hemicare.outcomes.schemas import DiaryCreate, GradesCreate, PreferencesStated, QuestionnaireCreate
from hemicare.patients import service as patient_service
from hemicare.patients.models import Patient
from hemicare.patients.schemas import PatientCreate
from hemicare.plans import service as plan_service
from hemicare.plans.models import PlanVersion
from hemicare.plans.schemas import PlanEdit
from hemicare.sessions import service as session_service
from hemicare.sessions.schemas import SessionCreate
from hemicare.synthetic import synthetic_assessment

# Invented first names by recorded sex, so that the demo clinic reads true to its own records.
FIRST_NAMES = {
    "female": ["Mei", "Ingrid", "Amara", "Lucia", "Sofia", "Hanna"],
    "male": ["Arjun", "Tomasz", "Kenji", "Omar", "Wei", "Ravi"],
}
LAST_NAMES = ["Lin", "Patel", "Larsen", "Nowak", "Okafor", "Sato", "Rossi", "Haddad", "Silva", "Chen", "Berg", "Iyer"]
CLINICIANS = {"toxin": "Dr A. Neuro (neurologist)", "acupuncture": "L. Zhang (TCM practitioner)"}


def _first_names(sex: str) -> list[str]:
    """The demo's first names for a recorded sex; all of them for any other entry."""
    return FIRST_NAMES.get(sex) or [name for names in FIRST_NAMES.values() for name in names]


def _history(
    session: Session,
    rng: random.Random,
    *,
    patient: Any,
    assessment: Any,
    kb: KnowledgeBase,
    today: dt.date,
    actor: str,
) -> None:
    start = today - dt.timedelta(days=730)
    programme = kb.toxin_programme()
    regions = {r.value for r in assessment.regions}
    sites = [s for s in programme.sites if s.region in regions]
    side = assessment.side.value if assessment.side.value != "bilateral" else "left"
    date = start + dt.timedelta(days=rng.randint(0, 40))
    spasms = rng.randint(20, 60)
    # A patient whose toxin a rule holds back (myasthenia, pregnancy) has had none: recording it would need a reason.
    toxin_given = not assessment.preferences.avoid_injections and not held_back_for(
        facts_of(assessment, kb), kb, items=["botulinum_toxin"]
    )
    while date < today - dt.timedelta(days=7):
        if toxin_given:
            worked = rng.randint(9, 16)
            # How long a session worked is told at the next visit: not yet known for one given under 12 weeks ago.
            told = {"effect_weeks": worked} if date <= today - dt.timedelta(weeks=12) else {}
            session_service.record(
                session,
                patient=patient,
                data=SessionCreate.model_validate(
                    {
                        "date": date.isoformat(),
                        "clinician": CLINICIANS["toxin"],
                        "details": {
                            "kind": "toxin",
                            "product": "onabotulinumtoxinA",
                            "lot": f"C{rng.randint(1000, 9999)}",
                            "sites": [{"site": s.id, "side": side, "units": s.start_units} for s in sites],
                            **told,
                            "adverse_effects": ["ptosis"] if rng.random() < 0.1 else [],
                        },
                    }
                ),
                kb=kb,
                actor=actor,
            )
        for week in range(0, 13, 2):
            day = date + dt.timedelta(weeks=week)
            if day >= today:
                break
            effect = 0.35 if 1 <= week <= 10 else 0.9
            outcome_service.add_diary(
                session,
                patient=patient,
                data=DiaryCreate(
                    date=day,
                    spasms=max(0, int(spasms * effect) + rng.randint(-5, 5)),
                    per="day",
                    intensity=max(0, min(10, int(7 * effect) + rng.randint(-1, 1))),
                    triggers=rng.sample(["stress", "fatigue", "bright light", "talking"], rng.randint(0, 2)),
                ),
                actor=actor,
            )
        outcome_service.add_questionnaire(
            session,
            patient=patient,
            data=QuestionnaireCreate(
                date=min(date + dt.timedelta(weeks=6), today),
                instrument="hfs7",
                answers=[
                    max(0, min(4, rng.randint(0, 3) - (1 if date > start + dt.timedelta(days=200) else 0)))
                    for _ in range(7)
                ],
            ),
            actor=actor,
        )
        outcome_service.add_grades(
            session,
            patient=patient,
            data=GradesCreate(
                date=date,
                smc_grade=assessment.severity.smc_grade,
                jankovic_severity=rng.randint(1, 3),
                jankovic_frequency=rng.randint(1, 3),
            ),
            actor=actor,
        )
        date += dt.timedelta(weeks=rng.randint(12, 16))
    if assessment.preferences.integrative_care and not assessment.preferences.avoid_needles:
        course = rng.randint(2, 6)
        for offset in range(course):
            session_service.record(
                session,
                patient=patient,
                data=SessionCreate.model_validate(
                    {
                        "date": (today - dt.timedelta(days=3 * (course - offset))).isoformat(),
                        "clinician": CLINICIANS["acupuncture"],
                        "details": {"kind": "acupuncture", "points": ["BL2", "ST2", "LI4", "LR3"]},
                    }
                ),
                kb=kb,
                actor=actor,
            )


def _stated(session: Session, *, patient: Patient, assessment: Assessment, today: dt.date, differ: bool) -> None:
    """What a demo patient says matters to them, a few days ago: the assessment's preferences as recorded, or if they
    ``differ`` the opposite of one of them (the care team's page marks it)."""
    rng = random.Random(f"stated {patient.code}")  # its own draws: the rest of the demo stays as it was
    recorded = assessment.preferences.model_dump()
    answers = {key: "yes" if recorded[key] else "no" for key in outcome_service.PREFERENCE_STATEMENTS}
    if differ:
        changed = rng.choice(sorted(answers))
        answers[changed] = "no" if answers[changed] == "yes" else "yes"
    data = PreferencesStated.model_validate({"date": today - dt.timedelta(days=rng.randint(2, 20)), "answers": answers})
    outcome_service.state_preferences(session, patient=patient, data=data, actor="demo")


_TOXIN_FIRST = PlanEdit(
    recommendation="mvd", status=Status.OPTION, reason="the patient wants to try toxin injections first"
)


def _review(
    session: Session, *, patient: Patient, plan: PlanVersion, stage: int, kb: KnowledgeBase, toxin_first: bool
) -> None:
    """Sign the demo plans as a running clinic has them: a third agreed by both specialties, a third with the
    medical part signed and the TCM part waiting, a third new (so the patient pages show each case). Where
    ``toxin_first``, the neurologist makes a recommended MVD an option, as some patients choose (the page of what was
    changed at sign-off lists them; the demo does so for the patients whose medical part alone is signed)."""
    if stage == 2:
        return
    signers = [("Dr A. Neuro", "neurologist")]
    if stage == 0 and any(rec["category"] == "integrative" for rec in plan.content["recommendations"]):
        signers.append(("L. Zhang", "tcm_practitioner"))
    mvd = next((rec["status"] for rec in plan.content["recommendations"] if rec["id"] == "mvd"), None)
    first = [_TOXIN_FIRST] if toxin_first and mvd == Status.RECOMMENDED.value else []
    number = plan.number
    for signer, role in signers:
        edits = first if role == "neurologist" else []
        number = plan_service.sign(
            session, patient=patient, expected_number=number, edits=edits, signer=signer, role=role, kb=kb
        ).number


def load_demo(
    session: Session,
    *,
    kb: KnowledgeBase,
    examples: Path,
    patients: int,
    today: dt.date,
    actor: str = "demo",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Create the demo clinic: the bundled example patients and ``patients`` synthetic ones. Returns the count."""
    rng = random.Random(7)
    data: list[dict[str, Any]] = [read_file(path) for path in sorted(examples.glob("*.yaml"))]
    data += [read_file(path) for path in sorted(examples.glob("*.json"))]
    data += [synthetic_assessment(rng, index, kb, today=today) for index in range(patients)]
    for index, raw in enumerate(data):
        raw = {**raw, "history": {**raw.get("history", {}), "botulinum_sessions": []}}
        if index >= len(data) - patients:
            raw["id"] = f"demo-{index + 1:03d}"
        assessment = validate_assessment(raw)
        patient = patient_service.create(
            session,
            data=PatientCreate(
                code=assessment.id,
                name=f"{rng.choice(_first_names(assessment.sex.value))} {rng.choice(LAST_NAMES)}",
                birth_year=today.year - assessment.age,
                sex=assessment.sex.value,
                # From the London numbers Ofcom keeps for drama (020 7946 0000-0999): no real line is ever called.
                phone=f"+44 20 7946 0{index % 1000:03d}",
            ),
            actor=actor,
        )
        assessment_service.record(session, patient=patient, assessment=assessment, actor=actor, today=today)
        _history(session, rng, patient=patient, assessment=assessment, kb=kb, today=today, actor=actor)
        plan = plan_service.generate(session, patient=patient, kb=kb, actor=actor, today=today)
        _review(session, patient=patient, plan=plan, stage=index % 3, kb=kb, toxin_first=index % 3 == 1)
        if index % 3 == 0:  # both parts agreed: the patient has read their options and said what matters
            _stated(session, patient=patient, assessment=assessment, today=today, differ=index % 6 == 0)
        if progress is not None:
            progress(1)
    return len(data)
