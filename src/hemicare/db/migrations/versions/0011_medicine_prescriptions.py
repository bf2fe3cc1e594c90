"""Oral medicines prescribed are recorded as treatment sessions of their own kind, "medicine".

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

KINDS = "'toxin', 'acupuncture', 'herbal', 'mvd'"


def _kinds(known: str) -> None:
    with op.batch_alter_table("treatment_sessions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_treatment_sessions_kind_known"), type_="check")
        batch_op.create_check_constraint(op.f("ck_treatment_sessions_kind_known"), f"kind IN ({known})")


def upgrade() -> None:
    _kinds(f"{KINDS}, 'medicine'")


def downgrade() -> None:
    count = op.get_bind().scalar(sa.text("SELECT count(*) FROM treatment_sessions WHERE kind = 'medicine'"))
    if count:  # a prescription is part of the patient's record: going back must not drop it unsaid
        raise RuntimeError(f"{count} medicine prescriptions are recorded; revision 0010 cannot hold them")
    _kinds(KINDS)
