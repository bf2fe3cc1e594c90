"""Conventional options: MVD and redo MVD, the botulinum-toxin programme, procedures and oral medicines.

Each option gets a status and a personalised, cited rationale. Safety contraindications are added later by the
safety engine; this module decides what each option means for this patient's diagnosis, history and wishes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, NamedTuple

from hemicare.engine.assessment import Assessment, MriStatus, MvdResult
from hemicare.engine.loader import KnowledgeBase
from hemicare.engine.plan import (
    Category,
    Diagnosis,
    DiagnosisStatus,
    EvidenceOut,
    Memo,
    Recommendation,
    Status,
    evidence_out,
    figure_dict,
    memoised,
    references_in,
    shared_references,
)
from hemicare.engine.rules import Facts, holds
from hemicare.engine.schema import ToxinSite, Treatment
from hemicare.engine.toxin import UNVERIFIED_DOSE, plan_toxin


def recommendation(
    kb: KnowledgeBase,
    treatment_id: str,
    status: Status,
    rationale: list[str],
    *,
    details: dict[str, Any] | None = None,
    cites: Iterable[str] = (),
) -> Recommendation:
    """A recommendation for a knowledge-base treatment, with its figures shown beside the rationale.

    ``cites`` names every reference inside ``details``; the record's own details and figures are known already.
    """
    record = kb.treatments[treatment_id]
    fixed = _fixed_part(record)
    merged = dict(fixed.details)
    if details:
        merged.update(details)
    cited = fixed.references.union(cites) if cites else fixed.references
    return Recommendation.trusted(
        id=record.id,
        category=fixed.category,
        status=status,
        summary=record.summary,
        rationale=rationale,
        evidence=fixed.evidence,
        details=merged,
        details_references=cited,
    )


class _FixedPart(NamedTuple):
    """What a treatment record puts into every recommendation of it, whoever the patient."""

    category: Category
    evidence: EvidenceOut
    details: dict[str, Any]  # shared: copied before a recommendation adds to it
    references: frozenset[str]  # every reference inside ``details``


_FIXED_PARTS: Memo = {}


def _fixed_part(record: Treatment) -> _FixedPart:
    """A treatment record's category, evidence, own details with its figures and their references, made once."""

    def make(source: Treatment) -> _FixedPart:
        details = dict(source.details)
        found: set[str] = set()
        references_in(details, found)
        if source.figures:
            details["figures"] = [figure_dict(f) for f in source.figures]
            found |= {ref for figure in source.figures for ref in figure.evidence.references}
        return _FixedPart(Category(source.category), evidence_out(source.evidence), details, frozenset(found))

    result: _FixedPart = memoised(_FIXED_PARTS, record, make)
    return result


def _diagnosis_gate(diagnosis: Diagnosis) -> str | None:
    """Why a treatment of HFS must wait for the diagnosis, or None when it need not."""
    if diagnosis.status is DiagnosisStatus.SECONDARY_SUSPECTED:
        return "Deferred: red flags for secondary HFS; complete the work-up first."
    if diagnosis.status is DiagnosisStatus.ALTERNATIVE_SUSPECTED:
        names = ", ".join(d.name for d in diagnosis.differentials)
        return f"Deferred: the features fit a mimic ({names}); confirm the diagnosis first."
    return None


def _personal(facts: Facts, kb: KnowledgeBase, treatment_id: str) -> tuple[list[str], list[dict[str, Any]], set[str]]:
    """The modifiers that apply to this patient: their texts, their figures and their ids."""
    fired: set[str] = set()
    lines: list[str] = []
    figures: list[dict[str, Any]] = []
    for modifier in kb.modifiers.values():
        if modifier.treatment == treatment_id and holds(modifier.when, facts):
            fired.add(modifier.id)
            marks = evidence_out(modifier.evidence)
            lines.append(modifier.text + (f" {marks.note}" if marks.note else ""))
            figures += [figure_dict(f) for f in modifier.figures]
    return lines, figures, fired


def _surgery_blockers(assessment: Assessment, diagnosis: Diagnosis, kb: KnowledgeBase) -> list[str]:
    reasons: list[str] = []
    gate = _diagnosis_gate(diagnosis)
    if gate:
        reasons.append(gate)
    if diagnosis.status is DiagnosisStatus.INSUFFICIENT_INFORMATION:
        reasons.append("Deferred: findings needed to rule out secondary HFS are not recorded.")
    imaging = assessment.imaging
    if imaging.mri is not MriStatus.DONE:
        reasons.append("Deferred: MRI (3D T2 CISS/FIESTA, TOF MRA, T1 gadolinium) is needed before surgery.")
    elif imaging.neurovascular_compression is None:
        reasons.append("Deferred: the MRI report does not say whether there is neurovascular compression.")
    asa = assessment.anaesthesia_risk_asa
    limit = kb.policy("asa_max_for_elective_surgery")
    if asa is not None and asa > limit:
        reasons.append(f"Deferred: ASA class {asa} is above {limit:g}; anaesthetic review before any surgery.")
    return reasons


