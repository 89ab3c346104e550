"""Passage-aware scoring in the inverted index: proved against rank_bm25 and by hand, exact
through updates and compaction, and what it changes for routing (the best passage, coverage,
filters, memory)."""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi

from indexing.analyzer import Analyzer
from indexing.bm25 import BM25Params
from indexing.filters import Filters, any_of
from indexing.index import Hit, IndexEntry, InvertedIndex
from indexing.ingest import indexable_text
from indexing.passages import passage_text, split_passages
from indexing.summary import PassageVectors

ANALYZER = Analyzer()
LUCENE = BM25Params(k1=1.2, b=0.75, variant="lucene")
OKAPI = BM25Params(k1=1.2, b=0.75, variant="okapi", epsilon=0.25)
WEIGHTS = (0.0, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class Doc:
    """A document as the reference sees it: its passages' terms, plus terms only the whole
    document holds (its title, say). ``passages=None``: summarised without passages."""

    file_id: str
    passages: tuple[tuple[str, ...], ...] | None
    extra: tuple[str, ...] = ()

    @property
    def terms(self) -> list[str]:
        return [*self.extra, *chain.from_iterable(self.passages or ())]

    @property
    def spans(self) -> list[tuple[int, int]]:
        """Made-up character spans, distinct across file ids, so a hit's passage names both the
        document and the passage."""
        base = zlib.crc32(self.file_id.encode()) % 100_000 * 1000
        return [(base + 10 * j, base + 10 * j + len(p)) for j, p in enumerate(self.passages or ())]

    def entry(self, *, document_id: str | None = None, **labels: Any) -> IndexEntry:
        passages = None
        if self.passages is not None:
            passages = PassageVectors.from_counts(
                [
                    (Counter(p), len(p), span)
                    for p, span in zip(self.passages, self.spans, strict=True)
                ]
            )
        return IndexEntry(
            file_id=self.file_id,
            document_id=document_id or f"doc-{self.file_id}",
            title=self.file_id,
            term_freqs=Counter(self.terms),
            length=len(self.terms),
            passages=passages,
            **labels,
        )


def doc(file_id: str, *passages: str, title: str = "") -> Doc:
    """A document from its passages' terms, each passage a space-separated string."""
    return Doc(file_id, tuple(tuple(p.split()) for p in passages), tuple(title.split()))


def whole(one: Doc) -> Doc:
    """The same document summarised without passages."""
    return Doc(one.file_id, None, tuple(one.terms))


def build(entries: Iterable[IndexEntry], params: BM25Params = LUCENE) -> InvertedIndex:
    index = InvertedIndex(params)
    index.bulk_load(entries)
    return index


def ids(hits: Sequence[Hit]) -> list[str]:
    return [hit.entry.file_id for hit in hits]


def okapi(corpus: Sequence[Sequence[str]]) -> BM25Okapi:
    return BM25Okapi(corpus, k1=1.2, b=0.75, epsilon=0.25)


def reference_scores(docs: Sequence[Doc], query: list[str], passage_weight: float) -> list[float]:
    """rank_bm25 over the documents, plus ``passage_weight`` times each document's best
    passage under rank_bm25 over every passage in the pool; a best passage below zero adds
    nothing (the index only adds positive passage scores)."""
    scores = okapi([d.terms for d in docs]).get_scores(query)
    passages = [p for d in docs for p in d.passages or ()]
    if not passages:
        return list(scores)
    per_passage = iter(okapi(passages).get_scores(query).tolist())
    best = [max([0.0, *islice(per_passage, len(d.passages or ()))]) for d in docs]
    return list(scores + passage_weight * np.array(best))


def living_passages(docs: Iterable[Doc]) -> int:
    return sum(len(d.passages or ()) for d in docs)


def assert_matches_reference(
    index: InvertedIndex, docs: Sequence[Doc], queries: Sequence[list[str]]
) -> None:
    order = [d.file_id for d in docs]
    for weight in WEIGHTS:
        for query in queries:
            ours = index.scores(query, passage_weight=weight)
            assert sorted(ours) == sorted(order)
            expected = reference_scores(docs, query, weight)
            assert np.allclose([ours[f] for f in order], expected), (weight, query)


def assert_same_as_fresh(
    index: InvertedIndex, docs: Sequence[Doc], queries: Sequence[list[str]], params: BM25Params
) -> None:
    """Scores, hits and best passages equal those of a fresh bulk load of ``docs``."""
    fresh = build([d.entry() for d in docs], params)
    assert len(index) == len(fresh) == len(docs)
    assert index.passage_count == fresh.passage_count == living_passages(docs)
    for weight in (0.0, 1.0, 2.0):
        for query in queries:
            ours, theirs = (ix.scores(query, passage_weight=weight) for ix in (index, fresh))
            assert ours.keys() == theirs.keys()
            assert np.allclose([ours[k] for k in ours], [theirs[k] for k in ours]), query
            top = len(docs) + 1
            a, b = (ix.search(query, top_k=top, passage_weight=weight) for ix in (index, fresh))
            assert {h.entry.file_id: h.score for h in a} == pytest.approx(
                {h.entry.file_id: h.score for h in b}
            )
            assert {h.entry.file_id: h.passage for h in a} == {
                h.entry.file_id: h.passage for h in b
            }


# --------------------------------------------------------------------------------------------
# Okapi passage scores equal rank_bm25 over documents plus rank_bm25 over passages
# --------------------------------------------------------------------------------------------

# "polici" is in 10 of the 14 passages and in every document, "leav" in 4 of the 7 documents:
# both take rank_bm25's floor for negative IDF, at each level.
CORPUS = [
    doc(
        "handbook",
        "leav parent leav week polici",
        "sick leav note polici",
        "expens receipt polici",
        "laptop vpn polici",
        title="handbook",
    ),
    doc("leave", "annual leav day polici", "carri day leav", title="leav"),
    doc("travel", "travel train expens receipt polici", title="travel"),
    doc(
        "parental",
        "parent leav week father mother",
        "pay week polici",
        "return work parent",
        title="parent",
    ),
    doc("it", "laptop encrypt disk", "vpn home work polici", title="laptop"),
    doc("pension", "pension contribut pay polici", title="pension"),
    doc("benefits", "pension parent leav laptop travel polici", title="benefit"),
]

QUERIES = [
    ["leav"],
    ["parent", "leav", "week"],
    ["polici"],
    ["polici", "polici", "laptop"],  # a repeated term, and a floored one
    ["vpn", "work"],
    ["pension", "nosuchterm"],
    ["expens", "receipt", "travel"],
    ["handbook"],  # only a document holds it, no passage
    ["father"],
    ["nosuchterm"],
    [],
]


def test_the_corpus_exercises_the_negative_idf_floor_for_documents_and_passages() -> None:
    documents = okapi([d.terms for d in CORPUS])
    passages = okapi([p for d in CORPUS for p in d.passages or ()])
    assert documents.idf["polici"] == pytest.approx(0.25 * documents.average_idf)
    assert documents.idf["leav"] == pytest.approx(0.25 * documents.average_idf)
    assert passages.idf["polici"] == pytest.approx(0.25 * passages.average_idf)


@pytest.mark.parametrize("passage_weight", WEIGHTS)
def test_okapi_scores_equal_rank_bm25_over_documents_plus_the_best_passage(
    passage_weight: float,
) -> None:
    index = build([d.entry() for d in CORPUS], OKAPI)
    assert index.passage_count == living_passages(CORPUS) == 14
    order = [d.file_id for d in CORPUS]
    for query in QUERIES:
        ours = index.scores(query, passage_weight=passage_weight)
        expected = reference_scores(CORPUS, query, passage_weight)
        assert np.allclose([ours[f] for f in order], expected), query


# --------------------------------------------------------------------------------------------
# Lucene passage scores on a three-document corpus, by hand
# --------------------------------------------------------------------------------------------

# Documents: N = 3, lengths 6, 4 and 6 (avgdl 16/3). Passages: N = 5, lengths 3, 2 | 3 | 2, 4
# (avg 2.8). B's "expens" is in its title only, so no passage of B holds it.
THREE = [
    doc("A", "leav leav parent", "pay leav", title="handbook"),
    doc("B", "leav travel travel", title="expens"),
    doc("C", "expens laptop", "laptop laptop travel pad"),
]
DOCS_AVG = 16 / 3
PASSAGES_AVG = 2.8


def idf(df: int, n: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def tf(tf: int, dl: int, avgdl: float, k1: float = 1.2, b: float = 0.75) -> float:
    return tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))


