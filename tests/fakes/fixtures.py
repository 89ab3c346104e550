"""Pytest plugin: the fake Anthropic server and an SDK client pointed at it.

``fake_anthropic_server`` runs once per session; ``fake_anthropic`` resets it for each test and
fails the test if the fake itself crashed while serving it; ``anthropic_client`` is the real SDK
client built by ``indexing.anthropic_client.make_client`` with ``base_url`` set to the fake.
The fake serves the Files and the Messages endpoints (``tests/fakes/messages.py``); the Messages
controls (scripted replies, latency, stream errors, the prompt cache's clock) are
``fake_anthropic.messages``.

The SDK backs off 0.5 s·2^n between retries unless the answer says otherwise; the fake's
injected 429/529/5xx answers carry ``retry-after-ms: 10`` by default, so retry tests stay fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from indexing.anthropic_client import make_client
from tests.fakes.anthropic_server import FakeAnthropic, FakeAnthropicServer


@pytest.fixture(scope="session")
def fake_anthropic_server() -> Iterator[FakeAnthropic]:
    """One running fake for the whole session (uvicorn in a background thread)."""
    with FakeAnthropicServer(FakeAnthropic()) as fake:
        yield fake


@pytest.fixture
def fake_anthropic(fake_anthropic_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    """The running fake, emptied of files, requests and injected failures."""
    fake_anthropic_server.reset()
    yield fake_anthropic_server
    if fake_anthropic_server.internal_errors:
        errors = list(fake_anthropic_server.internal_errors)
        pytest.fail(f"the fake Anthropic server crashed while serving this test: {errors!r}")


@pytest.fixture
def anthropic_client(fake_anthropic: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    """The real SDK client, talking to the fake (short timeout, 3 retries)."""
    client = make_client(
        api_key=fake_anthropic.api_key,
        base_url=fake_anthropic.base_url,
        timeout=10.0,
        max_retries=3,
    )
    try:
        yield client
    finally:
        client.close()
