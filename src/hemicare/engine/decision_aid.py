"""A side-by-side decision aid: the realistic options for this patient, the same questions for each.

Follows the IPDAS / Option Grid form: no-treatment included, benefits and harms in equal detail, probabilities on
one denominator ("in 100 people" or "in 100 treatments", as each figure's population says), evidence certainty,
citations. Numbers come only from knowledge-base figures.
"""

from __future__ import annotations

from typing import Any

from hemicare.engine.loader import KnowledgeBase
from hemicare.engine.plan import (
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
    )


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
