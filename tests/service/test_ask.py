"""POST /v1/ask and `kpool ask` in the embedded default: the extractive answerer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient

from indexing.pool import Pool
from service.app import create_app
from service.cli import main
from service.extractive import sentence_spans
from service.settings import Settings
from tests.factories import make_pdf

QUESTION = "how many days of annual leave can I carry over?"


def test_ask_quotes_passages_with_exact_char_citations(
    client: TestClient, sample_pool: Pool
) -> None:
    response = client.post("/v1/ask", json={"question": QUESTION})
    assert response.status_code == 200
    body = response.json()
    assert body["mode"] == "extractive" and body["model"] is None
    assert body["citations"], body
    routed = {d["file_id"] for d in body["documents"]}
    for number, citation in enumerate(body["citations"], start=1):
        assert citation["number"] == number
        assert f"[{number}]" in body["answer"]
        assert citation["file_id"] in routed
        text = sample_pool.store.get_content(citation["document_id"]).text
        start, end = citation["start_char_index"], citation["end_char_index"]
        assert text[start:end] == citation["cited_text"]
    assert "Annual Leave Policy" in {c["document_title"] for c in body["citations"]}


def test_ask_abstains_without_documents_when_nothing_matches(client: TestClient) -> None:
    body = client.post("/v1/ask", json={"question": "xylophone quokka"}).json()
    assert body["documents"] == [] and body["citations"] == []
    assert "No document in the pool covers this question" in body["answer"]


def test_ask_never_quotes_a_group_restricted_document_to_anonymous_callers(
    client: TestClient,
) -> None:
    body = client.post("/v1/ask", json={"question": "pay review salary bands"}).json()
    assert "Pay Review Procedure" not in {d["title"] for d in body["documents"]}
    assert "Pay Review Procedure" not in {c["document_title"] for c in body["citations"]}


def test_ask_rejects_an_empty_question(client: TestClient) -> None:
    response = client.post("/v1/ask", json={"question": ""})
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "invalid_request"


def test_extractive_answers_quote_a_pdf_longer_than_a_request_could_carry(
    settings: Settings, sample_pool: Pool
) -> None:
    pages = ["Sabbatical leave: staff with seven years of service may take a sabbatical."] * 120
    roomy = settings.model_copy(update={"token_budget": 1_000_000})
    with TestClient(create_app(roomy, pool=sample_pool)) as client:
        client.post(
            "/v1/documents",
            files={"file": ("sabbatical.pdf", make_pdf(pages, title="Sabbaticals"))},
            data={"tags": "sabbatical"},
        )
        question = {"question": "sabbatical seven years", "tags": ["sabbatical"]}
        body = client.post("/v1/ask", json=question).json()

    assert [d["title"] for d in body["documents"]] == ["Sabbaticals"]
    assert body["citations"] and "seven years" in body["citations"][0]["cited_text"]


def test_cli_ask_json_is_the_http_answer(tmp_path: Path, sample_home: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(sample_home, home)
    result = CliRunner().invoke(main, ["ask", QUESTION, "--json"], env={"KPOOL_HOME": str(home)})
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == {
        "answer",
        "citations",
        "documents",
        "usage",
        "model",
        "mode",
        "request_id",
        "conversation_id",
    }
    assert body["citations"] and body["mode"] == "extractive"


def test_cli_ask_prints_numbered_sources(tmp_path: Path, sample_home: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(sample_home, home)
    result = CliRunner().invoke(main, ["ask", QUESTION], env={"KPOOL_HOME": str(home)})
    assert result.exit_code == 0
    assert "Sources:" in result.stdout and "[1] " in result.stdout


def test_sentences_are_trimmed_spans_of_the_text() -> None:
    text = "First rule. Second rule!\n\n- A bullet point\n- Another one\nLast line"
    spans = [text[s:e] for s, e in sentence_spans(text)]
    assert spans == ["First rule.", "Second rule!", "- A bullet point", "- Another one\nLast line"]
