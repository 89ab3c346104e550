"""The kpool command line, run in-process against a pool in a temporary KPOOL_HOME."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from indexing.store import Store, sqlite_url
from service.cli import main
from tests.service.conftest import MANIFEST, SAMPLE


@pytest.fixture
def home(tmp_path: Path, sample_home: Path) -> Path:
    target = tmp_path / "home"
    shutil.copytree(sample_home, target)
    return target


def kpool(home: Path, *args: str, **env: str) -> Result:
    runner = CliRunner()
    return runner.invoke(main, list(args), env={"KPOOL_HOME": str(home), **env})


def as_json(result: Result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_ingest_adds_then_leaves_unchanged(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    first = as_json(kpool(home, "ingest", str(SAMPLE), "--manifest", str(MANIFEST), "--json"))
    assert first["summary"] == {
        "added": 21,
        "updated": 0,
        "unchanged": 0,
        "failed": 0,
        "pruned": 0,
    }
    again = as_json(kpool(home, "ingest", str(SAMPLE), "--json"))
    assert again["summary"]["unchanged"] == 21


def test_ingest_exits_1_and_names_the_bad_file_while_the_rest_ingests(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("Canteen policy\n\nLunch is served from noon.")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\nnot really a pdf")
    result = kpool(tmp_path / "home", "ingest", str(folder))
    assert result.exit_code == 1
    assert "broken.pdf" in result.stdout
    assert "1 added" in result.stdout and "1 failed" in result.stdout


def test_ingest_dry_run_changes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    report = as_json(kpool(home, "ingest", str(SAMPLE), "--dry-run", "--json"))
    assert report["summary"]["added"] == 21
    listing = as_json(kpool(home, "docs", "list", "--json"))
    assert listing["data"] == []


def test_route_prints_ranked_documents_with_matched_terms(home: Path) -> None:
    result = kpool(home, "route", "how many days of annual leave can I carry over?")
    assert result.exit_code == 0
    assert result.stdout.startswith("1. Annual Leave Policy")
    assert "matched:" in result.stdout


def test_route_json_has_scores_and_terms(home: Path) -> None:
    body = as_json(kpool(home, "route", "expenses receipts for a client dinner", "--json"))
    assert body["documents"][0]["title"] == "Expenses Policy"
    assert body["documents"][0]["matched_terms"]


def test_route_says_so_when_nothing_matches(home: Path) -> None:
    result = kpool(home, "route", "xylophone quokka")
    assert result.exit_code == 0
    assert "No document" in result.stdout


def test_docs_list_pages_with_a_cursor(home: Path) -> None:
    first = as_json(kpool(home, "docs", "list", "--limit", "15", "--json"))
    assert len(first["data"]) == 15 and first["next_cursor"]
    second = as_json(
        kpool(home, "docs", "list", "--limit", "15", "--cursor", first["next_cursor"], "--json")
    )
    assert len(second["data"]) == 6 and second["next_cursor"] is None
    ids = [d["id"] for d in first["data"] + second["data"]]
    assert len(set(ids)) == 21


def test_ingest_sets_attributes_that_route_ask_and_docs_list_filter_on(tmp_path: Path) -> None:
    home, folder = tmp_path / "home", tmp_path / "docs"
    folder.mkdir()
    (folder / "hr.md").write_text("# HR leave\n\nAnnual leave is 25 days a year.")
    (folder / "it.md").write_text("# IT leave\n\nAnnual leave for on-call staff is 27 days.")
    (folder / "legal.md").write_text("# Legal leave\n\nAnnual leave for counsel is 26 days.")
    manifest = folder / "manifest.jsonl"
    manifest.write_text('{"path": "legal.md", "attributes": {"department": "Legal"}}\n')
    hr = ["--attribute", "department=HR", "--attribute", "region=UK", "--attribute", "region=IE"]
    as_json(kpool(home, "ingest", str(folder / "hr.md"), *hr, "--attribute", "year=2024", "--json"))
    it = ["--attribute", "department=IT", "--attribute", "year=2025", "--manifest", str(manifest)]
    as_json(kpool(home, "ingest", str(folder / "it.md"), str(folder / "legal.md"), *it, "--json"))

    def titles(*command: str) -> set[str]:
        body = as_json(kpool(home, *command, "--json"))
        return {d["title"] for d in body.get("documents", body.get("data", []))}

    assert titles("route", "annual leave") == {"HR leave", "IT leave", "Legal leave"}
    assert titles("route", "annual leave", "--attribute", "department=HR") == {"HR leave"}
    assert titles("route", "annual leave", "--attribute", "region=IE") == {"HR leave"}
    assert titles("route", "annual leave", "--attribute", "year>=2025") == {
        "IT leave",
        "Legal leave",
    }
    assert titles("ask", "annual leave", "--attribute", "department=Legal") == {"Legal leave"}
    assert titles("docs", "list", "--attribute", "department=IT") == {"IT leave"}
    listing = as_json(kpool(home, "docs", "list", "--attribute", "year=2024", "--json"))
    assert listing["data"][0]["attributes"] == {
        "department": "HR",
        "region": ["UK", "IE"],
        "year": 2024,
    }


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["route", "leave", "--attribute", "year>=soon"], "year: gte must be a number or an ISO"),
        (["ask", "leave", "--attribute", "department"], "'department' is not NAME=VALUE"),
        (["docs", "list", "--attribute", "a=1", "--attribute", "a<0"], "a: give values (=) or"),
        (["ingest", ".", "--attribute", "year>=2024"], "'year>=2024' is not NAME=VALUE"),
    ],
)
def test_a_bad_attribute_option_is_a_usage_error(
    home: Path, command: list[str], message: str
) -> None:
    result = kpool(home, *command)
    assert result.exit_code == 2
    assert "Invalid value for '--attribute'" in result.output and message in result.output


def test_docs_show_and_rm(home: Path) -> None:
    listing = as_json(kpool(home, "docs", "list", "--tag", "travel", "--json"))
    (travel,) = listing["data"]
    shown = as_json(kpool(home, "docs", "show", travel["id"], "--text", "--json"))
    assert shown["title"] == "Business Travel Policy"
    assert shown["page_count"] >= 2 and "travel" in shown["text"].lower()
    assert kpool(home, "docs", "rm", travel["id"]).exit_code == 0
    routed = as_json(kpool(home, "route", "business travel flights booking", "--json"))
    assert travel["id"] not in {d["document_id"] for d in routed["documents"]}
    missing = kpool(home, "docs", "show", travel["id"])
    assert missing.exit_code == 1
    assert "no document with id" in missing.output
    assert "Traceback" not in missing.output


def test_docs_rm_with_an_unknown_id_removes_nothing(home: Path) -> None:
    before = as_json(kpool(home, "docs", "list", "--json"))["data"]
    good = before[0]["id"]

    result = kpool(home, "docs", "rm", good, "doc_bogus", "doc_bogus", "doc_other")

    assert result.exit_code == 1
    assert "no document with id 'doc_bogus', 'doc_other'; nothing was removed" in result.output
    assert as_json(kpool(home, "docs", "list", "--json"))["data"] == before
    both = as_json(kpool(home, "docs", "rm", good, before[1]["id"], "--json"))
    assert [d["id"] for d in both["removed"]] == [good, before[1]["id"]]


def test_reconcile_finds_and_fixes_a_missing_remote_file(home: Path) -> None:
    assert kpool(home, "reconcile").exit_code == 0
    listing = as_json(kpool(home, "docs", "list", "--limit", "1", "--json"))
    file_id = listing["data"][0]["file_id"]
    for path in (home / "files").glob(f"{file_id}.*"):
        path.unlink()
    report = kpool(home, "reconcile", "--json")
    assert report.exit_code == 1
    assert json.loads(report.stdout)["missing"][0]["file_id"] == file_id
    fixed = as_json(kpool(home, "reconcile", "--fix", "--json"))
    assert fixed["missing"] == [] and fixed["fixed"]
    assert kpool(home, "reconcile").exit_code == 0


def test_changed_bm25_settings_stop_with_a_message_until_reindex(home: Path) -> None:
    refused = kpool(home, "route", "annual leave", KPOOL_BM25_K1="1.5")
    assert refused.exit_code == 1
    assert "bm25.k1: pool has 1.2, configured 1.5" in refused.output
    assert "kpool reindex" in refused.output
    assert as_json(kpool(home, "reindex", "--json", KPOOL_BM25_K1="1.5")) == {"reindexed": 21}
    assert kpool(home, "route", "annual leave", KPOOL_BM25_K1="1.5").exit_code == 0


def test_invalid_setting_names_the_variable(home: Path) -> None:
    result = kpool(home, "route", "annual leave", KPOOL_TOP_K="0")
    assert result.exit_code == 1
    assert "KPOOL_TOP_K" in result.output


def test_a_passage_stride_longer_than_the_window_is_refused(home: Path) -> None:
    result = kpool(
        home, "route", "annual leave", KPOOL_PASSAGE_WINDOW="100", KPOOL_PASSAGE_STRIDE="200"
    )
    assert result.exit_code == 1
    assert "KPOOL_PASSAGE_STRIDE (200) must not exceed KPOOL_PASSAGE_WINDOW (100)" in result.output


def test_semantic_routing_without_its_model_is_one_clear_line(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexing import semantic

    monkeypatch.setattr(semantic, "WEIGHTS_PACKAGE", "no_such_model_package_here")
    monkeypatch.setattr(semantic, "_shared", None)
    result = kpool(home, "route", "annual leave", KPOOL_SEMANTIC="1")
    assert result.exit_code == 1
    assert "semantic routing needs the embedding model: run `make semantic`" in result.output
    assert "or set KPOOL_SEMANTIC=0 to route by words only" in result.output
    assert "Traceback" not in result.output


def test_semantic_routing_is_on_unless_switched_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.settings import Settings

    monkeypatch.delenv("KPOOL_SEMANTIC")  # the suite switches it off (tests/conftest.py)
    assert Settings(home=tmp_path).pool_config().semantic
    by_meaning = Settings(home=tmp_path).routing_options()
    # with meaning, BM25 scores whole documents: the passages count through their vectors
    assert (by_meaning.semantic_weight, by_meaning.passage_weight) == (0.5, 0.0)
    monkeypatch.setenv("KPOOL_SEMANTIC", "0")
    assert not Settings(home=tmp_path).pool_config().semantic
    by_words = Settings(home=tmp_path).routing_options()
    assert (by_words.semantic_weight, by_words.passage_weight) == (0.0, 1.0)
    # blank is unset; a passage weight that is set applies either way
    monkeypatch.setenv("KPOOL_PASSAGE_WEIGHT", " ")
    assert Settings(home=tmp_path).routing_options().passage_weight == 1.0
    monkeypatch.setenv("KPOOL_PASSAGE_WEIGHT", "0.5")
    for semantic in ("0", "1"):
        monkeypatch.setenv("KPOOL_SEMANTIC", semantic)
        assert Settings(home=tmp_path).routing_options().passage_weight == 0.5


def ingest_two_policies(tmp_path: Path, *options: str) -> tuple[Result, Store]:
    """``kpool ingest`` of two small policies with semantic routing on; its result, and the
    pool's store, for the caller to close."""
    from tests.indexing.test_semantic import model_installed

    if not model_installed():
        pytest.skip("the embedding model is not installed (make semantic)")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "leave.txt").write_text("Family leave\n\nUp to twelve weeks to care for a parent.")
    (folder / "parking.txt").write_text("Parking\n\nVisitors park in lot C.")
    home = tmp_path / "home"
    result = kpool(home, "ingest", str(folder), *options, KPOOL_SEMANTIC="1")
    assert result.exit_code == 0, result.output
    return result, Store.open(sqlite_url(home / "pool.db"))


