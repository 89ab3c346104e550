"""Helpers shared by the benchmark scripts: paths, timing, memory, tables.

Benchmarks print figures; they are not tests. The machines they run on are shared and noisy, so
every figure is a median and comparisons are ratios taken within one run.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

ROOT = Path(__file__).resolve().parents[1]
#: The shared, read-only data sets live beside the repository (``../shared/data``).
DATA = ROOT.parent / "shared" / "data"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def progress(message: str) -> None:
    """Progress goes to stderr so that stdout stays one table or one JSON document."""
    print(message, file=sys.stderr, flush=True)


P = ParamSpec("P")
R = TypeVar("R")


def timed(call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> tuple[R, float]:
    """What one call returns, and how many milliseconds it took."""
    start = time.perf_counter_ns()
    result = call(*args, **kwargs)
    return result, (time.perf_counter_ns() - start) / 1e6


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def rss_bytes() -> int | None:
    """The process's resident set size now (Linux ``/proc``), or None where unavailable."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def settled_rss() -> int | None:
    gc.collect()
    return rss_bytes()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, numbers right-aligned."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"
