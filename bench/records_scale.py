"""Care-records scale benchmark: `due` and `recheck` over a large clinic, on SQLite and PostgreSQL.

Loads N synthetic patients (default 100,000), each with an assessment and two years of history: toxin sessions
every 12-16 weeks, an acupuncture course for some, MVD for a few, a monthly diary, and quarterly HFS-7 and grades.
Then times `due` and `recheck`, each beside a baseline measured in the same run on the same database (reading the
rows the command has to read, without the work), and prints the ratios. Target: both under 60 s.

    python bench/records_scale.py [--patients 100000] [--postgres-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from hemicare.assessments.models import StoredAssessment
from hemicare.db.engine import make_engine, session_factory, upgrade
from hemicare.engine import KnowledgeBase, load_default
from hemicare.outcomes.models import DiaryEntry, QuestionnaireAnswer, ScaleGrade
from hemicare.patients.models import Patient
from hemicare.plans import service as plans
from hemicare.recalls import service as recalls
from hemicare.sessions.models import TreatmentSession
from hemicare.synthetic import synthetic_assessment

TODAY = dt.date(2026, 11, 26)
TARGET_S = 60.0
BATCH = 2_000


def _history(rng: random.Random, patient_id: int, kb: KnowledgeBase) -> dict[str, list[dict[str, Any]]]:
    start = TODAY - dt.timedelta(days=730)
    now = dt.datetime.now(dt.UTC)
    base = {"patient_id": patient_id, "created_by": "bench", "created_at": now}
    rows: dict[str, list[dict[str, Any]]] = {"sessions": [], "diary": [], "questionnaires": [], "grades": []}
    if rng.random() < 0.8:
        date = start + dt.timedelta(days=rng.randint(0, 60))
        while date < TODAY - dt.timedelta(days=7):
            data = {
                "kind": "toxin",
                "product": "onabotulinumtoxinA",
                "lot": "B1",
                "sites": [{"site": "upper_lid_medial", "side": "left", "units": 2.5}],
                "total_units": 2.5,
                "effect_weeks": rng.randint(8, 18),
                "adverse_effects": [],
            }
            rows["sessions"].append({**base, "kind": "toxin", "date": date, "clinician": "Dr N", "data": data})
            date += dt.timedelta(weeks=rng.randint(12, 16))
    if rng.random() < 0.2:
        first = TODAY - dt.timedelta(days=rng.randint(5, 40))
        for n in range(rng.randint(3, 10)):
            data = {"kind": "acupuncture", "points": ["LI4", "LR3"], "electro": False}
            day = first + dt.timedelta(days=3 * n)
            if day < TODAY:
                rows["sessions"].append({**base, "kind": "acupuncture", "date": day, "clinician": "L", "data": data})
    if rng.random() < 0.05:
        day = start + dt.timedelta(days=rng.randint(0, 700))
        data = {"kind": "mvd", "surgeon": "Dr S", "result": rng.choice(["cured", "improved", None])}
        rows["sessions"].append({**base, "kind": "mvd", "date": day, "clinician": "Dr S", "data": data})
    for month in range(24):
        day = start + dt.timedelta(days=30 * month + rng.randint(0, 20))
        rows["diary"].append(
            {
                **base,
                "date": day,
                "spasms": rng.randint(0, 60),
                "per": "day",
                "intensity": rng.randint(0, 9),
                "triggers": [],
                "note": None,
            }
        )
    for quarter in range(8):
        day = start + dt.timedelta(days=91 * quarter + rng.randint(0, 30))
        answers = [rng.randint(0, 4) for _ in range(7)]
        rows["questionnaires"].append(
            {**base, "date": day, "instrument": "hfs7", "answers": answers, "total": sum(answers)}
        )
        rows["grades"].append(
            {
                **base,
                "date": day,
                "smc_grade": rng.randint(1, 4),
                "jankovic_severity": rng.randint(0, 4),
                "jankovic_frequency": rng.randint(0, 4),
                "cohen_albert": None,
            }
        )
    return rows


def _batches(total: int) -> Iterator[range]:
    for start in range(0, total, BATCH):
        yield range(start, min(total, start + BATCH))


def synthetic_records(
    rng: random.Random, index: int, kb: KnowledgeBase, now: dt.datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Synthetic patient ``index`` as a patients row and an assessments row, both with id index + 1; the assessment
    holds no toxin sessions (the clinic's records hold them)."""
    data = synthetic_assessment(rng, index, kb, today=TODAY)
    data["history"]["botulinum_sessions"] = []
    person = {
        "id": index + 1,
        "code": data["id"],
        "name": f"Synthetic {index}",
        "birth_year": TODAY.year - data["age"],
        "sex": data["sex"],
        "phone": None,
        "version": 1,
        "created_by": "bench",
        "created_at": now,
        "updated_at": now,
    }
    assessment = {
        "id": index + 1,
        "patient_id": index + 1,
        "assessed_on": TODAY,
        "schema_version": 1,
        "data": data,
        "created_by": "bench",
        "created_at": now,
    }
    return person, assessment


