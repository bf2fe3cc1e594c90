"""Record outcomes and summarise them against the minimal clinically important change."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from hemicare.assessments.models import StoredAssessment
from hemicare.audit import service as audit
from hemicare.engine import KnowledgeBase
from hemicare.engine.assessment import ITEM_MAX
from hemicare.errors import ForbiddenError, InputError, NotFoundError
from hemicare.outcomes.models import DiaryEntry, QuestionnaireAnswer, ScaleGrade, StatedPreferences
from hemicare.outcomes.schemas import DiaryCreate, GradesCreate, PreferencesStated, QuestionnaireCreate
from hemicare.patients import service as patient_service
from hemicare.patients.models import Patient
from hemicare.sessions import service as session_service
from hemicare.sessions.models import TreatmentSession


def _dated_after_birth(patient: Patient, date: dt.date) -> None:
    problems = patient_service.before_birth(patient, date)
    if problems:
        raise InputError(problems)


def add_diary(session: Session, *, patient: Patient, data: DiaryCreate, actor: str) -> DiaryEntry:
    """Store one diary entry."""
    _dated_after_birth(patient, data.date)
    entry = DiaryEntry(patient_id=patient.id, created_by=actor, **data.model_dump())
    audit.add_created(session, entry, actor=actor, entity="diary", detail={"patient": patient.code})
    return entry


# What a patient is asked of what matters to them, in their words, by the assessment's preference each statement
# states (engine.assessment.Preferences): the plan follows the assessment, so a clinician updates it where they differ.
PREFERENCE_STATEMENTS = {
    "wants_definitive_treatment": "I want a treatment aimed at the cause of my spasm, not only at easing it",
    "avoid_surgery": "I would rather not have an operation",
    "avoid_injections": "I would rather not have injections every few months",
    "avoid_needles": "I would rather not have acupuncture needles",
    "integrative_care": "I would like Traditional Chinese Medicine beside my medical treatment",
}
STANCES = {"yes": "yes", "no": "no", "not_sure": "not sure"}


class StatedLine(NamedTuple):
    preference: str  # the assessment's preference it states
    statement: str  # the patient's words
    stance: str  # yes, no or not sure
    differs: bool  # the latest assessment records the opposite preference

    def quoted(self) -> str:
        """The statement quoted with the answer: '"I would rather not have an operation": yes'."""
        return f'"{self.statement}": {self.stance}'

    def words(self) -> str:
        """The line as a letter or the command line says it: quoted, and marked where it differs."""
        return self.quoted() + (" (the assessment records the opposite)" if self.differs else "")


def stated_lines(answers: Mapping[str, str], preferences: Mapping[str, bool] | None) -> list[StatedLine]:
    """What the patient said matters to them, statement by statement, each marked where the assessment's
    ``preferences`` (None: no assessment yet) record the opposite: a "yes" where it says no, a "no" where it says yes.
    "Not sure" differs from nothing."""
    lines = []
    for preference, statement in PREFERENCE_STATEMENTS.items():
        stance = answers.get(preference)
        if stance is None:
            continue
        recorded = None if preferences is None else bool(preferences.get(preference, False))
        differs = recorded is not None and stance != "not_sure" and (stance == "yes") != recorded
        lines.append(StatedLine(preference, statement, STANCES[stance], differs))
    return lines


def stated_against(stated: StatedPreferences | None, assessment: Mapping[str, Any] | None) -> list[StatedLine]:
    """A patient's statement (none: no lines) against their latest ``assessment`` (its stored data; None: none)."""
    if stated is None:
        return []
    return stated_lines(stated.answers, assessment.get("preferences", {}) if assessment is not None else None)


def state_preferences(session: Session, *, patient: Patient, data: PreferencesStated, actor: str) -> StatedPreferences:
    """Store what the patient says matters to them (a new statement; earlier ones stay, in the record and its trail)."""
    _dated_after_birth(patient, data.date)
    row = StatedPreferences(patient_id=patient.id, created_by=actor, **data.model_dump())
    audit.add_created(session, row, actor=actor, entity="preferences", detail={"patient": patient.code})
    return row


def stated_preferences(session: Session, *, patient: Patient) -> StatedPreferences | None:
    """The patient's latest statement of what matters to them, if they have made one."""
    query = select(StatedPreferences).where(StatedPreferences.patient_id == patient.id)
    return session.scalar(query.order_by(StatedPreferences.date.desc(), StatedPreferences.id.desc()).limit(1))


