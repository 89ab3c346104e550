"""Routing quality by method: the README's routing table, in one run.

Every method routes through the service's own ``route`` (``service.router``) over one pool per
dataset, built once by the same ingest the service uses (``service.evaluation.compare``), so the
rows differ only in how questions are scored:

* ``BM25, documents``: whole-document BM25 (stemmed, Lucene IDF), every word of the question;
* ``+ question words dropped``: "how do I", "am I allowed to" and the like leave the question;
* ``+ best passage``: a document scores by its whole text plus its best passage (routing by
  words only, ``KPOOL_SEMANTIC=0``);
* ``+ coverage ≥ X``: the same, routing nothing when the best document holds less than X of the
  question's IDF-weighted terms (``KPOOL_MIN_COVERAGE``);
* ``+ meaning``: the best passage's similarity to the question (a third of it the document
  title's) by the packaged embedding model, mixed half and half with BM25 (``KPOOL_SEMANTIC=1``,
  ``KPOOL_SEMANTIC_WEIGHT=0.5``): BM25 of the whole text plus the best passage's, as by words
  only; BM25 of the whole text alone (the default with meaning, ``KPOOL_PASSAGE_WEIGHT``
  unset), and that with coverage. These rows need ``make semantic``;
  without it they are left out, and the pool is built without vectors. With it, building the
  pools takes minutes: the model reads every passage once (about 0.1 s each on one core).

With ``--rerank``, one more row: the default routing, then its first 8 candidates reranked by a
small Claude model as ``KPOOL_RERANK=always`` does in the service (``service.rerank``), with its
abstention. It needs ``ANTHROPIC_API_KEY`` (``KPOOL_ANTHROPIC_BASE_URL`` for a proxy), costs one
request per question (the script prints the mean tokens), and its figures are the model's, so
they vary a little from run to run. ``--rerank --fake-anthropic`` sends those requests to the
test server in ``tests/fakes`` instead, whose forced-tool reply keeps the local order: a dry
run that measures the requests (tokens as the fake counts them, 4 characters each), not the
model. With ``--expand``, more rows: the same methods over a second pool whose documents a
small Claude model described first, as ``KPOOL_EXPAND`` does in the service
(``indexing.expansion``): one request per document, whose mean tokens the script prints;
``--expand --fake-anthropic`` measures those requests against the test server, whose plainest
reply (the word "x") leaves each document a passage of little but its title: its rows show what
an empty description costs, not what a real one gains. ``--margins`` prints instead, for
``KPOOL_RERANK=uncertain``, the share of questions each margin would send to the model and how
many of the Recall@1 misses are among them.

Columns: Recall@1/3/10 and nDCG@10 over the answerable questions; abstention on the questions no
document answers (``unanswerable.jsonl``, where the dataset has it) and on the answerable ones;
the median ``route`` time in this process, analyzer included; the index's arrays per document.

Example: python scripts/eval_routing.py [--datasets 18f-handbook-qa,scifact] [--json]
         python scripts/eval_routing.py --rerank [--fake-anthropic]
         python scripts/eval_routing.py --expand [--fake-anthropic]
         python scripts/eval_routing.py --datasets 18f-handbook-qa --margins
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import _bench_common as common  # also puts the repository root on sys.path
from pydantic import ValidationError

from indexing.errors import SemanticUnavailable
from indexing.semantic import model_directory
from service.ask import make_judge
from service.evaluation import Method, build_pool, compare, load_dataset
from service.expand import make_describer
from service.rerank import uncertain
from service.router import RoutingOptions, route
from service.settings import Settings

COVERAGE = 0.4
METHODS = {
    "BM25, documents": RoutingOptions(drop_question_words=False, passage_weight=0.0),
    "+ question words dropped": RoutingOptions(passage_weight=0.0),
    "+ best passage (words only)": RoutingOptions(),
    f"+ coverage ≥ {COVERAGE}": RoutingOptions(min_coverage=COVERAGE),
}
SEMANTIC_WEIGHT = 0.5
SEMANTIC_METHODS = {
    "+ meaning, BM25 of text and best passage": RoutingOptions(
        semantic_weight=SEMANTIC_WEIGHT, passage_weight=1.0
    ),
    "+ meaning, BM25 of the whole text (default)": RoutingOptions(
        semantic_weight=SEMANTIC_WEIGHT, passage_weight=0.0
    ),
    f"+ meaning, coverage ≥ {COVERAGE}": RoutingOptions(
        semantic_weight=SEMANTIC_WEIGHT, passage_weight=0.0, min_coverage=COVERAGE
    ),
}


def semantic_available() -> bool:
    try:
        model_directory()
    except SemanticUnavailable as exc:
        common.progress(f"semantic rows left out: {exc}")
        return False
    return True


def reranking(semantic: bool) -> dict[str, Method]:
    """The reranked row, configured from the environment as the service would be."""
    try:
        settings = Settings(rerank="always", semantic=semantic)
    except ValidationError as exc:
        problems = "; ".join(str(error["msg"]) for error in exc.errors())
        raise SystemExit(f"--rerank: {problems}") from None
    judge = make_judge(settings)
    assert judge is not None
    name = f"+ {'meaning, ' if semantic else ''}Claude rerank ({settings.rerank_model})"
    return {name: Method(settings.routing_options(), judge, settings.rerank_policy())}


def described_settings(semantic: bool, home: Path) -> Settings:
    """The service's settings with ``KPOOL_EXPAND`` on, configured from the environment."""
    try:
        return Settings(home=home, semantic=semantic, expand=True)
    except ValidationError as exc:
        problems = "; ".join(str(error["msg"]) for error in exc.errors())
        raise SystemExit(f"--expand: {problems}") from None


