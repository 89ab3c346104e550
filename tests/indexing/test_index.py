"""The inverted index: scores proved by hand and against rank_bm25, updates, filters, budgets."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from indexing.analyzer import Analyzer
from indexing.bm25 import BM25Params
from indexing.filters import Condition, Filters, any_of, attributes_match, between
from indexing.index import _COMPACT_MIN_DEAD_TERMS, Hit, IndexEntry, InvertedIndex
from indexing.summary import term_hash

ANALYZER = Analyzer()
MINI_CORPUS = Path(__file__).parent / "data" / "mini_corpus.jsonl"
SHARED_DATA = Path(__file__).parents[2] / ".." / "shared" / "data"
LUCENE = BM25Params(k1=1.2, b=0.75, variant="lucene")
OKAPI = BM25Params(k1=1.2, b=0.75, variant="okapi", epsilon=0.25)


def entry(
    file_id: str,
    terms: Mapping[str, int] | str,
    *,
    document_id: str | None = None,
    tokens: int = 0,
    tags: Iterable[str] = (),
    groups: Iterable[str] = (),
    attributes: Mapping[str, object] | None = None,
) -> IndexEntry:
    """An index entry from explicit term frequencies, or from text through the analyzer."""
    if isinstance(terms, str):
        freqs, length = ANALYZER.term_frequencies(terms)
    else:
        freqs, length = dict(terms), sum(terms.values())
    return IndexEntry(
        file_id=file_id,
        document_id=document_id or f"doc-{file_id}",
        title=file_id,
        term_freqs=freqs,
        length=length,
        token_estimate=tokens,
        tags=frozenset(tags),
        groups=frozenset(groups),
        attributes=attributes or {},
    )


def build(entries: Iterable[IndexEntry], params: BM25Params = LUCENE) -> InvertedIndex:
    index = InvertedIndex(params)
    index.bulk_load(entries)
    return index


def ids(hits: Sequence[Hit]) -> list[str]:
    return [hit.entry.file_id for hit in hits]


def q(text: str) -> list[str]:
    return ANALYZER.terms(text)


def load_corpus(path: Path, limit: int | None = None) -> list[tuple[str, list[str]]]:
    """(id, terms) of a JSONL corpus, title and text analyzed together."""
    with path.open(encoding="utf-8") as lines:
        docs = [json.loads(line) for line in islice(lines, limit)]
    return [
        (str(doc.get("id", doc.get("_id"))), q(f"{doc['title']} {doc['text']}")) for doc in docs
    ]


def corpus_entries(corpus: Sequence[tuple[str, list[str]]]) -> list[IndexEntry]:
    return [entry(doc_id, dict(_counts(terms))) for doc_id, terms in corpus]


def _counts(terms: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for term in terms:
        counts[term] = counts.get(term, 0) + 1
    return counts


def assert_okapi_matches_rank_bm25(
    index: InvertedIndex, corpus: Sequence[tuple[str, list[str]]], queries: Sequence[list[str]]
) -> None:
    """Every document's score, for every query, equals BM25Okapi's on the same documents."""
    reference = BM25Okapi([terms for _, terms in corpus], k1=1.2, b=0.75, epsilon=0.25)
    order = [doc_id for doc_id, _ in corpus]
    assert sorted(index.scores([])) == sorted(order)
    for query in queries:
        ours = index.scores(query)
        assert np.allclose([ours[doc_id] for doc_id in order], reference.get_scores(query)), query


def assert_same_scores(left: InvertedIndex, right: InvertedIndex, queries: Iterable[str]) -> None:
    assert len(left) == len(right)
    for text in queries:
        a, b = left.scores(q(text)), right.scores(q(text))
        assert a.keys() == b.keys()
        assert np.allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(a)]), text
        hits_a = left.search(q(text), top_k=len(left) + 1)
        hits_b = right.search(q(text), top_k=len(right) + 1)
        assert {h.entry.file_id: h.score for h in hits_a} == pytest.approx(
            {h.entry.file_id: h.score for h in hits_b}
        )


# --------------------------------------------------------------------------------------------
# Lucene scores on a three-document corpus, by hand
# --------------------------------------------------------------------------------------------

# N = 3, lengths 3, 4 and 2, so avgdl = 3.
THREE = [
    entry("A", {"leav": 2, "parent": 1}),
    entry("B", {"leav": 1, "expens": 1, "travel": 2}),
    entry("C", {"expens": 1, "laptop": 1}),
]


def idf(df: int, n: int = 3) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def tf(tf: int, dl: int, avgdl: float = 3.0, k1: float = 1.2, b: float = 0.75) -> float:
    return tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))


@pytest.fixture
def three() -> InvertedIndex:
    return build(THREE)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (["leav"], {"A": idf(2) * tf(2, 3), "B": idf(2) * tf(1, 4)}),
        (
            ["travel", "leav"],
            {"B": idf(2) * tf(1, 4) + idf(1) * tf(2, 4), "A": idf(2) * tf(2, 3)},
        ),
        (
            ["expens", "laptop", "parent"],
            {
                "C": idf(2) * tf(1, 2) + idf(1) * tf(1, 2),
                "A": idf(1) * tf(1, 3),
                "B": idf(2) * tf(1, 4),
            },
        ),
        (["parent", "nosuchterm"], {"A": idf(1) * tf(1, 3)}),
    ],
    ids=["one-term", "two-terms", "three-terms", "unknown-term-ignored"],
)
def test_lucene_scores_equal_hand_computed_values(
    three: InvertedIndex, query: list[str], expected: dict[str, float]
) -> None:
    hits = three.search(query, top_k=10)
    assert ids(hits) == sorted(expected, key=lambda k: -expected[k])
    assert {h.entry.file_id: h.score for h in hits} == pytest.approx(expected)


@pytest.mark.parametrize("query", [[], q(""), ["nosuchterm"], ["nosuchterm", "another"]], ids=str)
def test_a_query_without_known_terms_routes_nowhere(three: InvertedIndex, query: list[str]) -> None:
    assert three.search(query, top_k=3) == []
    assert three.scores(query) == {"A": 0.0, "B": 0.0, "C": 0.0}


@pytest.mark.parametrize("top_k", [0, -1])
def test_non_positive_k_routes_nowhere(three: InvertedIndex, top_k: int) -> None:
    assert three.search(["leav"], top_k=top_k) == []


def test_k_larger_than_the_pool_returns_every_matching_document_and_no_more(
    three: InvertedIndex,
) -> None:
    assert ids(three.search(["leav"], top_k=50)) == ["A", "B"]


def test_an_empty_index_routes_nowhere() -> None:
    index = InvertedIndex()
    assert len(index) == 0
    assert index.search(["leav"], top_k=5) == []
    assert index.scores(["leav"]) == {}


def test_a_pool_of_one_document_still_scores() -> None:
    index = build([entry("only", {"leav": 3, "polici": 1})])
    (hit,) = index.search(["leav"], top_k=5)
    assert hit.score == pytest.approx(math.log(1 + 0.5 / 1.5) * 3 * 2.2 / (3 + 1.2))


def test_a_term_in_every_document_scores_above_zero_with_lucene_idf() -> None:
    index = build([entry(name, {"employe": 1, name: 1}) for name in "abcd"])
    hits = index.search(["employe"], top_k=10)
    assert len(hits) == 4
    assert all(hit.score > 0 for hit in hits)


def test_a_repeated_query_term_counts_twice(three: InvertedIndex) -> None:
    once = three.scores(["leav", "travel"])
    twice = three.scores(["leav", "leav", "travel"])
    assert twice["A"] == pytest.approx(2 * once["A"])
    assert twice["B"] == pytest.approx(once["B"] + idf(2) * tf(1, 4))


def test_ties_go_to_the_earlier_document_whatever_k() -> None:
    index = build([entry(f"d{i:02d}", {"leav": 1, "x": 1}) for i in range(12)])
    everything = ids(index.search(["leav"], top_k=12))
    assert everything == [f"d{i:02d}" for i in range(12)]
    for k in range(1, 13):
        assert ids(index.search(["leav"], top_k=k)) == everything[:k]


def test_top_k_is_always_a_prefix_of_a_longer_ranking() -> None:
    # Many ties at the cut-off: the partial selection must not pick tied documents at random.
    rng = np.random.default_rng(7)
    entries = [entry(f"d{i:02d}", {"leav": int(rng.integers(1, 3)), "x": 1}) for i in range(60)]
    index = build(entries)
    everything = ids(index.search(["leav"], top_k=60))
    for k in range(1, 60):
        assert ids(index.search(["leav"], top_k=k)) == everything[:k], k
        assert ids(index.search(["leav"], top_k=k, token_budget=10**9)) == everything[:k], k


# --------------------------------------------------------------------------------------------
# Okapi variant equals rank_bm25.BM25Okapi
# --------------------------------------------------------------------------------------------

MINI_QUERIES = [
    q(text)
    for text in [
        "employee leave",
        "Sick leave policy for employees",
        "VPN laptop security",
        "employee employee policy",  # a repeated term, and two in more than half the documents
        "pension",
        "nosuchterm",
        "travel expenses receipts per diem",
        "",
    ]
]


@pytest.fixture(scope="module")
def mini_corpus() -> list[tuple[str, list[str]]]:
    return load_corpus(MINI_CORPUS)


def test_mini_corpus_exercises_the_negative_idf_floor(
    mini_corpus: list[tuple[str, list[str]]],
) -> None:
    reference = BM25Okapi([terms for _, terms in mini_corpus], epsilon=0.25)
    floor = 0.25 * reference.average_idf
    assert reference.idf["employe"] == pytest.approx(floor)
    assert reference.idf["polici"] == pytest.approx(floor)
    assert [doc_id for doc_id, terms in mini_corpus if not terms] == ["stopwords-only"]


def test_okapi_equals_rank_bm25_on_the_mini_corpus(
    mini_corpus: list[tuple[str, list[str]]],
) -> None:
    index = build(corpus_entries(mini_corpus), OKAPI)
    assert_okapi_matches_rank_bm25(index, mini_corpus, MINI_QUERIES)


def test_okapi_equals_rank_bm25_after_adds_removals_and_replacements(
    mini_corpus: list[tuple[str, list[str]]],
) -> None:
    index = InvertedIndex(OKAPI)
    for one in corpus_entries(mini_corpus):
        index.add(one)
    assert_okapi_matches_rank_bm25(index, mini_corpus, MINI_QUERIES)

    removed = {"pension-plan", "vpn-access", "stopwords-only"}
    for doc_id in removed:
        assert index.remove(doc_id)
    new_sick = q("Sick leave: an employee off sick for more than three days needs a note.")
    new_remote = q("Remote employees work from home two days; the VPN is required.")
    index.replace("leave-sick", entry("leave-sick-v2", dict(_counts(new_sick))))
    index.replace("remote-work", entry("remote-work-v2", dict(_counts(new_remote))))

    survivors = [(d, t) for d, t in mini_corpus if d not in removed]
    survivors = [(d, t) for d, t in survivors if d not in {"leave-sick", "remote-work"}]
    survivors += [("leave-sick-v2", new_sick), ("remote-work-v2", new_remote)]
    assert_okapi_matches_rank_bm25(index, survivors, MINI_QUERIES)


@pytest.mark.slow
def test_okapi_equals_rank_bm25_on_scifact() -> None:
    corpus_path = SHARED_DATA / "scifact" / "corpus.jsonl"
    queries_path = SHARED_DATA / "scifact" / "queries.jsonl"
    if not corpus_path.is_file() or not queries_path.is_file():
        pytest.skip(f"SciFact is not available under {SHARED_DATA.resolve()}")
    corpus = load_corpus(corpus_path, limit=1500)
    with queries_path.open(encoding="utf-8") as lines:
        queries = [q(json.loads(line)["text"]) for line in islice(lines, 40)]
    index = build(corpus_entries(corpus), OKAPI)
    assert_okapi_matches_rank_bm25(index, corpus, queries)

    # Still equal once every seventh document has gone and ten were re-added one by one.
    for doc_id, _ in corpus[::7]:
        index.remove(doc_id)
    survivors = [doc for i, doc in enumerate(corpus) if i % 7]
    for one in corpus_entries(corpus[:70:7]):
        index.add(one)
    survivors += corpus[:70:7]
    assert_okapi_matches_rank_bm25(index, survivors, queries)


# --------------------------------------------------------------------------------------------
# Incremental updates
# --------------------------------------------------------------------------------------------

UPDATE_QUERIES = [
    "employee leave",
    "sick leave",
    "vpn laptop",
    "employee employee policy",
    "pension contributions",
    "travel",
    "nosuchterm",
]


@pytest.mark.parametrize("params", [LUCENE, OKAPI], ids=["lucene", "okapi"])
def test_incremental_updates_score_like_a_fresh_bulk_load(
    mini_corpus: list[tuple[str, list[str]]], params: BM25Params
) -> None:
    final = {one.file_id: one for one in corpus_entries(mini_corpus)}
    index = InvertedIndex(params)
    for one in final.values():
        index.add(one)

    index.remove("pension-plan")
    del final["pension-plan"]
    sick = entry("sick-v2", "Sick leave needs a note.", document_id="doc-leave-sick")
    index.replace("leave-sick", sick)
    del final["leave-sick"]
    final["sick-v2"] = sick
    laptop = entry("laptop-security", "Laptop disks are encrypted; report loss.")
    index.add(laptop)  # same file id: replaces
    final["laptop-security"] = laptop
    travel = entry(
        "travel-v2", "Travel by train under four hours.", document_id="doc-travel-expenses"
    )
    extra = entry("holidays", "Public holidays: employees get eight days off.")
    index.apply_documents(
        ["doc-travel-expenses", "doc-vpn-access", "doc-holidays"], [travel, extra]
    )
    del final["travel-expenses"], final["vpn-access"]
    final["travel-v2"], final["holidays"] = travel, extra

    assert_same_scores(index, build(final.values(), params), UPDATE_QUERIES)
    assert sorted(e.file_id for e in index.entries()) == sorted(final)


def test_remove_document_stops_routing_to_it(three: InvertedIndex) -> None:
    assert ids(three.search(["leav"], top_k=5)) == ["A", "B"]
    assert three.remove("A") is True
    assert ids(three.search(["leav"], top_k=5)) == ["B"]
    assert "A" not in three.scores(["leav"])
    assert three.remove("A") is False
    assert three.document_frequency("leav") == 1


def test_removing_the_last_holder_of_a_term_makes_it_unknown(three: InvertedIndex) -> None:
    three.remove("C")
    assert three.document_frequency("laptop") == 0
    assert three.search(["laptop"], top_k=5) == []


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (lambda ix: len(ix), 3),
        (lambda ix: "A" in ix, True),
        (lambda ix: "Z" in ix, False),
        (lambda ix: ix.file_of("doc-B"), "B"),
        (lambda ix: ix.file_of("doc-Z"), None),
        (lambda ix: ix.get("C").document_id, "doc-C"),
        (lambda ix: ix.get("Z"), None),
        (lambda ix: ix.avg_length, 3.0),
        (lambda ix: ix.document_frequency("expens"), 2),
        (lambda ix: ix.document_frequency("nosuchterm"), 0),
    ],
    ids=[
        "len",
        "contains",
        "not-contains",
        "file-of",
        "file-of-unknown",
        "get",
        "get-unknown",
        "avg-length",
        "df",
        "df-unknown",
    ],
)
def test_introspection(
    three: InvertedIndex, check: Callable[[InvertedIndex], object], expected: object
) -> None:
    assert check(three) == expected


def test_replace_leaves_exactly_one_version(three: InvertedIndex) -> None:
    new = entry("A-v2", {"leav": 1, "parent": 4}, document_id="doc-A")
    three.replace("A", new)
    assert "A" not in three
    assert "A-v2" in three
    assert three.file_of("doc-A") == "A-v2"
    assert len(three) == 3
    assert ids(three.search(["parent"], top_k=5)) == ["A-v2"]


def test_readers_see_exactly_one_version_while_a_document_is_replaced() -> None:
    versions = [
        entry("handbook-v1", {"leav": 2, "polici": 1}, document_id="handbook"),
        entry("handbook-v2", {"leav": 1, "polici": 2}, document_id="handbook"),
    ]
    index = build([versions[0], entry("other", {"leav": 1, "travel": 1})])
    seen: list[set[str]] = []
    reads = 0
    lock_step = threading.Event()

    def reader() -> None:
        nonlocal reads
        while not lock_step.is_set() or reads < 200:
            found = set(ids(index.search(["leav"], top_k=5))) - {"other"}
            seen.append(found)
            reads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    current = 0
    for _ in range(2000):
        nxt = 1 - current
        index.replace(versions[current].file_id, versions[nxt])
        current = nxt
    lock_step.set()
    thread.join()
    assert reads >= 200
    assert all(len(found) == 1 for found in seen)
    assert len(index) == 2


def test_apply_documents_removes_replaces_and_adds(three: InvertedIndex) -> None:
    a2 = entry("A-v2", {"parent": 1}, document_id="doc-A")
    d = entry("D", {"travel": 1}, document_id="doc-D")
    three.apply_documents(["doc-A", "doc-B", "doc-D"], [a2, d])
    assert sorted(e.file_id for e in three.entries()) == ["A-v2", "C", "D"]
    assert three.file_of("doc-A") == "A-v2"
    assert three.file_of("doc-B") is None
    assert three.search(["leav"], top_k=5) == []


def test_bulk_load_replaces_everything_and_keeps_the_last_of_a_file_id(
    three: InvertedIndex,
) -> None:
    three.bulk_load([entry("X", {"leav": 1}), entry("X", {"travel": 1})])
    assert len(three) == 1
    assert three.search(["leav"], top_k=5) == []
    assert ids(three.search(["travel"], top_k=5)) == ["X"]


def synthetic(i: int, groups: Iterable[str] = ()) -> IndexEntry:
    """One of many small generated documents; all share the term "common"."""
    terms = {"common": 1 + i % 3, f"m{i % 7}": 1, f"n{i % 11}": 2}
    return entry(f"f{i:04d}", terms, groups=groups)


def test_compaction_after_many_removals_keeps_results_identical() -> None:
    entries = [synthetic(i, groups=["hr"] if i % 5 == 0 else ()) for i in range(1100)]
    index = build(entries)
    before = index.memory_bytes()
    survivors = [e for i, e in enumerate(entries) if i % 20 == 0]
    for i, one in enumerate(entries):
        if i % 20:
            index.remove(one.file_id)
    assert index._dead_slots() < 1024  # the slots were renumbered at least once

    assert_same_scores(index, build(survivors), ["common", "m3 n4", "m0 common n10"])
    assert index.memory_bytes() < before
    public = {e.file_id for e in survivors if not e.groups}
    found = ids(index.search(["common"], top_k=len(index), groups=[]))
    assert set(found) == public

    # A group first seen after the compaction filters as well as the old ones.
    index.add(synthetic(5000, groups=["finance"]))
    assert "f5000" in ids(index.search(["common"], top_k=len(index), groups=["finance"]))
    assert "f5000" not in ids(index.search(["common"], top_k=len(index), groups=["hr"]))


def test_an_index_loaded_empty_compacts_after_documents_come_and_go() -> None:
    """A fresh pool's index starts from an empty load; it must compact like any other."""
    index = build([])
    for round_ in range(3):
        for i in range(1100):
            index.add(synthetic(i))
        for i in range(1100):
            if i % 50 or round_ < 2:
                index.remove(f"f{i:04d}")
    assert index._dead_slots() < 1024
    assert len(index) == 22
    assert set(ids(index.search(["common"], top_k=100))) == {
        f"f{i:04d}" for i in range(0, 1100, 50)
    }


