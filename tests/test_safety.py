"""Cross-modality safety: rules act on the plan, alerts name what they affect, and the engine fails closed."""

from __future__ import annotations

from typing import Any

from hemicare.engine import KnowledgeBase, build_plan, validate_assessment
from hemicare.engine.plan import Alert, Plan, Recommendation

P1 = {"tongue": {"coating": "thin_white"}, "pulse": ["floating"], "findings": ["worse_with_wind_cold", "acute_onset"]}
P1["findings"].append("aversion_to_cold")
P4 = {"tongue": {"body": "pale"}, "pulse": ["thin"], "findings": ["blurred_vision", "dizziness", "dry_eyes"]}
P5 = {
    "tongue": {"body": "pale", "coating": "thin_white"},
    "pulse": ["thin", "weak"],
    "findings": ["fatigue", "pallor", "worse_when_tired", "long_illness"],
}


def _plan(kb: KnowledgeBase, data: dict[str, Any]) -> Plan:
    return build_plan(validate_assessment(data), kb)


def _rec(plan: Plan, rec_id: str) -> Recommendation:
    return next(r for r in plan.recommendations if r.id == rec_id)


def _alert(plan: Plan, alert_id: str) -> Alert:
    found = [a for a in plan.alerts if a.id == alert_id]
    assert found, f"{alert_id} not among {[a.id for a in plan.alerts]}"
    return found[0]


def _points(plan: Plan, rec_id: str = "acupuncture") -> set[str]:
    return {p["code"] for p in _rec(plan, rec_id).details.get("points", [])}


def _herbs(plan: Plan) -> set[str]:
    return {i["latin"] for i in _rec(plan, "herbal_formula").details.get("ingredients", [])}


def test_pregnancy_defers_toxin_with_the_reference_wording(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(pregnant=True))
    assert _rec(plan, "botulinum_toxin").status == "deferred"
    alert = _alert(plan, "pregnancy_toxin")
    assert alert.severity == "critical" and "animal studies show developmental toxicity" in alert.message
    assert alert.affects == ["botulinum_toxin"]


def test_pregnancy_removes_traditionally_forbidden_points(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(pregnant=True, tcm=P5))
    assert not _points(plan) & {"LI4", "CV6"}
    alert = _alert(plan, "pregnancy_forbidden_points")
    assert "(tradition-based)" in alert.message
    assert {"acupoint:LI4", "acupoint:CV6"} <= set(alert.affects)
    removed = {p["code"] for p in _rec(plan, "acupuncture").details["removed_points"]}
    assert {"LI4", "CV6"} <= removed


def test_pregnancy_removes_forbidden_herbs_and_changes_the_formula(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(pregnant=True, tcm=P1))
    assert not _herbs(plan) & {"Scorpio", "Rhizoma Typhonii"}
    assert _rec(plan, "herbal_formula").status == "contraindicated"
    assert _alert(plan, "pregnancy_forbidden_herbs").severity == "critical"


def test_pregnancy_defers_medicines_no_rule_covers(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(pregnant=True, severity={"smc_grade": 1}))
    assert _rec(plan, "medication:gabapentin").status == "deferred"
    assert "medication:gabapentin" in _alert(plan, "unchecked:pregnancy").affects


def test_neuromuscular_disease_defers_toxin(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(comorbidities=["Lambert-Eaton syndrome"]))
    assert _rec(plan, "botulinum_toxin").status == "deferred"
    assert _alert(plan, "neuromuscular_disease_toxin").severity == "critical"


def test_aminoglycoside_cautions_toxin(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(medications=["Gentamicin"]))
    assert _rec(plan, "botulinum_toxin").status == "recommended"
    assert _alert(plan, "potentiating_drugs_toxin").severity == "warning"
    assert any(line.startswith("Caution.") for line in _rec(plan, "botulinum_toxin").rationale)


def test_site_infection_contraindicates_toxin(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(findings={"facial_skin_infection": True}))
    assert _rec(plan, "botulinum_toxin").status == "contraindicated"


