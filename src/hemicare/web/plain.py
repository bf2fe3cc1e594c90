"""Plain words for patients, shared by their page and their printable plan.

A patient is shown only what their care team has agreed: each part of the plan (medical, TCM) as a clinician of its
specialty last signed it. A plan HemiCare generated and nobody has reviewed is not shown to the patient at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from hemicare.db.base import local_day
from hemicare.engine import KnowledgeBase
from hemicare.engine.decision_aid import NO_TREATMENT, with_about
from hemicare.plans.schemas import part_of
from hemicare.sessions import service as session_service

if TYPE_CHECKING:
    from hemicare.plans.service import ReviewedPart
    from hemicare.recalls.service import DueItem

# What a patient is told of an item's status; items with other statuses are not listed for the patient.
PATIENT_STATUS = {"recommended": "Suggested", "option": "To discuss"}
PART_TITLES = {"conventional": "Medical treatment", "integrative": "Traditional Chinese medicine"}
# How a piece of diet or lifestyle advice is labelled for the patient, by its origin (knowledge/tcm/advice.yaml).
# Anything else is labelled as untested, never shown as established.
ADVICE_ORIGIN = {
    "study": "",
    "tradition": " (TCM tradition; not tested in trials)",
    "expert_opinion": " (expert opinion; not tested in trials)",
}
UNTESTED = " (not tested in trials)"
ROLE_WORDS = {
    "neurologist": "your neurologist",
    "neurosurgeon": "your neurosurgeon",
    "tcm_practitioner": "your TCM practitioner",
}


@dataclass(frozen=True)
class PlainItem:
    name: str
    status: str
    label: str
    text: str
    advice: list[str]  # the diet or lifestyle advice itself, each labelled with where it comes from


@dataclass(frozen=True)
class PlainPart:
    part: str
    title: str
    reviewed: str | None  # who agreed it and when, in the patient's words; None if nobody has yet
    update_pending: bool  # the care team is reviewing a newer version of this part
    items: list[PlainItem]


def plain_items(plan: dict[str, Any], kb: KnowledgeBase, *, part: str | None = None) -> list[PlainItem]:
    """The plan's suggested and to-discuss items in plain language (the treatment's patient wording when it has one),
    of one part or of all."""
    items = []
    for rec in plan["recommendations"]:
        if rec["status"] not in PATIENT_STATUS or (part is not None and part_of(rec["category"]) != part):
            continue
        record = kb.treatments.get(rec["id"])
        items.append(
            PlainItem(
                name=record.name if record else rec["id"],
                status=rec["status"],
                label=PATIENT_STATUS[rec["status"]],
                text=record.plain if record and record.plain else rec["summary"],
                advice=[
                    item["text"] + ADVICE_ORIGIN.get(item["origin"], UNTESTED)
                    for item in (rec.get("details") or {}).get("items", [])
                ],
            )
        )
    return items


def plain_parts(parts: list[str], reviewed: Mapping[str, ReviewedPart], kb: KnowledgeBase) -> list[PlainPart]:
    """Each part of the plan as the patient sees it: the items a clinician signed, or none while nobody has."""
    shown = []
    for part in parts:
        signed = reviewed.get(part)
        if signed is None:
            shown.append(PlainPart(part, PART_TITLES[part], None, update_pending=False, items=[]))
            continue
        who = ROLE_WORDS.get(signed.signoff["role"], "your care team")
        when = local_day(signed.signoff["at"]).isoformat()
        shown.append(
            PlainPart(
                part,
                PART_TITLES[part],
                f"Agreed by {who} on {when}",
                update_pending=signed.update_pending,
                items=plain_items(signed.content, kb, part=part),
            )
        )
    return shown


def plain_options(parts: list[str], reviewed: Mapping[str, ReviewedPart], kb: KnowledgeBase) -> dict[str, Any] | None:
    """The options side by side for the patient (the plan's decision aid): no treatment, then what each signed part
    suggests or offers to discuss, from the version its specialty signed, labelled as the patient's plan labels them.
    None while nothing signed is offered. Holds the aid's questions, denominator, note and what it says of itself
    (`with_about`: when it was issued; of the oldest, where the parts were signed from two knowledge base versions,
    so that a warning that figures are out of date is never hidden by a newer part), and the citations."""
    columns: list[dict[str, Any]] = []
    references: dict[str, str] = {}
    first = None
    for part in parts:
        signed = reviewed.get(part)
        aid = signed.content.get("decision_aid") if signed else None
        if signed is None or aid is None:
            continue
        aid = with_about(aid, signed.content["knowledge_version"], kb)
        if first is None or _review_by(aid) < _review_by(first):
            first = aid
        references.update(signed.content["references"])
        statuses = {
            rec["id"]: rec["status"] for rec in signed.content["recommendations"] if part_of(rec["category"]) == part
        }
        columns += [
            {**column, "status": statuses[column["option"]], "label": PATIENT_STATUS[statuses[column["option"]]]}
            for column in aid["columns"]
            if statuses.get(column["option"]) in PATIENT_STATUS
        ]
    if first is None or not columns:
        return None
    nothing = [column for column in first["columns"] if column["option"] == NO_TREATMENT]
    return {**first, "columns": nothing + columns, "references": references}


def _review_by(aid: Mapping[str, Any]) -> str:
    """The day (ISO) a stored aid's figures are due to be checked; one that does not say is taken as never."""
    about = aid.get("about")
    return about["review_by"] if about else "9999-12-31"


def things_to_know(reviewed: Mapping[str, ReviewedPart]) -> list[str]:
    """The critical and warning alerts of the signed versions, once each, for the patient's sheet (the notes on what
    no rule checked are for the care team)."""
    messages: dict[str, None] = {}
    for signed in reviewed.values():
        for alert in signed.content["alerts"]:
            if alert["severity"] in ("critical", "warning") and not alert["id"].startswith("unchecked:"):
                messages[alert["message"]] = None
    return list(messages)


class DueWords(NamedTuple):
    label: str  # "Due now", "Due today" or the date
    text: str


def due_words(item: DueItem) -> DueWords:
    """A recall as the patient reads it on their page and printed plan: one already past is due now, and once it is
    overdue (past the clinic's grace period) they are asked to book it."""
    when = item.due.isoformat()
    if item.plan:  # the plan holds it back: not the patient's to book
        label = when if item.days_late < 0 else "To be decided"
        return DueWords(label, f"{item.what}: your care team will tell you whether and when it goes ahead")
    if item.days_late > 0:
        book = "; please book it with the clinic" if item.overdue else ""
        return DueWords("Due now", f"{item.what} (since {when}){book}")
    if item.days_late == 0:
        return DueWords("Due today", item.what)
    return DueWords(when, item.what)


def taking_words(prescriptions: list[Any], kb: KnowledgeBase) -> list[str]:
    """What the patient takes now of what was prescribed in HemiCare, as they read it on their page: a medicine with
    its dose as written, herbs by their formula's name, each with its first day and, where it has a course, its last."""
    said = []
    for row in prescriptions:
        last = session_service.last_day(row)
        until = f", until {last.isoformat()}" if last else ""
        if row.kind == "medicine":
            said.append(
                f"{row.data['medicine'].capitalize()}, {row.data['dose']} (since {row.date.isoformat()}{until})"
            )
        else:
            formula = kb.formulas.get(row.data.get("formula") or "")
            name = f"Herbal medicine, {formula.pinyin}" if formula else "Herbal medicine"
            said.append(f"{name}, {len(row.data['herbs'])} herbs (since {row.date.isoformat()}{until})")
    return said
