"""TCM pattern differentiation and the three-component integrative plan (acupuncture, herbs, diet and lifestyle).

The pattern score is transparent: each pattern's weighted indicators that are present count for it, those that
contradict it count against it, and the result is a share of everything that could speak for it. When the evidence
is thin the answer is "no pattern fits well", never a forced guess.
"""

from __future__ import annotations

from typing import Any

from hemicare.engine.assessment import Assessment
from hemicare.engine.conventional import recommendation
from hemicare.engine.loader import KnowledgeBase
from hemicare.engine.plan import (
    Alert,
    Diagnosis,
    DiagnosisStatus,
    Memo,
    Recommendation,
    Severity,
    Status,
    TcmSection,
    evidence_dict,
    memoised,
)
from hemicare.engine.rules import Facts
from hemicare.engine.schema import AdviceItem, Formula, Indicator, Pattern


def _observed(assessment: Assessment, facts: Facts) -> set[tuple[str, str]]:
    """Everything an indicator can match, as (kind, value) pairs, computed once per assessment."""
    tcm = assessment.tcm
    observed = {("finding", f.value) for f in tcm.findings} | {("pulse", p.value) for p in tcm.pulse}
    if tcm.tongue.body is not None:
        observed.add(("tongue_body", tcm.tongue.body.value))
    if tcm.tongue.coating is not None:
        observed.add(("tongue_coating", tcm.tongue.coating.value))
    observed |= {("comorbidity", term) for term in facts["comorbidity_ids"]}
    return observed


def _label(indicator: Indicator) -> str:
    kind = {"finding": "", "tongue_body": "tongue ", "tongue_coating": "coating ", "pulse": "pulse "}.get(
        indicator.kind, "comorbidity "
    )
    return f"{kind}{indicator.value.replace('_', ' ')}"


_Hit = tuple[int, bool, int, float, str]  # the pattern's place, whether it supports it, its place there, weight, label
_Index = tuple[list[Pattern], list[float], dict[tuple[str, str], list[_Hit]]]
_INDEX: Memo = {}


def _index(kb: KnowledgeBase) -> _Index:
    """Every pattern's indicators by what they match, with each pattern's total supporting weight (once per knowledge
    base): a patient's few findings then look up the patterns they bear on, rather than every pattern testing each
    of its indicators."""

    def make(source: KnowledgeBase) -> _Index:
        patterns = list(source.patterns.values())
        totals: list[float] = []
        by_key: dict[tuple[str, str], list[_Hit]] = {}
        for place, pattern in enumerate(patterns):
            totals.append(sum(i.weight for i in pattern.supports))
            for supporting, indicators in ((True, pattern.supports), (False, pattern.contradicts)):
                for order, i in enumerate(indicators):
                    by_key.setdefault((i.kind, i.value), []).append((place, supporting, order, i.weight, _label(i)))
        return patterns, totals, by_key

    result: _Index = memoised(_INDEX, kb, make)
    return result


def _scores(kb: KnowledgeBase, observed: set[tuple[str, str]]) -> list[tuple[float, Pattern, list[str], list[str]]]:
    """Each pattern with at least one supporting finding: its score (supporting weight present, less contradicting
    weight present, over all its supporting weight) and the labels for and against it, in the pattern's own order."""
    patterns, totals, by_key = _index(kb)
    found: dict[int, tuple[list[tuple[int, float, str]], list[tuple[int, float, str]]]] = {}
    for key in observed:
        for place, supporting, order, weight, label in by_key.get(key, ()):
            pair = found.get(place)
            if pair is None:
                pair = found[place] = ([], [])
            pair[0 if supporting else 1].append((order, weight, label))
    scored = []
    for place in sorted(found):  # knowledge-base order, as the ranking's ties were always broken
        for_it, against = found[place]
        if not for_it:
            continue
        for_it.sort()
        against.sort()
        score = (sum(hit[1] for hit in for_it) - sum(hit[1] for hit in against)) / totals[place]
        scored.append((round(score, 3), patterns[place], [hit[2] for hit in for_it], [hit[2] for hit in against]))
    return scored


