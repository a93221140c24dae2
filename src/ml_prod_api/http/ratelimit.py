"""Per-caller rate limits on the `limits` library (the engine SlowAPI is built on), async.

SlowAPI itself is not used: its decorators bind one limiter when the routes are imported (this
app is built by a factory, once per settings), its cost callables are synchronous and cannot see
the parsed body (a batch costs one unit per text here), and it calls the storage synchronously,
which would block the event loop while Redis is slow or gone. `limits.aio` gives the same
strategies and storages with async calls we can bound with a timeout.

The caller is the API key's name when auth is on, else the client address (after trusted-proxy
handling, so a caller cannot choose its own bucket with `X-Forwarded-For`).

Every request is charged, an invalid one one unit (as Google's quotas count failed requests):
otherwise a caller whose budget is spent could keep a core busy with large bodies that fail
validation. Once a caller's budget is spent, this process remembers until when, and refuses its
next requests before their bodies are read (`refuse_if_spent`), without asking the storage.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio as redis_asyncio
from limits import RateLimitItem, parse_many
from limits.aio import storage as aio_storage
from limits.aio import strategies
from limits.storage import storage_from_string

from ml_prod_api.http.errors import ApiError
from ml_prod_api.metrics import Metrics
from ml_prod_api.settings import Settings

log = logging.getLogger("ml_prod_api.ratelimit")

# The circuit breaker on the storage: after this many failures in a row (errors or timeouts),
# requests stop waiting for it for this long, then one request tries again. A Redis that accepts
# connections but never answers otherwise cost every request the whole timeout, and a connection
# (redis-py drops a connection whose command timed out).
BREAKER_FAILURES = 3
BREAKER_OPEN_SECONDS = 2.0

# Callers remembered as spent; beyond this many (spread over many addresses), new ones are not
# remembered and are refused by the storage instead, as before.
_MAX_SPENT_CALLERS = 10_000

_STRATEGIES: dict[str, type[strategies.RateLimiter]] = {
    "fixed-window": strategies.FixedWindowRateLimiter,
    "moving-window": strategies.MovingWindowRateLimiter,
    "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
}


def _async_uri(uri: str) -> str:
    return uri if uri.startswith("async+") else f"async+{uri}"


def make_storage(
    uri: str, timeout_s: float
) -> tuple[aio_storage.Storage, redis_asyncio.ConnectionPool | None]:
    full = _async_uri(uri)
    if full.startswith(("async+redis://", "async+rediss://")):
        # Our own pool, so shutdown can close its sockets; bounded connect and command
        # timeouts, so a dead Redis answers fast and never hangs a request.
        pool = redis_asyncio.ConnectionPool.from_url(
            full.removeprefix("async+"),
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
        )
        # limits types its pass-through options as scalars; it hands them to redis unchanged.
        storage = aio_storage.RedisStorage(
            full,
            wrap_exceptions=True,
            implementation="redispy",
            connection_pool=pool,  # type: ignore[arg-type]
        )
        return storage, pool
    generic = storage_from_string(full, wrap_exceptions=True)
    assert isinstance(generic, aio_storage.Storage)
    return generic, None


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    headers: dict[str, str]


class RateLimiter:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        assert settings.rate_limit is not None
        self.default = parse_many(settings.rate_limit)
        self.overrides = {k: parse_many(v) for k, v in settings.rate_limit_overrides.items()}
        self.timeout_s = settings.rate_limit_timeout_ms / 1000.0
        self.storage, self._pool = make_storage(settings.rate_limit_storage_uri, self.timeout_s)
        self.strategy = _STRATEGIES[settings.rate_limit_strategy](self.storage)
        self.fail_open = settings.rate_limit_fail_open
        self.metrics = metrics
        self._failures = 0  # storage failures in a row
        self._open_until = 0.0  # time.monotonic() until which the storage is not asked
        # caller -> (time.time() its budget returns, the 429 it was given)
        self._spent: dict[str, tuple[float, ApiError]] = {}

    def refuse_if_spent(self, caller: str) -> None:
        """Raise the caller's last 429 again while its budget is known to be spent."""
        spent = self._spent.get(caller)
        if spent is None:
            return
        until, refusal = spent
        now = time.time()
        if now >= until:
            del self._spent[caller]
            return
        self.metrics.rate_limited.inc()
        headers = dict(refusal.headers or {})
        headers["Retry-After"] = str(max(1, math.ceil(until - now)))
        raise ApiError(refusal.status, refusal.code, refusal.message, headers=headers)

    def _remember_spent(self, caller: str, until: float, refusal: ApiError) -> None:
        if len(self._spent) >= _MAX_SPENT_CALLERS:
            now = time.time()
            self._spent = {k: v for k, v in self._spent.items() if v[0] > now}
            if len(self._spent) >= _MAX_SPENT_CALLERS:
                return
        self._spent[caller] = (until, refusal)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()

    async def check(self, caller: str, cost: int) -> Decision:
        items = self.overrides.get(caller, self.default)
        if self._pool is None:  # in-process storage: nothing to wait for
            return await self._check(items, caller, cost)
        if time.monotonic() < self._open_until:
            return self._unavailable("breaker_open")
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                decision = await self._check(items, caller, cost)
        except ApiError:
            self._failures = 0
            raise
        except Exception as exc:  # storage down or slow
            self._failures += 1
            if self._failures >= BREAKER_FAILURES:
                self._open_until = time.monotonic() + BREAKER_OPEN_SECONDS
                log.warning(
                    "rate-limit storage failing: not asked for a while",
                    extra={"failures": self._failures, "open_s": BREAKER_OPEN_SECONDS},
                )
            return self._unavailable(type(exc).__name__)
        self._failures = 0
        return decision

    def _unavailable(self, error_type: str) -> Decision:
        """Follow RATE_LIMIT_FAIL_OPEN when the storage cannot be asked."""
        self.metrics.rate_limit_storage_errors.inc()
        log.warning(
            "rate-limit storage unavailable",
            extra={"error_type": error_type, "fail_open": self.fail_open},
        )
        if self.fail_open:
            return Decision(True, {})
        raise ApiError(
            503,
            "rate_limit_unavailable",
            "rate limiting is unavailable; try again shortly",
            headers={"Retry-After": "1"},
        )

    async def _check(self, items: list[RateLimitItem], caller: str, cost: int) -> Decision:
        for item in items:
            if cost > item.amount:
                # It could never pass: a 429 with Retry-After would be retried for ever.
                raise ApiError(
                    413,
                    "cost_exceeds_rate_limit",
                    f"this request costs {cost} (one unit a text), more than the whole rate "
                    f"limit of {item.amount} per {item.get_expiry()} s; send at most "
                    f"{item.amount} texts a request",
                )
        tightest: tuple[RateLimitItem, int, float] | None = None
        for item in items:
            if not await self.strategy.hit(item, caller, cost=cost):
                stats = await self.strategy.get_window_stats(item, caller)
                headers = _headers(item, stats.remaining, stats.reset_time)
                retry = max(1, math.ceil(stats.reset_time - time.time()))
                headers["Retry-After"] = str(retry)
                self.metrics.rate_limited.inc()
                refusal = ApiError(
                    429,
                    "rate_limited",
                    f"rate limit of {item.amount} per {item.get_expiry()} s exceeded "
                    f"(this request costs {cost})",
                    headers=headers,
                )
                if stats.remaining <= 0:
                    self._remember_spent(caller, stats.reset_time, refusal)
                raise refusal
            stats = await self.strategy.get_window_stats(item, caller)
            if tightest is None or stats.remaining < tightest[1]:
                tightest = (item, stats.remaining, stats.reset_time)
        assert tightest is not None
        return Decision(True, _headers(*tightest))


def _headers(item: RateLimitItem, remaining: int, reset_time: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(item.amount),
        "X-RateLimit-Remaining": str(max(0, remaining)),
        "X-RateLimit-Reset": str(math.ceil(reset_time)),
    }
