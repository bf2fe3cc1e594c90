"""Recall closures: the care team closes a recall that no longer applies, with a reason.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recall_closures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        sa.Column("recall", sa.String(length=16), nullable=False),
        sa.Column("closed_on", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.CheckConstraint(
            "recall IN ('toxin', 'acupuncture', 'mvd_review', 'hfs7')", name=op.f("ck_recall_closures_recall_kind")
        ),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_recall_closures_patient_id_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recall_closures")),
    )
    with op.batch_alter_table("recall_closures", schema=None) as batch_op:
        batch_op.create_index("ix_recall_closures_patient", ["patient_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("recall_closures", schema=None) as batch_op:
        batch_op.drop_index("ix_recall_closures_patient")
    op.drop_table("recall_closures")
