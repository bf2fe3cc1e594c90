"""The plan contract: the stable, documented output of the engine.

Field names and enum values here are a public interface (CLI JSON, API, stored plans). Add fields, never rename.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Iterable
from enum import StrEnum
from typing import Any, TypeGuard

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic_core import to_json

from hemicare.engine.schema import Certainty, Evidence, Figure

_object_setattr = object.__setattr__


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DiagnosisStatus(StrEnum):
    PRIMARY_HFS_LIKELY = "primary_hfs_likely"
    SECONDARY_SUSPECTED = "secondary_suspected"
    ALTERNATIVE_SUSPECTED = "alternative_suspected"
    INSUFFICIENT_INFORMATION = "insufficient_information"


def diagnosis_label(status: str) -> str:
    """How a diagnosis status reads: ``primary_hfs_likely`` -> ``Primary HFS likely``."""
    return status.replace("_", " ").capitalize().replace("hfs", "HFS")


class Category(StrEnum):
    WORKUP = "workup"
    CONVENTIONAL = "conventional"
    INTEGRATIVE = "integrative"


class Status(StrEnum):
    RECOMMENDED = "recommended"
    OPTION = "option"
    DEFERRED = "deferred"
    NOT_RECOMMENDED = "not_recommended"
    CONTRAINDICATED = "contraindicated"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class EvidenceOut(Out):
    certainty: Certainty
    references: list[str]
    note: str | None = None


class RedFlagOut(Out):
    id: str
    finding: str
    action: str
    kind: str = Field(description="secondary_sign (secondary HFS suspected) or imaging_prompt (imaging needed)")
    evidence: EvidenceOut


class DifferentialOut(Out):
    id: str
    name: str
    reason: str
    evidence: EvidenceOut


class Diagnosis(Out):
    status: DiagnosisStatus
    summary: str
    red_flags: list[RedFlagOut] = []
    differentials: list[DifferentialOut] = []
    unknown_findings: list[str] = Field(default=[], description="Essential findings not recorded")


class DomainScore(Out):
    value: int
    max: int


class ScoreOut(Out):
    scale: str
    name: str
    value: float
    min: int
    max: int
    label: str | None = None
    interpretation: str
    domains: dict[str, DomainScore] = {}
    evidence: EvidenceOut


class Recommendation(Out):
    id: str
    category: Category
    status: Status
    priority: int = Field(default=0, description="1 = first in the plan: work-up, then conventional, then adjuncts")
    summary: str
    rationale: list[str]
    evidence: EvidenceOut
    details: dict[str, Any] = {}
    _details_references: frozenset[str] | None = PrivateAttr(default=None)

    @classmethod
    def trusted(
        cls,
        *,
        id: str,
        category: Category,
        status: Status,
        summary: str,
        rationale: list[str],
        evidence: EvidenceOut,
        details: dict[str, Any],
        details_references: frozenset[str],
    ) -> Recommendation:
        """A recommendation built from validated knowledge records, without validating again.

        Every plan makes about fifteen of these, so this skips pydantic's general-purpose ``model_construct``
        (aliases, defaults, private-attribute set-up) and sets the instance state it would set. A unit test checks
        that the result dumps like a validated Recommendation.

        ``details_references`` declares every reference id inside ``details``, so that the plan's citation list need
        not walk them: the producer knows what evidence it put in, and a property test checks the declaration
        against a full walk of the dumped plan.
        """
        made = cls.__new__(cls)
        state = {
            "id": id,
            "category": category,
            "status": status,
            "priority": 0,
            "summary": summary,
            "rationale": rationale,
            "evidence": evidence,
            "details": details,
        }
        _object_setattr(made, "__dict__", state)
        _object_setattr(made, "__pydantic_fields_set__", set(state))
        _object_setattr(made, "__pydantic_extra__", None)
        _object_setattr(made, "__pydantic_private__", {"_details_references": details_references})
        return made

    def details_references(self) -> frozenset[str] | None:
        """The reference ids inside ``details`` as declared by the producer, or None when nobody declared them."""
        private = self.__pydantic_private__  # read directly: pydantic's attribute fallback is slow on a hot path
        return None if private is None else private.get("_details_references")


class Alert(Out):
    id: str
    severity: Severity
    message: str
    affects: list[str] = []
    references: list[str] = []


class PatternScore(Out):
    """One pattern's place in the ranking, with the findings for and against it."""

    id: str
    number: str
    name: str
    chinese: str
    tm1_codes: list[str]
    principle: str
    score: float
    role: str = Field(description="primary, secondary or considered")
    supporting: list[str]
    contradicting: list[str]