def test_warfarin_needling_and_herbs(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(medications=["Coumadin"], tcm=P5))
    assert "EX-HN5" not in _points(plan)
    assert _alert(plan, "warfarin_needling").affects == ["acupuncture", "electroacupuncture"]
    assert "Radix Angelicae Sinensis" not in _herbs(plan)
    assert "herb:Radix Angelicae Sinensis" in _alert(plan, "warfarin_herbs_remove").affects
    assert not [a for a in plan.alerts if a.id == "unchecked:drug:warfarin"]


def test_a_deferred_treatment_loses_what_a_rule_removes_as_a_shown_one_does(kb: KnowledgeBase, patient: Any) -> None:
    """Hearing loss defers every treatment until the work-up; the points the deferred acupuncture lists are what would
    be given once the deferral is lifted (at sign-off, say), so warfarin's removal acts on them now: no Taiyang, named
    as removed. (No formula is chosen before the work-up, so there are no herbs to remove.)"""
    plan = _plan(kb, patient(medications=["Coumadin"], tcm=P5, findings={"hearing_loss": True}))
    assert _rec(plan, "acupuncture").status == "deferred"
    assert "EX-HN5" not in _points(plan) and "ST2" in _points(plan)
    assert [p["code"] for p in _rec(plan, "acupuncture").details["removed_points"]] == ["EX-HN5"]
    assert "acupoint:EX-HN5" in _alert(plan, "bleeding_risk_taiyang").affects
    assert _rec(plan, "herbal_formula").status == "deferred" and not _herbs(plan)
    # Not shown, not cautioned: the needling caution waits for a plan that offers the needling.
    assert not [a for a in plan.alerts if a.id == "warfarin_needling"]


def test_a_declined_treatment_loses_what_a_rule_removes_and_says_no_caution(kb: KnowledgeBase, patient: Any) -> None:
    """A patient who avoids needles, on warfarin: acupuncture is not recommended, but a clinician may change that at
    sign-off if they change their mind, so its points are without Taiyang already; the needling caution is not said
    for needling that is not offered."""
    plan = _plan(kb, patient(medications=["Coumadin"], tcm=P5, preferences={"avoid_needles": True}))
    assert _rec(plan, "acupuncture").status == "not_recommended"
    assert "EX-HN5" not in _points(plan) and "ST2" in _points(plan)
    assert "acupoint:EX-HN5" in _alert(plan, "bleeding_risk_taiyang").affects
    assert not [a for a in plan.alerts if a.id == "warfarin_needling"]


def test_pacemaker_defers_electroacupuncture_only(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(comorbidities=["pacemaker"]))
    assert _rec(plan, "electroacupuncture").status == "deferred"
    assert _rec(plan, "acupuncture").status == "option"
    assert "across the chest" in _alert(plan, "device_electroacupuncture").message


def test_hla_b1502_rules(kb: KnowledgeBase, patient: Any) -> None:
    mild = {"severity": {"smc_grade": 1}}
    positive = _plan(kb, patient(hla_b1502="positive", **mild))
    assert _rec(positive, "medication:carbamazepine").status == "contraindicated"
    untested = _plan(kb, patient(ancestry=["Han Chinese"], **mild))
    assert _rec(untested, "medication:carbamazepine").status == "deferred"
    assert "Test before starting" in _alert(untested, "carbamazepine_hla_untested").message
    negative = _plan(kb, patient(ancestry=["Han Chinese"], hla_b1502="negative", **mild))
    assert _rec(negative, "medication:carbamazepine").status == "option"


def test_patient_already_on_carbamazepine_with_hla_positive(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(hla_b1502="positive", medications=["Tegretol"]))
    assert "drug:carbamazepine" in _alert(plan, "carbamazepine_hla_positive").affects


def test_oxcarbazepine_sodium_with_diuretic(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(medications=["furosemide"], severity={"smc_grade": 1}))
    assert "medication:oxcarbazepine" in _alert(plan, "oxcarbazepine_sodium").affects


def test_licorice_heavy_formula_in_older_patient(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(age=70, tcm=P4))
    assert _rec(plan, "herbal_formula").details["formula"] == "shao_yao_gan_cao_tang"
    assert "hypokalaemia" in _alert(plan, "licorice_hypokalaemia").message


def test_aristolochia_is_blocked_and_ambiguous_names_flagged(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(herbs=["Guan Mu Tong"]))
    assert _alert(plan, "aristolochia_block").severity == "critical"
    assert _alert(plan, "ambiguous_herb_names").affects == ["herb:Guan Mu Tong"]


