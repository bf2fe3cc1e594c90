"""Compose the plan: triage first, then the options each part of the engine proposes, then the safety engine.

The order matters: safety rules see every proposed item at once, so an interaction between, say, a patient's
warfarin and a herb in the proposed formula is caught wherever the two come from.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hemicare import __version__
from hemicare.engine.assessment import Assessment, finding_names
from hemicare.engine.conventional import conventional_options
from hemicare.engine.decision_aid import column_references, decision_aid
from hemicare.engine.loader import KnowledgeBase
from hemicare.engine.plan import (
    Alert,
    Category,
    Diagnosis,
    DiagnosisStatus,
    Plan,
    Recommendation,
    ScheduleItem,
    Severity,
    Status,
    evidence_out,
    references_in,
)
from hemicare.engine.rules import facts_of
from hemicare.engine.safety import TAKEN_ALERT, apply_safety, unchecked_alerts
from hemicare.engine.scores import score
from hemicare.engine.tcm import integrative_options
from hemicare.engine.triage import triage

_CATEGORY_ORDER = {Category.WORKUP: 0, Category.CONVENTIONAL: 1, Category.INTEGRATIVE: 2}
_STATUS_ORDER = {
    Status.RECOMMENDED: 0,
    Status.OPTION: 1,
    Status.DEFERRED: 2,
    Status.NOT_RECOMMENDED: 3,
    Status.CONTRAINDICATED: 4,
}
SEVERITY_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


def _workup(diagnosis: Diagnosis, kb: KnowledgeBase) -> list[Recommendation]:
    if not diagnosis.red_flags and not diagnosis.unknown_findings:
        return []
    record = kb.treatments["mri_workup"]
    rationale = [f"Red flag: {flag.finding}. {flag.action}" for flag in diagnosis.red_flags]
    missing = finding_names(diagnosis.unknown_findings)
    rationale += [f"Not recorded: {name}; needed to rule out secondary HFS." for name in missing]
    if diagnosis.status is DiagnosisStatus.SECONDARY_SUSPECTED:
        rationale.append("Secondary HFS is suspected: the work-up comes before any definitive treatment.")
    return [
        Recommendation(
            id=record.id,
            category=Category(record.category),
            status=Status.RECOMMENDED,
            summary=record.summary,
            rationale=rationale,
            evidence=evidence_out(record.evidence),
            details=dict(record.details),
        )
    ]


SECONDARY_ALERT = "secondary_hfs_suspected"


def alert_title(alert_id: str, kb: KnowledgeBase) -> str:
    """A few words for an alert, where a list names alerts without their messages (the patient list): the safety
    rule's title, or words made from the id of an alert the engine raises itself."""
    if alert_id in kb.safety:
        return kb.safety[alert_id].title
    if alert_id == SECONDARY_ALERT:
        return "Red flags for secondary HFS"
    if alert_id == TAKEN_ALERT:
        return "Herbs of the formula already taken"
    kind, _, rest = alert_id.partition(":")
    if kind == "unchecked":  # unchecked:drug:warfarin, unchecked:herb_drug_interactions
        return "Not checked: " + (rest.partition(":")[2] or rest.replace("_", " "))
    if kind == "formula_conflict":
        return "The formula conflicts with the secondary TCM pattern"
    return alert_id.replace("_", " ")


def _diagnosis_alerts(diagnosis: Diagnosis, recommendations: list[Recommendation]) -> list[Alert]:
    if diagnosis.status is not DiagnosisStatus.SECONDARY_SUSPECTED:
        return []
    references = sorted({ref for flag in diagnosis.red_flags for ref in flag.evidence.references})
    deferred = [r.id for r in recommendations if r.category is not Category.WORKUP and r.status is Status.DEFERRED]
    return [
        Alert(
            id=SECONDARY_ALERT,
            severity=Severity.CRITICAL,
            message="Red flags for secondary HFS: "
            + "; ".join(flag.finding for flag in diagnosis.red_flags if flag.kind == "secondary_sign")
            + ". Complete the MRI work-up before any definitive treatment.",
            affects=deferred,
            references=references,
        )
    ]


