"""Temporary passwords: an account an admin created or reset in the browser must choose its own password first.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not a batch copy: SQLite adds and drops a column in place (3.35 and later), whereas copying the
# users table would have to drop it while web sessions and API tokens still refer to it.


def upgrade() -> None:
    op.add_column("users", sa.Column("must_change_password", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("users", "must_change_password")
