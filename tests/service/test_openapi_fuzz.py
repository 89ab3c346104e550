"""Every endpoint fuzzed from the app's own OpenAPI schema (schemathesis): whatever a client
sends, valid or not, no 5xx and no response outside what the schema promises.

The caller is an admin of a pool holding the sample corpus, so every operation is reachable;
answers are extractive (no network)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from indexing.bulk import bulk_ingest
from service.app import create_app
from service.keys import Keys
from service.pool import open_pool
from service.settings import Settings
from tests.service.conftest import MANIFEST, SAMPLE

pytestmark = pytest.mark.slow

#: No 5xx; every status, content type, header and body as the schema documents it. (Not
#: checked: that every schema-valid request succeeds, since the schema cannot say that a
#: cursor must be one the server issued, nor the Allow header of a 405.)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


#: The fuzzed app. Building it opens nothing (the pool opens when it starts), so the schema
#: can be read at collection; the fixture below fills its pool and starts it.
SETTINGS = Settings(home=Path(tempfile.mkdtemp(prefix="kpool-fuzz-")) / "home", refresh_seconds=60)
APP = create_app(SETTINGS)
ADMIN: dict[str, str] = {}
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def started_app() -> Iterator[None]:
    """The sample corpus in the app's pool, an admin key, and the app running."""
    pool = open_pool(SETTINGS)
    try:
        assert bulk_ingest(pool, [SAMPLE], manifest=MANIFEST).ok
        _, ADMIN["secret"] = Keys(pool.store).create(role="admin")
    finally:
        pool.close()
    with TestClient(APP):
        yield
    shutil.rmtree(SETTINGS.home.parent, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_endpoint_fails_or_breaks_its_schema(case: schemathesis.Case) -> None:
    response = case.call_and_validate(
        headers={"Authorization": f"Bearer {ADMIN['secret']}"}, checks=CHECKS
    )
    assert response.status_code != 401  # the fuzzing reaches the endpoints themselves
