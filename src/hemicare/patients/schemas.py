"""Patient input and output models."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hemicare.engine.assessment import CODE_PATTERN
from hemicare.limits import CODE_MAX

Code = Field(min_length=1, max_length=CODE_MAX, pattern=CODE_PATTERN)


class PatientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Code
    name: str = Field(min_length=1, max_length=200)
    birth_year: int | None = Field(default=None, ge=1900)
    sex: str = Field(pattern=r"^(female|male|other)$")
    phone: str | None = Field(default=None, max_length=40)

    @field_validator("birth_year")
    @classmethod
    def _not_future(cls, value: int | None) -> int | None:
        if value is not None and value > dt.date.today().year:
            raise ValueError(f"{value} is in the future")
        return value


class PatientUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=40)


class PatientRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    birth_year: int | None
    sex: str
    phone: str | None
    version: int
    created_at: dt.datetime
    created_by: str
