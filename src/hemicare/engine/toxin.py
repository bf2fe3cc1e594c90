"""The botulinum-toxin programme: product, per-site doses within caps, interval and titration from history.

Doses are computed in onabotulinumtoxinA units and converted to the chosen product at the end, so one set of caps
serves every product. Every number used comes from ``toxin.yaml``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict

from hemicare.engine.assessment import Assessment, Side, ToxinSession
from hemicare.engine.loader import KnowledgeBase, normalise
from hemicare.engine.plan import FigureOut, figure_dict
from hemicare.engine.schema import ToxinProgramme

UNVERIFIED_DOSE = "dose unverified: no HFS source gives it"
"""A dose site's note where it holds the knowledge base's starting dose, which no HFS source gives for that muscle
(not a dose the patient had before, nor one the titration after an adverse effect sets): a note, so that a version
of HemiCare that reads plans without knowing of it still reads them."""


class DoseSite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: str
    side: str
    label: str
    region: str
    muscle: str
    units: float
    ona_units: float
    x: float
    y: float
    label_side: str = "outer"
    note: str | None = None

    @property
    def unverified(self) -> bool:
        return self.note == UNVERIFIED_DOSE


class AvoidSite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    side: str
    label: str
    reason: str
    x: float
    y: float


class ToxinPlan(BaseModel):
    """The next session: what to inject where, how much, and when."""

    model_config = ConfigDict(extra="forbid")

    product: str
    brand: str
    conversion: FigureOut
    product_reason: str
    sites: list[DoseSite]
    avoid: list[AvoidSite]
    total_units: float
    total_ona_units: float
    caps: list[FigureOut]
    titration: list[str]
    last_session: dt.date | None
    earliest_next: dt.date
    due_from: dt.date
    due_by: dt.date | None
    too_soon: bool


MAP_WIDTH = 400.0


def _sides(side: Side) -> list[str]:
    return ["left", "right"] if side is Side.BILATERAL else [side.value]


def _round(units: float) -> float:
    return round(units * 4) / 4 if units >= 1 else round(units, 3)


def _last_doses(session: ToxinSession | None, ona_per_unit: float) -> dict[str, float]:
    """Last session's dose at each site, in onabotulinumtoxinA units, by normalised site name (first entry wins)."""
    doses: dict[str, float] = {}
    if session is not None:
        for given in session.sites:
            doses.setdefault(normalise(given.site), given.units * ona_per_unit)
    return doses


def _interval(
    prog: ToxinProgramme, last: ToxinSession | None, today: dt.date
) -> tuple[dt.date, dt.date, dt.date | None, bool, list[str]]:
    notes: list[str] = []
    min_weeks = prog.limits["min_interval_weeks"].value
    max_weeks = prog.limits["usual_interval_max_weeks"].value
    if last is None:
        return today, today, None, False, notes
    earliest = last.date + dt.timedelta(weeks=min_weeks)
    due_by = last.date + dt.timedelta(weeks=max_weeks)
    due_from = earliest
    if last.effect_weeks is not None and last.effect_weeks > min_weeks:
        due_from = min(last.date + dt.timedelta(weeks=last.effect_weeks), due_by)
        notes.append(f"Last effect lasted {last.effect_weeks:g} weeks: next session planned as it wears off.")
    too_soon = today < earliest
    if too_soon:
        notes.append(
            f"Too soon: the last session was on {last.date.isoformat()}; not before {earliest.isoformat()} "
            f"({min_weeks:g} weeks)."
        )
    return earliest, max(due_from, today if not too_soon else earliest), due_by, too_soon, notes


