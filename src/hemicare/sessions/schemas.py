"""Treatment-session input models, one per kind."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from hemicare.engine.assessment import SESSION_UNITS_MAX, MvdResult, Name, ToxinProduct
from hemicare.limits import Reason


def _not_future(value: dt.date) -> dt.date:
    if value > dt.date.today():
        raise ValueError(f"{value.isoformat()} is in the future")
    return value


PastDate = Annotated[dt.date, AfterValidator(_not_future)]


# Why a session is recorded although a check stopped it: a toxin session sooner than the minimum interval after (or
# before) another, a toxin dose above the per-site ceiling or the session cap, a treatment the latest plan holds back
# (deferred, not recommended, contraindicated), a point or herb a safety rule takes out of this patient's plans.
OverrideReason = Annotated[
    Reason | None,
    Field(description="Why the session is recorded although a check stopped it (the error said which)"),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToxinSite(Strict):
    site: str = Field(min_length=1, description="A site id of the toxin programme (e.g. upper_lid_medial)")
    side: Literal["left", "right"]
    units: float = Field(gt=0, le=100)


class ToxinDetails(Strict):
    kind: Literal["toxin"] = "toxin"
    product: ToxinProduct
    lot: str = Field(min_length=1, max_length=40)
    sites: list[ToxinSite] = Field(min_length=1)
    adverse_effects: list[Name] = []  # as the assessment's history holds them: the plan reads a session back as one
    effect_weeks: float | None = Field(default=None, ge=0, le=104)
    override_reason: OverrideReason = None

    @field_validator("sites")
    @classmethod
    def _within_a_session(cls, sites: list[ToxinSite]) -> list[ToxinSite]:
        if (total := _total(sites)) > SESSION_UNITS_MAX:
            raise ValueError(f"the sites add up to {total:g} U; a session holds at most {SESSION_UNITS_MAX} U")
        return sites

    @property
    def total_units(self) -> float:
        return _total(self.sites)


def _total(sites: list[ToxinSite]) -> float:
    return round(sum(site.units for site in sites), 3)


class AcupunctureDetails(Strict):
    kind: Literal["acupuncture"] = "acupuncture"
    points: list[str] = Field(min_length=1, description="WHO codes")
    electro: bool = False
    notes: str | None = Field(default=None, max_length=500)
    override_reason: OverrideReason = None


class HerbDose(Strict):
    latin: str = Field(
        min_length=1,
        description="A herb of the knowledge base by its Latin pharmaceutical name (pinyin or Chinese are read too, "
        "and kept under the Latin name)",
    )
    dose_g: float = Field(gt=0, le=100, description="Grams a day")


class HerbalDetails(Strict):
    kind: Literal["herbal"] = "herbal"
    formula: str | None = Field(
        default=None,
        description="A formula id, when a classical formula is prescribed; a toxic herb with no reference dose of its "
        "own (Ban Xia) is held to its dose in this formula, and needs a reason without one",
    )
    preparation: Literal["decoction", "powder"] = Field(
        default="decoction",
        description="How it is taken: boiled as a decoction, or the herbs ground and swallowed as a powder (which "
        "takes the whole herb: the toxic herbs' powder doses are a fraction of their decoction doses). Doses are "
        "grams a day either way.",
    )
    herbs: list[HerbDose] = Field(min_length=1)
    duration_days: int = Field(ge=1, le=365)
    override_reason: OverrideReason = None


class MvdDetails(Strict):
    kind: Literal["mvd"] = "mvd"
    surgeon: str = Field(min_length=1, max_length=120)
    result: MvdResult | None = None
    notes: str | None = Field(default=None, max_length=500)
    override_reason: OverrideReason = None


class MedicineDetails(Strict):
    kind: Literal["medicine"] = "medicine"
    medicine: str = Field(
        min_length=1,
        max_length=60,
        description="An oral medicine of the knowledge base, by its generic name or a brand it knows (e.g. "
        "carbamazepine, Tegretol); kept under its generic name",
    )
    dose: str = Field(
        min_length=1,
        max_length=120,
        description="As prescribed (e.g. 100 mg twice a day); HemiCare holds no verified HFS dose to check it against",
    )
    duration_days: int | None = Field(default=None, ge=1, le=365, description="Days prescribed, if a course")
    notes: str | None = Field(default=None, max_length=500)
    override_reason: OverrideReason = None


class ProcedureDetails(Strict):
    """A procedure on the facial nerve at the stylomastoid foramen, each a plan item of its own: a neurolytic nerve
    block or percutaneous radiofrequency ablation. It weakens the face on the side done, so the side is asked."""

    kind: Literal["procedure"] = "procedure"
    procedure: Literal["nerve_block", "rf_ablation"] = Field(
        description="nerve_block: facial nerve block (neurolytic); rf_ablation: percutaneous radiofrequency ablation"
    )
    side: Literal["left", "right"] = Field(description="The side done: the spasm's, or a reason is needed")
    notes: str | None = Field(default=None, max_length=500, description="Agent, guidance, settings")
    override_reason: OverrideReason = None


Details = Annotated[
    ToxinDetails | AcupunctureDetails | HerbalDetails | MvdDetails | MedicineDetails | ProcedureDetails,
    Field(discriminator="kind"),
]


class SessionCreate(Strict):
    """A treatment given on a date by a clinician."""

    date: PastDate
    clinician: str = Field(min_length=1, max_length=120)
    details: Details  # a site or herb given twice is refused when recorded (sessions.service), naming the entry


class SessionOutcome(Strict):
    """What is learnt about a session after it: how long a toxin session or a procedure worked and its side effects
    (usually told at the next visit), an operation's result, the day a medicine or a herbal prescription was stopped.
    Changing a value already recorded needs a reason."""

    effect_weeks: float | None = Field(
        default=None, gt=0, le=104, description="toxin or procedure: weeks the benefit lasted"
    )
    adverse_effects: list[Name] | None = Field(
        default=None, description="toxin or procedure: side effects after it (facial weakness, say)"
    )
    result: MvdResult | None = Field(default=None, description="mvd: cured, improved, unchanged or recurred")
    stopped: PastDate | None = Field(
        default=None, description="medicine or herbal: the day the patient stopped taking it"
    )
    reason: Reason | None = None

    @model_validator(mode="after")
    def _something(self) -> SessionOutcome:
        if self.effect_weeks is None and self.adverse_effects is None and self.result is None and self.stopped is None:
            raise ValueError("give effect_weeks, adverse_effects, result or stopped")
        return self
