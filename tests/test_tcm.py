"""TCM pattern differentiation and the three-component integrative plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hemicare.engine import KnowledgeBase, build_plan, load, validate_assessment
from hemicare.engine.check import run_pattern_case
from hemicare.engine.loader import load_default
from hemicare.engine.plan import Plan, Recommendation
from hemicare.engine.render import render_text

from .test_knowledge import _edit, _problems


def _plan(kb: KnowledgeBase, data: dict[str, Any]) -> Plan:
    return build_plan(validate_assessment(data), kb)


def _rec(plan: Plan, rec_id: str) -> Recommendation:
    return next(r for r in plan.recommendations if r.id == rec_id)


def _tcm(**tcm: Any) -> dict[str, Any]:
    return {"tcm": tcm}


@pytest.mark.parametrize("case", load_default().pattern_cases, ids=lambda c: c.name)
def test_pattern_vignette(kb: KnowledgeBase, case: Any) -> None:
    result = run_pattern_case(kb, case)
    assert result.passed, result.detail


def test_every_pattern_has_cases_that_must_and_must_not_select_it(kb: KnowledgeBase) -> None:
    for pattern_id in kb.patterns:
        selects = [c for c in kb.pattern_cases if c.pattern == pattern_id and c.expect == "selects"]
        # Any vignette that selects another pattern (or none) must not select this one.
        must_not = [c for c in kb.pattern_cases if c.pattern != pattern_id and c.expect == "selects"]
        must_not += [c for c in kb.pattern_cases if c.pattern == pattern_id and c.expect == "not_selected"]
        assert selects and must_not, pattern_id


def test_every_pattern_has_its_tm1_code(kb: KnowledgeBase) -> None:
    assert all(p.tm1_codes for p in kb.patterns.values())
    assert kb.patterns["liver_qi_stagnation"].tm1_codes == ["SF57"]


def test_ranked_explained_answer_for_a_mixed_picture(kb: KnowledgeBase, patient: Any) -> None:
    mixed = _tcm(
        tongue={"body": "red", "coating": "white_greasy"},
        pulse=["weak", "slippery"],
        findings=["fatigue", "heavy_head", "irritability", "night_sweats"],
    )
    tcm = _plan(kb, patient(**mixed)).tcm
    scores = [p.score for p in tcm.patterns]
    assert scores == sorted(scores, reverse=True) and len(scores) >= 3
    for pattern in tcm.patterns:
        assert pattern.supporting, pattern.id
    assert any(p.contradicting for p in tcm.patterns)


def test_thin_evidence_gives_no_pattern_and_no_formula(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(**_tcm(findings=["dizziness"])))
    assert plan.tcm.primary is None and "No pattern fits well" in (plan.tcm.summary or "")
    herbal = _rec(plan, "herbal_formula")
    assert herbal.status == "deferred" and "no pattern fits well" in herbal.rationale[0]
    acupuncture = _rec(plan, "acupuncture")
    assert acupuncture.status == "option"
    assert not [p for p in acupuncture.details["points"] if p["role"].startswith("pattern")]


def test_primary_and_secondary_pattern(kb: KnowledgeBase) -> None:
    plan = build_plan(validate_assessment(_demo()), kb)
    assert (plan.tcm.primary, plan.tcm.secondary) == ("liver_yang_rising", "liver_qi_stagnation")
    assert _rec(plan, "herbal_formula").details["formula"] == "tian_ma_gou_teng_yin"


def test_secondary_pattern_can_change_the_formula(kb: KnowledgeBase, patient: Any) -> None:
    yin_and_yang = _tcm(
        tongue={"body": "deep_red", "coating": "scanty"},
        pulse=["thin", "wiry"],
        findings=[
            "night_sweats",
            "heat_in_palms_and_soles",
            "lower_back_weakness",
            "irritability",
            "red_face",
            "headache",
            "dry_throat",
        ],
    )
    plan = _plan(kb, patient(**yin_and_yang))
    assert (plan.tcm.primary, plan.tcm.secondary) == ("liver_kidney_yin_deficiency", "liver_yang_rising")
    assert _rec(plan, "herbal_formula").details["formula"] == "zhen_gan_xi_feng_tang"


def test_qian_zheng_san_conflict_with_blood_deficiency_is_flagged(kb: KnowledgeBase, patient: Any) -> None:
    wind_and_blood = _tcm(
        tongue={"body": "pale", "coating": "thin_white"},
        pulse=["floating", "thin"],
        findings=["worse_with_wind_cold", "acute_onset", "aversion_to_cold", "blurred_vision", "dizziness"],
    )
    plan = _plan(kb, patient(**wind_and_blood))
    assert (plan.tcm.primary, plan.tcm.secondary) == ("wind_cold_collaterals", "liver_blood_deficiency")
    herbal = _rec(plan, "herbal_formula")
    assert herbal.details["formula"] == "qian_zheng_san"
    alert = next(a for a in plan.alerts if a.id == "formula_conflict:qian_zheng_san:liver_blood_deficiency")
    assert alert.severity == "warning" and "herb:Scorpio" in alert.affects
    assert "blood deficiency" in alert.message


def test_formula_is_bilingual_with_reference_doses(kb: KnowledgeBase) -> None:
    details = _rec(build_plan(validate_assessment(_demo()), kb), "herbal_formula").details
    assert (details["pinyin"], details["chinese"]) == ("Tian Ma Gou Teng Yin", "天麻钩藤饮")
    gou_teng = next(i for i in details["ingredients"] if i["pinyin"] == "Gou Teng")
    assert gou_teng["latin"] == "Ramulus Uncariae cum Uncis" and gou_teng["chinese"] == "钩藤"
    assert gou_teng["dose"] == "12-15 g" and gou_teng["note"] == "added late"


def test_points_follow_regions_and_pattern(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(regions=["periocular"], **_tcm(**_vignette(kb, "liver_kidney_yin_deficiency"))))
    points = {p["code"]: p for p in _rec(plan, "acupuncture").details["points"]}
    assert {"BL2", "EX-HN5", "LI4", "LR3", "SP6", "KI3"} <= set(points)
    assert "ST4" not in points  # mouth not involved
    assert points["LI4"]["chinese"] == "合谷" and points["LI4"]["pinyin"] == "Hegu"
    ea = _rec(plan, "electroacupuncture").details["points"]
    assert ea and all(p["region"] in ("upper_limb", "lower_limb") for p in ea)


def test_avoid_needles_removes_needling_and_offers_other_options(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(preferences={"avoid_needles": True}))
    for rec_id in ("acupuncture", "electroacupuncture"):
        rec = _rec(plan, rec_id)
        assert rec.status == "not_recommended" and rec.details["declined_by_patient"]
        assert any("Non-needle options" in line for line in rec.rationale)
    assert _rec(plan, "lifestyle").status == "recommended"


def test_tcm_waits_for_a_neurological_diagnosis(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(findings={"hearing_loss": True}, **_tcm(**_vignette(kb, "liver_yang_rising"))))
    for rec_id in ("acupuncture", "electroacupuncture", "herbal_formula"):
        rec = _rec(plan, rec_id)
        assert rec.status == "deferred" and "after a neurological diagnosis" in rec.rationale[0]
    assert _rec(plan, "lifestyle").status == "recommended"


def test_evidence_is_stated_honestly(kb: KnowledgeBase) -> None:
    plan = build_plan(validate_assessment(_demo()), kb)
    assert _rec(plan, "acupuncture").evidence.certainty == "low"
    assert _rec(plan, "electroacupuncture").evidence.certainty == "very_low"
    assert _rec(plan, "herbal_formula").evidence.certainty == "very_low"
    assert _rec(plan, "mvd").evidence.certainty == "moderate"
    for item in _rec(plan, "diet").details["items"]:
        assert item["origin"] == "tradition" and item["evidence"]["certainty"] == "very_low"
    text = render_text(plan)
    assert "low or very-low certainty" in text and "never instead of them" in text
    assert text.index("[RECOMMENDED] mvd") < text.index("[OPTION] acupuncture")


def test_integrative_care_not_wanted_is_said(kb: KnowledgeBase, patient: Any) -> None:
    rec = _rec(_plan(kb, patient(preferences={"integrative_care": False})), "acupuncture")
    assert rec.status == "option" and "only if the patient wishes" in rec.rationale[0]


def test_unknown_point_in_a_pattern_is_rejected(kb_tree: Path) -> None:
    _edit(kb_tree / "tcm/patterns.yaml", lambda d: d[0]["points"].append("XX9"))
    assert "unknown acupoint `XX9`" in _problems(kb_tree)


def test_unknown_vocabulary_in_a_pattern_is_rejected(kb_tree: Path) -> None:
    _edit(
        kb_tree / "tcm/patterns.yaml",
        lambda d: d[0]["supports"].append({"kind": "pulse", "value": "bouncy", "weight": 1}),
    )
    assert "unknown pulse `bouncy`" in _problems(kb_tree)


def test_unknown_herb_in_a_formula_is_rejected(kb_tree: Path) -> None:
    _edit(kb_tree / "tcm/formulas.yaml", lambda d: d[0]["ingredients"].append({"herb": "Radix Imaginaria"}))
    assert "unknown herb `Radix Imaginaria`" in _problems(kb_tree)


def test_tree_copy_still_loads(kb_tree: Path) -> None:
    assert load(kb_tree).patterns


def _vignette(kb: KnowledgeBase, pattern_id: str) -> dict[str, Any]:
    case = next(c for c in kb.pattern_cases if c.pattern == pattern_id and c.expect == "selects")
    tcm: dict[str, Any] = case.patient["tcm"]
    return tcm


def _demo() -> dict[str, Any]:
    from hemicare.engine.intake import read_file

    from .conftest import EXAMPLES

    return read_file(EXAMPLES / "demo-001.yaml")
