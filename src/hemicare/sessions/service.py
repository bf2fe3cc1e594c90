"""Record treatment sessions, checked against the knowledge base and the toxin interval."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from hemicare.assessments import service as assessment_service
from hemicare.assessments.models import StoredAssessment
from hemicare.audit import service as audit
from hemicare.audit.models import AuditEntry
from hemicare.db.base import aware, utcnow
from hemicare.engine import Assessment, KnowledgeBase
from hemicare.engine.rules import Facts, facts_of
from hemicare.engine.safety import (
    HERBAL_FORMULA,
    LICORICE,
    cautioned_for,
    cautions_on,
    held_back_for,
    licorice_cautions,
    needling_cautions,
    removed_for,
)
from hemicare.engine.schema import Acupoint, Figure, Herb, SafetyRule
from hemicare.errors import FieldProblem, InputError, NotFoundError, quoted
from hemicare.patients import service as patient_service
from hemicare.patients.models import Patient
from hemicare.plans import queries as plan_queries  # not the service, which imports this module
from hemicare.plans.models import PlanVersion
from hemicare.sessions.models import TreatmentSession
from hemicare.sessions.schemas import (
    AcupunctureDetails,
    Details,
    HerbalDetails,
    MedicineDetails,
    ProcedureDetails,
    SessionCreate,
    SessionOutcome,
    ToxinDetails,
)

# A site or a herb written twice in one session would pass the per-site ceiling or the reference dose entry by entry
# (two entries of 5 U at one site, Scorpio 5 g beside Quan Xie 5 g) and leave the total unchecked.
ONCE = "give each once, with its whole dose"


def _check_against_knowledge(data: SessionCreate, kb: KnowledgeBase) -> list[FieldProblem]:
    details = data.details
    problems: list[FieldProblem] = []
    if isinstance(details, ToxinDetails):
        known = {site.id for site in kb.toxin_programme().sites}
        sites_seen: dict[tuple[str, str], int] = {}
        for index, site in enumerate(details.sites):
            if site.site not in known:
                said = f"unknown site {quoted(site.site)}; known: {', '.join(sorted(known))}"
                problems.append(FieldProblem(f"details.sites.{index}.site", said))
            first = sites_seen.setdefault((site.site, site.side), index)
            if first != index:
                said = f"{site.site} ({site.side}) is given twice (also details.sites.{first}); {ONCE}"
                problems.append(FieldProblem(f"details.sites.{index}.site", said))
    elif isinstance(details, AcupunctureDetails):
        for index, code in enumerate(details.points):
            if code not in kb.acupoints:
                problems.append(FieldProblem(f"details.points.{index}", f"unknown WHO point code {quoted(code)}"))
    elif isinstance(details, MedicineDetails):
        medicines = known_medicines(kb)
        if details.medicine not in medicines:
            said = f"unknown medicine {quoted(details.medicine)}; known: {', '.join(medicines)}"
            problems.append(FieldProblem("details.medicine", said))
    elif isinstance(details, HerbalDetails):
        if details.formula is not None and details.formula not in kb.formulas:
            problems.append(FieldProblem("details.formula", f"unknown formula {quoted(details.formula)}"))
        herbs_seen: dict[str, int] = {}
        for index, given in enumerate(details.herbs):
            herb = kb.resolve_herb(given.latin)
            if herb is None:
                problems.append(FieldProblem(f"details.herbs.{index}.latin", _unknown_herb(given.latin, kb)))
                continue
            first = herbs_seen.setdefault(herb.latin, index)
            if first != index:
                said = f"{herb.latin} ({herb.pinyin}) is given twice (also details.herbs.{first}); {ONCE}"
                problems.append(FieldProblem(f"details.herbs.{index}.latin", said))
    return problems


OVERRIDE = "give details.override_reason to record it anyway"
# The plan's item each kind of session delivers (and, for toxin and acupuncture, the recall of that kind books); an
# acupuncture session with `electro` delivers electroacupuncture too.
PLAN_ITEMS = {"toxin": "botulinum_toxin", "acupuncture": "acupuncture", "herbal": "herbal_formula", "mvd": "mvd"}
MEDICINE = "medication:"  # a medicine's item in a plan: its id in the knowledge base, e.g. medication:carbamazepine
HELD_BACK = ("deferred", "not_recommended", "contraindicated")
# A procedure's plan item (its id in the knowledge base) in the treatment history's words.
PROCEDURES = {"nerve_block": "facial nerve block", "rf_ablation": "radiofrequency ablation"}

_STATUS_WORDS = tuple(status.replace("_", " ") for status in HELD_BACK)  # how the engine's reasons begin


def known_medicines(kb: KnowledgeBase) -> dict[str, str]:
    """The oral medicines a prescription may name: the knowledge base's medicine items, generic id to name, by id."""
    names = kb.treatment_names()
    return {item.removeprefix(MEDICINE): names[item] for item in sorted(names) if item.startswith(MEDICINE)}


def _product_units(details: ToxinDetails, kb: KnowledgeBase) -> float:
    """How many units of the session's product make one onabotulinumtoxinA unit (the programme's limits are in
    onabotulinumtoxinA units)."""
    return next(p.conversion.value for p in kb.toxin_programme().products if p.id == details.product)


def _limit_in(details: ToxinDetails, limit: Figure, per_ona: float) -> str:
    """A limit in the session's product, and in onabotulinumtoxinA units when the product is another."""
    reference = "" if per_ona == 1 else f" ({limit.value:g} U onabotulinumtoxinA)"
    return f"{limit.value * per_ona:g} U {details.product}{reference}"


def _toxin_above_caps(details: ToxinDetails, kb: KnowledgeBase) -> list[FieldProblem]:
    """Doses above the programme's per-site ceiling or session cap, counted in onabotulinumtoxinA units through the
    product's conversion: most often a slipped decimal point (25 for 2.5), sometimes a deliberate choice to explain."""
    programme = kb.toxin_programme()
    per_ona = _product_units(details, kb)
    site_cap, session_cap = (programme.limits[name] for name in ("per_site_max_units", "session_max_units"))
    problems = [
        FieldProblem(
            f"details.sites.{index}.units",
            f"{site.units:g} U is above the per-site ceiling of {_limit_in(details, site_cap, per_ona)}; {OVERRIDE}",
        )
        for index, site in enumerate(details.sites)
        if site.units > site_cap.value * per_ona
    ]
    if details.total_units > session_cap.value * per_ona:
        problems.append(
            FieldProblem(
                "details.sites",
                f"{details.total_units:g} U in all is above the session cap, "
                f"{_limit_in(details, session_cap, per_ona)}: {session_cap.label}; {OVERRIDE}",
            )
        )
    return problems


