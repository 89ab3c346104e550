"""The in-memory inverted index that routing reads.

Built from the stored BM25 summaries at start-up and changed in place afterwards: adding,
replacing or removing a document touches only that document's terms, never the whole index.

Layout. Every document occupies a *slot* (an integer, never reused until the next compaction).
Per slot: its length, whether it is alive, and its terms. Per term: a postings list of
(slot, tf) pairs in growable numpy arrays, and a document frequency. A removed document's slot is
marked dead and its length norm set to infinity, so its stale postings score exactly zero until
that term's list is compacted (once stale entries outnumber live ones).

Scoring is term-at-a-time and vectorised per query term; the top k come from ``argpartition``
and only the winners are sorted. All reads and writes take one lock, so a replacement (remove
the old version, add the new one) is seen by routing as a single step.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from indexing.bm25 import VARIANTS, BM25Params, FloatArray, length_norm

IntArray = npt.NDArray[np.int32]
BoolArray = npt.NDArray[np.bool_]

_MIN_CAPACITY = 4
_COMPACT_MIN_DEAD = 1024


@dataclass(frozen=True)
class IndexEntry:
    """One document as the index sees it: its summary plus what routing filters on."""

    file_id: str
    document_id: str
    title: str
    term_freqs: Mapping[str, int]
    length: int
    token_estimate: int = 0
    tags: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Hit:
    """A routed document: its entry, its score, and what each query term contributed."""

    entry: IndexEntry
    score: float
    contributions: dict[str, float] = field(default_factory=dict)


class _GrowableArray:
    """A numpy array with amortised O(1) append (capacity doubling)."""

    __slots__ = ("data", "n")

    def __init__(self, dtype: npt.DTypeLike, capacity: int = _MIN_CAPACITY) -> None:
        self.data: np.ndarray = np.zeros(max(capacity, _MIN_CAPACITY), dtype=dtype)
        self.n = 0

    @classmethod
    def wrap(cls, values: np.ndarray) -> _GrowableArray:
        arr = cls.__new__(cls)
        arr.data = values
        arr.n = len(values)
        return arr

    def reserve(self, extra: int) -> None:
        needed = self.n + extra
        if needed > len(self.data):
            grown = np.zeros(max(needed, 2 * len(self.data), _MIN_CAPACITY), self.data.dtype)
            grown[: self.n] = self.data[: self.n]
            self.data = grown

    def append(self, value: float | int | bool) -> None:
        self.reserve(1)
        self.data[self.n] = value
        self.n += 1

    def extend(self, values: np.ndarray) -> None:
        self.reserve(len(values))
        self.data[self.n : self.n + len(values)] = values
        self.n += len(values)

    def view(self) -> np.ndarray:
        return self.data[: self.n]


class _Postings:
    """The slots holding one term, with the term's frequency in each."""

    __slots__ = ("slots", "stale", "tfs")

    def __init__(self, slots: np.ndarray | None = None, tfs: np.ndarray | None = None) -> None:
        if slots is None or tfs is None:
            self.slots = _GrowableArray(np.int32)
            self.tfs = _GrowableArray(np.float32)
        else:
            self.slots = _GrowableArray.wrap(slots)
            self.tfs = _GrowableArray.wrap(tfs)
        self.stale = 0

    def append(self, slot: int, tf: float) -> None:
        self.slots.append(slot)
        self.tfs.append(tf)

    def drop_dead(self, alive: BoolArray) -> None:
        slots = self.slots.view()
        keep = alive[slots]
        self.slots = _GrowableArray.wrap(slots[keep].copy())
        self.tfs = _GrowableArray.wrap(self.tfs.view()[keep].copy())
        self.stale = 0


