"""User input models."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hemicare.limits import REASON_MAX

Role = Literal["admin", "neurologist", "neurosurgeon", "tcm_practitioner", "patient"]
ROLES: tuple[str, ...] = get_args(Role)
CARE_TEAM: tuple[str, ...] = ("neurologist", "neurosurgeon", "tcm_practitioner")


PASSWORD = Field(min_length=10, max_length=200, description="At least 10 characters")


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = PASSWORD


class AccountChange(BaseModel):
    """Disabling or enabling an account: who may sign in is a decision with a reason."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=REASON_MAX)


USERNAME_MAX = 64
USERNAME_PATTERN = r"^[a-z0-9][a-z0-9_.\-]*$"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=3, max_length=USERNAME_MAX, pattern=USERNAME_PATTERN)
    full_name: str = Field(min_length=1, max_length=200)
    role: Role
    patient_code: str | None = None
    password: str = PASSWORD

    @model_validator(mode="after")
    def _patient_link(self) -> UserCreate:
        if self.role == "patient" and not self.patient_code:
            raise ValueError("a patient user needs patient_code, the patient record it may see")
        if self.role != "patient" and self.patient_code:
            raise ValueError("only a patient user is linked to a patient record")
        return self
