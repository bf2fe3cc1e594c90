"""Turn the assessment form into assessment input, and errors back into messages beside each field."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hemicare.engine.errors import FieldProblem
from hemicare.limits import RECORD_NUMBER_MAX

TRISTATE = {"yes": True, "no": False}
FINDINGS = (
    "tonic_spasm",
    "facial_weakness",
    "hearing_loss",
    "facial_numbness",
    "other_cranial_nerve_deficit",
    "babinski2_sign",
    "bilateral_synchronous",
    "present_during_sleep",
    "facial_skin_infection",
)
HISTORY = ("bells_palsy", "facial_nerve_injury", "multiple_sclerosis")
PREFERENCES = ("avoid_surgery", "avoid_needles", "avoid_injections", "wants_definitive_treatment", "integrative_care")
LISTS = ("ancestry", "comorbidities", "medications", "herbs", "allergies")


def counting_number(text: str, most: int = RECORD_NUMBER_MAX) -> int | None:
    """``text`` as a number from 1 to ``most`` written in ASCII digits, or None. (``str.isdigit`` takes "²", which
    ``int`` refuses, and ``int`` refuses more than 4,300 digits: either was a server error.)"""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(most)):
        return None
    number = int(text)
    return number if 1 <= number <= most else None


class FormData:
    """Read access to a submitted form: single values and repeated ones (checkboxes)."""

    def __init__(self, single: Mapping[str, str], multi: Mapping[str, Sequence[str]]) -> None:
        self.single = single
        self.multi = multi

    def get(self, name: str) -> str:
        return self.single.get(name, "").strip()

    def all(self, name: str) -> list[str]:
        return [value for value in self.multi.get(name, []) if value]


def _put(target: dict[str, Any], name: str, value: Any) -> None:
    if value not in ("", None):
        target[name] = value


def assessment_from_form(code: str, form: FormData) -> dict[str, Any]:
    """The assessment input the form describes; empty fields are left out (unknown), never guessed."""
    data: dict[str, Any] = {"id": code}
    for name in ("age", "sex", "hla_b1502", "side", "duration_months", "onset_site", "anaesthesia_risk_asa"):
        _put(data, name, form.get(name))
    for name in ("pregnant", "breastfeeding"):
        data[name] = form.get(name) == "on"
    data["regions"] = form.all("regions")
    for name in LISTS:
        data[name] = [part.strip() for part in form.get(name).split(",") if part.strip()]
    findings: dict[str, Any] = {}
    for name in FINDINGS:
        _put(findings, name, TRISTATE.get(form.get(f"findings.{name}")))
    data["findings"] = findings
    history: dict[str, Any] = {}
    for name in HISTORY:
        _put(history, name, TRISTATE.get(form.get(f"history.{name}")))
    data["history"] = history
    severity: dict[str, Any] = {}
    for name in ("smc_grade", "jankovic_severity", "jankovic_frequency", "cohen_albert"):
        _put(severity, name, form.get(f"severity.{name}"))
    data["severity"] = severity
    hfs7 = [form.get(f"hfs7.{index}") for index in range(7)]
    if any(hfs7):
        data["hfs7"] = [value if value else None for value in hfs7]
    imaging: dict[str, Any] = {"mri": form.get("imaging.mri") or "not_done"}
    _put(imaging, "neurovascular_compression", TRISTATE.get(form.get("imaging.neurovascular_compression")))
    _put(imaging, "structural_lesion", TRISTATE.get(form.get("imaging.structural_lesion")))
    _put(imaging, "offending_vessel", form.get("imaging.offending_vessel"))
    data["imaging"] = imaging
    tongue: dict[str, Any] = {}
    _put(tongue, "body", form.get("tcm.tongue.body"))
    _put(tongue, "coating", form.get("tcm.tongue.coating"))
    data["tcm"] = {"tongue": tongue, "pulse": form.all("tcm.pulse"), "findings": form.all("tcm.findings")}
    data["preferences"] = {name: form.get(f"preferences.{name}") == "on" for name in PREFERENCES}
    return data


def form_from_assessment(data: Mapping[str, Any]) -> dict[str, Any]:
    """The form's field values for a stored assessment, so that an edit starts from what was recorded."""
    values: dict[str, Any] = {}
    for name in ("age", "sex", "hla_b1502", "side", "duration_months", "onset_site", "anaesthesia_risk_asa"):
        values[name] = "" if data.get(name) is None else str(data[name])
    for name in ("pregnant", "breastfeeding"):
        values[name] = bool(data.get(name))
    values["regions"] = list(data.get("regions", []))
    for name in LISTS:
        values[name] = ", ".join(data.get(name, []))

    def tri(value: Any) -> str:
        return "" if value is None else ("yes" if value else "no")

    for name in FINDINGS:
        values[f"findings.{name}"] = tri(data.get("findings", {}).get(name))
    for name in HISTORY:
        values[f"history.{name}"] = tri(data.get("history", {}).get(name))
    for name in ("smc_grade", "jankovic_severity", "jankovic_frequency", "cohen_albert"):
        value = data.get("severity", {}).get(name)
        values[f"severity.{name}"] = "" if value is None else str(value)
    hfs7 = data.get("hfs7") or [None] * 7
    for index in range(7):
        values[f"hfs7.{index}"] = "" if hfs7[index] is None else str(hfs7[index])
    imaging = data.get("imaging", {})
    values["imaging.mri"] = imaging.get("mri", "not_done")
    values["imaging.neurovascular_compression"] = tri(imaging.get("neurovascular_compression"))
    values["imaging.structural_lesion"] = tri(imaging.get("structural_lesion"))
    values["imaging.offending_vessel"] = imaging.get("offending_vessel") or ""
    tcm = data.get("tcm", {})
    values["tcm.tongue.body"] = tcm.get("tongue", {}).get("body") or ""
    values["tcm.tongue.coating"] = tcm.get("tongue", {}).get("coating") or ""
    values["tcm.pulse"] = list(tcm.get("pulse", []))
    values["tcm.findings"] = list(tcm.get("findings", []))
    for name in PREFERENCES:
        values[f"preferences.{name}"] = bool(data.get("preferences", {}).get(name))
    return values


