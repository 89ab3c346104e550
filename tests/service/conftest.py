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
from tests.fakes.anthropic_server import FakeAnthropic

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample" / "corpus"
MANIFEST = ROOT / "sample" / "manifest.csv"


#: The part of the sample corpus uploaded to the fake Files API for Claude-mode tests.
KEEP = [
    "hr/annual-leave.md",
    "hr/sick-leave.md",
    "finance/expenses.pdf",
    "finance/travel.pdf",
    "operations/remote-work.md",
]
LEAVE_QUESTION = "how many days of annual leave can I carry over into next year?"


@pytest.fixture
def claude_settings(tmp_path: Path, fake_anthropic: FakeAnthropic) -> Settings:
    return Settings(
        home=tmp_path / "home",
        anthropic_api_key=fake_anthropic.api_key,  # type: ignore[arg-type]
        anthropic_base_url=fake_anthropic.base_url,
        anthropic_timeout=5.0,
        anthropic_max_retries=2,
        refresh_seconds=0.05,
    )


@pytest.fixture
def claude_pool(claude_settings: Settings, tmp_path: Path) -> Iterator[Pool]:
    corpus = tmp_path / "corpus"
    for name in KEEP:
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / name, corpus / name)
    pool = open_pool(claude_settings)
    assert bulk_ingest(pool, [corpus]).ok
    yield pool
    pool.close()


@pytest.fixture
def claude(claude_settings: Settings, claude_pool: Pool) -> Iterator[TestClient]:
    with TestClient(create_app(claude_settings, pool=claude_pool)) as client:
        yield client


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