def measure(
    names: list[str], rerank: bool = False, expand: bool = False
) -> dict[str, dict[str, dict[str, Any]]]:
    """dataset → method → metrics, for the datasets present under ``../shared/data``."""
    semantic = semantic_available()
    methods: dict[str, RoutingOptions | Method] = dict(METHODS)
    if semantic:
        methods.update(SEMANTIC_METHODS)
    if rerank:
        methods.update(reranking(semantic))
    described_methods = {
        name: options
        for name, options in {**METHODS, **(SEMANTIC_METHODS if semantic else {})}.items()
        if name != "BM25, documents"
    }
    results = {}
    for name in names:
        directory = common.DATA / name
        if not (directory / "corpus.jsonl").is_file():
            common.progress(f"skipping {name}: {directory} is not available")
            continue
        common.progress(f"{name}: ingesting and routing ...")
        with tempfile.TemporaryDirectory(prefix="kpool-eval-routing-") as home:
            settings = Settings(home=Path(home), semantic=semantic)
            metrics = compare(directory, methods, settings=settings)
            if expand:
                common.progress(f"{name}: describing every document and routing again ...")
                described = described_settings(semantic, Path(home))
                describer = make_describer(described)
                assert describer is not None
                try:
                    with_descriptions = compare(
                        directory, described_methods, settings=described, describer=describer
                    )
                finally:
                    describer.client.close()
                tag = f"described by {described.expand_model}"
                metrics.update({f"{row}, {tag}": m for row, m in with_descriptions.items()})
        corpus_size = sum(1 for line in (directory / "corpus.jsonl").open() if line.strip())
        for row in metrics.values():
            row["bytes_per_document"] = round(row["index_bytes"] / corpus_size)
        results[name] = metrics
    return results


MARGINS = (0.05, 0.1, 0.15, 0.2, 0.3)


