"""Each plan version says how many statuses its signer changed, indexed with the day it was signed: the sign-off
list ("Changed at sign-off") reads those few versions instead of every plan's content. Versions signed before are
counted from their edits.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("plan_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("changes", sa.Integer(), server_default="0", nullable=False))
    # json_array_length is in SQLite (3.38 and later, or its JSON1 extension) and in PostgreSQL
    op.execute("UPDATE plan_versions SET changes = json_array_length(edits) WHERE kind = 'reviewed'")
    with op.batch_alter_table("plan_versions", schema=None) as batch_op:
        batch_op.create_index("ix_plan_versions_changes_signed_at", ["changes", "signed_at"], unique=False)


def downgrade() -> None:  # the count is read from the edits again; nothing is lost
    with op.batch_alter_table("plan_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_plan_versions_changes_signed_at")
        batch_op.drop_column("changes")
