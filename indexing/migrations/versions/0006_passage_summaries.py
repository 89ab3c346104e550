"""Per-passage statistics in the summaries, for passage-aware routing (``indexing.passages``).

Existing rows get none; the pool's index parameters gain a ``passages`` part at the same time,
so a pool indexed before this asks for ``kpool reindex``, which fills them in.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = ("passage_hashes", "passage_counts", "passage_layout")


def upgrade() -> None:
    with op.batch_alter_table("summaries") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("summaries") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
