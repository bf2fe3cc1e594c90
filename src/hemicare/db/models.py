"""Every table, imported in one place so that migrations see the whole schema."""

from __future__ import annotations

from hemicare.assessments.models import StoredAssessment
from hemicare.audit.models import AuditEntry
from hemicare.db.base import Base
from hemicare.outcomes.models import DiaryEntry, QuestionnaireAnswer, ScaleGrade, StatedPreferences
from hemicare.patients.models import Patient
from hemicare.plans.models import PlanVersion
from hemicare.recalls.models import RecallClosure
from hemicare.sessions.models import TreatmentSession
from hemicare.users.models import ApiToken, SentForm, SignInFailure, User, WebSession

metadata = Base.metadata

__all__ = [
    "ApiToken",
    "AuditEntry",
    "DiaryEntry",
    "Patient",
    "PlanVersion",
    "QuestionnaireAnswer",
    "RecallClosure",
    "ScaleGrade",
    "SentForm",
    "SignInFailure",
    "StatedPreferences",
    "StoredAssessment",
    "TreatmentSession",
    "User",
    "WebSession",
    "metadata",
]
