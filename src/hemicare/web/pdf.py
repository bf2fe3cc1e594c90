"""Printable plans: a plain-language plan for the patient and a referral letter to the other specialty."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fpdf import FPDF

from hemicare.db.base import local_day
from hemicare.engine.assessment import Assessment, finding_names
from hemicare.engine.decision_aid import OUT_OF_DATE, out_of_date
from hemicare.engine.plan import Recommendation, diagnosis_label, flagged
from hemicare.engine.render import INTEGRATIVE_NOTE, describe_assessment, detail_lines
from hemicare.outcomes.service import StatedLine, Summary
from hemicare.plans.schemas import part_of, parts_of
from hemicare.recalls.service import DueItem
from hemicare.web.charts import ICONS_EMPTY, ICONS_FILLED, chances_in_100
from hemicare.web.chinese import HAN as _HAN
from hemicare.web.plain import PlainPart, due_words
from hemicare.web.referrals import SPECIALTIES, SPECIALTY_NAMES

_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
_FONT_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
_FONT_MONO = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")
# Chinese names of patterns, points and herbs are printed when one of these fonts is installed (Debian packages
# fonts-droid-fallback, fonts-wqy-microhei); DejaVu has no Chinese characters.
CHINESE_FONTS = (
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
)
# An icon array on paper: squares of 1.2 mm, 1.5 mm apart, in the page's colours.
ICON_CELL_MM, ICON_STEP_MM = 1.2, 1.5
ICONS_MM = 9 * ICON_STEP_MM + ICON_CELL_MM
_ICONS_FILLED, _ICONS_EMPTY = (
    tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5)) for colour in (ICONS_FILLED, ICONS_EMPTY)
)
_CJK = re.compile(rf"\s*{_HAN}")
# A bracket holding only Chinese names, e.g. "(肝阳上亢 / 肝风内动)", goes with them rather than staying empty.
_CJK_BRACKET = re.compile(rf"\s*\(\s*{_HAN}(?:\s*/\s*{_HAN})*\s*\)")


class _Document(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__()
        self.unicode = _FONT.exists() and _FONT_BOLD.exists()
        self.chinese = False
        if self.unicode:
            self.add_font("body", "", str(_FONT))
            self.add_font("body", "B", str(_FONT_BOLD))
            chinese = next((font for font in CHINESE_FONTS if font.exists()), None)
            if chinese is not None:
                # Characters DejaVu lacks are drawn in the Chinese font, in headings (bold) too.
                self.add_font("chinese", "", str(chinese))
                self.set_fallback_fonts(["chinese"], exact_match=False)
                self.chinese = True
        self.family_name = "body" if self.unicode else "helvetica"
        self.mono_name = "courier"
        if self.unicode and _FONT_MONO.exists():
            self.add_font("mono", "", str(_FONT_MONO))
            self.mono_name = "mono"
        self.set_title(title)
        self.set_auto_page_break(auto=True, margin=15)
        self.add_page()

    def clean(self, text: str) -> str:
        """Without a Chinese font, Chinese characters are left out of the PDF; pinyin stays."""
        if not self.chinese:
            text = _CJK.sub("", _CJK_BRACKET.sub("", text))
        return text if self.unicode else text.encode("latin-1", "replace").decode("latin-1")

    def keep_room(self, height: float) -> None:
        """Start a new page unless ``height`` mm fit on this one: a heading is not left alone at the foot of a page."""
        if self.will_page_break(height):
            self.add_page()

    def heading(self, text: str, size: int = 14) -> None:
        self.keep_room(8 + 3 * 5)  # the heading and three lines of text
        self.set_font(self.family_name, "B", size)
        self.multi_cell(0, 8, self.clean(text), align="L", new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def para(self, text: str, size: int = 10, style: str = "") -> None:
        self.set_font(self.family_name, style, size)
        # Left-aligned: justified lines full of references and codes open wide gaps between words. Lines are half a
        # millimetre apart per point of type (5 mm at 10 pt).
        self.multi_cell(0, size / 2, self.clean(text), align="L", new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def beside_icons(self, count: int, text: str, size: int) -> None:
        """``text`` beside an icon array of a hundred squares, ``count`` of them filled (charts.icon_array on paper):
        rows of ten from the top left, the text indented past it, the next line below both."""
        self.keep_room(ICONS_MM + 2)
        left, top = self.l_margin, self.get_y() + 0.5
        for index in range(100):
            row, column = divmod(index, 10)
            self.set_fill_color(*(_ICONS_FILLED if index < count else _ICONS_EMPTY))
            self.rect(left + column * ICON_STEP_MM, top + row * ICON_STEP_MM, ICON_CELL_MM, ICON_CELL_MM, style="F")
        self.set_x(left + ICONS_MM + 3)
        self.para(text, size)
        self.set_y(max(self.get_y(), top + ICONS_MM + 1.5))

    def output_bytes(self) -> bytes:
        return bytes(self.output())


# The patient's sheet is read at home, often by older people and with one eye closing in a spasm: no text on it is
# smaller than 12 pt.
PATIENT_TEXT_PT = 12


def patient_plan_pdf(
    *,
    patient_name: str,
    printed_on: dt.date,
    parts: list[PlainPart],
    warnings: list[str],
    due: list[DueItem],
    options: dict[str, Any] | None = None,
) -> bytes:
    """The plan in plain language for the patient to take home: the same words as the patient's own page, and only
    what a clinician has agreed; then the options side by side (``plain.plain_options``), question by question, as
    the page's table would be too narrow at this size of type."""
    doc = _Document(f"HemiCare plan for {patient_name}")

    def say(text: str, style: str = "") -> None:
        if style == "B":  # an item's name stays with its first lines
            doc.keep_room(4 * PATIENT_TEXT_PT / 2)
        doc.para(text, PATIENT_TEXT_PT, style)

    doc.heading(f"Your hemifacial spasm plan, {patient_name}", 16)
    say(f"Printed {printed_on.isoformat()} from HemiCare. It reminds you of what your care team agreed with you.")
    for part in parts:
        doc.heading(part.title, 14)
        if part.reviewed is None:
            say("Your care team has not reviewed this part of your plan yet; they will go through it with you.")
            continue
        say(f"{part.reviewed}.")
        if part.update_pending:
            say("Your care team is reviewing an update to this part; ask them about it at your next visit.")
        if not part.items:
            say("No treatment of this kind is suggested for now.")
        for item in part.items:
            say(f"{item.label}: {item.name}", "B")
            say(item.text)
            for line in item.advice:
                say(f"- {line}")
    if not parts:
        say("Nothing yet: your care team will talk the options through with you.")
    if warnings:
        doc.heading("Things to know", 14)
        for message in warnings:
            say(f"- {message}")
    if options:
        doc.heading("Your options side by side", 14)
        say(options["denominator"])
        for question_id, question in [*options["questions"].items(), (None, "How sure is the evidence?")]:
            doc.heading(question, PATIENT_TEXT_PT)
            for column in options["columns"]:
                label = f" ({column['label'].lower()})" if column.get("label") else ""
                if question_id is None:
                    say(f"{column['name']}{label}: {column['evidence']['certainty'].replace('_', ' ')}.")
                    continue
                cell = column["answers"][question_id]
                say(f"{column['name']}{label}: {cell['text']}")
                for figure in cell["figures"]:
                    cited = ", ".join(figure["evidence"]["references"])
                    words = f"{figure['label']}: {figure['per_100'] or figure['text']} ({cited})"
                    if flagged(note := figure["evidence"].get("note")):
                        words += f" {note}"
                    count = chances_in_100(figure)
                    if count is None:
                        say(f"- {words}")
                    else:
                        doc.beside_icons(count, words, PATIENT_TEXT_PT)
        say(options["note"])
        if "about" in options:
            say(options["about"]["text"])
        if out_of_date(options, printed_on):
            say(OUT_OF_DATE.format(options["about"]["review_by"]))
    doc.heading("What happens next", 14)
    if not due:
        say("Your care team will arrange your next visit.")
    for label, text in map(due_words, due):
        say(f"- {label}: {text}")
    say(
        "How sure are we? Injections and surgery rest on large studies; acupuncture and herbs rest on weak "
        "evidence and are used beside, not instead of, medical treatment. Ask your team about anything here."
    )
    return doc.output_bytes()