def _toxin_in_cap_period(
    near: Sequence[TreatmentSession], *, date: dt.date, details: ToxinDetails, kb: KnowledgeBase
) -> list[FieldProblem]:
    """This session and the toxin sessions recorded near it above the session cap in some period of the cap's length
    (the label's "most per 12 weeks"): a session given sooner than the interval allows, which needs a reason of its
    own, large enough that the two together pass the cap. Counted in onabotulinumtoxinA units; a stored session of a
    product the knowledge base no longer knows counts unit for unit, the higher count for the usual conversions."""
    programme = kb.toxin_programme()
    limit = programme.limits["session_max_units"]
    weeks = programme.limits["session_cap_weeks"].value
    period = dt.timedelta(weeks=weeks)
    per_ona: dict[str, float] = {product.id: product.conversion.value for product in programme.products}
    others = [
        (row.date, row.data["total_units"] / per_ona.get(row.data["product"], 1))
        for row in near
        if abs(row.date - date) < period
    ]
    this = details.total_units / _product_units(details, kb)
    # The periods that hold this session and the most of the others begin on it or on an earlier session.
    totals = []
    for start in {date, *(when for when, _ in others if when < date)}:
        counted = [(when, units) for when, units in others if start <= when < start + period]
        totals.append((round(this + sum(units for _, units in counted), 3), start, sorted(when for when, _ in counted)))
    total, start, dates = max(totals)
    if not dates or total <= limit.value:
        return []
    with_ = ", ".join(when.isoformat() for when in dates)
    return [
        FieldProblem(
            "details.sites",
            f"{total:g} U onabotulinumtoxinA in the {weeks:g} weeks from {start.isoformat()} with the toxin "
            f"session{'s' if len(dates) > 1 else ''} of {with_} is above the session cap, {limit.value:g} U: "
            f"{limit.label}; {OVERRIDE}",
        )
    ]


def _first_session_above_cap(
    session: Session, *, patient: Patient, date: dt.date, details: ToxinDetails, kb: KnowledgeBase
) -> list[FieldProblem]:
    """A patient's first toxin session with more around one eye (its periocular sites on that side) than the label's
    initial dose per eye. First: no toxin session recorded before it and none in the latest assessment's history; a
    missing or unreadable assessment counts as none, the stricter reading."""
    earlier = select(TreatmentSession.id).where(
        TreatmentSession.patient_id == patient.id, TreatmentSession.kind == "toxin", TreatmentSession.date < date
    )
    if session.scalars(earlier.limit(1)).first() is not None:
        return []
    _, assessment = assessment_service.latest_read(session, patient=patient)
    if assessment is not None and any(given.date < date for given in assessment.history.botulinum_sessions):
        return []
    programme = kb.toxin_programme()
    periocular = {site.id for site in programme.sites if site.region == "periocular"}
    limit = programme.limits["first_session_max_units_per_eye"]
    per_ona = _product_units(details, kb)
    problems = []
    for side in ("left", "right"):
        eye = round(sum(s.units for s in details.sites if s.side == side and s.site in periocular), 3)
        if eye > limit.value * per_ona:
            problems.append(
                FieldProblem(
                    "details.sites",
                    f"{eye:g} U around the {side} eye at a first toxin session (none is recorded before "
                    f"{date.isoformat()}) is above {_limit_in(details, limit, per_ona)} per eye: {limit.label}; "
                    f"{OVERRIDE}",
                )
            )
    return problems


def _plan_items(details: Details) -> list[str]:
    """The items of a plan that a session delivers."""
    if isinstance(details, MedicineDetails):
        return [f"{MEDICINE}{details.medicine}"]
    if isinstance(details, ProcedureDetails):
        return [details.procedure]
    items = [PLAN_ITEMS[details.kind]]
    if isinstance(details, AcupunctureDetails) and details.electro:
        items.append("electroacupuncture")
    return items


def _against_plan(
    session: Session, *, patient: Patient, plan: PlanVersion | None, items: list[str], kb: KnowledgeBase
) -> list[FieldProblem]:
    """A session given while ``plan``, the plan in force on its day (the newest version made on or before it), holds its
    treatment back (deferred, not recommended, contraindicated), with that version's reasons: a status a clinician
    changed at sign-off holds from that sign-off, and a session entered late is checked against the plan of its day.
    Days are the clinic's calendar days, as the session's date is, not the UTC days of stored times (a plan made on a
    New York evening is stored on the next day). A session dated before the first plan (entered from earlier records)
    did not go against one. A medicine's cautions (sodium, sedation) act through the plan: with no plan at all it is
    unchecked, and needs a reason too; its contraindications and deferrals are asked by `_held_back_by_rules`."""
    if plan is None and plan_queries.latest(session, patient=patient) is None:
        return [
            FieldProblem(
                "details.override_reason",
                f"no plan is made for this patient, so {item.removeprefix(MEDICINE)} is unchecked against the safety "
                f"rules; record an assessment first, or {OVERRIDE}",
            )
            for item in items
            if item.startswith(MEDICINE)
        ]
    if plan is None:
        return []
    problems = []
    for item in items:
        status = plan.summary["statuses"].get(item)
        if status not in HELD_BACK:
            continue
        rationale = next(rec["rationale"] for rec in plan.content["recommendations"] if rec["id"] == item)
        why = [edit["reason"] for edit in plan.edits if edit["recommendation"] == item and edit["to"] == status]
        why = why or [line for line in rationale if line.lower().startswith(_STATUS_WORDS)]
        why = why or rationale  # a medicine's one line ("Low response rate ..."), not headed by its status
        name = kb.treatment_names().get(item, item)
        because = f" ({'; '.join(line.rstrip('.') for line in why)})" if why else ""
        said = status.replace("_", " ")
        problems.append(
            FieldProblem(
                "details.override_reason", f"plan version {plan.number} has {name} {said}{because}; {OVERRIDE}"
            )
        )
    return problems


def _held_back_by_rules(
    items: list[str], *, plan: PlanVersion | None, readings: Sequence[tuple[Facts, str]], kb: KnowledgeBase
) -> list[FieldProblem]:
    """Items that a contraindication or a deferral holding for the patient (by their latest assessment, the one in
    force on the session's day, and the medicines prescribed that they take) holds back, whatever status the plan in
    force gives them, where that plan does not say so: one made before the assessment that brought the rule (a
    session entered late, dated in its days), or one signed before a lifted item brought its alerts (carbamazepine,
    not recommended beside MVD, lifted for a patient with HLA-B*15:02). Where the plan carries the rule's alert on the
    item, the plan asked already, or a clinician lifted it knowing."""
    said = {(alert["id"], item) for alert in plan.content["alerts"] for item in alert["affects"]} if plan else set()
    held: dict[tuple[str, str], tuple[str, SafetyRule, str]] = {}  # by (item, rule id), in the order found
    for facts, by in readings:
        for item, rules in held_back_for(facts, kb, items=items).items():
            for rule in rules:
                held.setdefault((item, rule.id), (item, rule, by))  # the latest assessment's reason first
    names = kb.treatment_names()
    return [
        FieldProblem(
            "details.override_reason",
            f"{names.get(item, item)} is {'contraindicated' if rule.action == 'contraindicate' else 'deferred'} for "
            f"this patient{by}: {_titled(rule)}. {rule.message} Hold it, or {OVERRIDE}",
        )
        for item, rule, by in held.values()
        if (rule.id, item) not in said
    ]


def _unknown_herb(written: str, kb: KnowledgeBase) -> str:
    """Why a herb the knowledge base does not know is refused: a blocked name (Aristolochia: never prescribed, reason
    or not) and a name that several species share say so, beyond its being unknown."""
    why = f" ({kb.restricted.evidence.note})" if kb.restricted and kb.restricted.evidence.note else ""
    if kb.name_matches(written, blocked=True):
        return f"{quoted(written)} is a blocked herb name: it is never prescribed{why}"
    if kb.name_matches(written, blocked=False):
        return f"unknown herb {quoted(written)}: several species are sold under that name{why}; write the one meant"
    return f"unknown herb {quoted(written)}"


