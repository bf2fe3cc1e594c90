"""Pydantic models of the knowledge-base records.

Every model forbids unknown keys, so a misspelt field in a YAML record is a load error rather than a silently
ignored fact. Clinical statements carry an :class:`Evidence` block whose references must exist in the registry.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


# Where an identifier opens: a reference with no address of its own is linked through these.
_RESOLVERS = {
    "pmid": "https://pubmed.ncbi.nlm.nih.gov/{}/",
    "doi": "https://doi.org/{}",
    "pmc": "https://pmc.ncbi.nlm.nih.gov/articles/{}/",
}


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

    @property
    def link(self) -> str | None:
        """Where a reader can open it: its own address, else the resolver for its PMID, DOI or PMC id."""
        if self.url:
            return self.url
        scheme, _, key = self.id.partition(":")
        return _RESOLVERS[scheme].format(key) if scheme in _RESOLVERS else None


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
    decoction_max_g: float | None = Field(
        default=None,
        gt=0,
        description="The top of the reference daily decoction dose (dose_note gives the sources, and any that "
        "disagree); a prescription above it needs a reason. Only where the TCM sheet gives a dose.",
    )
    powder_max_g: float | None = Field(
        default=None,
        gt=0,
        description="The top of the reference powder dose, where the TCM sheet gives one. The sheet does not say "
        "whether it is per dose or per day; a powder prescription's daily amount above it needs a reason (the "
        "stricter reading). A toxic herb without one cannot be checked as a powder, and needs a reason too.",
    )
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
    item_anchors: tuple[str, str] | None = Field(
        default=None, description="The words of the lowest and highest answer to an item, where the source gives them"
    )
    levels: list[ScaleLevel] = []
    bands: list[ScaleBand] = []
    domains: list[Slug] = []
    mcid: float | None = Field(default=None, description="Minimal clinically important change (negative = better)")
    mcid_evidence: Evidence | None = None
    higher_is_worse: bool = True
    evidence: Evidence


class Figure(Record):
    """One number from the literature, with the population it was measured in and its source.

    Plans quote numbers only through figures, so every number a clinician sees traces to a reference.
    """

    id: Slug
    label: str
    value: float
    unit: Literal[
        "percent", "weeks", "months", "days", "units", "mg_per_day", "ratio", "odds_ratio", "years", "points", "count"
    ]
    low: float | None = None
    high: float | None = None
    below: bool = Field(default=False, description="The source reports the value as an upper bound ('<0.1%')")
    population: str
    evidence: Evidence

    def text(self) -> str:
        """The figure as a clinician reads it, with its range."""
        units = {
            "percent": "%",
            "weeks": " weeks",
            "months": " months",
            "days": " days",
            "units": " U",
            "mg_per_day": " mg/day",
            "ratio": "",
            "odds_ratio": "",
            "years": " years",
            "points": " points",
            "count": "",
        }[self.unit]
        value = f"{'<' if self.below else ''}{self.value:g}{units}"
        if self.unit == "odds_ratio":
            value = f"OR {self.value:g}"
        if self.low is not None and self.high is not None:
            value += f" ({self.low:g}-{self.high:g})"
        return value


AidQuestion = Literal["what_it_involves", "how_well", "how_soon", "how_long", "risks"]


class AidAnswer(Record):
    """An option's answer to one decision-aid question. Numbers come only from the named figures."""

    question: AidQuestion
    text: str
    figures: list[Slug] = []

    @model_validator(mode="after")
    def _no_bare_numbers(self) -> AidAnswer:
        if any(ch.isdigit() for ch in self.text):
            raise ValueError("decision-aid text may not contain numbers; cite them through `figures`")
        return self


class Treatment(Record):
    """A treatment option: what it is, its figures and decision-aid answers, and the evidence behind it."""

    id: Annotated[str, Field(pattern=r"^[a-z_]+(:[a-z0-9_\-]+)?$")]
    name: str
    category: Literal["workup", "conventional", "integrative"]
    summary: str
    plain: str | None = Field(default=None, description="Plain-language summary for patients")
    details: dict[str, Any] = {}
    figures: list[Figure] = []
    aid: list[AidAnswer] = []
    evidence: Evidence
    review: Review = Review()

    def figure(self, figure_id: str) -> Figure:
        """The figure with this id (the loader has checked that every cited figure exists)."""
        return next(f for f in self.figures if f.id == figure_id)


class Modifier(Record):
    """A patient feature that changes what a treatment's figures mean for this patient."""

    id: Slug
    treatment: str
    when: Condition
    text: str
    figures: list[Figure] = []
    evidence: Evidence
    review: Review = Review()


class Policy(Record):
    """A clinic setting that is a local choice rather than a fact from the literature. Adjust it locally."""

    id: Slug
    value: float
    description: str
    basis: str


