"""Plan review input: status changes with a reason."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hemicare.engine.plan import Status

ROLES = ("admin", "neurologist", "neurosurgeon", "tcm_practitioner", "patient")
CONVENTIONAL_ROLES = ("neurologist", "neurosurgeon")
INTEGRATIVE_ROLES = ("tcm_practitioner",)


class PlanEdit(BaseModel):
    """A clinician's change to one recommendation's status."""

    model_config = ConfigDict(extra="forbid")

    recommendation: str = Field(min_length=1)
    status: Status
    reason: str = Field(min_length=3, max_length=500)
