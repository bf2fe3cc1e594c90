"""Reading a JSON request body: an empty or malformed body is the caller's mistake, named as field `body`."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from hemicare.errors import FieldProblem, InputError


async def json_body(request: Request) -> Any:
    """The request's JSON body, parsed; an InputError (422) when it is empty or not JSON."""
    return decoded(await request.body())


def decoded(raw: bytes) -> Any:
    """Parse a JSON body; an InputError (422) when it is empty or not JSON."""
    if not raw:
        raise InputError([FieldProblem("body", "is empty; send a JSON object")])
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError([FieldProblem("body", f"is not valid JSON: {exc.msg} at line {exc.lineno}")]) from exc
