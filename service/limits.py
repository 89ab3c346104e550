"""How much each caller may ask: a request rate (token bucket) and an hourly upstream token
budget, both refused with ``RateLimited`` (429 with ``Retry-After``).

The arithmetic is pure and takes the time as an argument (``take``, ``spent``, ``budget_wait``),
so it is tested without sleeping; ``Limiter`` keeps one bucket and one window per caller behind a
lock, in this process only (each server process, or replica, counts on its own).

* **Requests**: a token bucket of ``burst`` tokens refilled at ``per_minute / 60`` a second; a
  request takes one, or is refused until one has refilled.
* **Upstream tokens**: what Anthropic reports for each answer (input, output and cache writes;
  cache reads are left out: they are billed at a tenth of the input price, and counting them
  would make every follow-up of a conversation pay again for the whole conversation, which the
  prompt cache exists to avoid) is charged to a sliding one-hour window when the answer is done.
  A caller is admitted while the window holds less than the budget, so an answer already in
  flight may take a caller over it; they then wait until enough of the hour has slid by.

Memory stays bounded: a caller whose bucket has refilled, or whose window has emptied, is
forgotten (a fresh one is the same), and beyond ``max_callers`` the least recently seen caller
is forgotten first.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from indexing.errors import RateLimited
from service.answer import Usage
from service.auth import Caller
from service.settings import Settings

#: The budget's window, and how finely it slides: the charges of one slot are kept together and
#: count until the slot's end has left the window (up to a slot too long, never too short), so
#: a caller's window holds at most 61 entries.
WINDOW_SECONDS = 3600.0
SLOT_SECONDS = 60.0
#: Callers remembered at once, per limit.
MAX_CALLERS = 100_000


def identity(caller: Caller, address: str | None) -> str:
    """Whom a request counts against: its key; a trusted front end's user (``key:user``, like
    the conversations they own); a widget key per visitor's address, since everyone on the
    embedding pages shares that key; in open mode (no keys), the client's address."""
    where = address or "unknown"
    if caller.key_id is None:
        return f"address:{where}"
    if caller.role == "widget":
        return f"{caller.key_id}@{where}"
    return caller.owner


def budgeted(usage: Usage) -> int:
    """The tokens of an answer that count against the hourly budget (cache reads do not)."""
    return usage.input_tokens + usage.output_tokens + usage.cache_creation_input_tokens


# ------------------------------------------------------------------------------ token bucket


@dataclass(frozen=True)
class Bucket:
    """``tokens`` left at time ``at``."""

    tokens: float
    at: float


def refilled(bucket: Bucket, *, now: float, rate: float, capacity: float) -> Bucket:
    """The bucket at ``now``: ``rate`` tokens a second added since ``at``, up to ``capacity``."""
    elapsed = max(0.0, now - bucket.at)
    return Bucket(min(capacity, bucket.tokens + elapsed * rate), max(now, bucket.at))


def take(bucket: Bucket, *, now: float, rate: float, capacity: float) -> tuple[Bucket, float]:
    """Take one token: the bucket after, and 0.0; or, when less than one is left, the bucket
    unchanged (a refusal costs nothing) and the seconds until one will be there."""
    current = refilled(bucket, now=now, rate=rate, capacity=capacity)
    if current.tokens >= 1.0:
        return Bucket(current.tokens - 1.0, current.at), 0.0
    return current, (1.0 - current.tokens) / rate


def full_after(*, rate: float, capacity: float) -> float:
    """Seconds after which any bucket is full again (and so no different from a new one)."""
    return capacity / rate


# ---------------------------------------------------------------------------- hourly window

