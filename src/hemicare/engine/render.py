"""The plan as text a clinician reads: diagnosis and red flags first, then alerts, scores and options."""

from __future__ import annotations

import textwrap

from hemicare.engine.plan import EvidenceOut, Plan

_WIDTH = 100
_CERTAINTY = {"high": "HIGH", "moderate": "MODERATE", "low": "LOW", "very_low": "VERY LOW"}


def _wrap(text: str, indent: str = "  ", first: str | None = None) -> list[str]:
    return textwrap.wrap(
        text, width=_WIDTH, initial_indent=first if first is not None else indent, subsequent_indent=indent
    ) or [indent]


def _evidence(evidence: EvidenceOut, indent: str) -> list[str]:
    line = f"Evidence: {_CERTAINTY[evidence.certainty.value]} certainty [{', '.join(evidence.references)}]"
    lines = _wrap(line, indent)
    if evidence.note:
        lines += _wrap(f"Note: {evidence.note}", indent)
    return lines


def render_text(plan: Plan) -> str:
    """Render the plan for a clinician; every statement keeps its certainty and reference ids."""
    out: list[str] = []
    rule = "=" * _WIDTH
    out += [
        rule,
        f"HemiCare plan for patient {plan.patient_id}   ({plan.generated_on.isoformat()})",
        f"HemiCare {plan.hemicare_version}, knowledge base {plan.knowledge_version}. Decision support only: "
        "a clinician decides.",
        rule,
        "",
        "DIAGNOSIS",
        f"  Status: {plan.diagnosis.status.value.replace('_', ' ')}",
        *_wrap(plan.diagnosis.summary),
    ]
    if plan.diagnosis.red_flags:
        out += ["", "  Red flags (work-up first):"]
        for flag in plan.diagnosis.red_flags:
            out += _wrap(f"! {flag.finding} [{flag.kind.replace('_', ' ')}]", "      ", "    ")
            out += _wrap(f"Action: {flag.action}", "      ")
            out += _evidence(flag.evidence, "      ")
    if plan.diagnosis.unknown_findings:
        out += [
            "",
            "  Not recorded (needed to rule out secondary HFS): " + ", ".join(plan.diagnosis.unknown_findings),
        ]
    if plan.diagnosis.differentials:
        out += ["", "  Differential diagnosis to consider:"]
        for diff in plan.diagnosis.differentials:
            out += _wrap(f"- {diff.name}: {diff.reason}", "      ", "    ")
            out += _evidence(diff.evidence, "      ")
    if plan.alerts:
        out += ["", "ALERTS"]
        for alert in plan.alerts:
            out += _wrap(f"[{alert.severity.value.upper()}] {alert.message}", "      ", "  ")
            if alert.references:
                out += _wrap(f"References: {', '.join(alert.references)}", "      ")
    if plan.scores:
        out += ["", "SCORES"]
        for result in plan.scores.values():
            out += _wrap(f"{result.name}: {result.value:g}  ({result.interpretation})", "      ", "  ")
            for name, domain in result.domains.items():
                out.append(f"      {name.replace('_', ' ')}: {domain.value} of {domain.max}")
            if result.evidence.note:
                out += _wrap(f"Note: {result.evidence.note}", "      ")
    out += ["", "RECOMMENDATIONS"]
    if not plan.recommendations:
        out.append("  None yet.")
    for rec in plan.recommendations:
        out += ["", f"  [{rec.status.value.upper().replace('_', ' ')}] {rec.id} ({rec.category.value})"]
        out += _wrap(rec.summary, "    ")
        for reason in rec.rationale:
            out += _wrap(f"- {reason}", "      ", "    ")
        out += _evidence(rec.evidence, "    ")
    if plan.schedule:
        out += ["", "SCHEDULE"]
        for item in plan.schedule:
            due = item.due.isoformat() if item.due else "to arrange"
            out += _wrap(f"{due}: {item.what}" + (f" ({item.note})" if item.note else ""), "      ", "  ")
    if plan.references:
        out += ["", "REFERENCES"]
        for ref, citation in plan.references.items():
            out += _wrap(f"{ref}: {citation}", "      ", "  ")
    out.append("")
    return "\n".join(out)