def wishes_differing(session: Session, *, patient_ids: list[int]) -> dict[int, list[StatedLine]]:
    """For the patients of ``patient_ids`` whose latest statement of what matters to them says the opposite of their
    latest assessment's preferences, those lines (a page of the patient list: two queries, whatever its length)."""
    stated: dict[int, StatedPreferences] = {}
    query = select(StatedPreferences).where(StatedPreferences.patient_id.in_(patient_ids))
    for row in session.scalars(query.order_by(StatedPreferences.date, StatedPreferences.id)):
        stated[row.patient_id] = row  # the latest last
    if not stated:
        return {}
    assessments: dict[int, Mapping[str, Any]] = {}
    assessed = select(StoredAssessment.patient_id, StoredAssessment.data).where(StoredAssessment.patient_id.in_(stated))
    for patient_id, data in session.execute(assessed.order_by(StoredAssessment.id)):
        assessments[patient_id] = data  # the latest last
    found = {
        patient_id: [line for line in stated_against(row, assessments.get(patient_id)) if line.differs]
        for patient_id, row in stated.items()
    }
    return {patient_id: lines for patient_id, lines in found.items() if lines}


class DiaryRow(NamedTuple):
    id: int
    date: dt.date
    spasms: int
    per: str
    intensity: int
    triggers: list[str]
    created_by: str


def recent_diary(session: Session, *, patient: Patient, limit: int = 10) -> list[DiaryRow]:
    """The patient's latest diary entries, newest first (for them to check, and remove one entered by mistake)."""
    query = (
        select(
            DiaryEntry.id,
            DiaryEntry.date,
            DiaryEntry.spasms,
            DiaryEntry.per,
            DiaryEntry.intensity,
            DiaryEntry.triggers,
            DiaryEntry.created_by,
        )
        .where(DiaryEntry.patient_id == patient.id)
        .order_by(DiaryEntry.date.desc(), DiaryEntry.id.desc())
        .limit(limit)
    )
    return [DiaryRow(*row) for row in session.execute(query)]


# The reason kept when a patient removes a record of their own (they are not asked for one).
BY_THE_PATIENT = "removed by the patient"

# What a patient's outcome record may be removed as, by the audit trail's name for it, and its name in words.
Outcome = DiaryEntry | QuestionnaireAnswer | ScaleGrade
REMOVABLE: dict[str, tuple[type[Outcome], str]] = {
    "diary": (DiaryEntry, "diary entry"),
    "questionnaire": (QuestionnaireAnswer, "questionnaire answer"),
    "grades": (ScaleGrade, "graded visit"),
}


def remove(
    session: Session,
    *,
    patient: Patient,
    entity: str,
    row_id: int,
    actor: str,
    reason: str | None,
    by_patient: bool = False,
) -> None:
    """Remove a diary entry, a questionnaire answer or a visit's grades entered by mistake; the audit trail keeps
    every value it held. The recalls it answered fall due again (they are read from what is recorded). A patient
    (``by_patient``) removes any entry of their diary, which is theirs to keep straight, but only the questionnaire
    answers they sent themselves: answers the care team entered from paper are the care team's to remove."""
    model, words = REMOVABLE[entity]
    patient_service.lock(session, patient=patient)
    row = cast("Outcome | None", session.get(model, row_id))  # mypy reads a union of classes as their base
    if row is None or row.patient_id != patient.id:
        raise NotFoundError(f"patient {patient.code!r} has no {words} {row_id}")
    if by_patient and entity == "questionnaire" and row.created_by != actor:
        raise ForbiddenError(f"the care team entered this {words}: ask them to remove it")
    said = {
        column.key: value.isoformat() if isinstance(value, dt.date) else value
        for column in model.__table__.columns
        if column.key not in ("id", "patient_id", "created_at")
        for value in [getattr(row, column.key)]
    }
    session.delete(row)
    audit.record(
        session,
        actor=actor,
        action="delete",
        entity=entity,
        entity_id=row_id,
        reason=reason,
        detail={"patient": patient.code, "entry": said},
    )


def add_questionnaire(
    session: Session, *, patient: Patient, data: QuestionnaireCreate, actor: str
) -> QuestionnaireAnswer:
    """Store questionnaire answers with their total."""
    _dated_after_birth(patient, data.date)
    answers: Any = data.answers if isinstance(data.answers, list) else data.answers.model_dump()
    row = QuestionnaireAnswer(
        patient_id=patient.id,
        date=data.date,
        instrument=data.instrument,
        answers=answers,
        total=data.total,
        created_by=actor,
    )
    audit.add_created(session, row, actor=actor, entity="questionnaire", detail={"patient": patient.code})
    return row