class ToxinProductInfo(Record):
    """A botulinum-toxin type A product and how its units compare with onabotulinumtoxinA."""

    id: Literal["onabotulinumtoxinA", "incobotulinumtoxinA", "abobotulinumtoxinA"]
    brand: str
    conversion: Figure = Field(description="Units of this product per onabotulinumtoxinA unit")
    note: str


class ToxinSite(Record):
    """An injection site on the face map; coordinates are for the patient's right side as the viewer sees it."""

    id: Slug
    label: str
    region: Literal["periocular", "forehead", "cheek", "mouth", "chin", "neck"]
    group: Literal["upper_lid", "lower_lid", "lateral_orbit", "brow", "lower_face", "neck"]
    muscle: str
    start_units: float = Field(gt=0, description="Starting dose in onabotulinumtoxinA units")
    x: float
    y: float
    label_side: Literal["outer", "inner"] = Field(default="outer", description="Where the face map writes the units")
    evidence: Evidence


class AvoidZone(Record):
    """A place not to inject, drawn on the face map."""

    id: Slug
    label: str
    reason: str
    x: float
    y: float
    regions: list[Literal["periocular", "forehead", "cheek", "mouth", "chin", "neck"]] = Field(
        default=[], description="Show only when one of these regions is treated; empty means always"
    )
    evidence: Evidence


class AdverseAdjustment(Record):
    """How the next session changes after an adverse effect of the last one."""

    effect: Slug
    synonyms: list[str] = []
    groups: list[Literal["upper_lid", "lower_lid", "lateral_orbit", "brow", "lower_face", "neck"]]
    set_units: float | None = Field(default=None, description="Dose to use at the affected sites (ona units)")
    advice: str
    evidence: Evidence


class ToxinProgramme(Record):
    """Everything the botulinum-toxin dose planner needs: products, sites, limits and titration."""

    products: list[ToxinProductInfo] = Field(min_length=1)
    sites: list[ToxinSite] = Field(min_length=1)
    avoid: list[AvoidZone] = []
    limits: dict[
        Literal[
            "min_interval_weeks",
            "usual_interval_max_weeks",
            "per_site_max_units",
            "first_session_max_units_per_eye",
            "session_max_units",
            "session_cap_weeks",
            "cumulative_max_units_30_days",
            "short_effect_weeks",
            "short_effect_dose_factor",
            "min_site_units",
        ],
        Figure,
    ]
    adverse_adjustments: list[AdverseAdjustment] = []

    @model_validator(mode="after")
    def _all_limits(self) -> ToxinProgramme:
        missing = {
            "min_interval_weeks",
            "usual_interval_max_weeks",
            "per_site_max_units",
            "first_session_max_units_per_eye",
            "session_max_units",
            "session_cap_weeks",
            "short_effect_weeks",
            "short_effect_dose_factor",
            "min_site_units",
        } - set(self.limits)
        if missing:
            raise ValueError(f"toxin limits missing: {', '.join(sorted(missing))}")
        return self


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


# --- TCM ------------------------------------------------------------------------------------------------------


class Ingredient(Record):
    """One herb of a formula with its classical reference dose per day (decoction)."""

    herb: str = Field(description="Latin pharmaceutical name, a key of herbs.yaml")
    dose_min_g: float | None = Field(default=None, gt=0)
    dose_max_g: float | None = Field(default=None, gt=0)
    note: str | None = None

    def dose(self) -> str:
        """The dose as written on a prescription, or why there is none."""
        if self.dose_min_g is None:
            return "dose not given in the source"
        if self.dose_max_g is None or self.dose_max_g == self.dose_min_g:
            return f"{self.dose_min_g:g} g"
        return f"{self.dose_min_g:g}-{self.dose_max_g:g} g"


class Formula(Record):
    """A classical herbal formula, its composition and its own cautions."""

    id: Slug
    pinyin: str
    chinese: str
    english: str | None = None
    source: str
    ingredients: list[Ingredient] = Field(min_length=1)
    other_ingredients: list[str] = Field(default=[], description="Each an ingredient with its amount, in one item")
    preparation: str | None = None
    cautions: list[str] = []
    not_for_patterns: list[Slug] = Field(default=[], description="Patterns the formula's own cautions exclude")
    evidence: Evidence

    @field_validator("other_ingredients")
    @classmethod
    def _named_first(cls, items: list[str]) -> list[str]:
        for item in items:
            if item[:1].isdigit():
                raise ValueError(
                    f"{item!r} starts with an amount: write each as its ingredient, then its amount, in one item "
                    "(in a YAML [list], quote an item with a comma in it)"
                )
        return items


class Indicator(Record):
    """A finding that speaks for (or against) a pattern, with its weight in HemiCare's transparent score."""

    kind: Literal["finding", "tongue_body", "tongue_coating", "pulse", "comorbidity"]
    value: str
    weight: float = Field(gt=0, le=5)


class FormulaChoice(Record):
    """A formula named for a pattern, with the circumstance in which the source names it."""

    formula: Slug | None = Field(default=None, description="A formulas.yaml id, or none when not composed here")
    name: str
    when: str