def by_document(tf_: int, dl: int) -> float:
    return tf(tf_, dl, DOCS_AVG)


def by_passage(tf_: int, dl: int) -> float:
    return tf(tf_, dl, PASSAGES_AVG)


# query → (each document's whole-text score, its best passage's score, which passage that is)
HAND_COMPUTED: dict[str, tuple[dict[str, float], dict[str, float], dict[str, int]]] = {
    "leav parent": (
        {
            "A": idf(2, 3) * by_document(3, 6) + idf(1, 3) * by_document(1, 6),
            "B": idf(2, 3) * by_document(1, 4),
        },
        {
            # A's first passage beats its second, idf(3, 5) * by_passage(1, 2).
            "A": idf(3, 5) * by_passage(2, 3) + idf(1, 5) * by_passage(1, 3),
            "B": idf(3, 5) * by_passage(1, 3),
        },
        {"A": 0, "B": 0},
    ),
    "travel laptop": (
        {
            "B": idf(2, 3) * by_document(2, 4),
            "C": idf(2, 3) * by_document(1, 6) + idf(1, 3) * by_document(3, 6),
        },
        {
            "B": idf(2, 5) * by_passage(2, 3),
            # C's second passage beats its first, idf(2, 5) * by_passage(1, 2).
            "C": idf(2, 5) * by_passage(1, 4) + idf(2, 5) * by_passage(2, 4),
        },
        {"B": 0, "C": 1},
    ),
    "expens": (
        {"B": idf(2, 3) * by_document(1, 4), "C": idf(2, 3) * by_document(1, 6)},
        {"C": idf(1, 5) * by_passage(1, 2)},
        {"C": 0},
    ),
}