def _mvd(assessment: Assessment, facts: Facts, diagnosis: Diagnosis, kb: KnowledgeBase) -> Recommendation:
    lines, personal, fired = _personal(facts, kb, "mvd")
    details: dict[str, Any] = {"personal_figures": personal} if personal else {}
    cites = shared_references(personal)
    blockers = _surgery_blockers(assessment, diagnosis, kb)
    rationale: list[str] = []
    if assessment.imaging.mri is MriStatus.DONE and assessment.imaging.neurovascular_compression is False:
        rationale.append(
            "No neurovascular compression on MRI: MVD treats vascular compression, so it is not advised "
            "unless the imaging is reviewed."
        )
        return recommendation(kb, "mvd", Status.NOT_RECOMMENDED, rationale + lines, details=details, cites=cites)
    if blockers:
        return recommendation(kb, "mvd", Status.DEFERRED, blockers + lines, details=details, cites=cites)
    rationale.append("Primary HFS with neurovascular compression on MRI: MVD treats the cause.")
    if assessment.anaesthesia_risk_asa is None:
        rationale.append("ASA class not recorded: an anaesthetic assessment is needed.")
    if assessment.preferences.avoid_surgery:
        rationale.append("The patient prefers to avoid surgery: shown so that the choice stays an informed one.")
        details["declined_by_patient"] = True
        return recommendation(kb, "mvd", Status.OPTION, rationale + lines, details=details, cites=cites)
    status = Status.OPTION
    if assessment.preferences.wants_definitive_treatment:
        rationale.append("The patient wants a definitive treatment; MVD is the only one aimed at the cause.")
        status = Status.RECOMMENDED
    if "mvd_young" in fired:
        status = Status.RECOMMENDED
    grade = assessment.severity.smc_grade
    if grade is not None and grade >= kb.policy("severe_smc_grade"):
        rationale.append(f"Severe spasm (SMC grade {grade}): a definitive treatment is worth discussing first.")
        status = Status.RECOMMENDED
    if status is Status.OPTION:
        rationale.append("Toxin first or MVD first is disputed; discuss both (see the decision aid).")
    return recommendation(kb, "mvd", status, rationale + lines, details=details, cites=cites)


def _redo_mvd(assessment: Assessment, diagnosis: Diagnosis, kb: KnowledgeBase, today: dt.date) -> Recommendation | None:
    prior = assessment.history.prior_mvd
    if prior is None or prior.result is MvdResult.CURED:
        return None
    months = (today - prior.date).days / 30.44
    judge = kb.policy("mvd_early_judgement_months")
    mvd = kb.treatments["mvd"]
    delayed = [figure_dict(mvd.figure(f)) for f in ("delayed_relief", "median_days_to_spasm_free")]
    details: dict[str, Any] = {"months_since_mvd": round(months, 1), "delayed_resolution_figures": delayed}
    cites = shared_references(delayed)
    blockers = _surgery_blockers(assessment, diagnosis, kb)
    if blockers:
        return recommendation(kb, "redo_mvd", Status.DEFERRED, blockers, details=details, cites=cites)
    if prior.result is not MvdResult.RECURRED and months < judge:
        return recommendation(
            kb,
            "redo_mvd",
            Status.DEFERRED,
            [
                f"MVD was {months:.0f} months ago with result '{prior.result.value}': resolution is often delayed and "
                f"can be non-linear, so do not judge it before {judge:g} months unless a missed vessel is suspected.",
                kb.treatments["mvd"].details.get("judging_the_result", ""),
            ],
            details=details,
            cites=cites,
        )
    reason = (
        "Spasm recurred after MVD: late reoperation is an option; outcomes are worse for recurrent than residual HFS."
        if prior.result is MvdResult.RECURRED
        else f"Spasm persists {months:.0f} months after MVD without delayed resolution: reoperation is an option."
    )
    rationale = [reason, "Failures are mostly Teflon adhesion or a missed vessel."]
    if assessment.preferences.avoid_surgery:
        rationale.append("The patient prefers to avoid surgery.")
        details["declined_by_patient"] = True
    return recommendation(kb, "redo_mvd", Status.OPTION, rationale, details=details, cites=cites)


