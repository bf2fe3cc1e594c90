"""Forms sent once: the fingerprints of forms carried out in the last day, so that a second click is not a second
record (a second assessment and plan version, a toxin session entered twice).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sent_forms",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_sent_forms")),
    )
    with op.batch_alter_table("sent_forms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sent_forms_sent_at"), ["sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sent_forms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sent_forms_sent_at"))
    op.drop_table("sent_forms")
