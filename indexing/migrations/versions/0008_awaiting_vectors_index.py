"""A partial index on the summaries that await their sentence vectors.

The server looks for them every few seconds (``indexing.ingest.vectorise``); without the index
each look reads every summary, with it only the few that wait. SQLite and PostgreSQL both keep
partial indexes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

AWAITING = "passage_layout IS NOT NULL AND passage_embeddings IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_summaries_awaiting",
        "summaries",
        ["file_id"],
        sqlite_where=sa.text(AWAITING),
        postgresql_where=sa.text(AWAITING),
    )


def downgrade() -> None:
    op.drop_index("ix_summaries_awaiting", table_name="summaries")