def _against_safety_rules(
    details: AcupunctureDetails | HerbalDetails,
    *,
    latest: tuple[StoredAssessment | None, Assessment | None],
    readings: Sequence[tuple[Facts, str]],
    kb: KnowledgeBase,
    overlapping: Sequence[tuple[TreatmentSession, str]] = (),
) -> list[FieldProblem]:
    """Points or herbs that a safety rule holding for the patient (by their latest assessment, and the medicines
    prescribed in the records that they take on the session's date) takes out of their plans: LI4 ticked for a
    pregnant patient, Dang Gui written for one on warfarin. Herbs a caution rule names for the patient by something of
    theirs (Chuan Xiong in pregnancy, Jiang Can with a sedative), and a day's licorice that reaches a caution rule's
    dose for them (6 g at over 60, say) with the licorice of the ``overlapping`` prescriptions taken on some of the
    same days: the plan cautions its own formula so, and a herb or a dose written beyond it would otherwise pass
    unseen. A session entered late is held to the assessment in force on its day as well: a pregnancy over by now was
    not over then. Without an assessment to read they are unchecked, and the session needs a reason like one that
    breaks a rule."""
    stored, assessment = latest
    what = "points" if isinstance(details, AcupunctureDetails) else "herbs"
    if stored is None or assessment is None:  # fail closed: nothing to check them against is not "nothing found"
        why = "no assessment is recorded" if stored is None else "the latest assessment cannot be read by this version"
        message = (
            f"{why}, so the {what} are unchecked against the safety rules; record an assessment first, or {OVERRIDE}"
        )
        return [FieldProblem("details.override_reason", message)]
    licorice = None
    if isinstance(details, AcupunctureDetails):
        given = [(f"details.points.{index}", code) for index, code in enumerate(details.points)]
    else:
        resolved = [
            (f"details.herbs.{index}.latin", kb.resolve_herb(herb.latin)) for index, herb in enumerate(details.herbs)
        ]
        given = [(path, herb.latin) for path, herb in resolved if herb is not None]
        licorice = _licorice_of(details, overlapping, kb)
    # Every rule on each item, by rule id, the latest assessment's reason first.
    removed: dict[str, dict[str, tuple[SafetyRule, str]]] = {}
    cautioned: dict[str, tuple[SafetyRule, str]] = {}
    herb_cautions: dict[str, dict[str, tuple[SafetyRule, str]]] = {}
    for facts, by in readings:
        for item, rules in removed_for(facts, kb, items={item for _, item in given}).items():
            for rule in rules:
                removed.setdefault(item, {}).setdefault(rule.id, (rule, by))
        if isinstance(details, HerbalDetails):
            for item, rules in cautioned_for(facts, kb, herbs={item for _, item in given}).items():
                for rule in rules:
                    herb_cautions.setdefault(item, {}).setdefault(rule.id, (rule, by))
        for rule in licorice_cautions(facts, kb, grams=licorice.grams) if licorice else []:
            cautioned.setdefault(rule.id, (rule, by))
    problems = [
        FieldProblem(path, f"{item} is taken out of this patient's plans{by}: {_titled(rule)}; {OVERRIDE}")
        for path, item in given
        for rule, by in removed.get(item, {}).values()
    ]
    problems += [
        FieldProblem(
            path,
            f"{item} is cautioned for this patient{by}: {_titled(rule)}. {rule.message} Leave it out, or {OVERRIDE}",
        )
        for path, item in given
        if item not in removed
        for rule, by in herb_cautions.get(item, {}).values()
    ]
    for rule, by in reversed(herb_cautions.get(HERBAL_FORMULA, {}).values()):  # any herbs (with carbamazepine)
        said = (
            f"any herbal prescription is cautioned for this patient{by}: {rule.title}. {rule.message} Leave it out, "
            f"or {OVERRIDE}"
        )
        problems.insert(0, FieldProblem("details.herbs", said))
    if licorice:
        problems += [
            FieldProblem(licorice.path, f"{licorice.said} for this patient{by}. {rule.message} Lower it, or {OVERRIDE}")
            for rule, by in cautioned.values()
        ]
    return problems


def _titled(rule: SafetyRule) -> str:
    """A rule's title, marked where it rests on tradition rather than evidence."""
    return f"{rule.title}{' (tradition-based)' if rule.basis == 'tradition' else ''}"


class _Licorice(NamedTuple):
    grams: float  # a day, with the overlapping prescriptions'
    path: str  # the first licorice herb of the prescription
    said: str  # "8 g a day of licorice (5 g here, 3 g from the prescription of ...)"


def _licorice_of(
    details: HerbalDetails, overlapping: Sequence[tuple[TreatmentSession, str]], kb: KnowledgeBase
) -> _Licorice | None:
    """The licorice (Gan Cao, Zhi Gan Cao) a prescription gives a day with that of the prescriptions taken on some of
    the same days; None where it gives none."""
    mine = [
        (index, given.dose_g)
        for index, given in enumerate(details.herbs)
        if getattr(kb.resolve_herb(given.latin), "latin", None) in LICORICE
    ]
    if not mine:
        return None
    here = sum(dose for _, dose in mine)
    others = [(grams, said) for row, said in overlapping if (grams := _licorice_in(row.data["herbs"], kb))]
    grams = round(here + sum(dose for dose, _ in others), 3)
    with_ = "".join(f", {dose:g} g from {said}" for dose, said in others)
    said = f"{grams:g} g a day of licorice" + (f" ({here:g} g here{with_})" if others else "")
    return _Licorice(grams, f"details.herbs.{mine[0][0]}.dose_g", said)


def _licorice_in(herbs: Iterable[Mapping[str, Any]], kb: KnowledgeBase) -> float:
    """The grams a day of licorice among a stored prescription's herbs."""
    doses = [
        float(taken["dose_g"]) for taken in herbs if getattr(kb.resolve_herb(taken["latin"]), "latin", None) in LICORICE
    ]
    return sum(doses)


def herbs_held_for(facts: Facts | None, kb: KnowledgeBase) -> list[str]:
    """What a herbal prescription written today needs a reason for, by the patient's latest assessment and the
    medicines prescribed that they take (the checks of `_against_safety_rules`), in words for the prescription form:
    "Dang Gui, Dan Shen: taken out of this patient's plans (Warfarin with Dang Gui or Dan Shen)". ``facts`` are
    `facts_today`'s; without an assessment (None), that every herb is unchecked."""
    if facts is None:
        return [f"any herb: {_UNASSESSED.format(what='herbs')}"]
    held: dict[str, tuple[str, list[str]]] = {}  # by rule: what is said of it, and the herbs it names
    removed = removed_for(facts, kb, items=kb.herbs)
    for latin, rules in removed.items():
        for rule in rules:
            held.setdefault(rule.id, (f"taken out of this patient's plans ({rule.title})", []))[1].append(latin)
    for latin, rules in cautioned_for(facts, kb, herbs=kb.herbs).items():
        for rule in rules if latin not in removed else []:
            held.setdefault(rule.id, (f"cautioned for this patient ({rule.title})", []))[1].append(latin)
    said = []
    for why, herbs in held.values():
        names = [herb.pinyin for latin, herb in kb.herbs.items() if latin in herbs]  # in the knowledge base's order
        said.append(f"{', '.join(names) if names else 'any herb'}: {why}")
    # Rules whose condition holds, whatever the dose: the prescription's licorice is weighed when it is recorded.
    for rule in licorice_cautions(facts, kb, grams=float("inf")):
        said.append(
            f"licorice at {rule.targets.licorice_min_g:g} g a day or more: cautioned for this patient ({rule.title})"
        )
    return said


