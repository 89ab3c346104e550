"""Fixtures for the store, ingest, bulk and reconcile tests: real databases, real backends.

``database_url`` runs a test against SQLite (a file under ``tmp_path``) and, when
``KPOOL_TEST_DATABASE_URL`` is set, against PostgreSQL in a schema of its own that is dropped
afterwards. ``files_backend`` is the local store unless a test asks for ``"anthropic"``
(indirect parametrisation), which is the real SDK talking to the fake server. ``open_pool``
opens pools on that database and backend and closes them at teardown.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from indexing.anthropic_files import AnthropicFilesBackend
from indexing.files import FilesBackend, LocalFilesBackend
from indexing.pool import Pool, PoolConfig
from indexing.store import make_engine, sqlite_url

POSTGRES_ENV = "KPOOL_TEST_DATABASE_URL"

OpenPool = Callable[..., Pool]


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


@pytest.fixture
def files_backend(request: pytest.FixtureRequest, tmp_path: Path) -> FilesBackend:
    """``"local"`` (default): files under ``tmp_path``; ``"anthropic"``: the fake Files API."""
    kind = getattr(request, "param", "local")
    if kind == "local":
        return LocalFilesBackend(tmp_path / "files")
    if kind == "anthropic":
        return AnthropicFilesBackend(request.getfixturevalue("anthropic_client"))
    raise ValueError(f"unknown files backend {kind!r}")


@pytest.fixture
def open_pool(database_url: str, files_backend: FilesBackend, tmp_path: Path) -> Iterator[OpenPool]:
    """``open_pool(backend=None, check_params=True, **PoolConfig fields) -> Pool``.

    Every pool opened shares the test's database and (unless told otherwise) its backend, the
    way two processes of one deployment would; all are closed at teardown.
    """
    opened: list[Pool] = []

    def open_(
        *, backend: FilesBackend | None = None, check_params: bool = True, **config: Any
    ) -> Pool:
        pool_config = PoolConfig(data_dir=tmp_path / "data", database_url=database_url, **config)
        pool = Pool.open(pool_config, backend or files_backend, check_params=check_params)
        opened.append(pool)
        return pool

    yield open_
    for pool in opened:
        pool.close()


@pytest.fixture
def pool(open_pool: OpenPool) -> Pool:
    return open_pool()


@pytest.fixture
def remove_remote(request: pytest.FixtureRequest) -> Callable[[FilesBackend, str], None]:
    """Delete a remote file behind the pool's back (the console, another service)."""

    def remove(backend: FilesBackend, file_id: str) -> None:
        if isinstance(backend, AnthropicFilesBackend):
            request.getfixturevalue("fake_anthropic").delete_out_of_band(file_id)
        else:
            assert backend.delete(file_id)

    return remove
