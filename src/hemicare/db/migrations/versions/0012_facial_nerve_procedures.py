"""Nerve blocks and radiofrequency ablations of the facial nerve are recorded as treatment sessions of their own kind,
"procedure".

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

KINDS = "'toxin', 'acupuncture', 'herbal', 'mvd', 'medicine'"


def _kinds(known: str) -> None:
    with op.batch_alter_table("treatment_sessions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_treatment_sessions_kind_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_treatment_sessions_kind_known"), f"kind IN ({known})")


def upgrade() -> None:
    _kinds(f"{KINDS}, 'procedure'")


def downgrade() -> None:
    count = op.get_bind().scalar(sa.text("SELECT count(*) FROM treatment_sessions WHERE kind = 'procedure'"))
    if count:  # a procedure is part of the patient's record: going back must not drop it unsaid
        raise RuntimeError(f"{count} procedures are recorded; revision 0011 cannot hold them")
    _kinds(KINDS)
