"""Seeded synthetic patients for benchmarks and demos: varied, valid assessments, never real people."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from hemicare.engine.assessment import FaceRegion, Pulse, TcmFinding, TongueBody, TongueCoating
from hemicare.engine.loader import KnowledgeBase

_FINDINGS = (
    "tonic_spasm",
    "facial_weakness",
    "hearing_loss",
    "facial_numbness",
    "other_cranial_nerve_deficit",
)
_PREFERENCES = ("avoid_surgery", "avoid_needles", "avoid_injections", "wants_definitive_treatment", "integrative_care")
_PRODUCTS = ("onabotulinumtoxinA", "incobotulinumtoxinA", "abobotulinumtoxinA")
_ADVERSE = ("ptosis", "diplopia", "facial droop", "dry eyes")


def _maybe(rng: random.Random, p_true: float, p_unknown: float = 0.05) -> bool | None:
    roll = rng.random()
    if roll < p_unknown:
        return None
    return rng.random() < p_true


def synthetic_assessment(rng: random.Random, index: int, kb: KnowledgeBase, *, today: dt.date) -> dict[str, Any]:
    """One plausible assessment: mostly typical primary HFS, with red flags, mimics and comorbidities mixed in."""
    age = rng.randint(18, 90)
    sex = rng.choices(["female", "male", "other"], weights=[65, 34, 1])[0]
    duration = rng.randint(1, min(240, (age - 10) * 12))
    spread = rng.randint(1, 4)
    regions = ["periocular", *rng.sample([r.value for r in FaceRegion if r.value != "periocular"], spread - 1)]
    mri = rng.choices(["done", "not_done", "planned"], weights=[75, 20, 5])[0]
    imaging: dict[str, Any] = {"mri": mri}
    if mri == "done":
        imaging |= {
            "neurovascular_compression": rng.random() < 0.85,
            "structural_lesion": rng.random() < 0.01,
            "offending_vessel": rng.choice(["aica", "pica", "vertebral", "vein", "multiple", "unknown"]),
        }
    sessions = []
    for back in sorted(rng.sample(range(30, 1500), rng.randint(0, 4)), reverse=True):
        sessions.append(
            {
                "date": (today - dt.timedelta(days=back)).isoformat(),
                "product": rng.choice(_PRODUCTS),
                "total_units": rng.randint(10, 60),
                "effect_weeks": rng.randint(4, 20),
                "adverse_effects": rng.sample(_ADVERSE, rng.choice([0, 0, 0, 1])),
            }
        )
    drugs = sorted(kb.drugs)
    comorbidities = sorted(kb.comorbidities)
    herbs = sorted(h.pinyin for h in kb.herbs.values())
    return {
        "id": f"synthetic-{index:06d}",
        "age": age,
        "sex": sex,
        "pregnant": sex == "female" and age < 45 and rng.random() < 0.05,
        "ancestry": rng.sample(["han_chinese", "thai", "south_asian", "norwegian", "nigerian", "korean"], 1),
        "hla_b1502": rng.choice(["unknown", "unknown", "negative", "positive"]),
        "side": rng.choices(["left", "right", "bilateral"], weights=[60, 38, 2])[0],
        "duration_months": duration,
        "onset_site": rng.choices(["periocular", "lower_face"], weights=[97, 3])[0]
        if set(regions) - {"periocular", "forehead"}
        else "periocular",
        "regions": regions,
        "findings": {
            **{name: _maybe(rng, 0.03) for name in _FINDINGS},
            "babinski2_sign": _maybe(rng, 0.85),
            "bilateral_synchronous": _maybe(rng, 0.02),
            "facial_skin_infection": _maybe(rng, 0.01),
        },
        "history": {
            "bells_palsy": _maybe(rng, 0.05),
            "facial_nerve_injury": _maybe(rng, 0.02),
            "multiple_sclerosis": _maybe(rng, 0.01),
            "botulinum_sessions": sessions,
        },
        "severity": {
            "smc_grade": rng.randint(1, 4),
            "jankovic_severity": rng.randint(0, 4),
            "jankovic_frequency": rng.randint(0, 4),
        },
        "hfs7": [rng.randint(0, 4) for _ in range(7)],
        "imaging": imaging,
        "comorbidities": [kb.comorbidities[c].label for c in rng.sample(comorbidities, rng.choice([0, 0, 1, 2]))],
        "anaesthesia_risk_asa": rng.randint(1, 4),
        "medications": [kb.drugs[d].label for d in rng.sample(drugs, rng.choice([0, 1, 1, 2, 3]))],
        "herbs": rng.sample(herbs, rng.choice([0, 0, 0, 1])),
        "tcm": {
            "tongue": {
                "body": rng.choice([t.value for t in TongueBody]),
                "coating": rng.choice([t.value for t in TongueCoating]),
            },
            "pulse": rng.sample([p.value for p in Pulse], rng.randint(1, 2)),
            "findings": rng.sample([f.value for f in TcmFinding], rng.randint(0, 6)),
        },
        "preferences": {name: rng.random() < 0.3 for name in _PREFERENCES},
    }


def cohort(size: int, kb: KnowledgeBase, *, seed: int = 2026, today: dt.date) -> list[dict[str, Any]]:
    """``size`` synthetic assessments, the same for the same seed and date."""
    rng = random.Random(seed)
    return [synthetic_assessment(rng, index, kb, today=today) for index in range(size)]
