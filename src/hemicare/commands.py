"""The care-records commands: database, patients, plans, sessions, outcomes, recalls, export, audit, demo.

Exit codes: 0 done; 1 internal or knowledge-base error; 2 bad input (a field, a file, an unknown patient); 3 a
conflict (someone else changed the record); 4 not allowed for the role. Nothing is half-written: each command is
one transaction.

The database layer (SQLAlchemy, Alembic and the services over them) is imported inside the commands that use it, not
here: `hemicare plan` and the knowledge commands never touch a database and start in half the time without it.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel

from hemicare.engine import load_default
from hemicare.engine.intake import read_file, validate_assessment, validate_model
from hemicare.errors import (
    ConflictError,
    FieldProblem,
    ForbiddenError,
    HemiCareError,
    InputError,
    NotFoundError,
    quoted,
)
from hemicare.limits import ACTOR_MAX, CODE_MAX, RECORD_NUMBER_MAX
from hemicare.outcomes.schemas import DiaryCreate, GradesCreate, QuestionnaireCreate
from hemicare.patients.schemas import PatientCreate, PatientRead, PatientUpdate
from hemicare.plans.schemas import PlanEdit, parts_of
from hemicare.sessions.schemas import SessionCreate

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import Session

M = TypeVar("M", bound=BaseModel)

DbOption = Annotated[
    str | None,
    typer.Option("--db", envvar="HEMICARE_DATABASE_URL", help="Database URL (default: sqlite:///hemicare.db)."),
]
ByOption = Annotated[
    str | None, typer.Option("--by", envvar="HEMICARE_USER", help="Who is acting (recorded in the audit trail).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
ReasonOption = Annotated[str, typer.Option(help="Why (recorded in the audit trail).")]

EXIT_INPUT, EXIT_CONFLICT, EXIT_FORBIDDEN = 2, 3, 4


def actor(by: str | None) -> str:
    """The acting user: --by, $HEMICARE_USER, or the operating-system user."""
    if by is not None and not 1 <= len(by.strip()) <= ACTOR_MAX:
        raise InputError([FieldProblem("--by", f"name who is acting in 1 to {ACTOR_MAX} characters")])
    return by or f"cli:{getpass.getuser()}"


def fail(exc: HemiCareError) -> typer.Exit:
    """Print an error the way a user can act on it and choose the exit code."""
    if isinstance(exc, InputError):
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        return typer.Exit(EXIT_INPUT)
    typer.echo(f"error: {exc}", err=True)
    if isinstance(exc, NotFoundError):
        return typer.Exit(EXIT_INPUT)
    if isinstance(exc, ConflictError):
        return typer.Exit(EXIT_CONFLICT)
    if isinstance(exc, ForbiddenError):
        return typer.Exit(EXIT_FORBIDDEN)
    return typer.Exit(1)


validate = validate_model


def open_engine(url: str | None) -> Engine:
    """An engine for ``--db``; a value HemiCare cannot use as a database URL is bad input, not a crash."""
    from hemicare.db import engine as db

    if url is not None and not url.strip():
        raise InputError([FieldProblem("--db", f"is empty; leave it out to use {db.DEFAULT_URL}")])
    try:
        return db.make_engine(url)
    except db.DatabaseUrlError as exc:
        raise InputError([FieldProblem("--db", str(exc))]) from exc


def _cannot_open(exc: OperationalError) -> InputError:
    return InputError([FieldProblem("--db", f"cannot open the database: {exc.orig}")])


def _engine(url: str | None) -> Engine:
    from alembic.script import ScriptDirectory
    from sqlalchemy.exc import OperationalError

    from hemicare.db import engine as db

    engine = open_engine(url)
    head = ScriptDirectory.from_config(db._config(engine)).get_current_head()
    try:
        current = db.current_revision(engine)
    except OperationalError as exc:
        engine.dispose()
        raise _cannot_open(exc) from exc
    if current != head:
        engine.dispose()
        raise InputError(
            [
                FieldProblem(
                    "--db", f"database is at revision {current or 'none'}, not {head}: run `hemicare db upgrade`"
                )
            ]
        )
    return engine


@contextmanager
def unit_of_work(url: str | None) -> Iterator[Session]:
    """One transaction: everything in it commits together, or nothing does."""
    from hemicare.db import engine as db

    engine = _engine(url)
    try:
        with db.session_factory(engine)() as session, session.begin():
            yield session
    finally:
        engine.dispose()


def run(action: Callable[[], None]) -> None:
    """Run a command body, mapping HemiCare errors to messages and exit codes."""
    try:
        action()
    except HemiCareError as exc:
        raise fail(exc) from exc


def record_number(option: str, number: int | None) -> None:
    """Refuse a number no record can have (HemiCare numbers its records from 1, in 32 bits): SQLite cannot even look
    up one beyond 64 bits, which ended the command in a traceback."""
    if number is not None and not 1 <= number <= RECORD_NUMBER_MAX:
        raise InputError([FieldProblem(option, f"{number} is not a record number (1 to {RECORD_NUMBER_MAX})")])


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


# --- db ---------------------------------------------------------------------------------------------------------

db_app = typer.Typer(help="Create, migrate and back up the database.", no_args_is_help=True)


@contextmanager
def engine_for(url: str | None) -> Iterator[Engine]:
    """An engine for a db command; an unknown revision or a bad URL is bad input, not a crash."""
    from alembic.util import CommandError
    from sqlalchemy.exc import OperationalError

    try:
        engine = open_engine(url)
    except InputError as exc:
        raise fail(exc) from exc
    try:
        yield engine
    except CommandError as exc:
        raise fail(InputError([FieldProblem("--revision", str(exc))])) from exc
    except OperationalError as exc:
        raise fail(_cannot_open(exc)) from exc
    finally:
        engine.dispose()


def known_revision(revision: str) -> str:
    """``revision`` as the db commands take it: head, base, a migration's number, or a step such as -1. Alembic fails
    an assertion, not with an error, on some other text (an empty one, 0001-01-01, head+5)."""
    from hemicare.db import engine as db

    if revision in ("head", "base") or revision in db.revisions() or re.fullmatch(r"[+-][0-9]{1,4}", revision):
        return revision
    said = f"{quoted(revision)} is not a revision: give head, base, a migration's number (0001 to {db.head_revision()})"
    raise fail(InputError([FieldProblem("--revision", f"{said} or a step such as -1")]))


@db_app.command("upgrade")
def db_upgrade(database: DbOption = None, revision: str = "head") -> None:
    """Migrate the database up (creating it if needed)."""
    from hemicare.db import engine as db

    revision = known_revision(revision)
    with engine_for(database) as engine:
        db.upgrade(engine, revision)
        typer.echo(f"database at revision {db.current_revision(engine)}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Option(help="Target revision; `base` removes every table.")],
    database: DbOption = None,
) -> None:
    """Migrate the database down."""
    from hemicare.db import engine as db

    revision = known_revision(revision)
    with engine_for(database) as engine:
        db.downgrade(engine, revision)
        typer.echo(f"database at revision {db.current_revision(engine) or 'base'}")


@db_app.command("current")
def db_current(database: DbOption = None) -> None:
    """Print the database's revision."""
    from hemicare.db import engine as db

    with engine_for(database) as engine:
        typer.echo(db.current_revision(engine) or "base (empty)")


