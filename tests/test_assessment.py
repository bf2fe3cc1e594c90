"""Assessment intake: good input validates; every kind of bad input is named by field path."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from hemicare.engine import InputError, load_assessment, load_default, validate_assessment
from hemicare.engine.assessment import Hfs30ByDomain
from hemicare.engine.intake import validate_assessment_json
from hemicare.synthetic import cohort

from .conftest import EXAMPLES


def _problems(data: dict[str, Any], via: str = "mapping") -> dict[str, str]:
    with pytest.raises(InputError) as info:
        if via == "json":
            validate_assessment_json(json.dumps(data).encode(), parse=json.loads)
        else:
            validate_assessment(data)
    return {p.path: p.message for p in info.value.problems}


def test_examples_validate() -> None:
    files = sorted(EXAMPLES.glob("*.yaml")) + sorted(EXAMPLES.glob("*.json"))
    assert len(files) >= 3
    for path in files:
        assert load_assessment(path).id


def test_json_and_yaml_give_the_same_assessment(tmp_path: Path) -> None:
    from_yaml = load_assessment(EXAMPLES / "demo-001.yaml")
    as_json = tmp_path / "demo.json"
    as_json.write_text(from_yaml.model_dump_json())
    assert load_assessment(as_json) == from_yaml


def test_omitted_findings_are_unknown_not_false(patient: Any) -> None:
    data = patient()
    del data["findings"]
    assessment = validate_assessment(data)
    assert assessment.findings.tonic_spasm is None


@pytest.mark.parametrize(
    ("patch", "path", "fragment"),
    [
        ({"age": "fifty"}, "age", "valid integer"),
        ({"age": 212}, "age", "less than or equal to 120"),
        ({"age": -1}, "age", "greater than or equal to 0"),
        ({"sex": "f"}, "sex", "'female', 'male' or 'other'"),
        ({"side": "both"}, "side", "'left', 'right' or 'bilateral'"),
        ({"regions": ["nose"]}, "regions.0", "'periocular'"),
        ({"regions": []}, "regions", "needs at least 1 entry, got 0"),
        ({"regions": ["periocular", "periocular"]}, "regions", "listed twice"),
        ({"severity": {"smc_grade": 5}}, "severity.smc_grade", "less than or equal to 4"),
        ({"severity": {"cohen_albert": 7}}, "severity.cohen_albert", "less than or equal to 4"),
        ({"hfs7": [1, 2, 3]}, "hfs7", "needs at least 7 entries, got 3"),
        ({"hfs7": [1] * 8}, "hfs7", "takes at most 7 entries, got 8"),
        ({"hfs7": [1, 2, 3, 4, 5, 1, 1]}, "hfs7.4", "less than or equal to 4"),
        ({"hfs30": [1] * 29}, "hfs30", "30 items"),
        ({"anaesthesia_risk_asa": 6}, "anaesthesia_risk_asa", "less than or equal to 5"),
        ({"hla_b1502": "yes"}, "hla_b1502", "'positive', 'negative' or 'unknown'"),
        ({"findings": {"tonic_spasm": "sometimes"}}, "findings.tonic_spasm", "valid boolean"),
        ({"findings": {"tics": True}}, "findings.tics", "unknown field; expected one of"),
        ({"favourite_colour": "blue"}, "favourite_colour", "unknown field; expected one of: age, allergies"),
        ({"tcm": {"pulse": ["bouncy"]}}, "tcm.pulse.0", "'floating'"),
        ({"tcm": {"tongue": {"body": "blue"}}}, "tcm.tongue.body", "'pale'"),
        ({"tcm": {"findings": ["sadness"]}}, "tcm.findings.0", "'acute_onset'"),
        ({"imaging": {"mri": "maybe"}}, "imaging.mri", "'done', 'not_done' or 'planned'"),
        ({"id": "has spaces"}, "id", "use only letters, digits, '.', '_' and '-', starting with a letter or digit"),
        ({"duration_months": 700}, "duration_months", "longer than a 52-year-old has lived"),
    ],
)
def test_bad_input_names_the_field(patient: Any, patch: dict[str, Any], path: str, fragment: str) -> None:
    problems = _problems(patient(**patch))
    assert path in problems, problems
    assert fragment in problems[path]
    assert _problems(patient(**patch), via="json") == problems, "a JSON body must be reported the same way"


def test_json_bodies_validate_like_mappings(patient: Any) -> None:
    kb = load_default()
    documents = [patient(), *cohort(200, kb, today=dt.date(2026, 11, 26))]
    for data in documents:
        raw = json.dumps(data, default=str).encode()
        assert validate_assessment_json(raw, parse=json.loads) == validate_assessment(json.loads(raw))
    for raw in (b"", b"[1, 2]", b"{not json", b'{"age": NaN}', b'"text"'):
        with pytest.raises((InputError, ValueError)) as fast:
            validate_assessment_json(raw, parse=json.loads)
        with pytest.raises((InputError, ValueError)) as slow:
            validate_assessment(json.loads(raw))
        assert str(fast.value) == str(slow.value)


def test_missing_required_fields_are_each_reported() -> None:
    problems = _problems({"id": "x"})
    assert {"age", "sex", "side", "duration_months", "regions"} <= set(problems)
    assert problems["age"] == "is required"


def test_future_date_is_rejected(patient: Any) -> None:
    future = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    problems = _problems(patient(history={"prior_mvd": {"date": future, "result": "cured"}}))
    assert "in the future" in problems["history.prior_mvd.date"]


def test_toxin_session_units_must_add_up(patient: Any) -> None:
    session = {
        "date": "2025-01-10",
        "product": "onabotulinumtoxinA",
        "total_units": 20,
        "sites": [{"site": "upper_lid_medial", "units": 2.5}],
    }
    problems = _problems(patient(history={"botulinum_sessions": [session]}))
    assert "add up to 2.5, but total_units is 20" in problems["history.botulinum_sessions.0"]


def test_imaging_results_need_an_mri(patient: Any) -> None:
    problems = _problems(patient(imaging={"mri": "not_done"}))
    assert "mri is `not_done`" in problems["imaging"]


def test_periocular_onset_needs_the_region(patient: Any) -> None:
    problems = _problems(patient(regions=["cheek"]))
    assert "periocular" in problems["regions"]


def test_hfs30_by_domain_must_hold_thirty_items(patient: Any) -> None:
    domains = {key: [1, 1] for key in Hfs30ByDomain.model_fields}
    problems = _problems(patient(hfs30=domains))
    assert "subscales hold 14" in problems["hfs30"]


def test_several_problems_are_reported_together(patient: Any) -> None:
    problems = _problems(patient(age=500, sex="x", side="top"))
    assert {"age", "sex", "side"} <= set(problems)


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("empty.yaml", "", "is empty"),
        ("broken.yaml", "id: [unclosed\nage: 3", "not valid YAML"),
        ("list.yaml", "- 1\n- 2\n", "mapping of fields, not list"),
        ("broken.json", '{"id": "x",}', "not valid JSON"),
        ("dupe.yaml", "id: a\nid: b\n", "key `id` is given twice"),
        # Aliases to aliases: nine lines made 9**9 values; `hemicare plan` was still walking them when stopped at 60 s.
        ("laughs.yaml", LAUGHS, "line 2 uses the alias *a: write the value out instead"),
        ("deep.yaml", "id: " + "[" * 5000 + "]" * 5000, "nests lists or mappings too deeply to read"),
        ("deep.json", '{"id": ' + "[" * 5000 + "]" * 5000 + "}", "nests lists or mappings too deeply to read"),
    ],
)
def test_malformed_files_are_rejected(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_assessment(path)
    assert fragment in str(info.value)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_assessment(tmp_path / "nope.yaml")


def test_unknown_medication_is_kept(patient: Any) -> None:
    assessment = validate_assessment(patient(medications=["Zorblax 10 mg"]))
    assert assessment.medications == ["Zorblax 10 mg"]


def test_the_assessment_in_words_keeps_not_recorded_apart_from_absent() -> None:
    from hemicare.engine.render import describe_assessment

    base = {"id": "p1", "age": 34, "sex": "female", "side": "right", "duration_months": 5, "regions": ["periocular"]}
    bare = describe_assessment(validate_assessment(base))
    assert bare[0] == "34-year-old female: right-sided spasm for 5 months; regions: periocular."
    assert "Examination findings: none recorded." in bare and "History: none recorded." in bare
    assert not any("absent" in line or "Preferences" in line or "TCM" in line for line in bare)
    assert "MRI: not done." in bare and "Pregnant." not in bare
    full = describe_assessment(
        validate_assessment(
            base
            | {
                "pregnant": True,
                "onset_site": "lower_face",
                "regions": ["periocular", "mouth"],
                "findings": {"hearing_loss": True, "facial_weakness": False},
                "history": {
                    "bells_palsy": False,
                    "prior_mvd": {"date": "2020-03-01", "result": "recurred"},
                    "botulinum_sessions": [
                        {"date": "2025-01-02", "product": "incobotulinumtoxinA", "total_units": 10, "effect_weeks": 9}
                    ],
                },
                "imaging": {"mri": "done", "neurovascular_compression": False},
                "preferences": {"avoid_needles": True},
                "tcm": {"tongue": {"coating": "white_greasy"}, "pulse": ["slippery"]},
            }
        )
    )
    assert full[0].endswith("for 5 months, starting in the lower face; regions: periocular, mouth.")
    # Only what was answered "no" is absent; tonic spasm, never asked, is in neither list.
    assert "Examination findings: Hearing loss. Recorded as absent: Facial weakness." in full
    assert (
        "History: MVD on 2020-03-01 (recurred), toxin on 2025-01-02 (incobotulinumtoxinA 10 U, effect 9 weeks). "
        "Recorded as absent: Bell palsy." in full
    )
    assert "MRI done: neurovascular compression no; structural lesion not recorded." in full
    assert "Pregnant." in full and "Preferences: avoids needles." in full
    assert "TCM findings: coating white greasy; pulse slippery." in full
