"""What reranking spent, apart in each audit entry (``service.audit``).

A reranked question's tokens were all under the answering model's name, though a smaller,
cheaper model spent part of them. The entry now names the reranking model and its share.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        batch.add_column(sa.Column("rerank_model", sa.String(length=100), nullable=True))
        batch.add_column(
            sa.Column("rerank_input_tokens", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("rerank_output_tokens", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("audit") as batch:
        for name in ("rerank_output_tokens", "rerank_input_tokens", "rerank_model"):
            batch.drop_column(name)