def test_terms_no_living_document_holds_are_forgotten() -> None:
    """A long-lived index whose documents come and go (each with words of its own: names,
    numbers, reference codes) keeps only about the vocabulary of the documents it holds."""

    def churned(round_: int, i: int) -> IndexEntry:
        return entry(f"r{round_}-{i}", {"common": 1, f"code{round_}x{i}": 3, "policy": i % 2})

    keep = entry("keep", {"common": 2, "policy": 1})
    index = build([keep])
    largest = 0
    for round_ in range(40):  # 10,000 words in all, each held for one round
        for i in range(250):
            index.add(churned(round_, i))
        for i in range(250):
            if i % 50 or round_ < 39:
                index.remove(f"r{round_}-{i}")
        largest = max(largest, len(index._vocab))
    assert largest <= 2 * _COMPACT_MIN_DEAD_TERMS + 250 + 3

    survivors = [keep, *(churned(39, i) for i in range(0, 250, 50))]
    queries = ["common", "policy code39x50", "code3x7", "code39x200 common"]
    assert_same_scores(index, build(survivors), queries)
    assert index.document_frequency("code3x7") == 0
    # A word seen again after it was forgotten gets an id like any new word.
    back = entry("back", {"code3x7": 1, "common": 1})
    index.add(back)
    assert ids(index.search(["code3x7"], top_k=5)) == ["back"]
    assert_same_scores(index, build([*survivors, back]), queries)


