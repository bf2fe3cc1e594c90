"""Read an assessment from JSON or YAML text and validate it, reporting every problem by field path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from hemicare.engine.assessment import CODE_PATTERN, CODE_WORDS, Assessment, consistency_problems
from hemicare.engine.errors import FieldProblem, InputError
from hemicare.engine.rules import model_of

M = TypeVar("M", bound=BaseModel)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice instead of keeping the last one silently."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key `{key}` is given twice", key_node.start_mark)
        seen.add(key)
    return dict(loader.construct_mapping(node, deep=deep))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_text(text: str, *, source: str = "input", json_only: bool = False) -> dict[str, Any]:
    """Parse JSON or YAML text into a mapping; a syntax error names the line."""
    if not text.strip():
        raise InputError([FieldProblem("", f"{source} is empty")])
    try:
        data = json.loads(text) if json_only else yaml.load(text, Loader=_UniqueKeyLoader)
    except json.JSONDecodeError as exc:
        raise InputError([FieldProblem("", f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}")]) from exc
    except yaml.YAMLError as exc:
        raise InputError([FieldProblem("", f"{source} is not valid YAML or JSON: {exc}")]) from exc
    if not isinstance(data, dict):
        raise InputError([FieldProblem("", f"{source} must hold a mapping of fields, not {type(data).__name__}")])
    return data


def read_file(path: Path) -> dict[str, Any]:
    """Read a patient file: ``.json`` as JSON, anything else as YAML (which also reads JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError([FieldProblem("", f"file {path} does not exist")]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([FieldProblem("", f"cannot read {path}: {exc}")]) from exc
    return parse_text(text, source=str(path), json_only=path.suffix.lower() == ".json")


def _allowed_fields(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The field names allowed at ``loc`` inside ``model`` (for 'unknown field' messages)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None or isinstance(part, int) or part not in current.model_fields:
            continue
        annotation = current.model_fields[part].annotation
        inner = model_of(annotation)
        if inner is None:
            args = getattr(annotation, "__args__", ())
            inner = next((model_of(arg) for arg in args if model_of(arg) is not None), None)
        current = inner
    return sorted(current.model_fields) if current is not None else []


def _clean_loc(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop the union-branch labels pydantic puts into locations (``list[...]``, model names)."""
    return tuple(p for p in loc if isinstance(p, int) or not (("[" in p) or p[:1].isupper()))


def problems_of(exc: ValidationError, model: type[BaseModel]) -> list[FieldProblem]:
    """One readable problem per pydantic error, naming the field path and what was expected."""
    problems: list[FieldProblem] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors():
        loc = _clean_loc(tuple(err["loc"]))
        path = ".".join(str(part) for part in loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_fields(model, loc[:-1])
            message = "unknown field" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
        elif kind == "missing":
            message = "is required"
        else:
            if kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == CODE_PATTERN:
                message = CODE_WORDS  # the words a clinician can act on, not the regular expression
            else:
                message = str(err["msg"]).removeprefix("Value error, ")
            shown = repr(err.get("input"))
            secret = any("password" in str(part) for part in loc)  # never echoed to a screen, a terminal or a log
            if len(shown) <= 60 and kind not in ("model_type", "dict_type") and not secret:
                message = f"{message} (got {shown})"
        if (path, message) not in seen:
            seen.add((path, message))
            problems.append(FieldProblem(path, message))
    return problems


def validate_model(model: type[M], data: Any) -> M:
    """Validate any input model, turning pydantic errors into field problems (an InputError)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(problems_of(exc, model)) from exc


def validate_assessment(data: dict[str, Any]) -> Assessment:
    """Validate a mapping into an :class:`Assessment`; raises :class:`InputError` with every problem."""
    try:
        assessment = Assessment.model_validate(data)
    except ValidationError as exc:
        raise InputError(problems_of(exc, Assessment)) from exc
    problems = consistency_problems(assessment)
    if problems:
        raise InputError(problems)
    return assessment


def validate_assessment_json(raw: bytes, *, parse: Callable[[bytes], Any]) -> Assessment:
    """Validate a JSON document into an :class:`Assessment` in one pass (pydantic-core parses and validates).

    The API's hot path. A document that does not validate is read again with ``parse`` and
    :func:`validate_assessment`, so every problem is reported exactly as for any other input.
    """
    try:
        assessment = Assessment.model_validate_json(raw)
    except ValidationError:
        return validate_assessment(parse(raw))
    problems = consistency_problems(assessment)
    if problems:
        raise InputError(problems)
    return assessment


def load_assessment(path: Path) -> Assessment:
    """Read and validate a patient file."""
    return validate_assessment(read_file(path))
