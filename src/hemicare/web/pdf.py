"""Printable plans: a plain-language plan for the patient and a referral letter to the other specialty."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fpdf import FPDF

from hemicare.recalls.service import DueItem

_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
_FONT_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
_CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff]+")
_STATUS = {
    "recommended": "Recommended",
    "option": "An option to discuss",
    "deferred": "Not yet",
    "not_recommended": "Not recommended",
    "contraindicated": "Not safe for you",
}


class _Document(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__()
        self.unicode = _FONT.exists() and _FONT_BOLD.exists()
        if self.unicode:
            self.add_font("body", "", str(_FONT))
            self.add_font("body", "B", str(_FONT_BOLD))
        self.family_name = "body" if self.unicode else "helvetica"
        self.set_title(title)
        self.set_auto_page_break(auto=True, margin=15)
        self.add_page()

    def clean(self, text: str) -> str:
        """Chinese characters are left out of the PDF (the font has none); pinyin stays."""
        text = _CJK.sub("", text)
        return text if self.unicode else text.encode("latin-1", "replace").decode("latin-1")

    def heading(self, text: str, size: int = 14) -> None:
        self.set_font(self.family_name, "B", size)
        self.multi_cell(0, 8, self.clean(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def para(self, text: str, size: int = 10) -> None:
        self.set_font(self.family_name, "", size)
        self.multi_cell(0, 5, self.clean(text), new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def output_bytes(self) -> bytes:
        return bytes(self.output())


def patient_plan_pdf(*, patient_name: str, plan: dict[str, Any], due: list[DueItem]) -> bytes:
    """The plan in plain language for the patient to take home."""
    doc = _Document(f"HemiCare plan for {patient_name}")
    doc.heading(f"Your hemifacial spasm plan, {patient_name}")
    doc.para(
        f"Prepared {plan['generated_on']} with HemiCare (knowledge base {plan['knowledge_version']}). "
        "Your care team made these choices with you; this sheet reminds you of them."
    )
    doc.heading("What we suggest", 12)
    for rec in plan["recommendations"]:
        if rec["status"] in ("recommended", "option"):
            doc.para(
                f"{_STATUS[rec['status']]}: {rec['id'].replace('_', ' ').replace('medication:', '')}. {rec['summary']}"
            )
    doc.heading("Things to know", 12)
    for alert in plan["alerts"]:
        if alert["severity"] in ("critical", "warning") and not alert["id"].startswith("unchecked:"):
            doc.para(f"- {alert['message']}")
    doc.heading("What happens next", 12)
    if not due:
        doc.para("Your care team will arrange your next visit.")
    for item in due:
        doc.para(f"- {item.due.isoformat()}: {item.what}")
    doc.para(
        "How sure are we? Injections and surgery rest on large studies; acupuncture and herbs rest on weak "
        "evidence and are used beside, not instead of, medical treatment. Ask your team about anything here.",
        9,
    )
    return doc.output_bytes()


def referral_pdf(*, patient_name: str, plan: dict[str, Any], author: str, role: str) -> bytes:
    """A referral letter with the diagnosis, scores, the plan's items and alerts, and the references."""
    doc = _Document(f"Referral for {patient_name}")
    other = "TCM practitioner" if role != "tcm_practitioner" else "neurology / neurosurgery"
    doc.heading(f"Referral to {other}: {patient_name}")
    doc.para(
        f"From {author} ({role.replace('_', ' ')}). HemiCare plan of {plan['generated_on']}, knowledge base "
        f"{plan['knowledge_version']}."
    )
    diagnosis = plan["diagnosis"]
    doc.heading("Diagnosis", 12)
    doc.para(f"{diagnosis['status'].replace('_', ' ')}: {diagnosis['summary']}")
    for flag in diagnosis["red_flags"]:
        doc.para(f"Red flag: {flag['finding']}. {flag['action']}")
    if plan["scores"]:
        doc.heading("Scores", 12)
        for result in plan["scores"].values():
            doc.para(f"{result['name']}: {result['value']:g} ({result['interpretation']})")
    doc.heading("Alerts", 12)
    for alert in plan["alerts"]:
        doc.para(f"[{alert['severity'].upper()}] {alert['message']}")
    doc.heading("Plan", 12)
    for rec in plan["recommendations"]:
        evidence = rec["evidence"]
        doc.para(
            f"{rec['status'].replace('_', ' ').upper()} - {rec['id']} ({rec['category']}); evidence "
            f"{evidence['certainty'].replace('_', ' ')} [{', '.join(evidence['references'])}]"
        )
    if plan.get("tcm", {}).get("summary"):
        doc.heading("TCM pattern", 12)
        doc.para(plan["tcm"]["summary"])
    doc.heading("References", 12)
    for ref, citation in plan["references"].items():
        doc.para(f"{ref}: {citation}", 8)
    return doc.output_bytes()
