"""Semantic routing: the numpy encoder against the model's reference implementation, and how the
index fuses meaning with BM25 (by hand, through filters, updates and compaction)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexing import semantic
from indexing.errors import IndexParamsMismatch, SemanticUnavailable
from indexing.index import IndexEntry, InvertedIndex
from indexing.ingest import IngestRequest, ingest, summarise, vectorise
from indexing.passages import passage_text, split_passages
from indexing.pool import Pool
from indexing.summary import PassageVectors, TermVector
from service.router import RoutingOptions, question_text, route

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"


def model_installed() -> bool:
    try:
        semantic.model_directory()
    except SemanticUnavailable:
        return False
    return True


needs_model = pytest.mark.skipif(
    not model_installed(), reason="the embedding model is not installed (make semantic)"
)


# ------------------------------------------------------------------------------- the encoder


@pytest.fixture(scope="module")
def encoder() -> semantic.Encoder:
    return semantic.shared_encoder()


@needs_model
def test_token_ids_match_the_reference_tokenizer(encoder: semantic.Encoder) -> None:
    reference = json.loads(REFERENCE.read_text())
    for sentence, ids in zip(reference["sentences"], reference["input_ids"], strict=True):
        assert encoder.token_ids(sentence) == ids


@needs_model
def test_vectors_match_the_reference_implementation(encoder: semantic.Encoder) -> None:
    """Same vectors as sentence-transformers on torch, to float32 rounding: an empty text, text
    the vocabulary lacks, and text cut at 256 word pieces included."""
    reference = json.loads(REFERENCE.read_text())
    vectors = encoder.encode(reference["sentences"])
    expected = np.array(reference["embeddings"], dtype=np.float32)
    assert vectors.shape == (len(expected), semantic.DIMENSIONS)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@needs_model
def test_one_at_a_time_or_together_gives_the_same_vectors(encoder: semantic.Encoder) -> None:
    texts = ["parental leave", "", "How do I book travel for a conference abroad?"]
    together = encoder.encode(texts)
    for text, vector in zip(texts, together, strict=True):
        np.testing.assert_allclose(encoder.encode([text])[0], vector, atol=1e-6)
    assert encoder.encode([]).shape == (0, semantic.DIMENSIONS)


@needs_model
def test_a_passage_vector_carries_its_documents_title(encoder: semantic.Encoder) -> None:
    """Stored vectors mix each passage with its document's title, so a question's dot product
    with one is the same mix of its cosines to the passage and to the title."""
    title = "Details with other federal agencies"
    texts = ["Submit the request form two weeks ahead.", "Your supervisor approves it first."]
    mixed = semantic.passage_vectors(encoder, title, texts)
    own, about = encoder.encode(texts), encoder.encode([title])[0]
    share = semantic.TITLE_SHARE
    np.testing.assert_allclose(mixed, (1 - share) * own + share * about, atol=1e-6)
    question = encoder.encode(["who signs off on a detail to another agency?"])[0]
    np.testing.assert_allclose(
        mixed @ question, (1 - share) * (own @ question) + share * (about @ question), atol=1e-6
    )
    # a blank title leaves the passages' own vectors; no passages, no vectors
    np.testing.assert_allclose(semantic.passage_vectors(encoder, " ", texts), own, atol=1e-6)
    assert semantic.passage_vectors(encoder, title, []).shape == (0, semantic.DIMENSIONS)


@needs_model
def test_a_question_asked_again_reuses_its_vector(encoder: semantic.Encoder) -> None:
    text = "how many days of annual leave can I carry over?"
    first = encoder.question(text)
    np.testing.assert_allclose(first, encoder.encode([text])[0], atol=1e-6)
    assert encoder.question(text) is first  # kept, not computed again
    assert not first.flags.writeable  # shared by every caller, so nobody may change it
    assert encoder.question(text + " ") is not first
    encoder.forget_questions()
    assert encoder.question(text) is not first


@needs_model
def test_paraphrases_are_closer_than_other_topics(encoder: semantic.Encoder) -> None:
    question, family, travel = encoder.encode(
        [
            "my mom is having surgery and I need weeks off to care for her",
            "Family and medical leave: unpaid, job-protected leave to care for a parent with a "
            "serious health condition",
            "Booking flights and hotels for business travel",
        ]
    )
    assert question @ family > question @ travel + 0.2


def test_a_missing_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(semantic, "WEIGHTS_PACKAGE", "no_such_model_package_here")
    with pytest.raises(SemanticUnavailable, match="make semantic"):
        semantic.model_directory()


@needs_model
def test_other_weights_under_the_same_name_are_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model"
    fake.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (fake / name).write_bytes((semantic.model_directory() / name).read_bytes())
    (fake / "model.safetensors").write_bytes(b"not these weights")
    with pytest.raises(SemanticUnavailable, match=r"safetensors is not the all-MiniLM"):
        semantic.Encoder(fake)
    (fake / "model.safetensors").unlink()
    with pytest.raises(SemanticUnavailable, match=r"cannot read .*model\.safetensors"):
        semantic.Encoder(fake)


# ------------------------------------------------------------------------- vectors in summaries


def test_passage_vectors_round_trip_with_and_without_embeddings() -> None:
    plain = PassageVectors.from_counts([(Counter(a=1), 1, (0, 1)), (Counter(b=2), 2, (2, 5))])
    assert plain.to_bytes()[3] is None
    rng = np.random.default_rng(0)
    with_vectors = plain.with_embeddings(rng.standard_normal((2, 8)).astype(np.float32))
    assert with_vectors.embeddings is not None and with_vectors.embeddings.dtype == np.float16
    again = PassageVectors.from_bytes(*with_vectors.to_bytes())
    assert again.embeddings is not None
    np.testing.assert_array_equal(again.embeddings, with_vectors.embeddings)
    np.testing.assert_array_equal(again.layout, plain.layout)
    with pytest.raises(ValueError, match="3 vectors for 2 passages"):
        plain.with_embeddings(np.zeros((3, 8), np.float32))
    hashes, counts, layout, blob = with_vectors.to_bytes()
    assert blob is not None
    damaged = PassageVectors.from_bytes(hashes, counts, layout, blob[:-2])
    assert damaged.embeddings is None and len(damaged) == 2


# ------------------------------------------------------------------------------------- fusion

DIM = 8


def unit(*values: float) -> np.ndarray:
    vector = np.zeros(DIM, np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def entry(
    file_id: str,
    passages: list[tuple[str, np.ndarray | None]],
    **labels: object,
) -> IndexEntry:
    """A document of passages, each its words and its vector (``None``: the document has no
    vectors at all, as in a pool indexed without semantic routing)."""
    counts = [
        (Counter(words.split()), len(words.split()), (10 * i, 10 * i + 9))
        for i, (words, _) in enumerate(passages)
    ]
    vectors = PassageVectors.from_counts(counts)
    if all(v is not None for _, v in passages):
        vectors = vectors.with_embeddings(np.stack([v for _, v in passages]))
    words = [w for text, _ in passages for w in text.split()]
    return IndexEntry(
        file_id=file_id,
        document_id=f"doc-{file_id}",
        title=file_id,
        term_freqs=Counter(words),
        length=len(words),
        passages=vectors,
        **labels,  # type: ignore[arg-type]
    )


def reference_fusion(
    index: InvertedIndex, terms: list[str], vector: np.ndarray, weight: float, allowed: set[str]
) -> dict[str, float]:
    """The fusion written out: BM25 from the index's own lexical search scaled by the best
    allowed score, best-passage similarity scaled between the allowed documents' lowest and
    highest, mixed ``1 - weight`` to ``weight``."""
    bm25 = {
        h.entry.file_id: h.score
        for h in index.search(terms, top_k=len(index), explain=False)
        if h.entry.file_id in allowed
    }
    closest = {
        e.file_id: max(float(v @ vector) for v in SOURCE[e.file_id])
        for e in index.entries()
        if e.file_id in allowed
    }
    top = max(bm25.values(), default=0.0)
    low, high = min(closest.values()), max(closest.values())
    fused = {
        f: (1 - weight) * bm25.get(f, 0.0) / top + weight * (closest[f] - low) / (high - low)
        for f in closest
    }
    return {f: score for f, score in fused.items() if score > 0}


#: The vectors each test document was given, float16-rounded as the index stores them.
SOURCE: dict[str, list[np.ndarray]] = {}


def add(index: InvertedIndex, e: IndexEntry) -> None:
    assert e.passages is not None and e.passages.embeddings is not None
    SOURCE[e.file_id] = [v.astype(np.float32) for v in e.passages.embeddings]
    index.add(e)


def test_meaning_lifts_a_document_that_shares_few_words() -> None:
    index = InvertedIndex()
    add(index, entry("leave", [("family medical leave care parent", unit(1, 0.1))]))
    add(index, entry("mom", [("mom mom surgery", unit(0, 1))]))
    add(index, entry("other", [("travel booking", unit(0.5, 0, 1))]))
    question = unit(1, 0.2)
    lexical = index.search(["mom", "surgery", "care"], top_k=3)
    assert lexical[0].entry.file_id == "mom"
    fused = index.search(
        ["mom", "surgery", "care"], top_k=3, query_vector=question, semantic_weight=0.5
    )
    # "leave": second by BM25, first by meaning; "mom": first by BM25, last by meaning;
    # "other": no word in common, second by meaning.
    assert [h.entry.file_id for h in fused] == ["leave", "mom", "other"]
    expected = reference_fusion(index, ["mom", "surgery", "care"], question, 0.5, set(SOURCE))
    assert {h.entry.file_id: h.score for h in fused} == pytest.approx(expected)


def test_a_question_with_no_known_term_still_routes_to_nothing() -> None:
    index = InvertedIndex()
    add(index, entry("a", [("alpha beta", unit(1))]))
    assert index.search(["zzz"], top_k=3, query_vector=unit(1)) == []


def test_weight_zero_or_no_vector_is_bm25_alone() -> None:
    index = InvertedIndex()
    add(index, entry("a", [("alpha beta", unit(1))]))
    add(index, entry("b", [("alpha alpha", unit(0, 1))]))
    alone = index.search(["alpha"], top_k=2)
    for kwargs in ({"query_vector": None}, {"query_vector": unit(1), "semantic_weight": 0.0}):
        hits = index.search(["alpha"], top_k=2, **kwargs)  # type: ignore[arg-type]
        assert [(h.entry.file_id, h.score) for h in hits] == [
            (h.entry.file_id, h.score) for h in alone
        ]


def test_filters_apply_before_the_semantic_ranking() -> None:
    index = InvertedIndex()
    add(index, entry("secret", [("pay scale", unit(1))], groups=frozenset({"hr"})))
    add(index, entry("public", [("pay day", unit(0.5, 1))]))
    add(index, entry("public2", [("holiday", unit(0, 0, 1))]))
    hits = index.search(
        ["pay"], top_k=3, groups=["staff"], query_vector=unit(1), semantic_weight=0.3
    )
    assert "secret" not in {h.entry.file_id for h in hits}
    expected = reference_fusion(index, ["pay"], unit(1), 0.3, {"public", "public2"})
    assert {h.entry.file_id: h.score for h in hits} == pytest.approx(expected)


def test_documents_without_vectors_still_route_by_words() -> None:
    index = InvertedIndex()
    index.add(entry("old", [("expense report", None)]))
    add(index, entry("new", [("receipts", unit(1))]))
    hits = index.search(["expense", "receipts"], top_k=2, query_vector=unit(1))
    assert {h.entry.file_id for h in hits} == {"old", "new"}


def test_with_no_allowed_document_vectorised_scores_are_bm25s_own() -> None:
    """As in a pool without vectors: not BM25 scaled to [0, 1] for a fusion with nothing."""
    index = InvertedIndex()
    add(index, entry("gone", [("expense policy", unit(1))]))
    add(index, entry("secret", [("expense limits", unit(1))], groups=frozenset({"hr"})))
    index.add(entry("old", [("expense report", None)]))
    index.add(entry("older", [("expense expense report", None)]))
    index.remove("gone")
    alone = [(h.entry.file_id, h.score) for h in index.search(["expense"], top_k=3, groups=[])]

    hits = index.search(["expense"], top_k=3, groups=[], query_vector=unit(1))

    assert [(h.entry.file_id, h.score) for h in hits] == alone
    assert alone[0][1] != pytest.approx(1.0)  # not scaled to the best


def test_a_document_awaiting_its_vectors_ranks_by_its_words_alone() -> None:
    """Not by its words at a discount: the best match by words, not yet vectorised, is not
    outranked by a document that shares no word with the question."""
    index = InvertedIndex()
    add(index, entry("near", [("travel", unit(0, 1))]))
    add(index, entry("far", [("pay", unit(1))]))
    index.add(entry("waiting", [("expense report", None)]))
    hits = index.search(["expense", "report"], top_k=3, query_vector=unit(0, 1))
    assert [h.entry.file_id for h in hits] == ["waiting", "near"]
    assert hits[0].score == pytest.approx(1.0)  # its words, the best BM25 of the allowed
    assert hits[1].score == pytest.approx(0.5)  # no words, the closest meaning


def test_the_span_is_the_closest_passage_when_there_are_vectors() -> None:
    index = InvertedIndex()
    add(index, entry("a", [("first words", unit(0, 1)), ("second words", unit(1))]))
    add(index, entry("b", [("query term", unit(0, 0, 1)), ("other", unit(1, 0.2))]))
    index.add(entry("c", [("nothing", None), ("query here", None)]))
    for weight in (0.0, 1.0):
        hits = index.search(["query"], top_k=3, query_vector=unit(1), passage_weight=weight)
        spans = {h.entry.file_id: h.passage for h in hits}
        assert spans["a"] == (10, 19)  # matched by meaning only: its closest passage
        assert spans["b"] == (10, 19)  # closest in meaning, though its first holds the word
        # no vectors yet: the passage that matched by words, scored for it if need be
        assert spans["c"] == (10, 19)
    # no question vector: the passage that matched by words
    assert [h.passage for h in index.search(["term"], top_k=1)] == [(0, 9)]


def test_a_pool_with_no_vectors_yet_reports_passages_by_words() -> None:
    """Routing by meaning in a pool that no document has vectors for yet (a new one, or one
    just switched to semantic routing): with passages unscored by words, they are scored for
    the report; by words only, passage weight 0 reports none, as asked."""
    index = InvertedIndex()
    index.add(entry("c", [("nothing", None), ("query here", None)]))
    for weight in (0.0, 1.0):
        (hit,) = index.search(["query"], top_k=1, query_vector=unit(1), passage_weight=weight)
        assert hit.passage == (10, 19)
    assert index.search(["query"], top_k=1, passage_weight=0.0)[0].passage is None


def test_contributions_explain_bm25_through_the_passage_that_scored() -> None:
    """With meaning and a passage weight, the passage reported (the closest) need not be the
    one whose BM25 was added: the explanation follows the score, not the report."""
    index = InvertedIndex()
    add(index, entry("b", [("query term", unit(0, 0, 1)), ("other words", unit(1, 0.2))]))
    add(index, entry("d", [("filler", unit(0, 1))]))
    for weight in (0.0, 1.0):
        bm25 = index.scores(["query", "term"], passage_weight=weight)["b"]
        hits = index.search(["query", "term"], top_k=2, query_vector=unit(1), passage_weight=weight)
        (hit,) = [h for h in hits if h.entry.file_id == "b"]
        assert hit.passage == (10, 19)  # closest in meaning
        assert sum(hit.contributions.values()) == pytest.approx(bm25)


def test_the_token_budget_applies_to_the_fused_order() -> None:
    index = InvertedIndex()
    add(index, entry("big", [("pay", unit(1))]))
    add(index, entry("small", [("pay pay", unit(0, 1))]))
    add(index, entry("huge", [("pay", unit(1, 0.01))], token_estimate=10_000))
    hits = index.search(["pay"], top_k=3, token_budget=5_000, query_vector=unit(1))
    assert "huge" not in {h.entry.file_id for h in hits}
    assert len(hits) == 2


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "remove"]),
            st.integers(0, 11),
            st.lists(st.sampled_from("abcdef"), min_size=1, max_size=4),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.integers(-10, 10), min_size=DIM, max_size=DIM),
)
def test_vectors_stay_with_their_passages_through_changes(
    operations: list[tuple[str, int, list[str], int]], raw: list[int]
) -> None:
    """After any sequence of adds, replacements and removals (compaction included), fused
    routing equals that of an index bulk-loaded from the surviving documents."""
    if not any(raw):
        raw = [1, *raw[1:]]
    question = np.asarray(raw, np.float32) / np.float32(np.linalg.norm(raw))
    live = InvertedIndex()
    survivors: dict[str, IndexEntry] = {}
    for op, number, words, direction in operations:
        file_id = f"f{number}"
        if op == "remove":
            live.remove(file_id)
            survivors.pop(file_id, None)
            continue
        vectors = [unit(*([0.0] * ((direction + i) % DIM)), 1.0) for i in range(len(words))]
        e = entry(file_id, [(w, v) for w, v in zip(words, vectors, strict=True)])
        live.add(e)
        survivors[file_id] = e
        # the per-document best similarity reduces runs of passages: they must stay in order
        assert (np.diff(live._owner.view()) >= 0).all()
    live._compact_slots()
    assert (np.diff(live._owner.view()) >= 0).all()
    fresh = InvertedIndex()  # the same documents in the same slot order, so ties break alike
    fresh.bulk_load([survivors[e.file_id] for e in live.entries()])
    for terms in (["a"], ["b", "c"], ["f", "a", "d"]):
        got = live.search(terms, top_k=12, query_vector=question)
        want = fresh.search(terms, top_k=12, query_vector=question)
        assert [(h.entry.file_id, h.passage) for h in got] == [
            (h.entry.file_id, h.passage) for h in want
        ]
        assert [h.score for h in got] == pytest.approx([h.score for h in want])


def test_memory_counts_the_vectors() -> None:
    index = InvertedIndex()
    index.add(entry("a", [("alpha", None)]))
    without = index.memory_bytes()
    add(index, entry("b", [("beta", unit(1)), ("gamma", unit(0, 1))]))
    assert index.memory_bytes() - without >= 2 * DIM * 4


# ----------------------------------------------------------------------------- the pool's params


def test_switching_semantic_either_way_asks_for_a_reindex(open_pool) -> None:  # type: ignore[no-untyped-def]
    """Every process of a deployment must agree: one without vectors would add documents that
    a semantic server cannot rank by meaning, and never say so."""
    if not model_installed():
        pytest.skip("the embedding model is not installed (make semantic)")
    plain = open_pool()
    assert "semantic" not in plain.store.get_meta("index_params")
    with pytest.raises(IndexParamsMismatch, match=r"KPOOL_SEMANTIC.*pool has off, configured on"):
        open_pool(semantic=True)
    on = open_pool(semantic=True, check_params=False)
    on.adopt_params()
    assert on.store.get_meta("index_params")["semantic"]["model"] == semantic.MODEL_NAME
    with pytest.raises(IndexParamsMismatch, match="pool has on, configured off"):
        open_pool()
    assert on.store.get_meta("index_params")["semantic"]["model"] == semantic.MODEL_NAME


def test_vectors_made_with_another_title_share_ask_for_a_reindex(open_pool) -> None:  # type: ignore[no-untyped-def]
    """The title's share is baked into the stored vectors: a pool indexed before it (or with
    another) must be re-indexed, not ranked with a mix of both."""
    if not model_installed():
        pytest.skip("the embedding model is not installed (make semantic)")
    on = open_pool(semantic=True, check_params=False)
    on.adopt_params()
    params = on.store.get_meta("index_params")
    assert params["semantic"]["title_share"] == semantic.TITLE_SHARE
    del params["semantic"]["title_share"]
    on.store.set_meta("index_params", params)
    with pytest.raises(IndexParamsMismatch, match=r"semantic\.title_share: pool has None"):
        open_pool(semantic=True)


def test_a_process_without_vectors_stops_applying_a_semantic_pools_changes(open_pool) -> None:  # type: ignore[no-untyped-def]
    if not model_installed():
        pytest.skip("the embedding model is not installed (make semantic)")
    plain = open_pool()
    semantic_pool = open_pool(semantic=True, check_params=False)
    semantic_pool.adopt_params()  # as `KPOOL_SEMANTIC=1 kpool reindex` would
    ingest(semantic_pool, IngestRequest(source="a", data=b"Parking in lot C.", filename="a.txt"))
    assert plain.refresh() == 0
    assert plain.params_mismatch is not None and "KPOOL_SEMANTIC" in plain.params_mismatch


# ------------------------------------------------------------------- ingest, store and routing

FUSED = RoutingOptions(semantic_weight=0.5)
PARAPHRASE = "my mom is having surgery, can I stay home for a few weeks to look after her?"
DOCUMENTS = {
    "Family and medical leave": "Employees may take up to twelve weeks of unpaid, job-protected "
    "leave in a year to care for a parent, spouse or child with a serious health condition. "
    "Ask your manager a few weeks ahead where you can.",
    "Parking": "Visitors to the surgery centre park in lot C. Staff park in lot "
    "A and may not use visitor spaces. Weekly permits are sold at the front desk.",
    "Caring for a sick parent": "Counselling and practical support for staff whose mother or "
    "father is ill or recovering from an operation.",
}


@needs_model
def test_documents_route_by_words_at_once_and_by_meaning_once_vectorised(open_pool) -> None:  # type: ignore[no-untyped-def]
    pool = open_pool(semantic=True)
    for title, text in DOCUMENTS.items():
        ingest(pool, IngestRequest(source=title, data=text.encode(), filename="a.txt", title=title))
    # ingest leaves the model's slow work for later: the documents route by their words now
    assert all(e.passages and e.passages.embeddings is None for e in pool.store.index_entries())
    assert pool.store.count_awaiting_vectors() == len(DOCUMENTS)
    pool.load_index()
    assert route(pool, PARAPHRASE, top_k=1, options=FUSED).documents[0].title == "Parking"

    assert vectorise(pool) == len(DOCUMENTS)
    assert pool.store.count_awaiting_vectors() == 0
    assert vectorise(pool) == 0
    assert pool.refresh() == len(DOCUMENTS)  # stored vectors reach live indexes as changes
    assert all(
        e.passages is not None
        and e.passages.embeddings is not None
        and e.passages.embeddings.shape == (len(e.passages), semantic.DIMENSIONS)
        for e in pool.store.index_entries()
    )
    lexical = route(pool, PARAPHRASE, top_k=3, options=RoutingOptions())
    fused = route(pool, PARAPHRASE, top_k=3, options=FUSED)
    # BM25 prefers the page that says "surgery"; meaning puts family leave first, and the
    # fusion agrees.
    assert lexical.documents[0].title == "Parking"
    assert fused.documents[0].title == "Family and medical leave"
    # another process opening the same pool reads the stored vectors and routes alike (to
    # float32 rounding: its matrix is loaded whole, this one's grew by the refresh)
    again = route(open_pool(semantic=True), PARAPHRASE, top_k=3, options=FUSED)
    assert [d.title for d in again.documents] == [d.title for d in fused.documents]
    assert [d.score for d in again.documents] == pytest.approx(
        [d.score for d in fused.documents], rel=1e-6
    )


def ingest_all(pool: Pool, titles: Sequence[str] = tuple(DOCUMENTS)) -> None:
    for title in titles:
        data = DOCUMENTS[title].encode()
        ingest(pool, IngestRequest(source=title, data=data, filename="a.txt", title=title))


@needs_model
def test_vectors_are_never_stored_over_a_summary_that_changed(open_pool, encoder) -> None:  # type: ignore[no-untyped-def]
    """The model works outside any transaction: a new version, a re-index or a new title
    committed meanwhile win, and the late vectors are dropped."""
    pool = open_pool(semantic=True)
    ingest_all(pool)
    replaced, reindexed, retitled = pool.store.awaiting_vectors(limit=10)
    late = encoder.encode(["stale"])  # one passage each
    ingest(
        pool,
        IngestRequest(source=replaced.title, data=b"Parking moved to lot D.", filename="a.txt"),
    )
    # a re-index (here: other passage terms for the same text) in another process
    text = pool.store.get_content(reindexed.document_id).text
    fresh = summarise(pool, "Counselling service", text)
    pool.store.update_summary(
        file_id=reindexed.file_id, terms=fresh.terms, length=fresh.length, passages=fresh.passages
    )
    pool.store.update_metadata(document_id=retitled.document_id, title="Carer's leave")
    for due in (replaced, reindexed, retitled):
        assert not pool.store.add_vectors(due=due, vectors=late)
    assert pool.store.count_awaiting_vectors() == 3  # nothing was written
    assert vectorise(pool) == 3 and vectorise(pool) == 0
    # only the vectors were written: the re-index's terms stand
    (stored,) = pool.store.index_entries([reindexed.document_id])
    expected = TermVector.from_counts(fresh.terms)
    np.testing.assert_array_equal(stored.terms().hashes, expected.hashes)
    np.testing.assert_array_equal(stored.terms().counts, expected.counts)
    assert stored.passages is not None and stored.passages.embeddings is not None


@needs_model
def test_a_new_title_gives_the_passages_new_vectors(open_pool, encoder) -> None:  # type: ignore[no-untyped-def]
    pool = open_pool(semantic=True)
    ingest_all(pool, ["Parking"])
    assert vectorise(pool) == 1
    (doc,) = pool.store.list_documents(limit=1)[0]
    pool.store.update_metadata(document_id=doc.id, title="Visitor parking")
    assert pool.store.count_awaiting_vectors() == 1  # routed by its words until then
    assert vectorise(pool) == 1
    text = pool.store.get_content(doc.id).text
    texts = [
        passage_text("Visitor parking", text, p) for p in split_passages(text, pool.config.passages)
    ]
    (entry,) = pool.store.index_entries()
    assert entry.passages is not None and entry.passages.embeddings is not None
    np.testing.assert_allclose(
        entry.passages.embeddings.astype(np.float32),
        semantic.passage_vectors(encoder, "Visitor parking", texts),
        atol=1e-3,
    )


@needs_model
def test_a_document_the_model_fails_on_is_left_out_and_holds_up_no_other(
    open_pool, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import indexing.ingest

    real = semantic.passage_vectors

    def failing_on_parking(encoder, title, texts, **kwargs):  # type: ignore[no-untyped-def]
        if title == "Parking":
            raise MemoryError("too long")
        return real(encoder, title, texts, **kwargs)

    monkeypatch.setattr(indexing.ingest, "passage_vectors", failing_on_parking)
    pool = open_pool(semantic=True)
    ingest_all(pool)
    assert vectorise(pool) == 2
    assert [d.title for d in pool.store.awaiting_vectors(limit=10)] == ["Parking"]
    assert vectorise(pool) == 0  # not tried again by this process
    assert len(pool.vectors_refused) == 1


@needs_model
def test_vectorise_stops_when_told(open_pool) -> None:  # type: ignore[no-untyped-def]
    pool = open_pool(semantic=True)
    ingest_all(pool)
    stop = threading.Event()
    stop.set()
    assert vectorise(pool, stop=stop) == 0
    assert pool.store.count_awaiting_vectors() == len(DOCUMENTS)
    assert vectorise(pool, limit=1) == 1
    assert vectorise(pool, descending=True) == len(DOCUMENTS) - 1


def test_vectorise_has_nothing_to_do_without_semantic_routing(open_pool) -> None:  # type: ignore[no-untyped-def]
    pool = open_pool()
    ingest(pool, IngestRequest(source="a", data=b"Parking in lot C.", filename="a.txt"))
    assert vectorise(pool) == 0
    assert all(e.passages and e.passages.embeddings is None for e in pool.store.index_entries())


@needs_model
def test_ingest_stores_each_passage_mixed_with_its_title(open_pool, encoder) -> None:  # type: ignore[no-untyped-def]
    pool = open_pool(semantic=True)
    title, text = "Parking", DOCUMENTS["Parking"]
    ingest(pool, IngestRequest(source=title, data=text.encode(), filename="a.txt", title=title))
    assert vectorise(pool) == 1
    (entry,) = pool.store.index_entries()
    texts = [passage_text(title, text, p) for p in split_passages(text, pool.config.passages)]
    expected = semantic.passage_vectors(encoder, title, texts)
    assert entry.passages is not None and entry.passages.embeddings is not None
    np.testing.assert_allclose(entry.passages.embeddings.astype(np.float32), expected, atol=1e-3)


@needs_model
def test_reindex_gives_an_old_pool_its_vectors(open_pool) -> None:  # type: ignore[no-untyped-def]
    from indexing.ingest import reindex

    old = open_pool()
    for title, text in DOCUMENTS.items():
        ingest(old, IngestRequest(source=title, data=text.encode(), filename="a.txt", title=title))
    assert all(e.passages and e.passages.embeddings is None for e in old.store.index_entries())
    with pytest.raises(IndexParamsMismatch, match="kpool reindex"):
        open_pool(semantic=True)
    assert reindex(open_pool(semantic=True, check_params=False)) == len(DOCUMENTS)
    upgraded = open_pool(semantic=True)
    stored = list(upgraded.store.index_entries())
    assert all(e.passages and e.passages.embeddings is not None for e in stored)
    assert route(upgraded, PARAPHRASE, top_k=1, options=FUSED).documents[0].title == (
        "Family and medical leave"
    )


@needs_model
def test_a_follow_up_is_read_with_the_question_before_it(open_pool) -> None:  # type: ignore[no-untyped-def]
    assert question_text("how many weeks?", ["first", "second"]) == "how many weeks? second"
    pool = open_pool(semantic=True)
    for title, text in DOCUMENTS.items():
        ingest(pool, IngestRequest(source=title, data=text.encode(), filename="a.txt", title=title))
    vectorise(pool)
    pool.refresh()
    follow_up = route(pool, "how many weeks?", top_k=1, earlier=[PARAPHRASE], options=FUSED)
    assert follow_up.documents[0].title == "Family and medical leave"
