"""Routing: which documents a question should be answered from.

BM25 over the live index picks the top-k documents the caller may see (groups, tags and
attribute filters apply *before* ranking, so the k are the best of the allowed documents),
within a token budget; a question that matches no term of any document routes to nothing,
never to arbitrary zero-score documents. A document scores by its whole text and by its best
passage (``indexing.index``). A question whose informative terms the best document mostly
lacks routes to nothing too (``RoutingOptions.min_coverage``): better no answer than a
confident one from the wrong policy. In a pool with sentence vectors (``KPOOL_SEMANTIC``), the
question's vector ranks the passages by meaning too, and the two rankings are fused
(``indexing.index``): "my mom is having surgery" finds the family-leave policy that never says
"mom". There the closest passage stands for the document's best passage, so BM25 scores whole
documents (``Settings.routing_options``), and the passage reported is the closest one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from indexing.filters import Filters
from indexing.pool import Pool


@dataclass(frozen=True)
class RoutingOptions:
    """How questions are scored; the service builds them from its settings."""

    #: Drop the words that only make a sentence a question (``Analyzer.question_terms``).
    drop_question_words: bool = True
    #: How much a document's best passage adds to its whole-text score (0: documents only).
    passage_weight: float = 1.0
    #: Route nothing when the best document holds less than this share of the question's
    #: IDF-weighted terms (0: never abstain).
    min_coverage: float = 0.0
    #: Share of meaning in the score, the rest BM25's, in a pool with sentence vectors
    #: (``indexing.semantic``; 0: BM25 alone, 1: meaning alone, so a document without vectors
    #: never routes). Any document the caller may see can route by meaning, words or not.
    semantic_weight: float = 0.0


@dataclass(frozen=True)
class RoutedDocument:
    document_id: str
    file_id: str
    title: str
    score: float
    token_estimate: int
    matched_terms: dict[str, float] = field(default_factory=dict)
    #: Character span, in the extracted text, of the passage that matched best.
    passage: tuple[int, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "file_id": self.file_id,
            "title": self.title,
            "score": round(self.score, 6),
            "token_estimate": self.token_estimate,
            "matched_terms": {t: round(c, 6) for t, c in self.matched_terms.items()},
            "passage": None
            if self.passage is None
            else {"start_char": self.passage[0], "end_char": self.passage[1]},
        }


@dataclass(frozen=True)
class Route:
    question: str
    terms: list[str]
    documents: list[RoutedDocument]

    @property
    def token_estimate(self) -> int:
        return sum(d.token_estimate for d in self.documents)

    def as_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "terms": self.terms,
            "documents": [d.as_dict() for d in self.documents],
            "token_estimate": self.token_estimate,
        }


def query_terms(
    pool: Pool, question: str, earlier: Sequence[str] = (), *, drop_question_words: bool = True
) -> list[str]:
    """The question's terms; in a follow-up, the earlier questions' terms too at half weight
    ("and for contractors?" after a question about leave is about leave for contractors)."""
    analyze = pool.analyzer.question_terms if drop_question_words else pool.analyzer.terms
    terms = analyze(question)
    if not earlier:
        return terms
    return terms + terms + [t for text in earlier for t in analyze(text)]


def question_text(question: str, earlier: Sequence[str] = ()) -> str:
    """What a question's sentence vector is made from: the question, then the conversation's
    latest earlier one (the model reads only so far, and the question itself matters most)."""
    return question if not earlier else f"{question} {earlier[-1]}"


def route(
    pool: Pool,
    question: str,
    *,
    top_k: int,
    earlier: Sequence[str] = (),
    token_budget: int | None = None,
    groups: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    filters: Filters | None = None,
    options: RoutingOptions = RoutingOptions(),
    explain: bool = True,
) -> Route:
    """The documents to answer ``question`` from, best first.

    ``earlier``: the conversation's earlier questions, for a follow-up. ``groups``: the caller's
    groups (``None``: no restriction; documents without groups are visible to everyone).
    ``tags``: documents must carry all of them. ``filters``: the request's tags and attribute
    conditions (``indexing.filters``), on top of the caller's groups, never instead of them.
    """
    terms = query_terms(pool, question, earlier, drop_question_words=options.drop_question_words)
    vector = None
    if options.semantic_weight > 0 and pool.config.semantic and terms:
        vector = pool.encoder.question(question_text(question, earlier))
    hits = pool.index.search(
        terms,
        top_k=top_k,
        groups=groups,
        tags=tags,
        filters=filters,
        token_budget=token_budget,
        passage_weight=options.passage_weight,
        min_coverage=options.min_coverage,
        query_vector=vector,
        semantic_weight=options.semantic_weight,
        explain=explain,
    )
    documents = [
        RoutedDocument(
            document_id=hit.entry.document_id,
            file_id=hit.entry.file_id,
            title=hit.entry.title,
            score=hit.score,
            token_estimate=hit.entry.token_estimate,
            matched_terms=hit.contributions,
            passage=hit.passage,
        )
        for hit in hits
    ]
    return Route(question=question, terms=terms, documents=documents)
