"""Where a clinician's referral letter can go: the other specialties of the care team."""

from __future__ import annotations

# Where a referral letter can go, and the part of the plan that is theirs (plans.schemas.part_of: the work-up is part
# of the conventional one): that part's details (MRI sequences, dose plan, points, formula, cautions) are printed in
# full, the sender's own part in brief.
SPECIALTIES = {"neurology": "conventional", "neurosurgery": "conventional", "tcm": "integrative"}
SPECIALTY_NAMES = {"neurology": "neurology", "neurosurgery": "neurosurgery", "tcm": "Traditional Chinese Medicine"}
_OWN_SPECIALTY = {"neurologist": "neurology", "neurosurgeon": "neurosurgery", "tcm_practitioner": "tcm"}


def referral_targets(role: str) -> list[str]:
    """The specialties a clinician of this role refers to (the other two), the usual one first."""
    return [specialty for specialty in SPECIALTIES if specialty != _OWN_SPECIALTY.get(role)]


# The sender's question is a few sentences for a colleague, not a record.
QUESTION_MAX = 2000