class InvertedIndex:
    """BM25 over documents held in memory; see the module docstring for the layout."""

    def __init__(self, params: BM25Params | None = None) -> None:
        self.params = params or BM25Params()
        self._variant = VARIANTS[self.params.variant]
        self._lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self._vocab: dict[str, int] = {}
        self._terms: list[str] = []  # term id -> term
        self._postings: list[_Postings] = []
        self._df = _GrowableArray(np.int64)
        self._lengths = _GrowableArray(np.float64)
        self._alive = _GrowableArray(np.bool_)
        self._entries: list[IndexEntry | None] = []
        self._doc_terms: list[tuple[IntArray, npt.NDArray[np.float32]] | None] = []
        self._slot_of: dict[str, int] = {}
        self._file_of_document: dict[str, str] = {}
        self._labels: dict[tuple[str, str], _GrowableArray] = {}
        self._total_length = 0.0
        self._n_alive = 0
        self._norm_cache: FloatArray | None = None

    # ----------------------------------------------------------------- size and introspection

    def __len__(self) -> int:
        return self._n_alive

    def __contains__(self, file_id: object) -> bool:
        return file_id in self._slot_of

    @property
    def avg_length(self) -> float:
        return self._total_length / self._n_alive if self._n_alive else 0.0

    def entries(self) -> Iterator[IndexEntry]:
        with self._lock:
            live = [e for e in self._entries if e is not None]
        return iter(live)

    def get(self, file_id: str) -> IndexEntry | None:
        with self._lock:
            slot = self._slot_of.get(file_id)
            return None if slot is None else self._entries[slot]

    def document_frequency(self, term: str) -> int:
        tid = self._vocab.get(term)
        return 0 if tid is None else int(self._df.data[tid])

    def memory_bytes(self) -> int:
        """Bytes held by the numpy arrays (postings, per-document terms and per-slot data)."""
        with self._lock:
            total = sum(p.slots.data.nbytes + p.tfs.data.nbytes for p in self._postings)
            total += sum(t[0].nbytes + t[1].nbytes for t in self._doc_terms if t is not None)
            arrays = [self._df, self._lengths, self._alive, *self._labels.values()]
            return total + sum(a.data.nbytes for a in arrays)

    # ------------------------------------------------------------------------------- changes

    def add(self, entry: IndexEntry) -> None:
        """Add a document; a document already present under that file id is replaced."""
        with self._lock:
            self._remove_locked(entry.file_id)
            self._add_locked(entry)
            self._maybe_compact()

    def replace(self, old_file_id: str | None, entry: IndexEntry) -> None:
        """Swap one version for another in a single step: readers see the old or the new."""
        with self._lock:
            if old_file_id is not None:
                self._remove_locked(old_file_id)
            self._remove_locked(entry.file_id)
            self._add_locked(entry)
            self._maybe_compact()

    def apply_documents(self, document_ids: Iterable[str], entries: Iterable[IndexEntry]) -> None:
        """Make the given documents look exactly like ``entries`` (absent ones are removed),
        as one step for readers."""
        with self._lock:
            for document_id in document_ids:
                file_id = self._file_of_document.get(document_id)
                if file_id is not None:
                    self._remove_locked(file_id)
            for entry in entries:
                self._remove_locked(entry.file_id)
                self._add_locked(entry)
            self._maybe_compact()

    def file_of(self, document_id: str) -> str | None:
        """The file id under which a document is indexed, if it is."""
        return self._file_of_document.get(document_id)

    def remove(self, file_id: str) -> bool:
        """Remove a document; returns whether it was present."""
        with self._lock:
            removed = self._remove_locked(file_id)
            self._maybe_compact()
            return removed

    def bulk_load(self, entries: Iterable[IndexEntry]) -> None:
        """Replace the whole index with ``entries``, building postings in one vectorised pass."""
        unique = {entry.file_id: entry for entry in entries}
        with self._lock:
            self._reset()
            term_ids: list[np.ndarray] = []
            tfs: list[np.ndarray] = []
            for entry in unique.values():
                ids, freqs = self._register(entry)
                term_ids.append(ids)
                tfs.append(freqs)
            self._build_postings(term_ids, tfs)

    def _register(self, entry: IndexEntry) -> tuple[IntArray, npt.NDArray[np.float32]]:
        """Give ``entry`` a slot and term ids; everything except the postings lists."""
        vocab = self._vocab
        known = len(vocab)
        ids = np.fromiter(
            (vocab.setdefault(term, len(vocab)) for term in entry.term_freqs),
            dtype=np.int32,
            count=len(entry.term_freqs),
        )
        if len(vocab) > known:
            self._terms.extend(
                t for t, i in zip(entry.term_freqs, ids.tolist(), strict=True) if i >= known
            )
        freqs = np.fromiter(entry.term_freqs.values(), dtype=np.float32, count=len(ids))
        order = np.argsort(ids)
        ids, freqs = ids[order], freqs[order]
        if len(vocab) > self._df.n:
            self._df.extend(np.zeros(len(vocab) - self._df.n, np.int64))
        self._df.data[ids] += 1
        slot = len(self._entries)
        self._entries.append(entry)
        self._doc_terms.append((ids, freqs))
        self._slot_of[entry.file_id] = slot
        self._file_of_document[entry.document_id] = entry.file_id
        self._lengths.append(float(entry.length))
        self._alive.append(True)
        for arr in self._labels.values():
            arr.append(False)
        for key in self._label_keys(entry):
            self._label_array(key).data[slot] = True
        self._total_length += entry.length
        self._n_alive += 1
        self._norm_cache = None
        return ids, freqs

    def _build_postings(
        self, term_ids: list[np.ndarray], tfs: list[np.ndarray], slots: np.ndarray | None = None
    ) -> None:
        if slots is None:
            slots = np.arange(len(term_ids), dtype=np.int32)
        lengths = np.fromiter((len(t) for t in term_ids), dtype=np.int64, count=len(term_ids))
        all_terms = np.concatenate(term_ids) if term_ids else np.zeros(0, np.int32)
        all_tfs = np.concatenate(tfs) if tfs else np.zeros(0, np.float32)
        all_slots = np.repeat(slots.astype(np.int32), lengths)
        order = np.argsort(all_terms, kind="stable")
        all_terms, all_tfs, all_slots = all_terms[order], all_tfs[order], all_slots[order]
        bounds = np.searchsorted(all_terms, np.arange(len(self._vocab) + 1))
        self._postings = [
            _Postings(all_slots[lo:hi], all_tfs[lo:hi])
            for lo, hi in itertools.pairwise(bounds.tolist())
        ]

    def _add_locked(self, entry: IndexEntry) -> None:
        ids, freqs = self._register(entry)
        slot = len(self._entries) - 1
        while len(self._postings) < len(self._vocab):
            self._postings.append(_Postings())
        postings = self._postings
        for tid, tf in zip(ids.tolist(), freqs.tolist(), strict=True):
            postings[tid].append(slot, tf)

    def _remove_locked(self, file_id: str) -> bool:
        slot = self._slot_of.pop(file_id, None)
        if slot is None:
            return False
        entry = self._entries[slot]
        terms = self._doc_terms[slot]
        assert entry is not None and terms is not None
        self._entries[slot] = None
        self._doc_terms[slot] = None
        if self._file_of_document.get(entry.document_id) == file_id:
            del self._file_of_document[entry.document_id]
        self._alive.data[slot] = False
        for arr in self._labels.values():
            arr.data[slot] = False
        self._total_length -= entry.length
        self._n_alive -= 1
        self._norm_cache = None
        ids = terms[0]
        self._df.data[ids] -= 1
        alive = self._alive.view()
        for tid in ids.tolist():
            postings = self._postings[tid]
            postings.stale += 1
            if postings.stale >= 16 and 2 * postings.stale > postings.slots.n:
                postings.drop_dead(alive)
        return True

    def _maybe_compact(self) -> None:
        """Renumber slots once dead ones outnumber the living (amortised O(1) per change)."""
        if self._dead_slots() > max(_COMPACT_MIN_DEAD, self._n_alive):
            self._compact_slots()

    def _dead_slots(self) -> int:
        return len(self._entries) - self._n_alive

    def _compact_slots(self) -> None:
        """Renumber live documents into consecutive slots (after many removals)."""
        live = [(e, t) for e, t in zip(self._entries, self._doc_terms, strict=True) if e]
        self._reset_slots_keep_vocab()
        term_ids, tfs = [], []
        for entry, terms in live:
            assert terms is not None
            self._register_existing(entry, terms)
            term_ids.append(terms[0])
            tfs.append(terms[1])
        self._build_postings(term_ids, tfs)

    def _reset_slots_keep_vocab(self) -> None:
        vocab, terms, df = self._vocab, self._terms, self._df
        self._reset()
        self._vocab, self._terms, self._df = vocab, terms, df
        self._df.data[:] = 0

    def _register_existing(
        self, entry: IndexEntry, terms: tuple[IntArray, npt.NDArray[np.float32]]
    ) -> None:
        slot = len(self._entries)
        self._entries.append(entry)
        self._doc_terms.append(terms)
        self._slot_of[entry.file_id] = slot
        self._file_of_document[entry.document_id] = entry.file_id
        self._lengths.append(float(entry.length))
        self._alive.append(True)
        for arr in self._labels.values():
            arr.append(False)
        for key in self._label_keys(entry):
            self._label_array(key).data[slot] = True
        self._df.data[terms[0]] += 1
        self._total_length += entry.length
        self._n_alive += 1

    # ------------------------------------------------------------------------ labels (filters)

    @staticmethod
    def _label_keys(entry: IndexEntry) -> list[tuple[str, str]]:
        keys = [("tag", t) for t in entry.tags] + [("group", g) for g in entry.groups]
        if not entry.groups:
            keys.append(("public", ""))
        return keys

    def _label_array(self, key: tuple[str, str]) -> _GrowableArray:
        arr = self._labels.get(key)
        if arr is None:
            arr = _GrowableArray(np.bool_, len(self._entries))
            arr.extend(np.zeros(self._alive.n, np.bool_))
            self._labels[key] = arr
        return arr

    def _label_mask(self, kind: str, value: str) -> BoolArray:
        arr = self._labels.get((kind, value))
        n = self._alive.n
        if arr is None:
            return np.zeros(n, np.bool_)
        view: BoolArray = arr.view()
        return view

    def allowed_mask(
        self, *, groups: Iterable[str] | None = None, tags: Iterable[str] | None = None
    ) -> BoolArray | None:
        """Slots a caller may see: documents without groups plus those sharing one of
        ``groups`` (``None`` means no group restriction), carrying every tag in ``tags``."""
        with self._lock:
            return self._allowed_locked(groups, tags)

    def _allowed_locked(
        self, groups: Iterable[str] | None, tags: Iterable[str] | None
    ) -> BoolArray | None:
        mask: BoolArray | None = None
        if groups is not None:
            mask = self._label_mask("public", "").copy()
            for group in groups:
                mask |= self._label_mask("group", group)
        for tag in tags or ():
            tag_mask = self._label_mask("tag", tag)
            mask = tag_mask.copy() if mask is None else mask & tag_mask
        return mask

    # --------------------------------------------------------------------------------- scoring

    def _norms(self) -> FloatArray:
        if self._norm_cache is None or len(self._norm_cache) != self._lengths.n:
            p = self.params
            norms = length_norm(self._lengths.view(), self.avg_length, p.k1, p.b)
            norms[~self._alive.view()] = np.inf
            self._norm_cache = norms
        return self._norm_cache

    def _query_weights(self, query_terms: Sequence[str]) -> tuple[IntArray, FloatArray]:
        """Known query terms as ids, each with its IDF times its count in the query."""
        counts: dict[int, int] = {}
        for term in query_terms:
            tid = self._vocab.get(term)
            if tid is not None and self._df.data[tid] > 0:
                counts[tid] = counts.get(tid, 0) + 1
        ids = np.fromiter(counts, dtype=np.int32, count=len(counts))
        reps = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        df = self._df.data[ids].astype(np.float64)
        idf = self._variant.idf(df, self._vocabulary_df, self._n_alive, self.params.epsilon)
        return ids, idf * reps

    def _vocabulary_df(self) -> FloatArray:
        df = self._df.view()
        return df[df > 0].astype(np.float64)

    def _accumulate(self, query_terms: Sequence[str]) -> tuple[FloatArray, BoolArray]:
        """Scores for every slot, and which slots matched at least one query term."""
        n = self._lengths.n
        scores = np.zeros(n, np.float64)
        matched = np.zeros(n, np.bool_)
        ids, weights = self._query_weights(query_terms)
        if not len(ids):
            return scores, matched
        norms = self._norms()
        k1 = self.params.k1
        for tid, weight in zip(ids.tolist(), weights.tolist(), strict=True):
            postings = self._postings[tid]
            slots = postings.slots.view()
            tfs = postings.tfs.view().astype(np.float64)
            scores[slots] += weight * tfs * (k1 + 1.0) / (tfs + norms[slots])
            matched[slots] = True
        matched &= self._alive.view()
        return scores, matched

    def scores(self, query_terms: Sequence[str]) -> dict[str, float]:
        """Every live document's score for the query (zero where nothing matched)."""
        with self._lock:
            raw, _ = self._accumulate(query_terms)
            return {fid: float(raw[slot]) for fid, slot in self._slot_of.items()}

    def search(
        self,
        query_terms: Sequence[str],
        *,
        top_k: int,
        allowed: BoolArray | None = None,
        groups: Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        token_budget: int | None = None,
        explain: bool = True,
    ) -> list[Hit]:
        """The best ``top_k`` documents matching at least one query term, best first.

        Documents outside ``groups``/``tags`` (or the explicit ``allowed`` mask) are excluded
        before ranking. With ``token_budget``, documents are taken in rank order while their
        token estimates fit; one that does not fit is skipped for the next.
        """
        if top_k <= 0:
            return []
        with self._lock:
            scores, candidates = self._accumulate(query_terms)
            mask = allowed if allowed is not None else self._allowed_locked(groups, tags)
            if mask is not None:
                candidates &= mask[: len(candidates)]
            ranked = self._rank(scores, candidates, top_k, token_budget)
            return [self._hit(slot, float(scores[slot]), query_terms, explain) for slot in ranked]

    def _rank(
        self, scores: FloatArray, candidates: BoolArray, top_k: int, budget: int | None
    ) -> list[int]:
        slots = np.flatnonzero(candidates)
        if not len(slots):
            return []
        # With a budget some winners may be skipped, so look a little deeper than k first, and
        # through every candidate only if that did not fill k.
        depth = top_k if budget is None else max(4 * top_k, 32)
        ordered = _best_first(scores, slots, depth)
        if budget is None:
            return ordered[:top_k]
        chosen = self._within_budget(ordered, top_k, budget)
        if len(chosen) < top_k and len(ordered) < len(slots):
            chosen = self._within_budget(_best_first(scores, slots, len(slots)), top_k, budget)
        return chosen

    def _within_budget(self, ordered: list[int], top_k: int, budget: int) -> list[int]:
        chosen: list[int] = []
        spent = 0
        for slot in ordered:
            entry = self._entries[slot]
            assert entry is not None
            if spent + entry.token_estimate <= budget:
                chosen.append(slot)
                spent += entry.token_estimate
                if len(chosen) == top_k:
                    break
        return chosen

    def _hit(self, slot: int, score: float, query_terms: Sequence[str], explain: bool) -> Hit:
        entry = self._entries[slot]
        assert entry is not None
        return Hit(entry, score, self._contributions(slot, query_terms) if explain else {})

    def _contributions(self, slot: int, query_terms: Sequence[str]) -> dict[str, float]:
        ids, weights = self._query_weights(query_terms)
        terms = self._doc_terms[slot]
        assert terms is not None
        doc_ids, doc_tfs = terms
        pos = np.searchsorted(doc_ids, ids)
        pos = np.minimum(pos, max(len(doc_ids) - 1, 0))
        present = doc_ids[pos] == ids if len(doc_ids) else np.zeros(len(ids), np.bool_)
        norm = self._norms()[slot]
        k1 = self.params.k1
        out: dict[str, float] = {}
        for tid, weight, at, hit in zip(
            ids.tolist(), weights.tolist(), pos.tolist(), present.tolist(), strict=True
        ):
            if hit:
                tf = float(doc_tfs[at])
                out[self._terms[tid]] = float(weight * tf * (k1 + 1.0) / (tf + norm))
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _best_first(scores: FloatArray, slots: np.ndarray, depth: int) -> list[int]:
    """The ``depth`` best of ``slots`` (ascending), by score then slot: a tie at the cut goes to
    the lower slot, so a shorter list is always a prefix of a longer one."""
    if len(slots) > depth:
        negated = -scores[slots]
        kth = np.partition(negated, depth - 1)[depth - 1]
        better = slots[negated < kth]
        slots = np.concatenate([better, slots[negated == kth][: depth - len(better)]])
    order = np.lexsort((slots, -scores[slots]))
    ordered: list[int] = slots[order].tolist()
    return ordered
