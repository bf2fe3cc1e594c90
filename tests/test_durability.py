"""A killed writer loses nothing it acknowledged and leaves no half-written record; concurrent writers keep the
audit chain whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from hemicare.audit import service as audit
from hemicare.audit.models import AuditEntry
from hemicare.db.engine import session_factory
from hemicare.outcomes.models import DiaryEntry
from hemicare.patients.models import Patient

WRITER = textwrap.dedent(
    """
    import datetime as dt, sys
    from hemicare.db.engine import make_engine, session_factory
    from hemicare.outcomes import service as outcomes
    from hemicare.outcomes.schemas import DiaryCreate
    from hemicare.patients import service as patients
    from hemicare.patients.schemas import PatientCreate

    url, code, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    Session = session_factory(make_engine(url))
    with Session() as s, s.begin():
        patients.create(s, data=PatientCreate(code=code, name="Writer", sex="other"), actor=code)
    print("ready", flush=True)
    for index in range(count):
        with Session() as s, s.begin():
            patient = patients.get(s, code=code)
            entry = outcomes.add_diary(
                s, patient=patient, data=DiaryCreate(date=dt.date.today(), spasms=index, intensity=1), actor=code
            )
            entry_id = entry.id
        print("ack", entry_id, flush=True)
    """
)


def _writer(db_url: str, code: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, db_url, code, str(count)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )


def test_killed_writer_keeps_every_acknowledged_entry(engine: Engine, db_url: str) -> None:
    writer = _writer(db_url, "killed", 100_000)
    assert writer.stdout is not None
    acked: list[int] = []
    for line in writer.stdout:
        if line.startswith("ack"):
            acked.append(int(line.split()[1]))
            if len(acked) == 40:
                writer.send_signal(signal.SIGKILL)
                break
    writer.communicate(timeout=60)  # reap the process and close its pipes
    assert writer.returncode == -signal.SIGKILL
    with session_factory(engine)() as s:
        stored = set(s.scalars(select(DiaryEntry.id)))
        assert set(acked) <= stored
        diary_audit = s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.entity == "diary"))
        assert diary_audit == len(stored)  # each entry was written with its audit record, or neither was
        assert audit.verify(s).ok


def test_concurrent_writers_keep_the_chain_whole(engine: Engine, db_url: str) -> None:
    writers = [_writer(db_url, f"writer-{n}", 25) for n in range(3)]
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
    with session_factory(engine)() as s:
        assert s.scalar(select(func.count(Patient.id))) == 3
        assert s.scalar(select(func.count(DiaryEntry.id))) == 75
        result = audit.verify(s)
        assert result.ok and result.checked == 78


def test_a_backup_taken_while_a_writer_runs_holds_what_was_committed(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hemicare.cli import app
    from hemicare.db.engine import make_engine, upgrade

    url = f"sqlite:///{tmp_path / 'clinic.db'}"
    made = make_engine(url)
    upgrade(made)
    made.dispose()
    writer = _writer(url, "busy", 100_000)
    assert writer.stdout is not None
    acked: list[int] = []
    try:
        for line in writer.stdout:
            if line.startswith("ack"):
                acked.append(int(line.split()[1]))
                if len(acked) == 30:
                    break
        backup = CliRunner().invoke(app, ["db", "backup", str(tmp_path / "copy.db"), "--db", url])
        assert backup.exit_code == 0, backup.output
    finally:
        writer.kill()
        writer.communicate(timeout=60)
    assert "backed up to" in backup.output and "audit trail intact" in backup.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clinic.db", "clinic.db-shm", "clinic.db-wal", "copy.db"]
    copy = make_engine(f"sqlite:///{tmp_path / 'copy.db'}")
    with session_factory(copy)() as s:
        stored = set(s.scalars(select(DiaryEntry.id)))
        assert set(acked) <= stored  # committed before the backup began: in it (many only in the WAL then)
        diary_audit = s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.entity == "diary"))
        assert diary_audit == len(stored) and audit.verify(s).ok
    copy.dispose()


@pytest.mark.parametrize(
    ("target", "database", "message"),
    [
        ("copy.db", "sqlite:///{tmp}/missing.db", "field `--db`: no database at"),
        ("existing.db", "sqlite:///{tmp}/clinic.db", "field `TARGET`: {tmp}/existing.db exists already"),
        ("no-folder/copy.db", "sqlite:///{tmp}/clinic.db", "field `TARGET`: no folder {tmp}/no-folder"),
        ("copy.db", "postgresql://u@h/db", "field `--db`: only a SQLite database is copied this way; use pg_dump"),
    ],
)
def test_a_backup_that_cannot_be_made_says_why(tmp_path: Path, target: str, database: str, message: str) -> None:
    from typer.testing import CliRunner

    from hemicare.cli import app
    from hemicare.db.engine import make_engine, upgrade

    made = make_engine(f"sqlite:///{tmp_path / 'clinic.db'}")
    upgrade(made)
    made.dispose()
    (tmp_path / "existing.db").write_text("not to be overwritten")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(app, ["db", "backup", str(tmp_path / target), "--db", database.format(tmp=tmp_path)])
    assert result.exit_code == 2 and message.format(tmp=tmp_path) in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "existing.db").read_text() == "not to be overwritten"
