"""Plan versions: generate from the latest assessment, review with reasons, sign by role.

Every change is a new immutable version. Neurologists and neurosurgeons change and sign conventional items (work-up,
toxin, surgery, medicines); TCM practitioners change and sign integrative items. A version number the caller did not
expect means someone else signed first: the change is refused, not merged.
"""

from __future__ import annotations

import copy
import datetime as dt
import multiprocessing
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, NamedTuple

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hemicare.assessments import service as assessment_service
from hemicare.assessments.models import StoredAssessment
from hemicare.audit import service as audit
from hemicare.db.base import local_day, utcnow
from hemicare.db.engine import make_engine, read_only, session_factory
from hemicare.engine import KnowledgeBase, build_plan
from hemicare.engine.assessment import NAME_MAX, SESSION_UNITS_MAX, Assessment
from hemicare.engine.decision_aid import follow_statuses, with_about
from hemicare.engine.plan import Recommendation
from hemicare.engine.planner import SEVERITY_ORDER
from hemicare.engine.rules import facts_of
from hemicare.engine.safety import lifted_alerts
from hemicare.errors import ConflictError, FieldProblem, ForbiddenError, InputError, NotFoundError, quoted
from hemicare.patients.models import Patient
from hemicare.patients.service import get as get_patient
from hemicare.plans.models import PlanVersion
from hemicare.plans.queries import latest as latest  # callers ask the plans service for it
from hemicare.plans.schemas import CONVENTIONAL_ROLES, INTEGRATIVE_ROLES, PARTS, PlanEdit, part_of, parts_of
from hemicare.sessions import service as session_service
from hemicare.sessions.models import TreatmentSession


def given(recommendations: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, str]]:
    """What each recommendation gives, item by item, in the words a reviewer reads: the toxin product, each site's
    dose and the total; the herbal formula and each herb's dose; a medicine's dose; the acupuncture points. Takes
    (recommendation id, details) pairs, from a stored plan or from the engine's own.

    A recheck and the review compare it beside statuses and alerts, so that a dose changed by a knowledge update or by
    a recorded outcome (a ptosis lowers the next session's periocular doses) is shown, not only a changed status."""
    out: dict[str, dict[str, str]] = {}
    for rec_id, details in recommendations:
        items: dict[str, str] = {}
        programme = details.get("programme")
        if programme:
            items["product"] = f"{programme['brand']} ({programme['product']})"
            for site in programme["sites"]:
                items[f"{site['label']} ({site['side']})"] = f"{site['units']:g} U"
            items["total"] = f"{programme['total_units']:g} U"
        if details.get("formula"):
            items["formula"] = details["pinyin"]
            items |= {herb["pinyin"]: herb["dose"] for herb in details["ingredients"]}
        if isinstance(details.get("dose"), str):
            items["dose"] = details["dose"]
        if details.get("points"):
            items["points"] = ", ".join(point["code"] for point in details["points"])
        if items:
            out[rec_id] = items
    return out


def summarise(content: dict[str, Any]) -> dict[str, Any]:
    """A plan in brief: each recommendation's status, what it gives and the alerts (what a recheck compares), with
    the alerts' severities, the parts to be signed and who signed them (what the patient list shows), so that neither
    needs the whole plan."""
    return {
        "statuses": {rec["id"]: rec["status"] for rec in content["recommendations"]},
        "given": given((rec["id"], rec["details"]) for rec in content["recommendations"]),
        "alerts": sorted(alert["id"] for alert in content["alerts"]),
        "severities": {alert["id"]: alert["severity"] for alert in content["alerts"]},
        "parts": parts_of(content),
        "signoff": {part: signed["by"] for part, signed in content.get("signoff", {}).items()},
    }


