"""Shared fixtures: the packaged knowledge base, the baseline patient, and a writable copy of the tree."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

from hemicare.engine import KnowledgeBase, load_default
from hemicare.engine.check import merge
from hemicare.engine.loader import default_root

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load_default()


@pytest.fixture
def baseline(kb: KnowledgeBase) -> dict[str, Any]:
    return copy.deepcopy(kb.baseline_patient)


@pytest.fixture
def patient(baseline: dict[str, Any]) -> Any:
    """Build a patient mapping: the baseline with a patch deep-merged on top."""

    def build(**patch: Any) -> dict[str, Any]:
        return merge(baseline, patch)

    return build


@pytest.fixture
def kb_tree(tmp_path: Path) -> Path:
    """A writable copy of the packaged knowledge tree, for tests that break it on purpose."""
    target = tmp_path / "knowledge"
    shutil.copytree(default_root(), target)
    return target
