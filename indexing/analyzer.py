"""Turning text into index terms.

One analyzer serves documents and questions alike, so the two always agree on what a term is:
Unicode NFKC normalisation, case folding, word tokens of letters and digits, English stopwords
removed, then Snowball (Porter2) stemming through PyStemmer. Its name, version and parameters are
stored with the pool; changing any of them means the stored summaries must be rebuilt.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import Stemmer

#: Bumped whenever tokenisation or normalisation changes in a way that alters terms.
ANALYZER_VERSION = 1

# The stopword list Lucene's EnglishAnalyzer uses (the BM25 baselines published for BEIR use it).
LUCENE_ENGLISH_STOPWORDS = frozenset(
    """a an and are as at be but by for if in into is it no not of on or such that the their
    then there these they this to was will with""".split()
)

STOPWORD_SETS: dict[str, frozenset[str]] = {
    "lucene-english": LUCENE_ENGLISH_STOPWORDS,
    "none": frozenset(),
}

# Letters and digits; an apostrophe inside a word does not split it: a possessive "'s" is dropped
# (so "employee's" and "employees" meet at one stem) and "don't" becomes "dont".
_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_POSSESSIVE = re.compile(r"['’]s$")
_APOSTROPHE = re.compile(r"['’]")


@dataclass(frozen=True)
class AnalyzerParams:
    """What identifies an analyzer; stored with the pool and compared at start-up."""

    stemmer: str = "english"
    stopwords: str = "lucene-english"
    version: int = ANALYZER_VERSION

    def as_dict(self) -> dict[str, Any]:
        return {"stemmer": self.stemmer, "stopwords": self.stopwords, "version": self.version}


@dataclass
class Analyzer:
    """Text → list of terms. Thread-safe for reading after construction."""

    params: AnalyzerParams = field(default_factory=AnalyzerParams)

    def __post_init__(self) -> None:
        if self.params.stopwords not in STOPWORD_SETS:
            known = ", ".join(sorted(STOPWORD_SETS))
            raise ValueError(f"unknown stopword set {self.params.stopwords!r}; known: {known}")
        if self.params.stemmer == "none":
            self._stemmer: Stemmer.Stemmer | None = None
        elif self.params.stemmer in Stemmer.algorithms():
            self._stemmer = Stemmer.Stemmer(self.params.stemmer)
        else:
            known = ", ".join(["none", *Stemmer.algorithms()])
            raise ValueError(f"unknown stemmer {self.params.stemmer!r}; known: {known}")
        self._stopwords = STOPWORD_SETS[self.params.stopwords]

    def tokens(self, text: str) -> list[str]:
        """Normalised word tokens, before stopwords and stemming."""
        folded = unicodedata.normalize("NFKC", text).casefold()
        words = []
        for match in _TOKEN.finditer(folded):
            words.append(_APOSTROPHE.sub("", _POSSESSIVE.sub("", match.group())))
        return words

    def terms(self, text: str) -> list[str]:
        """Index terms of ``text`` in order, duplicates kept."""
        words = [w for w in self.tokens(text) if w not in self._stopwords]
        if self._stemmer is None:
            return words
        stemmed: list[str] = self._stemmer.stemWords(words)
        return stemmed

    def term_frequencies(self, text: str) -> tuple[dict[str, int], int]:
        """The BM25 summary of a text: term → count, and the number of terms."""
        terms = self.terms(text)
        return dict(Counter(terms)), len(terms)
