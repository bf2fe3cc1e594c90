"""Pydantic models of the knowledge-base records.

Every model forbids unknown keys, so a misspelt field in a YAML record is a load error rather than a silently
ignored fact. Clinical statements carry an :class:`Evidence` block whose references must exist in the registry.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$", min_length=1, max_length=80)]
RefId = Annotated[str, Field(pattern=r"^(pmid|doi|pmc|web|label|guideline|book|standard):\S+$")]


class Record(BaseModel):
    """Base of every knowledge record: strict, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Certainty(StrEnum):
    """GRADE certainty of a body of evidence."""

    HIGH = "high"
    MODERATE = "moderate"
    LOW = "low"
    VERY_LOW = "very_low"


class Evidence(Record):
    """How sure we are of a statement and where it comes from.

    ``disputed`` and ``unverified`` carry the reference sheets' [DISAGREE] and [unverified] marks into the data.
    """

    certainty: Certainty
    references: list[RefId] = Field(min_length=1)
    note: str | None = None
    disputed: bool = False
    unverified: bool = False

    @model_validator(mode="after")
    def _marks_need_a_note(self) -> Evidence:
        if (self.disputed or self.unverified) and not self.note:
            raise ValueError("an evidence block marked disputed or unverified must say why in `note`")
        return self


class Review(Record):
    """Who last reviewed a record clinically; `unreviewed` until a clinician signs it off."""

    status: Literal["unreviewed", "reviewed"] = "unreviewed"
    by: str | None = None
    date: str | None = None


class Reference(Record):
    """One entry of the references registry.

    ``citation`` is the bibliographic label as the reference sheet gives it; ``title`` is set only where the sheet
    quotes the title, so that no title is made up.
    """

    id: RefId
    citation: str
    year: int | None = Field(default=None, ge=1900, le=2100)
    title: str | None = None
    url: str | None = None
    supports: list[str] = Field(min_length=1)
    sheet: str = Field(description="Section of ../shared/reference the fact was taken from")


# --- the rule condition language --------------------------------------------------------------------------


class Condition(Record):
    """A boolean test over an assessment's facts.

    Exactly one form is used: ``all`` / ``any`` (lists of conditions), ``not`` (one condition), or a predicate
    ``fact`` with exactly one operator. A predicate on an unknown (missing) fact is false, except ``known``.
    """

    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(default=None, alias="not")
    fact: str | None = None
    is_: bool | None = Field(default=None, alias="is")
    equals: str | int | float | None = None
    in_: list[str | int | float] | None = Field(default=None, alias="in")
    lt: float | None = None
    le: float | None = None
    gt: float | None = None
    ge: float | None = None
    contains: str | None = None
    contains_any: list[str] | None = None
    subset_of: list[str] | None = None
    known: bool | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    OPERATORS: tuple[str, ...] = (
        "is_",
        "equals",
        "in_",
        "lt",
        "le",
        "gt",
        "ge",
        "contains",
        "contains_any",
        "subset_of",
        "known",
    )

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        forms = [name for name in ("all", "any", "not_", "fact") if getattr(self, name) is not None]
        if len(forms) != 1:
            raise ValueError("a condition needs exactly one of `all`, `any`, `not`, `fact`")
        ops = [op for op in self.OPERATORS if getattr(self, op) is not None]
        if self.fact is not None and len(ops) != 1:
            raise ValueError(f"predicate on `{self.fact}` needs exactly one operator, got {len(ops)}")
        if self.fact is None and ops:
            raise ValueError("operators are only allowed beside `fact`")
        return self

    def facts(self) -> set[str]:
        """Every fact name this condition reads."""
        names: set[str] = set()
        if self.fact is not None:
            names.add(self.fact)
        for child in (self.all or []) + (self.any or []) + ([self.not_] if self.not_ else []):
            names |= child.facts()
        return names


# --- vocabularies ---------------------------------------------------------------------------------------------


class Comorbidity(Record):
    """A term of the comorbidity vocabulary used in assessments."""

    id: Slug
    label: str
    synonyms: list[str] = []


class DrugClass(Record):
    """A pharmacological class that rules can name instead of listing every drug."""

    id: Slug
    label: str


class Drug(Record):
    """A medicine, keyed by generic name, with the names a clinician may write for it."""

    id: Slug = Field(description="Generic name, lower case")
    label: str
    classes: list[Slug] = []
    synonyms: list[str] = []
    brands: list[str] = []


