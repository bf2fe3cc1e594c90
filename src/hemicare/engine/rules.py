"""Facts about an assessment, and the evaluation of knowledge-base conditions over them.

A fact is a dotted path into the assessment (``findings.tonic_spasm``) or a derived value computed here
(``onset_age_years``, ``drug_classes``). Rules may name only facts in :func:`fact_names`, which the loader checks,
so a typo in a rule is a load error rather than a rule that never fires.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, Union

from pydantic import BaseModel

from hemicare.engine.assessment import Assessment

if TYPE_CHECKING:
    from hemicare.engine.loader import KnowledgeBase
    from hemicare.engine.schema import Condition

Facts = Mapping[str, Any]

DERIVED_FACTS: dict[str, str] = {
    "onset_age_years": "Age at onset in years (age minus symptom duration)",
    "drugs": "Generic names of the medications the knowledge base recognised",
    "drug_classes": "Classes of the recognised medications",
    "comorbidity_ids": "Comorbidities the knowledge base recognised, as vocabulary ids",
    "unknown_medications": "Medications as written that the knowledge base does not recognise",
    "unknown_comorbidities": "Comorbidities as written that the knowledge base does not recognise",
    "toxin_session_count": "Number of botulinum-toxin sessions in the history",
    "herb_ids": "Latin names of the patient's own herbs that the knowledge base recognised",
    "unknown_herbs": "The patient's own herbs, as written, that the knowledge base does not recognise",
    "blocked_herbs": "The patient's own herbs whose names match a blocked herb (e.g. Aristolochia)",
    "ambiguous_herbs": "The patient's own herbs whose names are shared by several species",
    "ancestry_terms": "Ancestry entries, normalised (lower case, underscores)",
    "allergy_terms": "Allergies, normalised (lower case, underscores)",
}


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside ``Model | None``, or None when the annotation is not a single model."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        models = [arg for arg in typing.get_args(annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
        others = [arg for arg in typing.get_args(annotation) if arg is not type(None) and arg not in models]
        if len(models) == 1 and not others:
            return models[0]
    return None


def _paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        names.add(path)
        inner = model_of(field.annotation)
        if inner is not None:
            names |= _paths(inner, f"{path}.")
    return names


@cache
def fact_names() -> frozenset[str]:
    """Every fact a rule may test."""
    return frozenset(_paths(Assessment) | set(DERIVED_FACTS))


def _flatten(data: dict[str, Any], out: dict[str, Any]) -> None:
    """Every value under its dotted path; a nested mapping is a fact too. Iterative: it runs for every plan."""
    stack: list[tuple[str, dict[str, Any]]] = [("", data)]
    while stack:
        prefix, mapping = stack.pop()
        for key, value in mapping.items():
            path = prefix + key
            out[path] = value
            if type(value) is dict:
                stack.append((path + ".", value))


def facts_of(assessment: Assessment, kb: KnowledgeBase) -> dict[str, Any]:
    """The facts of one assessment, as rules see them."""
    out: dict[str, Any] = {}
    _flatten(assessment.model_dump(mode="json"), out)
    drugs, unknown_drugs = _resolve(assessment.medications, lambda w: getattr(kb.resolve_drug(w), "id", None))
    comorbidities, unknown_comorbidities = _resolve(
        assessment.comorbidities, lambda w: getattr(kb.resolve_comorbidity(w), "id", None)
    )
    herb_ids, unknown_herbs = _resolve(assessment.herbs, lambda w: getattr(kb.resolve_herb(w), "latin", None))
    out["onset_age_years"] = assessment.onset_age_years
    out["drugs"] = drugs
    out["drug_classes"] = sorted({cls for drug_id in drugs for cls in kb.drugs[drug_id].classes})
    out["comorbidity_ids"] = comorbidities
    out["unknown_medications"] = unknown_drugs
    out["unknown_comorbidities"] = unknown_comorbidities
    out["toxin_session_count"] = len(assessment.history.botulinum_sessions)
    out["herb_ids"] = herb_ids
    out["unknown_herbs"] = unknown_herbs
    out["blocked_herbs"] = [h for h in assessment.herbs if kb.name_matches(h, blocked=True)]
    out["ambiguous_herbs"] = [h for h in assessment.herbs if kb.name_matches(h, blocked=False)]
    out["ancestry_terms"] = [_term(a) for a in assessment.ancestry]
    out["allergy_terms"] = [_term(a) for a in assessment.allergies]
    return out


def _resolve(written: list[str], key_of: Callable[[str], str | None]) -> tuple[list[str], list[str]]:
    """Knowledge-base keys for names as written (each once), and the names nothing matched."""
    known: list[str] = []
    unknown: list[str] = []
    for name in written:
        key = key_of(name)
        if key is None:
            unknown.append(name)
        elif key not in known:
            known.append(key)
    return known, unknown


def _term(text: str) -> str:
    return "_".join(text.casefold().replace("-", " ").split())


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


Test = Callable[[Facts], bool]
_COMPILED: dict[int, tuple[Condition, Test]] = {}


def _predicate(condition: Condition) -> Test:
    """The test one predicate makes, as a closure over its operand."""
    name = condition.fact or ""
    if condition.known is not None:
        wanted = condition.known
        return lambda facts: (facts.get(name) is not None) == wanted
    if condition.is_ is not None:
        flag = condition.is_
        return lambda facts: facts.get(name) is flag
    if condition.equals is not None:
        target = condition.equals
        return lambda facts: (value := facts.get(name)) is not None and bool(value == target)
    if condition.in_ is not None:
        options = list(condition.in_)
        return lambda facts: (value := facts.get(name)) is not None and value in options
    if condition.contains is not None:
        item = condition.contains
        return lambda facts: isinstance(value := facts.get(name), list) and item in value
    if condition.contains_any is not None:
        items = set(condition.contains_any)
        return lambda facts: isinstance(value := facts.get(name), list) and not items.isdisjoint(value)
    if condition.subset_of is not None:
        allowed = set(condition.subset_of)
        return lambda facts: isinstance(value := facts.get(name), list) and allowed.issuperset(value)
    for operator, compare in (
        ("lt", float.__gt__),
        ("le", float.__ge__),
        ("gt", float.__lt__),
        ("ge", float.__le__),
    ):
        bound = getattr(condition, operator)
        if bound is not None:
            return _comparison(name, float(bound), compare)
    raise AssertionError("a validated condition always has an operator")


def _comparison(name: str, limit: float, compare: Callable[[float, float], bool]) -> Test:
    def test(facts: Facts) -> bool:
        value = facts.get(name)
        return isinstance(value, int | float) and not isinstance(value, bool) and compare(limit, float(value))

    return test


def _all_of(parts: list[Test]) -> Test:
    # Plain loops rather than all()/any() over a generator: tests run for every plan, a generator costs each one.
    def test(facts: Facts) -> bool:
        for part in parts:  # noqa: SIM110 (a loop: no generator object per test)
            if not part(facts):
                return False
        return True

    return test


def _any_of(parts: list[Test]) -> Test:
    def test(facts: Facts) -> bool:
        for part in parts:  # noqa: SIM110 (a loop: no generator object per test)
            if part(facts):
                return True
        return False

    return test


def compile_condition(condition: Condition) -> Test:
    """The condition as a function of the facts, built once per condition (rules are evaluated for every plan)."""
    hit = _COMPILED.get(id(condition))
    if hit is not None and hit[0] is condition:
        return hit[1]
    test: Test
    if condition.all is not None:
        test = _all_of([compile_condition(child) for child in condition.all])
    elif condition.any is not None:
        test = _any_of([compile_condition(child) for child in condition.any])
    elif condition.not_ is not None:
        inner = compile_condition(condition.not_)
        test = lambda facts: not inner(facts)  # noqa: E731
    else:
        test = _predicate(condition)
    _COMPILED[id(condition)] = (condition, test)
    return test


def holds(condition: Condition, facts: Facts) -> bool:
    """Whether ``condition`` is true of ``facts``; a test on a missing fact is false (except ``known``)."""
    return compile_condition(condition)(facts)
