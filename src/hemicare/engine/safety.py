"""The cross-modality safety engine: every proposed item against the patient and against every other item.

Rules are data (``rules/safety``). A rule acts on what it targets: recommendations change status, acupoints and herbs
are removed from the plan's details, and every firing leaves an alert naming what it affects. The engine fails
closed: a medicine, herb or comorbidity that no rule covers is reported as unchecked, never as safe.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, NamedTuple

from hemicare.engine.loader import KnowledgeBase
from hemicare.engine.plan import Alert, Memo, Recommendation, Severity, Status, memoised
from hemicare.engine.rules import Facts, Test, compile_condition
from hemicare.engine.schema import SafetyRule

SHOWN = (Status.RECOMMENDED, Status.OPTION)
# Raised when the patient already takes herbs of the plan's formula (listed, or from a prescription still running).
TAKEN_ALERT = "herbs_already_taken"
HERBAL_FORMULA = "herbal_formula"  # the plan's recommendation of a herbal formula
MEDICATION = "medication:"  # a medicine's recommendation: medication:carbamazepine
_RANK = {
    Status.RECOMMENDED: 0,
    Status.OPTION: 1,
    Status.NOT_RECOMMENDED: 2,
    Status.DEFERRED: 3,
    Status.CONTRAINDICATED: 4,
}
LICORICE = ("Radix Glycyrrhizae", "Radix Glycyrrhizae Praeparata")  # Gan Cao, Zhi Gan Cao
_ACTION_ORDER = {"contraindicate": 0, "remove": 1, "defer": 2, "caution": 3}
_ORDERED_RULES: Memo = {}


def _in_action_order(kb: KnowledgeBase) -> list[tuple[SafetyRule, Test | None]]:
    """The safety rules with their compiled conditions, status changes and removals first (once per knowledge
    base, not per plan)."""

    def make(source: KnowledgeBase) -> list[tuple[SafetyRule, Test | None]]:
        ordered = sorted(source.safety.values(), key=lambda r: _ACTION_ORDER[r.action])
        return [(rule, None if rule.when is None else compile_condition(rule.when)) for rule in ordered]

    rules: list[tuple[SafetyRule, Test | None]] = memoised(_ORDERED_RULES, kb, make)
    return rules


def _by_id(recommendations: list[Recommendation]) -> dict[str, Recommendation]:
    return {rec.id: rec for rec in recommendations}


def _licorice_g(formula: Recommendation) -> float:
    return sum(
        (i.get("dose_max_g") or i.get("dose_min_g") or 0.0)
        for i in formula.details.get("ingredients", [])
        if i["latin"] in LICORICE
    )


def _hits(rule: SafetyRule, recs: dict[str, Recommendation], facts: Facts, kb: KnowledgeBase) -> dict[str, Any]:
    """What a rule touches in this plan: recommendations, points, herbs, and the patient's own drugs and herbs."""
    statuses = (*SHOWN, Status.DEFERRED) if rule.action == "contraindicate" else SHOWN
    hit_recs = [r for r in rule.targets.recommendations if r in recs and recs[r].status in statuses]
    patient_items: list[str] = []
    for drug in sorted(kb.rule_drugs(rule.id)):
        rec_id = f"{MEDICATION}{drug}"
        if rec_id in recs and recs[rec_id].status in statuses:
            hit_recs.append(rec_id)
        if drug in facts["drugs"]:
            patient_items.append(f"drug:{drug}")
    # A removal acts on the points and herbs every item lists, whatever its status: a clinician may change any status
    # at sign-off (the work-up done, the patient no longer declining needles), and what the item lists is then given.
    # Other rules act on what is offered.
    listed = tuple(Status) if rule.action == "remove" else SHOWN
    points: list[str] = []
    if rule.targets.acupoints:
        for rec_id in ("acupuncture", "electroacupuncture"):
            rec = recs.get(rec_id)
            if rec is not None and rec.status in listed:
                points += [p["code"] for p in rec.details.get("points", []) if p["code"] in rule.targets.acupoints]
    herbs: list[str] = []
    selected = kb.rule_herbs(rule.id)
    formula = recs.get(HERBAL_FORMULA)
    if selected and formula is not None and formula.status in listed:
        herbs = [i["latin"] for i in formula.details.get("ingredients", []) if i["latin"] in selected]
    patient_items += [f"herb:{latin}" for latin in facts["herb_ids"] if latin in selected]
    licorice_min = rule.targets.licorice_min_g
    formula_shown = formula is not None and formula.status in SHOWN
    if licorice_min is not None and formula is not None and formula_shown and _licorice_g(formula) >= licorice_min:
        hit_recs.append(HERBAL_FORMULA)
    if rule.targets.patient_blocked_herbs:
        patient_items += [f"herb:{name}" for name in facts["blocked_herbs"]]
    if rule.targets.patient_ambiguous_herbs:
        patient_items += [f"herb:{name}" for name in facts["ambiguous_herbs"]]
    return {"recs": hit_recs, "points": sorted(set(points)), "herbs": herbs, "patient": patient_items}