class SubscaleScore(NamedTuple):
    score: int
    max: int


class AnswerRow(NamedTuple):
    id: int
    date: dt.date
    instrument: str
    total: int
    created_by: str
    subscales: dict[str, SubscaleScore] | None  # HFS-30 answers given grouped by subscale: each one's score


def subscale_scores(answers: Any) -> dict[str, SubscaleScore] | None:
    """Each subscale's score and its highest possible (by its number of items), for answers stored grouped by
    subscale; None for answers stored as one list of items, whose subscales are not known."""
    if not isinstance(answers, dict):
        return None
    return {name: SubscaleScore(sum(items), ITEM_MAX * len(items)) for name, items in answers.items()}


def subscale_words(subscales: Mapping[str, SubscaleScore] | None) -> str:
    """HFS-30 subscale scores in a line, in the order given: "mobility 10 of 16, stigma 8 of 16" (empty for answers
    whose subscales are not known); the pages and `diary list` alike."""
    if not subscales:
        return ""
    return ", ".join(f"{name.replace('_', ' ')} {part.score} of {part.max}" for name, part in subscales.items())


def subscales_json(subscales: dict[str, SubscaleScore] | None) -> dict[str, dict[str, int]] | None:
    """Subscale scores as the API and `diary list --json` give them: {"mobility": {"score": 6, "max": 16}, ...}."""
    return None if subscales is None else {name: part._asdict() for name, part in subscales.items()}


def recent_questionnaires(session: Session, *, patient: Patient, limit: int = 5) -> list[AnswerRow]:
    """The patient's latest questionnaire answers (every instrument), newest first, with who entered them."""
    query = (
        select(
            QuestionnaireAnswer.id,
            QuestionnaireAnswer.date,
            QuestionnaireAnswer.instrument,
            QuestionnaireAnswer.total,
            QuestionnaireAnswer.created_by,
            QuestionnaireAnswer.answers,
        )
        .where(QuestionnaireAnswer.patient_id == patient.id)
        .order_by(QuestionnaireAnswer.date.desc(), QuestionnaireAnswer.id.desc())
        .limit(limit)
    )
    return [
        AnswerRow(row_id, date, instrument, total, created_by, subscale_scores(answers))
        for row_id, date, instrument, total, created_by, answers in session.execute(query)
    ]