def test_the_three_document_corpus_is_as_described() -> None:
    assert [len(d.terms) for d in THREE] == [6, 4, 6]
    assert [len(p) for d in THREE for p in d.passages or ()] == [3, 2, 3, 2, 4]


@pytest.mark.parametrize("query", list(HAND_COMPUTED))
@pytest.mark.parametrize("passage_weight", [0.5, 1.0, 2.0])
def test_lucene_passage_scores_equal_hand_computed_values(
    query: str, passage_weight: float
) -> None:
    whole_text, best_passage, best = HAND_COMPUTED[query]
    expected = {
        name: score + passage_weight * best_passage.get(name, 0.0)
        for name, score in whole_text.items()
    }
    index = build([d.entry() for d in THREE], LUCENE)
    hits = index.search(query.split(), top_k=10, passage_weight=passage_weight)
    assert {h.entry.file_id: h.score for h in hits} == pytest.approx(expected)
    spans = {d.file_id: d.spans for d in THREE}
    assert {h.entry.file_id: h.passage for h in hits} == {
        name: spans[name][best[name]] if name in best else None for name in expected
    }
    scores = index.scores(query.split(), passage_weight=passage_weight)
    assert scores == pytest.approx({"A": 0.0, "B": 0.0, "C": 0.0} | expected)


# --------------------------------------------------------------------------------------------
# Documents without passages
# --------------------------------------------------------------------------------------------


def test_documents_without_passages_score_their_whole_text_only() -> None:
    plain_docs = [whole(d) for d in CORPUS]
    plain = build([d.entry() for d in plain_docs], OKAPI)
    assert plain.passage_count == 0
    assert_matches_reference(plain, plain_docs, QUERIES)
    for query in QUERIES:
        unweighted = plain.scores(query, passage_weight=0.0)
        for weight in WEIGHTS:
            assert plain.scores(query, passage_weight=weight) == unweighted
        assert all(hit.passage is None for hit in plain.search(query, top_k=10))