class PointsHeld(NamedTuple):
    points: list[Acupoint]  # none where it is said of all needling
    said: str


def points_held_for(facts: Facts | None, kb: KnowledgeBase) -> list[PointsHeld]:
    """What the acupuncture form says before a session is recorded, by the patient's latest assessment and the
    medicines prescribed that they take: the points a removal rule takes out of their plans, which a session gives
    only with a reason (the check of `_against_safety_rules`); acupuncture or electroacupuncture a rule holds back
    (electroacupuncture with a pacemaker), whether or not the plan in force was made before the rule held; and the
    cautions on needling them (warfarin: fine, superficial needles), which ask for care rather than a reason and which
    the plan says only while it recommends acupuncture. ``facts`` are `facts_today`'s; without an assessment (None),
    that every point is unchecked."""
    if facts is None:
        return [PointsHeld([], f"any point: {_UNASSESSED.format(what='points')}; a session needs a reason")]
    removed: dict[str, tuple[SafetyRule, list[str]]] = {}
    for code, rules in removed_for(facts, kb, items=kb.acupoints).items():
        for rule in rules:
            removed.setdefault(rule.id, (rule, []))[1].append(code)
    held = [
        PointsHeld(
            [kb.acupoints[code] for code in rule.targets.acupoints if code in codes],  # in the rule's order
            f"taken out of this patient's plans ({_titled(rule)}); a session giving "
            f"{'it' if len(codes) == 1 else 'them'} needs a reason",
        )
        for rule, codes in removed.values()
    ]
    for item, session in (("acupuncture", "a session"), ("electroacupuncture", "a session with electroacupuncture")):
        held += [
            PointsHeld([], f"{said}; {session} needs a reason")
            for said in held_back_said(facts, kb, items=[item], one="session")
        ]
    held += [PointsHeld([], f"{_titled(rule)}, a caution: {rule.message}") for rule in needling_cautions(facts, kb)]
    return held


def held_back_said(facts: Facts | None, kb: KnowledgeBase, *, items: Sequence[str], one: str) -> list[str]:
    """What the toxin, medicine and procedure forms say before a session is recorded, by the patient's latest
    assessment and the medicines prescribed that they take: each of ``items`` (plan items, in the form's order) that a
    contraindication or a deferral holds back, a line for each of the two with its rules' titles ("Percutaneous
    radiofrequency ablation ..., deferred: Radiofrequency ablation with a pacemaker or ICD"). A session giving one
    needs a reason (`_held_back_by_rules`; where the plan in force carries the rule, `_against_plan`, unless a signer
    lifted it). ``facts`` are `facts_today`'s; without an assessment (None), that any ``one`` (a medicine, a
    procedure) is unchecked."""
    if facts is None:
        return [f"any {one}: {_UNASSESSED.format(what=one + 's')}"]
    held = held_back_for(facts, kb, items=items)
    names = kb.treatment_names()
    said = []
    for item in (item for item in items if item in held):
        for action, words in (("contraindicate", "contraindicated"), ("defer", "deferred")):
            if titles := [_titled(rule) for rule in held[item] if rule.action == action]:
                said.append(f"{names.get(item, item)}, {words}: {'; '.join(titles)}")
    return said


def cautions_said(facts: Facts | None, kb: KnowledgeBase, *, items: Sequence[str]) -> list[str]:
    """The cautions the toxin and medicine forms say under what `held_back_said` holds back: each caution rule naming
    some of ``items`` for this patient today, with the items it names and its message ("Botulinum toxin injections, a
    caution: Drugs that potentiate botulinum toxin. ..."). A caution asks for care; the plan says it where it offers
    the item."""
    if facts is None:
        return []
    names = kb.treatment_names()
    by_rule: dict[str, tuple[SafetyRule, list[str]]] = {}
    cautioned = cautions_on(facts, kb, items=items)
    for item in (item for item in items if item in cautioned):
        for rule in cautioned[item]:
            by_rule.setdefault(rule.id, (rule, []))[1].append(names.get(item, item))
    return [f"{', '.join(named)}, a caution: {_titled(rule)}. {rule.message}" for rule, named in by_rule.values()]


_UNASSESSED = "no assessment this version can read is recorded, so {what} are unchecked against the safety rules"


def facts_today(
    assessment: Assessment | None, sessions: Iterable[TreatmentSession], *, today: dt.date, kb: KnowledgeBase
) -> Facts | None:
    """The facts of the patient's latest assessment with the medicines prescribed in the records that they take today
    (what the forms' notices and the sign-off table read, as recording a session does); None without an assessment."""
    if assessment is None:
        return None
    prescribed = [row for row in sessions if row.kind == "medicine"]
    return _with_medicines(assessment, with_prescribed(assessment.medications, prescribed, today=today), kb)


def _readings(
    session: Session,
    *,
    patient: Patient,
    date: dt.date,
    latest: tuple[StoredAssessment | None, Assessment | None],
) -> list[tuple[Assessment, str]]:
    """The assessments a session of ``date`` is checked against, each with the words that say which it was: the latest
    (its words are empty), and the one in force on that day when it is another (a pregnancy over by now was not over
    then). One stored before a change of the assessment's form is not read."""
    stored, assessment = latest
    readings = [] if assessment is None else [(assessment, "")]
    stored_then, then = assessment_service.in_force_read(session, patient=patient, on=date)
    if stored_then is not None and then is not None and (stored is None or stored_then.id != stored.id):
        readings.append((then, f" by the assessment of {stored_then.assessed_on.isoformat()}, in force on that day"))
    return readings


def _facts_read(
    session: Session,
    *,
    patient: Patient,
    date: dt.date,
    latest: tuple[StoredAssessment | None, Assessment | None],
    prescribed: Sequence[TreatmentSession],
    kb: KnowledgeBase,
) -> list[tuple[Facts, str]]:
    """The facts a session of ``date`` is checked against, one for each of `_readings`, with the medicines prescribed
    that the patient takes on that day read beside the assessment's own, as plans read them."""
    return [
        (_with_medicines(read, with_prescribed(read.medications, prescribed, today=date), kb), by)
        for read, by in _readings(session, patient=patient, date=date, latest=latest)
    ]


def _with_medicines(read: Assessment, medications: list[str], kb: KnowledgeBase) -> Facts:
    """The facts of the patient of this assessment taking these medicines."""
    return facts_of(read.model_copy(update={"medications": medications}), kb)


