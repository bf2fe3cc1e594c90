"""The clinical engine: knowledge base, assessment, triage, scores and plan. No web, no database."""

from __future__ import annotations

from hemicare.engine.assessment import Assessment
from hemicare.engine.errors import FieldProblem, HemiCareError, InputError, KnowledgeError
from hemicare.engine.intake import load_assessment, validate_assessment
from hemicare.engine.loader import KnowledgeBase, load, load_default
from hemicare.engine.plan import Plan
from hemicare.engine.planner import build_plan
from hemicare.engine.render import render_text

__all__ = [
    "Assessment",
    "FieldProblem",
    "HemiCareError",
    "InputError",
    "KnowledgeBase",
    "KnowledgeError",
    "Plan",
    "build_plan",
    "load",
    "load_assessment",
    "load_default",
    "render_text",
    "validate_assessment",
]