@pytest.mark.parametrize("params", [LUCENE, OKAPI], ids=["lucene", "okapi"])
def test_documents_without_passages_score_exactly_as_before_among_documents_with_them(
    params: BM25Params,
) -> None:
    # Every other document loses its passages; "it" keeps a summary of zero passages.
    mixed_docs = [whole(d) if i % 2 else d for i, d in enumerate(CORPUS)]
    mixed_docs[4] = Doc("it", (), tuple(CORPUS[4].terms))
    without = {d.file_id for d in mixed_docs if not d.passages}
    mixed = build([d.entry() for d in mixed_docs], params)
    before = build([whole(d).entry() for d in CORPUS], params)
    assert mixed.passage_count == living_passages(mixed_docs)
    for query in QUERIES:
        plain = before.scores(query)
        for weight in WEIGHTS:
            ours = mixed.scores(query, passage_weight=weight)
            assert {f: ours[f] for f in without} == {f: plain[f] for f in without}, query
        for hit in mixed.search(query, top_k=10):
            if hit.entry.file_id in without:
                assert hit.passage is None
    if params is OKAPI:
        assert_matches_reference(mixed, mixed_docs, QUERIES)


# --------------------------------------------------------------------------------------------
# Updates and compaction
# --------------------------------------------------------------------------------------------


def synthetic(i: int, version: int = 0) -> Doc:
    """One of many generated documents: 1 to 4 passages, each holding "common"."""
    passages = [
        f"common m{(i + j) % 7} n{(i * (j + 1) + version) % 11}" + " common" * ((i + j) % 2)
        for j in range((i + version) % 4 + 1)
    ]
    return doc(f"f{i:04d}", *passages, title=f"t{i % 13}")


SYNTHETIC_QUERIES = [
    ["common"],
    ["m3", "n4"],
    ["m0", "common", "n10"],
    ["t5", "m2"],
    ["n7", "n7", "t0"],
    ["nosuchterm"],
]


def test_passage_scores_stay_exact_through_updates_and_compaction() -> None:
    live = {d.file_id: d for d in map(synthetic, range(600))}
    index = build([d.entry() for d in live.values()], OKAPI)
    for one in map(synthetic, range(600, 1100)):
        index.add(one.entry())
        live[one.file_id] = one

    # Replacements: a new file for the same document (more or fewer passages), a summary
    # without passages, and a refresh that swaps one document and drops another.
    for i in range(0, 1100, 40):
        old, new = synthetic(i), synthetic(i, version=1)
        renamed = Doc(f"{old.file_id}-v2", new.passages, new.extra)
        index.replace(old.file_id, renamed.entry(document_id=f"doc-{old.file_id}"))
        del live[old.file_id]
        live[renamed.file_id] = renamed
    for i in range(20, 1100, 40):
        stripped = whole(synthetic(i))
        index.add(stripped.entry())
        live[stripped.file_id] = stripped
    refreshed = synthetic(60, version=2)
    index.apply_documents(["doc-f0060", "doc-f0061"], [refreshed.entry()])
    live[refreshed.file_id] = refreshed
    del live["f0061"]
    assert index.passage_count == living_passages(live.values())
    assert_same_as_fresh(index, list(live.values()), SYNTHETIC_QUERIES, OKAPI)

    for file_id in list(live):
        if int(file_id[1:5]) % 20:
            assert index.remove(file_id)
            del live[file_id]
    assert index._dead_slots() < 1024  # the slots (and the passages) were renumbered
    assert index.passage_count == living_passages(live.values())
    assert_same_as_fresh(index, list(live.values()), SYNTHETIC_QUERIES, OKAPI)
    assert_matches_reference(index, list(live.values()), SYNTHETIC_QUERIES)

    # Changes after the compaction land on renumbered slots and passages.
    late = synthetic(5001)
    index.add(late.entry())
    live[late.file_id] = late
    index.replace("f0020", synthetic(20, version=3).entry())
    live["f0020"] = synthetic(20, version=3)
    index.apply_documents(["doc-f0040"], [])  # now held by the file "f0040-v2"
    del live["f0040-v2"]
    assert index.passage_count == living_passages(live.values())
    assert_same_as_fresh(index, list(live.values()), SYNTHETIC_QUERIES, OKAPI)
    assert_matches_reference(index, list(live.values()), SYNTHETIC_QUERIES)


