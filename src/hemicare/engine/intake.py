"""Read an assessment from JSON or YAML text and validate it, reporting every problem by field path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from hemicare.engine.assessment import CODE_PATTERN, CODE_WORDS, Assessment, consistency_problems
from hemicare.engine.errors import QUOTED_MAX, FieldProblem, InputError
from hemicare.engine.rules import model_of

M = TypeVar("M", bound=BaseModel)


class _AliasRefused(yaml.YAMLError):
    """A YAML alias (``*name``) in a patient file."""

    def __init__(self, anchor: str, line: int) -> None:
        super().__init__(f"line {line} uses the alias *{anchor}: write the value out instead")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice instead of keeping the last one silently, and refuses
    aliases: a few lines of aliases to aliases make hundreds of millions of values (the plan command was still
    walking nine such lines when stopped after a minute)."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _AliasRefused(str(event.anchor), event.start_mark.line + 1)
        return super().compose_node(parent, index)


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key `{key}` is given twice", key_node.start_mark)
        seen.add(key)
    return dict(loader.construct_mapping(node, deep=deep))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


NUL_WORDS = "holds a NUL character (\\u0000 or %00), which is not text"


def nul_problems(data: Any, path: str = "") -> list[FieldProblem]:
    """A problem for each text in ``data`` (keys too) holding a NUL character: nothing means it in an assessment or a
    record, and PostgreSQL cannot store it (it failed the request with a server error)."""
    if isinstance(data, str):
        return [FieldProblem(path, NUL_WORDS)] if "\x00" in data else []
    problems: list[FieldProblem] = []
    if isinstance(data, dict):
        for key, value in data.items():
            inner = f"{path}.{key}" if path else str(key)
            problems += [FieldProblem(inner, NUL_WORDS)] if "\x00" in str(key) else nul_problems(value, inner)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            problems += nul_problems(value, f"{path}.{index}" if path else str(index))
    return problems


def parse_text(text: str, *, source: str = "input", json_only: bool = False) -> dict[str, Any]:
    """Parse JSON or YAML text into a mapping; a syntax error names the line."""
    if not text.strip():
        raise InputError([FieldProblem("", f"{source} is empty")])
    try:
        data = json.loads(text) if json_only else yaml.load(text, Loader=_UniqueKeyLoader)
    except json.JSONDecodeError as exc:
        raise InputError([FieldProblem("", f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}")]) from exc
    except _AliasRefused as exc:
        raise InputError([FieldProblem("", f"{source}: {exc}")]) from exc
    except yaml.YAMLError as exc:
        raise InputError([FieldProblem("", f"{source} is not valid YAML or JSON: {exc}")]) from exc
    except RecursionError as exc:  # either parser gives up on lists or mappings nested hundreds deep
        raise InputError([FieldProblem("", f"{source} nests lists or mappings too deeply to read")]) from exc
    if not isinstance(data, dict):
        raise InputError([FieldProblem("", f"{source} must hold a mapping of fields, not {type(data).__name__}")])
    if problems := nul_problems(data):
        raise InputError(problems)
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


# The error types of a value that is not of a union branch's type at all.
_TYPE_MISMATCH = frozenset({"model_type", "dict_type", "list_type", "model_attributes_type"})


def _is_label(part: str | int) -> bool:
    """A part of an error's location that pydantic adds (a union branch: ``list[...]``, a model's name), not the
    caller's."""
    return isinstance(part, str) and ("[" in part or part[:1].isupper())


def _walk(model: type[BaseModel], loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], type[BaseModel] | None]:
    """The location as the caller wrote it, and the model found there (None where it is not one model).

    Pydantic puts labels of its own into locations: union branches (``list[...]``, model names) and, inside a tagged
    union such as a session's ``details``, the tag (``details.mvd.result`` for the caller's ``details.result``).
    """
    cleaned: list[str | int] = []
    current: type[BaseModel] | None = model
    tags: dict[Any, type[BaseModel]] = {}  # the members of the tagged union just entered, by tag
    for part in loc:
        if _is_label(part):
            continue
        if tags:
            member, tags = tags.get(part), {}
            if member is not None:
                current = member
                continue
        cleaned.append(part)
        if current is None or isinstance(part, int) or part not in current.model_fields:
            continue
        field = current.model_fields[part]
        args = getattr(field.annotation, "__args__", ())
        if isinstance(field.discriminator, str):
            members = [member for member in map(model_of, args) if member is not None]
            tags = {member.model_fields[field.discriminator].default: member for member in members}
        inner = model_of(field.annotation)
        if inner is None:
            inner = next((model_of(arg) for arg in args if model_of(arg) is not None), None)
        current = inner
    return tuple(cleaned), current


def problems_of(exc: ValidationError, model: type[BaseModel]) -> list[FieldProblem]:
    """One readable problem per pydantic error, naming the field path and what was expected."""
    problems: list[FieldProblem] = []
    seen: set[tuple[str, str]] = set()
    # For an unknown field the walk stops at the model it was sent to: the fields that model allows.
    errors = [(err, *_walk(model, tuple(err["loc"]))) for err in exc.errors()]
    # A union's branches each report: a list of HFS-30 items with one bad item also fails to be the answers grouped
    # by subscale. Where one branch took the value's type (its errors lie inside the value, or are of the value but
    # not of its type), it is the branch the caller meant, and another's "should be a valid list" is noise.
    taken = {loc[:depth] for _, loc, _ in errors for depth in range(len(loc))}
    taken |= {loc for err, loc, _ in errors if err["type"] not in _TYPE_MISMATCH}
    for err, loc, inside in errors:
        if err["type"] in _TYPE_MISMATCH and loc in taken and any(_is_label(part) for part in err["loc"]):
            continue
        path = ".".join(str(part) for part in loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = sorted(inside.model_fields) if inside is not None else []
            message = "unknown field" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
        elif kind == "missing":
            message = "is required"
        elif kind in ("too_short", "too_long"):  # a list ("List should have at least 1 item after validation...")
            ctx = err["ctx"]
            bound = ctx["min_length"] if kind == "too_short" else ctx["max_length"]
            said = "needs at least" if kind == "too_short" else "takes at most"
            message = f"{said} {bound} {'entry' if bound == 1 else 'entries'}, got {ctx['actual_length']}"
        else:
            if kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == CODE_PATTERN:
                message = CODE_WORDS  # the words a clinician can act on, not the regular expression
            else:
                message = str(err["msg"]).removeprefix("Value error, ")
            shown = repr(err.get("input"))
            secret = any("password" in str(part) for part in loc)  # never echoed to a screen, a terminal or a log
            if len(shown) <= QUOTED_MAX and kind not in ("model_type", "dict_type") and not secret:
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
    """Validate a mapping into an :class:`Assessment`; raises :class:`InputError` with every problem. (A NUL character
    is refused where the text is read: files, JSON bodies and forms; a stored assessment passed that check.)"""
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

    The API's hot path. A document that does not validate, or holds a NUL character (only as the escape ``\\u0000``
    in JSON), is read again with ``parse`` and :func:`validate_assessment`, so every problem is reported exactly as
    for any other input.
    """
    if b"\\u0000" in raw:
        data = parse(raw)
        if problems := nul_problems(data):
            raise InputError(problems)
        return validate_assessment(data)
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