def _cited(plan: Plan, kb: KnowledgeBase) -> dict[str, str]:
    """Every reference the plan cites, with its citation (walks the plan's parts, not a full dump: it is hot)."""
    ids: set[str] = set()
    for rec in plan.recommendations:
        ids.update(rec.evidence.references)
        declared = rec.details_references()
        if declared is None:
            references_in(rec.details, ids)
        else:
            ids.update(declared)
    for alert in plan.alerts:
        ids.update(alert.references)
    for flag in plan.diagnosis.red_flags:
        ids.update(flag.evidence.references)
    for differential in plan.diagnosis.differentials:
        ids.update(differential.evidence.references)
    for result in plan.scores.values():
        ids.update(result.evidence.references)
    if plan.decision_aid is not None:
        for column in plan.decision_aid.columns:
            ids.update(column_references(column))
    return {ref: kb.references[ref].citation for ref in sorted(ids)}


def _schedule(recommendations: list[Recommendation], toxin: dict[str, Any], kb: KnowledgeBase) -> list[ScheduleItem]:
    """What comes next and when; ``toxin`` is the toxin programme as the plan holds it (JSON data)."""
    items: list[ScheduleItem] = []
    statuses = {rec.id: rec.status for rec in recommendations}
    shown = (Status.RECOMMENDED, Status.OPTION)
    if statuses.get("mri_workup") is Status.RECOMMENDED:
        items.append(ScheduleItem(what="MRI work-up", note="before any definitive treatment"))
    if statuses.get("mvd") in shown or statuses.get("redo_mvd") in shown:
        items.append(
            ScheduleItem(
                what="Neurosurgical consultation on microvascular decompression",
                note="judge the result only after months: resolution is often delayed",
            )
        )
    if statuses.get("botulinum_toxin") in shown:
        note = f"not before {toxin['earliest_next']}"
        if toxin["due_by"]:
            note += f"; usually by {toxin['due_by']}"
        due_from = dt.date.fromisoformat(toxin["due_from"])
        items.append(
            ScheduleItem(
                what=f"Botulinum toxin session: {toxin['brand']} {toxin['total_units']:g} U", due=due_from, note=note
            )
        )
        items.append(
            ScheduleItem(
                what="Toxin response review: Jankovic scale, SMC grade, HFS-7; effect duration, adverse effects",
                due=due_from + dt.timedelta(weeks=6),
                note="6-8 weeks after the session, when HFS-30 was validated against toxin response",
            )
        )
    if statuses.get("acupuncture") in shown and kb.acupuncture is not None:
        items.append(
            ScheduleItem(
                what="Acupuncture course (adjunct)",
                note=" ".join([*kb.acupuncture.course[:1], kb.acupuncture.review]),
            )
        )
    return items


def _ordered(recommendations: list[Recommendation]) -> list[Recommendation]:
    ranked = sorted(recommendations, key=lambda r: (_CATEGORY_ORDER[r.category], _STATUS_ORDER[r.status]))
    for index, rec in enumerate(ranked, start=1):
        rec.priority = index
    return ranked


def build_plan(
    assessment: Assessment, kb: KnowledgeBase, *, today: dt.date | None = None, compact: bool = False
) -> Plan:
    """The plan for one assessment. Pure: same input, knowledge version and date, same plan.

    ``compact`` leaves out the scores, the decision aid, the schedule and the citation list, for bulk rechecks,
    which compare statuses, alerts and what each recommendation gives (the toxin dose plan among it).
    """
    today = today or dt.date.today()
    facts = facts_of(assessment, kb)
    diagnosis = triage(facts, kb)
    conventional, toxin = conventional_options(assessment, facts, diagnosis, kb, today=today)
    integrative, tcm_alerts, differentiation = integrative_options(assessment, facts, diagnosis, kb)
    recommendations = _workup(diagnosis, kb) + conventional + integrative
    safety_alerts = apply_safety(recommendations, facts, kb)
    unchecked = unchecked_alerts(recommendations, facts, kb, pregnant=assessment.pregnant)
    recommendations = _ordered(recommendations)
    alerts = _diagnosis_alerts(diagnosis, recommendations) + safety_alerts + tcm_alerts + unchecked
    alerts.sort(key=lambda a: SEVERITY_ORDER[a.severity])
    plan = Plan(
        hemicare_version=__version__,
        knowledge_version=kb.version,
        patient_id=assessment.id,
        generated_on=today,
        diagnosis=diagnosis,
        scores={} if compact else score(assessment, kb),
        recommendations=recommendations,
        alerts=alerts,
        tcm=differentiation,
        schedule=[] if compact else _schedule(recommendations, toxin, kb),
        decision_aid=None if compact else decision_aid(recommendations, kb),
    )
    if not compact:
        plan.references = _cited(plan, kb)
    return plan
