"""What the patient says matters to them in choosing a treatment, stated on their own page after reading their
options side by side.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stated_preferences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_stated_preferences_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stated_preferences")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("stated_preferences", schema=None) as batch_op:
        batch_op.create_index("ix_stated_preferences_patient_date", ["patient_id", "date"], unique=False)


def downgrade() -> None:
    count = op.get_bind().scalar(sa.text("SELECT count(*) FROM stated_preferences"))
    if count:  # what patients said is part of their record: going back must not drop it unsaid
        raise RuntimeError(f"{count} statements of what matters to patients are recorded; revision 0012 has no place")
    op.drop_table("stated_preferences")
