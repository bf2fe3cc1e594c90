"""plan_json writes a plan exactly as pydantic does, and the plan models stay plain enough for it to."""

from __future__ import annotations

import datetime as dt
import typing
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_core import to_json

from hemicare.engine import build_plan, load_default, validate_assessment
from hemicare.engine.intake import read_file
from hemicare.engine.plan import Out, Plan, _fields, plan_json
from hemicare.synthetic import cohort

from .conftest import EXAMPLES

KB = load_default()
TODAY = dt.date(2026, 11, 26)


def _models(root: type[BaseModel]) -> set[type[BaseModel]]:
    """Every model class a plan can hold, found through the field annotations."""
    found: set[type[BaseModel]] = set()
    stack: list[Any] = [root]
    while stack:
        kind = stack.pop()
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            if kind in found:
                continue
            found.add(kind)
            stack.extend(field.annotation for field in kind.model_fields.values())
        else:
            stack.extend(typing.get_args(kind))
    return found


def test_every_plan_model_is_plain_data() -> None:
    """What plan_json relies on: it writes each model's own fields in order, so no model may rename, hide, compute or
    custom-serialise a field, and every one is an Out (the models plan_json knows)."""
    models = _models(Plan)
    assert len(models) >= 12, sorted(m.__name__ for m in models)
    for model in models:
        assert issubclass(model, Out), f"{model.__name__} is not an Out model"
        assert not model.model_computed_fields, f"{model.__name__} has computed fields"
        decorators = model.__pydantic_decorators__
        assert not decorators.field_serializers and not decorators.model_serializers, model.__name__
        assert model.model_config.get("extra") == "forbid", model.__name__
        for name, field in model.model_fields.items():
            assert field.alias is None and field.serialization_alias is None, f"{model.__name__}.{name} has an alias"
            assert not field.exclude, f"{model.__name__}.{name} is excluded from dumps"


def test_plans_are_written_byte_for_byte_as_pydantic_writes_them() -> None:
    examples = [read_file(path) for path in sorted(EXAMPLES.iterdir())]
    assert len(examples) >= 3
    for data in [*examples, *cohort(400, KB, today=TODAY)]:
        plan = build_plan(validate_assessment(data), KB, today=TODAY)
        assert plan_json(plan) == to_json(plan), data.get("id")


def test_a_value_the_fast_writer_cannot_write_falls_back_to_pydantic() -> None:
    plan = build_plan(validate_assessment(read_file(EXAMPLES / "demo-001.yaml")), KB, today=TODAY)
    plan.recommendations[0].details["odd"] = {3, 1, 2}  # a set: pydantic writes a list, orjson refuses
    written = plan_json(plan)
    assert written == to_json(plan)
    assert b'"odd":[' in written


def test_something_that_is_not_a_plan_model_is_refused_not_guessed() -> None:
    class Stranger(BaseModel):
        x: int = 1

    plan = build_plan(validate_assessment(read_file(EXAMPLES / "demo-001.yaml")), KB, today=TODAY)
    plan.recommendations[0].details["stranger"] = Stranger()
    # pydantic itself decides how a foreign model is written; the fast writer never guesses at it.
    assert plan_json(plan) == to_json(plan)
    with pytest.raises(TypeError, match="Stranger is not part of the plan contract"):
        _fields(Stranger())


def test_a_part_every_plan_shares_is_written_once_and_reused() -> None:
    from hemicare.engine import plan as plan_module

    first, second = (
        build_plan(validate_assessment(read_file(EXAMPLES / name)), KB, today=TODAY)
        for name in ("demo-001.yaml", "demo-002-red-flags.yaml")
    )
    evidence = first.recommendations[0].evidence  # made once per knowledge record, shared by every plan citing it
    assert any(rec.evidence is evidence for rec in second.recommendations)
    assert plan_json(first) == to_json(first)
    cached = plan_module._FRAGMENTS[id(evidence)]
    assert cached[0] is evidence and cached[1] is not None
    assert plan_json(second) == to_json(second)
    assert plan_module._FRAGMENTS[id(evidence)][1] is cached[1], "written once, then reused"
    # A plan's own parts are never cached: they differ from plan to plan.
    assert id(first.recommendations[0]) not in plan_module._FRAGMENTS
