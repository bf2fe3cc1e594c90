"""Plan review: status changes with a reason, sign-off requests, and stored plan versions as the API returns them."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from hemicare.engine.plan import Status
from hemicare.limits import REASON_MAX

if TYPE_CHECKING:
    from hemicare.plans.service import OverrideGroup

ROLES = ("admin", "neurologist", "neurosurgeon", "tcm_practitioner", "patient")
CONVENTIONAL_ROLES = ("neurologist", "neurosurgeon")
INTEGRATIVE_ROLES = ("tcm_practitioner",)
PARTS = {"conventional": CONVENTIONAL_ROLES, "integrative": INTEGRATIVE_ROLES}  # each part and the roles that sign it


def part_of(category: str) -> str:
    """Which part of a plan an item of this category belongs to: each part is signed by its own specialty."""
    return "integrative" if category == "integrative" else "conventional"


def parts_of(plan: dict[str, Any]) -> list[str]:
    """The parts a plan has items in, each to be signed by its own specialty."""
    return sorted({part_of(rec["category"]) for rec in plan["recommendations"]})


class PlanEdit(BaseModel):
    """A clinician's change to one recommendation's status."""

    model_config = ConfigDict(extra="forbid")

    recommendation: str = Field(min_length=1)
    status: Status
    reason: str = Field(min_length=3, max_length=REASON_MAX)


class SignRequest(BaseModel):
    """A sign-off: the plan version being signed, any status changes, and an optional reason."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1)
    edits: list[PlanEdit] = []
    reason: str | None = Field(default=None, max_length=REASON_MAX, description="A note kept with the signature")


class PlanVersionOut(BaseModel):
    """A stored plan version as the API returns it."""

    number: int
    kind: str
    signed_by: str | None
    plan: dict[str, Any]


class PlanVersionBrief(BaseModel):
    """One version in a patient's plan history, without the plan itself."""

    number: int
    kind: str = Field(description="generated (by HemiCare) or reviewed (signed by a clinician)")
    created_at: dt.datetime
    created_by: str
    signed_role: str | None
    edits: list[dict[str, Any]] = Field(
        description="Status changes made at this sign-off: recommendation, from, to, reason"
    )


class SignOffChange(BaseModel):
    """One sign-off that changed an item's status, with the clinician's reason."""

    patient: str = Field(description="The patient's code")
    number: int = Field(description="The plan version signed with the change")
    on: dt.date = Field(description="The clinic's day it was signed")
    role: str
    reason: str


class OverrideGroupOut(BaseModel):
    """One change clinicians made at sign-off (an item from one status to another) and every sign-off that made it,
    newest first."""

    model_config = ConfigDict(populate_by_name=True)

    recommendation: str
    before: str = Field(alias="from", description="The status HemiCare proposed")
    after: str = Field(alias="to", description="The status the clinician signed")
    times: int
    patients: int = Field(description="How many patients' plans it was made in")
    overrides: list[SignOffChange]

    @classmethod
    def of(cls, group: OverrideGroup) -> OverrideGroupOut:
        return cls(
            recommendation=group.recommendation,
            before=group.before,
            after=group.after,
            times=len(group.overrides),
            patients=group.patients,
            overrides=[SignOffChange(**override._asdict()) for override in group.overrides],
        )