def differentiate(assessment: Assessment, facts: Facts, kb: KnowledgeBase) -> TcmSection:
    """Rank the patterns for this patient and name a primary (and a secondary) only where they fit."""
    scoring = kb.pattern_scoring
    assert scoring is not None, "the loader guarantees the scoring settings"
    scored = _scores(kb, _observed(assessment, facts))
    scored.sort(key=lambda item: (-item[0], item[1].number))

    def fits(item: tuple[float, Pattern, list[str], list[str]]) -> bool:
        return item[0] >= scoring.min_fit and len(item[2]) >= scoring.min_supporting

    primary = scored[0] if scored and fits(scored[0]) else None
    secondary = None
    runner_up = scored[1] if len(scored) > 1 else None
    if primary is not None and runner_up is not None and fits(runner_up):
        secondary = runner_up if runner_up[0] >= scoring.secondary_ratio * primary[0] else None
    patterns = []
    for item in scored:
        score, pattern, supporting, contradicting = item
        patterns.append(
            {
                "id": pattern.id,
                "number": pattern.number,
                "name": pattern.name,
                "chinese": pattern.chinese,
                "tm1_codes": pattern.tm1_codes,
                "principle": pattern.principle,
                "score": score,
                "role": "primary" if item is primary else "secondary" if item is secondary else "considered",
                "supporting": supporting,
                "contradicting": contradicting,
            }
        )
    if primary is None:
        summary = (
            "No pattern fits well: the recorded tongue, pulse and findings are too few or point different ways. "
            "A practitioner's differentiation is needed before pattern-specific treatment."
        )
    else:
        summary = f"Best fit: {primary[1].name} ({primary[1].chinese})"
        if secondary is not None:
            summary += f", with {secondary[1].name} ({secondary[1].chinese}) as a secondary pattern"
        summary += ". A ranking to confirm, not a validated diagnosis."
    # One validation call for the whole ranking, rather than one per pattern; the plan holds the result as it is.
    return TcmSection.model_validate(
        {
            "patterns": patterns,
            "primary": primary[1].id if primary else None,
            "secondary": secondary[1].id if secondary else None,
            "summary": summary,
        }
    )


def _point(kb: KnowledgeBase, code: str, role: str) -> dict[str, Any]:
    point = kb.acupoints[code]
    return {"code": code, "pinyin": point.pinyin, "chinese": point.chinese, "region": point.region, "role": role}


def _points(assessment: Assessment, kb: KnowledgeBase, pattern: Pattern | None) -> list[dict[str, Any]]:
    protocol = kb.acupuncture
    assert protocol is not None, "the loader guarantees the acupuncture protocol"
    chosen: dict[str, dict[str, Any]] = {}
    regions = {r.value for r in assessment.regions}
    for region in protocol.regions:
        if region.region in regions:
            for code in region.points:
                chosen.setdefault(code, _point(kb, code, f"local ({region.region})"))
    for code in protocol.always:
        chosen.setdefault(code, _point(kb, code, "distal (Four Gates, calms spasm)"))
    if pattern is not None:
        for code in pattern.points:
            chosen.setdefault(code, _point(kb, code, f"pattern ({pattern.number} {pattern.name})"))
    return list(chosen.values())


def _gate(diagnosis: Diagnosis) -> str | None:
    if diagnosis.status is DiagnosisStatus.PRIMARY_HFS_LIKELY:
        return None
    return (
        "Deferred: TCM is offered only as an adjunct after a neurological diagnosis; the diagnosis is "
        f"'{diagnosis.status.value.replace('_', ' ')}'."
    )


def _wish(assessment: Assessment) -> str:
    if assessment.preferences.integrative_care:
        return "The patient wants integrative care: offered as an adjunct beside the conventional options."
    return "Offered only if the patient wishes; an adjunct beside, not instead of, the conventional options."


