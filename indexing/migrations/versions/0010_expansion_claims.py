"""A claim on a version being described (``indexing.expansion``), shared by every process.

Without it, two server replicas walking the same queue asked the model about the same
documents at the same moment and paid for each twice. A process claims a version before its
request, for a while (``Content.expansion_claimed_until``); the others pass it by until the
claim lapses or is released. A new version is a new row, so it starts unclaimed.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contents") as batch:
        batch.add_column(sa.Column("expansion_claimed_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contents") as batch:
        batch.drop_column("expansion_claimed_until")
