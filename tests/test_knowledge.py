"""The knowledge base loads, its rule cases pass, and the loader rejects broken records."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hemicare.cli import app
from hemicare.engine import KnowledgeBase, KnowledgeError, load
from hemicare.engine.check import run_all, run_case, split_items
from hemicare.engine.loader import load_default

runner = CliRunner()


def _all_cases() -> list[tuple[str, str]]:
    kb = load_default()
    return [(rule, case.name) for rule in sorted(kb.cases) for case in kb.cases[rule].cases]


@pytest.mark.parametrize(("rule", "case"), _all_cases())
def test_rule_case(kb: KnowledgeBase, rule: str, case: str) -> None:
    stored = next(c for c in kb.cases[rule].cases if c.name == case)
    result = run_case(kb, rule, stored)
    assert result.passed, result.detail


def test_every_rule_has_a_firing_and_a_silent_case(kb: KnowledgeBase) -> None:
    assert set(kb.cases) == set(kb.rules())
    for cases in kb.cases.values():
        assert {c.expect for c in cases.cases} == {"fires", "silent"}


def test_required_record_kinds_are_present(kb: KnowledgeBase) -> None:
    assert kb.version
    assert "primary_hfs" in kb.conditions
    assert {"smc_grade", "jankovic_severity", "jankovic_frequency", "cohen_albert", "hfs7", "hfs30"} <= set(kb.scales)
    required = {
        "hypertension diabetes heart_failure atrial_fibrillation coronary_disease myasthenia_gravis lambert_eaton "
        "als bleeding_disorder pacemaker icd chronic_kidney_disease liver_disease hypokalaemia glaucoma dry_eye "
        "epilepsy"
    }
    assert set(next(iter(required)).split()) <= set(kb.comorbidities)


def test_marked_items_keep_their_marks(kb: KnowledgeBase) -> None:
    """[unverified] and [DISAGREE] items from the reference sheets stay marked in the data."""
    assert kb.scales["cohen_albert"].evidence.unverified
    assert kb.scales["hfs7"].evidence.unverified
    assert kb.red_flags["young_onset"].evidence.disputed
    assert kb.red_flags["lower_face_onset"].evidence.unverified
    assert kb.red_flags["no_mri"].evidence.disputed


@pytest.mark.parametrize(
    ("written", "generic"),
    [("Tegretol", "carbamazepine"), ("WARFARIN", "warfarin"), ("norvasc", "amlodipine"), ("frusemide", "furosemide")],
)
def test_drug_names_resolve(kb: KnowledgeBase, written: str, generic: str) -> None:
    drug = kb.resolve_drug(written)
    assert drug is not None and drug.id == generic


def test_unknown_drug_does_not_resolve(kb: KnowledgeBase) -> None:
    assert kb.resolve_drug("notarealdrugamab") is None


def _edit(path: Path, change: object) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))


def _problems(root: Path) -> str:
    with pytest.raises(KnowledgeError) as info:
        load(root)
    return str(info.value)


def test_copy_of_tree_loads(kb_tree: Path) -> None:
    assert load(kb_tree).version == load_default().version


def test_unknown_key_is_rejected(kb_tree: Path) -> None:
    _edit(kb_tree / "rules/red_flags/tonic_spasm.yaml", lambda d: d.update(severity="high"))
    assert "severity: Extra inputs are not permitted" in _problems(kb_tree)


def test_reference_missing_from_registry_is_rejected(kb_tree: Path) -> None:
    _edit(kb_tree / "rules/red_flags/tonic_spasm.yaml", lambda d: d["evidence"]["references"].append("pmid:1"))
    assert "reference `pmid:1` is not in references.yaml" in _problems(kb_tree)


def test_unknown_fact_in_rule_is_rejected(kb_tree: Path) -> None:
    _edit(kb_tree / "rules/red_flags/tonic_spasm.yaml", lambda d: d.update(when={"fact": "findings.tonic", "is": True}))
    assert "unknown fact `findings.tonic`" in _problems(kb_tree)


def test_rule_without_cases_is_rejected(kb_tree: Path) -> None:
    (kb_tree / "rules/red_flags/tonic_spasm.cases.yaml").unlink()
    assert "no cases file `tonic_spasm.cases.yaml`" in _problems(kb_tree)


def test_duplicate_id_is_rejected(kb_tree: Path) -> None:
    _edit(kb_tree / "vocab/drugs.yaml", lambda d: d.append(dict(d[0])))
    assert "duplicate id `carbamazepine`" in _problems(kb_tree)


def test_disputed_without_note_is_rejected(kb_tree: Path) -> None:
    _edit(kb_tree / "rules/red_flags/young_onset.yaml", lambda d: d["evidence"].pop("note"))
    assert "must say why in `note`" in _problems(kb_tree)


def test_predicate_with_two_operators_is_rejected(kb_tree: Path) -> None:
    _edit(
        kb_tree / "rules/red_flags/young_onset.yaml",
        lambda d: d.update(when={"fact": "onset_age_years", "lt": 40, "gt": 10}),
    )
    assert "needs exactly one operator" in _problems(kb_tree)


def test_a_safety_message_that_continues_its_title_is_rejected(kb_tree: Path) -> None:
    """An alert reads "title: message" and a refused session "title. message": a message is its own sentence."""
    _edit(kb_tree / "rules/safety/warfarin_needling.yaml", lambda d: d.update(message="bleeding is more likely."))
    assert "warfarin_needling: message: Value error, must start a sentence" in _problems(kb_tree)


def test_an_amount_split_from_its_ingredient_is_rejected(kb_tree: Path) -> None:
    """In a YAML flow list a comma splits an item: "[Wei Jiang (roasted ginger), 1 slice]" is two rows, the second an
    amount of nothing."""

    def split(formulas: list[dict[str, object]]) -> None:
        formulas[0]["other_ingredients"] = ["Wei Jiang (roasted ginger)", "1 slice"]

    _edit(kb_tree / "tcm/formulas.yaml", split)
    assert "'1 slice' starts with an amount" in _problems(kb_tree)


def test_one_item_cut_at_a_comma_in_a_flow_list_is_reported(kb_tree: Path) -> None:
    """YAML splits a flow list at every comma, even inside brackets or a number, and both halves load: the knowledge
    check finds the cuts, naming file and line, and fails."""
    assert split_items(kb_tree) == []
    path = kb_tree / "references.yaml"
    text = path.read_text()
    first = text.index("supports: [")
    cut = (
        text[:first]
        + "supports: [etiological mix (secondary 19%, mimics 18%), 13 RCTs (n=1,262), 361 points, "
        + text[first + len("supports: [") :]
    )
    path.write_text(cut)
    line = cut[:first].count("\n") + 1
    assert split_items(kb_tree) == [
        f"references.yaml:{line}: 'etiological mix (secondary 19%' and 'mimics 18%)' read as one item cut at a comma: "
        "quote it",
        f"references.yaml:{line}: '13 RCTs (n=1' and '262)' read as one item cut at a comma: quote it",
    ]
    checked = runner.invoke(app, ["knowledge", "check", "--root", str(kb_tree)])
    assert checked.exit_code == 1 and "'13 RCTs (n=1' and '262)' read as one item" in checked.stderr


def test_failing_case_is_reported(kb_tree: Path) -> None:
    _edit(kb_tree / "rules/red_flags/young_onset.yaml", lambda d: d["when"]["all"][0].update(lt=60))
    failed = [r for r in run_all(load(kb_tree)) if not r.passed]
    assert [(r.rule, r.case) for r in failed] == [("young_onset", "onset at 40 exactly, no MRI")]


@pytest.mark.parametrize("version", ["2026.13.0", "november", "2026.11", ""])
def test_a_version_not_written_year_month_n_is_refused(kb_tree: Path, version: str) -> None:
    """A decision aid states the month its knowledge base was issued, read from the version."""
    (kb_tree / "VERSION").write_text(version + "\n")
    assert f"VERSION: {version!r} is not YEAR.MONTH.N" in _problems(kb_tree)


def test_decision_aid_text_with_numbers_is_rejected(kb_tree: Path) -> None:
    def change(data: list[dict[str, object]]) -> None:
        data[0]["aid"][0]["text"] = "Cures 91 in 100."  # type: ignore[index]

    _edit(kb_tree / "treatments/surgery.yaml", change)
    assert "may not contain numbers" in _problems(kb_tree)


def test_decision_aid_citing_unknown_figure_is_rejected(kb_tree: Path) -> None:
    def change(data: list[dict[str, object]]) -> None:
        data[0]["aid"][1]["figures"] = ["made_up"]  # type: ignore[index]

    _edit(kb_tree / "treatments/surgery.yaml", change)
    assert "unknown figure `made_up`" in _problems(kb_tree)


def test_every_pmid_doi_and_pmc_reference_can_be_opened(kb: KnowledgeBase) -> None:
    resolvers = {
        "pmid": "https://pubmed.ncbi.nlm.nih.gov/{}/",
        "doi": "https://doi.org/{}",
        "pmc": "https://pmc.ncbi.nlm.nih.gov/articles/{}/",
    }
    counted = 0
    for ref in kb.references.values():
        scheme, _, key = ref.id.partition(":")
        if ref.url:
            assert ref.link == ref.url  # its own address wins
        elif scheme in resolvers:
            assert ref.link == resolvers[scheme].format(key)
            counted += 1
        else:
            assert ref.link is None  # no address is made up for a web page or a book
    assert counted > 20


def test_no_formula_gives_a_herb_more_than_its_reference_maximum(kb: KnowledgeBase) -> None:
    """A plan's formula is prescribed as shown: its doses must not trip the prescription's own dose check."""
    above = [
        (formula.id, ingredient.herb, ingredient.dose_max_g or ingredient.dose_min_g)
        for formula in kb.formulas.values()
        for ingredient in formula.ingredients
        if (herb := kb.resolve_herb(ingredient.herb)) is not None
        and herb.decoction_max_g is not None
        and (ingredient.dose_max_g or ingredient.dose_min_g or 0) > herb.decoction_max_g
    ]
    assert above == []
    assert {h.latin for h in kb.herbs.values() if h.decoction_max_g} >= {"Scorpio", "Scolopendra", "Rhizoma Typhonii"}


def test_a_powder_dose_is_below_the_decoction_dose_and_in_the_sheets_words(kb: KnowledgeBase) -> None:
    """A powder swallows the whole herb: its reference top is below the decoction's, and the words of the sheet that
    give it stand beside it (a typed 10 for 1 would hold a powder to a decoction's dose)."""
    powders = {h.latin: h for h in kb.herbs.values() if h.powder_max_g is not None}
    assert set(powders) == {"Scorpio", "Scolopendra", "Bombyx Batryticatus"}
    for herb in powders.values():
        assert herb.decoction_max_g is not None and herb.powder_max_g is not None
        assert herb.powder_max_g < herb.decoction_max_g
        note = herb.dose_note or ""
        assert f"{herb.powder_max_g:g} g powder" in note or f"powder 0.6-{herb.powder_max_g:g} g" in note