# --------------------------------------------------------------------------------------------
# Why passages: a long document that answers in one section
# --------------------------------------------------------------------------------------------

HANDBOOK = """# Employee handbook

Welcome to the company. This handbook describes how we work together, what we expect of each
other and where to find help. Read it in your first week and come back to it whenever a question
comes up; your manager and the people team are always happy to explain anything in it.

## Working hours

Core hours are ten until four. Outside them you arrange your day with your team. Overtime is
agreed in advance with your manager and is paid or taken back as time off within three months.
Part-time staff have the same core hours pro rata, agreed in their contract.

## Expenses

Claim travel, meals and accommodation through the expenses system within thirty days, with an
itemised receipt for every item. Train travel is standard class unless the journey is longer
than four hours. Hotels are booked through the travel desk; mileage is paid at the HMRC rate.

## Parental leave

A new parent, mother or father, birth or adoptive, gets twenty-six weeks of parental leave on
full pay, and a further twenty-six weeks unpaid. A father or partner may take the paid weeks in
up to three blocks during the child's first year. Tell the people team about your parental
leave at least eight weeks before it starts; your manager plans cover for the weeks you are away.

## IT security

Laptops are encrypted and must be locked whenever you leave your desk. Use the VPN on any
public network. Report a lost or stolen device to the service desk the same day. Never share
your password, and turn on two-factor authentication for every company account.

## Conduct

We treat each other with respect. Harassment, discrimination and bullying are never acceptable
and are handled under the grievance procedure. Conflicts of interest are declared to your
manager. Gifts worth more than fifty pounds are declined politely and recorded in the register.

## Performance reviews

Reviews happen twice a year. You and your manager agree goals in January and July, look back at
what went well and what did not, and write down what support you need. Pay rises follow the
July review; promotions can be proposed at either.

## Health and safety

Fire alarms are tested every Monday at ten. Know your nearest exit and assembly point. First
aiders are listed on every floor; report any accident, however small, in the accident book.
Display screen assessments are available for everyone who works at a desk.
"""

BENEFITS = """# Benefits at a glance

Everyone gets twenty-five days of holiday, private health cover, a pension with matched
contributions, a cycle-to-work scheme, an eye test every two years, a season ticket loan and a
learning budget. A new mother or father also gets parental leave, counted in weeks, on top of
holidays. Ask the people team for the details of any benefit.
"""

PAGES = [
    ("travel", "Travel policy", "Book trains and flights through the travel desk. Keep receipts."),
    ("pension", "Pension", "The company pays six percent into your pension; you pay four."),
    ("holidays", "Holidays", "Everyone gets twenty-five days of paid holiday plus bank holidays."),
]

QUESTION = ANALYZER.question_terms("How many weeks of parental leave does a father get?")


def summarised(file_id: str, title: str, text: str, *, passages: bool = True) -> IndexEntry:
    """An entry summarised the way ``indexing.ingest.summarise`` does it."""
    terms, length = ANALYZER.term_frequencies(indexable_text(title, text))
    vectors = None
    if passages:
        vectors = PassageVectors.from_counts(
            [
                (*ANALYZER.term_frequencies(passage_text(title, text, p)), (p.start, p.end))
                for p in split_passages(text)
            ]
        )
    return IndexEntry(
        file_id=file_id,
        document_id=f"doc-{file_id}",
        title=title,
        term_freqs=terms,
        length=length,
        passages=vectors,
    )


def policies(*, pages_have_passages: bool = True) -> InvertedIndex:
    return build(
        [
            summarised("handbook", "Employee handbook", HANDBOOK),
            summarised("benefits", "Benefits", BENEFITS),
            *(summarised(*page, passages=pages_have_passages) for page in PAGES),
        ],
        BM25Params(),
    )