def test_stale_postings_are_dropped_and_scores_stay_the_same() -> None:
    entries = [entry(f"d{i:02d}", {"shared": 1 + i % 4, f"own{i}": 1}) for i in range(40)]
    index = build(entries)
    for one in entries[:30]:
        index.remove(one.file_id)
    postings = index._docs.postings[index._vocab[term_hash("shared")]]
    assert postings.slots.n < 40  # stale entries of removed documents were dropped
    assert_same_scores(index, build(entries[30:]), ["shared", "own35 shared", "own3"])


def test_memory_grows_with_documents_and_shrinks_with_removals() -> None:
    index = InvertedIndex()
    empty = index.memory_bytes()
    for i in range(200):
        index.add(synthetic(i))
    grown = index.memory_bytes()
    assert grown > empty > 0
    for i in range(200, 400):
        index.add(synthetic(i))
    assert index.memory_bytes() > grown
    for i in range(400):
        index.remove(f"f{i:04d}")
    assert index.memory_bytes() < grown


# --------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------


@pytest.fixture
def labelled() -> InvertedIndex:
    return build(
        [
            entry("public", {"leav": 1, "x": 3}, tags=["policy"]),
            entry("hr", {"leav": 4}, tags=["policy", "uk"], groups=["hr"]),  # best for "leav"
            entry("eng", {"leav": 2, "x": 2}, tags=["uk"], groups=["eng"]),
            entry("both", {"leav": 1, "x": 3}, groups=["hr", "eng"]),
        ]
    )