def test_qian_zheng_san_needs_species_check(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(tcm=P1))
    assert _alert(plan, "bai_fu_zi_species").affects == ["herb:Rhizoma Typhonii"]
    assert _alert(plan, "toxic_herb_doses").severity == "warning"


def test_fail_closed_for_drugs_herbs_and_comorbidities(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(
        kb,
        patient(medications=["Zorblax", "amlodipine"], herbs=["Tian Ma", "Mystery Root"], comorbidities=["glaucoma"]),
    )
    ids = {a.id: a for a in plan.alerts}
    assert ids["unchecked:drug:Zorblax"].severity == "warning"
    assert ids["unchecked:drug:amlodipine"].severity == "warning"
    assert ids["unchecked:herb:Mystery Root"].severity == "warning"
    assert ids["unchecked:herb:Rhizoma Gastrodiae"].severity == "warning"
    assert ids["unchecked:comorbidity:glaucoma"].severity == "info"


def test_critical_alerts_come_first(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(pregnant=True, medications=["Zorblax"]))
    severities = [a.severity for a in plan.alerts]
    assert severities == sorted(severities, key=["critical", "warning", "info"].index)


def test_plan_order_puts_workup_then_conventional_then_adjuncts(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(findings={"hearing_loss": True}))
    categories = [r.category for r in plan.recommendations]
    assert categories[0] == "workup"
    assert categories.index("integrative") > max(i for i, c in enumerate(categories) if c == "conventional")
    assert [r.priority for r in plan.recommendations] == list(range(1, len(plan.recommendations) + 1))


def test_declined_surgery_is_visible_not_hidden(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(preferences={"avoid_surgery": True}))
    assert _rec(plan, "mvd").status == "option" and _rec(plan, "mvd").details["declined_by_patient"]


def test_herbs_taken_that_the_formula_gives_are_named_once_not_as_unchecked(kb: KnowledgeBase, patient: Any) -> None:
    # Bai Shao is in Ba Zhen Tang and no rule covers it; Mystery Root is in no formula and unknown.
    plan = _plan(kb, patient(tcm=P5, herbs=["Bai Shao", "Radix Angelicae Sinensis", "Mystery Root"]))
    ids = {a.id: a for a in plan.alerts}
    taken = ids["herbs_already_taken"]
    assert taken.severity == "info"
    assert taken.affects == ["herb:Radix Paeoniae Alba", "herb:Radix Angelicae Sinensis"]
    assert "Radix Paeoniae Alba (Bai Shao)" in taken.message and "counts toward them" in taken.message
    assert "unchecked:herb:Radix Paeoniae Alba" not in ids
    assert ids["unchecked:herb:Mystery Root"].severity == "warning"
    # All of them taken (a prescription of the formula still running): said in a few words, each named in affects.
    every = [i["latin"] for i in _rec(plan, "herbal_formula").details["ingredients"]]
    whole = _alert(_plan(kb, patient(tcm=P5, herbs=every)), "herbs_already_taken")
    assert whole.message.startswith(f"The patient already takes every herb the formula gives ({len(every)}): the")
    assert whole.affects == [f"herb:{latin}" for latin in every]


def test_herbs_taken_are_unchecked_when_the_formula_is_not_given(kb: KnowledgeBase, patient: Any) -> None:
    # Without TCM findings there is no formula: the patient's Bai Shao is theirs alone, and not checked.
    plan = _plan(kb, patient(herbs=["Bai Shao"]))
    ids = {a.id for a in plan.alerts}
    assert "unchecked:herb:Radix Paeoniae Alba" in ids and "herbs_already_taken" not in ids


def test_a_rule_names_a_herb_once_when_the_patient_takes_it_and_the_formula_gives_it(
    kb: KnowledgeBase, patient: Any
) -> None:
    plan = _plan(kb, patient(tcm=P5, herbs=["Dang Gui"], medications=["warfarin"]))
    affects = [a.affects for a in plan.alerts if "herb:Radix Angelicae Sinensis" in a.affects]
    assert affects and all(items.count("herb:Radix Angelicae Sinensis") == 1 for items in affects)
