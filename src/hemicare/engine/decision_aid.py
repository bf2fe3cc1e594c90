"""A side-by-side decision aid: the realistic options for this patient, the same questions for each.

Follows the IPDAS / Option Grid form: no-treatment included, benefits and harms in equal detail, probabilities on
one denominator ("in 100 people" or "in 100 treatments", as each figure's population says), evidence certainty,
citations. Numbers come only from knowledge-base figures.
"""

from __future__ import annotations

from hemicare.engine.loader import KnowledgeBase
from hemicare.engine.plan import (
    AidCell,
    AidColumn,
    DecisionAid,
    KeyedMemo,
    Recommendation,
    Status,
    evidence_out,
    figure_out,
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
    columns = [_column(kb, "no_treatment", None)]
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
