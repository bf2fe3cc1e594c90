"""The plan as text a clinician reads: diagnosis and red flags first, then alerts, scores and options."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

from hemicare.engine.assessment import Assessment, Findings, History, MriStatus, finding_names, yes_no_labels
from hemicare.engine.decision_aid import OUT_OF_DATE
from hemicare.engine.plan import EvidenceOut, Plan, Recommendation, diagnosis_label, flagged

_WIDTH = 100
_CERTAINTY = {"high": "HIGH", "moderate": "MODERATE", "low": "LOW", "very_low": "VERY LOW"}
# Which details of an item show by its status, here and on the clinician's page (web/templates/_details.html): how to
# deliver it for items that may be given; the figures and how to judge the result for deferred ones too.
# Said once before the first integrative item, in the text plan and the referral letter (the page says it too, with
# emphasis: web/templates/_plan.html).
INTEGRATIVE_NOTE = (
    "Integrative (TCM) adjuncts: acupuncture and herbs for HFS rest on low or very-low certainty evidence. They are "
    "offered beside the conventional options above, never instead of them."
)
DELIVERED = ("recommended", "option")
WEIGHED = (*DELIVERED, "deferred")


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


def _figure_lines(figures: list[dict[str, Any]], indent: str) -> list[str]:
    lines: list[str] = []
    for fig in figures:
        refs = ", ".join(fig["evidence"]["references"])
        # The population is said after the figure, not in brackets: many carry brackets of their own.
        lines += _wrap(f"- {fig['label']}: {fig['text']}. Basis: {fig['population']} [{refs}]", indent + "  ", indent)
        if fig["evidence"].get("note"):
            lines += _wrap(f"Note: {fig['evidence']['note']}", indent + "  ")
    return lines


def detail_lines(rec: Recommendation) -> list[str]:
    """An item's details as indented text lines (the text plan; the referral letter prints them as they are)."""
    out: list[str] = []
    details = rec.details
    # Safety, dose and exclusions whatever the status: a clinician may still choose the item.
    if details.get("warning"):
        out += _wrap(f"Warning: {details['warning']}", "      ", "    ")
    if details.get("dose"):
        out += _wrap(f"Dose: {details['dose']}", "      ", "    ")
    for line in details.get("safety", []):
        out += _wrap(f"Safety: {line}", "      ", "    ")
    if details.get("excluded_in_series"):
        excluded = ", ".join(details["excluded_in_series"])
        out += _wrap(f"Excluded from the published series: {excluded}", "      ", "    ")
    if details.get("judging_the_result") and rec.status.value in WEIGHED:
        out += _wrap(f"Judging the result: {details['judging_the_result']}", "      ", "    ")
    programme = details.get("programme")
    shown = rec.status.value in DELIVERED
    if shown and details.get("sequences"):
        out.append("    Sequences:")
        for sequence in details["sequences"]:
            out += _wrap(f"- {sequence['name']}: {sequence['purpose']}", "        ", "      ")
    if shown and details.get("timing"):
        out += _wrap(f"Timing: {details['timing']}", "      ", "    ")
    if details.get("caution") and rec.status.value in WEIGHED:
        out += _wrap(f"Caution: {details['caution']}", "      ", "    ")
    if programme and shown:
        out.append(f"    Dose plan ({programme['brand']}, {programme['product']}):")
        for site in programme["sites"]:
            note = f"  ({site['note']})" if site.get("note") else ""
            out.append(f"      {site['side']:<6} {site['label']:<48} {site['units']:>6g} U{note}")
        out.append(f"      {'':<6} {'Total':<48} {programme['total_units']:>6g} U")
        for zone in {z["label"]: z for z in programme["avoid"]}.values():
            out += _wrap(f"Avoid: {zone['label']}. {zone['reason']}", "        ", "      ")
        out.append("    Caps:")
        out += _figure_lines(programme["caps"], "      ")
    if shown and details.get("points"):
        out.append("    Points (WHO code, pinyin, Chinese, role):")
        for point in details["points"]:
            out.append(f"      {point['code']:<6} {point['pinyin']:<12} {point['chinese'] or '':<6} {point['role']}")
        for line in details.get("technique", []) + details.get("stimulation", []):
            out += _wrap(f"- {line}", "        ", "      ")
        for line in details.get("course", []):
            out += _wrap(f"- Course: {line}", "        ", "      ")
        if details.get("review"):
            out += _wrap(f"- {details['review']}", "        ", "      ")
    if shown and details.get("formula"):
        english = f", {details['english']}" if details.get("english") else ""
        out.append(f"    Formula: {details['pinyin']} {details['chinese']}{english} ({details['source']})")
        for herb in details["ingredients"]:
            toxic = "  TOXIC" if herb["toxic"] else ""
            note = f" ({herb['note']})" if herb.get("note") else ""
            out.append(
                f"      {herb['latin']:<36} {herb['pinyin']:<14} {herb['chinese']:<5} {herb['dose']}{note}{toxic}"
            )
        for extra in details.get("other_ingredients", []):
            out.append(f"      {extra}")
        if details.get("preparation"):
            out += _wrap(f"Preparation: {details['preparation']}", "        ", "      ")
        for caution in details.get("cautions", []):
            out += _wrap(f"Caution: {caution}", "        ", "      ")
        out += _evidence(EvidenceOut.model_validate(details["formula_evidence"]), "      ")
        for choice in details.get("other_formulas", []):
            out += _wrap(f"Also named for this pattern: {choice['name']} ({choice['when']})", "        ", "      ")
    if shown and details.get("items"):
        for item in details["items"]:
            certainty = _CERTAINTY[item["evidence"]["certainty"]]
            out += _wrap(f"- {item['text']} [{item['origin']}; {certainty}]", "        ", "      ")
    if rec.status.value in WEIGHED:
        if details.get("figures"):
            out.append("    Figures:")
            out += _figure_lines(details["figures"], "      ")
        if details.get("personal_figures"):
            out.append("    Figures for this patient:")
            out += _figure_lines(details["personal_figures"], "      ")
    return out


