"""The assessment: what a clinician records about one patient, validated into a typed model.

Ranges here describe the shape of the input (a 0-4 item is a 0-4 item); clinical meaning lives in the knowledge
base. Unknown keys anywhere are errors. Medications and comorbidities are free text on purpose: an unknown one is
kept and reported as unchecked, never dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from hemicare.engine.errors import FieldProblem

SCHEMA_VERSION = 1

ITEM_MAX = 4  # HFS-7 and HFS-30 items, Jankovic and Cohen-Albert grades: 0 to 4
Item04 = Annotated[int, Field(ge=0, le=ITEM_MAX)]
NAME_MAX = 120  # characters in a name the assessment lists (a medicine, a side effect...)
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX)]


class Strict(BaseModel):
    """Base of the input models: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"


class Tristate(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    UNKNOWN = "unknown"


class Side(StrEnum):
    LEFT = "left"
    RIGHT = "right"
    BILATERAL = "bilateral"


class OnsetSite(StrEnum):
    PERIOCULAR = "periocular"
    LOWER_FACE = "lower_face"


class FaceRegion(StrEnum):
    PERIOCULAR = "periocular"
    FOREHEAD = "forehead"
    CHEEK = "cheek"
    MOUTH = "mouth"
    CHIN = "chin"
    NECK = "neck"


class MvdResult(StrEnum):
    CURED = "cured"
    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    RECURRED = "recurred"


class ToxinProduct(StrEnum):
    ONABOTULINUMTOXINA = "onabotulinumtoxinA"
    INCOBOTULINUMTOXINA = "incobotulinumtoxinA"
    ABOBOTULINUMTOXINA = "abobotulinumtoxinA"


class MriStatus(StrEnum):
    DONE = "done"
    NOT_DONE = "not_done"
    PLANNED = "planned"


class Vessel(StrEnum):
    AICA = "aica"
    PICA = "pica"
    VERTEBRAL = "vertebral"
    VEIN = "vein"
    MULTIPLE = "multiple"
    UNKNOWN = "unknown"


class TongueBody(StrEnum):
    PALE = "pale"
    PALE_RED = "pale_red"
    RED = "red"
    DEEP_RED = "deep_red"
    PURPLE = "purple"


class TongueCoating(StrEnum):
    THIN_WHITE = "thin_white"
    THIN_YELLOW = "thin_yellow"
    WHITE_GREASY = "white_greasy"
    YELLOW_GREASY = "yellow_greasy"
    SCANTY = "scanty"
    PEELED = "peeled"


class Pulse(StrEnum):
    FLOATING = "floating"
    DEEP = "deep"
    SLOW = "slow"
    RAPID = "rapid"
    WIRY = "wiry"
    SLIPPERY = "slippery"
    THIN = "thin"
    WEAK = "weak"
    TIGHT = "tight"
    CHOPPY = "choppy"
    FORCEFUL = "forceful"


class TcmFinding(StrEnum):
    ACUTE_ONSET = "acute_onset"
    LONG_ILLNESS = "long_illness"
    WORSE_WITH_STRESS = "worse_with_stress"
    WORSE_WHEN_TIRED = "worse_when_tired"
    WORSE_WITH_WIND_COLD = "worse_with_wind_cold"
    AVERSION_TO_COLD = "aversion_to_cold"
    IRRITABILITY = "irritability"
    LOW_MOOD = "low_mood"
    SIGHING = "sighing"
    HEADACHE = "headache"
    DIZZINESS = "dizziness"
    RED_FACE = "red_face"
    RED_EYES = "red_eyes"
    BITTER_TASTE = "bitter_taste"
    DRY_THROAT = "dry_throat"
    TINNITUS = "tinnitus"
    INSOMNIA = "insomnia"
    NIGHT_SWEATS = "night_sweats"
    DRY_EYES = "dry_eyes"
    HEAT_IN_PALMS_AND_SOLES = "heat_in_palms_and_soles"
    LOWER_BACK_WEAKNESS = "lower_back_weakness"
    FATIGUE = "fatigue"
    PALLOR = "pallor"
    POOR_APPETITE = "poor_appetite"
    SHORTNESS_OF_BREATH = "shortness_of_breath"
    PALPITATIONS = "palpitations"
    BLURRED_VISION = "blurred_vision"
    NUMBNESS_OF_LIMBS = "numbness_of_limbs"
    HEAVY_HEAD = "heavy_head"
    CHEST_OPPRESSION = "chest_oppression"
    OBESITY = "obesity"
    DARK_COMPLEXION = "dark_complexion"


def _not_in_future(value: dt.date) -> dt.date:
    if value > dt.date.today():
        raise ValueError(f"{value.isoformat()} is in the future")
    return value


PastDate = Annotated[dt.date, AfterValidator(_not_in_future)]


class Findings(Strict):
    """Examination findings; an omitted finding is unknown, which is not the same as absent."""

    tonic_spasm: bool | None = Field(default=None, title="Tonic spasm")
    facial_weakness: bool | None = Field(default=None, title="Facial weakness")
    hearing_loss: bool | None = Field(default=None, title="Hearing loss")
    facial_numbness: bool | None = Field(default=None, title="Facial numbness")
    other_cranial_nerve_deficit: bool | None = Field(default=None, title="Other cranial-nerve deficit")
    babinski2_sign: bool | None = Field(default=None, title="Babinski-2 sign")
    bilateral_synchronous: bool | None = Field(default=None, title="Bilateral synchronous")
    present_during_sleep: bool | None = Field(default=None, title="Present during sleep")
    facial_skin_infection: bool | None = Field(default=None, title="Skin infection on the face")


def yes_no_labels(model: type[BaseModel]) -> dict[str, str]:
    """The yes/no/unknown questions of a part of the assessment by field name, with the label a clinician reads."""
    return {
        name: field.title or name.replace("_", " ")
        for name, field in model.model_fields.items()
        if field.annotation == (bool | None)
    }


def finding_names(paths: Iterable[str]) -> list[str]:
    """Findings named by their assessment paths (``findings.hearing_loss``, as a plan lists what was not recorded)
    in the words the assessment form uses."""
    labels = {f"findings.{name}": label for name, label in yes_no_labels(Findings).items()}
    labels |= {f"history.{name}": label for name, label in yes_no_labels(History).items()}
    return [labels.get(path, path.rpartition(".")[2].replace("_", " ")) for path in paths]


class PriorMvd(Strict):
    date: PastDate
    result: MvdResult


class InjectionSite(Strict):
    site: Name
    units: float = Field(gt=0, le=400)


# The most units a toxin session holds in all: far above any product's cap, a bound on what is typed, which a toxin
# session recorded in HemiCare keeps too (its history is read back through this model).
SESSION_UNITS_MAX = 1000


class ToxinSession(Strict):
    date: PastDate
    product: ToxinProduct
    total_units: float = Field(gt=0, le=SESSION_UNITS_MAX)
    sites: list[InjectionSite] = []
    effect_weeks: float | None = Field(default=None, ge=0, le=104)
    adverse_effects: list[Name] = []

    @model_validator(mode="after")
    def _sites_add_up(self) -> ToxinSession:
        if self.sites:
            listed = sum(site.units for site in self.sites)
            if abs(listed - self.total_units) > 0.01:
                raise ValueError(f"site units add up to {listed:g}, but total_units is {self.total_units:g}")
        return self


class History(Strict):
    bells_palsy: bool | None = Field(default=None, title="Bell palsy")
    facial_nerve_injury: bool | None = Field(default=None, title="Facial-nerve injury")
    multiple_sclerosis: bool | None = Field(default=None, title="Multiple sclerosis")
    prior_mvd: PriorMvd | None = None
    botulinum_sessions: list[ToxinSession] = []


class Severity(Strict):
    smc_grade: int | None = Field(default=None, ge=1, le=4)
    jankovic_severity: Item04 | None = None
    jankovic_frequency: Item04 | None = None
    cohen_albert: Item04 | None = None


class Hfs30ByDomain(Strict):
    """HFS-30 answers grouped by subscale, as the questionnaire form in use groups them."""

    mobility: list[Item04] = Field(min_length=1)
    activities_of_daily_living: list[Item04] = Field(min_length=1)
    emotional_wellbeing: list[Item04] = Field(min_length=1)
    stigma: list[Item04] = Field(min_length=1)
    social_support: list[Item04] = Field(min_length=1)
    cognition: list[Item04] = Field(min_length=1)
    communication: list[Item04] = Field(min_length=1)

    @model_validator(mode="after")
    def _thirty_items(self) -> Hfs30ByDomain:
        count = sum(len(items) for items in self.model_dump().values())
        if count != 30:
            raise ValueError(f"HFS-30 has 30 items, but the subscales hold {count}")
        return self


class Imaging(Strict):
    mri: MriStatus = MriStatus.NOT_DONE
    neurovascular_compression: bool | None = None
    offending_vessel: Vessel | None = None
    structural_lesion: bool | None = None

    @model_validator(mode="after")
    def _results_need_mri(self) -> Imaging:
        if self.mri is not MriStatus.DONE:
            for name in ("neurovascular_compression", "structural_lesion", "offending_vessel"):
                if getattr(self, name) not in (None, Vessel.UNKNOWN):
                    raise ValueError(f"`{name}` is a result, but mri is `{self.mri.value}`, not `done`")
        return self


class Tongue(Strict):
    body: TongueBody | None = None
    coating: TongueCoating | None = None


class Tcm(Strict):
    tongue: Tongue = Tongue()
    pulse: list[Pulse] = []
    findings: list[TcmFinding] = []


class Preferences(Strict):
    avoid_surgery: bool = False
    avoid_needles: bool = False
    avoid_injections: bool = False
    wants_definitive_treatment: bool = False
    integrative_care: bool = False


# A patient code: it appears in addresses (/patients/CODE) and file names.
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
CODE_WORDS = "use only letters, digits, '.', '_' and '-', starting with a letter or digit"


class Assessment(Strict):
    """One patient's assessment, the input of every plan."""

    id: Annotated[str, Field(min_length=1, max_length=64, pattern=CODE_PATTERN)]
    age: int = Field(ge=0, le=120)
    sex: Sex
    pregnant: bool = False
    breastfeeding: bool = False
    ancestry: list[Name] = []
    hla_b1502: Tristate = Tristate.UNKNOWN
    side: Side
    duration_months: int = Field(ge=0, le=1440)
    onset_site: OnsetSite | None = None
    regions: list[FaceRegion] = Field(min_length=1)
    findings: Findings = Findings()
    history: History = History()
    severity: Severity = Severity()
    hfs7: list[Item04] | None = Field(default=None, min_length=7, max_length=7)
    hfs30: list[Item04] | Hfs30ByDomain | None = None
    imaging: Imaging = Imaging()
    comorbidities: list[Name] = []
    anaesthesia_risk_asa: int | None = Field(default=None, ge=1, le=5)
    medications: list[Name] = []
    herbs: list[Name] = Field(default=[], description="Herbal medicines the patient already takes, by any name")
    allergies: list[Name] = []
    tcm: Tcm = Tcm()
    preferences: Preferences = Preferences()

    @field_validator("hfs30")
    @classmethod
    def _hfs30_items(cls, value: list[int] | Hfs30ByDomain | None) -> list[int] | Hfs30ByDomain | None:
        if isinstance(value, list) and len(value) != 30:
            raise ValueError(f"HFS-30 has 30 items, got {len(value)}")
        return value

    @field_validator("regions")
    @classmethod
    def _no_repeats(cls, value: list[FaceRegion]) -> list[FaceRegion]:
        if len(set(value)) != len(value):
            raise ValueError("a region is listed twice")
        return value

    @property
    def onset_age_years(self) -> float:
        """Age at onset, from the current age and the duration of symptoms."""
        return self.age - self.duration_months / 12


def consistency_problems(assessment: Assessment) -> list[FieldProblem]:
    """Cross-field checks that name the field at fault (a model validator could not give a field path)."""
    problems: list[FieldProblem] = []
    if assessment.duration_months > assessment.age * 12 + 11:
        problems.append(
            FieldProblem(
                "duration_months",
                f"{assessment.duration_months} months is longer than a {assessment.age}-year-old has lived",
            )
        )
    if assessment.onset_site is OnsetSite.PERIOCULAR and FaceRegion.PERIOCULAR not in assessment.regions:
        problems.append(FieldProblem("regions", "onset_site is periocular, so `periocular` must be listed"))
    if assessment.onset_site is OnsetSite.LOWER_FACE and not (
        set(assessment.regions) - {FaceRegion.PERIOCULAR, FaceRegion.FOREHEAD}
    ):
        problems.append(FieldProblem("regions", "onset_site is lower_face, but no lower-face region is listed"))
    return problems