def _latest_numbers(
    *, kind: str | None = None, patients: tuple[int, int] | None = None, ids: Collection[int] | None = None
) -> Any:
    """A subquery: each patient's latest plan version number (of one kind, or of any; for every patient, for those
    whose ids lie in a range, or for those listed)."""
    query = select(PlanVersion.patient_id, func.max(PlanVersion.number).label("number"))
    if kind is not None:
        query = query.where(PlanVersion.kind == kind)
    if patients is not None:
        query = query.where(PlanVersion.patient_id.between(*patients))
    if ids is not None:
        query = query.where(PlanVersion.patient_id.in_(list(ids)))
    return query.group_by(PlanVersion.patient_id).subquery()


CHANGED_BY = "Changed by "  # how a signer's status change starts its line in the recommendation's rationale


class LatestPlan(NamedTuple):
    number: int
    signed_by: str | None  # who signed it last; None while it awaits sign-off
    summary: dict[str, Any]


def latest_summaries(session: Session, *, patient_ids: Collection[int] | None = None) -> dict[int, LatestPlan]:
    """Every patient's (or some patients') latest plan version: number, last signer and summary, in one query (for
    lists)."""
    numbers = _latest_numbers(ids=patient_ids)
    rows = session.execute(
        select(PlanVersion.patient_id, PlanVersion.number, PlanVersion.signed_by, PlanVersion.summary).join(
            numbers, (numbers.c.patient_id == PlanVersion.patient_id) & (numbers.c.number == PlanVersion.number)
        )
    )
    return {patient_id: LatestPlan(number, signed_by, summary) for patient_id, number, signed_by, summary in rows}


class ReviewedPart(NamedTuple):
    content: dict[str, Any]  # the plan version in which the part was last signed
    signoff: dict[str, Any]  # by whom, in what role, when
    update_pending: bool  # a newer version awaits this part's sign-off


def reviewed_parts(session: Session, *, patient: Patient) -> tuple[list[str], dict[str, ReviewedPart]]:
    """The parts of the patient's latest plan, and for each one that a clinician of its specialty has signed, the
    version they signed: what the care team has agreed, which is all a patient is shown of their plan.

    A version made after that signature (a new assessment, a recheck) awaits review; until it is signed the part
    signed before stays what the patient sees, marked as being updated.
    """
    current = latest(session, patient=patient)
    if current is None:
        return [], {}
    parts = parts_of(current.content)
    reviewed = {}
    for part in parts:
        signed = current.content.get("signoff", {}).get(part)
        if signed is not None:
            reviewed[part] = ReviewedPart(current.content, signed, update_pending=False)
            continue
        # Signing one part copies the other part's signature forward, so the newest version signed by this part's
        # specialty is the newest in which this part was signed.
        query = select(PlanVersion).where(
            PlanVersion.patient_id == patient.id, PlanVersion.signed_role.in_(PARTS[part])
        )
        version = session.scalar(query.order_by(PlanVersion.number.desc()).limit(1))
        if version is not None:
            reviewed[part] = ReviewedPart(version.content, version.content["signoff"][part], update_pending=True)
    return parts, reviewed


class SinceReview(NamedTuple):
    reviewed: PlanVersion  # the newest signed version before the current one
    status_changes: list[dict[str, str]]  # recommendation, from, to, and the clinician's earlier change if any
    alerts_added: list[dict[str, Any]]
    alerts_removed: list[dict[str, Any]]
    given_changes: list[dict[str, str]]  # recommendation, item, from, to


def since_review(session: Session, *, current: PlanVersion) -> SinceReview | None:
    """What a generated version (a new assessment, a recheck) changed since the newest signed one, for the reviewer:
    a clinician's earlier status change is not carried into a generated plan, so it shows here to be made again if it
    still holds. None if the current version is itself signed, or nothing was ever signed."""
    if current.kind != "generated":
        return None
    query = select(PlanVersion).where(
        PlanVersion.patient_id == current.patient_id,
        PlanVersion.kind == "reviewed",
        PlanVersion.number < current.number,
    )
    reviewed = session.scalar(query.order_by(PlanVersion.number.desc()).limit(1))
    if reviewed is None:
        return None
    diff = compare(reviewed.summary, current.summary)
    earlier = {rec["id"]: rec for rec in reviewed.content["recommendations"]}
    changes = []
    for change in diff["status_changes"]:
        rationale = earlier.get(change["recommendation"], {}).get("rationale", [])
        by_clinician = [line for line in rationale if line.startswith(CHANGED_BY)]
        changes.append({**change, "clinician": by_clinician[-1] if by_clinician else ""})
    before_alerts = {alert["id"]: alert for alert in reviewed.content["alerts"]}
    after_alerts = {alert["id"]: alert for alert in current.content["alerts"]}
    return SinceReview(
        reviewed,
        changes,
        [after_alerts[i] for i in diff["alerts_added"] if i in after_alerts],
        [before_alerts[i] for i in diff["alerts_removed"] if i in before_alerts],
        diff["given_changes"],
    )


