"""Idle sign-out: a web session remembers when it was last used, and ends after a while without use.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# Sessions started before this revision have none (NULL): their first request after it counts as a use.


def upgrade() -> None:
    op.add_column("web_sessions", sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("web_sessions", "last_seen_at")