def test_the_short_page_mentions_each_question_term_once_and_the_handbook_is_long() -> None:
    assert QUESTION == ["week", "parent", "leav", "father"]
    counts = Counter(ANALYZER.terms(BENEFITS))
    assert [counts[term] for term in QUESTION] == [1, 1, 1, 1]
    assert len(ANALYZER.terms(HANDBOOK)) > 5 * len(ANALYZER.terms(BENEFITS))


def test_a_long_document_whose_section_answers_outranks_a_short_page_mentioning_each_term() -> None:
    index = policies()
    assert ids(index.search(QUESTION, top_k=2, passage_weight=0.0)) == ["benefits", "handbook"]
    assert ids(index.search(QUESTION, top_k=2)) == ["handbook", "benefits"]


def test_a_hit_points_at_the_passage_that_answers() -> None:
    handbook, benefits = policies().search(QUESTION, top_k=2)
    (section,) = [p for p in split_passages(HANDBOOK) if p.headings[-1:] == ("Parental leave",)]
    assert handbook.passage == (section.start, section.end)
    assert "twenty-six weeks of parental leave" in HANDBOOK[section.start : section.end]
    (page,) = split_passages(BENEFITS)
    assert benefits.passage == (page.start, page.end)


def test_no_passage_is_reported_for_a_document_without_passages_or_with_passages_off() -> None:
    index = policies(pages_have_passages=False)
    question = ANALYZER.question_terms("How many days of holiday do I get?")
    hits = index.search(question, top_k=5)
    assert {h.entry.file_id: h.passage is None for h in hits} == {
        "holidays": True,  # summarised without passages
        "benefits": False,
        "handbook": False,
    }
    assert all(h.passage is None for h in index.search(question, top_k=5, passage_weight=0.0))


# --------------------------------------------------------------------------------------------
# Contributions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [LUCENE, OKAPI], ids=["lucene", "okapi"])
@pytest.mark.parametrize("passage_weight", [0.5, 1.0, 2.0])
def test_contributions_through_the_best_passage_sum_to_the_score(
    params: BM25Params, passage_weight: float
) -> None:
    index = build([d.entry() for d in CORPUS], params)
    for query in QUERIES:
        for hit in index.search(query, top_k=20, passage_weight=passage_weight):
            assert sum(hit.contributions.values()) == pytest.approx(hit.score), query
            assert set(hit.contributions) <= set(query)


def test_the_answering_section_shows_in_the_contributions() -> None:
    index = policies()
    (alone,) = index.search(QUESTION, top_k=1, passage_weight=0.0)
    (with_passage,) = index.search(QUESTION, top_k=1)
    assert with_passage.entry.file_id == "handbook"
    assert sum(with_passage.contributions.values()) == pytest.approx(with_passage.score)
    handbook_alone = index.scores(QUESTION, passage_weight=0.0)["handbook"]
    assert with_passage.score > handbook_alone
    assert alone.entry.file_id == "benefits"


# --------------------------------------------------------------------------------------------
# Coverage
# --------------------------------------------------------------------------------------------

# N = 5. "leav" is in 3 documents, "sabbat" in 1 and "pension" in 2. The short "leave" page is
# the best for "sabbatical leave" though it never mentions a sabbatical; the one document that
# does is long. The "pension" page is best for "pension leave" and never mentions leave.
COVERAGE = [
    doc("leave", "leav leav leav annual", "leav leav leav annual"),
    doc("long", "sabbat " + "pad " * 99, "pension " + "pad " * 99),
    doc("notes", "leav x x x x x x x"),
    doc("pension", "pension pension contribut"),
    doc("other", "leav x", "travel travel"),
]