def version(session: Session, *, patient: Patient, number: int) -> PlanVersion:
    """One stored version of the patient's plan."""
    found = session.scalar(
        select(PlanVersion).where(PlanVersion.patient_id == patient.id, PlanVersion.number == number)
    )
    if found is None:
        raise NotFoundError(f"patient {patient.code!r} has no plan version {number}")
    return found


def as_signed(content: dict[str, Any], kb: KnowledgeBase) -> dict[str, Any]:
    """A stored plan as its items' statuses say: a version signed before signing kept the decision aid in step
    (`follow_statuses`) still holds HemiCare's proposal there (an operation set aside shown as recommended). The
    answer is a copy, its aid restated; the record is left as it was stored. A plan without an aid is returned as
    it is. What the aid says of itself (when it was issued, from when it is out of date) follows the plan's knowledge
    base version and the clinic's policy in force (`with_about`)."""
    if content.get("decision_aid") is None:
        return content
    aid = with_about(dict(content["decision_aid"]), content["knowledge_version"], kb)
    shown = {**content, "decision_aid": aid, "references": dict(content["references"])}
    follow_statuses(shown, kb)
    return shown


class VersionBrief(NamedTuple):
    number: int
    kind: str  # generated or reviewed
    created_at: dt.datetime
    created_by: str
    signed_role: str | None
    edits: list[dict[str, Any]]  # the status changes made at this sign-off, with their reasons


def versions(session: Session, *, patient: Patient) -> list[VersionBrief]:
    """Every version of the patient's plan, newest first, without the plans themselves (for a list)."""
    query = (
        select(
            PlanVersion.number,
            PlanVersion.kind,
            PlanVersion.created_at,
            PlanVersion.created_by,
            PlanVersion.signed_role,
            PlanVersion.edits,
        )
        .where(PlanVersion.patient_id == patient.id)
        .order_by(PlanVersion.number.desc())
    )
    return [VersionBrief(*row) for row in session.execute(query)]


class Override(NamedTuple):
    """A status a clinician changed at sign-off, with their reason."""

    patient: str  # the patient's code
    number: int  # the version signed with the change
    on: dt.date  # the clinic's day it was signed
    role: str
    reason: str


class OverrideGroup(NamedTuple):
    """One change (an item from one status to another) and every sign-off that made it, newest first."""

    recommendation: str
    before: str
    after: str
    overrides: list[Override]

    @property
    def patients(self) -> int:
        return len({override.patient for override in self.overrides})


def since_day(text: str | None, *, field: str) -> dt.date | None:
    """The day a list starts from, as given (YYYY-MM-DD); None where none is given; refused naming ``field``."""
    if text is None or not text.strip():
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise InputError([FieldProblem(field, f"{quoted(text)} is not a date (YYYY-MM-DD)")]) from None


def _utc_midnight(day: dt.date) -> dt.datetime | None:
    """The clinic's midnight starting ``day``, in UTC as stored; None for a day whose midnight Python cannot place in
    UTC (the calendar's first, 0001-01-01), from which nothing is left out. Where that midnight does not exist (a clock
    moved forward at midnight) this is up to an hour early, never late: the caller checks each local day."""
    try:
        return dt.datetime.combine(day, dt.time()).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None


