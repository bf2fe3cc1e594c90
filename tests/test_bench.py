"""The benchmark and the synthetic cohort it uses keep working (speed itself is measured by bench/, not here)."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys

from hemicare.engine import KnowledgeBase, validate_assessment
from hemicare.engine.rules import facts_of
from hemicare.synthetic import cohort

from .conftest import ROOT


def test_synthetic_cohort_is_valid_varied_and_reproducible(kb: KnowledgeBase) -> None:
    today = dt.date(2026, 11, 26)
    first = cohort(300, kb, today=today)
    assert first == cohort(300, kb, today=today)
    assessments = [validate_assessment(item) for item in first]
    assert len({a.side for a in assessments}) == 3
    assert any(a.pregnant for a in assessments) and any(a.history.botulinum_sessions for a in assessments)
    # Medicines and conditions are written as a clinician would (the vocabulary's labels), and every one is known.
    for a in assessments:
        facts = facts_of(a, kb)
        assert len(facts["drugs"]) == len(a.medications) and len(facts["comorbidity_ids"]) == len(a.comorbidities)
        assert not any("_" in name for name in [*a.medications, *a.comorbidities]), (a.medications, a.comorbidities)


def _bench(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run bench/NAME.py with these arguments, as the README does, on a small scale."""
    command = [sys.executable, f"bench/{name}.py", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)


def test_benchmark_runs_and_reports_ratios() -> None:
    result = _bench("plan_speed", "--patients", "40", "--cli-runs", "1")
    assert "plan time: median" in result.stdout, result.stderr
    assert "ratio, median plan / knowledge base load" in result.stdout
    assert "ratio, CLI cold start / bare python" in result.stdout


def test_web_load_benchmark_runs() -> None:
    result = _bench("web_load", "--clients", "4", "--requests", "8", "--server-workers", "2")
    assert "ratio, plan endpoint / trivial endpoint throughput" in result.stdout, result.stderr
    errors = re.findall(r"errors (\d+)", result.stdout)
    assert len(errors) == 6 and set(errors) == {"0"}, result.stdout  # 3 endpoints, 3 paced runs
    assert "ms CPU/request" in result.stdout
    assert result.stdout.count("of the plan endpoint's throughput") == 3  # the paced runs
    # Each saturated endpoint's connections, traced to the two server processes, add up to the clients.
    splits = re.findall(r"by server process: (.*)", result.stdout)
    assert len(splits) == 3, result.stdout
    for split in splits:
        assert sum(int(count) for count in re.findall(r"(\d+) connections", split)) == 4, split


def test_sign_off_list_benchmark_runs() -> None:
    result = _bench("sign_off_list", "--versions", "40", "--postgres-url", "")
    assert result.returncode == 0, result.stderr
    assert "[sqlite] stored 40 signed versions" in result.stdout, result.stdout
    counted = re.search(r"\[sqlite\] baseline, reading every signed version's edits \((\d+)\)", result.stdout)
    assert counted and int(counted.group(1)) == 40, result.stdout
    assert re.search(r"\[sqlite\] sign-off list, all: [\d.]+ ms for \d+ changes; ratio [\d.]+", result.stdout)


def test_records_scale_benchmark_runs() -> None:
    result = _bench("records_scale", "--patients", "30", "--workers", "2", "--postgres-url", "")
    assert "[sqlite] due:" in result.stdout and "[sqlite] recheck (2 workers)" in result.stdout, result.stderr