ALL = {"public", "hr", "eng", "both"}


@pytest.mark.parametrize(
    ("groups", "tags", "visible"),
    [
        (None, None, ALL),
        ([], None, {"public"}),
        (["hr"], None, {"public", "hr", "both"}),
        (["eng"], None, {"public", "eng", "both"}),
        (["hr", "eng"], None, ALL),
        (["finance"], None, {"public"}),
        (None, ["policy"], {"public", "hr"}),
        (None, ["policy", "uk"], {"hr"}),
        (None, ["nosuchtag"], set()),
        (["hr"], ["uk"], {"hr"}),
        ([], ["uk"], set()),
    ],
    ids=[
        "no-restriction",
        "no-groups-sees-public-only",
        "hr",
        "eng",
        "hr-and-eng",
        "unknown-group-sees-public",
        "one-tag",
        "every-tag-required",
        "unknown-tag",
        "group-and-tag",
        "public-with-tag",
    ],
)
def test_groups_and_tags_decide_what_a_caller_sees(
    labelled: InvertedIndex,
    groups: list[str] | None,
    tags: list[str] | None,
    visible: set[str],
) -> None:
    assert set(ids(labelled.search(["leav"], top_k=10, groups=groups, tags=tags))) == visible
    mask = labelled.allowed_mask(groups=groups, tags=tags)
    assert set(ids(labelled.search(["leav"], top_k=10, allowed=mask))) == visible


