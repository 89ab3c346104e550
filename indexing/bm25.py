"""BM25 scoring, as pure functions over numpy arrays.

    score(q, d) = Σ_t∈q  idf(t) · tf(t,d)·(k1 + 1) / (tf(t,d) + k1·(1 − b + b·|d| / avgdl))

The term-frequency part is Robertson and Zaragoza's (2009). Two IDF variants are offered:

* ``lucene`` (default): ``ln(1 + (N − df + 0.5) / (df + 0.5))``, Lucene's BM25Similarity. It is
  always positive, which matters for pools of a handful of documents where a term present in
  half of them would otherwise score nothing or less (Kamphuis et al. 2020 compare variants).
* ``okapi``: ``ln((N − df + 0.5) / (df + 0.5))`` with negative values replaced by
  ``epsilon · mean(idf over the vocabulary)``, exactly as ``rank_bm25.BM25Okapi`` does; kept as the
  reference the index is checked against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def idf_lucene(df: npt.ArrayLike, n_docs: int) -> FloatArray:
    """Lucene's BM25 IDF: ``ln(1 + (N − df + 0.5) / (df + 0.5))``."""
    df = np.asarray(df, dtype=np.float64)
    return np.log1p((n_docs - df + 0.5) / (df + 0.5))


def idf_okapi_raw(df: npt.ArrayLike, n_docs: int) -> FloatArray:
    """Robertson–Spärck Jones IDF as in Okapi BM25: ``ln((N − df + 0.5) / (df + 0.5))``."""
    df = np.asarray(df, dtype=np.float64)
    return np.log(n_docs - df + 0.5) - np.log(df + 0.5)


def okapi_floor(vocabulary_idf: FloatArray, epsilon: float) -> float:
    """The value rank_bm25 gives terms whose Okapi IDF is negative: ε times the mean IDF."""
    if vocabulary_idf.size == 0:
        return 0.0
    return float(epsilon * vocabulary_idf.mean())


def tf_component(
    tf: npt.ArrayLike, doc_len: npt.ArrayLike, avg_len: float, k1: float, b: float
) -> FloatArray:
    """The saturating term-frequency factor ``tf·(k1+1) / (tf + k1·(1 − b + b·|d|/avgdl))``."""
    tf = np.asarray(tf, dtype=np.float64)
    return tf * (k1 + 1.0) / (tf + length_norm(doc_len, avg_len, k1, b))


def length_norm(doc_len: npt.ArrayLike, avg_len: float, k1: float, b: float) -> FloatArray:
    """``k1·(1 − b + b·|d|/avgdl)``: the per-document part of the denominator."""
    doc_len = np.asarray(doc_len, dtype=np.float64)
    return k1 * (1.0 - b + b * doc_len / (avg_len if avg_len > 0 else 1.0))


@dataclass(frozen=True)
class Variant:
    """How a variant turns document frequencies into IDF weights."""

    name: str
    #: (df of the query terms, df of every term in the vocabulary (lazy), N, epsilon) → idf
    idf: Callable[[FloatArray, Callable[[], FloatArray], int, float], FloatArray]


def _lucene(
    df: FloatArray, _vocab: Callable[[], FloatArray], n_docs: int, _eps: float
) -> FloatArray:
    return idf_lucene(df, n_docs)


def _okapi(df: FloatArray, vocab: Callable[[], FloatArray], n_docs: int, eps: float) -> FloatArray:
    idf = idf_okapi_raw(df, n_docs)
    negative = idf < 0
    if negative.any():
        idf[negative] = okapi_floor(idf_okapi_raw(vocab(), n_docs), eps)
    return idf


VARIANTS: dict[str, Variant] = {
    "lucene": Variant("lucene", _lucene),
    "okapi": Variant("okapi", _okapi),
}


@dataclass(frozen=True)
class BM25Params:
    """Scoring parameters; stored with the pool beside the analyzer's."""

    k1: float = 1.2
    b: float = 0.75
    variant: str = "lucene"
    epsilon: float = 0.25  # okapi only: the floor for negative IDF, as in rank_bm25

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            known = ", ".join(sorted(VARIANTS))
            raise ValueError(f"unknown BM25 variant {self.variant!r}; known: {known}")
        if self.k1 < 0:
            raise ValueError(f"k1 must be >= 0, got {self.k1}")
        if not 0.0 <= self.b <= 1.0:
            raise ValueError(f"b must be between 0 and 1, got {self.b}")

    def as_dict(self) -> dict[str, Any]:
        return {"k1": self.k1, "b": self.b, "variant": self.variant, "epsilon": self.epsilon}
