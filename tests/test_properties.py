"""Property-based tests over generated assessments: the engine never crashes, and no plan holds an item that one
of its own critical alerts forbids."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pydantic_core
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from hemicare.engine import InputError, build_plan, load_default, validate_assessment
from hemicare.engine.assessment import FaceRegion, Pulse, TcmFinding, TongueBody, TongueCoating
from hemicare.engine.plan import Plan, plan_json
from hemicare.engine.render import render_decision_aid, render_text
from hemicare.engine.toxin import ToxinPlan
from hemicare.plans import service as plans

KB = load_default()
TODAY = dt.date(2026, 11, 26)
MAYBE = st.sampled_from([True, False, None])
DRUG_NAMES = [*sorted({d.id for d in KB.drugs.values()} | {b for d in KB.drugs.values() for b in d.brands}), "Zorblax"]
HERB_NAMES = [*sorted({h.pinyin for h in KB.herbs.values()}), "Guan Mu Tong", "mu tong", "Mystery Root"]
COMORBIDITIES = [*sorted(KB.comorbidities), "gout"]
PRODUCTS = ["onabotulinumtoxinA", "incobotulinumtoxinA", "abobotulinumtoxinA"]
ADVERSE = ["ptosis", "diplopia", "facial droop", "dry eyes", "rash"]


def _past(days: int) -> str:
    return (TODAY - dt.timedelta(days=days)).isoformat()


sessions = st.lists(
    st.fixed_dictionaries(
        {
            "date": st.integers(1, 2000).map(_past),
            "product": st.sampled_from(PRODUCTS),
            "total_units": st.integers(5, 100),
        },
        optional={
            "effect_weeks": st.integers(0, 30),
            "adverse_effects": st.lists(st.sampled_from(ADVERSE), max_size=2),
        },
    ),
    max_size=3,
)


@st.composite
def assessments(draw: st.DrawFn) -> dict[str, Any]:
    age = draw(st.integers(1, 100))
    regions = draw(st.lists(st.sampled_from([r.value for r in FaceRegion]), min_size=1, max_size=6, unique=True))
    mri = draw(st.sampled_from(["done", "not_done", "planned"]))
    imaging: dict[str, Any] = {"mri": mri}
    if mri == "done":
        imaging |= {
            "neurovascular_compression": draw(MAYBE),
            "structural_lesion": draw(MAYBE),
            "offending_vessel": draw(st.sampled_from(["aica", "pica", "vertebral", "vein", "multiple", None])),
        }
    history: dict[str, Any] = {
        "bells_palsy": draw(MAYBE),
        "facial_nerve_injury": draw(MAYBE),
        "multiple_sclerosis": draw(MAYBE),
        "botulinum_sessions": draw(sessions),
    }
    if draw(st.booleans()):
        history["prior_mvd"] = {
            "date": _past(draw(st.integers(1, 3000))),
            "result": draw(st.sampled_from(["cured", "improved", "unchanged", "recurred"])),
        }
    onset = draw(st.sampled_from(["periocular", "lower_face", None]))
    return {
        "id": "prop-1",
        "age": age,
        "sex": draw(st.sampled_from(["female", "male", "other"])),
        "pregnant": draw(st.booleans()),
        "breastfeeding": draw(st.booleans()),
        "ancestry": draw(st.lists(st.sampled_from(["han_chinese", "thai", "norwegian", "south_asian"]), max_size=2)),
        "hla_b1502": draw(st.sampled_from(["positive", "negative", "unknown"])),
        "side": draw(st.sampled_from(["left", "right", "bilateral"])),
        "duration_months": draw(st.integers(0, age * 12)),
        "onset_site": onset,
        "regions": regions,
        "findings": {
            name: draw(MAYBE)
            for name in (
                "tonic_spasm",
                "facial_weakness",
                "hearing_loss",
                "facial_numbness",
                "other_cranial_nerve_deficit",
                "babinski2_sign",
                "bilateral_synchronous",
                "facial_skin_infection",
            )
        },
        "history": history,
        "severity": {
            "smc_grade": draw(st.one_of(st.none(), st.integers(1, 4))),
            "jankovic_severity": draw(st.one_of(st.none(), st.integers(0, 4))),
            "jankovic_frequency": draw(st.one_of(st.none(), st.integers(0, 4))),
        },
        "hfs7": draw(st.one_of(st.none(), st.lists(st.integers(0, 4), min_size=7, max_size=7))),
        "imaging": imaging,
        "comorbidities": draw(st.lists(st.sampled_from(COMORBIDITIES), max_size=4, unique=True)),
        "anaesthesia_risk_asa": draw(st.one_of(st.none(), st.integers(1, 5))),
        "medications": draw(st.lists(st.sampled_from(DRUG_NAMES), max_size=4, unique=True)),
        "herbs": draw(st.lists(st.sampled_from(HERB_NAMES), max_size=3, unique=True)),
        "allergies": draw(st.lists(st.sampled_from(["penicillin", "Botox"]), max_size=1)),
        "tcm": {
            "tongue": {
                "body": draw(st.one_of(st.none(), st.sampled_from([t.value for t in TongueBody]))),
                "coating": draw(st.one_of(st.none(), st.sampled_from([t.value for t in TongueCoating]))),
            },
            "pulse": draw(st.lists(st.sampled_from([p.value for p in Pulse]), max_size=3, unique=True)),
            "findings": draw(st.lists(st.sampled_from([f.value for f in TcmFinding]), max_size=8, unique=True)),
        },
        "preferences": {
            name: draw(st.booleans())
            for name in (
                "avoid_surgery",
                "avoid_needles",
                "avoid_injections",
                "wants_definitive_treatment",
                "integrative_care",
            )
        },
    }


def _forbidden_items_present(plan: Plan) -> list[str]:
    """Items a critical alert affects that are still active in the plan."""
    recs = {r.id: r for r in plan.recommendations}
    active = {"recommended", "option"}
    points = {
        p["code"]
        for rec_id in ("acupuncture", "electroacupuncture")
        if rec_id in recs and recs[rec_id].status in active
        for p in recs[rec_id].details.get("points", [])
    }
    formula = recs.get("herbal_formula")
    herbs = set()
    if formula is not None and formula.status in active:
        herbs = {i["latin"] for i in formula.details.get("ingredients", [])}
    problems = []
    for alert in plan.alerts:
        if alert.severity != "critical":
            continue
        for item in alert.affects:
            kind, _, name = item.partition(":")
            if item in recs and recs[item].status in active:
                problems.append(f"{alert.id} -> {item} is {recs[item].status}")
            elif kind == "acupoint" and name in points:
                problems.append(f"{alert.id} -> {item} still needled")
            elif kind == "herb" and name in herbs:
                problems.append(f"{alert.id} -> {item} still in the formula")
    return problems


def _cited_anywhere(plan: Plan) -> set[str]:
    """Every reference id in every `references` list of the dumped plan, found by a plain walk."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key == "references" and isinstance(inner, list):
                    found.update(inner)
                else:
                    walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(plan.model_dump(mode="json", exclude={"references"}))
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(assessments())
def test_no_plan_holds_what_its_critical_alerts_forbid(data: dict[str, Any]) -> None:
    try:
        assessment = validate_assessment(data)
    except InputError:
        assume(False)
        return
    plan = build_plan(assessment, KB, today=TODAY)
    assert _forbidden_items_present(plan) == []
    compact = build_plan(assessment, KB, today=TODAY, compact=True)  # what bulk rechecks compare
    assert [(r.id, r.status) for r in compact.recommendations] == [(r.id, r.status) for r in plan.recommendations]
    assert [a.id for a in compact.alerts] == [a.id for a in plan.alerts]
    assert (
        plans.given((r.id, r.details) for r in compact.recommendations)
        == plans.summarise(plan.model_dump(mode="json"))["given"]
    ), "a recheck must compare the doses the stored plan gives"
    assert set(plan.references) <= set(KB.references)
    assert set(plan.references) == _cited_anywhere(plan), "the citation list must match what the plan cites"
    for rec in plan.recommendations:
        assert rec.evidence.references and set(rec.evidence.references) <= set(KB.references)
    assert render_text(plan) and render_decision_aid(plan)
    assert plan_json(plan) == to_json(plan), "the fast writer must write what pydantic writes"
    toxin = next(r for r in plan.recommendations if r.id == "botulinum_toxin").details["programme"]
    # The engine writes the programme as JSON data directly; it must be exactly what a validated ToxinPlan writes.
    assert ToxinPlan.model_validate(toxin).model_dump(mode="json") == toxin
    assert pydantic_core.to_json(ToxinPlan.model_validate(toxin)) == pydantic_core.to_json(toxin)
    assert all(site["ona_units"] <= 5 for site in toxin["sites"])
    if toxin["last_session"] is not None:
        last = dt.date.fromisoformat(toxin["last_session"])
        assert dt.date.fromisoformat(toxin["due_from"]) >= last + dt.timedelta(weeks=12)


