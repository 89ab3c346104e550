"""The analyzer: what a term is, for documents and questions alike."""

from __future__ import annotations

import pytest

from indexing.analyzer import ANALYZER_VERSION, Analyzer, AnalyzerParams


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("HOLIDAY Holiday holiday", ["holiday"] * 3),
        ("Straße STRASSE", ["strass"] * 2),  # casefold, not lower: ß folds to ss
        ("ﬁle ＶＰＮ ①", ["file", "vpn", "1"]),  # NFKC: ligature, fullwidth, circled digit
        ("cafe\u0301 café", ["café", "café"]),  # NFKC composes the combining accent
        ("The policy of the company", ["polici", "compani"]),
        ("leaves leave leaving", ["leav"] * 3),
        ("employee's employees employee’s", ["employe"] * 3),  # possessive, straight or curly
        ("don't DON’T", ["dont", "dont"]),
        ("it's", []),  # "it" once the possessive-like "'s" is dropped, then a stopword
        ("401k 2024 v2.1", ["401k", "2024", "v2", "1"]),
        ("snake_case part-time", ["snake", "case", "part", "time"]),
        ("", []),
        ("   \n\t ", []),
        ("the and of, to.", []),
    ],
    ids=[
        "case-folding",
        "full-case-folding",
        "nfkc-compatibility",
        "nfkc-composition",
        "stopwords-removed",
        "stemming-joins-inflections",
        "possessive-dropped",
        "contraction-joined",
        "its-is-a-stopword",
        "digits-kept",
        "underscore-and-hyphen-split",
        "empty",
        "whitespace-only",
        "stopwords-only",
    ],
)
def test_terms(analyzer: Analyzer, text: str, expected: list[str]) -> None:
    assert analyzer.terms(text) == expected


def test_leave_and_leaves_meet_at_one_term(analyzer: Analyzer) -> None:
    assert (
        analyzer.terms("Parental leave?")
        == analyzer.terms("parental LEAVES")
        == [
            "parent",
            "leav",
        ]
    )


def test_tokens_keep_stopwords_and_surface_forms(analyzer: Analyzer) -> None:
    assert analyzer.tokens("The Employee's leaves") == ["the", "employee", "leaves"]


def test_no_stemmer_and_no_stopwords_keep_every_folded_word() -> None:
    plain = Analyzer(AnalyzerParams(stemmer="none", stopwords="none"))
    assert plain.terms("The Leaves of the TREE") == ["the", "leaves", "of", "the", "tree"]


@pytest.mark.parametrize(
    ("params", "message", "known"),
    [
        (AnalyzerParams(stemmer="klingon"), "unknown stemmer 'klingon'", ["none", "english"]),
        (
            AnalyzerParams(stopwords="klingon"),
            "unknown stopword set 'klingon'",
            ["lucene-english", "none"],
        ),
    ],
    ids=["stemmer", "stopwords"],
)
def test_unknown_setting_is_refused_with_the_known_names(
    params: AnalyzerParams, message: str, known: list[str]
) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        Analyzer(params)
    listed = str(caught.value).split("known: ", 1)[1].split(", ")
    assert set(known) <= set(listed)


def test_term_frequencies_count_terms_and_length(analyzer: Analyzer) -> None:
    freqs, length = analyzer.term_frequencies(
        "Leave policy: annual leave, sick leave and the leaves of absence."
    )
    assert freqs == {"leav": 4, "polici": 1, "annual": 1, "sick": 1, "absenc": 1}
    assert length == 8 == sum(freqs.values())


@pytest.mark.parametrize("text", ["", "  ", "the of and"])
def test_term_frequencies_of_a_text_without_terms_is_empty(analyzer: Analyzer, text: str) -> None:
    assert analyzer.term_frequencies(text) == ({}, 0)


def test_params_as_dict_names_everything_that_changes_terms() -> None:
    assert AnalyzerParams().as_dict() == {
        "stemmer": "english",
        "stopwords": "lucene-english",
        "version": ANALYZER_VERSION,
    }


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How do I claim my travel expenses?", ["claim", "travel", "expens"]),
        ("Am I allowed to work from home?", ["work", "from", "home"]),
        ("Can you tell me what's the policy on gifts, please?", ["polici", "gift"]),
        ("what is it?", []),
    ],
)
def test_questions_lose_the_words_that_only_make_them_questions(
    analyzer: Analyzer, question: str, expected: list[str]
) -> None:
    assert analyzer.question_terms(question) == expected


def test_documents_keep_question_words(analyzer: Analyzer) -> None:
    """Only questions are trimmed: a document's "allowed" still counts, so no re-index."""
    assert "allow" in analyzer.terms("Pets are allowed in the office on Fridays.")


def test_without_english_stopwords_questions_are_analysed_like_documents() -> None:
    plain = Analyzer(AnalyzerParams(stopwords="none"))
    assert plain.question_terms("How do I claim?") == plain.terms("How do I claim?")
