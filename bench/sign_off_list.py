"""Sign-off list benchmark: "Changed at sign-off" over a clinic's signed plan versions, on SQLite and PostgreSQL.

Stores N signed plan versions (default 15,000: five for each of 3,000 synthetic patients, each holding its patient's
real plan, about 55 KB of JSON), a few of them (5%) with statuses the signer changed. Then times the list, all of it
and from a day a month back, beside a baseline measured in the same run on the same database: reading every signed
version's edits, as the list did before each version kept its count of changes. Best of three runs each, with the
database's pages already read once (a cold disk cache costs more on both sides). No target: the ratio says what the
count and its index save.

    python bench/sign_off_list.py [--versions 15000] [--postgres-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from records_scale import TODAY, databases, synthetic_records
from sqlalchemy import Engine, insert, select

from hemicare.assessments.models import StoredAssessment
from hemicare.db.engine import session_factory, upgrade
from hemicare.engine import KnowledgeBase, build_plan, load_default, validate_assessment
from hemicare.patients.models import Patient
from hemicare.plans import service as plans
from hemicare.plans.models import PlanVersion

PER_PATIENT = 5
CHANGED_SHARE = 0.05
BATCH = 200  # patients a transaction: a thousand 55 KB plans at a time


def load(engine: Engine, versions: int, kb: KnowledgeBase) -> tuple[int, int]:
    """Bulk-insert patients, their assessments and signed plan versions a month apart (five a patient, so ``versions``
    rounded down to a multiple of five, at least five); how many versions were stored and how many have changes."""
    rng = random.Random(2026)
    now = dt.datetime.now(dt.UTC)
    changed = 0
    patients = max(1, versions // PER_PATIENT)
    for start in range(0, patients, BATCH):
        people, assessments, signed = [], [], []
        for index in range(start, min(patients, start + BATCH)):
            patient_id = index + 1
            person, assessment = synthetic_records(rng, index, kb, now)
            content = build_plan(validate_assessment(assessment["data"]), kb, today=TODAY).model_dump(mode="json")
            people.append(person)
            assessments.append(assessment)
            for number in range(1, PER_PATIENT + 1):
                edits = []
                if rng.random() < CHANGED_SHARE:
                    edits = [{"recommendation": "mvd", "from": "recommended", "to": "option", "reason": "ASA 4"}]
                    changed += 1
                signed.append(
                    {
                        "patient_id": patient_id,
                        "number": number,
                        "assessment_id": patient_id,
                        "kind": "reviewed",
                        "knowledge_version": kb.version,
                        "hemicare_version": "bench",
                        "content": content,
                        "summary": {},
                        "edits": edits,
                        "changes": len(edits),
                        "signed_by": "Dr Bench",
                        "signed_role": "neurologist",
                        "signed_at": now - dt.timedelta(days=30 * (PER_PATIENT - number)),
                        "created_by": "bench",
                        "created_at": now,
                    }
                )
        with engine.begin() as connection:
            connection.execute(insert(Patient), people)
            connection.execute(insert(StoredAssessment), assessments)
            connection.execute(insert(PlanVersion), signed)
    return patients * PER_PATIENT, changed


def _best(action: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of three runs, after one that reads the pages in."""
    result = action()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return min(times), result


def run(engine: Engine, label: str, versions: int, kb: KnowledgeBase) -> None:
    upgrade(engine)
    start = time.perf_counter()
    stored, changed = load(engine, versions, kb)
    took = time.perf_counter() - start
    print(f"[{label}] stored {stored:,} signed versions, {changed:,} with changes, in {took:.0f} s")
    Session = session_factory(engine)
    month_ago = dt.date.today() - dt.timedelta(days=31)

    def every_signed_version() -> int:
        with Session() as s:
            query = select(PlanVersion.signed_at, PlanVersion.edits).where(PlanVersion.kind == "reviewed")
            return len(s.execute(query).all())

    def listed(since: dt.date | None) -> Callable[[], int]:
        def count() -> int:
            with Session() as s:
                return sum(len(group.overrides) for group in plans.overrides(s, since=since))

        return count

    floor, read = _best(every_signed_version)
    print(f"[{label}] baseline, reading every signed version's edits ({read:,}): {floor * 1000:.1f} ms")
    for name, since in (("all", None), ("from a month back", month_ago)):
        took, found = _best(listed(since))
        print(f"[{label}] sign-off list, {name}: {took * 1000:.1f} ms for {found:,} changes; ratio {took / floor:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=15_000)
    parser.add_argument("--postgres-url", default=os.environ.get("HEMICARE_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    kb = load_default()
    for label, engine in databases(args.postgres_url):
        run(engine, label, args.versions, kb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