def plan_toxin(assessment: Assessment, kb: KnowledgeBase, *, today: dt.date) -> dict[str, Any]:
    """The next toxin session for this patient, as the plan holds it: JSON data in ToxinPlan's shape.

    Written directly rather than validated as a ToxinPlan and dumped again (a plan request paid for both); a property
    test checks over generated patients that ToxinPlan reads it back and writes it out unchanged. The conversion and
    cap figures are shared dictionaries: callers must not mutate them.
    """
    prog = kb.toxin_programme()
    limits = prog.limits
    products = {p.id: p for p in prog.products}
    sessions = sorted(assessment.history.botulinum_sessions, key=lambda s: s.date)
    last = sessions[-1] if sessions else None
    if last is not None:
        product = products[last.product.value]
        reason = (
            "Same product as last time: units are not interchangeable, and the effect of combining products "
            "within months is unknown."
        )
    else:
        product = products["onabotulinumtoxinA"]
        reason = "No previous session: onabotulinumtoxinA, the reference product for the unit conversion."
    last_ona_per_unit = 1 / products[last.product.value].conversion.value if last else 1.0

    per_site_max = limits["per_site_max_units"].value
    min_site = limits["min_site_units"].value
    titration: list[str] = []
    factor = 1.0
    if last is not None and last.effect_weeks is not None and last.effect_weeks < limits["short_effect_weeks"].value:
        factor = limits["short_effect_dose_factor"].value
        titration.append(
            f"Last effect lasted only {last.effect_weeks:g} weeks: doses raised x{factor:g}, "
            f"capped at {per_site_max:g} U per site."
        )
    set_for_group: dict[str, float] = {}
    if last is not None:
        for effect in last.adverse_effects:
            key = normalise(effect)
            match = next(
                (
                    a
                    for a in prog.adverse_adjustments
                    if key == normalise(a.effect) or key in {normalise(s) for s in a.synonyms}
                ),
                None,
            )
            if match is None:
                titration.append(f"Adverse effect '{effect}' has no titration rule: review it before dosing.")
                continue
            titration.append(match.advice)
            if match.set_units is not None:
                for group in match.groups:
                    set_for_group[group] = match.set_units

    regions = {r.value for r in assessment.regions}
    chosen = [site for site in prog.sites if site.region in regions]
    last_doses = _last_doses(last, last_ona_per_unit)
    # Plain mappings in DoseSite's field order; "units" (the chosen product's) is filled in once the doses are final.
    sites: list[dict[str, Any]] = []
    for side in _sides(assessment.side):
        for site in chosen:
            given_before = last_doses.get(normalise(site.id))
            ona = min((given_before or site.start_units) * factor, per_site_max)
            note = None
            if site.group in set_for_group:
                ona = set_for_group[site.group]
                note = "lowered after last session's adverse effect"
            if site.evidence.unverified and not given_before and note is None:
                note = UNVERIFIED_DOSE
            sites.append(
                {
                    "site": site.id,
                    "side": side,
                    "label": site.label,
                    "region": site.region,
                    "muscle": site.muscle,
                    "units": 0.0,
                    "ona_units": max(ona, min_site),
                    "x": site.x if side == "right" else MAP_WIDTH - site.x,
                    "y": site.y,
                    "label_side": site.label_side,
                    "note": note,
                }
            )

    caps = [limits["per_site_max_units"], limits["session_max_units"]]
    if last is None:
        cap = limits["first_session_max_units_per_eye"].value
        caps.append(limits["first_session_max_units_per_eye"])
        for side in _sides(assessment.side):
            eye = [s for s in sites if s["side"] == side and s["region"] == "periocular"]
            total = sum(s["ona_units"] for s in eye)
            if total > cap:
                for s in eye:
                    s["ona_units"] *= cap / total
                titration.append(f"First session: periocular dose scaled to {cap:g} U per eye.")
    session_cap = limits["session_max_units"].value
    total = sum(s["ona_units"] for s in sites)
    if total > session_cap:
        for s in sites:
            s["ona_units"] *= session_cap / total
        titration.append(f"Session total scaled down to the {session_cap:g} U cap.")
    for s in sites:
        s["ona_units"] = _round(s["ona_units"])
        s["units"] = round(s["ona_units"] * product.conversion.value, 3)

    earliest, due_from, due_by, too_soon, interval_notes = _interval(prog, last, today)
    avoid = [
        {
            "id": zone.id,
            "side": side,
            "label": zone.label,
            "reason": zone.reason,
            "x": zone.x if side == "right" else MAP_WIDTH - zone.x,
            "y": zone.y,
        }
        for side in _sides(assessment.side)
        for zone in prog.avoid
        if not zone.regions or regions & set(zone.regions)
    ]
    return {
        "product": product.id,
        "brand": product.brand,
        "conversion": figure_dict(product.conversion),
        "product_reason": reason,
        "sites": sites,
        "avoid": avoid,
        "total_units": float(round(sum(s["units"] for s in sites), 3)),
        "total_ona_units": float(round(sum(s["ona_units"] for s in sites), 2)),
        "caps": [figure_dict(c) for c in caps],
        "titration": titration + interval_notes,
        "last_session": last.date.isoformat() if last else None,
        "earliest_next": earliest.isoformat(),
        "due_from": due_from.isoformat(),
        "due_by": due_by.isoformat() if due_by else None,
        "too_soon": too_soon,
    }
