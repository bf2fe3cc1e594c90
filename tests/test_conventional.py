"""Conventional options: statuses follow the assessment; figures are cited; the toxin programme is safe by design."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from hemicare.engine import KnowledgeBase, build_plan, load, validate_assessment
from hemicare.engine.decision_aid import out_of_date, with_about
from hemicare.engine.facemap import face_map_svg
from hemicare.engine.plan import Plan, Recommendation
from hemicare.engine.render import render_decision_aid, render_text
from hemicare.engine.toxin import UNVERIFIED_DOSE, ToxinPlan

TODAY = dt.date(2026, 11, 26)
NO_MRI = {"mri": "not_done", "neurovascular_compression": None, "offending_vessel": None, "structural_lesion": None}


def _plan(kb: KnowledgeBase, data: dict[str, Any]) -> Plan:
    return build_plan(validate_assessment(data), kb, today=TODAY)


def _rec(plan: Plan, rec_id: str) -> Recommendation:
    found = [r for r in plan.recommendations if r.id == rec_id]
    assert found, f"{rec_id} not in plan: {[r.id for r in plan.recommendations]}"
    return found[0]


def _toxin(plan: Plan) -> ToxinPlan:
    return ToxinPlan.model_validate(_rec(plan, "botulinum_toxin").details["programme"])


def _session(days_ago: int, **extra: Any) -> dict[str, Any]:
    base = {"date": (TODAY - dt.timedelta(days=days_ago)).isoformat(), "product": "onabotulinumtoxinA"}
    return {"total_units": 10, **base, **extra}


# --- MVD ------------------------------------------------------------------------------------------------------


def test_mvd_recommended_when_definitive_treatment_wanted(kb: KnowledgeBase, patient: Any) -> None:
    rec = _rec(_plan(kb, patient(preferences={"wants_definitive_treatment": True}, anaesthesia_risk_asa=2)), "mvd")
    assert rec.status == "recommended"
    assert rec.evidence.certainty == "moderate" and rec.evidence.note and "[DISPUTED]" in rec.evidence.note


def test_mvd_is_an_option_when_no_preference(kb: KnowledgeBase, patient: Any) -> None:
    rec = _rec(_plan(kb, patient()), "mvd")
    assert rec.status == "option"
    assert any("ASA class not recorded" in line for line in rec.rationale)


def test_declined_surgery_stays_visible(kb: KnowledgeBase, patient: Any) -> None:
    rec = _rec(_plan(kb, patient(preferences={"avoid_surgery": True, "wants_definitive_treatment": True})), "mvd")
    assert rec.status == "option" and rec.details["declined_by_patient"] is True


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"imaging": NO_MRI}, "MRI"),
        ({"findings": {"hearing_loss": True}}, "red flags for secondary HFS"),
        ({"history": {"bells_palsy": True}}, "mimic"),
        ({"anaesthesia_risk_asa": 4}, "ASA class 4"),
        ({"imaging": {"neurovascular_compression": None}}, "does not say whether"),
    ],
)
def test_mvd_deferred(kb: KnowledgeBase, patient: Any, patch: dict[str, Any], fragment: str) -> None:
    rec = _rec(_plan(kb, patient(**patch)), "mvd")
    assert rec.status == "deferred"
    assert any(fragment in line for line in rec.rationale), rec.rationale


def test_mvd_not_recommended_without_compression(kb: KnowledgeBase, patient: Any) -> None:
    rec = _rec(_plan(kb, patient(imaging={"neurovascular_compression": False, "offending_vessel": None})), "mvd")
    assert rec.status == "not_recommended"


def test_young_patient_gets_mvd_recommended(kb: KnowledgeBase, patient: Any) -> None:
    rec = _rec(_plan(kb, patient(age=28, duration_months=12)), "mvd")
    assert rec.status == "recommended"
    assert {f["id"] for f in rec.details["personal_figures"]} == {"improved_under_30", "recurrence_or"}


def test_personal_figures_follow_age_and_vessel(kb: KnowledgeBase, patient: Any) -> None:
    rec = _rec(_plan(kb, patient(age=72, imaging={"offending_vessel": "vertebral"})), "mvd")
    ids = {f["id"] for f in rec.details["personal_figures"]}
    assert {"spasm_free_over_65", "effective_70_plus", "effective_va", "excellent_va_1991"} <= ids
    assert any("[DISPUTED]" in line for line in rec.rationale)


def test_general_figures_come_with_references(kb: KnowledgeBase, patient: Any) -> None:
    figures = {f["id"]: f for f in _rec(_plan(kb, patient()), "mvd").details["figures"]}
    assert figures["complete_resolution"]["value"] == 91.1
    assert figures["complete_resolution"]["evidence"]["references"] == ["pmid:22168965"]
    assert figures["death"]["text"] == "<0.1%"


# --- redo MVD -------------------------------------------------------------------------------------------------


def _prior(days_ago: int, result: str) -> dict[str, Any]:
    return {"prior_mvd": {"date": (TODAY - dt.timedelta(days=days_ago)).isoformat(), "result": result}}


def test_recurrence_after_mvd_makes_redo_an_option(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(history=_prior(900, "recurred")))
    assert "mvd" not in [r.id for r in plan.recommendations]
    assert _rec(plan, "redo_mvd").status == "option"


def test_early_unchanged_result_defers_redo(kb: KnowledgeBase, patient: Any) -> None:
    rec = _rec(_plan(kb, patient(history=_prior(90, "unchanged"))), "redo_mvd")
    assert rec.status == "deferred"
    assert "often delayed" in rec.rationale[0]
    assert {f["id"] for f in rec.details["delayed_resolution_figures"]} == {
        "delayed_relief",
        "median_days_to_spasm_free",
    }


def test_late_persistence_makes_redo_an_option(kb: KnowledgeBase, patient: Any) -> None:
    assert _rec(_plan(kb, patient(history=_prior(500, "unchanged"))), "redo_mvd").status == "option"


def test_cured_mvd_needs_no_surgery(kb: KnowledgeBase, patient: Any) -> None:
    ids = [r.id for r in _plan(kb, patient(history=_prior(500, "cured"))).recommendations]
    assert "mvd" not in ids and "redo_mvd" not in ids


# --- botulinum toxin ------------------------------------------------------------------------------------------


def test_first_session_is_periocular_with_labelled_doses(kb: KnowledgeBase, patient: Any) -> None:
    toxin = _toxin(_plan(kb, patient(regions=["periocular"])))
    assert toxin.product == "onabotulinumtoxinA"
    assert {s.site for s in toxin.sites} == {
        "upper_lid_medial",
        "upper_lid_lateral",
        "lower_lid_lateral",
        "lateral_orbital",
    }
    assert all(s.units == 2.5 for s in toxin.sites)
    assert toxin.due_from == TODAY and not toxin.too_soon


def test_lower_face_sites_only_when_involved_and_lower(kb: KnowledgeBase, patient: Any) -> None:
    toxin = _toxin(_plan(kb, patient(regions=["periocular", "cheek", "chin"])))
    lower = {s.site: s.units for s in toxin.sites if s.region in ("cheek", "chin")}
    assert lower == {"zygomaticus": 1.25, "mentalis": 1.25}
    assert "depressor_anguli_oris" not in {s.site for s in toxin.sites}


def test_reinjection_never_sooner_than_12_weeks(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(history={"botulinum_sessions": [_session(28)]}))
    toxin = _toxin(plan)
    assert toxin.too_soon
    assert toxin.earliest_next == TODAY - dt.timedelta(days=28) + dt.timedelta(weeks=12)
    assert toxin.due_from >= toxin.earliest_next
    schedule = [item for item in plan.schedule if item.what.startswith("Botulinum")]
    assert schedule[0].due == toxin.earliest_next
    assert any("Too soon" in line for line in _rec(plan, "botulinum_toxin").rationale)


def test_due_date_follows_the_last_effect(kb: KnowledgeBase, patient: Any) -> None:
    toxin = _toxin(_plan(kb, patient(history={"botulinum_sessions": [_session(140, effect_weeks=16)]})))
    last = TODAY - dt.timedelta(days=140)
    assert toxin.due_from == TODAY  # overdue: 16 weeks have passed
    assert toxin.due_by == last + dt.timedelta(weeks=26)


def test_short_effect_doubles_dose_within_the_site_cap(kb: KnowledgeBase, patient: Any) -> None:
    sites = [{"site": "upper_lid_medial", "units": 3.5}, {"site": "lower_lid_lateral", "units": 2.0}]
    session = _session(100, effect_weeks=6, total_units=5.5, sites=sites)
    toxin = _toxin(_plan(kb, patient(regions=["periocular"], history={"botulinum_sessions": [session]})))
    units = {s.site: s.units for s in toxin.sites}
    assert units["upper_lid_medial"] == 5  # 7 capped at 5 per site
    assert units["lower_lid_lateral"] == 4
    assert units["upper_lid_lateral"] == 5  # 2.5 start doubled
    assert any("only 6 weeks" in line for line in toxin.titration)


def test_ptosis_lowers_upper_lid_sites(kb: KnowledgeBase, patient: Any) -> None:
    session = _session(100, adverse_effects=["Drooping eyelid"])
    toxin = _toxin(_plan(kb, patient(regions=["periocular"], history={"botulinum_sessions": [session]})))
    units = {s.site: s.units for s in toxin.sites}
    assert units["upper_lid_medial"] == 1.25 and units["upper_lid_lateral"] == 1.25
    assert units["lateral_orbital"] == 2.5


def test_unknown_adverse_effect_asks_for_review(kb: KnowledgeBase, patient: Any) -> None:
    toxin = _toxin(_plan(kb, patient(history={"botulinum_sessions": [_session(100, adverse_effects=["rash"])]})))
    assert any("'rash' has no titration rule" in line for line in toxin.titration)


def test_first_session_respects_the_per_eye_cap(kb: KnowledgeBase, patient: Any) -> None:
    toxin = _toxin(_plan(kb, patient(side="bilateral", regions=["periocular", "forehead", "neck"])))
    for side in ("left", "right"):
        eye = sum(s.ona_units for s in toxin.sites if s.side == side and s.region == "periocular")
        assert eye <= 25
    assert all(s.ona_units <= 5 for s in toxin.sites)
    assert toxin.total_ona_units <= 100


@pytest.mark.parametrize(("product", "factor"), [("abobotulinumtoxinA", 2.5), ("incobotulinumtoxinA", 1.0)])
def test_product_conversion(kb: KnowledgeBase, patient: Any, product: str, factor: float) -> None:
    session = _session(100, product=product)
    toxin = _toxin(_plan(kb, patient(regions=["periocular"], history={"botulinum_sessions": [session]})))
    assert toxin.product == product
    for site in toxin.sites:
        assert site.units == pytest.approx(site.ona_units * factor)


def test_last_session_in_product_units_is_converted_back(kb: KnowledgeBase, patient: Any) -> None:
    sites = [{"site": "upper_lid_medial", "units": 10}]
    session = _session(100, product="abobotulinumtoxinA", total_units=10, sites=sites)
    toxin = _toxin(_plan(kb, patient(regions=["periocular"], history={"botulinum_sessions": [session]})))
    medial = next(s for s in toxin.sites if s.site == "upper_lid_medial")
    assert medial.ona_units == 4 and medial.units == 10


def test_face_map_sides(kb: KnowledgeBase, patient: Any) -> None:
    left = _toxin(_plan(kb, patient(side="left")))
    right = _toxin(_plan(kb, patient(side="right")))
    assert all(s.x > 200 for s in left.sites) and all(s.x < 200 for s in right.sites)
    both = _toxin(_plan(kb, patient(side="bilateral", findings={"babinski2_sign": True})))
    assert {s.side for s in both.sites} == {"left", "right"}


def test_a_dose_no_hfs_source_gives_is_marked_unverified_wherever_it_is_shown(kb: KnowledgeBase, patient: Any) -> None:
    """The reference sheet gives no HFS per-muscle dose for the lower face ([unverified]): the plan's starting dose
    there is marked in the data, the rationale (with the knowledge base's note), the face map and the text plan."""
    plan = _plan(kb, patient(regions=["periocular", "cheek"]))
    toxin = _toxin(plan)
    assert {(s.site, s.unverified) for s in toxin.sites} >= {("zygomaticus", True), ("upper_lid_medial", False)}
    # Said in the site's note, a field every earlier version reads: they refuse unknown keys in a stored dose site, so
    # a clinic that goes back a version can still open the plans this one stored.
    stored = plan.model_dump(mode="json")["recommendations"]
    sites = next(r for r in stored if r["id"] == "botulinum_toxin")["details"]["programme"]["sites"]
    known = {"site", "side", "label", "region", "muscle", "units", "ona_units", "x", "y", "label_side", "note"}
    assert all(set(site) == known for site in sites)
    marked = [line for line in _rec(plan, "botulinum_toxin").rationale if line.startswith("[UNVERIFIED]")]
    assert marked == [
        "[UNVERIFIED] Dose at Zygomaticus major (cheek): No HFS per-muscle dose was found; the lowest labelled "
        "per-site dose is used because lower-face weakness is frequent."
    ]
    svg = face_map_svg(toxin, patient_id="p")
    assert re.search(r'data-site="zygomaticus".*?1\.25 U\*</text>', svg, re.S)
    assert f"(*: {UNVERIFIED_DOSE})" in svg
    assert re.search(r"Zygomaticus major \(cheek\) +1\.25 U  \(dose unverified", render_text(plan))
    # A dose the patient had before at that site is theirs, not the knowledge base's starting dose.
    session = _session(100, total_units=2.0, sites=[{"site": "zygomaticus", "units": 2.0}])
    again = _plan(kb, patient(regions=["periocular", "cheek"], history={"botulinum_sessions": [session]}))
    assert not any(s.unverified for s in _toxin(again).sites if s.site == "zygomaticus")
    assert not any(line.startswith("[UNVERIFIED]") for line in _rec(again, "botulinum_toxin").rationale)
    eyes = _plan(kb, patient(regions=["periocular"]))  # the eye doses are the label's: nothing to mark
    assert not any(s.unverified for s in _toxin(eyes).sites)
    assert not any(line.startswith("[UNVERIFIED]") for line in _rec(eyes, "botulinum_toxin").rationale)
    assert "*" not in face_map_svg(_toxin(eyes), patient_id="p")


def test_toxin_deferred_for_red_flags_and_declined_stays_visible(kb: KnowledgeBase, patient: Any) -> None:
    assert _rec(_plan(kb, patient(findings={"tonic_spasm": True})), "botulinum_toxin").status == "deferred"
    rec = _rec(_plan(kb, patient(preferences={"avoid_injections": True})), "botulinum_toxin")
    assert rec.status == "option" and rec.details["declined_by_patient"]


# --- procedures, medicines, decision aid ------------------------------------------------------------------------


def test_procedures_only_when_surgery_and_toxin_are_out(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient())
    assert _rec(plan, "rf_ablation").status == "not_recommended"
    plan = _plan(kb, patient(preferences={"avoid_surgery": True, "avoid_injections": True}))
    assert _rec(plan, "rf_ablation").status == "option" and _rec(plan, "nerve_block").status == "option"
    assert _rec(plan, "nerve_block").evidence.certainty == "very_low"


def test_toxin_failing_and_unfit_for_surgery_opens_procedures(kb: KnowledgeBase, patient: Any) -> None:
    sessions = [_session(300, effect_weeks=4), _session(150, effect_weeks=5)]
    plan = _plan(kb, patient(anaesthesia_risk_asa=4, history={"botulinum_sessions": sessions}))
    assert _rec(plan, "rf_ablation").status == "option"


@pytest.mark.parametrize(("grade", "status"), [(1, "option"), (2, "not_recommended")])
def test_medicines_for_mild_spasm_only(kb: KnowledgeBase, patient: Any, grade: int, status: str) -> None:
    plan = _plan(kb, patient(severity={"smc_grade": grade}))
    for drug in ("carbamazepine", "oxcarbazepine", "gabapentin", "clonazepam", "baclofen", "levetiracetam"):
        rec = _rec(plan, f"medication:{drug}")
        assert rec.status == status and rec.evidence.certainty == "very_low"


def test_carbamazepine_carries_its_hla_rule(kb: KnowledgeBase, patient: Any) -> None:
    rec = _rec(_plan(kb, patient(severity={"smc_grade": 1})), "medication:carbamazepine")
    assert any("HLA-B*15:02" in line for line in rec.details["safety"])


def test_decision_aid_compares_realistic_options(kb: KnowledgeBase, patient: Any) -> None:
    aid = _plan(kb, patient()).decision_aid
    assert aid is not None
    options = [c.option for c in aid.columns]
    assert options[0] == "no_treatment" and {"mvd", "botulinum_toxin"} <= set(options)
    assert "rf_ablation" not in options  # not realistic for this patient
    for column in aid.columns:
        assert set(column.answers) == set(aid.questions)
    mvd = next(c for c in aid.columns if c.option == "mvd")
    assert mvd.answers["how_well"].figures[0].per_100 == "about 91 in 100"


def test_decision_aid_says_when_it_was_issued_and_when_it_is_out_of_date(kb_tree: Path, patient: Any) -> None:
    """IPDAS asks an aid for its date and update policy: the month the knowledge base version was issued, and a day,
    the clinic's policy in years later, from which it is shown as out of date."""
    (kb_tree / "VERSION").write_text("2024.02.3\n")
    policies = yaml.safe_load((kb_tree / "policy.yaml").read_text())
    next(p for p in policies if p["id"] == "decision_aid_review_years")["value"] = 3
    (kb_tree / "policy.yaml").write_text(yaml.safe_dump(policies, sort_keys=False))
    aid = _plan(load(kb_tree), patient()).decision_aid
    assert aid is not None
    assert (aid.about.knowledge_version, aid.about.issued, aid.about.review_by) == (
        "2024.02.3",
        dt.date(2024, 2, 1),
        dt.date(2027, 2, 1),
    )
    assert aid.about.text.startswith("From HemiCare's knowledge base 2024.02.3, issued in February 2024; ")
    stored = aid.model_dump(mode="json")
    assert out_of_date(stored, dt.date(2027, 2, 1)) and not out_of_date(stored, dt.date(2027, 1, 31))
    text = render_decision_aid(_plan(load(kb_tree), patient()))
    assert aid.about.text[:60] in text and "due to be checked" not in text
    assert "[DISPUTED] Reported durations range from 10.8" in text  # a flagged figure keeps its note
    later = build_plan(validate_assessment(patient()), load(kb_tree), today=dt.date(2027, 2, 1))
    assert "These figures were due to be checked against newer evidence by 2027-02-01" in render_decision_aid(later)
    # A clinic that shortens its policy sees stored aids by the new one; the stored record is left as it was.
    next(p for p in policies if p["id"] == "decision_aid_review_years")["value"] = 2
    (kb_tree / "policy.yaml").write_text(yaml.safe_dump(policies, sort_keys=False))
    restated = with_about(stored, "2024.02.3", load(kb_tree))
    assert restated["about"]["review_by"] == "2026-02-01" and stored["about"]["review_by"] == "2027-02-01"
    assert with_about(stored, "an old label", load(kb_tree)) is stored  # no month to read: kept as stored


def _figures(value: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        if {"value", "unit", "evidence"} <= set(value):
            found.append(value)
        for inner in value.values():
            found += _figures(inner)
    elif isinstance(value, list):
        for inner in value:
            found += _figures(inner)
    return found


def test_every_number_in_a_plan_traces_to_the_registry(kb: KnowledgeBase, patient: Any) -> None:
    data = _plan(kb, patient(age=72, history={"botulinum_sessions": [_session(100, effect_weeks=6)]})).model_dump(
        mode="json"
    )
    figures = _figures(data)
    assert len(figures) > 30
    for figure in figures:
        refs = figure["evidence"]["references"]
        assert refs and set(refs) <= set(kb.references), figure["id"]
        assert set(refs) <= set(data["references"])


@pytest.mark.parametrize(("grade", "status"), [(2, "option"), (3, "recommended"), (4, "recommended")])
def test_severity_tailors_mvd(kb: KnowledgeBase, patient: Any, grade: int, status: str) -> None:
    assert _rec(_plan(kb, patient(severity={"smc_grade": grade})), "mvd").status == status


# --- construction ----------------------------------------------------------------------------------------------


def test_trusted_recommendations_are_what_validation_would_build(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient())
    assert len(plan.recommendations) > 5
    for rec in plan.recommendations:
        validated = Recommendation.model_validate(rec.model_dump())
        assert validated.model_dump_json() == rec.model_dump_json()
        assert validated.model_dump() == rec.model_dump()
        assert rec.model_fields_set == set(Recommendation.model_fields)
        assert rec.details_references() is not None or rec.id == "mri_workup"
    changed = plan.recommendations[0].model_copy(update={"priority": 99})
    assert changed.priority == 99 and plan.recommendations[0].priority != 99