def test_semantic_ingest_leaves_no_document_without_its_vectors(tmp_path: Path) -> None:
    result, store = ingest_two_policies(tmp_path)
    assert "computing sentence vectors for 2 documents" in result.stderr
    assert "gave 2 documents their sentence vectors" in result.stderr
    try:
        assert store.count_awaiting_vectors() == 0
        assert all(e.passages and e.passages.embeddings is not None for e in store.index_entries())
    finally:
        store.close()


def test_ingest_can_leave_the_vectors_to_the_server(tmp_path: Path) -> None:
    result, store = ingest_two_policies(tmp_path, "--no-vectors")
    assert "sentence vectors" not in result.stderr
    try:
        assert store.count_awaiting_vectors() == 2
    finally:
        store.close()


def test_eval_prints_exactly_the_documented_keys(tmp_path: Path) -> None:
    dataset = tmp_path / "beir"
    (dataset / "qrels").mkdir(parents=True)
    corpus = [
        {"_id": "d1", "title": "Annual leave", "text": "Staff get 25 days of annual leave."},
        {"_id": "d2", "title": "Expenses", "text": "Keep receipts for every expense claim."},
        {"_id": "d3", "title": "Travel", "text": "Book flights through the travel desk."},
    ]
    queries = [{"_id": "q1", "text": "how many leave days"}, {"_id": "q2", "text": "receipts"}]
    unanswerable = [{"_id": "u1", "text": "parking permits"}, {"_id": "u2", "text": "travel"}]
    (dataset / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus))
    (dataset / "unanswerable.jsonl").write_text("\n".join(json.dumps(q) for q in unanswerable))
    (dataset / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (dataset / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"
    )
    result = kpool(tmp_path / "unused", "eval", str(dataset), "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics.pop("route_ms_p50") > 0 and metrics.pop("index_bytes") > 0
    assert metrics == {
        "queries": 2,
        "recall@1": 1.0,
        "recall@3": 1.0,
        "recall@10": 1.0,
        "ndcg@10": 1.0,
        "mrr@10": 1.0,
        "abstain_answerable": 0.0,
        "unanswerable": 2,
        # "parking permits" matches nothing; "travel" matches the travel page (no threshold)
        "abstain_unanswerable": 0.5,
    }


def test_eval_rejects_a_folder_that_is_not_a_beir_dataset(tmp_path: Path) -> None:
    result = kpool(tmp_path / "unused", "eval", str(tmp_path))
    assert result.exit_code == 1
    assert "corpus.jsonl is missing" in result.output


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("q1 0 d1 1\n", "names no query of queries.jsonl with a relevant document"),
        ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", "test.tsv:2: the score 'high'"),
    ],
)
def test_eval_says_what_is_wrong_with_its_qrels(tmp_path: Path, qrels: str, message: str) -> None:
    data = tmp_path / "set"
    (data / "qrels").mkdir(parents=True)
    (data / "corpus.jsonl").write_text('{"_id": "d1", "title": "Leave", "text": "annual leave"}\n')
    (data / "queries.jsonl").write_text('{"_id": "q1", "text": "annual leave"}\n')
    (data / "qrels" / "test.tsv").write_text(qrels)

    result = kpool(tmp_path / "unused", "eval", str(data))

    assert result.exit_code == 1 and message in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["ingest"],
        ["route"],
        ["ask"],
        ["docs", "list"],
        ["docs", "show"],
        ["docs", "rm"],
        ["reconcile"],
        ["reindex"],
        ["eval"],
    ],
)
def test_every_command_has_help_with_an_example(command: list[str], tmp_path: Path) -> None:
    result = kpool(tmp_path, *command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.stdout
