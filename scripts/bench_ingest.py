"""Ingest benchmark: the 18F handbook (246 pages) into fresh pools.

(a) ``bulk_ingest`` with the local Files backend (at its default concurrency): wall time
    (target < 30 s) and documents per second;
(b) against the fake Files API from ``tests/fakes`` answering each upload after 100 ms, with
    concurrency 1 and 8: documents per second of each and their ratio (target >= 5x).

Only the ``bulk_ingest`` call is timed; opening the fresh pool (schema migration) is not.
Skips cleanly when ``../shared/data/18f-handbook/pages`` is absent.

Example: python scripts/bench_ingest.py [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import _bench_common as common  # also puts the repository root on sys.path

from indexing.anthropic_client import make_client
from indexing.anthropic_files import AnthropicFilesBackend
from indexing.bulk import bulk_ingest
from indexing.files import FilesBackend, LocalFilesBackend
from indexing.pool import Pool, PoolConfig
from tests.fakes.anthropic_server import FakeAnthropic, FakeAnthropicServer

PAGES = common.DATA / "18f-handbook" / "pages"
UPLOAD_DELAY = 0.1  # seconds the fake takes to answer each upload
LOCAL_TARGET_S = 30.0
SPEEDUP_TARGET = 5.0
DEFAULT_CONCURRENCY = 4  # bulk_ingest's own default (and the settings' ingest_concurrency)


@dataclass(frozen=True)
class Run:
    backend: str
    concurrency: int
    seconds: float
    added: int
    failed: int
    #: Why documents failed (the file name stripped), with how many failed so.
    failure_reasons: dict[str, int]

    @property
    def docs_per_s(self) -> float:
        return self.added / self.seconds if self.seconds else float("nan")


def ingest_run(concurrency: int, backend: FilesBackend | None = None) -> Run:
    """Bulk-ingest the handbook into a fresh pool in a temporary directory; without a
    ``backend``, into a local files store inside that directory."""
    with tempfile.TemporaryDirectory(prefix="kpool-bench-ingest-") as tmp:
        backend = backend or LocalFilesBackend(Path(tmp) / "files")
        # As `kpool ingest` opens it: no live index in the ingesting process.
        pool = Pool.open(PoolConfig(data_dir=Path(tmp)), backend, load_index=False)
        try:
            report, ms = common.timed(bulk_ingest, pool, [PAGES], concurrency=concurrency)
        finally:
            pool.close()
    counts = report.counts
    reasons: Counter[str] = Counter()
    for outcome in report.outcomes:
        if outcome.status == "failed":
            common.progress(f"  failed: {outcome.source}: {outcome.reason}")
            reasons[outcome.reason.split(": ", 1)[-1]] += 1
    run = Run(backend.name, concurrency, ms / 1e3, counts["added"], counts["failed"], dict(reasons))
    common.progress(
        f"{run.backend} backend, concurrency {concurrency}: {run.added} added, "
        f"{run.failed} failed in {run.seconds:.2f} s"
    )
    return run


def local_run() -> Run:
    return ingest_run(DEFAULT_CONCURRENCY)


def _serve_fake(delay: float, address: Connection) -> None:
    """Child process: a fake Files API answering each upload after ``delay`` seconds."""
    fake = FakeAnthropic()
    fake.upload_delay = delay
    with FakeAnthropicServer(fake):
        address.send((fake.base_url, fake.api_key))
        address.recv()  # block until the parent is done
        address.send((len(fake.files), [repr(e) for e in fake.internal_errors]))


def fake_api_runs(concurrencies: tuple[int, ...]) -> list[Run]:
    """One run per concurrency, each against a fresh fake Files API in its own process: the
    real API is remote, so its work must not compete with ingest for this process's GIL."""
    runs = []
    context = multiprocessing.get_context("spawn")
    for concurrency in concurrencies:
        ours, theirs = context.Pipe()
        server = context.Process(target=_serve_fake, args=(UPLOAD_DELAY, theirs), daemon=True)
        server.start()
        try:
            base_url, api_key = ours.recv()
            client = make_client(api_key=api_key, base_url=base_url, timeout=30.0, max_retries=3)
            try:
                runs.append(ingest_run(concurrency, AnthropicFilesBackend(client)))
            finally:
                client.close()
            ours.send("done")
            stored, errors = ours.recv()
        finally:
            server.join(timeout=30)
            if server.is_alive():
                server.kill()
        if errors:
            raise RuntimeError(f"the fake Files API crashed: {errors}")
        if stored != runs[-1].added:
            raise RuntimeError(f"the fake holds {stored} files for {runs[-1].added} added")
    return runs


def report(local: Run, serial: Run, parallel: Run, pages: int) -> dict[str, object]:
    speedup = parallel.docs_per_s / serial.docs_per_s
    return {
        "pages": pages,
        "local": asdict(local) | {"docs_per_s": round(local.docs_per_s, 2)},
        "fake_api": {
            "upload_delay_s": UPLOAD_DELAY,
            "concurrency_1": asdict(serial) | {"docs_per_s": round(serial.docs_per_s, 2)},
            "concurrency_8": asdict(parallel) | {"docs_per_s": round(parallel.docs_per_s, 2)},
            "speedup": round(speedup, 2),
        },
        "targets": {
            "local_under_30_s": local.seconds < LOCAL_TARGET_S,
            "speedup_at_least_5x": speedup >= SPEEDUP_TARGET,
        },
    }


def print_table(local: Run, serial: Run, parallel: Run, pages: int) -> None:
    print(f"Bulk ingest of the 18F handbook ({pages} pages) into fresh pools")
    fake = f"fake API ({UPLOAD_DELAY * 1000:.0f} ms/upload)"
    rows = [
        [
            run.backend if run is local else fake,
            run.concurrency,
            run.added,
            run.failed,
            run.seconds,
            run.docs_per_s,
        ]
        for run in (local, serial, parallel)
    ]
    print(common.table(["backend", "concurrency", "added", "failed", "wall s", "docs/s"], rows))
    speedup = parallel.docs_per_s / serial.docs_per_s
    print()
    print("Targets:")
    local_ok = local.seconds < LOCAL_TARGET_S
    print(
        f"  {common.verdict(local_ok):>7}  local bulk ingest < {LOCAL_TARGET_S:.0f} s: "
        f"{local.seconds:.2f} s ({local.docs_per_s:.1f} docs/s)"
    )
    print(
        f"  {common.verdict(speedup >= SPEEDUP_TARGET):>7}  concurrency 8 >= "
        f"{SPEEDUP_TARGET:.0f}x concurrency 1 against the fake API: {speedup:.2f}x "
        f"({parallel.docs_per_s:.1f} vs {serial.docs_per_s:.1f} docs/s)"
    )
    if local.failure_reasons:
        print()
        print("Failed documents (docs/s counts only those added):")
        for reason, count in sorted(local.failure_reasons.items()):
            print(f"  {count} x {reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if not PAGES.is_dir():
        message = f"the 18F handbook is not at {PAGES}: skipped"
        print(json.dumps({"skipped": message}) if args.json else message)
        return 0
    pages = sum(1 for p in PAGES.rglob("*") if p.is_file() and not p.name.startswith("."))
    local = local_run()
    serial, parallel = fake_api_runs((1, 8))
    if args.json:
        print(json.dumps(report(local, serial, parallel, pages)))
    else:
        print_table(local, serial, parallel, pages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