class TcmSection(Out):
    """Pattern differentiation: a ranked, explained list, and a primary/secondary pattern only where they fit."""

    patterns: list[PatternScore] = []
    primary: str | None = None
    secondary: str | None = None
    summary: str | None = None


class ScheduleItem(Out):
    what: str
    due: dt.date | None = None
    note: str | None = None


class Plan(Out):
    """A patient's plan. ``recommendations`` keep deferred and contraindicated items, with their reasons."""

    hemicare_version: str
    knowledge_version: str
    patient_id: str
    generated_on: dt.date
    diagnosis: Diagnosis
    scores: dict[str, ScoreOut]
    recommendations: list[Recommendation]
    alerts: list[Alert]
    tcm: TcmSection = TcmSection()
    schedule: list[ScheduleItem] = []
    decision_aid: DecisionAid | None = None
    references: dict[str, str] = Field(default={}, description="Every cited reference id with its citation")


Memo = dict[int, tuple[object, Any]]
_EVIDENCE: Memo = {}
_FIGURES: Memo = {}
_FIGURE_DICTS: Memo = {}


def memoised(table: Memo, source: object, make: Any) -> Any:
    """Convert an immutable knowledge record once per process; the record is kept so its id stays unique."""
    hit = table.get(id(source))
    if hit is not None and hit[0] is source:
        return hit[1]
    value = make(source)
    table[id(source)] = (source, value)
    _share(value)
    return value


KeyedMemo = dict[tuple[int, Hashable], tuple[object, Any]]


def memoised_with(table: KeyedMemo, source: object, key: Hashable, make: Any) -> Any:
    """Like :func:`memoised`, for a value that also depends on a small key (a grade, a status)."""
    hit = table.get((id(source), key))
    if hit is not None and hit[0] is source:
        return hit[1]
    value = make(source, key)
    table[(id(source), key)] = (source, value)
    _share(value)
    return value


def evidence_out(evidence: Evidence) -> EvidenceOut:
    """The plan's view of a knowledge-base evidence block; disputed and unverified marks stay in the note."""
    result: EvidenceOut = memoised(_EVIDENCE, evidence, _evidence_out)
    return result


_EVIDENCE_DICTS: Memo = {}


def evidence_dict(evidence: Evidence) -> dict[str, Any]:
    """An evidence block as plain JSON data, for a recommendation's details. Shared: callers must not mutate it."""
    result: dict[str, Any] = memoised(
        _EVIDENCE_DICTS, evidence, lambda source: evidence_out(source).model_dump(mode="json")
    )
    return result


def flagged(note: str | None) -> TypeGuard[str]:
    """Whether an evidence note (as plans write it) carries a [DISPUTED] or [UNVERIFIED] mark: a figure with one is
    never shown without its note, the options side by side included."""
    return note is not None and note.startswith(("[DISPUTED", "[UNVERIFIED"))


def _evidence_out(evidence: Evidence) -> EvidenceOut:
    marks = [mark for mark, on in (("DISPUTED", evidence.disputed), ("UNVERIFIED", evidence.unverified)) if on]
    note = evidence.note
    if marks:
        note = f"[{', '.join(marks)}] {note}"
    return EvidenceOut(certainty=evidence.certainty, references=list(evidence.references), note=note)


class FigureOut(Out):
    """A literature figure as shown in a plan: value, plain reading, population and source."""

    id: str
    label: str
    value: float
    unit: str
    text: str
    per_100: str | None = Field(default=None, description="Percentages read as 'about N in 100'")
    population: str
    evidence: EvidenceOut


def figure_out(figure: Figure) -> FigureOut:
    """Show a knowledge-base figure; percentages also as a count per 100 (the decision aid's denominator)."""
    result: FigureOut = memoised(_FIGURES, figure, _figure_out)
    return result


SHARED_REFERENCES: dict[int, tuple[object, frozenset[str]]] = {}
"""References of shared, never-mutated detail dictionaries, so that citation collection need not walk them."""


def figure_dict(figure: Figure) -> dict[str, Any]:
    """A figure as plain JSON data, for a recommendation's details. Shared: callers must not mutate it."""

    def make(f: Figure) -> dict[str, Any]:
        data = figure_out(f).model_dump(mode="json")
        SHARED_REFERENCES[id(data)] = (data, frozenset(f.evidence.references))
        return data

    result: dict[str, Any] = memoised(_FIGURE_DICTS, figure, make)
    return result


