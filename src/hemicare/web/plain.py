"""Plain words for patients and short labels, shared by the pages and the printable plans."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hemicare.engine import KnowledgeBase

# What a patient is told of an item's status; items with other statuses are not listed for the patient.
PATIENT_STATUS = {"recommended": "Suggested", "option": "To discuss"}


@dataclass(frozen=True)
class PlainItem:
    name: str
    status: str
    label: str
    text: str


def plain_items(plan: dict[str, Any], kb: KnowledgeBase) -> list[PlainItem]:
    """The plan's suggested and to-discuss items in plain language (the treatment's patient wording when it has one)."""
    items = []
    for rec in plan["recommendations"]:
        if rec["status"] not in PATIENT_STATUS:
            continue
        record = kb.treatments.get(rec["id"])
        items.append(
            PlainItem(
                name=record.name if record else rec["id"],
                status=rec["status"],
                label=PATIENT_STATUS[rec["status"]],
                text=record.plain if record and record.plain else rec["summary"],
            )
        )
    return items


def treatment_names(kb: KnowledgeBase) -> dict[str, str]:
    """Each treatment's name by its id, as recommendations name them."""
    return {treatment.id: treatment.name for treatment in kb.treatments.values()}


def diagnosis_label(status: str) -> str:
    """``primary_hfs_likely`` -> ``Primary HFS likely``."""
    return status.replace("_", " ").capitalize().replace("hfs", "HFS")