def _words(values: list[str]) -> str:
    return ", ".join(value.replace("_", " ") for value in values)


def _present_absent(title: str, values: object, labels: dict[str, str], more: list[str] | None = None) -> str:
    present = [label for name, label in labels.items() if getattr(values, name) is True] + (more or [])
    absent = [label for name, label in labels.items() if getattr(values, name) is False]
    return f"{title}: {', '.join(present) or 'none recorded'}." + (
        f" Recorded as absent: {', '.join(absent)}." if absent else ""
    )


def describe_assessment(assessment: Assessment) -> list[str]:
    """The assessment in sentences for a colleague (the referral letter): what was found, and what was recorded as
    absent, so that "not recorded" is never read as "no"."""
    a = assessment
    onset = {"periocular": ", starting around the eye", "lower_face": ", starting in the lower face", None: ""}
    side = "bilateral" if a.side.value == "bilateral" else f"{a.side.value}-sided"
    lines = [
        f"{a.age}-year-old {a.sex.value}: {side} spasm for {a.duration_months} months"
        f"{onset[a.onset_site.value if a.onset_site else None]}; regions: {_words(list(a.regions))}.",
        _present_absent("Examination findings", a.findings, yes_no_labels(Findings)),
    ]
    earlier = []
    if a.history.prior_mvd:
        earlier.append(f"MVD on {a.history.prior_mvd.date.isoformat()} ({a.history.prior_mvd.result.value})")
    for toxin in a.history.botulinum_sessions:
        effect = f", effect {toxin.effect_weeks:g} weeks" if toxin.effect_weeks is not None else ""
        harms = f", {', '.join(toxin.adverse_effects)}" if toxin.adverse_effects else ""
        earlier.append(
            f"toxin on {toxin.date.isoformat()} ({toxin.product.value} {toxin.total_units:g} U{effect}{harms})"
        )
    lines.append(_present_absent("History", a.history, yes_no_labels(History), earlier))
    imaging = a.imaging
    if imaging.mri is MriStatus.DONE:
        said = {True: "yes", False: "no", None: "not recorded"}
        vessel = f" ({imaging.offending_vessel.value})" if imaging.offending_vessel else ""
        lines.append(
            f"MRI done: neurovascular compression {said[imaging.neurovascular_compression]}{vessel}; structural "
            f"lesion {said[imaging.structural_lesion]}."
        )
    else:
        lines.append(f"MRI: {imaging.mri.value.replace('_', ' ')}.")
    lines.append(
        f"Medicines: {', '.join(a.medications) or 'none recorded'}; herbal medicines taken: "
        f"{', '.join(a.herbs) or 'none recorded'}; allergies: {', '.join(a.allergies) or 'none recorded'}; "
        f"comorbidities: {', '.join(a.comorbidities) or 'none recorded'}"
        + (f"; ASA class {a.anaesthesia_risk_asa}" if a.anaesthesia_risk_asa else "")
        + "."
    )
    states = [state for state, on in (("pregnant", a.pregnant), ("breastfeeding", a.breastfeeding)) if on]
    if states:
        lines.append(f"{' and '.join(states).capitalize()}.")
    ancestry = f" (ancestry: {_words(a.ancestry)})" if a.ancestry else ""
    lines.append(f"HLA-B*15:02: {a.hla_b1502.value}{ancestry}.")
    wishes = [
        wish
        for wish, on in (
            ("wants a definitive treatment", a.preferences.wants_definitive_treatment),
            ("wants integrative care", a.preferences.integrative_care),
            ("avoids surgery", a.preferences.avoid_surgery),
            ("avoids injections", a.preferences.avoid_injections),
            ("avoids needles", a.preferences.avoid_needles),
        )
        if on
    ]
    if wishes:
        lines.append(f"Preferences: {', '.join(wishes)}.")
    tongue = a.tcm.tongue
    tcm = [
        *([f"tongue {tongue.body.value.replace('_', ' ')}"] if tongue.body else []),
        *([f"coating {tongue.coating.value.replace('_', ' ')}"] if tongue.coating else []),
        *([f"pulse {_words(list(a.tcm.pulse))}"] if a.tcm.pulse else []),
        *([_words(list(a.tcm.findings))] if a.tcm.findings else []),
    ]
    if tcm:
        lines.append(f"TCM findings: {'; '.join(tcm)}.")
    return lines