def _medicine_with_herbs_taken(
    session: Session,
    *,
    patient: Patient,
    date: dt.date,
    details: MedicineDetails,
    prescribed: Sequence[TreatmentSession],
    latest: tuple[StoredAssessment | None, Assessment | None],
    kb: KnowledgeBase,
) -> list[FieldProblem]:
    """Herbs of a prescription the patient is taking on a medicine's date (within its days) that a removal rule takes
    out of their plans once they take this medicine too (Jiang Can prescribed last week, clonazepam now, where the
    sedation rule removes rather than cautions), or that a caution rule then names for them as it would a herb
    prescribed (any herbs, then carbamazepine; Jiang Can, then clonazepam; licorice a day over a rule's top, then a
    medicine that rule is on). The other way round (the herb prescribed after the medicine) is checked when the herb
    is recorded. Only what this medicine changes is said: a herb taken out or cautioned already needed its reason when
    it was prescribed. Held, as points and herbs are, to the latest assessment and to the one in force on the
    medicine's day."""
    rows = running(list_for(session, patient=patient, kind="herbal"), today=date)
    if not rows:
        return []
    taking: dict[str, TreatmentSession] = {}
    for row in rows:
        for herb in row.data["herbs"]:
            if (known := kb.resolve_herb(herb["latin"])) is not None:
                taking[known.latin] = row  # the latest prescription of it, as sessions are listed by date
    licorice = {row.id: grams for row in rows if (grams := _licorice_in(row.data["herbs"], kb))}  # a day's, by row
    grams = round(sum(licorice.values()), 3)
    # Without an assessment there is no plan, and the medicine needs a reason anyway.
    readings = _readings(session, patient=patient, date=date, latest=latest)
    # By (item, rule id): a rule this medicine brings, though another held the herb already (Jiang Can given with a
    # reason under one rule, then a medicine a second rule cautions it with: its prescriber is told of the herb).
    removed: dict[tuple[str, str], tuple[SafetyRule, str]] = {}
    cautioned: dict[tuple[str, str], tuple[SafetyRule, str]] = {}
    for read, by in readings:
        before = with_prescribed(read.medications, prescribed, today=date)
        after = before if details.medicine in before else [*before, details.medicine]
        was, will = _with_medicines(read, before, kb), _with_medicines(read, after, kb)
        already = _pairs(removed_for(was, kb, items=taking))
        for pair, rule in _pairs(removed_for(will, kb, items=taking)).items():
            if pair not in already:
                removed.setdefault(pair, (rule, by))  # the latest assessment's reason first
        already = _pairs(cautioned_for(was, kb, herbs=taking))
        for (item, rule_id), rule in _pairs(cautioned_for(will, kb, herbs=taking)).items():
            if (item, rule_id) not in already and not any(held == item for held, _ in removed):
                cautioned.setdefault((item, rule_id), (rule, by))
        held = {rule.id for rule in licorice_cautions(was, kb, grams=grams)}
        for rule in licorice_cautions(will, kb, grams=grams) if grams else []:
            if rule.id not in held:
                cautioned.setdefault((LICORICE_DOSE, rule.id), (rule, by))
    problems = []
    for (item, _), (rule, by) in removed.items():
        row = taking[item]
        said = (
            f"{details.medicine} takes {item} out of this patient's plans{by} ({rule.title}), and the prescription "
            f"of {row.date.isoformat()} gives it until {last_day(row)}; {OVERRIDE}"
        )
        problems.append(FieldProblem("details.medicine", said))
    for (item, _), (rule, by) in cautioned.items():
        if item == HERBAL_FORMULA:
            given = f"the herbs {_prescriptions(rows)} gives"
        elif item == LICORICE_DOSE:
            given = f"the {grams:g} g a day of licorice {_prescriptions([r for r in rows if r.id in licorice])} gives"
        else:
            given = f"{item}, which {_prescriptions([taking[item]])} gives,"
        said = (
            f"{details.medicine} with {given} is cautioned for this patient{by}: {rule.title}. {rule.message} "
            f"Leave it out, or {OVERRIDE}"
        )
        problems.append(FieldProblem("details.medicine", said))
    return problems


LICORICE_DOSE = "licorice a day"  # what a licorice dose rule is on, beside the herbs' Latin names


def _pairs(named: Mapping[str, Sequence[SafetyRule]]) -> dict[tuple[str, str], SafetyRule]:
    """Items with the rules on them, as one entry per (item, rule id)."""
    return {(item, rule.id): rule for item, rules in named.items() for rule in rules}


def _prescriptions(rows: Sequence[TreatmentSession]) -> str:
    """Running prescriptions in words: "the prescription of 2026-11-20 (until 2026-12-03)", or "the prescriptions of
    ... and ..."."""
    named = [f"{row.date.isoformat()} (until {last_day(row)})" for row in rows]
    return f"the prescription{'s' if len(named) > 1 else ''} of {' and '.join(named)}"


class _Top(NamedTuple):
    """The most of a herb a prescription may give in a day without a reason, and the words that say where it is from."""

    grams: float
    said: str


def _reference_top(herb: Herb, details: HerbalDetails, kb: KnowledgeBase) -> _Top | None:
    """The top of a herb's reference dose for the way it is taken, where the knowledge base gives one (the toxic herbs
    of the HFS formulas). A toxic herb without one of its own is held, boiled, to its dose in the prescription's
    classical formula (the top of the range, or the single dose the source gives); None where there is neither."""
    if details.preparation == "decoction" and herb.decoction_max_g is not None:
        return _Top(
            herb.decoction_max_g, f"its reference daily decoction dose of {herb.decoction_max_g:g} g ({herb.dose_note})"
        )
    if details.preparation == "powder" and herb.powder_max_g is not None:
        return _Top(
            herb.powder_max_g,
            f"its reference powder dose of {herb.powder_max_g:g} g ({herb.dose_note}; the sources do not say whether "
            "per dose or per day, and a day's amount is held to it)",
        )
    formula = kb.formulas.get(details.formula or "")
    if details.preparation == "decoction" and herb.toxic and formula is not None:
        for ingredient in formula.ingredients:
            top = ingredient.dose_max_g or ingredient.dose_min_g
            if top is not None and kb.resolve_herb(ingredient.herb) is herb:
                said = f"its dose in {formula.pinyin}, {ingredient.dose()} (the knowledge base gives none of its own)"
                return _Top(top, said)
    return None


def _herbs_above_reference(details: HerbalDetails, kb: KnowledgeBase) -> list[FieldProblem]:
    """Doses above the top of a herb's reference dose for the way it is taken (`_reference_top`): most often a
    slipped decimal point, 60 g of Quan Xie typed for 6, or a decoction dose written for a powder, which swallows the
    whole herb (Quan Xie: 3-6 g boiled, 0.6-1 g as a powder). A toxic herb with no such top is unchecked and needs a
    reason too: boiled outside a formula that doses it (the web page's 35 g of raw Ban Xia), or as a powder."""
    problems = []
    for index, given in enumerate(details.herbs):
        herb = kb.resolve_herb(given.latin)
        if herb is None:
            continue
        path, name = f"details.herbs.{index}.dose_g", f"{herb.latin} ({herb.pinyin})"
        top = _reference_top(herb, details, kb)
        a_day = "a day " if details.preparation == "powder" else ""
        taken = " as a powder" if details.preparation == "powder" else ""
        if top is not None and given.dose_g > top.grams:
            problems.append(
                FieldProblem(path, f"{given.dose_g:g} g {a_day}of {name}{taken} is above {top.said}; {OVERRIDE}")
            )
        elif top is None and herb.toxic:
            said = f"{name} is toxic and the knowledge base gives no {details.preparation} dose for it"
            if details.preparation == "decoction":
                formula = kb.formulas.get(details.formula or "")
                said += f", nor does {formula.pinyin}" if formula else " outside a formula that doses it"
            problems.append(FieldProblem(path, f"{said}, so {given.dose_g:g} g a day{taken} is unchecked; {OVERRIDE}"))
    return problems