def _acupuncture(
    assessment: Assessment, diagnosis: Diagnosis, kb: KnowledgeBase, pattern: Pattern | None
) -> list[Recommendation]:
    protocol = kb.acupuncture
    assert protocol is not None
    points = _points(assessment, kb, pattern)
    details: dict[str, Any] = {
        "points": points,
        "technique": protocol.technique + ([pattern.point_technique] if pattern and pattern.point_technique else []),
        "course": protocol.course,
        "review": protocol.review,
        "points_evidence": evidence_dict(protocol.evidence),
    }
    cites = protocol.evidence.references
    limb_points = [p for p in points if p["region"] in ("upper_limb", "lower_limb")]
    ea_details = {"stimulation": protocol.electroacupuncture, "points": limb_points}
    gate = _gate(diagnosis)
    if gate:
        return [
            recommendation(kb, "acupuncture", Status.DEFERRED, [gate], details=details, cites=cites),
            recommendation(kb, "electroacupuncture", Status.DEFERRED, [gate], details=ea_details),
        ]
    if assessment.preferences.avoid_needles:
        why = [
            "The patient prefers to avoid needles: no needling.",
            "Non-needle options: the lifestyle advice below; acupressure is commonly offered instead (unverified).",
        ]
        declined = {"declined_by_patient": True}
        return [
            recommendation(
                kb, "acupuncture", Status.NOT_RECOMMENDED, why, details={**details, **declined}, cites=cites
            ),
            recommendation(kb, "electroacupuncture", Status.NOT_RECOMMENDED, why, details={**ea_details, **declined}),
        ]
    rationale = [_wish(assessment), "Low-certainty evidence: reviews could not conclude that acupuncture helps HFS."]
    if pattern is None:
        rationale.append("No pattern fits well: local points and the Four Gates only, until a practitioner adds more.")
    else:
        rationale.append(f"Points for the involved regions and for {pattern.number} {pattern.name}.")
    return [
        recommendation(kb, "acupuncture", Status.OPTION, rationale, details=details, cites=cites),
        recommendation(
            kb,
            "electroacupuncture",
            Status.OPTION,
            [
                _wish(assessment),
                "Distal (hand) stimulation, not facial: in the one sham-controlled trial only hand EA helped.",
            ],
            details=ea_details,
        ),
    ]


_FORMULA_DETAILS: Memo = {}


def _formula_details(kb: KnowledgeBase, formula_id: str) -> dict[str, Any]:
    """A formula's details for the plan: a fresh mapping over shared, never-mutated ingredient data."""
    base: dict[str, Any] = memoised(
        _FORMULA_DETAILS, kb.formulas[formula_id], lambda formula: _build_formula_details(kb, formula)
    )
    return dict(base)


def _build_formula_details(kb: KnowledgeBase, formula: Formula) -> dict[str, Any]:
    ingredients = []
    for ingredient in formula.ingredients:
        herb = kb.herbs[ingredient.herb]
        ingredients.append(
            {
                "latin": herb.latin,
                "pinyin": herb.pinyin,
                "chinese": herb.chinese,
                "dose": ingredient.dose(),
                "dose_min_g": ingredient.dose_min_g,
                "dose_max_g": ingredient.dose_max_g,
                "note": ingredient.note,
                "toxic": herb.toxic,
            }
        )
    return {
        "formula": formula.id,
        "pinyin": formula.pinyin,
        "chinese": formula.chinese,
        "english": formula.english,
        "source": formula.source,
        "ingredients": ingredients,
        "other_ingredients": formula.other_ingredients,
        "preparation": formula.preparation,
        "cautions": formula.cautions,
        "formula_evidence": evidence_dict(formula.evidence),
    }


