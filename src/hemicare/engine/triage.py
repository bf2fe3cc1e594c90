"""Diagnosis triage: red flags for secondary HFS first, then mimics, then whether primary HFS is likely."""

from __future__ import annotations

from hemicare.engine.loader import KnowledgeBase
from hemicare.engine.plan import (
    Diagnosis,
    DiagnosisStatus,
    DifferentialOut,
    Memo,
    RedFlagOut,
    evidence_out,
    memoised,
)
from hemicare.engine.rules import Facts, holds
from hemicare.engine.schema import Differential, RedFlag

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
    red_flags = [_red_flag(flag) for flag in kb.red_flags.values() if holds(flag.when, facts)]
    fired = [d for d in kb.differentials.values() if holds(d.when, facts)]
    differentials = [_differential(d, kb) for d in fired]
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


_RED_FLAGS: Memo = {}
_DIFFERENTIALS: Memo = {}


def _red_flag(flag: RedFlag) -> RedFlagOut:
    """A red flag as the plan shows it (the same for every patient it fires for, so made once)."""

    def make(source: RedFlag) -> RedFlagOut:
        evidence = evidence_out(source.evidence)
        return RedFlagOut(
            id=source.id, finding=source.finding, action=source.action, kind=source.kind, evidence=evidence
        )

    result: RedFlagOut = memoised(_RED_FLAGS, flag, make)
    return result


def _differential(differential: Differential, kb: KnowledgeBase) -> DifferentialOut:
    """A mimic as the plan shows it (made once per knowledge record)."""

    def make(source: Differential) -> DifferentialOut:
        name = kb.conditions[source.condition].name
        return DifferentialOut(id=source.id, name=name, reason=source.reason, evidence=evidence_out(source.evidence))

    result: DifferentialOut = memoised(_DIFFERENTIALS, differential, make)
    return result