def _signoff_line(plan: dict[str, Any]) -> str:
    """Who has signed which part of the plan, so that the reader knows what is agreed and what is only proposed."""
    said = []
    for part in parts_of(plan):
        signed = plan.get("signoff", {}).get(part)
        if signed is None:
            said.append(f"{part} part not yet signed (proposed by HemiCare, not agreed)")
        else:
            role = signed["role"].replace("_", " ")
            said.append(f"{part} part signed by {signed['by']} ({role}) on {local_day(signed['at'])}")
    return "Sign-off: " + ("; ".join(said) if said else "nothing to sign") + "."


@dataclass(frozen=True)
class Referral:
    """What a referral letter says: who writes to whom and why, and the patient's record as it stands."""

    target: str  # a key of referrals.SPECIALTIES
    question: str  # the sender's own words; may be empty
    author: str
    role: str
    printed_on: dt.date
    patient_name: str
    patient_code: str
    sex: str
    birth_year: int | None
    plan: dict[str, Any]
    plan_number: int
    assessment: Assessment | None
    history: list[dict[str, Any]]  # date, kind, clinician, what, outcome, running, last_day: as on the patient's page
    outcomes: Summary
    names: dict[str, str]  # recommendation names by id (the knowledge base's treatments)
    scale_names: dict[str, str]
    stated: list[StatedLine] = field(default_factory=list)  # what the patient last said matters to them
    stated_on: dt.date | None = None


