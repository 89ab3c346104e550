"""Routing quality on a BEIR-layout dataset (``corpus.jsonl``, ``queries.jsonl``,
``qrels/<split>.tsv``), measured through the same ingest and ``route`` the service uses, in a
throwaway pool with the local Files backend.

Metrics: Recall@k = mean over queries of |relevant ∩ top k| / |relevant| (relevant: grade > 0);
nDCG@10 as trec_eval computes it (gain = the grade, discount log2(rank + 1), ideal ordering from
the judged grades); MRR@10 from the first relevant document. Abstention: the share of the judged
questions routed to nothing (``abstain_answerable``, lower is better) and, when the dataset has
an ``unanswerable.jsonl`` of questions no document answers, the share of those routed to nothing
(``abstain_unanswerable``, higher is better). ``route_ms_p50``: the median time of one ``route``
call, analyzer included, in this process; ``index_bytes``: the index's arrays.

A method may rerank with a model (``Method.judge``, ``KPOOL_RERANK``): the first
``KPOOL_RERANK_CANDIDATES`` routed documents go to it as the service would send them, the rest
keep their places behind, and ``rerank`` reports how many questions it judged and the mean
tokens each used (``route_ms_p50`` stays the local routing's). A pool may be built with its
documents described by a model (``KPOOL_EXPAND``), and ``expansion`` then reports the tokens
that cost per document.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from indexing.errors import InvalidInput, PoolError
from indexing.expansion import Describer, ExpandReport, expand
from indexing.files import LocalFilesBackend
from indexing.ingest import IngestRequest, ingest, usable_cores, vectorise
from indexing.pool import Pool
from service.answer import Usage
from service.rerank import Judge, RerankPolicy, candidates_of, rerank
from service.router import Route, RoutingOptions, route
from service.settings import Settings

NDCG_DEPTH = 10
MRR_DEPTH = 10
#: Documents described at a time when a pool is built with a describer (requests in flight).
EXPAND_WORKERS = 4


def parse_cutoffs(text: str) -> list[int]:
    try:
        cutoffs = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise InvalidInput(f"--top-k takes comma-separated integers, got {text!r}") from exc
    if not cutoffs or cutoffs[0] < 1:
        raise InvalidInput(f"--top-k takes positive integers, got {text!r}")
    return cutoffs


@dataclass(frozen=True)
class Method:
    """One way of routing: how questions are scored and, optionally, reranked by a model."""

    options: RoutingOptions
    judge: Judge | None = None
    policy: RerankPolicy = field(default_factory=RerankPolicy)


@dataclass(frozen=True)
class Dataset:
    corpus: list[dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    #: Questions no document answers (``unanswerable.jsonl``), if the dataset has them.
    unanswerable: dict[str, str] | None = None


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInput(f"{path}:{number}: not valid JSON") from exc


def load_dataset(directory: Path, split: str = "test") -> Dataset:
    """Read a BEIR dataset; only queries with at least one relevant document are kept."""
    qrels_path = directory / "qrels" / f"{split}.tsv"
    for needed in (directory / "corpus.jsonl", directory / "queries.jsonl", qrels_path):
        if not needed.is_file():
            raise InvalidInput(f"{directory} is not a BEIR dataset: {needed.name} is missing")
    corpus = [
        {"id": str(d["_id"]), "title": str(d.get("title") or ""), "text": str(d.get("text") or "")}
        for d in _jsonl(directory / "corpus.jsonl")
    ]
    queries = {str(q["_id"]): str(q["text"]) for q in _jsonl(directory / "queries.jsonl")}
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as handle:
        for line, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if len(row) < 3 or row[0] == "query-id":
                continue
            try:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
            except ValueError:
                raise InvalidInput(
                    f"{qrels_path}:{line}: the score {row[2]!r} is not a whole number"
                ) from None
    qrels = {
        q: rel for q, rel in qrels.items() if q in queries and any(g > 0 for g in rel.values())
    }
    if not qrels:
        raise InvalidInput(
            f"{qrels_path} names no query of queries.jsonl with a relevant document; each line "
            "should be query-id, corpus-id and score, separated by tabs"
        )
    unanswerable_path = directory / "unanswerable.jsonl"
    unanswerable = (
        {str(q["_id"]): str(q["text"]) for q in _jsonl(unanswerable_path)}
        if unanswerable_path.is_file()
        else None
    )
    return Dataset(corpus, queries, qrels, unanswerable)


# ----------------------------------------------------------------------------------- metrics


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
    wanted = {d for d, grade in relevant.items() if grade > 0}
    return len(wanted.intersection(ranked[:k])) / len(wanted) if wanted else 0.0


def ndcg_at(ranked: Sequence[str], relevant: dict[str, int], k: int = NDCG_DEPTH) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranked[:k], 1))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, 1))
    return dcg / idcg if idcg else 0.0


def mrr_at(ranked: Sequence[str], relevant: dict[str, int], k: int = MRR_DEPTH) -> float:
    for rank, doc in enumerate(ranked[:k], 1):
        if relevant.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def summarise(
    runs: dict[str, list[str]], qrels: dict[str, dict[str, int]], cutoffs: Iterable[int]
) -> dict[str, Any]:
    """Mean metrics over the queries in ``qrels``; keys as ``kpool eval --json`` prints them."""
    ids = sorted(qrels)
    n = len(ids)
    metrics: dict[str, Any] = {"queries": n}
    for k in cutoffs:
        metrics[f"recall@{k}"] = _mean(recall_at(runs.get(q, []), qrels[q], k) for q in ids)
    metrics["ndcg@10"] = _mean(ndcg_at(runs.get(q, []), qrels[q]) for q in ids)
    metrics["mrr@10"] = _mean(mrr_at(runs.get(q, []), qrels[q]) for q in ids)
    return metrics


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return round(sum(items) / len(items), 4) if items else 0.0


# ---------------------------------------------------------------------------------------- run


def build_pool(
    corpus: list[dict[str, str]],
    settings: Settings,
    home: Path,
    *,
    describer: Describer | None = None,
    described: ExpandReport | None = None,
) -> tuple[Pool, dict[str, list[str]]]:
    """Ingest the corpus into a fresh pool; returns it and document id → corpus ids. With
    ``describer``, every document is described as ``KPOOL_EXPAND`` does, and what that did
    and cost is added to ``described``."""
    config = replace(settings.pool_config(), data_dir=home, database_url=None)
    pool = Pool.open(config, LocalFilesBackend(home / "files"), load_index=False)
    requests = [
        IngestRequest(
            source=doc["id"],
            data=(doc["text"] or doc["title"] or doc["id"]).encode(),
            filename=f"{doc['id']}.txt",
            title=doc["title"] or doc["id"],
        )
        for doc in corpus
    ]
    with ThreadPoolExecutor(max_workers=2) as workers:
        outcomes = list(workers.map(lambda r: ingest(pool, r), requests))
    corpus_ids: dict[str, list[str]] = {}
    for outcome in outcomes:
        if outcome.document_id is not None:
            corpus_ids.setdefault(outcome.document_id, []).append(outcome.source)
    if describer is not None:
        report = expand(pool, describer, workers=EXPAND_WORKERS)
        if report.interrupted:
            pool.close()
            raise PoolError(f"could not describe the documents: {report.interrupted}")
        if described is not None:
            described.add(report)
    vectorise(pool, workers=usable_cores())
    pool.load_index()
    return pool, corpus_ids


def evaluate(
    directory: Path,
    *,
    split: str = "test",
    cutoffs: Sequence[int] = (1, 3, 10),
    settings: Settings,
    options: RoutingOptions | None = None,
    judge: Judge | None = None,
    describer: Describer | None = None,
) -> dict[str, Any]:
    """The metrics of routing as configured (or with ``options``) on a dataset; ``judge``
    reranks as ``KPOOL_RERANK`` says, ``describer`` describes the documents as
    ``KPOOL_EXPAND`` does."""
    policy = settings.rerank_policy() if judge is not None else RerankPolicy()
    methods = {"configured": Method(options or settings.routing_options(), judge, policy)}
    results = compare(
        directory, methods, split=split, cutoffs=cutoffs, settings=settings, describer=describer
    )
    return results["configured"]


def compare(
    directory: Path,
    methods: Mapping[str, RoutingOptions | Method],
    *,
    split: str = "test",
    cutoffs: Sequence[int] = (1, 3, 10),
    settings: Settings,
    describer: Describer | None = None,
) -> dict[str, dict[str, Any]]:
    """The metrics of several ways of routing, over one pool built once: method → metrics.
    With ``describer``, the pool's documents are described first (``KPOOL_EXPAND``), and
    each row says what that cost per document."""
    dataset = load_dataset(directory, split)
    described = ExpandReport()
    with tempfile.TemporaryDirectory(prefix="kpool-eval-") as tmp:
        pool, corpus_ids = build_pool(
            dataset.corpus, settings, Path(tmp), describer=describer, described=described
        )
        try:
            results = {
                name: _measure(pool, dataset, corpus_ids, _method(method), cutoffs)
                for name, method in methods.items()
            }
        finally:
            pool.close()
    if describer is not None:
        documents = max(1, len(dataset.corpus))
        for metrics in results.values():
            metrics["expansion"] = {
                "model": describer.model,
                "described": described.described,
                "failed": described.failed,
                "input_tokens_per_document": round(described.input_tokens / documents, 1),
                "output_tokens_per_document": round(described.output_tokens / documents, 1),
            }
    return results


def _method(method: RoutingOptions | Method) -> Method:
    return method if isinstance(method, Method) else Method(method)


def _measure(
    pool: Pool,
    dataset: Dataset,
    corpus_ids: dict[str, list[str]],
    method: Method,
    cutoffs: Sequence[int],
) -> dict[str, Any]:
    depth = max(max(cutoffs), NDCG_DEPTH, MRR_DEPTH)
    timings: list[float] = []
    judged: list[Usage] = []
    options, policy = method.options, method.policy
    if pool.config.semantic:
        pool.encoder.forget_questions()  # each method's questions are new to it

    def ranked(question: str) -> list[str]:
        started = time.perf_counter()
        result = route(pool, question, top_k=policy.depth(depth), options=options, explain=False)
        timings.append(time.perf_counter() - started)
        if method.judge is not None and policy.enabled:
            result = _reranked(pool, result, method.judge, policy, judged)
        return [cid for doc in result.documents for cid in corpus_ids.get(doc.document_id, [])]

    runs = {qid: ranked(dataset.queries[qid]) for qid in dataset.qrels}
    metrics = summarise(runs, dataset.qrels, cutoffs)
    metrics["abstain_answerable"] = _mean(float(not runs[q]) for q in dataset.qrels)
    if dataset.unanswerable is not None:
        metrics["unanswerable"] = len(dataset.unanswerable)
        metrics["abstain_unanswerable"] = _mean(
            float(not ranked(text)) for text in dataset.unanswerable.values()
        )
    metrics["route_ms_p50"] = round(1000 * statistics.median(timings), 3) if timings else 0.0
    metrics["index_bytes"] = pool.index.memory_bytes(
        passages=options.passage_weight > 0 or options.semantic_weight > 0,
        embeddings=options.semantic_weight > 0,
    )
    if method.judge is not None and policy.enabled:
        metrics["rerank"] = {
            "model": method.judge.model,
            "judged": len(judged),
            "input_tokens_mean": _mean(float(u.input_tokens) for u in judged),
            "output_tokens_mean": _mean(float(u.output_tokens) for u in judged),
        }
    return metrics


def _reranked(
    pool: Pool, routed: Route, judge: Judge, policy: RerankPolicy, judged: list[Usage]
) -> Route:
    """``routed`` reranked as the service would, all of it kept (no budget); each
    judgement's usage is appended to ``judged``."""
    result = rerank(
        routed,
        judge,
        policy,
        show=lambda documents: candidates_of(pool, documents),
        top_k=len(routed.documents),
    )
    if result.judged or result.usage != Usage():  # an unusable reply was paid for too
        judged.append(result.usage)
    return result.route
