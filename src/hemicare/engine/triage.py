"""Diagnosis triage: red flags for secondary HFS first, then mimics, then whether primary HFS is likely."""

from __future__ import annotations

from hemicare.engine.loader import KnowledgeBase
from hemicare.engine.plan import Diagnosis, DiagnosisStatus, DifferentialOut, RedFlagOut, evidence_out
from hemicare.engine.rules import Facts, holds

_SUMMARIES = {
    DiagnosisStatus.SECONDARY_SUSPECTED: (
        "Red flags suggest secondary HFS: complete the work-up before any definitive treatment."
    ),
    DiagnosisStatus.ALTERNATIVE_SUSPECTED: (
        "The features fit a mimic of HFS better: confirm the diagnosis before treating as HFS."
    ),
    DiagnosisStatus.INSUFFICIENT_INFORMATION: (
        "Findings needed to rule out secondary HFS were not recorded: examine and record them."
    ),
    DiagnosisStatus.PRIMARY_HFS_LIKELY: "The picture fits primary (neurovascular) HFS.",
}


def triage(facts: Facts, kb: KnowledgeBase) -> Diagnosis:
    """Classify the assessment; secondary signs outrank mimics, which outrank missing information."""
    red_flags = [
        RedFlagOut(
            id=flag.id,
            finding=flag.finding,
            action=flag.action,
            kind=flag.kind,
            evidence=evidence_out(flag.evidence),
        )
        for flag in kb.red_flags.values()
        if holds(flag.when, facts)
    ]
    fired = [d for d in kb.differentials.values() if holds(d.when, facts)]
    differentials = [
        DifferentialOut(
            id=d.id, name=kb.conditions[d.condition].name, reason=d.reason, evidence=evidence_out(d.evidence)
        )
        for d in fired
    ]
    essential = kb.triage.essential_findings if kb.triage else []
    unknown = [name for name in essential if facts.get(name) is None]
    if any(flag.kind == "secondary_sign" for flag in red_flags):
        status = DiagnosisStatus.SECONDARY_SUSPECTED
    elif any(d.suggests_alternative for d in fired):
        status = DiagnosisStatus.ALTERNATIVE_SUSPECTED
    elif unknown:
        status = DiagnosisStatus.INSUFFICIENT_INFORMATION
    else:
        status = DiagnosisStatus.PRIMARY_HFS_LIKELY
    return Diagnosis(
        status=status,
        summary=_SUMMARIES[status],
        red_flags=red_flags,
        differentials=differentials,
        unknown_findings=unknown,
    )
