"""What the page modules share: rendering a page, reading a posted form, paging, the outcome chart."""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup
from sqlalchemy.orm import Session

from hemicare.engine import KnowledgeBase
from hemicare.engine.intake import nul_problems
from hemicare.errors import FieldProblem, InputError, quoted
from hemicare.outcomes import service as outcome_service
from hemicare.patients.models import Patient
from hemicare.sessions import service as session_service
from hemicare.web import forms, once
from hemicare.web.app import template
from hemicare.web.auth import Principal
from hemicare.web.charts import Point, Treatment, outcome_chart


def _page(request: Request, name: str, user: Principal | None, status_code: int = 200, **context: Any) -> HTMLResponse:
    return template(request, name, {"user": user, **context}, status_code=status_code)


async def _form(request: Request) -> forms.FormData:
    raw = await request.form()
    single = {key: str(value) for key, value in raw.items()}
    multi = {key: [str(v) for v in raw.getlist(key)] for key in raw}
    if problems := nul_problems(multi):
        raise InputError([FieldProblem(problem.path.rsplit(".", 1)[0], problem.message) for problem in problems])
    return forms.FormData(single, multi)


# The posted form as a route parameter: read on the event loop, so that the route can be a plain function run in the
# thread pool (a route that waits on the database must not hold up the event loop).
PostedForm = Annotated[forms.FormData, Depends(_form)]


def _once(session: Session, request: Request, user: Principal, form: forms.FormData, location: str) -> RedirectResponse:
    """Claim the posted form for this write transaction (`hemicare.web.once`; sent already, it is answered with a
    redirect to ``location`` and nothing is written), and the redirect that answers it: to ``location``."""
    once.claim(session, username=user.username, path=request.url.path, form=form, location=location)
    return RedirectResponse(location, status_code=303)


def _page_number(text: str) -> int:
    """The ``page`` query parameter: 1, 2, ..."""
    if (number := forms.counting_number(text)) is None:
        raise InputError([FieldProblem("page", f"{quoted(text)} is not a page number (1, 2, ...)")])
    return number


