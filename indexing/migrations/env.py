"""Alembic environment: migrations run on a connection handed over by ``indexing.store``."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import indexing.models  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through indexing.store.migrate(), which passes a connection")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
