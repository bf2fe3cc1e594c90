"""Compose the plan: triage, scores, the recommendations each part of the engine proposes, and the alerts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hemicare import __version__
from hemicare.engine.assessment import Assessment
from hemicare.engine.conventional import conventional_options
from hemicare.engine.decision_aid import decision_aid
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
    TcmSection,
    evidence_out,
)
from hemicare.engine.rules import Facts, facts_of
from hemicare.engine.scores import score
from hemicare.engine.tcm import integrative_options
from hemicare.engine.toxin import ToxinPlan
from hemicare.engine.triage import triage


def _workup(diagnosis: Diagnosis, kb: KnowledgeBase) -> list[Recommendation]:
    if not diagnosis.red_flags and not diagnosis.unknown_findings:
        return []
    record = kb.treatments["mri_workup"]
    rationale = [f"Red flag: {flag.finding}. {flag.action}" for flag in diagnosis.red_flags]
    rationale += [f"Not recorded: `{name}`; needed to rule out secondary HFS." for name in diagnosis.unknown_findings]
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


def _unchecked(facts: Facts, kb: KnowledgeBase) -> list[Alert]:
    """Fail closed: every medication or comorbidity that no rule covers is reported as unchecked."""
    alerts: list[Alert] = []
    for written in facts["unknown_medications"]:
        alerts.append(
            Alert(
                id=f"unchecked:drug:{written}",
                severity=Severity.WARNING,
                message=f"Medication '{written}' is not in the knowledge base: its interactions and "
                "contraindications have NOT been checked.",
                affects=[f"drug:{written}"],
            )
        )
    for drug_id in facts["drugs"]:
        if drug_id not in kb.covered_drugs():
            alerts.append(
                Alert(
                    id=f"unchecked:drug:{drug_id}",
                    severity=Severity.WARNING,
                    message=f"{kb.drugs[drug_id].label} is recognised, but no safety rule covers it: it has NOT "
                    "been checked against this plan.",
                    affects=[f"drug:{drug_id}"],
                )
            )
    for written in facts["unknown_comorbidities"]:
        alerts.append(
            Alert(
                id=f"unchecked:comorbidity:{written}",
                severity=Severity.WARNING,
                message=f"Comorbidity '{written}' is not in the knowledge-base vocabulary: no rule has checked it.",
            )
        )
    return alerts


def _diagnosis_alerts(diagnosis: Diagnosis) -> list[Alert]:
    if diagnosis.status is not DiagnosisStatus.SECONDARY_SUSPECTED:
        return []
    references = sorted({ref for flag in diagnosis.red_flags for ref in flag.evidence.references})
    return [
        Alert(
            id="secondary_hfs_suspected",
            severity=Severity.CRITICAL,
            message="Red flags for secondary HFS: "
            + "; ".join(flag.finding for flag in diagnosis.red_flags if flag.kind == "secondary_sign")
            + ". Complete the work-up before any definitive treatment.",
            affects=["mri_workup"],
            references=references,
        )
    ]


def _references_in(value: Any, into: set[str]) -> None:
    """Collect every reference id anywhere in a dumped plan (evidence blocks, figures, alerts)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "references" and isinstance(inner, list):
                into.update(str(ref) for ref in inner)
            else:
                _references_in(inner, into)
    elif isinstance(value, list):
        for inner in value:
            _references_in(inner, into)


def _cited(plan: Plan, kb: KnowledgeBase) -> dict[str, str]:
    ids: set[str] = set()
    _references_in(plan.model_dump(mode="json", exclude={"references"}), ids)
    return {ref: kb.references[ref].citation for ref in sorted(ids)}


def _schedule(recommendations: list[Recommendation], toxin: ToxinPlan) -> list[ScheduleItem]:
    items: list[ScheduleItem] = []
    statuses = {rec.id: rec.status for rec in recommendations}
    if statuses.get("mri_workup") is Status.RECOMMENDED:
        items.append(ScheduleItem(what="MRI work-up", note="before any definitive treatment"))
    if statuses.get("botulinum_toxin") in (Status.RECOMMENDED, Status.OPTION):
        note = f"not before {toxin.earliest_next.isoformat()}"
        if toxin.due_by:
            note += f"; usually by {toxin.due_by.isoformat()}"
        items.append(
            ScheduleItem(
                what=f"Botulinum toxin session: {toxin.brand} {toxin.total_units:g} U", due=toxin.due_from, note=note
            )
        )
    return items


def build_plan(assessment: Assessment, kb: KnowledgeBase, *, today: dt.date | None = None) -> Plan:
    """The plan for one assessment. Pure: same input and knowledge version, same plan."""
    facts = facts_of(assessment, kb)
    diagnosis = triage(facts, kb)
    today = today or dt.date.today()
    conventional, toxin = conventional_options(assessment, facts, diagnosis, kb, today=today)
    integrative, tcm_alerts, differentiation = integrative_options(assessment, facts, diagnosis, kb)
    recommendations = _workup(diagnosis, kb) + conventional + integrative
    alerts = _diagnosis_alerts(diagnosis) + tcm_alerts + _unchecked(facts, kb)
    plan = Plan(
        hemicare_version=__version__,
        knowledge_version=kb.version,
        patient_id=assessment.id,
        generated_on=today,
        diagnosis=diagnosis,
        scores=score(assessment, kb),
        recommendations=recommendations,
        alerts=alerts,
        tcm=TcmSection(
            patterns=[p.model_dump() for p in differentiation.patterns],
            primary=differentiation.primary,
            secondary=differentiation.secondary,
            summary=differentiation.summary,
        ),
        schedule=_schedule(recommendations, toxin),
        decision_aid=decision_aid(recommendations, kb),
    )
    plan.references = _cited(plan, kb)
    return plan
