"""The `hemicare` command line."""

from __future__ import annotations

import datetime as dt
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from hemicare import __version__, commands
from hemicare.engine import (
    InputError,
    KnowledgeError,
    build_plan,
    load,
    load_assessment,
    load_default,
    render_text,
)
from hemicare.engine.assessment import Assessment
from hemicare.engine.check import run_all, split_items
from hemicare.engine.facemap import face_map_svg
from hemicare.engine.loader import default_root
from hemicare.engine.plan import Plan
from hemicare.engine.render import render_decision_aid
from hemicare.engine.toxin import ToxinPlan
from hemicare.errors import FieldProblem, HemiCareError

app = typer.Typer(help="HemiCare: care planning for hemifacial spasm.", no_args_is_help=True, add_completion=False)
knowledge_app = typer.Typer(help="Inspect and check the knowledge base.", no_args_is_help=True)
app.add_typer(knowledge_app, name="knowledge")

INPUT_ERROR = 2


class PlanFormat(StrEnum):
    JSON = "json"
    TEXT = "text"
    DECISION_AID = "decision-aid"


class SchemaName(StrEnum):
    ASSESSMENT = "assessment"
    PLAN = "plan"


def _fail_input(exc: InputError) -> typer.Exit:
    for problem in exc.problems:
        typer.echo(f"error: {problem}", err=True)
    return typer.Exit(INPUT_ERROR)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hemicare {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """HemiCare supports clinicians' decisions; it never replaces them."""


@app.command()
def plan(
    patient_file: Annotated[Path, typer.Argument(help="Assessment in YAML or JSON.")],
    output_format: Annotated[PlanFormat, typer.Option("--format", help="Output format.")] = PlanFormat.JSON,
    face_map: Annotated[
        Path | None, typer.Option("--face-map", help="Also write the toxin dose plan as an SVG face map here.")
    ] = None,
    save: Annotated[
        bool, typer.Option("--save", help="Store the assessment and the plan for the patient the file names.")
    ] = False,
    database: commands.DbOption = None,
    by: commands.ByOption = None,
) -> None:
    """Print the plan for one patient's assessment."""
    try:
        assessment = load_assessment(patient_file)
    except InputError as exc:
        raise _fail_input(exc) from exc
    if save:
        try:
            typer.echo(commands.save_plan(patient_file, database, by), err=True)
        except HemiCareError as exc:
            raise commands.fail(exc) from exc
    kb = load_default()
    result = build_plan(assessment, kb)
    if face_map is not None:
        toxin = next(r for r in result.recommendations if r.id == "botulinum_toxin")
        svg = face_map_svg(ToxinPlan.model_validate(toxin.details["programme"]), patient_id=result.patient_id)
        try:
            face_map.write_text(svg, encoding="utf-8")
        except OSError as exc:
            typer.echo(f"error: option `--face-map`: cannot write {face_map}: {exc.strerror}", err=True)
            raise typer.Exit(INPUT_ERROR) from exc
    if output_format is PlanFormat.TEXT:
        typer.echo(render_text(result, names=kb.treatment_names()), nl=False)
    elif output_format is PlanFormat.DECISION_AID:
        typer.echo(render_decision_aid(result), nl=False)
    else:
        typer.echo(result.model_dump_json(indent=2))


@app.command()
def schema(name: Annotated[SchemaName, typer.Argument(help="Which schema.")] = SchemaName.ASSESSMENT) -> None:
    """Print the JSON Schema of the assessment input or of the plan output."""
    model = Assessment if name is SchemaName.ASSESSMENT else Plan
    typer.echo(json.dumps(model.model_json_schema(), indent=2, ensure_ascii=False))


@knowledge_app.command("check")
def knowledge_check(
    root: Annotated[Path | None, typer.Option(help="Knowledge tree to check (default: the packaged one).")] = None,
) -> None:
    """Validate every record and run every rule's cases."""
    if root is not None and not root.is_dir():  # bad input (exit 2), not an invalid knowledge base (exit 1)
        raise commands.fail(InputError([FieldProblem("--root", f"{root} is not a folder")]))
    try:
        kb = load(root)
    except KnowledgeError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        typer.echo(f"knowledge base invalid: {len(exc.problems)} problem(s)", err=True)
        raise typer.Exit(1) from exc
    split = split_items(root or default_root())
    for problem in split:
        typer.echo(f"error: {problem}", err=True)
    results = run_all(kb)
    failed = [r for r in results if not r.passed]
    for result in failed:
        typer.echo(f"FAIL {result.rule} / {result.case}: {result.detail}", err=True)
    records = sum(
        len(items)
        for items in (
            kb.references,
            kb.conditions,
            kb.scales,
            kb.treatments,
            kb.drugs,
            kb.acupoints,
            kb.herbs,
        )
    )
    typer.echo(
        f"knowledge base {kb.version}: {records} records, {len(kb.rules())} rules, "
        f"{len(results) - len(failed)} of {len(results)} rule cases passed"
    )
    if failed or split:
        raise typer.Exit(1)


commands.register(app)
commands.register_web(app)


@app.command()
def demo(
    patients: Annotated[int, typer.Option(help="Synthetic patients to add besides the bundled examples.")] = 24,
    database: commands.DbOption = None,
) -> None:
    """Create (or migrate) the database and load a realistic demo clinic into it."""
    from hemicare.db import engine as db
    from hemicare.demo import load_demo

    if patients < 0 or patients > 100_000:
        typer.echo("error: option `--patients`: must be between 0 and 100000", err=True)
        raise typer.Exit(commands.EXIT_INPUT)
    examples = Path(__file__).resolve().parent.parent.parent / "examples"
    total = patients + len(list(examples.glob("*.*")))
    with commands.engine_for(database) as engine:
        db.upgrade(engine)
        try:
            with (
                db.session_factory(engine)() as session,
                session.begin(),
                typer.progressbar(length=total, label="demo clinic") as bar,
            ):
                count = load_demo(
                    session,
                    kb=load_default(),
                    examples=examples,
                    patients=patients,
                    today=dt.date.today(),
                    progress=bar.update,
                )
        except HemiCareError as exc:
            raise commands.fail(exc) from exc
    typer.echo(f"demo clinic loaded: {count} patients")


def main() -> None:
    """Console entry point."""
    app(prog_name="hemicare")


if __name__ == "__main__":
    main()
    sys.exit(0)