def load(engine: Engine, patients: int, kb: KnowledgeBase) -> dict[str, int]:
    """Bulk-insert the synthetic clinic (core inserts; the audit trail is not part of this benchmark)."""
    rng = random.Random(2026)
    counts = {"patients": 0, "sessions": 0, "diary": 0, "questionnaires": 0, "grades": 0}
    now = dt.datetime.now(dt.UTC)
    for batch in _batches(patients):
        people, assessments = [], []
        history: dict[str, list[dict[str, Any]]] = {k: [] for k in ("sessions", "diary", "questionnaires", "grades")}
        for index in batch:
            patient_id = index + 1
            person, assessment = synthetic_records(rng, index, kb, now)
            people.append(person)
            assessments.append(assessment)
            for key, rows in _history(rng, patient_id, kb).items():
                history[key].extend(rows)
        with engine.begin() as connection:
            connection.execute(insert(Patient), people)
            connection.execute(insert(StoredAssessment), assessments)
            for key, model in (
                ("sessions", TreatmentSession),
                ("diary", DiaryEntry),
                ("questionnaires", QuestionnaireAnswer),
                ("grades", ScaleGrade),
            ):
                if history[key]:
                    connection.execute(insert(model), history[key])
                    counts[key] += len(history[key])
        counts["patients"] += len(people)
    return counts


def _timed(action: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def run(engine: Engine, label: str, patients: int, kb: KnowledgeBase, workers: int) -> bool:
    upgrade(engine)
    load_s, counts = _timed(lambda: load(engine, patients, kb))
    rows = sum(counts.values())
    print(f"[{label}] loaded {rows:,} rows ({counts}) in {load_s:.1f} s")
    Session = session_factory(engine)

    def baseline_due() -> int:
        with Session() as s:
            return len(
                s.execute(select(TreatmentSession.patient_id, TreatmentSession.date, TreatmentSession.data)).all()
            ) + int(s.scalar(select(func.count(ScaleGrade.id))) or 0)

    def baseline_recheck() -> int:
        with Session() as s:
            return len(s.execute(select(StoredAssessment.patient_id, StoredAssessment.data)).all())

    def due() -> int:
        with Session() as s:
            return len(recalls.due(s, kb=kb, today=TODAY))

    def recheck() -> int:
        with Session() as s:
            return len(plans.recheck(s, kb=kb, today=TODAY, actor="bench", workers=workers))

    floor_due, _ = _timed(baseline_due)
    due_s, due_items = _timed(due)
    floor_recheck, _ = _timed(baseline_recheck)
    recheck_s, changed = _timed(recheck)
    print(f"[{label}] baseline, reading the session and grade rows: {floor_due:.1f} s")
    print(f"[{label}] due: {due_s:.1f} s for {due_items:,} items; ratio to baseline {due_s / floor_due:.1f}")
    print(f"[{label}] baseline, reading every assessment: {floor_recheck:.1f} s")
    print(
        f"[{label}] recheck ({workers} workers): {recheck_s:.1f} s, {changed:,} plans changed; "
        f"ratio to baseline {recheck_s / floor_recheck:.1f}"
    )
    ok = due_s < TARGET_S and recheck_s < TARGET_S
    print(f"[{label}] target due and recheck under {TARGET_S:.0f} s: {'met' if ok else 'MISSED'}")
    return ok


def databases(postgres_url: str | None) -> Iterator[tuple[str, Engine]]:
    """A fresh SQLite file, then (given a URL) a fresh PostgreSQL schema, each dropped after its turn."""
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'scale.db'}")
        yield "sqlite", engine
        engine.dispose()
    if not postgres_url:
        print("[postgresql] skipped: give --postgres-url or set HEMICARE_TEST_POSTGRES_URL")
        return
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
        engine = make_engine(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
        yield "postgresql", engine
        engine.dispose()
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--postgres-url", default=os.environ.get("HEMICARE_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    kb = load_default()
    results = [run(engine, label, args.patients, kb, args.workers) for label, engine in databases(args.postgres_url)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
