"""Session ids never reused: on SQLite, treatment sessions number their rows with AUTOINCREMENT, as the other
records that can be removed have since 0006.

A treatment session entered by mistake can be removed (then recorded again). Without AUTOINCREMENT SQLite gives a
new row the largest id plus one, so removing the newest session and recording the right one gave it the removed
one's id: the audit trail then named two different sessions "session 7", the removed one's creation, outcome and
removal beside the new one's. PostgreSQL's sequences never reuse an id; nothing changes there.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # Copied into a new table with the same columns, constraints and indexes (SQLite cannot alter a primary key).
    with op.batch_alter_table(
        "treatment_sessions", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
