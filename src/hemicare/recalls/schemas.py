"""Closing a recall: which kind, and why."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from hemicare.limits import Reason


class RecallClose(BaseModel):
    """The care team closes a kind of recall that no longer applies (the patient stopped that treatment, chose
    another, or is followed elsewhere); the reason is kept with it and in the audit trail."""

    model_config = ConfigDict(extra="forbid")

    recall: Literal["toxin", "acupuncture", "mvd_review", "hfs7"]
    reason: Reason