@db_app.command("backup")
def db_backup(target: Annotated[Path, typer.Argument(help="The new file to write")], database: DbOption = None) -> None:
    """Copy the SQLite database to a new file while HemiCare runs, then check the copy (PostgreSQL: use pg_dump)."""
    from sqlalchemy import func, select, text

    from hemicare.audit import service as audit_service
    from hemicare.db import engine as db
    from hemicare.patients.models import Patient

    url = db.database_url(database)
    if not url.startswith("sqlite:///"):
        raise fail(InputError([FieldProblem("--db", "only a SQLite database is copied this way; use pg_dump")]))
    source = Path(url.removeprefix("sqlite:///"))
    if not source.is_file():
        raise fail(InputError([FieldProblem("--db", f"no database at {source}")]))
    if target.exists():
        raise fail(InputError([FieldProblem("TARGET", f"{target} exists already; a backup is written to a new file")]))
    if not target.parent.is_dir():
        raise fail(InputError([FieldProblem("TARGET", f"no folder {target.parent}")]))
    with engine_for(database) as engine:
        db.backup_sqlite(engine, target)
    with engine_for(f"sqlite:///{target}") as copy, db.session_factory(copy)() as session:
        integrity = session.execute(text("PRAGMA integrity_check")).scalar()
        patients = session.scalar(select(func.count(Patient.id)))
        trail = audit_service.verify(session)
    if integrity != "ok" or not trail.ok:
        found = "; ".join([*([] if integrity == "ok" else [str(integrity)]), *trail.problems])
        typer.echo(f"error: the copy at {target} failed its check ({found}); do not rely on it", err=True)
        raise typer.Exit(1)
    typer.echo(f"backed up to {target}: {patients} patients; audit trail intact ({trail.checked} entries)")


# --- patients ---------------------------------------------------------------------------------------------------

patients_app = typer.Typer(help="Patient records.", no_args_is_help=True)