def _days_taken(row: Any) -> tuple[dt.date, dt.date]:
    """The first day a prescription is taken and the day after its last: its days, or until the day it was stopped (a
    medicine without a course and not stopped: without end)."""
    days = row.data.get("duration_days")
    end = dt.date.max if days is None else row.date + dt.timedelta(days=days)
    if row.data.get("stopped"):
        end = min(end, dt.date.fromisoformat(row.data["stopped"]))
    return row.date, end


def _overlapping(
    prescriptions: Iterable[TreatmentSession], *, date: dt.date, days: int | None
) -> list[tuple[TreatmentSession, str]]:
    """The prescriptions taken on some of the days of one given from ``date`` (for ``days``, or without end), each with
    words that name it: "the prescription of 2026-11-20 (until 2026-12-03)"."""
    first, end = date, dt.date.max if days is None else date + dt.timedelta(days=days)
    found = []
    for row in prescriptions:
        start, stop = _days_taken(row)
        if start < end and first < stop:
            until = "" if stop == dt.date.max else f" (until {(stop - dt.timedelta(days=1)).isoformat()})"
            found.append((row, f"the prescription of {row.date.isoformat()}{until}"))
    return found


def _medicine_prescribed_already(
    prescribed: Sequence[TreatmentSession], *, date: dt.date, details: MedicineDetails
) -> list[FieldProblem]:
    """The same medicine prescribed on some of the same days (a new dose written while the last prescription runs):
    doses are kept as written and cannot be added up, and two running prescriptions of one medicine leave it unclear
    which the patient takes. Stopping the other on the day this one starts ends the overlap."""
    same = [
        said
        for row, said in _overlapping(prescribed, date=date, days=details.duration_days)
        if row.data["medicine"] == details.medicine
    ]
    if not same:
        return []
    return [
        FieldProblem(
            "details.medicine",
            f"{details.medicine} is prescribed already on some of the same days ({', '.join(same)}): doses as written "
            f"cannot be added up; stop the other prescription on the day this one starts, or {OVERRIDE}",
        )
    ]


def _herbs_with_overlapping(
    overlapping: Sequence[tuple[TreatmentSession, str]], *, details: HerbalDetails, kb: KnowledgeBase
) -> list[FieldProblem]:
    """Herbs with a top to their dose (`_reference_top`) that another herbal prescription (of the ``overlapping``)
    gives on some of this one's days (a renewal written before the last course ends, say): a day's doses add up, and
    together they may pass the top that neither passes alone. Prescriptions taken the other way (boiled, or as a
    powder) cannot be added, and a toxic herb taken both ways is unchecked. Stopping the other prescription on its
    history row ends the overlap."""
    problems = []
    for index, given in enumerate(details.herbs):
        herb = kb.resolve_herb(given.latin)
        if herb is None:
            continue
        top = _reference_top(herb, details, kb)
        same: list[tuple[float, str]] = []
        other: list[tuple[float, str]] = []
        for row, said in overlapping:
            for taken in row.data["herbs"]:
                if kb.resolve_herb(taken["latin"]) is herb:
                    kept = row.data.get("preparation", "decoction") == details.preparation
                    (same if kept else other).append((taken["dose_g"], said))
        path, name = f"details.herbs.{index}.dose_g", f"{herb.latin} ({herb.pinyin})"
        total = round(given.dose_g + sum(dose for dose, _ in same), 3)
        if top is not None and same and given.dose_g <= top.grams < total:
            with_ = " and ".join(f"{dose:g} g from {said}" for dose, said in same)
            problems.append(
                FieldProblem(
                    path,
                    f"{given.dose_g:g} g a day of {name} with {with_} is {total:g} g a day, above {top.said}; stop the "
                    f"other prescription on the day this one starts, or {OVERRIDE}",
                )
            )
        elif herb.toxic and other:
            taken_as = "as a powder" if details.preparation == "decoction" else "boiled"
            problems.append(
                FieldProblem(
                    path,
                    f"{name} is toxic and {other[0][1]} gives it {taken_as} on some of the same days: doses taken "
                    f"both ways cannot be added up, so the day's dose is unchecked; stop the other prescription on "
                    f"the day this one starts, or {OVERRIDE}",
                )
            )
    return problems


def _needs_a_reason(
    session: Session, *, patient: Patient, data: SessionCreate, kb: KnowledgeBase
) -> list[FieldProblem]:
    """What stops a session unless its override reason says why (the reason covers them all)."""
    details = data.details
    problems: list[FieldProblem] = []
    # Read once for every check: the assessments a session is held to, and the medicines prescribed.
    latest = assessment_service.latest_read(session, patient=patient)
    prescribed = list_for(session, patient=patient, kind="medicine")
    readings = _facts_read(session, patient=patient, date=data.date, latest=latest, prescribed=prescribed, kb=kb)
    if isinstance(details, ToxinDetails):
        limits = kb.toxin_programme().limits
        weeks = limits["min_interval_weeks"].value
        # One read of the toxin sessions near this one serves the interval and the cap period.
        near = _toxin_near(
            session, patient=patient, date=data.date, weeks=max(weeks, limits["session_cap_weeks"].value)
        )
        nearest = min(near, key=lambda given: abs(given.date - data.date), default=None)
        if nearest is not None and abs(nearest.date - data.date) < dt.timedelta(weeks=weeks):
            side = "after" if nearest.date <= data.date else "before"
            problems.append(
                FieldProblem(
                    "date",
                    f"{data.date.isoformat()} is less than {weeks:g} weeks {side} the toxin session of "
                    f"{nearest.date.isoformat()}; {OVERRIDE}",
                )
            )
        problems += _toxin_above_caps(details, kb)
        problems += _first_session_above_cap(session, patient=patient, date=data.date, details=details, kb=kb)
        problems += _toxin_in_cap_period(near, date=data.date, details=details, kb=kb)
    if isinstance(details, HerbalDetails):
        problems += _herbs_above_reference(details, kb)
        herbal = list_for(session, patient=patient, kind="herbal")
        overlapping = _overlapping(herbal, date=data.date, days=details.duration_days)
        problems += _herbs_with_overlapping(overlapping, details=details, kb=kb)
        problems += _against_safety_rules(details, latest=latest, readings=readings, kb=kb, overlapping=overlapping)
    if isinstance(details, AcupunctureDetails):
        problems += _against_safety_rules(details, latest=latest, readings=readings, kb=kb)
    if isinstance(details, ProcedureDetails):
        problems += _procedure_on_the_other_side(details, latest=latest)
    if isinstance(details, MedicineDetails):
        problems += _medicine_prescribed_already(prescribed, date=data.date, details=details)
        problems += _medicine_with_herbs_taken(
            session, patient=patient, date=data.date, details=details, prescribed=prescribed, latest=latest, kb=kb
        )
    items = _plan_items(details)
    plan = plan_queries.in_force(session, patient=patient, on=data.date)  # the newest made on or before its day
    problems += _against_plan(session, patient=patient, plan=plan, items=items, kb=kb)
    return problems + _held_back_by_rules(items, plan=plan, readings=readings, kb=kb)