def _mono(doc: _Document, lines: list[str]) -> None:
    """Lines laid out in columns by the text plan (engine/render.py), kept in a fixed-width font."""
    doc.set_font(doc.mono_name, "", 7)
    for line in lines:
        doc.multi_cell(0, 3.5, doc.clean(line) or " ", align="L", new_x="LMARGIN", new_y="NEXT")
    doc.ln(1)


def referral_pdf(referral: Referral) -> bytes:
    """A referral letter: the sender's question, then the diagnosis, alerts, assessment, treatment so far, outcomes,
    the plan (the receiving specialty's part in full) and the references.

    An item without a name in ``names`` is printed by its id.
    """
    r = referral
    plan = r.plan
    doc = _Document(f"Referral for {r.patient_name}")
    doc.heading(f"Referral to {SPECIALTY_NAMES[r.target]}: {r.patient_name}")
    born = f", born {r.birth_year}" if r.birth_year else ""
    doc.para(f"Patient: {r.patient_name} ({r.patient_code}, {r.sex}{born}).")
    doc.para(
        f"From {r.author} ({r.role.replace('_', ' ')}), {r.printed_on.isoformat()}. HemiCare plan version "
        f"{r.plan_number} of {plan['generated_on']}, knowledge base {plan['knowledge_version']}. HemiCare supports "
        "clinical decisions; it does not make them."
    )
    if r.question.strip():
        doc.heading("Question", 12)
        doc.para(r.question.strip())
    doc.para(_signoff_line(plan))
    diagnosis = plan["diagnosis"]
    doc.heading("Diagnosis", 12)
    doc.para(f"{diagnosis_label(diagnosis['status'])}: {diagnosis['summary']}")
    for flag in diagnosis["red_flags"]:
        doc.para(f"Red flag: {flag['finding']}. {flag['action']}")
    if diagnosis.get("unknown_findings"):
        missing = ", ".join(finding_names(diagnosis["unknown_findings"]))
        doc.para(f"Not recorded (needed to rule out secondary HFS): {missing}.")
    for differential in diagnosis.get("differentials", []):
        doc.para(f"Differential to consider: {differential['name']}. {differential['reason']}")
    if plan.get("tcm", {}).get("summary"):
        doc.heading("TCM pattern", 12)
        doc.para(plan["tcm"]["summary"])
    doc.heading("Alerts", 12)
    for alert in plan["alerts"]:
        doc.para(f"[{alert['severity'].upper()}] {alert['message']}")
    if not plan["alerts"]:
        doc.para("None.")
    if r.assessment is not None:
        doc.heading("Assessment", 12)
        for line in describe_assessment(r.assessment):
            doc.para(line)
    if r.stated:
        doc.heading("What the patient says matters to them", 12)
        doc.para(f"Stated {r.stated_on}: " + "; ".join(line.words() for line in r.stated) + ".")
    if plan["scores"]:
        doc.heading("Scores", 12)
        for result in plan["scores"].values():
            note = result["evidence"].get("note")
            doc.para(
                f"{result['name']}: {result['value']:g}. {result['interpretation']}"
                + (f" {note}" if flagged(note) else "")
            )
    doc.heading("Treatment so far", 12)
    for row in reversed(r.history):
        outcome = f" Outcome: {row['outcome']}." if row["outcome"] else ""
        doc.para(f"{row['date']} {row['kind']} by {row['clinician']}: {row['what']}.{outcome}", 9)
    if not r.history:
        doc.para("No treatment recorded in HemiCare.")
    taking = [
        f"{row['what']} (from {row['date']}{', until ' + str(row['last_day']) if row.get('last_day') else ''})"
        for row in r.history
        if row.get("running")
    ]
    if taking:
        doc.para("Taken now, as prescribed in HemiCare: " + "; ".join(taking) + ".")
    doc.heading("Outcomes", 12)
    doc.para(_outcome_words(r.outcomes, r.scale_names))
    doc.heading("Plan", 12)
    receiving = SPECIALTIES[r.target]
    integrative_seen = False
    for rec in plan["recommendations"]:
        if rec["category"] == "integrative" and not integrative_seen:
            integrative_seen = True
            doc.para(INTEGRATIVE_NOTE, 9)
        evidence = rec["evidence"]
        status = rec["status"].replace("_", " ")
        doc.para(
            f"{status[0].upper()}{status[1:]}: {r.names.get(rec['id'], rec['id'])} ({rec['category']}). Evidence: "
            f"{evidence['certainty'].replace('_', ' ')} certainty [{', '.join(evidence['references'])}]."
        )
        for reason in rec["rationale"]:
            doc.para(f"- {reason}", 9)
        if part_of(rec["category"]) == receiving:
            _mono(doc, detail_lines(Recommendation.model_validate(rec)))
    doc.heading("References", 12)
    for ref, citation in plan["references"].items():
        doc.para(f"{ref}: {citation}", 8)
    return doc.output_bytes()


def _outcome_words(outcomes: Summary, scale_names: dict[str, str]) -> str:
    said = [change.words(scale_names.get(name, name)) for name, change in outcomes.questionnaires.items()]
    if outcomes.mean_toxin_effect_weeks:
        said.append(f"Mean toxin effect: {outcomes.mean_toxin_effect_weeks:g} weeks.")
    if outcomes.procedures:
        said.append(outcomes.procedure_words())
    if outcomes.monthly:
        month = outcomes.monthly[-1]["month"]
        means = [
            f"{bucket['mean_spasms']:g} spasms per {bucket['per']} at intensity {bucket['mean_intensity']:g} of 10"
            for bucket in outcomes.monthly
            if bucket["month"] == month
        ]
        said.append(f"Diary: {outcomes.diary_entries} entries; mean in {month}: {'; '.join(means)}.")
    return " ".join(said) or "No outcomes recorded yet."
