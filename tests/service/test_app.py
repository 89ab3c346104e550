"""The HTTP surface so far: health, readiness and routing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from indexing.ingest import IngestRequest, ingest
from service.app import create_app
from service.pool import open_pool
from service.settings import Settings


def test_healthz_answers_ok(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_each_check(client: TestClient) -> None:
    body = client.get("/readyz").json()
    assert body["status"] == "ok"
    assert body["checks"] == {"store": "ok", "index": "ok", "files_backend": "ok"}
    assert body["documents"] == 21
    assert body["backend"] == "local"


def test_route_finds_the_policy_that_answers(client: TestClient) -> None:
    response = client.post(
        "/v1/route", json={"question": "how many days of annual leave can I carry over?"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["documents"][0]["title"] == "Annual Leave Policy"
    first = body["documents"][0]
    assert first["file_id"].startswith("file_")
    assert first["matched_terms"]["annual"] > 0
    assert sum(first["matched_terms"].values()) == pytest.approx(first["score"], rel=1e-4)
    assert len(body["documents"]) <= 3
    # where in the document's text the best-matching passage lies
    assert 0 <= first["passage"]["start_char"] < first["passage"]["end_char"]


def test_route_returns_nothing_when_no_term_matches(client: TestClient) -> None:
    body = client.post("/v1/route", json={"question": "xylophone quokka"}).json()
    assert body["documents"] == []


def test_route_honours_top_k_and_tags(client: TestClient) -> None:
    body = client.post(
        "/v1/route", json={"question": "leave policy days", "top_k": 10, "tags": ["leave"]}
    ).json()
    titles = {d["title"] for d in body["documents"]}
    assert titles and titles <= {
        "Annual Leave Policy",
        "Sickness Absence Policy",
        "Parental Leave Policy",
    }


def test_route_hides_group_restricted_documents_from_anonymous_callers(
    client: TestClient,
) -> None:
    body = client.post(
        "/v1/route", json={"question": "pay review procedure salary bands", "top_k": 21}
    ).json()
    assert "Pay Review Procedure" not in {d["title"] for d in body["documents"]}


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({}, "question"),
        ({"question": ""}, "question"),
        ({"question": "leave", "top_k": 0}, "top_k"),
        ({"question": "leave", "top_k": 101}, "top_k"),
        ({"question": "x" * 4001}, "question"),
    ],
)
def test_route_rejects_bad_requests_with_a_clear_error(
    client: TestClient, payload: dict[str, object], where: str
) -> None:
    response = client.post("/v1/route", json=payload)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert where in error["message"]


def test_unknown_path_gets_the_error_shape(client: TestClient) -> None:
    response = client.get("/v1/nope")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_documents_ingested_by_another_process_reach_routing(
    client: TestClient, settings: Settings
) -> None:
    question = "beekeeping hives"
    assert client.post("/v1/route", json={"question": question}).json()["documents"] == []
    cron = open_pool(settings, load_index=False)  # what a cron bulk ingest opens
    try:
        text = b"Beekeeping policy\n\nHives may be kept on the office roof with approval."
        outcome = ingest(cron, IngestRequest(source="bees.txt", data=text))
        assert outcome.status == "added"
    finally:
        cron.close()
    deadline = time.monotonic() + 10
    titles: list[str] = []
    while time.monotonic() < deadline:
        body = client.post("/v1/route", json={"question": question}).json()
        titles = [d["title"] for d in body["documents"]]
        if titles:
            break
        time.sleep(0.05)
    assert titles == ["Beekeeping policy"]


def test_every_route_has_a_summary(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            # FastAPI derives a summary from the function name; the docstring is ours.
            assert operation.get("description"), f"{method.upper()} {path} has no docstring"


def test_route_finds_a_paraphrase_by_meaning_when_semantic_is_on(tmp_path: Path) -> None:
    from tests.indexing.test_semantic import DOCUMENTS, PARAPHRASE, model_installed

    if not model_installed():
        pytest.skip("the embedding model is not installed (make semantic)")
    results = {}
    for semantic in (False, True):
        settings = Settings(home=tmp_path / str(semantic), semantic=semantic, refresh_seconds=0.05)
        pool = open_pool(settings)
        for title, text in DOCUMENTS.items():
            request = IngestRequest(source=title, data=text.encode(), filename="p.txt", title=title)
            ingest(pool, request)
        with TestClient(create_app(settings, pool=pool)) as client:
            if semantic:
                # the server's background thread gives the new documents their vectors
                deadline = time.monotonic() + 120  # a guard against a hang, not a timing
                while client.get("/readyz").json()["awaiting_vectors"]:
                    assert time.monotonic() < deadline, "the server never computed the vectors"
                    time.sleep(0.05)
                pool.refresh()
            body = client.post("/v1/route", json={"question": PARAPHRASE, "top_k": 1}).json()
        pool.close()
        results[semantic] = body["documents"][0]
    assert results[False]["title"] == "Parking"
    assert results[True]["title"] == "Family and medical leave"
    span = results[True]["passage"]
    assert 0 <= span["start_char"] < span["end_char"]
