"""PostgreSQL for tests: a schema of the test's own on the server named by
``KPOOL_TEST_DATABASE_URL``, dropped afterwards."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url

from indexing.store import make_engine

POSTGRES_ENV = "KPOOL_TEST_DATABASE_URL"


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh schema on the server at ``base_url``; yields a URL whose search_path is it."""
    schema = "kpool_test_" + secrets.token_hex(6)
    admin = make_engine(base_url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