@pytest.mark.parametrize(
    ("query", "best", "held", "missing"),
    [
        (["sabbat", "leav"], "leave", "leav", "sabbat"),  # holds only the less informative term
        (["pension", "leav"], "pension", "pension", "leav"),  # holds only the rarer term
    ],
)
def test_min_coverage_drops_a_question_the_best_document_only_partly_covers(
    query: list[str], best: str, held: str, missing: str
) -> None:
    index = build([d.entry() for d in COVERAGE])
    weight = {t: idf(index.document_frequency(t), len(index)) for t in query}
    coverage = weight[held] / (weight[held] + weight[missing])
    assert ids(index.search(query, top_k=1)) == [best]
    assert missing not in next(d for d in COVERAGE if d.file_id == best).terms
    assert index.search(query, top_k=3, min_coverage=coverage + 1e-6) == []
    assert ids(index.search(query, top_k=1, min_coverage=coverage - 1e-6)) == [best]
    assert ids(index.search(query, top_k=1, passage_weight=0.0, min_coverage=coverage - 1e-6)) == [
        best
    ]


@pytest.mark.parametrize("params", [LUCENE, OKAPI], ids=["lucene", "okapi"])
@pytest.mark.parametrize(
    "query",
    [["leav", "annual"], ["leav", "leav", "annual"], ["annual", "nosuchterm"], ["pension"]],
    ids=str,
)
def test_a_fully_covered_question_is_never_dropped(params: BM25Params, query: list[str]) -> None:
    index = build([d.entry() for d in COVERAGE], params)
    expected = ids(index.search(query, top_k=3))
    assert expected
    assert ids(index.search(query, top_k=3, min_coverage=1.0)) == expected


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------


def test_passages_cost_memory_that_memory_bytes_without_passages_leaves_out() -> None:
    with_passages = build([d.entry() for d in CORPUS])
    plain = build([whole(d).entry() for d in CORPUS])
    assert with_passages.memory_bytes(passages=False) < with_passages.memory_bytes()
    # The document side is the same whether or not the documents brought passages.
    assert with_passages.memory_bytes(passages=False) == plain.memory_bytes(passages=False)


def test_without_passages_memory_bytes_is_the_same_either_way() -> None:
    loaded = build([whole(d).entry() for d in CORPUS])
    added = InvertedIndex()
    for one in CORPUS:
        added.add(whole(one).entry())
    for plain in (loaded, added):
        assert plain.passage_count == 0
        assert plain.memory_bytes() == plain.memory_bytes(passages=False)


# --------------------------------------------------------------------------------------------
# Filters come before passages
# --------------------------------------------------------------------------------------------

# "polici" is in 2 of the 4 documents: its Okapi IDF is zero, so under Okapi the index ranks by
# which documents matched rather than by a positive score (the other path through search).
FILTERED = [
    (doc("secret", "sabbat sabbat leav leav unpaid polici", "pay pension"), ["hr"], [], "HR"),
    (doc("guide", "sabbat leav request", "travel expens"), [], ["uk"], "HR"),
    (doc("eng", "leav rota sabbat", "laptop vpn"), ["eng"], ["uk"], "IT"),
    (doc("public", "leav annual day polici"), [], [], "IT"),
]
SABBATICAL = ["sabbat", "leav", "polici"]


def filtered(params: BM25Params) -> InvertedIndex:
    return build(
        [
            one.entry(
                groups=frozenset(groups), tags=frozenset(tags), attributes={"department": dept}
            )
            for one, groups, tags, dept in FILTERED
        ],
        params,
    )


@pytest.mark.parametrize("params", [LUCENE, OKAPI], ids=["lucene", "okapi"])
@pytest.mark.parametrize(
    ("groups", "tags", "filters", "visible"),
    [
        ([], None, None, {"guide", "public"}),
        (["eng"], None, None, {"guide", "eng", "public"}),
        (None, ["uk"], None, {"guide", "eng"}),
        ([], None, Filters(attributes={"department": any_of(["HR"])}), {"guide"}),
        (None, None, Filters(tags=frozenset({"nosuchtag"})), set()),
    ],
    ids=["public-only", "eng-group", "tag", "attribute", "nothing"],
)
def test_a_document_the_caller_may_not_see_is_never_routed_for_its_passages(
    params: BM25Params,
    groups: list[str] | None,
    tags: list[str] | None,
    filters: Filters | None,
    visible: set[str],
) -> None:
    index = filtered(params)
    assert ids(index.search(SABBATICAL, top_k=1))[0] == "secret"  # it would win if visible
    for weight in WEIGHTS:
        found = index.search(
            SABBATICAL, top_k=4, groups=groups, tags=tags, filters=filters, passage_weight=weight
        )
        assert set(ids(found)) == visible
        mask = index.allowed_mask(groups=groups, tags=tags, filters=filters)
        masked = index.search(SABBATICAL, top_k=4, allowed=mask, passage_weight=weight)
        assert set(ids(masked)) == visible


