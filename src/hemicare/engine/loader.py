"""Load the knowledge base from its YAML tree, validate it strictly, and cache it.

Errors name the file and the record. Every problem found is reported, not only the first, so one run of
``hemicare knowledge check`` shows everything a reviewer has to fix.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from hemicare.engine.assessment import Pulse, TcmFinding, TongueBody, TongueCoating
from hemicare.engine.errors import KnowledgeError
from hemicare.engine.rules import fact_names
from hemicare.engine.schema import (
    Acupoint,
    AcupunctureProtocol,
    AdviceItem,
    ClinicalCondition,
    Comorbidity,
    Condition,
    Differential,
    Drug,
    DrugClass,
    Evidence,
    Formula,
    Herb,
    Modifier,
    Pattern,
    PatternCase,
    PatternScoring,
    Policy,
    RecallSchedule,
    RedFlag,
    Reference,
    RestrictedNames,
    RuleCases,
    SafetyRule,
    Scale,
    ToxinProgramme,
    Treatment,
    Triage,
)

M = TypeVar("M", bound=BaseModel)

# libyaml's loader parses the knowledge tree several times faster; the pure-Python one is the fallback.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def default_root() -> Path:
    """The knowledge tree shipped inside the package."""
    return Path(str(resources.files("hemicare") / "knowledge"))


@lru_cache(maxsize=4096)
def normalise(name: str) -> str:
    """The form under which names are matched: case-folded, single spaces, no punctuation at the ends.

    Remembered for recent names: every plan matches the same site, drug and herb names again.
    """
    return re.sub(r"[\s_\-]+", " ", name.casefold()).strip(" .,;")


@dataclass
class KnowledgeBase:
    """Every knowledge record, indexed by id."""

    version: str
    root: Path
    references: dict[str, Reference] = field(default_factory=dict)
    comorbidities: dict[str, Comorbidity] = field(default_factory=dict)
    drug_classes: dict[str, DrugClass] = field(default_factory=dict)
    drugs: dict[str, Drug] = field(default_factory=dict)
    acupoints: dict[str, Acupoint] = field(default_factory=dict)
    herbs: dict[str, Herb] = field(default_factory=dict)
    conditions: dict[str, ClinicalCondition] = field(default_factory=dict)
    scales: dict[str, Scale] = field(default_factory=dict)
    treatments: dict[str, Treatment] = field(default_factory=dict)
    red_flags: dict[str, RedFlag] = field(default_factory=dict)
    differentials: dict[str, Differential] = field(default_factory=dict)
    modifiers: dict[str, Modifier] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    toxin: ToxinProgramme | None = None
    formulas: dict[str, Formula] = field(default_factory=dict)
    patterns: dict[str, Pattern] = field(default_factory=dict)
    advice: dict[str, AdviceItem] = field(default_factory=dict)
    pattern_cases: list[PatternCase] = field(default_factory=list)
    pattern_scoring: PatternScoring | None = None
    acupuncture: AcupunctureProtocol | None = None
    safety: dict[str, SafetyRule] = field(default_factory=dict)
    restricted: RestrictedNames | None = None
    recalls: RecallSchedule | None = None
    _herb_index: dict[str, str] = field(default_factory=dict)
    _covered_herbs: frozenset[str] = frozenset()
    _covered_comorbidities: frozenset[str] = frozenset()
    _rule_herbs: dict[str, frozenset[str]] = field(default_factory=dict)
    _rule_drugs: dict[str, frozenset[str]] = field(default_factory=dict)
    cases: dict[str, RuleCases] = field(default_factory=dict)
    triage: Triage | None = None
    baseline_patient: dict[str, Any] = field(default_factory=dict)
    _drug_index: dict[str, str] = field(default_factory=dict)
    _comorbidity_index: dict[str, str] = field(default_factory=dict)
    _covered_drugs: frozenset[str] = frozenset()

    def resolve_drug(self, written: str) -> Drug | None:
        """The drug a clinician's wording names (generic, synonym or brand, any case), or None."""
        drug_id = self._drug_index.get(normalise(written))
        return self.drugs[drug_id] if drug_id else None

    def resolve_comorbidity(self, written: str) -> Comorbidity | None:
        """The vocabulary term a written comorbidity names, or None."""
        term_id = self._comorbidity_index.get(normalise(written))
        return self.comorbidities[term_id] if term_id else None

    def resolve_herb(self, written: str) -> Herb | None:
        """The herb a written name means (Latin, pinyin or Chinese, any case), or None."""
        latin = self._herb_index.get(normalise(written))
        return self.herbs[latin] if latin else None

    def name_matches(self, written: str, *, blocked: bool) -> bool:
        """Whether a written herb name contains a blocked (or an ambiguous) name fragment."""
        if self.restricted is None:
            return False
        fragments = self.restricted.blocked if blocked else self.restricted.ambiguous
        name = normalise(written)
        return any(normalise(fragment) in name for fragment in fragments)

    def covered_drugs(self) -> frozenset[str]:
        """Drugs that at least one safety rule names, directly or through a class; the rest are unchecked."""
        return self._covered_drugs

    def covered_herbs(self) -> frozenset[str]:
        """Herbs (Latin) that at least one safety rule names or selects; the rest are unchecked."""
        return self._covered_herbs

    def covered_comorbidities(self) -> frozenset[str]:
        """Comorbidities that at least one safety rule tests."""
        return self._covered_comorbidities

    def rule_herbs(self, rule_id: str) -> frozenset[str]:
        """The herbs (Latin) a safety rule targets: named, or selected by pregnancy status or toxicity."""
        return self._rule_herbs[rule_id]

    def rule_drugs(self, rule_id: str) -> frozenset[str]:
        """The drugs a safety rule targets: named, or through a named class."""
        return self._rule_drugs[rule_id]

    def rules(self) -> dict[str, RedFlag | Differential | Modifier | SafetyRule]:
        """Every rule, each of which needs cases."""
        return {**self.red_flags, **self.differentials, **self.modifiers, **self.safety}

    def treatment_names(self) -> dict[str, str]:
        """Each treatment's name by its id, as recommendations name them."""
        return {treatment.id: treatment.name for treatment in self.treatments.values()}

    def reference_links(self) -> dict[str, str | None]:
        """Each reference's address by its id, where it has one, for a citation a reader can open."""
        return {ref.id: ref.link for ref in self.references.values()}

    def scale_names(self) -> dict[str, str]:
        """Each rating scale's or questionnaire's name by its id ("hfs7": "HFS-7 quality-of-life scale")."""
        return {scale_id: scale.name for scale_id, scale in self.scales.items()}

    def policy(self, policy_id: str) -> float:
        """A local clinic setting by id."""
        return self.policies[policy_id].value

    def toxin_programme(self) -> ToxinProgramme:
        """The toxin planner's data (the loader guarantees it is present)."""
        if self.toxin is None:
            raise KnowledgeError(["toxin.yaml was not loaded"])
        return self.toxin


