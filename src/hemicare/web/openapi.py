"""The API's OpenAPI document, completed where FastAPI cannot see: request bodies, errors and sign-in.

FastAPI documents what a route declares in its signature. HemiCare's routes read their JSON bodies themselves (see
``payload.json_input``), answer every 4xx as ``{"errors": [{"field", "message"}]}`` rather than FastAPI's own
validation shape, and take the caller from a bearer token or a session cookie. This module adds those to the
generated document, so that a machine client can work from it alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from hemicare.web.auth import COOKIE, api_user
from hemicare.web.payload import INPUT_MODELS, Problems

_REF = "#/components/schemas/{model}"


def _problems(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=Problems.__name__)}}},
    }


def _add_schemas(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    """Add ``model``'s schema and those it refers to. A name already taken by a different schema (the assessment's
    ``Severity`` grades beside the plan's ``Severity`` of an alert) is prefixed with the model's name."""
    schema = model.model_json_schema(ref_template="#/$defs/{model}", mode="validation")
    definitions = {**schema.pop("$defs", {}), model.__name__: schema}
    final = {
        name: name if schemas.get(name, definition) == definition else f"{model.__name__}{name}"
        for name, definition in definitions.items()
    }

    def retarget(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: _REF.format(model=final[value.removeprefix("#/$defs/")]) if key == "$ref" else retarget(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [retarget(item) for item in node]
        return node

    for name, definition in definitions.items():
        renamed = final[name]
        if renamed in schemas and schemas[renamed] != retarget(definition):
            raise RuntimeError(f"two different schemas are named {renamed!r} in the OpenAPI document")
        schemas[renamed] = retarget(definition)


def _signed_in(route: APIRoute) -> bool:
    return any(dependency.call is api_user for dependency in route.dependant.dependencies)


def api_document(app: FastAPI, *, routers: Sequence[tuple[str, APIRouter]]) -> dict[str, Any]:
    """The OpenAPI document of ``app`` with input bodies, the error shape and how callers sign in.

    ``routers`` are the API's routers with the prefix each is mounted under; their routes that take the API user are
    marked as needing a token or a signed-in browser.
    """
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    models: list[type[BaseModel]] = [*INPUT_MODELS.values(), Problems]
    for model in models:
        _add_schemas(schemas, model)
    document["components"]["securitySchemes"] = {
        "token": {"type": "http", "scheme": "bearer", "description": "An API token from `hemicare users token`"},
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": COOKIE,
            "description": "A signed-in browser; a request that changes something also sends its CSRF token in the "
            "X-CSRF-Token header",
        },
    }
    signed_in = {
        (prefix + route.path_format, method.lower())
        for prefix, router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and _signed_in(route)
        for method in route.methods or ()
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            responses.pop("422", None)  # FastAPI's own validation shape, which HemiCare never sends
            takes_input = "requestBody" in operation or any(p["in"] == "query" for p in operation.get("parameters", []))
            if takes_input:
                responses["422"] = _problems("Invalid input: each problem with its field path and message")
            if (path, method) in signed_in:
                operation["security"] = [{"token": []}, {"session": []}]
                responses["4XX"] = _problems(
                    "The caller's mistake: not signed in (401), not allowed (403), not found (404), stale edit (409)"
                )
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document