#: Tokens spent per slot (``slot`` seconds from the epoch of the clock), oldest slot first.
Window = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Span:
    """A sliding window of ``length`` seconds kept in slots of ``slot`` seconds: a charge counts
    until its whole slot has left the window, so at most ``slot`` seconds too long, never too
    short."""

    length: float = WINDOW_SECONDS
    slot: float = SLOT_SECONDS

    def slot_of(self, now: float) -> int:
        return int(now // self.slot)

    def expires(self, slot: int) -> float:
        """When the charges of ``slot`` stop counting."""
        return (slot + 1) * self.slot + self.length


HOUR = Span()


def current(window: Window, *, now: float, span: Span = HOUR) -> Window:
    """The slots still inside the window at ``now``."""
    return tuple((slot, tokens) for slot, tokens in window if span.expires(slot) > now)


def spent(window: Window, *, now: float, span: Span = HOUR) -> int:
    return sum(tokens for _, tokens in current(window, now=now, span=span))


def charged(window: Window, tokens: int, *, now: float, span: Span = HOUR) -> Window:
    """The window with ``tokens`` more spent at ``now``."""
    kept = current(window, now=now, span=span)
    slot = span.slot_of(now)
    if kept and kept[-1][0] == slot:
        return (*kept[:-1], (slot, kept[-1][1] + tokens))
    return (*kept, (slot, tokens))


def budget_wait(window: Window, budget: int, *, now: float, span: Span = HOUR) -> float:
    """0.0 while less than ``budget`` is spent in the window; otherwise the seconds until
    enough of the oldest slots have left it for the spending to be under the budget."""
    kept = current(window, now=now, span=span)
    left = sum(tokens for _, tokens in kept)
    wait = 0.0
    for slot, tokens in kept:
        if left < budget:
            break
        left -= tokens
        wait = span.expires(slot) - now
    return wait


# ---------------------------------------------------------------------------------- limiter


class Limiter:
    """Every caller's bucket and window in this process. Thread-safe; ``clock`` gives seconds
    (monotonic by default). A ``per_minute`` or ``tokens_per_hour`` of 0 turns that limit off."""

    def __init__(
        self,
        *,
        per_minute: float = 0.0,
        burst: int = 1,
        tokens_per_hour: int = 0,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = MAX_CALLERS,
        span: Span = HOUR,
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst)
        self.budget = tokens_per_hour
        self.span = span
        self._clock = clock
        self._max_callers = max_callers
        self._lock = threading.Lock()
        # Least recently seen first, so the forgettable ones are found at the front.
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._windows: OrderedDict[str, Window] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> Limiter:
        return cls(
            per_minute=settings.rate_limit_per_minute,
            burst=settings.rate_limit_burst,
            tokens_per_hour=settings.tokens_per_hour,
        )

    @property
    def limits_requests(self) -> bool:
        return self.rate > 0

    @property
    def limits_tokens(self) -> bool:
        return self.budget > 0

    def admit(self, who: str) -> None:
        """Count one request of ``who``; raises ``RateLimited`` when their bucket is empty."""
        if not self.limits_requests:
            return
        with self._lock:
            now = self._clock()
            self._forget_full_buckets(now)
            bucket = self._buckets.pop(who, None) or Bucket(self.capacity, now)
            bucket, wait = take(bucket, now=now, rate=self.rate, capacity=self.capacity)
            self._buckets[who] = bucket
            _bound(self._buckets, self._max_callers)
        if wait > 0:
            per_minute = f"{self.rate * 60:g}"
            raise RateLimited(
                f"too many requests: this caller may make {per_minute} a minute "
                f"(bursts of {self.capacity:g}); try again in {_seconds(wait)}",
                retry_after=wait,
            )

    def check_budget(self, who: str) -> None:
        """Raises ``RateLimited`` when ``who`` has used the hour's upstream tokens."""
        if not self.limits_tokens:
            return
        with self._lock:
            now = self._clock()
            self._forget_empty_windows(now)
            wait = budget_wait(self._windows.get(who, ()), self.budget, now=now, span=self.span)
        if wait > 0:
            raise RateLimited(
                f"this caller has used its {self.budget} Anthropic tokens for the hour; "
                f"try again in {_seconds(wait)}",
                retry_after=wait,
            )

    def charge(self, who: str, tokens: int) -> None:
        """Add ``tokens`` to what ``who`` has spent this hour."""
        if not self.limits_tokens or tokens <= 0:
            return
        with self._lock:
            now = self._clock()
            self._forget_empty_windows(now)
            window = self._windows.pop(who, ())
            self._windows[who] = charged(window, tokens, now=now, span=self.span)
            _bound(self._windows, self._max_callers)

    def spent(self, who: str) -> int:
        """The tokens ``who`` has spent in the window ending now."""
        with self._lock:
            return spent(self._windows.get(who, ()), now=self._clock(), span=self.span)

    def callers(self) -> int:
        """How many callers are remembered (buckets and windows)."""
        with self._lock:
            return len(self._buckets.keys() | self._windows.keys())

    def _forget_full_buckets(self, now: float) -> None:
        refill = full_after(rate=self.rate, capacity=self.capacity)
        while self._buckets:
            who, oldest = next(iter(self._buckets.items()))
            if now - oldest.at < refill:
                return
            del self._buckets[who]

    def _forget_empty_windows(self, now: float) -> None:
        while self._windows:
            who, oldest = next(iter(self._windows.items()))
            if current(oldest, now=now, span=self.span):
                return
            del self._windows[who]


def _bound(callers: OrderedDict[str, Any], most: int) -> None:
    while len(callers) > most:
        callers.popitem(last=False)


def _seconds(wait: float) -> str:
    whole = max(1, math.ceil(wait))
    return f"{whole} second{'s' if whole != 1 else ''}"
