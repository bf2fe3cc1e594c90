"""Reading a JSON request body: an empty or malformed body is the caller's mistake, named as field `body`.

Routes read their bodies themselves (so that every problem is reported the same way, field path and message), which
hides the body from FastAPI's OpenAPI document; ``json_input`` declares it there instead.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from pydantic import BaseModel

from hemicare.engine.intake import nul_problems
from hemicare.errors import FieldProblem, InputError
from hemicare.limits import CODE_MAX, REASON_MAX, RECORD_NUMBER_MAX


async def json_body(request: Request) -> Any:
    """The request's JSON body, parsed; an InputError (422) when it is empty or not JSON."""
    return decoded(await request.body())


# The parsed body as a route parameter: read on the event loop, so that the route itself can be a plain function,
# which FastAPI runs in its thread pool; a route that waits on the database must not hold up the event loop.
JsonBody = Annotated[Any, Depends(json_body)]


def decoded(raw: bytes) -> Any:
    """Parse a JSON body; an InputError (422) when it is empty or not JSON."""
    if not raw:
        raise InputError([FieldProblem("body", "is empty; send a JSON object")])
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError([FieldProblem("body", f"is not valid JSON: {exc.msg} at line {exc.lineno}")]) from exc
    except RecursionError as exc:  # the parser gives up on arrays or objects nested about a thousand deep
        raise InputError([FieldProblem("body", "nests arrays or objects too deeply to read")]) from exc
    if b"\\u0000" in raw and (problems := nul_problems(parsed)):  # JSON has NUL only as this escape
        raise InputError(problems)
    return parsed


# A record's number in an address (a diary entry, a session, a plan version): one outside the numbers HemiCare gives
# is refused naming the part of the address, before the database is asked (SQLite failed with a server error).
RecordNumber = Annotated[int, Path(ge=1, le=RECORD_NUMBER_MAX)]
# A patient's code in an address: one longer than a code can be is refused the same way (PostgreSQL refused it with
# a server error where the audit trail records who asked for what).
PatientCode = Annotated[str, Path(max_length=CODE_MAX)]
# Why a record is removed, in the address of the DELETE; its length and blanks are checked by the route's model
# (outcomes.schemas.Removal), as for the web form and the command line.
Why = Annotated[
    str,
    Query(
        description="Why it is removed (3-500 characters); required, kept in the audit trail",
        json_schema_extra={"minLength": 3, "maxLength": REASON_MAX},
    ),
]


# The models routes take as JSON input, by name, for the OpenAPI document's components.
INPUT_MODELS: dict[str, type[BaseModel]] = {}


def json_input(model: type[BaseModel], description: str) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` from its JSON body."""
    INPUT_MODELS[model.__name__] = model
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


class Problem(BaseModel):
    """One thing wrong with a request: where (a dotted field path; empty for the request as a whole) and what."""

    field: str
    message: str


class Problems(BaseModel):
    """The body of every 4xx answer of the API."""

    errors: list[Problem]