# --------------------------------------------------------------------------------------------
# Property: any sequence of changes scores like a fresh load
# --------------------------------------------------------------------------------------------

TERMS = ("leav", "parent", "week", "polici", "laptop", "pension")
FILE_IDS = ("a", "b", "c", "d", "e", "f")
PROPERTY_QUERIES = [
    *([t] for t in TERMS),
    list(TERMS),
    ["leav", "leav", "week"],
    ["nosuchterm"],
]

_terms = st.lists(st.sampled_from(TERMS), max_size=5).map(tuple)
_docs = st.builds(
    Doc,
    file_id=st.sampled_from(FILE_IDS),
    passages=st.none() | st.just(()) | st.lists(_terms, min_size=1, max_size=4).map(tuple),
    extra=st.lists(st.sampled_from(TERMS), max_size=2).map(tuple),
)
_changes = st.lists(
    st.tuples(
        st.sampled_from(("add", "remove", "replace", "apply", "compact", "forget")),
        st.sampled_from(FILE_IDS),
        _docs,
    ),
    max_size=20,
)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(
    initial=st.lists(_docs, min_size=2, max_size=6),
    changes=_changes,
    params=st.sampled_from([LUCENE, OKAPI]),
)
def test_any_sequence_of_changes_scores_like_a_fresh_bulk_load(
    initial: list[Doc], changes: list[tuple[str, str, Doc]], params: BM25Params
) -> None:
    index = build([d.entry() for d in initial], params)
    live = {d.file_id: d for d in initial}
    for change, file_id, one in changes:
        if change == "add":
            index.add(one.entry())
        elif change == "remove":
            assert index.remove(file_id) is (file_id in live)
            live.pop(file_id, None)
            continue
        elif change == "replace":
            index.replace(file_id, one.entry())
            live.pop(file_id, None)
        elif change == "apply":
            index.apply_documents([f"doc-{file_id}"], [one.entry()])
            live.pop(file_id, None)
        elif change == "compact":
            # Compaction on its own needs over 1024 dead slots (see the compaction test above).
            index._compact_slots()
            continue
        else:
            # Forgetting terms on its own needs thousands of them (see test_index.py).
            index._compact_vocabulary()
            continue
        live[one.file_id] = one
    assert_same_as_fresh(index, list(live.values()), PROPERTY_QUERIES, params)


_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    known=st.sets(_INT64, min_size=1, max_size=300),
    strangers=st.lists(_INT64, max_size=50),
    crowded=st.booleans(),
)
def test_bulk_load_finds_each_passage_term_in_the_vocabulary_by_its_hash(
    known: set[int], strangers: list[int], crowded: bool
) -> None:
    """A bulk load places passage terms with a bucket table over the hashes' top bits (or a
    binary search when the hashes crowd one bucket, as consecutive numbers do): every known
    hash is found at its place in the sorted vocabulary, and no other hash is found at all."""
    from indexing.index import _vocabulary_positions

    if crowded:
        start = min(known)
        known = {start + i for i in range(len(known)) if start + i < 2**63}
    vocabulary = np.array(sorted(known), np.int64)
    probes = np.array([*known, *strangers, *known], np.int64)
    at, found = _vocabulary_positions(vocabulary, probes)
    for value, position, hit in zip(probes.tolist(), at.tolist(), found.tolist(), strict=True):
        assert hit is (value in known)
        if hit:
            assert vocabulary[position] == value
