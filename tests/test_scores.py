"""Each score is computed from the assessment and read against its knowledge-base scale."""

from __future__ import annotations

from typing import Any

import pytest

from hemicare.engine import KnowledgeBase, validate_assessment
from hemicare.engine.assessment import Hfs30ByDomain
from hemicare.engine.scores import score


def _scores(kb: KnowledgeBase, data: dict[str, Any]) -> dict[str, Any]:
    return {k: v.model_dump() for k, v in score(validate_assessment(data), kb).items()}


@pytest.mark.parametrize(("grade", "label"), [(1, "Grade I"), (2, "Grade II"), (3, "Grade III"), (4, "Grade IV")])
def test_smc_grade(kb: KnowledgeBase, patient: Any, grade: int, label: str) -> None:
    result = _scores(kb, patient(severity={"smc_grade": grade}))["smc_grade"]
    assert result["value"] == grade and result["label"] == label
    assert result["interpretation"].startswith(label)


def test_jankovic_subscales_and_total(kb: KnowledgeBase, patient: Any) -> None:
    out = _scores(kb, patient(severity={"jankovic_severity": 3, "jankovic_frequency": 2}))
    assert out["jankovic_severity"]["label"] == "Moderate"
    assert out["jankovic_frequency"]["label"] == "Fluttering"
    assert out["jankovic_total"]["value"] == 5 and out["jankovic_total"]["max"] == 8
    assert "blepharospasm, not in HFS" in out["jankovic_total"]["interpretation"]


def test_jankovic_total_needs_both_subscales(kb: KnowledgeBase, patient: Any) -> None:
    out = _scores(kb, patient(severity={"jankovic_severity": 3}))
    assert "jankovic_severity" in out and "jankovic_total" not in out


def test_cohen_albert_keeps_unverified_mark(kb: KnowledgeBase, patient: Any) -> None:
    result = _scores(kb, patient(severity={"cohen_albert": 0}))["cohen_albert"]
    assert result["interpretation"] == "0: No spasm"
    assert result["evidence"]["note"].startswith("[UNVERIFIED]")
    assert result["evidence"]["certainty"] == "very_low"


def test_hfs7_total_and_mcid(kb: KnowledgeBase, patient: Any) -> None:
    result = _scores(kb, patient(hfs7=[4, 4, 4, 4, 4, 4, 3]))["hfs7"]
    assert result["value"] == 27 and result["max"] == 28
    assert "96% of the range" in result["interpretation"]
    assert "2.63 points" in result["interpretation"]


def test_hfs30_flat_list_gives_total_only(kb: KnowledgeBase, patient: Any) -> None:
    result = _scores(kb, patient(hfs30=[2] * 30))["hfs30"]
    assert result["value"] == 60 and result["domains"] == {}
    assert "grouped by subscale" in result["interpretation"]


def test_hfs30_by_domain_gives_domain_scores(kb: KnowledgeBase, patient: Any) -> None:
    sizes = [5, 5, 4, 4, 4, 4, 4]
    answers = {
        name: [index % 5] * size
        for index, (name, size) in enumerate(zip(Hfs30ByDomain.model_fields, sizes, strict=True))
    }
    result = _scores(kb, patient(hfs30=answers))["hfs30"]
    assert result["domains"]["mobility"] == {"value": 0, "max": 20}
    assert result["domains"]["activities_of_daily_living"] == {"value": 5, "max": 20}
    assert result["domains"]["communication"] == {"value": 4, "max": 16}
    assert result["value"] == sum(d["value"] for d in result["domains"].values())


def test_nothing_recorded_gives_no_scores(kb: KnowledgeBase, patient: Any) -> None:
    assert _scores(kb, patient()) == {}
