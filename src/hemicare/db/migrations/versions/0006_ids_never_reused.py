"""Ids never reused: on SQLite, the tables whose rows can be removed number their rows with AUTOINCREMENT.

Without it SQLite gives a new row the largest id plus one, so removing the newest diary entry, questionnaire answer,
graded visit or recall closure and then recording another gave the new record the removed one's id: the audit trail
then named two different records "grades 7". PostgreSQL's sequences never reuse an id; nothing changes there.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("diary_entries", "questionnaires", "scale_grades", "recall_closures")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        # Copied into a new table with the same columns, constraints and indexes (SQLite cannot alter a primary key).
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