def test_no_restriction_means_no_mask(labelled: InvertedIndex) -> None:
    assert labelled.allowed_mask() is None


def test_filters_apply_before_top_k(labelled: InvertedIndex) -> None:
    assert ids(labelled.search(["leav"], top_k=1)) == ["hr"]
    assert ids(labelled.search(["leav"], top_k=1, groups=[])) == ["public"]
    assert ids(labelled.search(["leav"], top_k=1, tags=["uk"], groups=["eng"])) == ["eng"]


def test_an_explicit_mask_restricts_routing(labelled: InvertedIndex) -> None:
    order = [e.file_id for e in labelled.entries()]
    allowed = np.array([name in {"public", "eng"} for name in order])
    assert ids(labelled.search(["leav"], top_k=1, allowed=allowed)) == ["eng"]
    assert ids(labelled.search(["leav"], top_k=5, allowed=allowed)) == ["eng", "public"]


def test_labels_follow_documents_added_and_removed(labelled: InvertedIndex) -> None:
    labelled.add(entry("fin", {"leav": 9}, tags=["uk"], groups=["finance"]))
    assert ids(labelled.search(["leav"], top_k=1, groups=["finance"])) == ["fin"]
    assert "fin" not in ids(labelled.search(["leav"], top_k=10, groups=["hr"]))
    labelled.remove("hr")
    assert set(ids(labelled.search(["leav"], top_k=10, tags=["uk"]))) == {"eng", "fin"}
    labelled.replace("public", entry("public-v2", {"leav": 1}, groups=["hr"]))
    assert "public-v2" not in ids(labelled.search(["leav"], top_k=10, groups=[]))


