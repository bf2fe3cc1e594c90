"""Severity and quality-of-life scores, read against the scale definitions in the knowledge base."""

from __future__ import annotations

from hemicare.engine.assessment import Assessment, Hfs30ByDomain
from hemicare.engine.loader import KnowledgeBase
from hemicare.engine.plan import DomainScore, KeyedMemo, ScoreOut, evidence_out, memoised_with
from hemicare.engine.schema import Scale

_GRADED: KeyedMemo = {}


def _graded(scale: Scale, value: int) -> ScoreOut:
    """A graded scale's reading; it depends only on the scale and the grade, so each is built once."""
    result: ScoreOut = memoised_with(_GRADED, scale, value, _build_graded)
    return result


def _build_graded(scale: Scale, value: int) -> ScoreOut:
    level = next(level for level in scale.levels if level.value == value)
    return ScoreOut(
        scale=scale.id,
        name=scale.name,
        value=value,
        min=scale.min,
        max=scale.max,
        label=level.label,
        interpretation=f"{level.label}: {level.description}",
        evidence=evidence_out(scale.evidence),
    )


def _summed(scale: Scale, total: int, *, domains: dict[str, DomainScore] | None = None) -> ScoreOut:
    share = round(100 * (total - scale.min) / (scale.max - scale.min))
    direction = "higher is worse" if scale.higher_is_worse else "higher is better"
    parts = [f"{total} of {scale.max} ({share}% of the range); {direction}"]
    if scale.mcid is not None:
        mcid = f"a change of {abs(scale.mcid):g} points or more is the minimal clinically important change"
        if scale.mcid_evidence is not None and scale.mcid_evidence.note:
            mcid += f" ({scale.mcid_evidence.note})"
        parts.append(mcid)
    return ScoreOut(
        scale=scale.id,
        name=scale.name,
        value=total,
        min=scale.min,
        max=scale.max,
        interpretation="; ".join(parts),
        domains=domains or {},
        evidence=evidence_out(scale.evidence),
    )


def score(assessment: Assessment, kb: KnowledgeBase) -> dict[str, ScoreOut]:
    """Every score the assessment allows; a scale that was not recorded is simply absent."""
    scales = kb.scales
    severity = assessment.severity
    out: dict[str, ScoreOut] = {}
    for scale_id in ("smc_grade", "jankovic_severity", "jankovic_frequency", "cohen_albert"):
        value = getattr(severity, scale_id)
        if value is not None:
            out[scale_id] = _graded(scales[scale_id], value)
    if severity.jankovic_severity is not None and severity.jankovic_frequency is not None:
        total = severity.jankovic_severity + severity.jankovic_frequency
        out["jankovic_total"] = _summed(scales["jankovic_total"], total)
    if assessment.hfs7 is not None:
        out["hfs7"] = _summed(scales["hfs7"], sum(assessment.hfs7))
    answers = assessment.hfs30
    if isinstance(answers, Hfs30ByDomain):
        item_max = scales["hfs30"].item_max or 0
        grouped: dict[str, list[int]] = answers.model_dump()
        domains = {name: DomainScore(value=sum(items), max=item_max * len(items)) for name, items in grouped.items()}
        out["hfs30"] = _summed(scales["hfs30"], sum(d.value for d in domains.values()), domains=domains)
    elif answers is not None:
        result = _summed(scales["hfs30"], sum(answers))
        out["hfs30"] = result.model_copy(
            update={"interpretation": result.interpretation + "; subscale scores need answers grouped by subscale"}
        )
    return out
