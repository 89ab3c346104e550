"""Generated descriptions of documents (``indexing.expansion``), kept with their text.

A content row describes one version of a document, so its expansion goes with it: a new
version starts without one. The partial index holds the rows still waiting for theirs, so the
expanding loop's look costs nothing in a large pool.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UNEXPANDED = "expansion IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("contents") as batch:
        batch.add_column(sa.Column("expansion", sa.Text(), nullable=True))
        batch.add_column(sa.Column("expansion_model", sa.String(length=100), nullable=True))
        batch.add_column(
            sa.Column("expansion_input_tokens", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("expansion_output_tokens", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_index(
        "ix_contents_unexpanded",
        "contents",
        ["document_id"],
        sqlite_where=sa.text(UNEXPANDED),
        postgresql_where=sa.text(UNEXPANDED),
    )


def downgrade() -> None:
    op.drop_index("ix_contents_unexpanded", table_name="contents")
    with op.batch_alter_table("contents") as batch:
        for name in (
            "expansion_output_tokens",
            "expansion_input_tokens",
            "expansion_model",
            "expansion",
        ):
            batch.drop_column(name)
