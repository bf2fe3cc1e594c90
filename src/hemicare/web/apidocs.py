"""The API reference page: the OpenAPI document as a page of the app, drawn by the server.

A browsable reference usually comes from a script and stylesheet fetched from a CDN; a clinic's server may have no
internet, and HemiCare's pages allow only their own scripts (CSP). This page needs neither.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from typing import Any

from markupsafe import Markup

_REF_PREFIX = "#/components/schemas/"
_METHODS = ("get", "post", "put", "patch", "delete")


def type_of(schema: dict[str, Any]) -> Markup:
    """A schema's type in a few words, with links to the schemas it names."""
    if "$ref" in schema:
        name = escape(schema["$ref"].removeprefix(_REF_PREFIX))
        return Markup(f'<a href="#schema-{name}">{name}</a>')
    if "enum" in schema:
        return Markup(" | ".join(f"<code>{escape(json.dumps(value))}</code>" for value in schema["enum"]))
    if "const" in schema:
        return Markup(f"<code>{escape(json.dumps(schema['const']))}</code>")
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in schema:
            return Markup(" or ").join(type_of(option) for option in schema[combined])
    kind = schema.get("type", "any")
    if kind == "array":
        return Markup("list of ") + type_of(schema.get("items", {}))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return Markup("map of ") + type_of(schema["additionalProperties"])
    return Markup(escape(str(kind)))


def _limits(schema: dict[str, Any]) -> str:
    words = {
        "minimum": ">=",
        "maximum": "<=",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
        "minLength": "length >=",
        "maxLength": "length <=",
        "minItems": "items >=",
        "maxItems": "items <=",
    }
    shown = [f"{word} {schema[key]}" for key, word in words.items() if key in schema]
    if "default" in schema:
        shown.append(f"default {json.dumps(schema['default'])}")
    return ", ".join(shown)


@dataclass
class FieldRow:
    name: str
    type: Markup
    required: bool
    limits: str
    description: str


@dataclass
class Schema:
    name: str
    description: str
    kind: Markup
    fields: list[FieldRow] = field(default_factory=list)


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    description: str
    signed_in: bool
    parameters: list[FieldRow]
    body: Markup | None
    responses: list[tuple[str, str, Markup | None]]  # status, description, schema


def _content_type(content: dict[str, Any]) -> Markup | None:
    schema = content.get("application/json", {}).get("schema")
    return type_of(schema) if schema else None


def operations(document: dict[str, Any]) -> dict[str, list[Operation]]:
    """The document's operations grouped by their first tag, in the document's order."""
    grouped: dict[str, list[Operation]] = {}
    for path, methods in document["paths"].items():
        for method in _METHODS:
            if method not in methods:
                continue
            operation = methods[method]
            parameters = [
                FieldRow(
                    name=f"{parameter['name']} ({parameter['in']})",
                    type=type_of(parameter.get("schema", {})),
                    required=bool(parameter.get("required")),
                    limits=_limits(parameter.get("schema", {})),
                    description=parameter.get("description", ""),
                )
                for parameter in operation.get("parameters", [])
            ]
            body = operation.get("requestBody")
            grouped.setdefault((operation.get("tags") or ["other"])[0], []).append(
                Operation(
                    method=method.upper(),
                    path=path,
                    summary=operation.get("summary", ""),
                    description=operation.get("description", ""),
                    signed_in=bool(operation.get("security")),
                    parameters=parameters,
                    body=_content_type(body["content"]) if body else None,
                    responses=[
                        (status, answer.get("description", ""), _content_type(answer.get("content", {})))
                        for status, answer in operation["responses"].items()
                    ],
                )
            )
    return grouped


def schemas(document: dict[str, Any]) -> list[Schema]:
    """The document's schemas by name, each with its fields."""
    found = []
    for name, schema in sorted(document.get("components", {}).get("schemas", {}).items()):
        required = set(schema.get("required", []))
        found.append(
            Schema(
                name=name,
                description=schema.get("description", ""),
                kind=type_of({key: value for key, value in schema.items() if key != "properties"}),
                fields=[
                    FieldRow(
                        name=key,
                        type=type_of(value),
                        required=key in required,
                        limits=_limits(value),
                        description=value.get("description", ""),
                    )
                    for key, value in schema.get("properties", {}).items()
                ],
            )
        )
    return found
