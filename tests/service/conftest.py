"""Fixtures for the service: settings in a temporary home, a pool holding the sample corpus,
and the app on top of it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from indexing.bulk import bulk_ingest
from indexing.pool import Pool
from service.app import create_app
from service.pool import open_pool
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample" / "corpus"
MANIFEST = ROOT / "sample" / "manifest.csv"


@pytest.fixture(scope="session")
def sample_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pool home holding the sample corpus, built once; tests get their own copy."""
    home = tmp_path_factory.mktemp("sample") / "home"
    pool = open_pool(Settings(home=home), load_index=False)
    try:
        report = bulk_ingest(pool, [SAMPLE], manifest=MANIFEST)
    finally:
        pool.close()
    assert report.ok, report.as_dict()
    return home


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", refresh_seconds=0.05)


@pytest.fixture
def sample_pool(settings: Settings, sample_home: Path) -> Iterator[Pool]:
    shutil.copytree(sample_home, settings.home)
    pool = open_pool(settings)
    yield pool
    pool.close()


@pytest.fixture
def client(settings: Settings, sample_pool: Pool) -> Iterator[TestClient]:
    with TestClient(create_app(settings, pool=sample_pool)) as test_client:
        yield test_client
