"""Passage sentence vectors in the summaries, for semantic routing (``indexing.semantic``).

Existing rows get none; a pool switched to semantic routing gains a ``semantic`` part in its
index parameters, so it asks for ``kpool reindex``, which computes them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("summaries") as batch:
        batch.add_column(sa.Column("passage_embeddings", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("summaries") as batch:
        batch.drop_column("passage_embeddings")
