"""The OpenAPI document tells a machine client everything it needs, and the reference page shows it without a CDN."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hemicare.engine.assessment import Assessment
from hemicare.web import create_app
from hemicare.web.payload import Problems

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from hemicare.db.engine import make_engine, upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'api.db'}"
    upgrade(make_engine(url))
    with TestClient(create_app(database_url=url), base_url="https://testserver") as test_client:
        yield test_client


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_reference_in_the_document_resolves(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    refs = set(_refs(document))
    assert refs
    assert {ref.removeprefix("#/components/schemas/") for ref in refs} <= set(schemas)
    assert "HTTPValidationError" not in schemas  # FastAPI's error shape, which HemiCare never sends


# POSTs that read no body: a new plan version is made from what is stored.
BODILESS = {"/api/v1/patients/{code}/plans"}


def test_every_post_declares_its_json_body(document: dict[str, Any]) -> None:
    posts = [(path, operation) for path, method, operation in _operations(document) if method == "post"]
    assert len(posts) >= 7
    assert {path for path, operation in posts if "requestBody" not in operation} == BODILESS
    for path, operation in posts:
        if path in BODILESS:
            continue
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert schema["$ref"].startswith("#/components/schemas/"), path
    plans = document["paths"]["/api/v1/plans"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assessment = document["components"]["schemas"][plans["$ref"].removeprefix("#/components/schemas/")]
    model = Assessment.model_json_schema()
    assert set(assessment["properties"]) == set(model["properties"])
    assert set(assessment.get("required", [])) == set(model.get("required", []))


def test_every_operation_says_what_it_does(document: dict[str, Any]) -> None:
    undescribed = [
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if len(operation.get("description", "")) < 20
    ]
    assert undescribed == [], "give these routes a docstring: " + ", ".join(undescribed)


def test_a_name_two_schemas_share_is_kept_apart(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["Severity"]["enum"] == ["critical", "warning", "info"]  # an alert's severity, in plans
    severity = Assessment.model_json_schema()["$defs"]["Severity"]  # the assessment's severity grades
    assert set(schemas["AssessmentSeverity"]["properties"]) == set(severity["properties"])
    # The assessment refers to its own grades under the new name, and nothing refers to them under the old one.
    assert "#/components/schemas/AssessmentSeverity" in set(_refs(schemas["Assessment"]))
    assert "#/components/schemas/Severity" not in set(_refs(schemas["Assessment"]))


def test_errors_and_sign_in_are_declared(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["token"]["scheme"] == "bearer" and schemes["session"]["in"] == "cookie"
    for path, _method, operation in _operations(document):
        if path in ("/api/v1/health", "/api/v1/ready"):  # for monitors: no sign-in
            assert "security" not in operation
            if path == "/api/v1/ready":
                assert operation["responses"]["503"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Problems"
                }
            continue
        assert operation["security"] == [{"token": []}, {"session": []}], path
        problems = operation["responses"]["4XX"]["content"]["application/json"]["schema"]
        assert problems == {"$ref": "#/components/schemas/Problems"}
        if "requestBody" in operation:
            assert operation["responses"]["422"]["content"]["application/json"]["schema"] == problems


def test_real_error_answers_have_the_declared_shape(client: TestClient) -> None:
    unauthorised = client.post("/api/v1/plans", json={})
    assert unauthorised.status_code == 401
    assert Problems.model_validate(unauthorised.json()).errors[0].message


def test_the_reference_page_shows_every_operation_and_schema_without_outside_files(
    client: TestClient, document: dict[str, Any]
) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.text
    for path, method, _operation in _operations(document):
        assert f'id="op-{method}-{path}"' in html, (method, path)
    for name in document["components"]["schemas"]:
        assert f'id="schema-{name}"' in html, name
    links = set(re.findall(r'href="#schema-([^"]+)"', html))
    assert links and links <= set(document["components"]["schemas"])
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?://', html), "a file from outside the app"
    assert "<script>" not in html  # no inline script: the CSP allows only the app's own files