def _herbs(
    assessment: Assessment, diagnosis: Diagnosis, kb: KnowledgeBase, differentiation: TcmSection
) -> tuple[Recommendation, list[Alert]]:
    gate = _gate(diagnosis)
    if gate:
        return recommendation(kb, "herbal_formula", Status.DEFERRED, [gate]), []
    if differentiation.primary is None:
        reason = "Deferred: no pattern fits well, and a formula needs a practitioner's pattern differentiation."
        return recommendation(kb, "herbal_formula", Status.DEFERRED, [reason]), []
    pattern = kb.patterns[differentiation.primary]
    secondary = kb.patterns[differentiation.secondary] if differentiation.secondary else None
    formula_id = pattern.formula
    rationale = [_wish(assessment), f"{pattern.number} {pattern.name}: principle '{pattern.principle}'."]
    if secondary is not None and secondary.id in pattern.formula_if_secondary:
        formula_id = pattern.formula_if_secondary[secondary.id]
        rationale.append(f"With {secondary.name} as a secondary pattern the source names this formula instead.")
    if formula_id is None:
        return recommendation(kb, "herbal_formula", Status.DEFERRED, [*rationale, "No formula composed."]), []
    details = _formula_details(kb, formula_id)
    details["other_formulas"] = [choice.model_dump() for choice in pattern.other_formulas]
    alerts: list[Alert] = []
    formula = kb.formulas[formula_id]
    if secondary is not None:
        rationale.append(
            f"Secondary pattern {secondary.number} {secondary.name}: the practitioner may modify the formula toward "
            f"'{secondary.principle}'; HemiCare does not merge formulas."
        )
        if secondary.id in formula.not_for_patterns:
            alerts.append(
                Alert(
                    id=f"formula_conflict:{formula.id}:{secondary.id}",
                    severity=Severity.WARNING,
                    message=f"{formula.pinyin} ({formula.chinese}) conflicts with the secondary pattern "
                    f"{secondary.name}: {'; '.join(formula.cautions)}.",
                    affects=["herbal_formula", *(f"herb:{i.herb}" for i in formula.ingredients)],
                    references=list(formula.evidence.references),
                )
            )
    rationale.append("Very-low-certainty evidence: no controlled trials of herbs for HFS were found.")
    cites = formula.evidence.references
    return recommendation(kb, "herbal_formula", Status.OPTION, rationale, details=details, cites=cites), alerts


_ADVICE_ITEMS: Memo = {}


def _advice_item(item: AdviceItem) -> dict[str, Any]:
    """One advice item as plan data (built once per item; shared, so never mutated)."""

    def make(source: AdviceItem) -> dict[str, Any]:
        return {
            "id": source.id,
            "text": source.text,
            "origin": source.origin,
            "evidence": evidence_dict(source.evidence),
        }

    result: dict[str, Any] = memoised(_ADVICE_ITEMS, item, make)
    return result


def _advice(kb: KnowledgeBase, pattern_ids: list[str], kind: str) -> list[dict[str, Any]]:
    wanted = set(pattern_ids)
    return [
        _advice_item(item)
        for item in kb.advice.values()
        if item.kind == kind and (not item.patterns or not wanted.isdisjoint(item.patterns))
    ]


def _advice_recommendation(
    kb: KnowledgeBase, kind: str, status: Status, why: str, pattern_ids: list[str]
) -> Recommendation:
    items = _advice(kb, pattern_ids, kind)
    cites = [ref for item in items for ref in item["evidence"]["references"]]
    return recommendation(kb, kind, status, [why], details={"items": items}, cites=cites)


def integrative_options(
    assessment: Assessment, facts: Facts, diagnosis: Diagnosis, kb: KnowledgeBase
) -> tuple[list[Recommendation], list[Alert], TcmSection]:
    """The three-component plan, positioned as adjuncts, and the pattern differentiation behind it."""
    differentiation = differentiate(assessment, facts, kb)
    pattern = kb.patterns[differentiation.primary] if differentiation.primary else None
    pattern_ids = [p for p in (differentiation.primary, differentiation.secondary) if p]
    recommendations = _acupuncture(assessment, diagnosis, kb, pattern)
    herbal, alerts = _herbs(assessment, diagnosis, kb, differentiation)
    recommendations.append(herbal)
    diet = "Tradition-based advice, untested in trials; harmless if it suits the patient."
    recommendations.append(_advice_recommendation(kb, "diet", Status.OPTION, diet, pattern_ids))
    lifestyle = "Most patients report stress and fatigue as triggers; managing them costs little."
    recommendations.append(_advice_recommendation(kb, "lifestyle", Status.RECOMMENDED, lifestyle, pattern_ids))
    return recommendations, alerts, differentiation