def _set_status(rec: Recommendation, status: Status, reason: str) -> None:
    if _RANK[status] > _RANK[rec.status]:
        rec.status = status
    rec.rationale.append(reason)


def _remove(rule: SafetyRule, hits: dict[str, Any], recs: dict[str, Recommendation]) -> None:
    reason = f"{rule.title}: {rule.message}"
    for rec_id in ("acupuncture", "electroacupuncture"):
        rec = recs.get(rec_id)
        if rec is None or not hits["points"]:
            continue
        kept = [p for p in rec.details.get("points", []) if p["code"] not in hits["points"]]
        removed = [p for p in rec.details.get("points", []) if p["code"] in hits["points"]]
        if removed:
            rec.details = {**rec.details, "points": kept}
            rec.details["removed_points"] = rec.details.get("removed_points", []) + [
                {"code": p["code"], "reason": rule.title} for p in removed
            ]
            rec.rationale.append(f"Removed {', '.join(p['code'] for p in removed)}. {reason}")
    formula = recs.get(HERBAL_FORMULA)
    if formula is not None and hits["herbs"]:
        ingredients = formula.details.get("ingredients", [])
        kept = [i for i in ingredients if i["latin"] not in hits["herbs"]]
        removed_before = len(formula.details.get("removed_herbs", []))
        formula.details = {**formula.details, "ingredients": kept}
        formula.details["removed_herbs"] = formula.details.get("removed_herbs", []) + [
            {"latin": latin, "reason": rule.title} for latin in hits["herbs"]
        ]
        formula.rationale.append(f"Removed {', '.join(hits['herbs'])}. {reason}")
        original = len(kept) + removed_before + len(hits["herbs"])
        if 2 * (original - len(kept)) >= original:
            _set_status(
                formula,
                Status.CONTRAINDICATED,
                "The formula lost half or more of its herbs to safety rules: the practitioner must choose another.",
            )


def removed_for(facts: Facts, kb: KnowledgeBase, *, items: Collection[str]) -> dict[str, list[SafetyRule]]:
    """Which of these acupoints (WHO codes) and herbs (Latin names) a removal rule that holds for the patient takes
    out of any plan of theirs (LI4 in pregnancy, Dang Gui with warfarin), each with every such rule: what recording a
    session given outside the plan is checked against."""
    return _named_by(facts, kb, items=items, actions={"remove"})


def cautioned_for(facts: Facts, kb: KnowledgeBase, *, herbs: Collection[str]) -> dict[str, list[SafetyRule]]:
    """Which of these herbs (Latin names) a caution rule names for this patient, by something of theirs (Chuan Xiong
    in pregnancy, Jiang Can with a sedative, licorice with warfarin), each with every such rule, and under
    ``HERBAL_FORMULA`` those that caution any herbal formula for them (herbs with carbamazepine): what a herbal
    prescription is checked against, as the plan's own formula is. Cautions for everyone (a toxic herb's doses, Bai
    Fu Zi's species) are left to the plan and the prescription form, which show them beside the herb."""
    return cautions_on(facts, kb, items=[*herbs, HERBAL_FORMULA])