# Equal lengths, so the rank for "leav" follows tf: it > secret > hr-ie > hr-uk > bare.
ATTRIBUTED = [
    entry(
        "hr-uk",
        {"leav": 3, "pad": 7},
        tags=["policy"],
        attributes={"department": "HR", "region": "UK", "effective": "2024-03-01", "level": 2},
    ),
    entry(
        "hr-ie",
        {"leav": 5, "pad": 5},
        attributes={
            "department": "HR",
            "region": ["IE", "UK"],
            "effective": "2025-06-30T09:00:00Z",
            "level": 3.5,
        },
    ),
    entry(
        "it",
        {"leav": 9, "pad": 1},
        tags=["policy"],
        attributes={"department": "IT", "region": "US", "effective": "2023-12-31", "level": "2"},
    ),
    entry(
        "secret",
        {"leav": 8, "pad": 2},
        groups=["hr"],
        attributes={"department": "HR", "region": "UK", "effective": "2024-05-01", "open": False},
    ),
    entry("bare", {"leav": 1, "pad": 9}),
]


@pytest.fixture
def attributed() -> InvertedIndex:
    return build(ATTRIBUTED)


def where(**conditions: Condition) -> Filters:
    return Filters(attributes=conditions)


@pytest.mark.parametrize(
    ("filters", "visible"),
    [
        (where(department=any_of(["HR"])), {"hr-uk", "hr-ie", "secret"}),
        (where(department=any_of(["hr"])), set()),
        (where(department=any_of(["HR", "IT"])), {"hr-uk", "hr-ie", "it", "secret"}),
        (where(region=any_of(["IE"])), {"hr-ie"}),
        (where(region=any_of(["UK"])), {"hr-uk", "hr-ie", "secret"}),
        (where(effective=between({"gte": "2024-01-01", "lte": "2024-12-31"})), {"hr-uk", "secret"}),
        (where(effective=between({"gt": "2024-03-01"})), {"hr-ie", "secret"}),
        (where(effective=between({"lt": "2024-03-01"})), {"it"}),
        (where(effective=any_of(["2025-06-30"])), {"hr-ie"}),
        (where(level=between({"gte": 2})), {"hr-uk", "hr-ie"}),
        (where(level=between({"gt": 2, "lt": 4})), {"hr-ie"}),
        (where(level=any_of([2])), {"hr-uk"}),
        (where(level=any_of(["2"])), {"it"}),
        (where(open=any_of([False])), {"secret"}),
        (where(open=any_of([0])), set()),
        (where(nosuchattribute=any_of(["HR"])), set()),
        (where(department=any_of(["HR"]), region=any_of(["IE"])), {"hr-ie"}),
        (Filters(tags=frozenset({"policy"}), attributes={"region": any_of(["UK"])}), {"hr-uk"}),
    ],
    ids=[
        "equals",
        "equals-is-case-sensitive",
        "in",
        "any-element-of-a-list",
        "list-or-scalar",
        "date-range",
        "date-after-excludes-the-day-and-counts-a-date-time-as-its-date",
        "date-before",
        "date-time-equals-its-date",
        "number-range-skips-text",
        "number-range-exclusive",
        "number-equals",
        "text-equals-not-the-number",
        "boolean",
        "a-number-is-not-a-boolean",
        "missing-attribute",
        "every-condition-required",
        "tags-and-attributes",
    ],
)
def test_attribute_filters_decide_which_documents_route(
    attributed: InvertedIndex, filters: Filters, visible: set[str]
) -> None:
    assert set(ids(attributed.search(["leav"], top_k=10, filters=filters))) == visible
    # Listings check one document at a time; both must agree.
    checked = {
        e.file_id
        for e in ATTRIBUTED
        if filters.tags <= e.tags and attributes_match(filters.attributes, e.attributes)
    }
    assert checked == visible


