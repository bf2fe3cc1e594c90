"""Exceptions raised by the clinical engine."""

from __future__ import annotations

from dataclasses import dataclass


class HemiCareError(Exception):
    """Base class of every error HemiCare raises on purpose."""


@dataclass(frozen=True)
class FieldProblem:
    """One problem with one field of an input: where it is and what was expected."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"field `{self.path}`: {self.message}" if self.path else self.message


class InputError(HemiCareError):
    """An input (assessment file, form, request) is malformed or invalid; nothing was processed."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


class KnowledgeError(HemiCareError):
    """The knowledge base is invalid: a record, a reference or a rule case is wrong."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