def _pager(path: str, query: dict[str, str], page: int, total: int, size: int) -> dict[str, Any]:
    """A list's page (its last one if asked past the end: the list got shorter), how many there are, the number of
    the page's first row, and links to the pages before and after that keep the rest of the query."""
    pages = max(1, -(-total // size))
    page = min(page, pages)

    def link(to_page: int) -> str:
        return f"{path}?" + urlencode({**query, "page": to_page})

    return {
        "page": page,
        "pages": pages,
        "first": (page - 1) * size + 1,
        "previous": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if page < pages else None,
    }


PROCEDURE_LABELS = {"nerve_block": "block", "rf_ablation": "RF"}  # over a procedure's line on the chart


def _chart(found: outcome_service.Records, patient: Patient, kb: KnowledgeBase) -> Markup:
    hours = kb.policy("chart_waking_hours_per_day")
    needled = [s.date for s in found.sessions if s.kind == "acupuncture"]
    svg = outcome_chart(
        spasms=[
            Point(d.date, d.spasms)
            if d.per == "day"
            else Point(d.date, d.spasms * hours, f"{d.spasms:g} per hour x {hours:g} waking hours, a clinic setting")
            for d in found.diary
        ],
        intensity=[Point(d.date, d.intensity) for d in found.diary],
        hfs7=[Point(q.date, q.total) for q in found.scores.get("hfs7", [])],
        toxin=[s.date for s in found.sessions if s.kind == "toxin"],
        acupuncture=needled,
        courses=session_service.acupuncture_courses(needled),
        surgery=[
            Treatment(s.date, "MVD", f"Microvascular decompression {s.date.isoformat()}")
            for s in found.sessions
            if s.kind == "mvd"
        ],
        procedures=[
            Treatment(
                s.date,
                PROCEDURE_LABELS[s.data["procedure"]],
                f"{session_service.PROCEDURES[s.data['procedure']].capitalize()}, {s.data['side']} side "
                + s.date.isoformat(),
            )
            for s in found.sessions
            if s.kind == "procedure"
        ],
        hfs7_max=kb.scales["hfs7"].max,
        title=f"Outcomes over time for {patient.code}",
    )
    return Markup(svg)


# A form's problems by path: the form's input and the words its label uses.
FieldNames = dict[str, tuple[str, str]]


def _refused(kind: str, form: forms.FormData, problems: list[FieldProblem], names: FieldNames) -> dict[str, Any]:
    """A refused form for the page it came from: what was typed, each problem under the label on screen, and the
    inputs to mark (a dose box named by its site, not "details.sites.4.units")."""
    shown, invalid = [], set()
    for problem in problems:
        name, label = names.get(problem.path) or ("", problem.path or "form")
        if name:
            invalid.add(name)
        shown.append({"label": label, "message": problem.message})
    return {"form": kind, "typed": form, "problems": shown, "invalid": invalid}


QUESTIONNAIRES = {"hfs7": "HFS-7", "hfs30": "HFS-30"}  # the questionnaires the pages take, by instrument


class Items(NamedTuple):
    """A questionnaire's items as the knowledge base's scale says: how many, the answers each takes, and the range in
    words ("from 0 (never) to 4 (always)", the answers' words only where the source gives them: HFS-7's are not)."""

    items: int
    answers: list[str]
    span: str


def questionnaire_items(kb: KnowledgeBase, instrument: str = "hfs7") -> Items:
    scale = kb.scales[instrument]
    assert scale.items and scale.item_min is not None and scale.item_max is not None, f"{instrument} is itemised"
    low, high = (f" ({word})" for word in scale.item_anchors) if scale.item_anchors else ("", "")
    answers = [str(value) for value in range(scale.item_min, scale.item_max + 1)]
    return Items(scale.items, answers, f"from {scale.item_min}{low} to {scale.item_max}{high}")


def subscale_answers(
    kb: KnowledgeBase, form: forms.FormData
) -> tuple[dict[str, list[int]], list[FieldProblem], FieldNames]:
    """The HFS-30 form by subscale (`subscale.mobility`, ...: each subscale's answers in the order printed, separated
    by spaces or commas): the answers grouped, or each subscale left empty or holding something else than an answer,
    with the form's labels by problem path (the count of all items is checked on `answers`, the whole form)."""
    domains, (_, allowed, span) = kb.scales["hfs30"].domains, questionnaire_items(kb, "hfs30")
    grouped: dict[str, list[int]] = {}
    problems: list[FieldProblem] = []
    names: FieldNames = {"answers": ("", "Subscales")}
    each = f"each answer {span}, in the order printed, separated by spaces"
    for domain in domains:
        name = f"subscale.{domain}"
        names[name] = (name, domain.replace("_", " ").capitalize())
        typed = (form.get(name) or "").replace(",", " ").split()
        wrong = [answer for answer in typed if answer not in allowed]
        if not typed:
            problems.append(FieldProblem(name, f"type this subscale's answers: {each}"))
        elif wrong:
            problems.append(FieldProblem(name, f"{quoted(wrong[0])} is not an answer: {each}"))
        else:
            grouped[domain] = [int(answer) for answer in typed]
    return grouped, problems, names


def questionnaire_answers(
    kb: KnowledgeBase, form: forms.FormData, instrument: str = "hfs7"
) -> tuple[list[int], list[FieldProblem], FieldNames]:
    """A questionnaire form's items (`item.0`, ...): the answers, or each unanswered item said in the form's words
    (not the API's "answers.2"), with the form's labels by problem path."""
    items, answers, span = questionnaire_items(kb, instrument)
    given = [form.get(f"item.{index}") for index in range(items)]
    problems = [
        FieldProblem(f"item.{index}", f"choose an answer {span}")
        for index, answer in enumerate(given)
        if answer not in answers
    ]
    names: FieldNames = {f"item.{index}": (f"item.{index}", f"Item {index + 1}") for index in range(items)}
    return ([] if problems else [int(answer) for answer in given]), problems, names
