"""The HTTP client every store connector uses: timeouts, a per-shop rate limiter and
concurrency bound, retries that honour `Retry-After`, and errors that keep secrets out.

Edge module: imports httpx (and the `httpx-aiohttp` transport, whose connection pool
stays fast with hundreds of requests in flight where httpx's own collapses; NOTES.md).
Retries here are the connector's short, invisible ones — throttling (429, or a
platform's own THROTTLED answer) and broken connections on requests that are safe to
repeat (reads, or writes that carry an idempotency key). The SOP's `retry:` stays the
outer policy, and each of its attempts is recorded in the ledger.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from connectors.http import error_for_response, error_for_transport, redact
from storeops.errors import OperationError

__all__ = [
    "ClientOptions",
    "RateLimiter",
    "ShopClient",
    "all_at_once",
    "backoff_delay",
    "both",
    "first_failure",
]

_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class ClientOptions:
    """Per-shop client settings. `rate` is requests per second (None: unlimited)."""

    timeout: float = 30.0
    attempts: int = 4
    backoff: float = 0.25
    max_delay: float = 20.0
    rate: float | None = None
    burst: int = 20
    concurrency: int = 200


def backoff_delay(attempt: int, base: float, cap: float, *, salt: str = "") -> float:
    """Exponential backoff with full jitter; deterministic for a salt (tests, replays)."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    if salt:
        digest = hashlib.sha256(f"{salt}/{attempt}".encode()).digest()
        fraction = int.from_bytes(digest[:4], "big") / 2**32
    else:
        fraction = random.random()
    return float(ceiling * (0.5 + fraction / 2))


class RateLimiter:
    """A token bucket shared by every request to one shop, plus a shared pause: when the
    shop says `Retry-After`, every caller waits, not only the one that was told."""

    def __init__(self, rate: float | None, burst: int) -> None:
        self.rate = rate
        self.capacity = float(max(1, burst))
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        while True:
            now = time.monotonic()
            if now < self.paused_until:
                await asyncio.sleep(self.paused_until - now)
                continue
            if self.rate is None:
                return
            async with self._lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
            await asyncio.sleep(wait)


def _transport(concurrency: int) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:  # the plain pool works, only slower under many requests in flight
        return httpx.AsyncHTTPTransport(limits=limits)
    return AiohttpTransport(limits=limits, trust_env=False)


class ShopClient:
    """One shop's HTTP client. `secrets` are redacted from every error message."""

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        options: ClientOptions | None = None,
        secrets: Sequence[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.options = options or ClientOptions()
        self.limiter = RateLimiter(self.options.rate, self.options.burst)
        self._secrets = [s for s in secrets if s]
        self._gate = asyncio.Semaphore(self.options.concurrency)
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers or {}),
            auth=auth,
            timeout=self.options.timeout,
            transport=transport or _transport(self.options.concurrency),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"ShopClient({self.name!r}, {redact(str(self._client.base_url), self._secrets)!r})"

    def error(self, what: str, response: httpx.Response) -> OperationError:
        body = redact(response.text, self._secrets)
        return error_for_response(
            f"{self.name}: {what}", response.status_code, response.headers, body
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        repeatable: bool | None = None,
        throttled: Any = None,
    ) -> httpx.Response:
        """Send one request; return a 2xx response or raise OperationError.

        `repeatable`: whether a lost answer may be retried (default: GET, or a request
        carrying an `Idempotency-Key`). `throttled(response) -> seconds | None` lets a
        platform say that a 200 answer is a throttle (Shopify's THROTTLED)."""
        sent_headers = dict(headers or {})
        if repeatable is None:
            repeatable = method == "GET" or "Idempotency-Key" in sent_headers
        label = f"{self.name}: {what}"
        attempt = 0
        while True:
            attempt += 1
            await self.limiter.acquire()
            try:
                async with self._gate:
                    response = await self._client.request(
                        method, path, params=params, json=json, headers=sent_headers
                    )
            except httpx.HTTPError as exc:
                failure = error_for_transport(label, exc)
                if repeatable and attempt < self.options.attempts:
                    await asyncio.sleep(self._delay(attempt, None))
                    continue
                raise failure from None
            wait = throttled(response) if throttled is not None else None
            if wait is not None:
                self.limiter.pause(wait)
                if attempt < self.options.attempts:
                    continue
                raise OperationError(
                    "RateLimited", f"{label}: throttled", retryable=True, retry_after=wait
                )
            if response.status_code < 300:
                return response
            failure = self.error(what, response)
            if response.status_code in _RETRY_STATUSES and attempt < self.options.attempts:
                # 429 was refused before anything happened; a 5xx with Retry-After may have
                # been applied, so it is retried only when repeating is safe
                if response.status_code == 429 or (failure.retry_after is not None and repeatable):
                    self.limiter.pause(self._delay(attempt, failure.retry_after))
                    continue
                if repeatable:
                    await asyncio.sleep(self._delay(attempt, failure.retry_after))
                    continue
            raise failure

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.options.max_delay)
        return backoff_delay(attempt, self.options.backoff, self.options.max_delay)

    async def aclose(self) -> None:
        await self._client.aclose()


# ---------------------------------------------------------------- concurrent calls

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")


def first_failure(failed: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to raise for a failed group of calls: the first OperationError (its class
    says whether a retry may help), else the first error, looking into nested groups."""
    flat: list[BaseException] = []
    pending: list[BaseException] = list(failed.exceptions)
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending[:0] = list(error.exceptions)
        else:
            flat.append(error)
    return next((e for e in flat if isinstance(e, OperationError)), flat[0])


async def all_at_once(calls: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run `calls` concurrently; the first failure cancels the rest and is raised as is
    (asyncio.gather would leave them running after the caller gave up)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as failed:
        raise first_failure(failed) from None
    return [task.result() for task in tasks]


async def both(first: Coroutine[Any, Any, A], second: Coroutine[Any, Any, B]) -> tuple[A, B]:
    """Two calls concurrently, as `all_at_once`."""
    try:
        async with asyncio.TaskGroup() as group:
            one, two = group.create_task(first), group.create_task(second)
    except BaseExceptionGroup as failed:
        raise first_failure(failed) from None
    return one.result(), two.result()
