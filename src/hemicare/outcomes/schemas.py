"""Diary, questionnaire and grade input models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from hemicare.engine.assessment import Hfs30ByDomain, Item04
from hemicare.limits import Reason
from hemicare.sessions.schemas import PastDate


class DiaryCreate(BaseModel):
    """Today's spasms as the patient counts them."""

    model_config = ConfigDict(extra="forbid")

    date: PastDate
    spasms: int = Field(ge=0, le=10_000)
    per: Literal["hour", "day"] = "day"
    intensity: int = Field(ge=0, le=10)
    triggers: list[str] = Field(default=[], max_length=10)
    note: str | None = Field(default=None, max_length=500)


class QuestionnaireCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: PastDate
    instrument: Literal["hfs7", "hfs30"]
    answers: list[Item04] | Hfs30ByDomain

    @field_validator("answers")
    @classmethod
    def _item_count(cls, answers: list[int] | Hfs30ByDomain, info: ValidationInfo) -> list[int] | Hfs30ByDomain:
        """Checked on `answers` (the field named in the error), once the instrument is known to be valid."""
        instrument = info.data.get("instrument")
        if instrument is None:
            return answers
        expected = 7 if instrument == "hfs7" else 30
        if isinstance(answers, list) and len(answers) != expected:
            raise ValueError(f"{instrument} has {expected} items, got {len(answers)}")
        if isinstance(answers, Hfs30ByDomain) and instrument != "hfs30":
            raise ValueError("answers grouped by subscale are for hfs30 only")
        return answers

    @property
    def total(self) -> int:
        if isinstance(self.answers, list):
            return sum(self.answers)
        return sum(sum(items) for items in self.answers.model_dump().values())


class GradesCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: PastDate
    smc_grade: int | None = Field(default=None, ge=1, le=4)
    jankovic_severity: int | None = Field(default=None, ge=0, le=4)
    jankovic_frequency: int | None = Field(default=None, ge=0, le=4)
    cohen_albert: int | None = Field(default=None, ge=0, le=4)

    @model_validator(mode="after")
    def _some_grade(self) -> GradesCreate:
        # A visit with no grade recorded would still clear the post-MVD review recall (recalls.service.due).
        if all(
            grade is None
            for grade in (self.smc_grade, self.jankovic_severity, self.jankovic_frequency, self.cohen_albert)
        ):
            raise ValueError("record at least one grade (SMC, Jankovic severity or frequency, Cohen-Albert)")
        return self


# The assessment's preferences a patient may state (engine.assessment.Preferences), each answered yes, no or not sure.
PreferenceId = Literal[
    "avoid_surgery", "wants_definitive_treatment", "avoid_injections", "avoid_needles", "integrative_care"
]
Stance = Literal["yes", "no", "not_sure"]


class PreferencesStated(BaseModel):
    """What matters to the patient in choosing a treatment, as they say it: at least one statement answered."""

    model_config = ConfigDict(extra="forbid")

    date: PastDate
    answers: dict[PreferenceId, Stance]

    @field_validator("answers")
    @classmethod
    def _some_answer(cls, answers: dict[str, str]) -> dict[str, str]:
        if not answers:
            raise ValueError("answer at least one statement (yes, no or not sure)")
        return answers


class Removal(BaseModel):
    """Why a record entered by mistake is removed (a diary entry, questionnaire answers, a visit's grades, a treatment
    session): the audit trail keeps it with the values."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason
