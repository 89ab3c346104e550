"""Fixtures for the store, ingest, bulk and reconcile tests: real databases, real backends.

``database_url`` (from ``tests/conftest.py``) is SQLite and, when configured, PostgreSQL.
``files_backend`` is the local store unless a test asks for ``"anthropic"``
(indirect parametrisation), which is the real SDK talking to the fake server. ``open_pool``
opens pools on that database and backend and closes them at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from indexing.anthropic_files import AnthropicFilesBackend
from indexing.files import FilesBackend, LocalFilesBackend
from indexing.pool import Pool, PoolConfig

OpenPool = Callable[..., Pool]


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