def _procedure_on_the_other_side(
    details: ProcedureDetails, *, latest: tuple[StoredAssessment | None, Assessment | None]
) -> list[FieldProblem]:
    """A procedure on the side without spasm by the latest assessment: it weakens the face it is done on, so a side
    written wrong would weaken the healthy one. Either side of a bilateral spasm is the spasm's; with no assessment to
    read the side from, it is unchecked and needs a reason too (as points and herbs are)."""
    stored, assessment = latest
    if assessment is None:
        why = "no assessment is recorded" if stored is None else "the latest assessment cannot be read by this version"
        return [FieldProblem("details.side", f"{why}, so the {details.side} side is unchecked; {OVERRIDE}")]
    if assessment.side.value in (details.side, "bilateral"):
        return []
    said = f"the spasm is on the {assessment.side.value} side by the latest assessment, not the {details.side}"
    return [FieldProblem("details.side", f"{said}; {OVERRIDE}")]


def _toxin_near(session: Session, *, patient: Patient, date: dt.date, weeks: float) -> list[TreatmentSession]:
    """The patient's toxin sessions less than ``weeks`` before or after ``date``. Both sides count: a session entered
    from earlier records may fall between two already recorded."""
    window = dt.timedelta(weeks=weeks)
    query = select(TreatmentSession).where(
        TreatmentSession.patient_id == patient.id,
        TreatmentSession.kind == "toxin",
        TreatmentSession.date > date - window,
        TreatmentSession.date < date + window,
    )
    return list(session.scalars(query))


def record(
    session: Session, *, patient: Patient, data: SessionCreate, kb: KnowledgeBase, actor: str
) -> TreatmentSession:
    """Store a session. One that goes beyond a check (a toxin interval or cap, a herb's reference dose, a safety rule,
    the latest plan holding its treatment back) needs an override reason."""
    patient_service.lock(session, patient=patient)
    if isinstance(data.details, MedicineDetails):  # a brand or synonym is kept under the generic name, as plans use
        drug = kb.resolve_drug(data.details.medicine)
        if drug is not None:
            data = data.model_copy(update={"details": data.details.model_copy(update={"medicine": drug.id})})
    if isinstance(data.details, HerbalDetails):  # a herb written by its pinyin or Chinese name is kept by its Latin
        herbs = [
            given.model_copy(update={"latin": herb.latin}) if (herb := kb.resolve_herb(given.latin)) else given
            for given in data.details.herbs
        ]
        data = data.model_copy(update={"details": data.details.model_copy(update={"herbs": herbs})})
    problems = patient_service.before_birth(patient, data.date) + _check_against_knowledge(data, kb)
    details = data.details
    if not details.override_reason:
        problems += _needs_a_reason(session, patient=patient, data=data, kb=kb)
    if problems:
        raise InputError(problems)
    payload = details.model_dump(mode="json")
    if isinstance(details, ToxinDetails):
        payload["total_units"] = details.total_units
    row = TreatmentSession(
        patient_id=patient.id,
        kind=details.kind,
        date=data.date,
        clinician=data.clinician,
        data=payload,
        created_by=actor,
    )
    audit.add_created(
        session,
        row,
        actor=actor,
        entity="session",
        reason=getattr(details, "override_reason", None),
        detail={"patient": patient.code, "kind": details.kind},
    )
    return row


def list_for(session: Session, *, patient: Patient, kind: str | None = None) -> list[TreatmentSession]:
    """A patient's sessions, oldest first."""
    query = select(TreatmentSession).where(TreatmentSession.patient_id == patient.id)
    if kind is not None:
        query = query.where(TreatmentSession.kind == kind)
    return list(session.scalars(query.order_by(TreatmentSession.date, TreatmentSession.id)))


# The kinds of session a plan is made from (plans.service.with_recorded_history adds them to the assessment's history,
# medicines and herbs), with their names in a sentence.
READ_BY_PLANS = {
    "toxin": "toxin session",
    "mvd": "operation (MVD)",
    "medicine": "prescription",
    "herbal": "herbal prescription",
}


# Acupuncture sessions no further apart than this are one course (the protocol gives 2-3 a week): a longer gap
# ends it, and the next session starts another.
COURSE_GAP = dt.timedelta(days=14)


def acupuncture_courses(dates: Iterable[dt.date]) -> list[list[dt.date]]:
    """Acupuncture session dates as courses, oldest first, each its dates in order: what the recall of the next
    session counts and the outcome chart shades."""
    courses: list[list[dt.date]] = []
    for date in sorted(dates):
        if courses and date - courses[-1][-1] <= COURSE_GAP:
            courses[-1].append(date)
        else:
            courses.append([date])
    return courses


def last_day(row: Any) -> dt.date | None:
    """The last day a prescription is taken: the last of its course, or the day before it was stopped (None for a
    medicine prescribed without a course and not stopped)."""
    _, end = _days_taken(row)
    return None if end == dt.date.max else end - dt.timedelta(days=1)


def running(sessions: Iterable[Any], *, today: dt.date) -> list[Any]:
    """The prescriptions (of medicines and herbs) among these sessions that the patient still takes on ``today``:
    given by then, not stopped, and within the course's days where one was given (a herbal prescription always has
    them; a medicine without them is taken until a stop is recorded)."""
    taken = []
    for row in sessions:
        if row.kind in ("medicine", "herbal"):
            first, end = _days_taken(row)
            if first <= today < end:
                taken.append(row)
    return taken


def with_prescribed(listed: Sequence[str], sessions: Iterable[Any], *, today: dt.date) -> list[str]:
    """An assessment's medicines with, after them, those prescribed in the records that the patient still takes on
    ``today`` (generic names, in the order prescribed; not one the assessment names already). Plans and the checks of
    points and herbs read this list, so that the safety rules and interactions of what the patient takes hold."""
    prescribed = running(sessions, today=today)
    return _with_taken(listed, (row.data["medicine"] for row in prescribed if row.kind == "medicine"))


def with_prescribed_herbs(listed: Sequence[str], sessions: Iterable[Any], *, today: dt.date) -> list[str]:
    """An assessment's herbs with, after them, the herbs of the herbal prescriptions in the records that the patient
    still takes on ``today`` (Latin names, as prescriptions keep them; not one the assessment names already). Plans
    read this list: a medicine they propose is checked against the herbs taken, and the formula they give says which
    of its herbs are taken already."""
    prescribed = running(sessions, today=today)
    return _with_taken(listed, (h["latin"] for row in prescribed if row.kind == "herbal" for h in row.data["herbs"]))


def _with_taken(listed: Sequence[str], taken: Iterable[str]) -> list[str]:
    names = list(listed)
    known = {name.lower() for name in listed}
    for name in taken:
        if name.lower() not in known:
            names.append(name)
            known.add(name.lower())
    return names


