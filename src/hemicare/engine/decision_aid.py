"""A side-by-side decision aid: the realistic options for this patient, the same questions for each.

Follows the IPDAS / Option Grid form: no-treatment included, benefits and harms in equal detail, probabilities on
one denominator ("in 100 people" or "in 100 treatments", as each figure's population says), evidence certainty,
citations. Numbers come only from knowledge-base figures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from hemicare.engine.loader import KnowledgeBase, issued_month
from hemicare.engine.plan import (
    AidAbout,
    AidCell,
    AidColumn,
    DecisionAid,
    KeyedMemo,
    Memo,
    Recommendation,
    Status,
    evidence_out,
    figure_out,
    memoised,
    memoised_with,
)

QUESTIONS = {
    "what_it_involves": "What does it involve?",
    "how_well": "How well does it work?",
    "how_soon": "How soon does it work?",
    "how_long": "How long does it last?",
    "risks": "What are the main risks?",
}

_SHOWN = (Status.RECOMMENDED, Status.OPTION, Status.DEFERRED)
NO_TREATMENT = "no_treatment"  # the column every aid starts with: what happens if nothing is done


_COLUMNS: KeyedMemo = {}


def _column(kb: KnowledgeBase, option: str, status: Status | None) -> AidColumn:
    """An option's column; it depends only on the knowledge record and the status, so it is built once."""
    column: AidColumn = memoised_with(
        _COLUMNS, kb.treatments[option], status, lambda record, key: _build_column(kb, record.id, key)
    )
    return column


def _build_column(kb: KnowledgeBase, option: str, status: Status | None) -> AidColumn:
    record = kb.treatments[option]
    answers: dict[str, AidCell] = {}
    for question in QUESTIONS:
        answer = next((a for a in record.aid if a.question == question), None)
        if answer is None:
            answers[question] = AidCell(text="Not reported in the sources read.")
        else:
            answers[question] = AidCell(
                text=answer.text, figures=[figure_out(record.figure(f)) for f in answer.figures]
            )
    return AidColumn(
        option=option,
        name=record.name,
        status=status,
        answers=answers,
        evidence=evidence_out(record.evidence),
    )


def decision_aid(recommendations: list[Recommendation], kb: KnowledgeBase) -> DecisionAid:
    """Columns: no treatment, then every option with a decision-aid entry that is realistic for this patient."""
    columns = [_column(kb, NO_TREATMENT, None)]
    for rec in recommendations:
        if rec.status in _SHOWN and rec.id in kb.treatments and kb.treatments[rec.id].aid:
            columns.append(_column(kb, rec.id, rec.status))
    return DecisionAid(
        questions=QUESTIONS,
        columns=columns,
        denominator="Percentages are shown as a number in 100 people (or in 100 treatments where the figure says so).",
        note=(
            "Figures come from different studies and follow-up times; each says where it comes from. "
            "Talk them through with the care team and weigh what matters most to you."
        ),
        about=about(kb),
    )


_ABOUT: Memo = {}


def about(kb: KnowledgeBase) -> AidAbout:
    """The aid's date and update policy, the same for every plan made from ``kb``."""

    def make(source: KnowledgeBase) -> AidAbout:
        made = about_of(source.version, source)
        if made is None:  # the loader refuses such a version
            raise ValueError(f"knowledge base version {source.version!r} is not YEAR.MONTH.N")
        return made

    result: AidAbout = memoised(_ABOUT, kb, make)
    return result


def about_of(version: str, kb: KnowledgeBase) -> AidAbout | None:
    """What an aid made from knowledge base ``version`` says of itself: the month that version was issued, and when
    the clinic's policy in ``kb`` (`decision_aid_review_years`) has it shown as out of date. None for a version not
    written YEAR.MONTH.N."""
    issued = issued_month(version)
    if issued is None:
        return None
    years = int(kb.policy("decision_aid_review_years"))
    return AidAbout(
        knowledge_version=version,
        issued=issued,
        review_by=issued.replace(year=issued.year + years),
        text=(
            f"From HemiCare's knowledge base {version}, issued in {issued:%B %Y}; every figure names its source. "
            "When new evidence changes a figure, a new version is issued and HemiCare lists the patients whose "
            "plans it changes for their care team to review. Written by the HemiCare open-source project, which "
            "sells none of these treatments."
        ),
    )


def with_about(aid: dict[str, Any], version: str, kb: KnowledgeBase) -> dict[str, Any]:
    """A stored aid (JSON) with what it says of itself, as its plan's knowledge base ``version`` and the clinic's
    policy now in ``kb`` say: the day it is out of date follows the policy in force, not the one when it was made,
    and an aid stored before aids said so is given it (a copy; the stored one is not changed). One whose version is
    not YEAR.MONTH.N keeps what it stored."""
    made = about_of(version, kb)
    return aid if made is None else {**aid, "about": made.model_dump(mode="json")}


OUT_OF_DATE = (
    "These figures were due to be checked against newer evidence by {}: ask the care team whether newer studies "
    "change them."
)
"""What an aid past its ``review_by`` day says (with the day), wherever it is shown."""


def out_of_date(aid: Mapping[str, Any], today: dt.date) -> bool:
    """Whether a stored aid (JSON) is past the day its figures were due to be checked against newer evidence."""
    said = aid.get("about")
    return said is not None and dt.date.fromisoformat(said["review_by"]) <= today


_COLUMN_REFERENCES: Memo = {}


def column_references(column: AidColumn) -> frozenset[str]:
    """The references a decision-aid column cites (columns are shared between plans, so this is worked out once)."""

    def make(source: AidColumn) -> frozenset[str]:
        found = set(source.evidence.references)
        for cell in source.answers.values():
            for figure in cell.figures:
                found.update(figure.evidence.references)
        return frozenset(found)

    result: frozenset[str] = memoised(_COLUMN_REFERENCES, column, make)
    return result


def follow_statuses(content: dict[str, Any], kb: KnowledgeBase) -> None:
    """Bring a stored plan's decision aid (JSON) in step with its items' statuses once a clinician has changed some:
    each option's column carries its item's status, an option no longer offered nor deferred leaves the aid, and one
    lifted to an offer joins it, its column and citations taken from ``kb``. The columns keep the plan's order."""
    aid = content.get("decision_aid")
    if aid is None:  # a compact plan has none
        return
    shown = {status.value for status in _SHOWN}
    kept = {column["option"]: column for column in aid["columns"]}
    columns = [kept[NO_TREATMENT]] if NO_TREATMENT in kept else []
    for rec in content["recommendations"]:
        if rec["status"] not in shown:
            continue
        column = kept.get(rec["id"])
        if column is None:
            record = kb.treatments.get(rec["id"])
            if record is None or not record.aid:
                continue
            made = _column(kb, rec["id"], Status(rec["status"]))
            content["references"].update({ref: kb.references[ref].citation for ref in column_references(made)})
            column = made.model_dump(mode="json")
        columns.append({**column, "status": rec["status"]})
    aid["columns"] = columns
