"""When a session's outcome was last added or changed, on the session itself: the patient page names the outcomes
recorded after the plan was made, and reading that from the audit trail scanned the whole trail on every page.
Sessions amended before this revision take the time of their latest amendment from the audit trail.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("treatment_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("amended_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE treatment_sessions SET amended_at = (SELECT max(audit_log.at) FROM audit_log"
        " WHERE audit_log.entity = 'session' AND audit_log.action = 'amend'"
        " AND audit_log.entity_id = CAST(treatment_sessions.id AS VARCHAR(64)))"
    )


def downgrade() -> None:
    with op.batch_alter_table("treatment_sessions", schema=None) as batch_op:
        batch_op.drop_column("amended_at")
