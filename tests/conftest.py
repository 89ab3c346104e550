"""Shared fixtures: the fake Anthropic server and real, cheap resources.

``database_url`` runs a test against SQLite (a file under ``tmp_path``) and, when
``KPOOL_TEST_DATABASE_URL`` is set, against PostgreSQL in a schema of its own that is dropped
afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexing.store import sqlite_url
from tests.databases import POSTGRES_ENV, postgres_schema

pytest_plugins = ["tests.fakes.fixtures"]

# Semantic routing is on by default, and its server computes vectors in a background thread that
# would re-rank a test's documents under it. Tests ask for it where they test it (the settings'
# or the pool's ``semantic``, or the variable in a command's environment); subprocesses inherit
# this too.
os.environ["KPOOL_SEMANTIC"] = "0"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a SQLite file, or a PostgreSQL schema of the test's own."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "pool.db")
        return
    base_url = os.environ.get(POSTGRES_ENV)
    if not base_url:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}, e.g. postgresql+psycopg://host/db")
    with postgres_schema(base_url) as url:
        yield url