@pytest.mark.parametrize(
    ("groups", "visible"),
    [
        (None, {"hr-uk", "hr-ie", "secret"}),
        ([], {"hr-uk", "hr-ie"}),
        (["hr"], {"hr-uk", "hr-ie", "secret"}),
    ],
    ids=["no-restriction", "no-groups", "hr-group"],
)
def test_a_filter_never_widens_what_the_callers_groups_allow(
    attributed: InvertedIndex, groups: list[str] | None, visible: set[str]
) -> None:
    hr = where(department=any_of(["HR"]))
    assert set(ids(attributed.search(["leav"], top_k=10, groups=groups, filters=hr))) == visible
    mask = attributed.allowed_mask(groups=groups, filters=hr)
    assert set(ids(attributed.search(["leav"], top_k=10, allowed=mask))) == visible


def test_top_k_is_filled_from_the_allowed_documents_only(attributed: InvertedIndex) -> None:
    hr = where(department=any_of(["HR"]))
    assert ids(attributed.search(["leav"], top_k=2)) == ["it", "secret"]
    assert ids(attributed.search(["leav"], top_k=2, groups=[], filters=hr)) == ["hr-ie", "hr-uk"]


def test_empty_filters_restrict_nothing(attributed: InvertedIndex) -> None:
    assert attributed.allowed_mask(filters=Filters()) is None
    assert len(attributed.search(["leav"], top_k=10, filters=Filters())) == len(ATTRIBUTED)


def test_changed_attributes_route_at_once(attributed: InvertedIndex) -> None:
    ie = where(region=any_of(["IE"]))
    moved = entry("hr-uk", {"leav": 3, "pad": 7}, attributes={"region": "IE"})
    attributed.add(moved)  # the same file id: its attributes replaced
    assert set(ids(attributed.search(["leav"], top_k=10, filters=ie))) == {"hr-uk", "hr-ie"}
    assert "hr-uk" not in ids(
        attributed.search(["leav"], top_k=10, filters=where(level=any_of([2])))
    )
    attributed.apply_documents(["doc-hr-ie"], [entry("hr-ie", {"leav": 5})])  # as a refresh does
    assert set(ids(attributed.search(["leav"], top_k=10, filters=ie))) == {"hr-uk"}
    attributed.remove("hr-uk")
    assert ids(attributed.search(["leav"], top_k=10, filters=ie)) == []