def cautions_on(facts: Facts, kb: KnowledgeBase, *, items: Collection[str]) -> dict[str, list[SafetyRule]]:
    """Which of these items (plan items, herbs) a caution rule names for this patient by something of theirs (the
    toxin with gentamicin, oxcarbazepine over 65), each with every such rule. Cautions for everyone are left to the
    plan."""
    return _named_by(facts, kb, items=items, actions={"caution"}, for_everyone=False)


def held_back_for(facts: Facts, kb: KnowledgeBase, *, items: Collection[str]) -> dict[str, list[SafetyRule]]:
    """Which of these plan items (``botulinum_toxin``, ``electroacupuncture``, ``medication:carbamazepine``) a rule
    holding for the patient contraindicates or defers, each with every such rule, contraindications first (a
    radiofrequency ablation for a patient on apixaban with a pacemaker: both, so that the one a plan did not say is
    not hidden behind the one it did). The plan acts so only on items it offers: one it sets aside for another reason
    (carbamazepine not recommended while MVD and toxin are) carries no alert until a clinician lifts it at sign-off;
    recording a session, and the sign-off table, ask these rules whatever the plan says."""
    return _named_by(facts, kb, items=items, actions={"contraindicate", "defer"})


def _named_by(
    facts: Facts, kb: KnowledgeBase, *, items: Collection[str], actions: Collection[str], for_everyone: bool = True
) -> dict[str, list[SafetyRule]]:
    """Each of ``items`` that a rule of these actions holding for the patient names, with every such rule in action
    order (contraindications before deferrals) and then the knowledge base's; a rule for everyone (no condition) only
    where ``for_everyone``."""
    found: dict[str, list[SafetyRule]] = {}
    for rule, condition in _in_action_order(kb):
        if rule.action not in actions or (condition is None and not for_everyone):
            continue
        if condition is not None and not condition(facts):
            continue
        targets = set(rule.targets.acupoints) | kb.rule_herbs(rule.id) | set(rule.targets.recommendations)
        targets |= {f"{MEDICATION}{drug}" for drug in kb.rule_drugs(rule.id)}
        for item in items:
            if item in targets:
                found.setdefault(item, []).append(rule)
    return found


def needling_cautions(facts: Facts, kb: KnowledgeBase) -> list[SafetyRule]:
    """Every caution rule on acupuncture or electroacupuncture that holds for the patient by something of theirs
    (warfarin, a DOAC, a bleeding disorder, an infected face): what the plan says of its needling, and what the
    acupuncture form shows before a session is recorded. A caution asks for care, not a reason."""
    needling = {"acupuncture", "electroacupuncture"}
    return [
        rule
        for rule, condition in _in_action_order(kb)
        if rule.action == "caution"
        and condition is not None
        and needling & set(rule.targets.recommendations)
        and condition(facts)
    ]


def licorice_cautions(facts: Facts, kb: KnowledgeBase, *, grams: float) -> list[SafetyRule]:
    """The caution rules holding for the patient that ``grams`` of licorice a day reach (a licorice-heavy formula
    with older age, a diuretic or low potassium): what a herbal prescription is checked against, as the plan's own
    formula is."""
    return [
        rule
        for rule, condition in _in_action_order(kb)
        if rule.targets.licorice_min_g is not None
        and grams >= rule.targets.licorice_min_g
        and (condition is None or condition(facts))
    ]


def _affects(hits: dict[str, Any]) -> list[str]:
    affects: list[str] = list(dict.fromkeys(hits["recs"]))
    affects += [f"acupoint:{code}" for code in hits["points"]]
    affects += [f"herb:{latin}" for latin in hits["herbs"]]
    affects += hits["patient"]
    # A herb of the formula that the patient already takes is named once.
    return list(dict.fromkeys(affects))


