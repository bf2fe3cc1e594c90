"""API requests sent with an idempotency key are carried out once: the table of forms sent keeps, for such a request,
a hash of what was asked, and the status and body of the answer, to be given again to a client that retries.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sent_forms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("status", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("answer", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sent_forms", schema=None) as batch_op:
        batch_op.drop_column("answer")
        batch_op.drop_column("status")
        batch_op.drop_column("request")
