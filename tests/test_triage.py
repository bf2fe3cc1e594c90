"""Diagnosis triage and the plan contract built on it."""

from __future__ import annotations

from typing import Any

import pytest

from hemicare.engine import KnowledgeBase, build_plan, validate_assessment
from hemicare.engine.plan import Plan
from hemicare.engine.render import render_text

MRI_NOT_DONE = {
    "mri": "not_done",
    "neurovascular_compression": None,
    "offending_vessel": None,
    "structural_lesion": None,
}


def _plan(kb: KnowledgeBase, data: dict[str, Any]) -> Plan:
    return build_plan(validate_assessment(data), kb)


def test_typical_patient_is_primary_hfs_without_workup(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient())
    assert plan.diagnosis.status == "primary_hfs_likely"
    assert plan.diagnosis.red_flags == [] and plan.diagnosis.differentials == []
    assert [r.id for r in plan.recommendations if r.category == "workup"] == []


@pytest.mark.parametrize(
    ("patch", "flag"),
    [
        ({"findings": {"tonic_spasm": True}}, "tonic_spasm"),
        ({"findings": {"facial_weakness": True}}, "facial_weakness"),
        ({"findings": {"hearing_loss": True}}, "hearing_loss"),
        ({"findings": {"facial_numbness": True}}, "facial_numbness"),
        ({"findings": {"other_cranial_nerve_deficit": True}}, "other_cranial_nerve_deficit"),
        ({"side": "bilateral"}, "bilateral_spasm"),
        ({"imaging": {"structural_lesion": True}}, "structural_lesion"),
        ({"history": {"multiple_sclerosis": True}}, "multiple_sclerosis"),
        ({"history": {"facial_nerve_injury": True}}, "facial_nerve_injury"),
    ],
)
def test_secondary_signs_put_workup_first(kb: KnowledgeBase, patient: Any, patch: dict[str, Any], flag: str) -> None:
    plan = _plan(kb, patient(**patch))
    assert plan.diagnosis.status == "secondary_suspected"
    assert flag in [f.id for f in plan.diagnosis.red_flags]
    workup = plan.recommendations[0]
    assert workup.id == "mri_workup" and workup.status == "recommended" and workup.category == "workup"
    assert any("before any definitive treatment" in line for line in workup.rationale)
    critical = next(a for a in plan.alerts if a.id == "secondary_hfs_suspected")
    assert critical.severity == "critical" and critical.references
    assert {"mvd", "botulinum_toxin"} <= set(critical.affects)
    assert all(r.status == "deferred" for r in plan.recommendations if r.id in critical.affects)


@pytest.mark.parametrize(
    ("patch", "flag"),
    [
        ({"imaging": MRI_NOT_DONE}, "no_mri"),
        ({"onset_site": "lower_face", "regions": ["mouth", "periocular"], "imaging": MRI_NOT_DONE}, "lower_face_onset"),
        ({"age": 33, "duration_months": 24, "imaging": MRI_NOT_DONE}, "young_onset"),
    ],
)
def test_imaging_prompts_call_for_mri_without_calling_it_secondary(
    kb: KnowledgeBase, patient: Any, patch: dict[str, Any], flag: str
) -> None:
    plan = _plan(kb, patient(**patch))
    assert plan.diagnosis.status == "primary_hfs_likely"
    assert flag in [f.id for f in plan.diagnosis.red_flags]
    assert {f.kind for f in plan.diagnosis.red_flags} == {"imaging_prompt"}
    assert plan.recommendations[0].id == "mri_workup"


def test_young_onset_is_marked_disputed(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(age=30, duration_months=12, imaging=MRI_NOT_DONE))
    assert [f.id for f in plan.diagnosis.red_flags] == ["no_mri", "young_onset"]
    flag = plan.diagnosis.red_flags[1]
    assert flag.evidence.note is not None and flag.evidence.note.startswith("[DISPUTED]")
    assert flag.evidence.certainty == "very_low"


@pytest.mark.parametrize(
    ("patch", "differential", "status"),
    [
        ({"side": "bilateral", "findings": {"bilateral_synchronous": True}}, "blepharospasm", "secondary_suspected"),
        ({"history": {"bells_palsy": True}}, "post_paralytic_synkinesis", "alternative_suspected"),
        ({"regions": ["periocular"]}, "facial_myokymia", "primary_hfs_likely"),
        (
            {"onset_site": "lower_face", "regions": ["mouth"], "findings": {"babinski2_sign": False}},
            "functional_hfs",
            "alternative_suspected",
        ),
    ],
)
def test_mimics_are_listed_with_reasons(
    kb: KnowledgeBase, patient: Any, patch: dict[str, Any], differential: str, status: str
) -> None:
    plan = _plan(kb, patient(**patch))
    listed = {d.id: d for d in plan.diagnosis.differentials}
    assert differential in listed and listed[differential].reason
    assert plan.diagnosis.status == status


def test_unknown_essential_findings_mean_insufficient_information(kb: KnowledgeBase, patient: Any) -> None:
    data = patient()
    del data["findings"]["hearing_loss"]
    plan = _plan(kb, data)
    assert plan.diagnosis.status == "insufficient_information"
    assert plan.diagnosis.unknown_findings == ["findings.hearing_loss"]
    assert "Not recorded: Hearing loss; needed to rule out secondary HFS." in plan.recommendations[0].rationale
    assert "Not recorded (needed to rule out secondary HFS): Hearing loss" in render_text(plan)


def test_secondary_outranks_alternative(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(history={"bells_palsy": True}, findings={"hearing_loss": True}))
    assert plan.diagnosis.status == "secondary_suspected"


def test_unknown_medication_and_comorbidity_are_unchecked_not_dropped(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(medications=["Zorblax"], comorbidities=["gout"]))
    ids = {a.id: a for a in plan.alerts}
    assert "unchecked:drug:Zorblax" in ids and ids["unchecked:drug:Zorblax"].affects == ["drug:Zorblax"]
    assert "NOT been checked" in ids["unchecked:drug:Zorblax"].message
    assert "unchecked:comorbidity:gout" in ids


def test_known_comorbidity_without_a_rule_is_unchecked_info(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(comorbidities=["High blood pressure", "myasthenia"]))
    unchecked = {a.id: a for a in plan.alerts if a.id.startswith("unchecked:comorbidity")}
    assert list(unchecked) == ["unchecked:comorbidity:hypertension"]  # myasthenia is covered by a rule
    assert unchecked["unchecked:comorbidity:hypertension"].severity == "info"


def test_every_cited_reference_is_in_the_registry(kb: KnowledgeBase, patient: Any) -> None:
    plan = _plan(kb, patient(findings={"tonic_spasm": True}, severity={"smc_grade": 3}, hfs7=[1] * 7))
    cited = set(plan.references)
    assert cited and cited <= set(kb.references)
    for rec in plan.recommendations:
        assert set(rec.evidence.references) <= cited


def test_plan_json_has_the_contract_keys(kb: KnowledgeBase, patient: Any) -> None:
    data = _plan(kb, patient()).model_dump(mode="json")
    assert {
        "hemicare_version",
        "knowledge_version",
        "patient_id",
        "diagnosis",
        "scores",
        "recommendations",
        "alerts",
        "tcm",
        "schedule",
    } <= set(data)
    assert set(data["diagnosis"]) >= {"status", "red_flags", "differentials"}