def apply_safety(
    recommendations: list[Recommendation], facts: Facts, kb: KnowledgeBase, *, statuses_kept: bool = False
) -> list[Alert]:
    """Apply every safety rule to the plan in place and return the alerts they raise; with ``statuses_kept``, a
    contraindication or deferral raises its alert but leaves the status as it is (a clinician's, at sign-off), so that
    the rules after it see the item as offered."""
    recs = _by_id(recommendations)
    alerts: list[Alert] = []
    # Status changes and removals first, so that a caution is never raised about an item another rule removed.
    for rule, condition in _in_action_order(kb):
        if condition is not None and not condition(facts):
            continue
        hits = _hits(rule, recs, facts, kb)
        if not (hits["recs"] or hits["points"] or hits["herbs"] or hits["patient"]):
            continue
        reason = f"{rule.title}: {rule.message}"
        if rule.action in ("contraindicate", "defer"):
            status, said = (
                (Status.CONTRAINDICATED, "Contraindicated")
                if rule.action == "contraindicate"
                else (Status.DEFERRED, "Deferred")
            )
            for rec_id in [] if statuses_kept else hits["recs"]:
                _set_status(recs[rec_id], status, f"{said}. {reason}")
        elif rule.action == "remove":
            _remove(rule, hits, recs)
        else:
            for rec_id in hits["recs"]:
                recs[rec_id].rationale.append(f"Caution. {reason}")
        basis = " (tradition-based)" if rule.basis == "tradition" else ""
        alerts.append(
            Alert(
                id=rule.id,
                severity=Severity(rule.severity),
                message=f"{rule.title}{basis}: {rule.message}",
                affects=_affects(hits),
                references=list(rule.evidence.references),
            )
        )
    return alerts


class Lifted(NamedTuple):
    alerts: list[Alert]  # on the lifted items, their points and herbs only
    details: dict[str, dict[str, Any]]  # each lifted item's, less what a removal takes out
    titles: dict[str, list[str]]  # each lifted item's alerts, by title


def lifted_alerts(
    recommendations: list[Recommendation], lifted: Collection[str], facts: Facts, kb: KnowledgeBase
) -> Lifted:
    """What the rules holding for the patient say of items a clinician lifted at sign-off (moved to recommended or
    option from a status that held them back): the alerts the plan would have raised had it offered them, and each
    item's details with what a removal takes out. The statuses stay as the clinician set them: a contraindication
    lifted is lifted knowingly, and said."""
    copies = [rec.model_copy(deep=True) for rec in recommendations if rec.id in lifted]
    alerts = apply_safety(copies, facts, kb, statuses_kept=True)
    named: dict[str, set[str]] = {}  # what of each lifted item an alert may name
    for rec in copies:
        details = rec.details
        named[rec.id] = {rec.id}
        named[rec.id] |= {
            f"acupoint:{p['code']}" for p in details.get("points", []) + details.get("removed_points", [])
        }
        named[rec.id] |= {
            f"herb:{i['latin']}" for i in details.get("ingredients", []) + details.get("removed_herbs", [])
        }
    everything = set().union(*named.values())
    said = []
    titles: dict[str, list[str]] = {rec.id: [] for rec in copies}
    for alert in alerts:
        affects = [item for item in alert.affects if item in everything]
        if not affects:
            continue
        said.append(alert.model_copy(update={"affects": affects}))
        for item, names in named.items():
            if names & set(affects):
                titles[item].append(kb.safety[alert.id].title)
    return Lifted(said, {rec.id: rec.details for rec in copies}, titles)


def _unchecked(alert_id: str, severity: Severity, message: str, affects: list[str]) -> Alert:
    return Alert(id=alert_id, severity=severity, message=message, affects=affects)


