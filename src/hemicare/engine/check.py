"""Run every rule's stored cases against the rule: the knowledge base's own test suite."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hemicare.engine.errors import InputError
from hemicare.engine.intake import validate_assessment
from hemicare.engine.loader import KnowledgeBase
from hemicare.engine.planner import build_plan
from hemicare.engine.rules import facts_of, holds
from hemicare.engine.schema import PatternCase, RuleCase, SafetyRule
from hemicare.engine.tcm import differentiate


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` onto a copy of ``base``; a mapping merges, anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


CASE_DATE = dt.date(2026, 1, 1)
"""Rule cases run on a fixed date so that they do not change with the calendar."""


@dataclass(frozen=True)
class CaseResult:
    rule: str
    case: str
    passed: bool
    detail: str = ""


def run_case(kb: KnowledgeBase, rule_id: str, case: RuleCase) -> CaseResult:
    """Evaluate one stored case; an invalid case patient is a failure, not a skip.

    A safety rule fires when the whole plan for the case patient carries its alert (its targets must be present
    too); any other rule fires when its condition holds.
    """
    rule = kb.rules()[rule_id]
    try:
        assessment = validate_assessment(merge(kb.baseline_patient, case.patient))
    except InputError as exc:
        return CaseResult(rule_id, case.name, False, f"case patient is invalid: {exc}")
    if isinstance(rule, SafetyRule):
        fired = rule_id in {alert.id for alert in build_plan(assessment, kb, today=CASE_DATE).alerts}
    else:
        assert rule.when is not None
        fired = holds(rule.when, facts_of(assessment, kb))
    expected = case.expect == "fires"
    detail = "" if fired == expected else f"expected to {'fire' if expected else 'stay silent'}, but it did not"
    return CaseResult(rule_id, case.name, fired == expected, detail)


def run_pattern_case(kb: KnowledgeBase, case: PatternCase) -> CaseResult:
    """A TCM vignette: the expected pattern must (or must not) come out as the primary one."""
    label = case.pattern or "no pattern"
    try:
        assessment = validate_assessment(merge(kb.baseline_patient, case.patient))
    except InputError as exc:
        return CaseResult(f"pattern:{label}", case.name, False, f"case patient is invalid: {exc}")
    primary = differentiate(assessment, facts_of(assessment, kb), kb).primary
    passed = (primary == case.pattern) == (case.expect == "selects")
    detail = "" if passed else f"primary pattern came out as {primary or 'none'}"
    return CaseResult(f"pattern:{label}", case.name, passed, detail)


def case_count(kb: KnowledgeBase) -> int:
    """How many cases `run_all` runs: every rule's, and every pattern vignette."""
    return sum(len(cases.cases) for cases in kb.cases.values()) + len(kb.pattern_cases)


def run_all(kb: KnowledgeBase) -> list[CaseResult]:
    """Every case of every rule, then every pattern vignette, in a stable order."""
    rules = [run_case(kb, rule_id, case) for rule_id in sorted(kb.cases) for case in kb.cases[rule_id].cases]
    return rules + [run_pattern_case(kb, case) for case in kb.pattern_cases]


def split_items(root: Path) -> list[str]:
    """Places in the knowledge tree's YAML where a comma in a flow list (``[a, b]``) cuts what reads as one item in
    two: inside brackets (``[mix (secondary 19%, mimics 18%)]``) or inside a number (``[13 RCTs (n=1,262)]``): YAML
    splits at every comma there, and the halves load without complaint. Each one is to be quoted."""
    problems: list[str] = []
    for path in sorted(root.rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        depth, before = 0, None
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, yaml.FlowSequenceStartToken | yaml.FlowMappingStartToken):
                depth, before = depth + 1, None
            elif isinstance(token, yaml.FlowSequenceEndToken | yaml.FlowMappingEndToken):
                depth, before = depth - 1, None
            elif isinstance(token, yaml.FlowEntryToken):
                continue
            elif depth and isinstance(token, yaml.ScalarToken) and token.plain:
                if before is not None and _one_item(
                    before.value, token.value, text[before.end_mark.index : token.start_mark.index]
                ):
                    where = f"{path.relative_to(root)}:{before.start_mark.line + 1}"
                    problems.append(
                        f"{where}: {before.value!r} and {token.value!r} read as one item cut at a comma: quote it"
                    )
                before = token
            else:
                before = None
    return problems


def _one_item(first: str, second: str, between: str) -> bool:
    """Whether two neighbouring items of a flow list read as one: the first leaves a bracket open, or a number runs
    on across the comma with no space after it (1,262)."""
    if first.count("(") > first.count(")"):
        return True
    return between == "," and first[-1:].isdigit() and second[:1].isdigit()