class Region(StrEnum):
    """Body region of an acupoint; facial points get gentler technique and face-specific rules."""

    FACE = "face"
    HEAD_NECK = "head_neck"
    UPPER_LIMB = "upper_limb"
    LOWER_LIMB = "lower_limb"
    CHEST = "chest"
    ABDOMEN = "abdomen"
    BACK = "back"
    SHOULDER = "shoulder"


class Acupoint(Record):
    """An acupuncture point by WHO alphanumeric code."""

    code: Annotated[str, Field(pattern=r"^([A-Z]{2}\d{1,2}|EX-[A-Z]{2}\d{1,2}|Ashi)$")]
    pinyin: str
    chinese: str | None = None
    region: Region
    note: str | None = None
    evidence: Evidence | None = None


class Herb(Record):
    """A herb keyed by Latin pharmaceutical name."""

    latin: str
    pinyin: str
    chinese: str
    toxic: bool = False
    pregnancy: Literal["forbidden", "caution", "unverified", "no_known_restriction"] = "unverified"
    dose_note: str | None = None
    cautions: list[str] = []
    evidence: Evidence | None = None


# --- clinical statements ------------------------------------------------------------------------------------


class Code(Record):
    """A code in a standard terminology."""

    system: Literal["ICD-10", "ICD-10-CM", "ICD-11", "ICD-11-TM1", "SNOMED-CT", "MeSH", "CPT", "HCPCS"]
    code: str
    display: str
    note: str | None = None


class ClinicalCondition(Record):
    """A diagnosis HemiCare reasons about: HFS itself or one of its mimics."""

    id: Slug
    name: str
    description: str
    codes: list[Code] = []
    evidence: Evidence


class RedFlag(Record):
    """A finding that points to secondary HFS or makes imaging necessary before definitive treatment.

    ``kind`` separates signs that make a secondary cause suspected from prompts that only call for imaging.
    """

    id: Slug
    finding: str
    kind: Literal["secondary_sign", "imaging_prompt"]
    when: Condition
    action: str
    evidence: Evidence
    review: Review = Review()


class Differential(Record):
    """A mimic of HFS, listed when its features are present."""

    id: Slug
    condition: Slug
    reason: str
    suggests_alternative: bool = Field(
        description="True when the features argue for the alternative diagnosis rather than only listing it"
    )
    when: Condition
    evidence: Evidence
    review: Review = Review()


class ScaleLevel(Record):
    """The wording of one grade or score of a scale."""

    value: int
    label: str
    description: str


class ScaleBand(Record):
    """An interpretation band for a summed score (inclusive bounds)."""

    min: int
    max: int
    interpretation: str


class Scale(Record):
    """A severity or quality-of-life scale."""

    id: Slug
    name: str
    kind: Literal["graded", "summed"]
    min: int
    max: int
    items: int | None = None
    item_min: int | None = None
    item_max: int | None = None
    levels: list[ScaleLevel] = []
    bands: list[ScaleBand] = []
    domains: list[Slug] = []
    mcid: float | None = Field(default=None, description="Minimal clinically important change (negative = better)")
    mcid_evidence: Evidence | None = None
    higher_is_worse: bool = True
    evidence: Evidence


class Treatment(Record):
    """A treatment option: what it is and the evidence behind it. Figures live in typed sub-records."""

    id: Annotated[str, Field(pattern=r"^[a-z_]+(:[a-z0-9_\-]+)?$")]
    name: str
    category: Literal["workup", "conventional", "integrative"]
    summary: str
    details: dict[str, Any] = {}
    evidence: Evidence
    review: Review = Review()


class Triage(Record):
    """Settings of the diagnosis triage that are clinical choices rather than code."""

    essential_findings: list[str] = Field(
        min_length=1, description="Findings that must be known before primary HFS can be called likely"
    )
    evidence: Evidence


class RuleCase(Record):
    """A patient (a patch on the baseline patient) that must or must not fire a rule."""

    name: str
    expect: Literal["fires", "silent"]
    patient: dict[str, Any]


class RuleCases(Record):
    """The test cases stored beside one rule."""

    rule: Slug
    cases: list[RuleCase] = Field(min_length=2)

    @model_validator(mode="after")
    def _both_kinds(self) -> RuleCases:
        kinds = {case.expect for case in self.cases}
        if kinds != {"fires", "silent"}:
            raise ValueError(f"rule `{self.rule}` needs at least one case that fires and one that stays silent")
        return self
