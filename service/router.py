"""Routing: which documents a question should be answered from.

BM25 over the live index picks the top-k documents the caller may see (groups, tags and
attribute filters apply *before* ranking, so the k are the best of the allowed documents),
within a token budget; a question that matches no term of any document routes to nothing,
never to arbitrary zero-score documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from indexing.filters import Filters
from indexing.pool import Pool


@dataclass(frozen=True)
class RoutedDocument:
    document_id: str
    file_id: str
    title: str
    score: float
    token_estimate: int
    matched_terms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "file_id": self.file_id,
            "title": self.title,
            "score": round(self.score, 6),
            "token_estimate": self.token_estimate,
            "matched_terms": {t: round(c, 6) for t, c in self.matched_terms.items()},
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


def query_terms(pool: Pool, question: str, earlier: Sequence[str] = ()) -> list[str]:
    """The question's terms; in a follow-up, the earlier questions' terms too at half weight
    ("and for contractors?" after a question about leave is about leave for contractors)."""
    terms = pool.analyzer.question_terms(question)
    if not earlier:
        return terms
    return terms + terms + [t for text in earlier for t in pool.analyzer.question_terms(text)]


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
    explain: bool = True,
) -> Route:
    """The documents to answer ``question`` from, best first.

    ``earlier``: the conversation's earlier questions, for a follow-up. ``groups``: the caller's
    groups (``None``: no restriction; documents without groups are visible to everyone).
    ``tags``: documents must carry all of them. ``filters``: the request's tags and attribute
    conditions (``indexing.filters``), on top of the caller's groups, never instead of them.
    """
    terms = query_terms(pool, question, earlier)
    hits = pool.index.search(
        terms,
        top_k=top_k,
        groups=groups,
        tags=tags,
        filters=filters,
        token_budget=token_budget,
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
        )
        for hit in hits
    ]
    return Route(question=question, terms=terms, documents=documents)
