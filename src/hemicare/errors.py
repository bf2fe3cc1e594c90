"""Errors of the care-records layer, beside the engine's input and knowledge errors."""

from __future__ import annotations

from hemicare.engine.errors import FieldProblem, HemiCareError, InputError, KnowledgeError, quoted

__all__ = [
    "ConflictError",
    "FieldProblem",
    "ForbiddenError",
    "HemiCareError",
    "InputError",
    "KnowledgeError",
    "NotFoundError",
    "quoted",
]


class NotFoundError(HemiCareError):
    """The record asked for does not exist."""


class ConflictError(HemiCareError):
    """The record changed since it was read (a stale edit), or the change clashes with another record."""


class ForbiddenError(HemiCareError):
    """The user's role does not allow this action."""