def not_on_form(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a stored assessment holds that the form has no field for: the toxin sessions and the operation written in
    its history (from records kept before HemiCare, sent through the API or the command line) and HFS-30 answers.
    Saving the form keeps them (the HFS-30 answers unless the box to keep them is cleared), rather than lose them."""
    data = data or {}
    history = data.get("history") or {}
    hfs30 = data.get("hfs30")
    answers = [value for part in hfs30.values() for value in part] if isinstance(hfs30, dict) else hfs30
    return {
        "botulinum_sessions": list(history.get("botulinum_sessions") or []),
        "prior_mvd": history.get("prior_mvd"),
        "hfs30": hfs30,
        "hfs30_total": None if answers is None else sum(answers),
    }


def with_kept(data: dict[str, Any], kept: Mapping[str, Any], *, keep_hfs30: bool) -> dict[str, Any]:
    """The form's assessment with what `not_on_form` found in the latest one."""
    history = dict(data.get("history") or {})
    if kept["botulinum_sessions"]:
        history["botulinum_sessions"] = kept["botulinum_sessions"]
    if kept["prior_mvd"] is not None:
        history["prior_mvd"] = kept["prior_mvd"]
    data = {**data, "history": history}
    if keep_hfs30 and kept["hfs30"] is not None:
        data["hfs30"] = kept["hfs30"]
    return data


def errors_by_field(problems: Sequence[FieldProblem]) -> dict[str, list[str]]:
    """Messages keyed by form field: `hfs7.3` shows beside `hfs7`, `tcm.pulse.0` beside `tcm.pulse`."""
    known = {"hfs7", "tcm.pulse", "tcm.findings", "regions", *LISTS}
    out: dict[str, list[str]] = {}
    for problem in problems:
        key = problem.path or "form"
        for prefix in known:
            if key.startswith(prefix + "."):
                key = prefix
        out.setdefault(key, []).append(problem.message)
    return out
