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

    def __reduce__(self) -> tuple[type[InputError], tuple[list[FieldProblem]]]:
        # Raised in a worker process (a recheck's), it crosses back pickled: rebuilt from its problems, not its words.
        return InputError, (self.problems,)


class KnowledgeError(HemiCareError):
    """The knowledge base is invalid: a record, a reference or a rule case is wrong."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


QUOTED_MAX = 60  # the longest value a message quotes in full (intake's "(got ...)" leaves out a longer one)


def quoted(value: object) -> str:
    """A value as an error message quotes it: whole when short, else its start and its length, so that a garbled
    value (5,000 digits in an address, a pasted page in a box) does not become the message."""
    text = repr(value)
    if len(text) <= QUOTED_MAX:
        return text
    return f"{text[: QUOTED_MAX - 20]}... ({len(str(value)):,} characters)"