class _Collector:
    """Gathers problems across the whole tree before failing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[str] = []

    def where(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def read(self, path: Path) -> Any:
        try:
            return yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
        except (OSError, yaml.YAMLError) as exc:
            self.problems.append(f"{self.where(path)}: cannot read YAML: {exc}")
            return None

    def model(self, path: Path, data: Any, model: type[M], label: str) -> M | None:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(part) for part in err["loc"])
                self.problems.append(f"{self.where(path)}: {label}: {loc or '(record)'}: {err['msg']}")
            return None

    def records(self, path: Path, model: type[M], key: str) -> list[M]:
        data = self.read(path)
        if data is None:
            return []
        if not isinstance(data, list):
            self.problems.append(f"{self.where(path)}: expected a list of records")
            return []
        out: list[M] = []
        for index, item in enumerate(data):
            label = str(item.get(key, f"#{index}")) if isinstance(item, dict) else f"#{index}"
            record = self.model(path, item, model, label)
            if record is not None:
                out.append(record)
        return out

    def index(self, path: Path, records: Iterable[M], key: str, into: dict[str, M]) -> None:
        for record in records:
            record_id = str(getattr(record, key))
            if record_id in into:
                self.problems.append(f"{self.where(path)}: duplicate id `{record_id}`")
            else:
                into[record_id] = record


def _evidence_blocks(value: Any) -> Iterable[Evidence]:
    """Every Evidence block inside a record, however deeply nested."""
    if isinstance(value, Evidence):
        yield value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _evidence_blocks(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _evidence_blocks(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _evidence_blocks(item)


def _index_names(
    kb_items: dict[str, Any], names_of: Any, index: dict[str, str], collector: _Collector, kind: str
) -> None:
    for item_id, item in kb_items.items():
        for name in names_of(item):
            key = normalise(name)
            other = index.get(key)
            if other is not None and other != item_id:
                collector.problems.append(f"{kind} name `{name}` is claimed by both `{other}` and `{item_id}`")
            index[key] = item_id


_CALENDAR_VERSION = re.compile(r"(\d{4})\.(\d{1,2})\.\d+")


def issued_month(version: str) -> dt.date | None:
    """The first day of the month a knowledge base version (YEAR.MONTH.N) was issued; None if it is not so written."""
    found = _CALENDAR_VERSION.fullmatch(version)
    if found is None or not 1 <= int(found.group(2)) <= 12:
        return None
    return dt.date(int(found.group(1)), int(found.group(2)), 1)


def load(root: Path | None = None) -> KnowledgeBase:
    """Load and validate the knowledge tree at ``root`` (the packaged one by default).

    Raises :class:`KnowledgeError` listing every problem found.
    """
    root = root or default_root()
    c = _Collector(root)
    version_file = root / "VERSION"
    if not version_file.is_file():
        raise KnowledgeError([f"{root}: no VERSION file; is this a knowledge tree?"])
    kb = KnowledgeBase(version=version_file.read_text(encoding="utf-8").strip(), root=root)
    if issued_month(kb.version) is None:
        raise KnowledgeError([f"VERSION: {kb.version!r} is not YEAR.MONTH.N (the year and month it was issued)"])

    flat: list[tuple[str, type[BaseModel], str, dict[str, Any]]] = [
        ("references.yaml", Reference, "id", kb.references),
        ("conditions.yaml", ClinicalCondition, "id", kb.conditions),
        ("scales.yaml", Scale, "id", kb.scales),
        ("vocab/comorbidities.yaml", Comorbidity, "id", kb.comorbidities),
        ("vocab/drug_classes.yaml", DrugClass, "id", kb.drug_classes),
        ("vocab/drugs.yaml", Drug, "id", kb.drugs),
        ("tcm/acupoints.yaml", Acupoint, "code", kb.acupoints),
        ("tcm/herbs.yaml", Herb, "latin", kb.herbs),
        ("policy.yaml", Policy, "id", kb.policies),
        ("tcm/formulas.yaml", Formula, "id", kb.formulas),
        ("tcm/patterns.yaml", Pattern, "id", kb.patterns),
        ("tcm/advice.yaml", AdviceItem, "id", kb.advice),
    ]
    for relative, model, key, into in flat:
        path = root / relative
        if not path.is_file():
            c.problems.append(f"{relative}: missing")
            continue
        c.index(path, c.records(path, model, key), key, into)

    for path in sorted((root / "treatments").glob("*.yaml")):
        c.index(path, c.records(path, Treatment, "id"), "id", kb.treatments)

    rule_dirs: list[tuple[str, type[BaseModel], dict[str, Any]]] = [
        ("rules/red_flags", RedFlag, kb.red_flags),
        ("rules/differentials", Differential, kb.differentials),
        ("rules/modifiers", Modifier, kb.modifiers),
        ("rules/safety", SafetyRule, kb.safety),
    ]
    for relative, model, into in rule_dirs:
        for path in sorted((root / relative).glob("*.yaml")):
            if path.name.endswith(".cases.yaml"):
                cases = c.model(path, c.read(path), RuleCases, path.name)
                if cases is not None:
                    c.index(path, [cases], "rule", kb.cases)
                continue
            record = c.model(path, c.read(path), model, path.stem)
            if record is not None:
                if getattr(record, "id", None) != path.stem:
                    c.problems.append(f"{c.where(path)}: record id must match the file name `{path.stem}`")
                c.index(path, [record], "id", into)

    triage_path = root / "triage.yaml"
    kb.triage = c.model(triage_path, c.read(triage_path), Triage, "triage")
    toxin_path = root / "toxin.yaml"
    kb.toxin = c.model(toxin_path, c.read(toxin_path), ToxinProgramme, "toxin")
    scoring_path = root / "tcm" / "scoring.yaml"
    kb.pattern_scoring = c.model(scoring_path, c.read(scoring_path), PatternScoring, "scoring")
    acupuncture_path = root / "tcm" / "acupuncture.yaml"
    kb.acupuncture = c.model(acupuncture_path, c.read(acupuncture_path), AcupunctureProtocol, "acupuncture")
    kb.pattern_cases = c.records(root / "tcm" / "pattern_cases.yaml", PatternCase, "name")
    recalls_path = root / "recalls.yaml"
    kb.recalls = c.model(recalls_path, c.read(recalls_path), RecallSchedule, "recalls")
    restricted_path = root / "tcm" / "restricted_names.yaml"
    kb.restricted = c.model(restricted_path, c.read(restricted_path), RestrictedNames, "restricted names")
    baseline = c.read(root / "cases" / "baseline.yaml")
    kb.baseline_patient = baseline if isinstance(baseline, dict) else {}

    _cross_check(kb, c)
    _index_names(kb.drugs, lambda d: [d.id, d.label, *d.synonyms, *d.brands], kb._drug_index, c, "drug")
    _index_names(kb.comorbidities, lambda t: [t.id, t.label, *t.synonyms], kb._comorbidity_index, c, "comorbidity")
    _index_names(kb.herbs, lambda h: [h.latin, h.pinyin, h.chinese], kb._herb_index, c, "herb")
    _coverage(kb)
    if c.problems:
        raise KnowledgeError(c.problems)
    return kb


def _cross_check(kb: KnowledgeBase, c: _Collector) -> None:
    """References resolve, rules name known facts and vocabulary, every rule has cases."""
    known_facts = fact_names()
    collections: dict[str, dict[str, Any]] = {
        "condition": kb.conditions,
        "scale": kb.scales,
        "treatment": kb.treatments,
        "red flag": kb.red_flags,
        "differential": kb.differentials,
        "acupoint": kb.acupoints,
        "herb": kb.herbs,
        "modifier": kb.modifiers,
        "toxin programme": {"toxin": kb.toxin} if kb.toxin else {},
        "formula": kb.formulas,
        "pattern": kb.patterns,
        "advice": kb.advice,
        "acupuncture protocol": {"acupuncture": kb.acupuncture} if kb.acupuncture else {},
        "safety rule": kb.safety,
        "restricted names": {"restricted": kb.restricted} if kb.restricted else {},
        "recall schedule": {"recalls": kb.recalls} if kb.recalls else {},
    }
    for kind, items in collections.items():
        for item_id, item in items.items():
            for evidence in _evidence_blocks(item):
                for ref in evidence.references:
                    if ref not in kb.references:
                        c.problems.append(f"{kind} `{item_id}`: reference `{ref}` is not in references.yaml")
    if kb.triage is not None:
        for ref in kb.triage.evidence.references:
            if ref not in kb.references:
                c.problems.append(f"triage: reference `{ref}` is not in references.yaml")
        for name in kb.triage.essential_findings:
            if name not in known_facts:
                c.problems.append(f"triage: essential finding `{name}` is not a known fact")
    for rule_id, rule in kb.rules().items():
        if rule.when is None:
            continue
        for name in sorted(rule.when.facts() - known_facts):
            c.problems.append(f"rule `{rule_id}`: unknown fact `{name}`")
        if rule_id not in kb.cases:
            c.problems.append(f"rule `{rule_id}`: no cases file `{rule_id}.cases.yaml` beside it")
    for rule_id in kb.cases:
        if rule_id not in kb.rules():
            c.problems.append(f"cases for `{rule_id}`: no such rule")
    for treatment in kb.treatments.values():
        figure_ids = [f.id for f in treatment.figures]
        if len(set(figure_ids)) != len(figure_ids):
            c.problems.append(f"treatment `{treatment.id}`: duplicate figure ids")
        for answer in treatment.aid:
            for figure_id in answer.figures:
                if figure_id not in figure_ids:
                    c.problems.append(f"treatment `{treatment.id}`: decision aid cites unknown figure `{figure_id}`")
    _check_tcm(kb, c)
    _check_safety(kb, c)
    for modifier in kb.modifiers.values():
        if modifier.treatment not in kb.treatments:
            c.problems.append(f"modifier `{modifier.id}`: unknown treatment `{modifier.treatment}`")
    for differential in kb.differentials.values():
        if differential.condition not in kb.conditions:
            c.problems.append(f"differential `{differential.id}`: unknown condition `{differential.condition}`")
    for drug in kb.drugs.values():
        for cls in drug.classes:
            if cls not in kb.drug_classes:
                c.problems.append(f"drug `{drug.id}`: unknown class `{cls}`")
    for scale in kb.scales.values():
        if scale.kind == "graded":
            values = sorted(level.value for level in scale.levels)
            if values != list(range(scale.min, scale.max + 1)):
                c.problems.append(f"scale `{scale.id}`: levels must cover {scale.min}..{scale.max} exactly")


def _named(condition: Condition | None, fact: str) -> set[str]:
    """Values a condition tests a list fact for (``contains``, ``contains_any``, ``in``)."""
    if condition is None:
        return set()
    found: set[str] = set()
    if condition.fact == fact:
        found |= {condition.contains} if condition.contains else set()
        found |= set(condition.contains_any or [])
        found |= {str(v) for v in condition.in_ or []}
    for child in (condition.all or []) + (condition.any or []) + ([condition.not_] if condition.not_ else []):
        found |= _named(child, fact)
    return found


def _drugs_of_classes(kb: KnowledgeBase, classes: set[str]) -> set[str]:
    return {d.id for d in kb.drugs.values() if classes & set(d.classes)}


def _coverage(kb: KnowledgeBase) -> None:
    """Each safety rule's targeted herbs and drugs, and what the rules know about as a whole: everything else is
    reported as unchecked. Computed once here so that plans never re-derive it."""
    drugs: set[str] = set()
    classes: set[str] = set()
    herbs: set[str] = set()
    comorbidities: set[str] = set()
    for rule in kb.safety.values():
        targets = rule.targets
        rule_herbs = set(targets.herbs) | {h.latin for h in kb.herbs.values() if h.pregnancy in targets.herb_pregnancy}
        if targets.toxic_herbs:
            rule_herbs |= {h.latin for h in kb.herbs.values() if h.toxic}
        kb._rule_herbs[rule.id] = frozenset(rule_herbs)
        kb._rule_drugs[rule.id] = frozenset(set(targets.drugs) | _drugs_of_classes(kb, set(targets.drug_classes)))
        drugs |= kb._rule_drugs[rule.id] | _named(rule.when, "drugs")
        classes |= _named(rule.when, "drug_classes")
        herbs |= rule_herbs | _named(rule.when, "herb_ids")
        comorbidities |= _named(rule.when, "comorbidity_ids")
    drugs |= _drugs_of_classes(kb, classes)
    kb._covered_drugs = frozenset(drugs)
    kb._covered_herbs = frozenset(herbs)
    kb._covered_comorbidities = frozenset(comorbidities)


def _check_safety(kb: KnowledgeBase, c: _Collector) -> None:
    """Safety rules target only known recommendations, points, herbs, drugs and classes."""
    for rule in kb.safety.values():
        targets = rule.targets
        named: list[tuple[str, list[str], dict[str, Any]]] = [
            ("recommendation", targets.recommendations, kb.treatments),
            ("acupoint", targets.acupoints, kb.acupoints),
            ("herb", targets.herbs, kb.herbs),
            ("drug", targets.drugs, kb.drugs),
            ("drug class", targets.drug_classes, kb.drug_classes),
        ]
        for kind, ids, known in named:
            for item_id in ids:
                if item_id not in known:
                    c.problems.append(f"safety rule `{rule.id}`: unknown {kind} `{item_id}`")


_VOCABULARY: dict[str, set[str]] = {
    "finding": {t.value for t in TcmFinding},
    "tongue_body": {t.value for t in TongueBody},
    "tongue_coating": {t.value for t in TongueCoating},
    "pulse": {t.value for t in Pulse},
}


def _check_tcm(kb: KnowledgeBase, c: _Collector) -> None:
    """TCM records name only known points, herbs, formulas, patterns, advice and vocabulary."""
    for formula in kb.formulas.values():
        for ingredient in formula.ingredients:
            if ingredient.herb not in kb.herbs:
                c.problems.append(f"formula `{formula.id}`: unknown herb `{ingredient.herb}`")
        for pattern_id in formula.not_for_patterns:
            if pattern_id not in kb.patterns:
                c.problems.append(f"formula `{formula.id}`: unknown pattern `{pattern_id}`")
    for pattern in kb.patterns.values():
        for indicator in pattern.supports + pattern.contradicts:
            known = _VOCABULARY.get(indicator.kind, set(kb.comorbidities))
            if indicator.value not in known:
                c.problems.append(f"pattern `{pattern.id}`: unknown {indicator.kind} `{indicator.value}`")
        for code in pattern.points:
            if code not in kb.acupoints:
                c.problems.append(f"pattern `{pattern.id}`: unknown acupoint `{code}`")
        formulas = [pattern.formula, *pattern.formula_if_secondary.values()]
        formulas += [choice.formula for choice in pattern.other_formulas]
        for formula_id in formulas:
            if formula_id is not None and formula_id not in kb.formulas:
                c.problems.append(f"pattern `{pattern.id}`: unknown formula `{formula_id}`")
        for other in pattern.formula_if_secondary:
            if other not in kb.patterns:
                c.problems.append(f"pattern `{pattern.id}`: unknown pattern `{other}`")
        for advice_id in pattern.diet:
            if advice_id not in kb.advice:
                c.problems.append(f"pattern `{pattern.id}`: unknown advice `{advice_id}`")
    for item in kb.advice.values():
        for pattern_id in item.patterns:
            if pattern_id not in kb.patterns:
                c.problems.append(f"advice `{item.id}`: unknown pattern `{pattern_id}`")
    if kb.acupuncture is not None:
        codes = list(kb.acupuncture.always) + [p for r in kb.acupuncture.regions for p in r.points]
        for code in codes:
            if code not in kb.acupoints:
                c.problems.append(f"acupuncture protocol: unknown acupoint `{code}`")
    for case in kb.pattern_cases:
        if case.pattern is not None and case.pattern not in kb.patterns:
            c.problems.append(f"pattern case `{case.name}`: unknown pattern `{case.pattern}`")
    covered = {case.pattern for case in kb.pattern_cases if case.expect == "selects"}
    rejected = {case.pattern for case in kb.pattern_cases if case.expect == "not_selected"}
    for pattern_id in kb.patterns:
        if pattern_id not in covered:
            c.problems.append(f"pattern `{pattern_id}`: no case that must select it")
    if None not in covered:
        c.problems.append("pattern cases: none where no pattern should fit")
    if not rejected:
        c.problems.append("pattern cases: none that must not select a pattern")


@cache
def load_default() -> KnowledgeBase:
    """The packaged knowledge base, loaded once per process."""
    return load()