def _toxin(
    assessment: Assessment, diagnosis: Diagnosis, kb: KnowledgeBase, today: dt.date
) -> tuple[Recommendation, dict[str, Any]]:
    gate = _diagnosis_gate(diagnosis)
    declined = assessment.preferences.avoid_injections
    status = Status.DEFERRED if gate else Status.OPTION if declined else Status.RECOMMENDED
    plan = plan_toxin(assessment, kb, today=today)
    details: dict[str, Any] = {"programme": plan}
    unverified = _unverified_doses(plan["sites"], kb)
    cites = shared_references([plan["conversion"], *plan["caps"]])
    if gate:
        return recommendation(kb, "botulinum_toxin", status, [gate], details=details, cites=cites), plan
    rationale = [
        "Symptomatic treatment with consistent benefit in large series; the usual first-line option.",
        f"Product: {plan['brand']} ({plan['product']}). {plan['product_reason']}",
        f"Dose plan: {plan['total_units']:g} U in total over {len(plan['sites'])} sites "
        f"({plan['total_ona_units']:g} onabotulinumtoxinA-equivalent units).",
        *plan["titration"],
        *(f"[UNVERIFIED] Dose at {site.label}: {site.evidence.note}" for site in unverified),
    ]
    if declined:
        rationale.append("The patient prefers to avoid injections: shown so that the choice stays an informed one.")
        details["declined_by_patient"] = True
    return recommendation(kb, "botulinum_toxin", status, rationale, details=details, cites=cites), plan


def _unverified_doses(sites: list[dict[str, Any]], kb: KnowledgeBase) -> list[ToxinSite]:
    """The plan's injection sites (once each, whatever the side) whose dose no HFS source gives, in the plan's order:
    the reference sheet marks them [unverified], and so must the plan."""
    known = {site.id: site for site in kb.toxin_programme().sites}
    chosen = dict.fromkeys(site["site"] for site in sites if site["note"] == UNVERIFIED_DOSE)
    return [known[site_id] for site_id in chosen]


def _toxin_failing(assessment: Assessment, kb: KnowledgeBase) -> bool:
    short = kb.toxin_programme().limits["short_effect_weeks"].value
    sessions = assessment.history.botulinum_sessions
    return bool(sessions) and all(
        (s.effect_weeks is not None and s.effect_weeks < short) or s.adverse_effects for s in sessions[-2:]
    )


def _procedures(assessment: Assessment, diagnosis: Diagnosis, kb: KnowledgeBase) -> list[Recommendation]:
    asa = assessment.anaesthesia_risk_asa
    surgery_out = assessment.preferences.avoid_surgery or (
        asa is not None and asa > kb.policy("asa_max_for_elective_surgery")
    )
    toxin_out = assessment.preferences.avoid_injections or _toxin_failing(assessment, kb)
    out: list[Recommendation] = []
    for treatment_id in ("nerve_block", "rf_ablation"):
        gate = _diagnosis_gate(diagnosis)
        if gate:
            out.append(recommendation(kb, treatment_id, Status.DEFERRED, [gate]))
        elif surgery_out and toxin_out:
            out.append(
                recommendation(
                    kb,
                    treatment_id,
                    Status.OPTION,
                    [
                        "Surgery is not possible or declined, and toxin is failing or declined.",
                        "Palliative: it trades the spasm for facial weakness for a time.",
                    ],
                )
            )
        else:
            out.append(
                recommendation(
                    kb,
                    treatment_id,
                    Status.NOT_RECOMMENDED,
                    ["Reserved for patients who cannot have surgery and for whom toxin is failing or declined."],
                )
            )
    return out


def _medicines(assessment: Assessment, diagnosis: Diagnosis, kb: KnowledgeBase) -> list[Recommendation]:
    grade = assessment.severity.smc_grade
    mild = grade is not None and grade <= kb.policy("mild_smc_grade")
    declines = assessment.preferences.avoid_injections and assessment.preferences.avoid_surgery
    out: list[Recommendation] = []
    for treatment_id in sorted(t for t in kb.treatments if t.startswith("medication:")):
        gate = _diagnosis_gate(diagnosis)
        if gate:
            out.append(recommendation(kb, treatment_id, Status.DEFERRED, [gate]))
            continue
        if mild or declines:
            why = "Mild spasm (SMC grade I)" if mild else "The patient declines injections and surgery"
            rationale = [f"{why}: an oral trial is reasonable; the response rate is low and the evidence anecdotal."]
            out.append(recommendation(kb, treatment_id, Status.OPTION, rationale))
        else:
            rationale = [
                "Low response rate and almost only anecdotal evidence; botulinum toxin and MVD are the "
                "evidence-based options for this patient."
            ]
            out.append(recommendation(kb, treatment_id, Status.NOT_RECOMMENDED, rationale))
    return out


def conventional_options(
    assessment: Assessment,
    facts: Facts,
    diagnosis: Diagnosis,
    kb: KnowledgeBase,
    *,
    today: dt.date,
) -> tuple[list[Recommendation], dict[str, Any]]:
    """Every conventional option with its status, and the toxin programme behind the toxin recommendation."""
    options: list[Recommendation] = []
    redo = _redo_mvd(assessment, diagnosis, kb, today)
    if assessment.history.prior_mvd is None:
        options.append(_mvd(assessment, facts, diagnosis, kb))
    elif redo is not None:
        options.append(redo)
    toxin, toxin_plan = _toxin(assessment, diagnosis, kb, today)
    options.append(toxin)
    options += _procedures(assessment, diagnosis, kb)
    options += _medicines(assessment, diagnosis, kb)
    return options, toxin_plan