_CONTAINERS = (dict, list)


def references_in(value: dict[str, Any] | list[Any], into: set[str]) -> None:
    """Collect every reference id anywhere in a dumped plan part (evidence blocks, figures, alerts).

    Iterative, and it visits only containers: it may run for every plan, so it must not cost a call per string.
    """
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            shared = SHARED_REFERENCES.get(id(node))
            if shared is not None and shared[0] is node:
                into.update(shared[1])
                continue
            for key, inner in node.items():
                if key == "references" and type(inner) is list:
                    into.update(map(str, inner))
                elif type(inner) in _CONTAINERS:
                    stack.append(inner)
        else:
            stack.extend(inner for inner in node if type(inner) in _CONTAINERS)


def shared_references(dicts: Iterable[dict[str, Any]]) -> set[str]:
    """The references of shared detail dictionaries (figures made by figure_dict)."""
    found: set[str] = set()
    for data in dicts:
        shared = SHARED_REFERENCES.get(id(data))
        if shared is None or shared[0] is not data:
            raise ValueError("not a shared detail dictionary: its references are not known")
        found |= shared[1]
    return found


def _figure_out(figure: Figure) -> FigureOut:
    per_100 = None
    if figure.unit == "percent":
        count = round(figure.value)
        per_100 = "fewer than 1 in 100" if count < 1 or figure.below else f"about {count} in 100"
    return FigureOut(
        id=figure.id,
        label=figure.label,
        value=figure.value,
        unit=figure.unit,
        text=figure.text(),
        per_100=per_100,
        population=figure.population,
        evidence=evidence_out(figure.evidence),
    )


class AidCell(Out):
    text: str
    figures: list[FigureOut] = []


class AidColumn(Out):
    option: str
    name: str
    status: Status | None = None
    answers: dict[str, AidCell]
    evidence: EvidenceOut


class AidAbout(Out):
    """Where the options side by side come from and how they are kept up to date (the date and update policy IPDAS
    asks a decision aid to state)."""

    knowledge_version: str
    issued: dt.date = Field(description="the first day of the month the knowledge base version was issued")
    review_by: dt.date = Field(description="from this day the comparison is shown as out of date (clinic policy)")
    text: str


class DecisionAid(Out):
    """Options side by side, the same questions answered for each (IPDAS / Option Grid form)."""

    questions: dict[str, str]
    columns: list[AidColumn]
    denominator: str
    note: str
    about: AidAbout


Plan.model_rebuild()


_FRAGMENTS: dict[int, tuple[Out, orjson.Fragment | None]] = {}
"""Plan parts made once per knowledge record and shared by every plan (evidence blocks, figures, red flags, graded
scores, decision-aid columns), with their JSON once first written. Each entry holds its object, so its id stays
unique; shared parts are never mutated (the memo functions' contract)."""


def _share(value: object) -> None:
    if isinstance(value, Out):
        _FRAGMENTS.setdefault(id(value), (value, None))


def _fields(value: object) -> dict[str, Any] | orjson.Fragment:
    shared = _FRAGMENTS.get(id(value))
    if shared is not None:
        model, fragment = shared
        if fragment is None:
            fragment = orjson.Fragment(orjson.dumps(model.__dict__, default=_fields))
            _FRAGMENTS[id(value)] = (model, fragment)
        return fragment
    if isinstance(value, Out):
        return value.__dict__
    raise TypeError(f"{type(value).__name__} is not part of the plan contract")


def plan_json(plan: Plan) -> bytes:
    """The plan as compact JSON bytes, exactly as pydantic writes it (``to_json(plan)``), in a third of the time.

    The plan endpoint writes about 55 KB of JSON per request, and pydantic-core's serialiser was a fifth of the
    server's time on it. Plan models are plain data (no aliases, serialisers, computed or excluded fields; a test
    checks each model reachable from Plan), so orjson can write each model's fields in declaration order from the
    instance itself; a part shared by every plan (made once per knowledge record) is written once and reused. A value
    orjson would not write (one no plan holds today) falls back to pydantic, so the output never depends on the
    shortcut; tests compare the two byte for byte over thousands of plans.
    """
    try:
        return orjson.dumps(plan, default=_fields)
    except orjson.JSONEncodeError:
        return to_json(plan)
