"""Plain words for patients, shared by their page and their printable plan."""

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