def uncertain_shares(name: str) -> list[dict[str, Any]]:
    """For ``KPOOL_RERANK=uncertain``, per margin: the share of the dataset's questions it would
    send to the model under the default routing, and how many of the questions whose best
    document is wrong (Recall@1 misses) are among them."""
    directory = common.DATA / name
    dataset = load_dataset(directory)
    with tempfile.TemporaryDirectory(prefix="kpool-eval-margins-") as home:
        settings = Settings(home=Path(home), semantic=semantic_available())
        pool, corpus_ids = build_pool(dataset.corpus, settings, Path(home))
        try:
            seen = []
            for qid, relevant in dataset.qrels.items():
                routed = route(
                    pool, dataset.queries[qid], top_k=2, options=settings.routing_options()
                )
                first = routed.documents[0].document_id if routed.documents else ""
                right = any(relevant.get(c, 0) > 0 for c in corpus_ids.get(first, []))
                seen.append((routed.documents, right))
        finally:
            pool.close()
    misses = [documents for documents, right in seen if not right]
    return [
        {
            "margin": margin,
            "asked": round(sum(uncertain(d, margin) for d, _ in seen) / len(seen), 3),
            "misses": len(misses),
            "misses_asked": sum(uncertain(d, margin) for d in misses),
        }
        for margin in MARGINS
    ]


def against_fake(
    names: list[str], rerank: bool, expand: bool
) -> dict[str, dict[str, dict[str, Any]]]:
    """``measure`` with its model requests sent to the fake Anthropic server, run in this
    process."""
    from tests.fakes.anthropic_server import FakeAnthropic, FakeAnthropicServer

    fake = FakeAnthropic()
    with FakeAnthropicServer(fake):
        os.environ["ANTHROPIC_API_KEY"] = fake.api_key
        os.environ["KPOOL_ANTHROPIC_BASE_URL"] = fake.base_url
        return measure(names, rerank=rerank, expand=expand)


def render(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    headers = [
        "dataset",
        "method",
        "R@1",
        "R@3",
        "R@10",
        "nDCG@10",
        "abstains: unanswerable",
        "abstains: answerable",
        "route p50 ms",
        "index bytes/doc",
    ]
    rows = []
    for dataset, methods in results.items():
        for method, m in methods.items():
            unanswerable = m.get("abstain_unanswerable")
            rows.append(
                [
                    dataset,
                    method,
                    m["recall@1"],
                    m["recall@3"],
                    m["recall@10"],
                    m["ndcg@10"],
                    "—" if unanswerable is None else f"{unanswerable:.0%}",
                    f"{m['abstain_answerable']:.0%}",
                    m["route_ms_p50"],
                    m["bytes_per_document"],
                ]
            )
    notes = [
        f"{dataset}, {method}: {r['judged']} questions judged by {r['model']}, "
        f"{r['input_tokens_mean']:.0f} input and {r['output_tokens_mean']:.0f} output tokens each"
        for dataset, methods in results.items()
        for method, m in methods.items()
        if (r := m.get("rerank"))
    ]
    notes += [
        f"{dataset}, {method}: {e['described']} documents described by {e['model']} "
        f"({e['failed']} failed), {e['input_tokens_per_document']:.0f} input and "
        f"{e['output_tokens_per_document']:.0f} output tokens per document"
        for dataset, methods in results.items()
        for method, m in methods.items()
        if (e := m.get("expansion"))
    ]
    return "\n".join([common.table(headers, rows), *dict.fromkeys(notes)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="18f-handbook-qa,scifact")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--rerank", action="store_true", help="add the Claude-reranked row (API key needed)"
    )
    parser.add_argument(
        "--expand",
        action="store_true",
        help="add rows over documents described by Claude first (API key needed)",
    )
    parser.add_argument(
        "--fake-anthropic",
        action="store_true",
        help="with --rerank or --expand: ask the test server instead (measures the requests, "
        "not the model)",
    )
    parser.add_argument(
        "--margins",
        action="store_true",
        help="print how often KPOOL_RERANK=uncertain would ask, per margin, instead",
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    if args.margins:
        shares = {name: uncertain_shares(name) for name in names}
        print(json.dumps(shares, indent=2))
        return
    if (args.rerank or args.expand) and args.fake_anthropic:
        results = against_fake(names, rerank=args.rerank, expand=args.expand)
    else:
        results = measure(names, rerank=args.rerank, expand=args.expand)
    print(json.dumps(results, indent=2) if args.json else render(results))


if __name__ == "__main__":
    main()
