"""BM25 maths against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from indexing.bm25 import (
    VARIANTS,
    BM25Params,
    idf_lucene,
    idf_okapi_raw,
    length_norm,
    okapi_floor,
    tf_component,
)


@pytest.mark.parametrize(
    ("df", "n_docs", "expected"),
    [
        (1, 3, math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))),
        (2, 3, math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))),
        (3, 3, math.log(1 + (3 - 3 + 0.5) / (3 + 0.5))),
        (1, 1, math.log(1 + 0.5 / 1.5)),
        (10, 1000, math.log(1 + 990.5 / 10.5)),
    ],
)
def test_idf_lucene(df: int, n_docs: int, expected: float) -> None:
    assert idf_lucene(df, n_docs) == pytest.approx(expected)


def test_idf_lucene_is_positive_even_for_a_term_in_every_document() -> None:
    assert (idf_lucene([1, 5, 10], 10) > 0).all()


@pytest.mark.parametrize(
    ("df", "n_docs", "expected"),
    [
        (1, 3, math.log((3 - 1 + 0.5) / (1 + 0.5))),
        (2, 4, 0.0),  # half the documents: ln(2.5 / 2.5)
        (3, 3, math.log(0.5 / 3.5)),  # in every document: negative
        (10, 1000, math.log(990.5 / 10.5)),
    ],
)
def test_idf_okapi_raw(df: int, n_docs: int, expected: float) -> None:
    assert idf_okapi_raw(df, n_docs) == pytest.approx(expected)


def test_idf_functions_are_vectorised_over_df() -> None:
    df = np.array([1, 2, 3])
    assert np.allclose(idf_lucene(df, 3), [idf_lucene(d, 3) for d in df])
    assert np.allclose(idf_okapi_raw(df, 3), [idf_okapi_raw(d, 3) for d in df])


@pytest.mark.parametrize(
    ("tf", "doc_len", "avg_len", "k1", "b", "expected"),
    [
        (1, 3, 3.0, 1.2, 0.75, 1 * 2.2 / (1 + 1.2)),  # average length: the norm is k1
        (2, 10, 5.0, 1.2, 0.75, 2 * 2.2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 10 / 5))),
        (3, 1, 4.0, 1.5, 0.75, 3 * 2.5 / (3 + 1.5 * (1 - 0.75 + 0.75 * 1 / 4))),
        (2, 100, 5.0, 1.2, 0.0, 2 * 2.2 / (2 + 1.2)),  # b = 0: length ignored
        (7, 100, 5.0, 0.0, 0.75, 1.0),  # k1 = 0: presence only
        (0, 4, 4.0, 1.2, 0.75, 0.0),
    ],
)
def test_tf_component(
    tf: int, doc_len: int, avg_len: float, k1: float, b: float, expected: float
) -> None:
    assert tf_component(tf, doc_len, avg_len, k1, b) == pytest.approx(expected)


def test_tf_component_saturates_towards_k1_plus_one() -> None:
    values = tf_component([1, 10, 100, 10_000], 5, 5.0, 1.2, 0.75)
    assert (np.diff(values) > 0).all()
    assert values[-1] < 2.2
    assert values[-1] == pytest.approx(2.2, rel=1e-3)


def test_length_norm_of_an_empty_pool_does_not_divide_by_zero() -> None:
    assert length_norm(0, 0.0, 1.2, 0.75) == pytest.approx(1.2 * (1 - 0.75))


def test_okapi_floor_is_epsilon_times_the_mean_vocabulary_idf() -> None:
    idf = np.array([math.log(2.5 / 1.5), math.log(1.5 / 2.5), 0.0])
    assert okapi_floor(idf, 0.25) == pytest.approx(0.25 * sum(idf) / 3)
    assert okapi_floor(np.zeros(0), 0.25) == 0.0


def test_okapi_variant_replaces_only_negative_idf_with_the_floor() -> None:
    n_docs = 4
    vocabulary_df = np.array([1.0, 2.0, 3.0, 4.0])
    raw = [math.log((n_docs - d + 0.5) / (d + 0.5)) for d in vocabulary_df]
    floor = 0.25 * sum(raw) / len(raw)
    idf = VARIANTS["okapi"].idf(np.array([1.0, 2.0, 4.0]), lambda: vocabulary_df, n_docs, 0.25)
    assert np.allclose(idf, [raw[0], 0.0, floor])


def test_lucene_variant_ignores_the_vocabulary() -> None:
    def vocabulary() -> np.ndarray:
        raise AssertionError("the Lucene IDF needs no vocabulary")

    idf = VARIANTS["lucene"].idf(np.array([1.0, 3.0]), vocabulary, 3, 0.25)
    assert np.allclose(idf, [math.log(1 + 2.5 / 1.5), math.log(1 + 0.5 / 3.5)])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "bm25+"}, r"unknown BM25 variant 'bm25\+'; known: lucene, okapi"),
        ({"k1": -0.1}, "k1 must be >= 0, got -0.1"),
        ({"b": 1.5}, "b must be between 0 and 1, got 1.5"),
        ({"b": -0.01}, "b must be between 0 and 1, got -0.01"),
    ],
    ids=["unknown-variant", "negative-k1", "b-above-one", "b-below-zero"],
)
def test_bad_params_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BM25Params(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs", [{}, {"k1": 0.0, "b": 0.0}, {"b": 1.0, "variant": "okapi", "epsilon": 0.5}]
)
def test_params_round_trip_through_as_dict(kwargs: dict[str, object]) -> None:
    params = BM25Params(**kwargs)  # type: ignore[arg-type]
    assert BM25Params(**params.as_dict()) == params
