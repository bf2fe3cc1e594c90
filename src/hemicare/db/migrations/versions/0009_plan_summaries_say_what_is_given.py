"""Plan summaries say what each recommendation gives (toxin product and doses per site, herbs and their doses, a
medicine's dose, acupuncture points), so that a recheck and the review compare doses as well as statuses and alerts.

Every stored version's summary is filled in from its own content, with `given` as the code defines it at this
revision: without it, the first recheck after the upgrade would have compared every plan's doses with nothing.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

from hemicare.plans.service import given

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BATCH = 500  # versions read and written at a time: a plan's content is tens of kilobytes

plan_versions = sa.table(
    "plan_versions", sa.column("id", sa.Integer), sa.column("content", sa.JSON), sa.column("summary", sa.JSON)
)


def _rewrite(summary_of: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]) -> None:
    bind = op.get_bind()
    after = 0
    while rows := bind.execute(
        sa.select(plan_versions.c.id, plan_versions.c.content, plan_versions.c.summary)
        .where(plan_versions.c.id > after)
        .order_by(plan_versions.c.id)
        .limit(BATCH)
    ).all():
        bind.execute(
            sa.update(plan_versions)
            .where(plan_versions.c.id == sa.bindparam("version_id"))
            .values(summary=sa.bindparam("new_summary")),
            [{"version_id": row.id, "new_summary": summary_of(row.content, row.summary)} for row in rows],
        )
        after = rows[-1].id


def upgrade() -> None:
    _rewrite(
        lambda content, summary: {
            **summary,
            "given": given((rec["id"], rec.get("details", {})) for rec in content["recommendations"]),
        }
    )


def downgrade() -> None:
    _rewrite(lambda content, summary: {key: value for key, value in summary.items() if key != "given"})
