"""Append to and verify the hash-chained audit trail.

Each entry's hash covers its own fields and the previous entry's hash, so editing an entry breaks its hash and
deleting one breaks the chain after it. Appends are serialised (SQLite's BEGIN IMMEDIATE, an advisory lock on
PostgreSQL) so two writers cannot fork the chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from hemicare.audit.models import AuditEntry
from hemicare.db.base import utcnow
from hemicare.errors import FieldProblem, InputError
from hemicare.limits import REASON_MAX

GENESIS = "0" * 64
_HASHED = ("prev_hash", "at", "actor", "action", "entity", "entity_id", "reason", "detail")
_LOCK_KEY = 4_815_162_342


def _utc_text(moment: dt.datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds")


def entry_hash(
    *,
    prev_hash: str,
    at: dt.datetime,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    reason: str | None,
    detail: dict[str, Any],
) -> str:
    """The SHA-256 of an entry's fields and its predecessor's hash, over a canonical JSON form."""
    canonical = json.dumps(
        [prev_hash, _utc_text(at), actor, action, entity, entity_id, reason, detail],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: str | int,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append an entry in the caller's transaction: it commits with the change it records, or not at all. A reason
    longer than the trail keeps is the caller's mistake (each input that takes one says its limit; this is the last
    check, so that no database refuses it with a server error instead)."""
    if reason is not None and len(reason) > REASON_MAX:
        raise InputError([FieldProblem("reason", f"at most {REASON_MAX} characters, got {len(reason)}")])
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    last = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1))
    fields: dict[str, Any] = {
        "prev_hash": last or GENESIS,
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "entity": entity,
        "entity_id": str(entity_id),
        "reason": reason,
        "detail": detail or {},
    }
    entry = AuditEntry(**fields, hash=entry_hash(**fields))
    session.add(entry)
    session.flush()
    return entry


def add_created(
    session: Session,
    row: Any,
    *,
    actor: str,
    entity: str,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add a new record and its `create` audit entry in the same transaction (the entry names the new id)."""
    session.add(row)
    session.flush()
    record(session, actor=actor, action="create", entity=entity, entity_id=row.id, reason=reason, detail=detail)


@dataclass
class Verification:
    """The result of checking the whole chain."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session) -> Verification:
    """Recompute every hash and link; report edited, deleted or reordered entries."""
    result = Verification()
    previous_hash = GENESIS
    previous_id = 0
    for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id)):
        result.checked += 1
        if entry.id != previous_id + 1:
            result.problems.append(f"entries {previous_id + 1}..{entry.id - 1} are missing (deleted?)")
        if entry.prev_hash != previous_hash:
            result.problems.append(f"entry {entry.id}: does not follow the entry before it (chain broken)")
        expected = entry_hash(**{name: getattr(entry, name) for name in _HASHED})
        if expected != entry.hash:
            result.problems.append(f"entry {entry.id}: content does not match its hash (edited?)")
        previous_hash = entry.hash
        previous_id = entry.id
    return result


def for_entity(session: Session, *, entity: str, entity_id: str | int) -> list[AuditEntry]:
    """Every entry about one record, oldest first."""
    query = select(AuditEntry).where(AuditEntry.entity == entity, AuditEntry.entity_id == str(entity_id))
    return list(session.scalars(query.order_by(AuditEntry.id)))


# Entities whose entries name a patient by code (a plan names it as CODE/vN; other records in `detail.patient`).
BY_PATIENT_CODE = ("patient", "sessions", "outcomes", "plan_versions")


def _matching(actor: str | None, patient: str | None) -> Any:
    """Entries by one actor and/or about one patient (their record, plan versions, sessions, diary and outcomes)."""
    query = select(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if patient:
        query = query.where(
            or_(
                AuditEntry.entity.in_(BY_PATIENT_CODE) & (AuditEntry.entity_id == patient),
                (AuditEntry.entity == "plan") & AuditEntry.entity_id.startswith(patient + "/", autoescape=True),
                AuditEntry.detail["patient"].as_string() == patient,  # sessions, diary, assessments, questionnaires
            )
        )
    return query


def about_patient(session: Session, *, patient: str) -> list[AuditEntry]:
    """Every entry about one patient, oldest first: what the audit page lists for them (a removed session, diary
    entry or grades among them, with what it held)."""
    return list(session.scalars(_matching(None, patient).order_by(AuditEntry.id)))


def count(session: Session, *, actor: str | None = None, patient: str | None = None) -> int:
    """How many entries ``search`` would list."""
    return int(session.scalar(select(func.count()).select_from(_matching(actor, patient).subquery())) or 0)


def detail_words(detail: dict[str, Any] | None) -> str:
    """An entry's detail as the audit page and `hemicare audit list` show it: "key: value; key: value", a record
    kept whole (a removed diary entry, say) in brackets without its empty fields: "entry: (date 2026-08-30, smc
    grade 2, created by dr.n)", a list's items joined by slashes ("answers 1/2/1/0/1/2/1")."""
    return "; ".join(f"{key}: {_said(value)}" for key, value in (detail or {}).items())


def _said(value: Any) -> str:
    if isinstance(value, dict):
        kept = (f"{key.replace('_', ' ')} {_said(item)}" for key, item in value.items() if item not in (None, [], {}))
        return f"({', '.join(kept)})"
    if isinstance(value, list):
        return "/".join(_said(item) for item in value)
    return str(value)


def search(
    session: Session, *, actor: str | None = None, patient: str | None = None, offset: int = 0, limit: int = 100
) -> list[AuditEntry]:
    """Entries newest first, by one actor and/or about one patient: ``limit`` of them from ``offset``."""
    query = _matching(actor, patient).order_by(AuditEntry.id.desc()).offset(offset).limit(limit)
    return list(session.scalars(query))