def test_memo_tables_are_bounded_by_the_knowledge_base() -> None:
    """Plan-time memos are keyed on knowledge records, never on patients: many plans must not grow them."""
    from hemicare.engine import conventional, decision_aid, plan, safety, scores, tcm, triage
    from hemicare.synthetic import cohort

    statuses = len(plan.Status) + 1
    levels = sum(len(scale.levels) for scale in KB.scales.values())
    figures = sum(len(t.figures) for t in KB.treatments.values()) + len(KB.modifiers) * 4 + 64
    bounds = {
        "treatment parts": (conventional._FIXED_PARTS, len(KB.treatments)),
        "red flags": (triage._RED_FLAGS, len(KB.red_flags)),
        "differentials": (triage._DIFFERENTIALS, len(KB.differentials)),
        "aid columns": (decision_aid._COLUMNS, len(KB.treatments) * statuses),
        "aid column references": (decision_aid._COLUMN_REFERENCES, len(KB.treatments) * statuses),
        "graded scores": (scores._GRADED, levels),
        "pattern index": (tcm._INDEX, 1),
        "ordered safety rules": (safety._ORDERED_RULES, 1),
        "figure dicts": (plan._FIGURE_DICTS, figures),
        "evidence dicts": (plan._EVIDENCE_DICTS, len(KB.advice) + len(KB.formulas) + 1),
        "formula details": (tcm._FORMULA_DETAILS, len(KB.formulas)),
        "advice items": (tcm._ADVICE_ITEMS, len(KB.advice)),
    }
    before = {name: len(table) for name, (table, _) in bounds.items()}
    shared_before = len(plan._FRAGMENTS)
    for data in cohort(200, KB, today=dt.date(2026, 11, 26)):
        plan.plan_json(build_plan(validate_assessment(data), KB, today=dt.date(2026, 11, 26)))
    for name, (table, bound) in bounds.items():
        grown = len(table) - before[name]
        assert grown <= bound, f"{name}: grew by {grown} entries over 200 plans, for a bound of {bound}"
    # Written-once JSON is kept only for parts some memo made (one entry at most per memo entry), never per plan.
    memo_growth = sum(len(table) - before[name] for name, (table, _) in bounds.items())
    shared_growth = len(plan._FRAGMENTS) - shared_before
    assert shared_growth <= memo_growth, f"shared JSON grew by {shared_growth} entries over 200 plans"