def overrides(session: Session, *, since: dt.date | None = None) -> list[OverrideGroup]:
    """Every status clinicians changed at sign-off (signed on or after ``since``), grouped by item and change, the
    most frequent first: where HemiCare's proposals and the clinic's decisions part, with the reasons, for whoever
    keeps the knowledge base (a rule overridden again and again may be wrong)."""
    query = (
        select(Patient.code, PlanVersion.number, PlanVersion.signed_at, PlanVersion.signed_role, PlanVersion.edits)
        .join(Patient, Patient.id == PlanVersion.patient_id)
        .where(PlanVersion.kind == "reviewed", PlanVersion.changes > 0)
        .order_by(PlanVersion.signed_at.desc(), PlanVersion.id.desc())
    )
    if since is not None and (midnight := _utc_midnight(since)) is not None:
        query = query.where(PlanVersion.signed_at >= midnight)
    groups: dict[tuple[str, str, str], list[Override]] = defaultdict(list)
    for code, number, signed_at, role, edits in session.execute(query):
        day = local_day(signed_at)
        if since is not None and day < since:
            continue
        for edit in edits:
            key = (edit["recommendation"], edit["from"], edit["to"])
            groups[key].append(Override(code, number, day, role or "", edit["reason"]))
    found = [OverrideGroup(*key, found) for key, found in groups.items()]
    return sorted(found, key=lambda group: (-len(group.overrides), group.recommendation, group.before, group.after))


def history(session: Session, *, patient: Patient) -> list[PlanVersion]:
    """Every version, oldest first."""
    query = select(PlanVersion).where(PlanVersion.patient_id == patient.id).order_by(PlanVersion.number)
    return list(session.scalars(query))


def _add_version(session: Session, version: PlanVersion) -> PlanVersion:
    session.add(version)
    try:
        session.flush()
    except IntegrityError as exc:
        raise ConflictError(
            f"plan version {version.number} was written by someone else at the same time; reload and try again"
        ) from exc
    return version


def generate(
    session: Session, *, patient: Patient, kb: KnowledgeBase, actor: str, today: dt.date, via: str = "assessment"
) -> PlanVersion:
    """Build the plan from the latest assessment and the sessions recorded, and store it as the next version (made
    ``via`` a new assessment, or at a clinician's request after sessions or outcomes were recorded: "records")."""
    stored = assessment_service.latest(session, patient=patient)
    recorded = session_service.list_for(session, patient=patient)
    plan = build_plan(with_recorded_history(stored.data, recorded, today=today), kb, today=today)
    return _store_generated(
        session,
        patient=patient,
        assessment_id=stored.id,
        content=plan.model_dump(mode="json"),
        actor=actor,
        via=via,
    )


def _effects_as_history_holds(effects: Sequence[str]) -> list[str]:
    """A recorded toxin session's side effects as the assessment's history holds them. A session recorded before they
    were held to that (before 2026-11-29) may have an empty one (dropped here) or one too long (cut, and
    ending "..."), which failed every plan of the patient's; the session keeps what was written."""
    cut = NAME_MAX - len("...")
    return [effect if len(effect) <= NAME_MAX else effect[:cut] + "..." for effect in effects if effect.strip()]


def _within_a_sessions_units(row: Any) -> None:
    """A toxin session recorded before sessions were held to SESSION_UNITS_MAX (before 2026-11-29) may hold more:
    a typing mistake no plan can be made from, nor its doses followed. Said as the caller's to mend, naming the way."""
    if (total := row.data["total_units"]) > SESSION_UNITS_MAX:
        said = (
            f"the toxin session of {row.date.isoformat()} holds {total:g} U, more than a session can "
            f"({SESSION_UNITS_MAX} U): remove it as entered by mistake (its row in the treatment history, or "
            "`hemicare sessions remove`) and record the session again as it was given"
        )
        raise InputError([FieldProblem("sessions", said)])