def recorded_since(session: Session, *, patient: Patient) -> list[str]:
    """What was recorded of the sessions a plan is made from after the patient's latest generated plan, in words,
    oldest first: sessions added ("toxin session of 2026-11-27") and outcomes added or changed ("the outcome of the
    toxin session of 2026-08-20"). The plan knows none of it (doses follow the last effect and side effects, the
    interval the last session, statuses an operation's result) until a new version is made from the records."""
    generated = plan_queries.latest(session, patient=patient, kind="generated")
    if generated is None:
        return []
    made = generated.created_at
    query = (
        select(TreatmentSession.kind, TreatmentSession.date, TreatmentSession.created_at > made)
        .where(
            TreatmentSession.patient_id == patient.id,
            TreatmentSession.kind.in_(READ_BY_PLANS),
            (TreatmentSession.created_at > made) | (TreatmentSession.amended_at > made),
        )
        .order_by(TreatmentSession.date, TreatmentSession.id)
    )
    said = []
    for kind, date, added in session.execute(query):
        name = f"{READ_BY_PLANS[kind]} of {date.isoformat()}"
        said.append(name if added else f"the outcome of the {name}")
    removed = select(AuditEntry.detail).where(
        AuditEntry.entity == "session",
        AuditEntry.action == "delete",
        AuditEntry.at > made,
        AuditEntry.detail["patient"].as_string() == patient.code,
    )
    for (detail,) in session.execute(removed.order_by(AuditEntry.id)):
        known = aware(dt.datetime.fromisoformat(detail["session"]["created_at"])) <= aware(made)
        if detail["kind"] in READ_BY_PLANS and known:  # one recorded after the plan was made, it never knew
            said.append(f"the removal of the {READ_BY_PLANS[detail['kind']]} of {detail['session']['date']}")
    return said


def remove(session: Session, *, patient: Patient, session_id: int, actor: str, reason: str) -> TreatmentSession:
    """Remove a session entered by mistake (on the wrong patient, with a wrong dose, twice): sessions are not
    edited, a wrong one is removed and recorded again. The audit trail keeps everything it held, who removed it and
    why; the recalls and the next plan version are read from what is recorded, and the patient's page says that the
    latest plan still knows of it (``recorded_since``)."""
    patient_service.lock(session, patient=patient)
    row = get(session, patient=patient, session_id=session_id)
    held = {
        "date": row.date.isoformat(),
        "clinician": row.clinician,
        "data": row.data,
        "created_by": row.created_by,
        "created_at": aware(row.created_at).isoformat(),
    }
    session.delete(row)
    audit.record(
        session,
        actor=actor,
        action="delete",
        entity="session",
        entity_id=session_id,
        reason=reason,
        detail={"patient": patient.code, "kind": row.kind, "session": held},
    )
    return row


# Which outcome fields each kind of session takes.
OUTCOME_FIELDS = {
    "toxin": ("effect_weeks", "adverse_effects"),
    "mvd": ("result",),
    "medicine": ("stopped",),
    "herbal": ("stopped",),
    "procedure": ("effect_weeks", "adverse_effects"),
}


def get(session: Session, *, patient: Patient, session_id: int) -> TreatmentSession:
    """One of the patient's sessions."""
    row = session.get(TreatmentSession, session_id)
    if row is None or row.patient_id != patient.id:
        raise NotFoundError(f"patient {patient.code!r} has no session {session_id}")
    return row


def record_outcome(
    session: Session, *, patient: Patient, session_id: int, outcome: SessionOutcome, actor: str
) -> TreatmentSession:
    """Add what was learnt after a session (a toxin session's effect and side effects, an operation's result, the day
    a medicine or a herbal prescription was stopped). A value already recorded is changed only with a reason; the
    audit trail keeps the old and the new."""
    patient_service.lock(session, patient=patient)
    row = get(session, patient=patient, session_id=session_id)
    allowed = OUTCOME_FIELDS.get(row.kind, ())
    given = outcome.model_dump(mode="json", exclude_none=True, exclude={"reason"})
    problems = [
        FieldProblem(name, f"does not apply to a {row.kind} session (it takes {', '.join(allowed) or 'none'})")
        for name in given
        if name not in allowed
    ]
    if "stopped" in given and outcome.stopped is not None and outcome.stopped < row.date:
        problems.append(FieldProblem("stopped", f"{given['stopped']} is before the prescription of {row.date}"))
    changes = {name: [row.data.get(name), value] for name, value in given.items() if row.data.get(name) != value}
    overwritten = [name for name, (before, _) in changes.items() if before not in (None, [])]
    if overwritten and not outcome.reason:
        problems.append(FieldProblem("reason", f"say why {', '.join(overwritten)} already recorded changes"))
    if problems:
        raise InputError(problems)
    row.data = {**row.data, **given}  # a new dict, so that the JSON column is written
    row.amended_at = utcnow()
    audit.record(
        session,
        actor=actor,
        action="amend",
        entity="session",
        entity_id=row.id,
        reason=outcome.reason,
        detail={"patient": patient.code, "kind": row.kind, "changes": changes},
    )
    return row


def describe(kind: str, data: Mapping[str, Any], *, formula_names: Mapping[str, str] | None = None) -> str:
    """What was given in a session, in one line: the treatment history on the patient's page and in the referral.

    ``formula_names`` names a prescription's formula by its id (pinyin); an id without one is shown as it is.
    """
    # Why it was recorded although a check stopped it, for whoever reads the history next.
    override = f"; override reason: {data['override_reason']}" if data.get("override_reason") else ""
    if kind == "toxin":
        return f"{data['product']} {data['total_units']:g} U, lot {data['lot']}{override}"
    if kind == "acupuncture":
        said = ", ".join(data["points"]) + (" (EA)" if data.get("electro") else "")
        return said + (f"; {data['notes']}" if data.get("notes") else "") + override
    if kind == "herbal":
        herbs = ", ".join(f"{herb['latin']} {herb['dose_g']:g} g" for herb in data["herbs"])
        formula = f"{(formula_names or {}).get(data['formula'], data['formula'])}: " if data.get("formula") else ""
        powder = " as a powder (grams a day)" if data.get("preparation") == "powder" else ""
        return f"{formula}{herbs}{powder}, {data['duration_days']} days{override}"
    if kind == "medicine":
        course = f", {data['duration_days']} days" if data.get("duration_days") else ""
        notes = f"; {data['notes']}" if data.get("notes") else ""
        return f"{data['medicine']} {data['dose']}{course}{notes}{override}"
    if kind == "procedure":
        notes = f"; {data['notes']}" if data.get("notes") else ""
        return f"{PROCEDURES[data['procedure']]}, {data['side']} side{notes}{override}"
    return str(data["surgeon"]) + (f": {data['notes']}" if data.get("notes") else "") + override


def outcome_words(kind: str, data: Mapping[str, Any]) -> str:
    """What came of a session, as far as it has been recorded ("" when nothing has)."""
    if kind in ("toxin", "procedure"):
        effect = f"effect {data['effect_weeks']:g} weeks" if data.get("effect_weeks") else ""
        return "; ".join(filter(None, [effect, ", ".join(data.get("adverse_effects") or [])]))
    if kind == "mvd":
        return str(data.get("result") or "")
    if kind in ("medicine", "herbal") and data.get("stopped"):
        return f"stopped {data['stopped']}"
    return ""