class Pattern(Record):
    """A TCM pattern of HFS with its weighted indicators, treatment principle, points, formula and diet."""

    id: Slug
    number: Annotated[str, Field(pattern=r"^P\d$")]
    name: str
    chinese: str
    tm1_codes: list[Annotated[str, Field(pattern=r"^S[A-J][0-9A-Z]{2}$")]] = []
    key_features: str
    principle: str
    supports: list[Indicator] = Field(min_length=2)
    contradicts: list[Indicator] = []
    points: list[str] = []
    point_technique: str | None = None
    formula: Slug | None = None
    formula_if_secondary: dict[Slug, Slug] = {}
    other_formulas: list[FormulaChoice] = []
    diet: list[Slug] = []
    evidence: Evidence


class PatternCase(Record):
    """A vignette (TCM findings patched onto the baseline patient) that must or must not select a pattern."""

    pattern: Slug | None = Field(description="The expected primary pattern; none means no pattern should fit")
    name: str
    expect: Literal["selects", "not_selected"]
    patient: dict[str, Any]


class PatternScoring(Record):
    """The thresholds of the pattern score. A modelling choice of HemiCare, documented, not a literature fact."""

    min_fit: float = Field(gt=0, lt=1)
    min_supporting: int = Field(ge=1)
    secondary_ratio: float = Field(gt=0, le=1)
    basis: str


class AdviceItem(Record):
    """One piece of diet or lifestyle advice, labelled by where it comes from."""

    id: Slug
    kind: Literal["diet", "lifestyle"]
    text: str
    origin: Literal["tradition", "study", "expert_opinion"]
    patterns: list[Slug] = Field(default=[], description="Patterns it is for; empty means everyone")
    evidence: Evidence


class RegionPoints(Record):
    """Local points for one involved face region."""

    region: Literal["periocular", "forehead", "cheek", "mouth", "chin", "neck"]
    points: list[str]
    evidence: Evidence


class AcupunctureProtocol(Record):
    """Local points by region, the points every course uses, technique and course."""

    regions: list[RegionPoints]
    always: list[str]
    technique: list[str]
    electroacupuncture: list[str]
    course: list[str]
    course_sessions: int = Field(ge=1, description="Sessions in one course")
    sessions_per_week: int = Field(ge=1, le=7, description="Lowest frequency in the course advice")
    review: str
    evidence: Evidence


class RecallSchedule(Record):
    """When patients are recalled after treatments (toxin and acupuncture come from their own data)."""

    mvd_review_months: list[int] = Field(min_length=1)
    evidence: Evidence


# --- safety ---------------------------------------------------------------------------------------------------


class SafetyTargets(Record):
    """What a safety rule acts on, among the plan's items and the patient's own medicines and herbs."""

    recommendations: list[str] = []
    acupoints: list[str] = []
    herbs: list[str] = Field(default=[], description="Latin names")
    herb_pregnancy: list[Literal["forbidden", "caution"]] = Field(
        default=[], description="Every herb whose pregnancy status is one of these"
    )
    toxic_herbs: bool = False
    drugs: list[Slug] = []
    drug_classes: list[Slug] = []
    licorice_min_g: float | None = Field(
        default=None, gt=0, description="A formula whose licorice (Gan Cao, Zhi Gan Cao) reaches this daily dose"
    )
    patient_blocked_herbs: bool = Field(default=False, description="The patient's own herbs with a blocked name")
    patient_ambiguous_herbs: bool = Field(default=False, description="The patient's own herbs with an ambiguous name")


class SafetyRule(Record):
    """A contraindication, interaction or caution across drugs, toxin, herbs and needling.

    It fires when ``when`` holds (or always, without ``when``) and a target is in the plan or the patient's list.
    ``remove`` takes points or herbs out of the plan; ``contraindicate`` and ``defer`` change a recommendation's
    status; ``caution`` warns without changing anything.
    """

    id: Slug
    title: str
    when: Condition | None = None
    targets: SafetyTargets
    action: Literal["contraindicate", "defer", "remove", "caution"]
    severity: Literal["critical", "warning", "info"]
    basis: Literal["evidence", "label", "guideline", "tradition", "case_report", "policy"]
    message: str = Field(description='Its own sentence after the title ("title: message"), not a continuation')
    evidence: Evidence
    review: Review = Review()

    @field_validator("message")
    @classmethod
    def _a_sentence(cls, message: str) -> str:
        if message[:1].islower():
            raise ValueError(
                "must start a sentence (an alert reads 'title: message', a refused session 'title. message')"
            )
        return message


class RestrictedNames(Record):
    """Herb names that are blocked outright or need the species verified."""

    blocked: list[str] = Field(min_length=1, description="Name fragments of herbs that are never allowed")
    ambiguous: list[str] = Field(min_length=1, description="Names shared by more than one species")
    evidence: Evidence