def with_recorded_history(data: dict[str, Any], sessions: Sequence[Any], *, today: dt.date) -> Assessment:
    """The assessment with the toxin sessions and surgery recorded in HemiCare added to its history, and the medicines
    and herbs prescribed in HemiCare that the patient still takes on ``today`` to its medicines and herbs.

    Sessions already written in the assessment (same date) are not added twice, nor a medicine or herb it names
    already.
    """
    for field, taken in (
        ("medications", session_service.with_prescribed),
        ("herbs", session_service.with_prescribed_herbs),
    ):
        listed = data.get(field) or []
        names = taken(listed, sessions, today=today)
        if names != listed:
            data = {**data, field: names}
    history = dict(data.get("history") or {})
    toxin = list(history.get("botulinum_sessions") or [])
    known_dates = {str(item["date"]) for item in toxin}
    for row in sessions:
        if row.kind == "toxin" and row.date.isoformat() not in known_dates:
            _within_a_sessions_units(row)
            toxin.append(
                {
                    "date": row.date.isoformat(),
                    "product": row.data["product"],
                    "total_units": row.data["total_units"],
                    "sites": [{"site": s["site"], "units": s["units"]} for s in row.data["sites"]],
                    "effect_weeks": row.data.get("effect_weeks"),
                    "adverse_effects": _effects_as_history_holds(row.data.get("adverse_effects", [])),
                }
            )
        elif row.kind == "mvd" and row.data.get("result") and history.get("prior_mvd") is None:
            history["prior_mvd"] = {"date": row.date.isoformat(), "result": row.data["result"]}
    history["botulinum_sessions"] = sorted(toxin, key=lambda item: str(item["date"]))
    return Assessment.model_validate({**data, "history": history})


def assess(
    session: Session, *, patient: Patient, assessment: Assessment, kb: KnowledgeBase, actor: str, today: dt.date
) -> PlanVersion:
    """Store a new assessment and generate the plan version that follows from it, in the caller's transaction."""
    assessment_service.record(session, patient=patient, assessment=assessment, actor=actor, today=today)
    return generate(session, patient=patient, kb=kb, actor=actor, today=today)


def _may_edit(role: str, category: str) -> bool:
    return role in (INTEGRATIVE_ROLES if part_of(category) == "integrative" else CONVENTIONAL_ROLES)


OFFERED = ("recommended", "option")
LIFTED = "Lifted at sign-off while these hold for the patient: "  # begins the rationale line of a lifted item


def lifted_lines(version: PlanVersion) -> list[tuple[str, str]]:
    """The items this signed version lifted that brought alerts, each with its rationale line naming them."""
    recs = {rec["id"]: rec for rec in version.content["recommendations"]}
    lifted = [edit["recommendation"] for edit in version.edits if edit["to"] in OFFERED and edit["from"] not in OFFERED]
    return [
        (item, recs[item]["rationale"][-1])
        for item in lifted
        if recs[item]["rationale"] and recs[item]["rationale"][-1].startswith(LIFTED)
    ]


def _say_what_lifting_brings(
    session: Session, *, patient: Patient, content: dict[str, Any], lifted: list[str], kb: KnowledgeBase
) -> None:
    """Add to a plan being signed what its lifted items bring (`safety.lifted_alerts`), by the patient's latest
    assessment and what they take today, read as a new plan reads them: the alerts, a line in each lifted item's
    rationale naming them, and its points and herbs less any a removal takes out."""
    stored = assessment_service.latest(session, patient=patient)
    recorded = session_service.list_for(session, patient=patient)
    facts = facts_of(with_recorded_history(stored.data, recorded, today=dt.date.today()), kb)
    recommendations = [Recommendation.model_validate(rec) for rec in content["recommendations"]]
    brought = lifted_alerts(recommendations, lifted, facts, kb)
    for rec in content["recommendations"]:
        if rec["id"] in brought.details:
            rec["details"] = brought.details[rec["id"]]
            if brought.titles[rec["id"]]:
                rec["rationale"].append(f"{LIFTED}{'; '.join(brought.titles[rec['id']])}.")
    alerts = {alert["id"]: alert for alert in content["alerts"]}
    for alert in brought.alerts:
        if alert.id in alerts:
            alerts[alert.id]["affects"] = list(dict.fromkeys([*alerts[alert.id]["affects"], *alert.affects]))
        else:
            content["alerts"].append(alert.model_dump(mode="json"))
    content["alerts"].sort(key=lambda alert: SEVERITY_ORDER[alert["severity"]])  # a StrEnum: its words are keys