def test_attribute_filters_survive_compaction() -> None:
    entries = [
        entry(
            f"f{i:04d}",
            {"common": 1 + i % 3},
            attributes={"n": i, "parity": ["even", "odd"][i % 2]},
        )
        for i in range(1100)
    ]
    index = build(entries)
    for i in range(1100):
        if i % 20:
            index.remove(f"f{i:04d}")
    assert index._dead_slots() < 1024  # the slots were renumbered at least once
    evens = where(parity=any_of(["even"]), n=between({"gte": 500}))
    expected = {f"f{i:04d}" for i in range(500, 1100, 20)}
    assert set(ids(index.search(["common"], top_k=len(index), filters=evens))) == expected
    index.add(entry("late", {"common": 1}, attributes={"parity": "odd", "n": 7}))
    late = where(parity=any_of(["odd"]))
    assert ids(index.search(["common"], top_k=len(index), filters=late)) == ["late"]


# --------------------------------------------------------------------------------------------
# Token budget
# --------------------------------------------------------------------------------------------


@pytest.fixture
def budgeted() -> InvertedIndex:
    # Equal lengths, so the rank follows tf: A > B > C > D > E.
    sizes = {"A": 500, "B": 300, "C": 100, "D": 50, "E": 400}
    return build(
        entry(name, {"leav": 5 - i, "pad": 1 + i}, tokens=sizes[name])
        for i, name in enumerate(sizes)
    )


@pytest.mark.parametrize(
    ("budget", "top_k", "expected"),
    [
        (None, 3, ["A", "B", "C"]),
        (400, 2, ["B", "C"]),  # A does not fit and is skipped for the next that does
        (1000, 5, ["A", "B", "C", "D"]),  # E would overflow
        (1350, 5, ["A", "B", "C", "D", "E"]),
        (50, 5, ["D"]),
        (49, 5, []),  # smaller than every document
        (0, 5, []),
    ],
)
def test_token_budget(
    budgeted: InvertedIndex, budget: int | None, top_k: int, expected: list[str]
) -> None:
    assert ids(budgeted.search(["leav"], top_k=top_k, token_budget=budget)) == expected


def test_routed_documents_never_exceed_the_budget(budgeted: InvertedIndex) -> None:
    for budget in range(0, 1500, 37):
        hits = budgeted.search(["leav"], top_k=5, token_budget=budget)
        assert sum(h.entry.token_estimate for h in hits) <= budget


def test_a_small_document_far_down_the_ranking_is_found_when_the_rest_do_not_fit() -> None:
    large = [entry(f"big{i:02d}", {"leav": 3}, tokens=10_000) for i in range(40)]
    index = build([*large, entry("small", {"leav": 1, "pad": 2}, tokens=100)])
    assert ids(index.search(["leav"], top_k=1, token_budget=1000)) == ["small"]


# --------------------------------------------------------------------------------------------
# Contributions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [LUCENE, OKAPI], ids=["lucene", "okapi"])
def test_contributions_sum_to_the_score(
    mini_corpus: list[tuple[str, list[str]]], params: BM25Params
) -> None:
    entries = corpus_entries(mini_corpus)
    terms_of = {e.file_id: set(e.term_freqs) for e in entries}
    index = build(entries, params)
    for query in MINI_QUERIES:
        for hit in index.search(query, top_k=20):
            assert np.isclose(sum(hit.contributions.values()), hit.score)
            assert set(hit.contributions) <= set(query) & terms_of[hit.entry.file_id]


def test_contributions_name_only_matched_terms(three: InvertedIndex) -> None:
    (hit,) = [
        h
        for h in three.search(["travel", "leav", "laptop", "zzz"], top_k=5)
        if h.entry.file_id == "B"
    ]
    assert hit.contributions == pytest.approx(
        {"travel": idf(1) * tf(2, 4), "leav": idf(2) * tf(1, 4)}
    )
    assert list(hit.contributions) == ["travel", "leav"]  # largest first


def test_a_repeated_term_contributes_twice(three: InvertedIndex) -> None:
    (hit, _) = three.search(["leav", "leav"], top_k=5)
    assert hit.contributions == pytest.approx({"leav": 2 * idf(2) * tf(2, 3)})


def test_explain_false_leaves_contributions_empty(three: InvertedIndex) -> None:
    assert all(h.contributions == {} for h in three.search(["leav"], top_k=5, explain=False))
