"""A pool: the store, the Files backend, the analyzer and the live index, kept in step.

The index never changes except from the store's change log (``refresh``), so documents written by
this process, by a cron job's bulk ingest or by another replica reach routing the same way, and a
replaced document is swapped in one step.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexing.analyzer import Analyzer, AnalyzerParams
from indexing.bm25 import BM25Params
from indexing.errors import IndexParamsMismatch
from indexing.extract import DEFAULT_LIMITS, ExtractLimits
from indexing.files import FilesBackend
from indexing.index import InvertedIndex
from indexing.passages import PassageParams
from indexing.semantic import DIMENSIONS, MODEL_NAME, TITLE_SHARE, Encoder, shared_encoder
from indexing.store import PARAMS_KEY, Store, sqlite_url

#: Marks the stored parameters as those of a re-index under way (or cut short).
REINDEXING = "reindexing"
#: Documents applied to the index per lock acquisition when catching up with the change log.
REFRESH_BATCH = 64


@dataclass(frozen=True)
class PoolConfig:
    """What a pool needs to know; built by the service from its settings."""

    data_dir: Path
    database_url: str | None = None
    analyzer: AnalyzerParams = field(default_factory=AnalyzerParams)
    bm25: BM25Params = field(default_factory=BM25Params)
    passages: PassageParams = field(default_factory=PassageParams)
    limits: ExtractLimits = DEFAULT_LIMITS
    #: Route by meaning too: passages get sentence vectors (``indexing.semantic``).
    semantic: bool = False
    #: Pending uploads older than this are treated as abandoned even if their owner lives.
    intent_grace_seconds: float = 3600.0

    @property
    def url(self) -> str:
        return self.database_url or sqlite_url(self.data_dir / "pool.db")

    def index_params(self) -> dict[str, Any]:
        params = {
            "analyzer": self.analyzer.as_dict(),
            "bm25": self.bm25.as_dict(),
            "passages": self.passages.as_dict(),
        }
        if self.semantic:
            params["semantic"] = {
                "model": MODEL_NAME,
                "dimensions": DIMENSIONS,
                "title_share": TITLE_SHARE,
            }
        return params


class Pool:
    """Open with ``Pool.open``; close when done."""

    def __init__(self, *, store: Store, backend: FilesBackend, config: PoolConfig) -> None:
        self.store = store
        self.backend = backend
        self.config = config
        self.analyzer = Analyzer(config.analyzer)
        self.index = InvertedIndex(config.bm25)
        self._seen = 0
        self._loaded = False
        #: Set when another process re-indexed the pool with other parameters: this process's
        #: analyzer no longer matches the summaries, so it stops applying them.
        self.params_mismatch: str | None = None
        #: Documents (by file id) whose vectors could not be computed (``ingest.vectorise``).
        self.vectors_refused: set[str] = set()
        #: Documents (by file id) the describing model failed on (``expansion.expand``).
        self.expansion_refused: set[str] = set()
        self._refresh_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        config: PoolConfig,
        backend: FilesBackend,
        *,
        load_index: bool = True,
        check_params: bool = True,
    ) -> Pool:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        pool = cls(store=Store.open(config.url), backend=backend, config=config)
        try:
            if config.semantic:
                pool.encoder  # noqa: B018 -- load now: a missing model fails at start, clearly
            if check_params:
                pool.check_params()
            if load_index:
                pool.load_index()
        except BaseException:
            pool.close()
            raise
        return pool

    def close(self) -> None:
        self.store.close()

    # ----------------------------------------------------------------------------- parameters

    def check_params(self) -> None:
        """Record the parameters in a new pool; refuse to work with a pool indexed otherwise."""
        stored = self.store.get_meta(PARAMS_KEY)
        wanted = self.config.index_params()
        if stored is None:
            self.store.set_meta(PARAMS_KEY, wanted)
        elif stored != wanted:
            raise IndexParamsMismatch(describe_mismatch(stored, wanted))

    @property
    def encoder(self) -> Encoder:
        """The sentence-embedding model, loaded on first use (``SemanticUnavailable`` if the
        ``semantic`` extra is not installed)."""
        return shared_encoder()

    def check_still_own_params(self) -> None:
        """Before writing a summary: refuse if the pool has since been (or is being)
        re-indexed to other parameters, which a summary made here would undo."""
        stored = self.store.get_meta(PARAMS_KEY)
        wanted = self.config.index_params()
        if stored is not None and stored != wanted:
            self.params_mismatch = describe_mismatch(stored, wanted)
            raise IndexParamsMismatch(self.params_mismatch)

    def begin_reindex(self) -> None:
        """Declare, before any summary is rebuilt, that the pool is being re-indexed to the
        configured parameters: no process indexing otherwise applies or writes summaries from
        then on (``refresh``, ``check_params``), and none configured with the new parameters
        trusts the pool until ``adopt_params`` says the re-index finished. A re-index to the
        parameters the pool already has changes nothing another process could notice, so it
        leaves them be."""
        wanted = self.config.index_params()
        if self.store.get_meta(PARAMS_KEY) != wanted:
            self.store.set_meta(PARAMS_KEY, {**wanted, REINDEXING: True})

    def adopt_params(self) -> None:
        """Declare the configured parameters the pool's own (after a re-index)."""
        self.store.set_meta(PARAMS_KEY, self.config.index_params())

    # ------------------------------------------------------------------------------- the index

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load_index(self) -> None:
        """Build the index from every stored summary."""
        with self._refresh_lock:
            seen = self.store.latest_change()
            self.index.bulk_load(self.store.index_entries())
            self._seen = seen
            self._loaded = True

    def refresh(self) -> int:
        """Apply changes committed since the last refresh; returns how many documents changed."""
        if not self._loaded:
            return 0
        with self._refresh_lock:
            changes = self.store.changes_since(self._seen)
            if not changes:
                return 0
            stored = self.store.get_meta(PARAMS_KEY)
            wanted = self.config.index_params()
            if stored is not None and stored != wanted:
                self.params_mismatch = describe_mismatch(stored, wanted)
                return 0
            self.params_mismatch = None  # a re-index to this process's parameters finished
            document_ids = list(dict.fromkeys(c.document_id for c in changes))
            # In small batches: each batch holds the index lock, and routing waits for it.
            for start in range(0, len(document_ids), REFRESH_BATCH):
                batch = document_ids[start : start + REFRESH_BATCH]
                self.index.apply_documents(batch, list(self.store.index_entries(batch)))
            last = changes[-1].seq
            assert last is not None
            self._seen = last
            return len(document_ids)


def describe_mismatch(stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    if stored.get(REINDEXING):
        stored = {k: v for k, v in stored.items() if k != REINDEXING}
        if stored == wanted:
            return (
                "the pool is being re-indexed to these parameters (`kpool reindex` is running, "
                "or was cut short): wait for it to finish, or run `kpool reindex` again"
            )
        return "a re-index to other parameters is under way; " + describe_mismatch(stored, wanted)
    differences = []
    for part in sorted(set(stored) | set(wanted)):
        old, new = stored.get(part, {}), wanted.get(part, {})
        if part == "semantic" and (not old or not new):
            differences.append(
                f"semantic routing (KPOOL_SEMANTIC): pool has {'on' if old else 'off'}, "
                f"configured {'on' if new else 'off'}"
                + ("; KPOOL_SEMANTIC=0 keeps routing it by words" if new else "")
            )
            continue
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                differences.append(
                    f"{part}.{key}: pool has {old.get(key)!r}, configured {new.get(key)!r}"
                )
    return (
        "the pool was indexed with other parameters ("
        + "; ".join(differences)
        + "). Run `kpool reindex` to rebuild the summaries with the configured parameters, "
        "or set them back to the pool's values."
    )