def sign(
    session: Session,
    *,
    patient: Patient,
    expected_number: int,
    edits: list[PlanEdit],
    signer: str,
    role: str,
    kb: KnowledgeBase,
    reason: str | None = None,
) -> PlanVersion:
    """Apply the signer's edits to the latest version and sign the signer's part, as a new version. An item lifted
    (to recommended or option from a status holding it back) brings the alerts the plan would have raised had it
    offered it."""
    current = latest(session, patient=patient)
    if current is None:
        raise NotFoundError(f"patient {patient.code!r} has no plan to sign")
    if current.number != expected_number:
        raise ConflictError(
            f"the plan is at version {current.number}, not {expected_number}: someone else changed it; "
            "review the new version"
        )
    if role not in CONVENTIONAL_ROLES + INTEGRATIVE_ROLES:
        raise ForbiddenError(f"role {role!r} cannot sign a plan")
    content: dict[str, Any] = copy.deepcopy(current.content)
    recommendations = {rec["id"]: rec for rec in content["recommendations"]}
    applied = []
    problems = []
    for index, edit in enumerate(edits):
        rec = recommendations.get(edit.recommendation)
        if rec is None:
            said = f"no recommendation {quoted(edit.recommendation)}"
            problems.append(FieldProblem(f"edits.{index}.recommendation", said))
            continue
        if not _may_edit(role, rec["category"]):
            raise ForbiddenError(f"a {role} cannot change {rec['category']} item {rec['id']!r}")
        applied.append(
            {"recommendation": rec["id"], "from": rec["status"], "to": edit.status.value, "reason": edit.reason}
        )
        rec["status"] = edit.status.value
        rec["rationale"].append(f"{CHANGED_BY}{signer} ({role}) from {applied[-1]['from']}: {edit.reason}")
    if problems:
        raise InputError(problems)
    lifted = [edit["recommendation"] for edit in applied if edit["to"] in OFFERED and edit["from"] not in OFFERED]
    if lifted:
        _say_what_lifting_brings(session, patient=patient, content=content, lifted=lifted, kb=kb)
    if applied:  # the options side by side show what the signer decided, not what HemiCare proposed
        follow_statuses(content, kb)
    part = "integrative" if role in INTEGRATIVE_ROLES else "conventional"  # the signer's own part
    signed_at = utcnow()
    content.setdefault("signoff", {})[part] = {"by": signer, "role": role, "at": signed_at.isoformat()}
    version = PlanVersion(
        patient_id=patient.id,
        number=current.number + 1,
        assessment_id=current.assessment_id,
        kind="reviewed",
        knowledge_version=current.knowledge_version,
        hemicare_version=current.hemicare_version,
        content=content,
        summary=summarise(content),
        edits=applied,
        changes=len(applied),
        signed_by=signer,
        signed_role=role,
        signed_at=signed_at,
        created_by=signer,
    )
    _add_version(session, version)
    audit.record(
        session,
        actor=signer,
        action="sign",
        entity="plan",
        entity_id=f"{patient.code}/v{version.number}",
        reason=reason,
        detail={"role": role, "part": part, "edits": applied},
    )
    return version


class PlanChange(BaseModel):
    """How a patient's plan would change under the current knowledge base."""

    patient: str
    new: bool
    alerts_added: list[str]
    alerts_removed: list[str]
    status_changes: list[dict[str, str]]
    given_changes: list[dict[str, str]]


ABSENT = "absent"  # what a comparison says of a recommendation, or an item of one, that one side does not have