def unchecked_alerts(
    recommendations: list[Recommendation], facts: Facts, kb: KnowledgeBase, *, pregnant: bool
) -> list[Alert]:
    """Fail closed: name every medicine, herb, comorbidity and pregnancy question no rule covers.

    A herb the patient takes that the plan's formula also gives is a herb of the plan, checked as the formula's herbs
    are; the plan says instead that it is taken already (``herbs_already_taken``).
    """
    alerts: list[Alert] = []
    formula = _by_id(recommendations).get(HERBAL_FORMULA)
    planned = {}
    if formula is not None and formula.status in SHOWN:
        planned = {i["latin"]: i for i in formula.details.get("ingredients", [])}
    kinds: list[tuple[str, str, str, Any, frozenset[str]]] = [
        ("drug", "unknown_medications", "drugs", lambda d: kb.drugs[d].label, kb.covered_drugs()),
        ("herb", "unknown_herbs", "herb_ids", lambda h: f"{h} ({kb.herbs[h].pinyin})", kb.covered_herbs()),
    ]
    for kind, unknown_fact, known_fact, label, covered in kinds:
        for written in facts[unknown_fact]:
            alerts.append(
                _unchecked(
                    f"unchecked:{kind}:{written}",
                    Severity.WARNING,
                    f"{kind.capitalize()} '{written}' is not in the knowledge base: its interactions, toxicity and "
                    "contraindications have NOT been checked.",
                    [f"{kind}:{written}"],
                )
            )
        for key in facts[known_fact]:
            if key not in covered and not (kind == "herb" and key in planned):
                alerts.append(
                    _unchecked(
                        f"unchecked:{kind}:{key}",
                        Severity.WARNING,
                        f"{label(key)} is recognised, but no safety rule covers it: it has NOT been checked against "
                        "this plan.",
                        [f"{kind}:{key}"],
                    )
                )
    for written in facts["unknown_comorbidities"]:
        alerts.append(
            _unchecked(
                f"unchecked:comorbidity:{written}",
                Severity.WARNING,
                f"Comorbidity '{written}' is not in the knowledge-base vocabulary: no rule has checked it.",
                [],
            )
        )
    for term in facts["comorbidity_ids"]:
        if term not in kb.covered_comorbidities():
            alerts.append(
                _unchecked(
                    f"unchecked:comorbidity:{term}",
                    Severity.INFO,
                    f"No safety rule considers {kb.comorbidities[term].label.lower()}: check it against the plan "
                    "clinically.",
                    [],
                )
            )
    taken = [latin for latin in facts["herb_ids"] if latin in planned]
    if taken:
        alerts.append(
            Alert(
                id=TAKEN_ALERT,
                severity=Severity.INFO,
                message=(
                    f"The patient already takes every herb the formula gives ({len(taken)})"
                    if len(taken) == len(planned) and len(taken) > 1
                    else "The patient already takes "
                    + ", ".join(f"{latin} ({planned[latin]['pinyin']})" for latin in taken)
                    + ", which the formula also gives"
                )
                + ": the formula's doses are a whole day's, and what is taken already counts toward them.",
                affects=[f"herb:{latin}" for latin in taken],
            )
        )
    if planned and (facts["drugs"] or facts["unknown_medications"]):
        uncovered = [latin for latin in planned if latin not in kb.covered_herbs()]
        if uncovered:
            alerts.append(
                _unchecked(
                    "unchecked:herb_drug_interactions",
                    Severity.INFO,
                    "No interaction rule covers these herbs with the patient's medicines: "
                    + ", ".join(uncovered)
                    + ".",
                    [f"herb:{latin}" for latin in uncovered],
                )
            )
    if pregnant:
        alerts += _pregnancy_unchecked(recommendations, kb)
    return alerts


def _pregnancy_unchecked(recommendations: list[Recommendation], kb: KnowledgeBase) -> list[Alert]:
    """Items that no pregnancy rule covers; medicines among them are deferred rather than left as options."""
    covered: set[str] = set()
    for rule in kb.safety.values():
        if rule.when is not None and "pregnant" in rule.when.facts():
            covered |= set(rule.targets.recommendations)
            if rule.targets.acupoints:
                covered |= {"acupuncture", "electroacupuncture"}
            if rule.targets.herbs or rule.targets.herb_pregnancy:
                covered.add(HERBAL_FORMULA)
    unchecked = [r for r in recommendations if r.status in SHOWN and r.id not in covered and r.category != "workup"]
    for rec in unchecked:
        if rec.id.startswith("medication:"):
            _set_status(rec, Status.DEFERRED, "Deferred: its safety in pregnancy is not covered by HemiCare's sources.")
    if not unchecked:
        return []
    return [
        _unchecked(
            "unchecked:pregnancy",
            Severity.WARNING,
            "Pregnancy: no rule covers " + ", ".join(r.id for r in unchecked) + "; check each against its label "
            "and with the obstetric team.",
            [r.id for r in unchecked],
        )
    ]
