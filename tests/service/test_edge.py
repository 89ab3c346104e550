"""Text no store can keep (NUL, lone surrogates) is refused before any work is done, on
SQLite and PostgreSQL alike: PostgreSQL would otherwise fail only when the answer or its audit
entry is written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.audit import AuditLog
from service.settings import Settings

BEES = b"# Beekeeping\n\nThe office hives are inspected every week by the facilities team."


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path / "home", database_url=database_url)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def audited(client: TestClient) -> int:
    pool: Any = client.app.state.pool  # type: ignore[attr-defined]
    return len(AuditLog(pool.store).entries(limit=1000))


JSON_BODIES = [
    pytest.param("/v1/ask", {"question": "bees\x00 hives"}, "body.question", id="ask-question"),
    pytest.param("/v1/ask", {"question": "bees \ud800"}, "body.question", id="ask-surrogate"),
    pytest.param(
        "/v1/ask",
        {"question": "bees", "conversation_id": "conv_\x00"},
        "body.conversation_id",
        id="ask-conversation",
    ),
    pytest.param("/v1/ask", {"question": "bees", "tags": ["a\x00"]}, "body.tags", id="ask-tags"),
    pytest.param("/v1/route", {"question": "bees\x00"}, "body.question", id="route-question"),
    pytest.param(
        "/v1/ask", {"question": " \n\t "}, "body.question: Value error, is blank", id="blank"
    ),
    pytest.param("/v1/route", {"question": "   "}, "is blank", id="route-blank"),
]


@pytest.mark.parametrize(("path", "body", "needle"), JSON_BODIES)
def test_a_body_holding_text_no_store_keeps_is_422(
    served: TestClient, path: str, body: dict[str, Any], needle: str
) -> None:
    before = audited(served)

    # Escaped as JSON sends them (a lone surrogate has no UTF-8 of its own).
    sent = json.dumps(body, ensure_ascii=True)
    response = served.post(path, content=sent, headers={"content-type": "application/json"})

    assert response.status_code == 422, response.text
    assert needle in response.text
    assert audited(served) == before


URLS = [
    ("GET", "/v1/documents/doc_%00"),
    ("PUT", "/v1/documents/doc_%00"),
    ("DELETE", "/v1/documents/doc_%00"),
    ("GET", "/v1/conversations/conv_%00"),
    ("DELETE", "/v1/conversations/conv_%00"),
    ("GET", "/v1/documents?tag=a%00b"),
    ("GET", "/v1/audit?since=2026%00"),
]


@pytest.mark.parametrize(("method", "url"), URLS)
def test_a_url_holding_nul_is_400(served: TestClient, method: str, url: str) -> None:
    response = served.request(method, url, json={"title": "x"} if method == "PUT" else None)

    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request",
        "message": "the request URL contains a NUL character (%00)",
    }


@pytest.mark.parametrize(
    "labels", [{"tags": "ok,a\x00b"}, {"groups": "hr\x00"}], ids=["tags", "groups"]
)
def test_an_upload_with_a_nul_label_is_400_and_adds_nothing(
    served: TestClient, labels: dict[str, str]
) -> None:
    response = served.post("/v1/documents", files={"file": ("bees.md", BEES)}, data=labels)

    assert response.status_code == 400
    assert "U+0000" in response.json()["error"]["message"]
    assert served.get("/v1/documents").json()["data"] == []


def test_a_put_with_a_nul_tag_is_422_and_changes_nothing(served: TestClient) -> None:
    doc = served.post("/v1/documents", files={"file": ("bees.md", BEES)}).json()

    response = served.put(f"/v1/documents/{doc['id']}", json={"tags": ["a\x00"]})

    assert response.status_code == 422
    assert served.get(f"/v1/documents/{doc['id']}").json()["tags"] == []


@pytest.mark.parametrize("since", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_an_audit_start_with_no_utc_time_is_400(served: TestClient, since: str) -> None:
    response = served.get("/v1/audit", params={"since": since})

    assert response.status_code == 400
    assert "out of range" in response.json()["error"]["message"]


def test_a_question_with_ordinary_control_characters_is_still_answered(
    served: TestClient,
) -> None:
    served.post("/v1/documents", files={"file": ("bees.md", BEES)})

    response = served.post("/v1/ask", json={"question": "who inspects\tthe hives?\n"})

    assert response.status_code == 200
    assert [d["title"] for d in response.json()["documents"]] == ["Beekeeping"]