def compare(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """Differences between two plan summaries."""
    if before is None:
        return {
            "new": True,
            "alerts_added": after["alerts"],
            "alerts_removed": [],
            "status_changes": [],
            "given_changes": [],
        }
    changes = [
        {"recommendation": rec, "from": before["statuses"].get(rec, ABSENT), "to": status}
        for rec, status in after["statuses"].items()
        if before["statuses"].get(rec) != status
    ]
    return {
        "new": False,
        "alerts_added": sorted(set(after["alerts"]) - set(before["alerts"])),
        "alerts_removed": sorted(set(before["alerts"]) - set(after["alerts"])),
        "status_changes": changes,
        "given_changes": given_changes(before["given"], after["given"]),
    }


def given_changes(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """Each item given differently (a dose, a site, the product, a herb, the points), in the order the plans list
    them: the items of each recommendation in the newer plan first, then those it no longer has."""
    changes = []
    for rec in [*after, *(rec for rec in before if rec not in after)]:
        old, new = before.get(rec, {}), after.get(rec, {})
        for item in [*new, *(item for item in old if item not in new)]:
            if old.get(item) != new.get(item):
                changes.append(
                    {"recommendation": rec, "item": item, "from": old.get(item, ABSENT), "to": new.get(item, ABSENT)}
                )
    return changes


_RECHECK_KB: KnowledgeBase | None = None
# Patients per task handed to a worker process: small enough that the progress bar moves every few seconds (with one
# task per worker it stood still until the end), large enough that opening a connection per task costs nothing.
RECHECK_TASK_PATIENTS = 2_000


def _evaluate(job: tuple[str, dict[str, Any], list[dict[str, Any]], dict[str, Any] | None, dt.date]) -> dict[str, Any]:
    """One patient's recheck, runnable in a worker process (the knowledge base is inherited on fork)."""
    code, data, recorded, before, today = job
    assert _RECHECK_KB is not None
    try:
        assessment = with_recorded_history(data, [_RecordedSession(**row) for row in recorded], today=today)
    except InputError as exc:  # whose records to mend, of all the patients checked
        raise InputError([FieldProblem(p.path, f"patient {code}: {p.message}") for p in exc.problems]) from None
    plan = build_plan(assessment, _RECHECK_KB, today=today, compact=True)
    after = {
        "statuses": {rec.id: rec.status.value for rec in plan.recommendations},
        "given": given((rec.id, rec.details) for rec in plan.recommendations),
        "alerts": sorted(alert.id for alert in plan.alerts),
    }
    return {"patient": code, **compare(before, after)}


class _RecordedSession:
    """The fields of a treatment session that a plan needs, detached from the database session."""

    def __init__(self, kind: str, date: dt.date, data: dict[str, Any]) -> None:
        self.kind, self.date, self.data = kind, date, data


def _jobs(session: Session, *, today: dt.date, patients: tuple[int, int] | None = None) -> list[Any]:
    """The recheck input of every patient (or of the patients whose ids lie in a range; every query is limited to
    it, so that a worker's share costs its own rows, not a pass over the whole clinic)."""
    assessments = select(StoredAssessment.patient_id, func.max(StoredAssessment.id).label("id"))
    if patients is not None:
        assessments = assessments.where(StoredAssessment.patient_id.between(*patients))
    latest_assessment = assessments.group_by(StoredAssessment.patient_id).subquery()
    # Compare with what the engine said last time, not with a clinician's reviewed edits.
    latest_plan = _latest_numbers(kind="generated", patients=patients)
    query = (
        select(Patient.id, Patient.code, StoredAssessment.data, PlanVersion.summary)
        .join(latest_assessment, latest_assessment.c.patient_id == Patient.id)
        .join(StoredAssessment, StoredAssessment.id == latest_assessment.c.id)
        .outerjoin(latest_plan, latest_plan.c.patient_id == Patient.id)
        .outerjoin(
            PlanVersion,
            (PlanVersion.patient_id == Patient.id) & (PlanVersion.number == latest_plan.c.number),
        )
    )
    history = select(
        TreatmentSession.patient_id, TreatmentSession.kind, TreatmentSession.date, TreatmentSession.data
    ).where(TreatmentSession.kind.in_(session_service.READ_BY_PLANS))
    if patients is not None:
        query = query.where(Patient.id.between(*patients))
        history = history.where(TreatmentSession.patient_id.between(*patients))
    recorded: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for patient_id, kind, date, data in session.execute(history):
        recorded[patient_id].append({"kind": kind, "date": date, "data": data})
    return [
        (code, data, recorded[patient_id], before, today) for patient_id, code, data, before in session.execute(query)
    ]


def _changed(result: dict[str, Any]) -> bool:
    return bool(
        result["new"]
        or result["alerts_added"]
        or result["alerts_removed"]
        or result["status_changes"]
        or result["given_changes"]
    )


def _recheck_range(task: tuple[str, int, int, dt.date]) -> list[dict[str, Any]]:
    """A worker's task: it reads its own patients, so nothing large crosses between processes."""
    url, first_id, last_id, today = task
    engine = make_engine(url)
    try:
        with session_factory(read_only(engine))() as session:
            return [r for r in map(_evaluate, _jobs(session, today=today, patients=(first_id, last_id))) if _changed(r)]
    finally:
        engine.dispose()


def recheck(
    session: Session,
    *,
    kb: KnowledgeBase,
    today: dt.date,
    actor: str,
    save: bool = False,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> list[PlanChange]:
    """Re-run the engine for every patient's latest assessment; list those whose plan would change.

    The comparison is with the latest generated version, so a clinician's own edits are not reported as changes.
    With ``workers`` above 1, that many processes each read and check a range of patients (they see committed data
    only). With ``save`` the changed plans are stored as new generated versions in this session's transaction.
    """
    global _RECHECK_KB
    _RECHECK_KB = kb
    results: list[dict[str, Any]] = []
    ids = list(session.scalars(select(Patient.id).order_by(Patient.id)))
    if workers > 1 and len(ids) > workers:
        url = session.get_bind().engine.url.render_as_string(hide_password=False)
        size = min(-(-len(ids) // workers), RECHECK_TASK_PATIENTS)
        shares = [ids[i : i + size] for i in range(0, len(ids), size)]
        tasks = [(url, share[0], share[-1], today) for share in shares]
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            for share, found in zip(shares, pool.map(_recheck_range, tasks), strict=True):
                results.extend(found)
                if progress is not None:
                    progress(len(share))
    else:
        for job in _jobs(session, today=today):
            result = _evaluate(job)
            if _changed(result):
                results.append(result)
            if progress is not None:
                progress(1)
    changes = sorted((PlanChange(**result) for result in results), key=lambda change: change.patient)
    if save:
        for change in changes:
            patient = get_patient(session, code=change.patient)
            stored = assessment_service.latest(session, patient=patient)
            recorded = session_service.list_for(session, patient=patient)
            assessment = with_recorded_history(stored.data, recorded, today=today)
            content = build_plan(assessment, kb, today=today).model_dump(mode="json")
            _store_generated(
                session, patient=patient, assessment_id=stored.id, content=content, actor=actor, via="recheck"
            )
    return changes


def _store_generated(
    session: Session, *, patient: Patient, assessment_id: int, content: dict[str, Any], actor: str, via: str
) -> PlanVersion:
    previous = latest(session, patient=patient)
    version = PlanVersion(
        patient_id=patient.id,
        number=(previous.number + 1) if previous else 1,
        assessment_id=assessment_id,
        kind="generated",
        knowledge_version=content["knowledge_version"],
        hemicare_version=content["hemicare_version"],
        content=content,
        summary=summarise(content),
        edits=[],
        created_by=actor,
    )
    _add_version(session, version)
    audit.record(
        session,
        actor=actor,
        action="create",
        entity="plan",
        entity_id=f"{patient.code}/v{version.number}",
        detail={"knowledge_version": content["knowledge_version"], "via": via},
    )
    return version