def recent_grades(session: Session, *, patient: Patient, limit: int = 5) -> list[ScaleGrade]:
    """The grades of the patient's latest graded visits, newest first."""
    query = (
        select(ScaleGrade)
        .where(ScaleGrade.patient_id == patient.id)
        .order_by(ScaleGrade.date.desc(), ScaleGrade.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def add_grades(session: Session, *, patient: Patient, data: GradesCreate, actor: str) -> ScaleGrade:
    """Store the grades recorded at a visit."""
    _dated_after_birth(patient, data.date)
    row = ScaleGrade(patient_id=patient.id, created_by=actor, **data.model_dump())
    audit.add_created(session, row, actor=actor, entity="grades", detail={"patient": patient.code})
    return row


class Change(BaseModel):
    first: int
    latest: int
    change: int
    mcid: float
    response: str

    def words(self, scale: str) -> str:
        """The change as the patient page and the referral letter say it, after the scale's name."""
        return f"{scale}: {self.first} → {self.latest} ({self.response}, MCID {self.mcid:g})."


class Summary(BaseModel):
    """A patient's outcomes over time."""

    patient: str
    diary_entries: int
    monthly: list[dict[str, Any]]
    questionnaires: dict[str, Change]
    toxin_sessions: list[dict[str, Any]]
    mean_toxin_effect_weeks: float | None
    procedures: list[dict[str, Any]]  # nerve blocks and radiofrequency ablations: date, procedure, side, relief

    def procedure_words(self) -> str:
        """Each nerve procedure's relief and side effects, as the patient page and the referral letter say them (the
        treatment history lists every session; this line puts what each procedure gave side by side)."""
        said = []
        for done in self.procedures:
            relief = f"relief {done['effect_weeks']:g} weeks" if done["effect_weeks"] else "relief not yet recorded"
            after = f", with {', '.join(done['adverse_effects'])}" if done["adverse_effects"] else ""
            said.append(
                f"{session_service.PROCEDURES[done['procedure']]} ({done['side']}) of {done['date']}: {relief}{after}"
            )
        return f"Nerve procedures: {'; '.join(said)}." if said else ""


def _classify(first: int, latest: int, mcid: float) -> str:
    change = latest - first
    if change <= mcid:
        return "improved beyond the minimal clinically important change"
    if change >= -mcid:
        return "worse by at least the minimal clinically important change"
    return "no clinically important change"


class DiaryPoint(NamedTuple):
    date: dt.date
    per: str
    spasms: int
    intensity: int


class Score(NamedTuple):
    date: dt.date
    total: int


@dataclass(frozen=True)
class Records:
    """A patient's outcome records, oldest first, as plain rows: what summaries and charts are made from.

    Read once per page: the patient page's summary, chart and treatment history all draw on the same records.
    """

    diary: list[DiaryPoint]
    scores: dict[str, list[Score]]  # by questionnaire instrument
    sessions: list[TreatmentSession]  # every kind


def records(session: Session, *, patient: Patient) -> Records:
    """Read a patient's diary, questionnaire totals and treatment sessions (plain rows, not ORM objects)."""
    diary = [
        DiaryPoint(*row)
        for row in session.execute(
            select(DiaryEntry.date, DiaryEntry.per, DiaryEntry.spasms, DiaryEntry.intensity)
            .where(DiaryEntry.patient_id == patient.id)
            .order_by(DiaryEntry.date, DiaryEntry.id)
        )
    ]
    scores: dict[str, list[Score]] = defaultdict(list)
    for instrument, date, total in session.execute(
        select(QuestionnaireAnswer.instrument, QuestionnaireAnswer.date, QuestionnaireAnswer.total)
        .where(QuestionnaireAnswer.patient_id == patient.id)
        .order_by(QuestionnaireAnswer.date, QuestionnaireAnswer.id)
    ):
        scores[instrument].append(Score(date, total))
    return Records(diary=diary, scores=dict(scores), sessions=session_service.list_for(session, patient=patient))


def summary(session: Session, *, patient: Patient, kb: KnowledgeBase) -> Summary:
    """Monthly diary trends, questionnaire change against the MCID, and each toxin session's effect."""
    return summarise(records(session, patient=patient), patient=patient, kb=kb)


def summarise(found: Records, *, patient: Patient, kb: KnowledgeBase) -> Summary:
    """The summary of records already read (see ``records``)."""
    buckets: dict[tuple[str, str], list[DiaryPoint]] = defaultdict(list)
    for entry in found.diary:
        buckets[(entry.date.strftime("%Y-%m"), entry.per)].append(entry)
    monthly = [
        {
            "month": month,
            "per": per,
            "entries": len(rows),
            "mean_spasms": round(sum(r.spasms for r in rows) / len(rows), 1),
            "mean_intensity": round(sum(r.intensity for r in rows) / len(rows), 1),
        }
        for (month, per), rows in sorted(buckets.items())
    ]
    questionnaires: dict[str, Change] = {}
    for instrument in ("hfs7", "hfs30"):
        rows = found.scores.get(instrument, [])
        mcid = kb.scales[instrument].mcid
        if len(rows) >= 2 and mcid is not None:
            first, last = rows[0].total, rows[-1].total
            questionnaires[instrument] = Change(
                first=first, latest=last, change=last - first, mcid=mcid, response=_classify(first, last, mcid)
            )
    toxin = [
        {
            "date": s.date.isoformat(),
            "product": s.data.get("product"),
            "total_units": s.data.get("total_units"),
            "effect_weeks": s.data.get("effect_weeks"),
        }
        for s in found.sessions
        if s.kind == "toxin"
    ]
    effects = [float(t["effect_weeks"]) for t in toxin if t["effect_weeks"] is not None]
    return Summary(
        patient=patient.code,
        diary_entries=len(found.diary),
        monthly=monthly,
        questionnaires=questionnaires,
        toxin_sessions=toxin,
        mean_toxin_effect_weeks=round(sum(effects) / len(effects), 1) if effects else None,
        procedures=[
            {
                "date": s.date.isoformat(),
                "procedure": s.data["procedure"],
                "side": s.data["side"],
                "effect_weeks": s.data.get("effect_weeks"),
                "adverse_effects": s.data.get("adverse_effects") or [],
            }
            for s in found.sessions
            if s.kind == "procedure"
        ],
    )