@patients_app.command("add")
def patients_add(
    code: Annotated[str, typer.Option(help="The clinic's patient identifier (as in assessments).")],
    name: Annotated[str, typer.Option()],
    sex: Annotated[str, typer.Option(help="female, male or other")],
    birth_year: Annotated[int | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Add a patient."""
    from hemicare.patients import service as patient_service

    def body() -> None:
        data = validate(
            PatientCreate, {"code": code, "name": name, "sex": sex, "birth_year": birth_year, "phone": phone}
        )
        with unit_of_work(database) as session:
            patient = patient_service.create(session, data=data, actor=actor(by))
        typer.echo(f"added patient {patient.code}")

    run(body)


@patients_app.command("list")
def patients_list(database: DbOption = None, as_json: JsonOption = False) -> None:
    """List patients."""
    from hemicare.patients import service as patient_service

    def body() -> None:
        with unit_of_work(database) as session:
            rows = [PatientRead.model_validate(p).model_dump(mode="json") for p in patient_service.list_all(session)]
        if as_json:
            _print(rows)
        for row in [] if as_json else rows:
            who = patient_service.who(birth_year=row["birth_year"], sex=row["sex"])
            typer.echo(f"{row['code']:<20} {row['name']:<30} {who:<24} record v{row['version']}")

    run(body)


@patients_app.command("show")
def patients_show(code: str, database: DbOption = None, as_json: JsonOption = False, by: ByOption = None) -> None:
    """Show a patient with the latest assessment, plan, outcomes and what is due."""
    from hemicare.assessments import service as assessment_service
    from hemicare.audit import service as audit_service
    from hemicare.db.base import local_day
    from hemicare.engine.render import describe_assessment
    from hemicare.outcomes import service as outcome_service
    from hemicare.patients import service as patient_service
    from hemicare.plans import service as plan_service
    from hemicare.recalls import service as recall_service
    from hemicare.sessions import service as session_service

    def body() -> None:
        kb = load_default()
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            plan = plan_service.latest(session, patient=patient)
            since = session_service.recorded_since(session, patient=patient)
            stored, assessment = assessment_service.latest_read(session, patient=patient)
            outcomes = outcome_service.summary(session, patient=patient, kb=kb)
            due, closed = recall_service.due_and_closed(
                session, kb=kb, today=dt.date.today(), horizon_days=60, patient_id=patient.id
            )
            audit_service.record(session, actor=actor(by), action="read", entity="patient", entity_id=code)
            stated = outcome_service.stated_preferences(session, patient=patient)
            said = outcome_service.stated_against(stated, stored.data if stored else None)
            data: dict[str, Any] = {
                "patient": PatientRead.model_validate(patient).model_dump(mode="json"),
                "assessment": None
                if stored is None
                else {
                    "assessed_on": stored.assessed_on.isoformat(),
                    "in_words": describe_assessment(assessment) if assessment else [],
                },
                "plan": None
                if plan is None
                else {
                    "version": plan.number,
                    "kind": plan.kind,
                    "signed_by": plan.signed_by,
                    **plan.summary,
                    "recorded_since": since,
                },
                "outcomes": outcomes.model_dump(mode="json"),
                "stated_preferences": None
                if stated is None
                else {
                    "date": stated.date.isoformat(),
                    "answers": stated.answers,
                    "differ_from_the_assessment": [line.preference for line in said if line.differs],
                },
                "due": [d.model_dump(mode="json") for d in due],
                "closed_recalls": [c.model_dump(mode="json") for c in closed],
            }
        if as_json:
            _print(data)
            return
        info = data["patient"]
        who = patient_service.who(birth_year=info["birth_year"], sex=info["sex"])
        typer.echo(f"{info['code']}: {info['name']} ({who}), record v{info['version']}")
        if data["assessment"] is None:
            typer.echo("assessment: none yet")
        else:
            typer.echo(f"assessment of {data['assessment']['assessed_on']}:")
            for line in data["assessment"]["in_words"]:
                typer.echo(f"  {line}")
        if plan is None:
            typer.echo("plan: none yet")
        else:
            typer.echo(f"plan: version {plan.number} ({plan.kind})")
            for part in parts_of(plan.content):
                signed = plan.content.get("signoff", {}).get(part)
                if signed is None:
                    typer.echo(f"  {part}: awaiting sign-off")
                else:
                    typer.echo(f"  {part}: signed by {signed['by']} ({signed['role']}) on {local_day(signed['at'])}")
            for rec, status in plan.summary["statuses"].items():
                typer.echo(f"  {status:<16} {rec}")
            if since:
                typer.echo(f"  recorded since this plan was made: {'; '.join(since)}")
                typer.echo(f"  (the plan does not know of it: `hemicare plans new {code}` makes a version that does)")
        typer.echo(f"diary entries: {outcomes.diary_entries}; toxin sessions: {len(outcomes.toxin_sessions)}")
        if outcomes.procedures:
            typer.echo(outcomes.procedure_words())
        for name, change in outcomes.questionnaires.items():
            typer.echo(f"{name}: {change.first} -> {change.latest} ({change.response})")
        if stated is not None:
            words = "; ".join(line.words() for line in said)
            typer.echo(f"what the patient says matters to them ({stated.date.isoformat()}): {words}")
        for item in due:
            typer.echo(f"due {item.due.isoformat()}{' OVERDUE' if item.overdue else ''}: {item.what}")
        for held in closed:
            typer.echo(
                f"closed {held.closed_on.isoformat()} by {held.closed_by}: {held.item.what} ({held.reason}); "
                f"`hemicare recalls reopen {info['code']} --id {held.closure}` to reopen"
            )

    run(body)


@patients_app.command("update")
def patients_update(
    code: str,
    version: Annotated[int, typer.Option(help="The record version you read (stale edits are refused).")],
    reason: ReasonOption,
    name: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Change a patient's name or phone."""
    from hemicare.patients import service as patient_service

    def body() -> None:
        changes = {k: v for k, v in {"name": name, "phone": phone}.items() if v is not None}
        data = validate(PatientUpdate, changes)
        with unit_of_work(database) as session:
            patient = patient_service.update(
                session, code=code, expected_version=version, changes=data, actor=actor(by), reason=reason
            )
        typer.echo(f"updated patient {code}, now v{patient.version}")

    run(body)


# --- assessments and plans -------------------------------------------------------------------------------------


def save_plan(patient_file: Path, database: str | None, by: str | None) -> str:
    """Store the assessment in a file for the patient it names, and generate the next plan version."""
    from hemicare.patients import service as patient_service
    from hemicare.plans import service as plan_service

    assessment = validate_assessment(read_file(patient_file))
    with unit_of_work(database) as session:
        patient = patient_service.get(session, code=assessment.id)
        version = plan_service.assess(
            session, patient=patient, assessment=assessment, kb=load_default(), actor=actor(by), today=dt.date.today()
        )
    return f"saved assessment and plan version {version.number} for patient {assessment.id}"


plans_app = typer.Typer(help="Plan versions: new versions from the records, review and sign-off.", no_args_is_help=True)


def _edit(text: str, index: int) -> PlanEdit:
    target, _, rest = text.partition("=")
    status, _, reason = rest.partition(":")
    if not (target and status and reason):
        raise InputError([FieldProblem(f"--edit[{index}]", f"{quoted(text)} is not RECOMMENDATION=STATUS:REASON")])
    return validate(PlanEdit, {"recommendation": target, "status": status, "reason": reason})


@plans_app.command("sign")
def plans_sign(
    code: str,
    version: Annotated[int, typer.Option(help="The plan version you reviewed.")],
    role: Annotated[str, typer.Option(help="neurologist, neurosurgeon or tcm_practitioner")],
    edit: Annotated[list[str] | None, typer.Option(help="RECOMMENDATION=STATUS:REASON, repeatable")] = None,
    reason: Annotated[str | None, typer.Option()] = None,
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Review (change statuses with reasons) and sign your part of the latest plan: a new version."""
    from hemicare.patients import service as patient_service
    from hemicare.plans import service as plan_service

    def body() -> None:
        edits = [_edit(text, index) for index, text in enumerate(edit or [])]
        kb = load_default()
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            signed = plan_service.sign(
                session,
                patient=patient,
                expected_number=version,
                edits=edits,
                signer=actor(by),
                role=role,
                kb=kb,
                reason=reason,
            )
        typer.echo(f"signed plan version {signed.number} for patient {code} as {role}")
        names = kb.treatment_names()
        for item, line in plan_service.lifted_lines(signed):
            typer.echo(f"  {names.get(item, item)}: {line}")

    run(body)


@plans_app.command("new")
def plans_new(code: str, database: DbOption = None, by: ByOption = None) -> None:
    """Make a new plan version from the latest assessment and the sessions recorded since the last one was made (a
    toxin session, its effect and side effects, an operation's result; `patients show` lists them), to be signed."""
    from hemicare.patients import service as patient_service
    from hemicare.plans import service as plan_service

    def body() -> None:
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            made = plan_service.generate(
                session, patient=patient, kb=load_default(), actor=actor(by), today=dt.date.today(), via="records"
            )
        typer.echo(f"made plan version {made.number} for patient {code} from the latest assessment and the records")

    run(body)


@plans_app.command("overrides")
def plans_overrides(
    since: Annotated[str | None, typer.Option(help="Only sign-offs on or after this day (YYYY-MM-DD).")] = None,
    database: DbOption = None,
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """What clinicians changed at sign-off, by item and change, the most frequent first, with each reason: where
    HemiCare's proposals and the clinic's decisions part, for whoever keeps the knowledge base."""
    from hemicare.audit import service as audit_service
    from hemicare.plans import service as plan_service
    from hemicare.plans.schemas import OverrideGroupOut

    def body() -> None:
        start = plan_service.since_day(since, field="--since")
        with unit_of_work(database) as session:
            groups = plan_service.overrides(session, since=start)
            audit_service.record(
                session, actor=actor(by), action="read", entity="overrides", entity_id=f"since {start or 'start'}"
            )
        if as_json:
            _print([OverrideGroupOut.of(g).model_dump(mode="json", by_alias=True) for g in groups])
            return
        if not groups:
            typer.echo("no status was changed at sign-off" + (f" since {start}" if start else ""))
        names = load_default().treatment_names()
        for g in groups:
            times = len(g.overrides)
            typer.echo(
                f"{names.get(g.recommendation, g.recommendation)}: {g.before} -> {g.after}, {times} "
                f"time{'s' if times != 1 else ''} ({g.patients} patient{'s' if g.patients != 1 else ''})"
            )
            for o in g.overrides:
                typer.echo(f"  {o.on}  {o.patient} v{o.number}  {o.role}: {o.reason}")

    run(body)


@plans_app.command("show")
def plans_show(
    code: str, version: Annotated[int | None, typer.Option()] = None, database: DbOption = None, by: ByOption = None
) -> None:
    """Print a stored plan version (the latest by default) as JSON, its options side by side as its items' statuses
    say (`hemicare export` keeps versions as stored)."""
    from hemicare.audit import service as audit_service
    from hemicare.patients import service as patient_service
    from hemicare.plans import service as plan_service

    def body() -> None:
        record_number("--version", version)
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            if version is None:
                chosen = plan_service.latest(session, patient=patient)
                if chosen is None:
                    raise NotFoundError(f"patient {code!r} has no plan yet")
            else:
                chosen = plan_service.version(session, patient=patient, number=version)
            audit_service.record(
                session, actor=actor(by), action="read", entity="plan", entity_id=f"{code}/v{chosen.number}"
            )
            shown = plan_service.as_signed(chosen.content, load_default())
            _print({"number": chosen.number, "kind": chosen.kind, "edits": chosen.edits, **shown})

    run(body)


# --- sessions and outcomes ---------------------------------------------------------------------------------------

sessions_app = typer.Typer(help="Treatment sessions.", no_args_is_help=True)


@sessions_app.command("add")
def sessions_add(code: str, session_file: Path, database: DbOption = None, by: ByOption = None) -> None:
    """Record a treatment session from a YAML or JSON file (toxin, acupuncture, herbal, medicine, procedure or mvd)."""
    from hemicare.patients import service as patient_service
    from hemicare.sessions import service as session_service

    def body() -> None:
        data = validate(SessionCreate, read_file(session_file))
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            row = session_service.record(session, patient=patient, data=data, kb=load_default(), actor=actor(by))
        typer.echo(f"recorded {row.kind} session {row.id} for patient {code} on {row.date.isoformat()}")

    run(body)


@sessions_app.command("list")
def sessions_list(code: str, database: DbOption = None) -> None:
    """List a patient's sessions as JSON."""
    from hemicare.patients import service as patient_service
    from hemicare.sessions import service as session_service

    def body() -> None:
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            rows = session_service.list_for(session, patient=patient)
            _print([{"id": r.id, "kind": r.kind, "date": r.date, "clinician": r.clinician, **r.data} for r in rows])

    run(body)


@sessions_app.command("outcome")
def sessions_outcome(
    code: str,
    session_id: int,
    effect_weeks: Annotated[float | None, typer.Option(help="toxin or procedure: weeks the benefit lasted")] = None,
    adverse_effect: Annotated[
        list[str] | None, typer.Option(help="toxin or procedure: a side effect (repeatable)")
    ] = None,
    result: Annotated[str | None, typer.Option(help="mvd: cured, improved, unchanged or recurred")] = None,
    stopped: Annotated[str | None, typer.Option(help="medicine or herbal: the day it was stopped, YYYY-MM-DD")] = None,
    reason: Annotated[str | None, typer.Option(help="Why, when changing a value already recorded")] = None,
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Add what was learnt after a session: a toxin session's or a procedure's effect and side effects, an operation's
    result, the day a medicine or a herbal prescription was stopped."""
    from hemicare.patients import service as patient_service
    from hemicare.sessions import service as session_service
    from hemicare.sessions.schemas import SessionOutcome

    def body() -> None:
        record_number("SESSION_ID", session_id)
        outcome = validate(
            SessionOutcome,
            {
                "effect_weeks": effect_weeks,
                "adverse_effects": adverse_effect,
                "result": result,
                "stopped": stopped,
                "reason": reason,
            },
        )
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            row = session_service.record_outcome(
                session, patient=patient, session_id=session_id, outcome=outcome, actor=actor(by)
            )
        typer.echo(f"recorded the outcome of {row.kind} session {row.id} for patient {code}")

    run(body)


@sessions_app.command("remove")
def sessions_remove(
    code: str,
    session_id: int,
    reason: Annotated[str, typer.Option(help="Why it is removed (3 characters or more); kept in the audit trail")],
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Remove a session entered by mistake (on the wrong patient, with a wrong dose, twice), then record the right one
    again: the audit trail keeps everything it held. `plans new` then makes a plan that no longer counts it."""
    from hemicare.outcomes.schemas import Removal
    from hemicare.patients import service as patient_service
    from hemicare.sessions import service as session_service

    def body() -> None:
        record_number("SESSION_ID", session_id)
        data = validate(Removal, {"reason": reason})
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            row = session_service.remove(
                session, patient=patient, session_id=session_id, actor=actor(by), reason=data.reason
            )
        typer.echo(f"removed {row.kind} session {session_id} of {row.date.isoformat()} for patient {code}")

    run(body)


diary_app = typer.Typer(help="The patient's symptom diary.", no_args_is_help=True)


@diary_app.command("add")
def diary_add(
    code: str,
    spasms: Annotated[int, typer.Option(help="Spasms counted")],
    intensity: Annotated[int, typer.Option(help="0 (none) to 10 (worst)")],
    per: Annotated[str, typer.Option(help="hour or day")] = "day",
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default today)")] = None,
    trigger: Annotated[list[str] | None, typer.Option(help="Repeatable")] = None,
    note: Annotated[str | None, typer.Option()] = None,
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Add a diary entry."""
    from hemicare.outcomes import service as outcome_service
    from hemicare.patients import service as patient_service

    def body() -> None:
        data = validate(
            DiaryCreate,
            {
                "date": date or dt.date.today().isoformat(),
                "spasms": spasms,
                "per": per,
                "intensity": intensity,
                "triggers": trigger or [],
                "note": note,
            },
        )
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            entry = outcome_service.add_diary(session, patient=patient, data=data, actor=actor(by))
        typer.echo(f"diary entry {entry.id} for patient {code} on {entry.date.isoformat()}")

    run(body)


@diary_app.command("questionnaire")
def diary_questionnaire(
    code: str,
    instrument: Annotated[str, typer.Option(help="hfs7 or hfs30")],
    answers: Annotated[str | None, typer.Option(help="Comma-separated item scores, 0-4")] = None,
    subscale: Annotated[
        list[str] | None,
        typer.Option(
            help="HFS-30 grouped by subscale, as the form in use groups its items: NAME=SCORES, e.g. "
            "mobility=0,1,2, once for each of its seven subscales (instead of --answers); each one's score is kept"
        ),
    ] = None,
    date: Annotated[str | None, typer.Option()] = None,
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Record HFS-7 or HFS-30 answers."""
    from hemicare.outcomes import service as outcome_service
    from hemicare.patients import service as patient_service

    def body() -> None:
        if (answers is None) == (not subscale):
            raise InputError([FieldProblem("--answers", "give either --answers or --subscale (HFS-30 only)")])
        given: Any = _scores(answers) if answers is not None else _by_subscale(subscale or [])
        data = validate(
            QuestionnaireCreate,
            {"date": date or dt.date.today().isoformat(), "instrument": instrument, "answers": given},
        )
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            row = outcome_service.add_questionnaire(session, patient=patient, data=data, actor=actor(by))
        typer.echo(f"{row.instrument} answers {row.id} for patient {code}: total {row.total}")

    run(body)


def _scores(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _by_subscale(given: list[str]) -> dict[str, list[str]]:
    """`--subscale mobility=0,1,2 ...` as answers grouped by subscale (their names and scores checked as the API's)."""
    grouped: dict[str, list[str]] = {}
    problems = []
    for index, text in enumerate(given):
        name, sign, scores = text.partition("=")
        if not (sign and name.strip()):
            problems.append(FieldProblem(f"--subscale[{index}]", f"{quoted(text)} is not NAME=SCORES"))
        elif name.strip() in grouped:
            problems.append(FieldProblem(f"--subscale[{index}]", f"{quoted(name.strip())} is given twice"))
        else:
            grouped[name.strip()] = _scores(scores)
    if problems:
        raise InputError(problems)
    return grouped


@diary_app.command("grades")
def diary_grades(
    code: str,
    smc: Annotated[int | None, typer.Option()] = None,
    jankovic_severity: Annotated[int | None, typer.Option()] = None,
    jankovic_frequency: Annotated[int | None, typer.Option()] = None,
    cohen_albert: Annotated[int | None, typer.Option()] = None,
    date: Annotated[str | None, typer.Option()] = None,
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Record severity grades from a visit."""
    from hemicare.outcomes import service as outcome_service
    from hemicare.patients import service as patient_service

    def body() -> None:
        data = validate(
            GradesCreate,
            {
                "date": date or dt.date.today().isoformat(),
                "smc_grade": smc,
                "jankovic_severity": jankovic_severity,
                "jankovic_frequency": jankovic_frequency,
                "cohen_albert": cohen_albert,
            },
        )
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            row = outcome_service.add_grades(session, patient=patient, data=data, actor=actor(by))
        typer.echo(f"grades {row.id} recorded for patient {code} on {row.date.isoformat()}")

    run(body)


@diary_app.command("list")
def diary_list(
    code: str,
    limit: Annotated[int, typer.Option(help="How many of each, newest first.", min=1, max=100)] = 10,
    database: DbOption = None,
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """The latest diary entries, questionnaire answers and graded visits, with the ids `diary remove` takes."""
    from hemicare.audit import service as audit_service
    from hemicare.outcomes import service as outcome_service
    from hemicare.patients import service as patient_service

    def body() -> None:
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            data = {
                "diary": [row._asdict() for row in outcome_service.recent_diary(session, patient=patient, limit=limit)],
                "questionnaire": [  # HFS-30 subscales (given grouped) as {"mobility": {"score": 6, "max": 16}, ...}
                    row._asdict() | {"subscales": outcome_service.subscales_json(row.subscales)}
                    for row in outcome_service.recent_questionnaires(session, patient=patient, limit=limit)
                ],
                "grades": [  # a visit's fields as entered (GradesCreate), between its id and who entered it
                    {"id": row.id, **{field: getattr(row, field) for field in GradesCreate.model_fields}}
                    | {"created_by": row.created_by}
                    for row in outcome_service.recent_grades(session, patient=patient, limit=limit)
                ],
            }
            audit_service.record(session, actor=actor(by), action="read", entity="outcomes", entity_id=code)
        if as_json:
            _print(data)
            return
        for kind, rows in data.items():
            typer.echo(f"{kind}:" + ("" if rows else " none"))
            for row in rows:
                values = "; ".join(
                    f"{key.replace('_', ' ')} {_listed(value)}"
                    for key, value in row.items()
                    if key not in ("id", "date") and value not in (None, [])
                )
                typer.echo(f"  {row['id']:>6}  {row['date']}  {values}")

    run(body)


def _listed(value: Any) -> str:
    """A value of `diary list` in a line: a list joined, subscale scores as the pages say them ("mobility 6 of 16")."""
    from hemicare.outcomes.service import SubscaleScore, subscale_words

    if isinstance(value, list):
        return ", ".join(value)
    if isinstance(value, dict):
        return subscale_words({name: SubscaleScore(**part) for name, part in value.items()})
    return str(value)


@diary_app.command("remove")
def diary_remove(
    code: str,
    kind: Annotated[str, typer.Option(help="diary, questionnaire or grades")],
    record_id: Annotated[int, typer.Option("--id", help="The record's id (`hemicare diary list` shows them)")],
    reason: Annotated[str, typer.Option(help="Why it is removed (3 characters or more); kept in the audit trail")],
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Remove a diary entry, questionnaire answers or a visit's grades entered by mistake (the audit trail keeps
    every value). A recall they answered falls due again."""
    from hemicare.outcomes import service as outcome_service
    from hemicare.outcomes.schemas import Removal
    from hemicare.patients import service as patient_service

    def body() -> None:
        record_number("--id", record_id)
        if kind not in outcome_service.REMOVABLE:
            known = ", ".join(outcome_service.REMOVABLE)
            raise InputError([FieldProblem("--kind", f"{quoted(kind)} is not one of {known}")])
        data = validate(Removal, {"reason": reason})
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            outcome_service.remove(
                session, patient=patient, entity=kind, row_id=record_id, actor=actor(by), reason=data.reason
            )
        typer.echo(f"removed {outcome_service.REMOVABLE[kind][1]} {record_id} of patient {code}")

    run(body)


# --- clinic-wide -------------------------------------------------------------------------------------------------


def due(
    horizon: Annotated[int, typer.Option(help="Also list what falls due in the next N days.")] = 0,
    recall: Annotated[str | None, typer.Option(help="Only toxin, acupuncture, mvd_review or hfs7.")] = None,
    database: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Who is due for what (overdue first in each day); recalls closed on a patient's record are left out."""
    from hemicare.recalls import service as recall_service

    def body() -> None:
        problems = []
        if not 0 <= horizon <= recall_service.HORIZON_MAX_DAYS:
            problems.append(FieldProblem("--horizon", f"{horizon} is outside 0-{recall_service.HORIZON_MAX_DAYS} days"))
        if recall is not None and recall not in recall_service.RECALLS:
            known = ", ".join(recall_service.RECALLS)
            problems.append(FieldProblem("--recall", f"{quoted(recall)} is not one of {known}"))
        if problems:
            raise InputError(problems)
        with unit_of_work(database) as session:
            items = recall_service.due(
                session, kb=load_default(), today=dt.date.today(), horizon_days=horizon, recall=recall
            )
        if as_json:
            _print([item.model_dump(mode="json") for item in items])
            return
        for item in items:
            late = recall_service.lateness(item)
            late = late.upper() if item.overdue else late
            plan = f" [plan: {item.plan.replace('_', ' ')}]" if item.plan else ""
            typer.echo(f"{item.due.isoformat()}  {late:<18} {item.patient:<18} {item.what}{plan} ({item.detail})")
        typer.echo(f"{len(items)} due, {sum(i.overdue for i in items)} overdue")

    run(body)


recalls_app = typer.Typer(help="Close a patient's recall that no longer applies, or reopen it.", no_args_is_help=True)


@recalls_app.command("close")
def recalls_close(
    code: str,
    recall: Annotated[str, typer.Option(help="toxin, acupuncture, mvd_review or hfs7")],
    reason: Annotated[str, typer.Option(help="Why (3 characters or more); kept with it and in the audit trail")],
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Close a kind of recall (the patient stopped that treatment, chose another, is followed elsewhere); it is due
    again once its treatment happens again, or when reopened."""
    from hemicare.patients import service as patient_service
    from hemicare.recalls import service as recall_service
    from hemicare.recalls.schemas import RecallClose

    def body() -> None:
        data = validate(RecallClose, {"recall": recall, "reason": reason})
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            row = recall_service.close(
                session, patient=patient, recall=data.recall, reason=data.reason, actor=actor(by), today=dt.date.today()
            )
        until = recall_service.RECALLS[data.recall].until
        typer.echo(f"closed {data.recall} recalls of patient {code} (closure {row.id}) until {until}")

    run(body)


@recalls_app.command("closed")
def recalls_closed(code: str, database: DbOption = None, as_json: JsonOption = False) -> None:
    """The patient's recalls held back by a closure, with the closure's id (for `recalls reopen`)."""
    from hemicare.patients import service as patient_service
    from hemicare.recalls import service as recall_service

    def body() -> None:
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            held = recall_service.closed(session, kb=load_default(), today=dt.date.today(), patient_id=patient.id)
        if as_json:
            _print([item.model_dump(mode="json") for item in held])
            return
        for item in held:
            typer.echo(
                f"{item.closure:>6}  {item.item.what} (would be due {item.item.due.isoformat()}): closed on "
                f"{item.closed_on.isoformat()} by {item.closed_by}: {item.reason}"
            )
        typer.echo(f"{len(held)} closed")

    run(body)


@recalls_app.command("reopen")
def recalls_reopen(
    code: str,
    closure_id: Annotated[int, typer.Option("--id", help="The closure's id (`hemicare recalls closed` shows them)")],
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Reopen a closed recall; the audit trail keeps the closure."""
    from hemicare.patients import service as patient_service
    from hemicare.recalls import service as recall_service

    def body() -> None:
        record_number("--id", closure_id)
        with unit_of_work(database) as session:
            patient = patient_service.get(session, code=code)
            closure = recall_service.closure(session, patient=patient, closure_id=closure_id)
            recall_service.reopen(session, patient=patient, closure=closure, actor=actor(by))
        typer.echo(f"reopened closure {closure_id} of patient {code}")

    run(body)


def export(
    patient: Annotated[str, typer.Option("--patient", help="Patient code")],
    output: Annotated[Path | None, typer.Option(help="File to write (default: print)")] = None,
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Export everything held about one patient as JSON."""
    from hemicare.audit import service as audit_service
    from hemicare.patients import service as patient_service

    def body() -> None:
        with unit_of_work(database) as session:
            record = patient_service.get(session, code=patient)
            data = export_patient(session, patient=record)
            audit_service.record(session, actor=actor(by), action="export", entity="patient", entity_id=patient)
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
        if output is None:
            typer.echo(text)
            return
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError([FieldProblem("--output", f"cannot write {output}: {exc.strerror}")]) from exc
        typer.echo(f"exported patient {patient} to {output}")

    run(body)


def export_patient(session: Session, *, patient: Any) -> dict[str, Any]:
    """Everything held about a patient, as plain data."""
    from sqlalchemy import select

    from hemicare.assessments.models import StoredAssessment
    from hemicare.audit import service as audit_service
    from hemicare.outcomes.models import DiaryEntry, QuestionnaireAnswer, ScaleGrade, StatedPreferences
    from hemicare.plans import service as plan_service
    from hemicare.recalls.models import RecallClosure
    from hemicare.sessions.models import TreatmentSession

    def rows(model: Any) -> list[dict[str, Any]]:
        found = session.scalars(select(model).where(model.patient_id == patient.id).order_by(model.id))
        return [{c.name: getattr(r, c.name) for c in model.__table__.columns} for r in found]

    return {
        "patient": PatientRead.model_validate(patient).model_dump(mode="json"),
        "assessments": rows(StoredAssessment),
        "plans": [
            {"number": v.number, "kind": v.kind, "signed_by": v.signed_by, "edits": v.edits, "content": v.content}
            for v in plan_service.history(session, patient=patient)
        ],
        "sessions": rows(TreatmentSession),
        "diary": rows(DiaryEntry),
        "questionnaires": rows(QuestionnaireAnswer),
        "grades": rows(ScaleGrade),
        "stated_preferences": rows(StatedPreferences),
        "recall_closures": rows(RecallClosure),
        "audit": [  # about the patient, not their record's alone: what was removed from it is kept here
            {
                "at": e.at,
                "actor": e.actor,
                "action": e.action,
                "entity": e.entity,
                "entity_id": e.entity_id,
                "reason": e.reason,
                "detail": e.detail,
            }
            for e in audit_service.about_patient(session, patient=patient.code)
        ],
    }


RECHECK_WORKERS_MAX = 64  # processes; each holds the knowledge base and its share of patients


def recheck(
    save: Annotated[bool, typer.Option(help="Store the new plans as new versions.")] = False,
    workers: Annotated[int, typer.Option(help="Processes to compute plans in (default: one per core).")] = 0,
    database: DbOption = None,
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-run the engine for every patient; list those whose plan changed (alerts, statuses, doses and what else
    each recommendation gives)."""
    from hemicare.plans import service as plan_service

    def body() -> None:
        if not 0 <= workers <= RECHECK_WORKERS_MAX:
            raise InputError(
                [FieldProblem("--workers", f"{workers} is not between 0 (one per core) and {RECHECK_WORKERS_MAX}")]
            )
        kb = load_default()
        with unit_of_work(database) as session:
            from hemicare.patients.models import Patient

            total = session.query(Patient).count()
            with typer.progressbar(length=total, label="rechecking", file=sys.stderr) as bar:  # stdout holds the result
                changes = plan_service.recheck(
                    session,
                    kb=kb,
                    today=dt.date.today(),
                    actor=actor(by),
                    save=save,
                    workers=workers or os.cpu_count() or 1,
                    progress=bar.update,
                )
        if as_json:
            _print([c.model_dump() for c in changes])
            return
        for change in changes:
            parts = ["new plan"] if change.new else []
            parts += [f"+alert {a}" for a in change.alerts_added] if not change.new else []
            parts += [f"-alert {a}" for a in change.alerts_removed]
            parts += [f"{c['recommendation']}: {c['from']} -> {c['to']}" for c in change.status_changes]
            parts += [f"{c['recommendation']}, {c['item']}: {c['from']} -> {c['to']}" for c in change.given_changes]
            typer.echo(f"{change.patient}: {'; '.join(parts)}")
        typer.echo(f"{len(changes)} of {total} patients' plans changed (knowledge base {kb.version})")

    run(body)


audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(database: DbOption = None) -> None:
    """Check the hash chain: exit 1 and list the problems if any entry was edited or deleted."""
    from hemicare.audit import service as audit_service

    def body() -> None:
        with unit_of_work(database) as session:
            result = audit_service.verify(session)
        for problem in result.problems:
            typer.echo(f"TAMPERED: {problem}", err=True)
        typer.echo(f"audit trail: {result.checked} entries checked, {'intact' if result.ok else 'NOT intact'}")
        if not result.ok:
            raise typer.Exit(1)

    run(body)


@audit_app.command("list")
def audit_list(
    patient: Annotated[str | None, typer.Option(help="Only entries about this patient")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only entries by this user")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first (1-1000)")] = 50,
    database: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Who read or changed what, when and why: the newest entries, by one user and/or about one patient."""
    from hemicare.audit import service as audit_service

    def body() -> None:
        problems = []
        if not 1 <= limit <= 1000:
            problems.append(FieldProblem("--limit", f"{limit} is not between 1 and 1000"))
        if patient is not None and not 1 <= len(patient) <= CODE_MAX:
            problems.append(FieldProblem("--patient", f"a patient code of 1 to {CODE_MAX} characters"))
        if user is not None and not 1 <= len(user) <= ACTOR_MAX:
            problems.append(FieldProblem("--user", f"a username of 1 to {ACTOR_MAX} characters"))
        if problems:
            raise InputError(problems)
        with unit_of_work(database) as session:
            entries = audit_service.search(session, actor=user, patient=patient, limit=limit)
            rows: list[dict[str, Any]] = [
                {
                    "at": entry.at.strftime("%Y-%m-%d %H:%M:%S"),
                    "user": entry.actor,
                    "action": entry.action,
                    "record": f"{entry.entity} {entry.entity_id}",
                    "reason": entry.reason,
                    "detail": entry.detail or {},
                }
                for entry in entries
            ]
        if as_json:
            _print(rows)
            return
        for entry, row in zip(entries, rows, strict=True):
            said = [f"reason: {entry.reason}"] if entry.reason else []
            said += [audit_service.detail_words(entry.detail)] if entry.detail else []
            typer.echo("  ".join([row["at"], entry.actor, entry.action, row["record"], *said]))
        if not rows:
            typer.echo("no entries match")

    run(body)


def register(app: typer.Typer) -> None:
    """Add the records commands to the main app."""
    app.add_typer(db_app, name="db")
    app.add_typer(patients_app, name="patients")
    app.add_typer(plans_app, name="plans")
    app.add_typer(sessions_app, name="sessions")
    app.add_typer(diary_app, name="diary")
    app.add_typer(audit_app, name="audit")
    app.add_typer(recalls_app, name="recalls")
    app.command("due")(due)
    app.command("export")(export)
    app.command("recheck")(recheck)


# --- users and the web server ----------------------------------------------------------------------------------

users_app = typer.Typer(help="Users of the web application.", no_args_is_help=True)
PasswordStdinOption = Annotated[bool, typer.Option(help="Read the password from standard input")]


def _read_password(from_stdin: bool, prompt: str) -> str:
    """The password from standard input's first line, or asked for twice without echo (there is never a default)."""
    import sys

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt(f"{prompt} (10 characters or more)", hide_input=True, confirmation_prompt=True))


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Option()],
    full_name: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help="admin, neurologist, neurosurgeon, tcm_practitioner or patient")],
    patient: Annotated[str | None, typer.Option(help="For a patient user: the patient code they may see")] = None,
    password_stdin: PasswordStdinOption = False,
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Add a user. The password is asked for (never a default), or read from standard input."""
    from hemicare.users import service as user_service
    from hemicare.users.schemas import UserCreate

    def body() -> None:
        password = _read_password(password_stdin, "Password")
        data = validate(
            UserCreate,
            {"username": username, "full_name": full_name, "role": role, "patient_code": patient, "password": password},
        )
        with unit_of_work(database) as session:
            user_service.create(session, data=data, actor=actor(by))
        typer.echo(f"added user {username} ({role})")

    run(body)


@users_app.command("token")
def users_token(
    username: Annotated[str, typer.Option()],
    name: Annotated[str, typer.Option(help="What the token is for")],
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Issue an API token for a machine client acting as this user (shown once)."""
    from hemicare.users import service as user_service

    def body() -> None:
        with unit_of_work(database) as session:
            token = user_service.issue_token(session, username=username, name=name, actor=actor(by))
        typer.echo(token)

    run(body)


@users_app.command("list")
def users_list(database: DbOption = None, as_json: JsonOption = False) -> None:
    """Every user: role, linked patient, whether they may sign in, and live API tokens."""
    from hemicare.users import service as user_service

    def body() -> None:
        with unit_of_work(database) as session:
            found = user_service.accounts(session)
        if as_json:
            _print([account._asdict() for account in found])
            return
        for a in found:
            state = ("active" if a.active else "DISABLED") + (" (temporary password)" if a.must_change_password else "")
            typer.echo(f"{a.username:<20} {a.role:<17} {state:<9} tokens {a.tokens:<3} {a.full_name}")

    run(body)


def _account_change(username: str, *, active: bool, reason: str, database: str | None, by: str | None) -> None:
    from hemicare.users import service as user_service
    from hemicare.users.schemas import AccountChange

    def body() -> None:
        change = validate(AccountChange, {"reason": reason})
        with unit_of_work(database) as session:
            user_service.set_active(session, username=username, active=active, change=change, actor=actor(by))
        typer.echo(f"{'enabled' if active else 'disabled'} user {username}")

    run(body)


@users_app.command("disable")
def users_disable(username: str, reason: ReasonOption, database: DbOption = None, by: ByOption = None) -> None:
    """Stop a user signing in: their web sessions end and their API tokens are revoked."""
    _account_change(username, active=False, reason=reason, database=database, by=by)


@users_app.command("enable")
def users_enable(username: str, reason: ReasonOption, database: DbOption = None, by: ByOption = None) -> None:
    """Let a disabled user sign in again (API tokens revoked when they were disabled stay revoked)."""
    _account_change(username, active=True, reason=reason, database=database, by=by)


@users_app.command("password")
def users_password(
    username: str,
    password_stdin: PasswordStdinOption = False,
    temporary: Annotated[
        bool,
        typer.Option(
            "--temporary",
            help="Make a temporary password and print it once; they must choose their own at their next sign-in.",
        ),
    ] = False,
    database: DbOption = None,
    by: ByOption = None,
) -> None:
    """Set a user's password (asked for, or read from standard input), or give them a temporary one; their web
    sessions end."""
    from hemicare.users import service as user_service
    from hemicare.users.schemas import PasswordChange

    def body() -> None:
        if temporary:
            if password_stdin:
                raise InputError(
                    [FieldProblem("--temporary", "HemiCare makes the password: leave out --password-stdin")]
                )
            with unit_of_work(database) as session:
                password = user_service.reset_password(session, username=username, actor=actor(by))
            typer.echo(f"temporary password for {username}: {password}")
            typer.echo(
                "it is shown only now; they choose their own at their next sign-in; their web sessions have ended"
            )
            return
        change = validate(PasswordChange, {"password": _read_password(password_stdin, "New password")})
        with unit_of_work(database) as session:
            user_service.set_password(session, username=username, change=change, actor=actor(by))
        typer.echo(f"password changed for {username}; their web sessions have ended")

    run(body)


@users_app.command("revoke-tokens")
def users_revoke_tokens(username: str, database: DbOption = None, by: ByOption = None) -> None:
    """Revoke every API token of a user (a leaked token, a retired machine client)."""
    from hemicare.users import service as user_service

    def body() -> None:
        with unit_of_work(database) as session:
            revoked = user_service.revoke_tokens(session, username=username, actor=actor(by))
        typer.echo(f"revoked {revoked} API token{'s' if revoked != 1 else ''} of {username}")

    run(body)


def first_user_command(database: str | None) -> str:
    """The command that adds a first account to the database being served, as it is typed in another terminal: the
    program as it was started (``.venv/bin/hemicare`` from ``make run``), and the database if ``--db`` named one
    (a database named by $HEMICARE_DATABASE_URL is found the same way by the other command)."""
    program = sys.argv[0] if Path(sys.argv[0]).name == "hemicare" else "hemicare"
    words = [program, "users", "add", "--username", "dr.neuro", "--full-name", "Dr Neuro", "--role", "neurologist"]
    if database:
        words += ["--db", database]
    return shlex.join(words)


def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    demo: Annotated[bool, typer.Option(help="Load the demo clinic first if the database has no patients")] = False,
    insecure_cookies: Annotated[
        bool, typer.Option(help="Send the session cookie over plain HTTP to hosts other than localhost")
    ] = False,
    workers: Annotated[int, typer.Option(help="Server processes")] = 1,
    database: DbOption = None,
) -> None:
    """Run the web application (migrating the database first)."""
    import uvicorn

    from hemicare.db import engine as db
    from hemicare.demo import load_demo
    from hemicare.patients.models import Patient
    from hemicare.users import service as user_service
    from hemicare.web import workers as server_processes
    from hemicare.web.app import log_requests, serving_app

    if not 1 <= port <= 65535:
        raise fail(InputError([FieldProblem("--port", f"{port} is not a port number")]))
    if not 1 <= workers <= 32:
        raise fail(InputError([FieldProblem("--workers", f"{workers} is not between 1 and 32")]))
    try:
        server_processes.check_free(host, port)
    except server_processes.AddressError as exc:
        raise fail(InputError([FieldProblem(exc.option, str(exc))])) from exc
    with engine_for(database) as engine:
        db.upgrade(engine)
        with db.session_factory(engine)() as session, session.begin():
            if demo and session.query(Patient).count() == 0:
                examples = Path(__file__).resolve().parent.parent.parent / "examples"
                count = load_demo(session, kb=load_default(), examples=examples, patients=24, today=dt.date.today())
                typer.echo(f"loaded the demo clinic: {count} patients")
            users = user_service.count(session)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"HemiCare is running at http://{shown}:{port}/ (stop with Ctrl-C)")
    if not insecure_cookies and host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(
            "Browsers keep the sign-in over HTTPS only, except on this machine: serve HemiCare to other machines "
            "through an HTTPS proxy (or, on a trusted network, restart with --insecure-cookies)."
        )
    if users == 0:
        typer.echo(
            "No users yet. In another terminal, from this folder, create one and sign in with it:\n"
            f"  {first_user_command(database)}\n"
            "(roles: admin, neurologist, neurosurgeon, tcm_practitioner, patient --patient CODE)"
        )
    log_requests()
    if workers > 1:
        os.environ[db.URL_VARIABLE] = db.database_url(database)
        os.environ["HEMICARE_COOKIE_SECURE"] = "0" if insecure_cookies else "1"
        if server_processes.SUPPORTED:
            try:
                server_processes.run(host=host, port=port, workers=workers, access_log=False, log_level="warning")
            except server_processes.AddressError as exc:
                raise fail(InputError([FieldProblem(exc.option, str(exc))])) from exc
            except server_processes.WorkerFailed as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from exc
            return
        uvicorn.run(
            "hemicare.web.app:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            access_log=False,
            log_level="warning",
        )
        return
    app = serving_app(database_url=database, cookie_secure=not insecure_cookies)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


def register_web(app: typer.Typer) -> None:
    """Add the users and serve commands."""
    app.add_typer(users_app, name="users")
    app.command("serve")(serve)
