"""Plan-speed benchmark: in-process plan generation over a synthetic cohort, and the CLI's cold start.

Each measurement is printed beside a baseline taken in the same run, so the ratio means something on a shared,
noisy machine: plans against loading the knowledge base alone, and the CLI against starting Python alone.

    python bench/plan_speed.py [--patients 10000] [--cli-runs 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hemicare.engine import build_plan, load, validate_assessment
from hemicare.synthetic import cohort

ROOT = Path(__file__).resolve().parent.parent
TODAY = dt.date(2026, 11, 26)
TARGET_MEDIAN_MS = 2.0
TARGET_CLI_S = 1.0


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--cli-runs", type=int, default=7)
    args = parser.parse_args()

    load_times = []
    for _ in range(5):
        start = time.perf_counter()
        kb = load()
        load_times.append(time.perf_counter() - start)
    kb_load = statistics.median(load_times)

    raw = cohort(args.patients, kb, today=TODAY)
    start = time.perf_counter()
    assessments = [validate_assessment(item) for item in raw]
    validate_s = time.perf_counter() - start

    times = []
    statuses: dict[str, int] = {}
    for assessment in assessments:
        start = time.perf_counter()
        plan = build_plan(assessment, kb, today=TODAY)
        times.append(time.perf_counter() - start)
        statuses[plan.diagnosis.status.value] = statuses.get(plan.diagnosis.status.value, 0) + 1
    median_ms = statistics.median(times) * 1000
    p99_ms = _percentile(times, 0.99) * 1000
    per_second = len(times) / sum(times)

    hemicare = [sys.executable, "-m", "hemicare.cli", "plan", "examples/demo-001.yaml"]
    python_only = [sys.executable, "-c", "pass"]
    cli = statistics.median(_wall(hemicare) for _ in range(args.cli_runs))
    bare = statistics.median(_wall(python_only) for _ in range(args.cli_runs))

    print(f"cohort: {len(times)} synthetic patients; diagnoses {dict(sorted(statuses.items()))}")
    print(f"validation: {validate_s / len(times) * 1000:.3f} ms per assessment")
    print(f"baseline, knowledge base load alone: {kb_load * 1000:.1f} ms (median of 5)")
    print(f"plans per second: {per_second:,.0f}")
    print(f"plan time: median {median_ms:.3f} ms, p99 {p99_ms:.3f} ms")
    print(f"ratio, median plan / knowledge base load: {median_ms / (kb_load * 1000):.4f}")
    print(f"baseline, python -c pass: {bare * 1000:.0f} ms (median of {args.cli_runs})")
    print(f"CLI cold start, one plan: {cli * 1000:.0f} ms (median of {args.cli_runs})")
    print(f"ratio, CLI cold start / bare python: {cli / bare:.1f}")
    ok_plan = median_ms <= TARGET_MEDIAN_MS
    ok_cli = cli <= TARGET_CLI_S
    print(f"target median plan <= {TARGET_MEDIAN_MS} ms: {'met' if ok_plan else 'MISSED'}")
    print(f"target CLI cold start <= {TARGET_CLI_S} s: {'met' if ok_cli else 'MISSED'}")
    return 0 if ok_plan and ok_cli else 1


if __name__ == "__main__":
    sys.exit(main())