def render_decision_aid(plan: Plan) -> str:
    """The decision aid as text: for each question, each option's answer with its numbers and sources."""
    aid = plan.decision_aid
    if aid is None:
        return ""
    out = [
        f"Options side by side for patient {plan.patient_id}, prepared {plan.generated_on.isoformat()}",
        *_wrap(aid.about.text, ""),
        *(_wrap(OUT_OF_DATE.format(aid.about.review_by), "") if plan.generated_on >= aid.about.review_by else []),
        aid.denominator,
        "",
    ]
    for column in aid.columns:
        status = f" [{column.status.value.replace('_', ' ')}]" if column.status else ""
        certainty = _CERTAINTY[column.evidence.certainty.value]
        out.append(f"* {column.name}{status}: evidence {certainty} certainty")
    for question_id, question in aid.questions.items():
        out += ["", question.upper()]
        for column in aid.columns:
            cell = column.answers[question_id]
            out += _wrap(f"{column.name}: {cell.text}", "      ", "  ")
            for fig in cell.figures:
                reading = fig.per_100 or fig.text
                out += _wrap(
                    f"- {fig.label}: {reading} ({fig.population}) [{', '.join(fig.evidence.references)}]",
                    "        ",
                    "      ",
                )
                if flagged(note := fig.evidence.note):
                    out += _wrap(note, "          ", "          ")
    out += ["", *_wrap(aid.note, "")]
    return "\n".join(out) + "\n"


def render_text(plan: Plan, *, names: Mapping[str, str] | None = None) -> str:
    """Render the plan for a clinician; every statement keeps its certainty and reference ids.

    ``names`` gives recommendations their names by id (the knowledge base's treatments); without one, an item is
    shown by its id.
    """
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
        f"  Status: {diagnosis_label(plan.diagnosis.status.value)}",
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
            "  Not recorded (needed to rule out secondary HFS): "
            + ", ".join(finding_names(plan.diagnosis.unknown_findings)),
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
    if plan.tcm.summary:
        out += ["", "TCM PATTERN DIFFERENTIATION", *_wrap(plan.tcm.summary)]
        for pattern in plan.tcm.patterns:
            codes = ", ".join(pattern.tm1_codes)
            out += _wrap(
                f"{pattern.number} {pattern.name} {pattern.chinese} [{codes}]: score {pattern.score:.2f} "
                f"({pattern.role})",
                "      ",
                "    ",
            )
            out += _wrap(f"for: {', '.join(pattern.supporting) or 'nothing recorded'}", "        ", "      ")
            if pattern.contradicting:
                out += _wrap(f"against: {', '.join(pattern.contradicting)}", "        ", "      ")
    out += ["", "RECOMMENDATIONS"]
    if not plan.recommendations:
        out.append("  None yet.")
    integrative_seen = False
    for rec in plan.recommendations:
        if rec.category.value == "integrative" and not integrative_seen:
            integrative_seen = True
            head, _, rest = INTEGRATIVE_NOTE.partition(":")
            out += ["", *_wrap(f"{head.upper()}:{rest}")]
        name = (names or {}).get(rec.id, rec.id)
        out += ["", f"  [{rec.status.value.upper().replace('_', ' ')}] {name} ({rec.category.value})"]
        out += _wrap(rec.summary, "    ")
        for reason in rec.rationale:
            out += _wrap(f"- {reason}", "      ", "    ")
        out += _evidence(rec.evidence, "    ")
        out += detail_lines(rec)
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
