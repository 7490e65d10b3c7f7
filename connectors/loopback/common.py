"""What both loopback platforms share: a small HTTP/1.1 server on asyncio, latency and
seeded fault injection, counters, the deterministic seed shop, webhook signing, and
`LoopbackServer`, which runs an app in a background thread or in a child process.

Test-and-benchmark edge: imports only the standard library and httpx (webhook delivery);
never storeops. The HTTP layer is our own because it must do what frameworks avoid on
purpose: close a socket without answering, or hang past the client's timeout, after the
write was applied. Measured on 2 cores, 20 ms latency, 200 keep-alive connections from
another process: ~7,300 req/s (uvicorn+h11+Starlette: ~5,600; httptools/uvloop absent).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import http.client
import importlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "FAULT_KINDS",
    "FaultConfig",
    "LoopbackApp",
    "LoopbackServer",
    "Request",
    "Response",
    "SeedOrder",
    "SeedProduct",
    "SeedVariant",
    "ShopSeed",
    "build_seed",
    "format_iso",
    "hmac_sha256_base64",
    "json_response",
    "parse_iso",
    "verify_hmac_sha256_base64",
]

REPO_ROOT = Path(__file__).resolve().parent.parent.parent

# --------------------------------------------------------------------------- HTTP model


@dataclasses.dataclass(slots=True)
class Request:
    """One parsed request; header names are lower-case, query values keep repeats."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    raw_target: str = ""

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclasses.dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    content_type: str = "application/json; charset=utf-8"


def json_response(
    payload: Any, status: int = 200, headers: Sequence[tuple[str, str]] = ()
) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(status, body, list(headers))


_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _encode_response(resp: Response, keep_alive: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {resp.status} {_REASONS.get(resp.status, 'Status')}",
        f"Content-Type: {resp.content_type}",
        f"Content-Length: {len(resp.body)}",
        "Connection: keep-alive" if keep_alive else "Connection: close",
    ]
    lines.extend(f"{name}: {value}" for name, value in resp.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body


class LoopbackApp(Protocol):
    """A platform double: answers requests, reports its counters, may take control calls."""

    async def handle(self, request: Request) -> Response: ...

    def stats(self, detail: bool = False) -> dict[str, Any]: ...

    async def control(self, request: Request) -> Response | None:
        """Answer `/_loopback/<name>` requests the generic layer does not know, or None."""
        ...


# --------------------------------------------------------------------------- faults

FAULT_KINDS = (
    "rate_limit",  # 429 + Retry-After, nothing applied
    "server_error",  # 500/502/503, nothing applied
    "server_error_after",  # applied, then 500/502/503 instead of the answer
    "hang",  # nothing applied; no answer for hang_s, then the socket closes
    "hang_after",  # applied; no answer for hang_s, then the socket closes
    "reset",  # nothing applied; the socket closes without an answer
    "reset_after",  # applied; the socket closes without an answer (answer lost)
)
_AFTER = frozenset({"server_error_after", "hang_after", "reset_after"})


@dataclasses.dataclass(frozen=True)
class FaultConfig:
    """Seeded fault injection: each platform request fails with probability `rate`; the
    kind is drawn by `weights` (default: every kind in FAULT_KINDS equally). The draw
    sequence is fixed by `seed`; under concurrency which request gets which draw
    follows arrival order. `/_loopback/*` is never faulted."""

    rate: float = 0.0
    seed: int = 0
    weights: Mapping[str, float] | None = None
    hang_s: float = 30.0
    retry_after_s: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "seed": self.seed,
            "weights": dict(self.weights) if self.weights is not None else None,
            "hang_s": self.hang_s,
            "retry_after_s": self.retry_after_s,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultConfig:
        return cls(**data)


class _FaultPlan:
    def __init__(self, config: FaultConfig) -> None:
        weights = dict(config.weights) if config.weights else dict.fromkeys(FAULT_KINDS, 1.0)
        unknown = sorted(set(weights) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; allowed: {list(FAULT_KINDS)}")
        self.config = config
        self.kinds = [k for k, w in weights.items() if w > 0]
        self.weights = [weights[k] for k in self.kinds]
        self.rng = random.Random(config.seed)

    def draw(self) -> tuple[str | None, int]:
        """The fault for the next request (or None) and the status to use for errors."""
        if self.config.rate <= 0 or not self.kinds:
            return None, 0
        if self.rng.random() >= self.config.rate:
            return None, 0
        kind = self.rng.choices(self.kinds, self.weights)[0]
        return kind, self.rng.choice((500, 502, 503))


# --------------------------------------------------------------------------- server core


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    latency_s: float = 0.0
    faults: FaultConfig = FaultConfig()

    def to_json(self) -> dict[str, Any]:
        return {"latency_s": self.latency_s, "faults": self.faults.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServerOptions:
        return cls(data["latency_s"], FaultConfig.from_json(data["faults"]))


class _HttpCore:
    """Serves one app on one socket; owns latency, faults and the server counters."""

    def __init__(self, app: LoopbackApp, options: ServerOptions) -> None:
        self.app = app
        self.latency_s = options.latency_s
        self.plan = _FaultPlan(options.faults)
        self.counts: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.stopped = asyncio.Event()
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._connection, host, port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        closer = getattr(self.app, "aclose", None)
        if closer is not None:
            await closer()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.counts["connections"] += 1
        try:
            while True:
                request, keep_alive = await _read_request(reader)
                if request is None:
                    break
                outcome = await self._dispatch(request)
                if outcome is None:  # drop the connection without an answer
                    break
                writer.write(_encode_response(outcome, keep_alive))
                await writer.drain()
                if not keep_alive:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ValueError:  # malformed request line or headers
            with contextlib.suppress(ConnectionError):
                writer.write(_encode_response(json_response({"error": "bad request"}, 400), False))
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _dispatch(self, request: Request) -> Response | None:
        if request.path.startswith("/_loopback/"):
            return await self._control(request)
        self.counts["requests"] += 1
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        kind, status = self.plan.draw()
        if kind is not None:
            self.faults[kind] += 1
        if kind in ("rate_limit", "server_error", "hang", "reset"):
            return await self._fail(kind, status)
        try:
            response = await self.app.handle(request)
        except Exception as exc:  # a bug in the double must be visible, not a hang
            response = json_response({"error": f"loopback bug: {exc!r}"}, 500)
            self.counts["app_exceptions"] += 1
        if kind in _AFTER:
            return await self._fail(kind, status)
        self.by_status[response.status] += 1
        return response

    async def _fail(self, kind: str, status: int) -> Response | None:
        if kind == "rate_limit":
            self.by_status[429] += 1
            retry = str(self.plan.config.retry_after_s)
            return json_response({"errors": "Too Many Requests"}, 429, [("Retry-After", retry)])
        if kind.startswith("server_error"):
            self.by_status[status] += 1
            return json_response({"errors": "Internal Server Error"}, status)
        if kind.startswith("hang"):
            await asyncio.sleep(self.plan.config.hang_s)
        return None

    async def _control(self, request: Request) -> Response:
        if request.path == "/_loopback/stats":
            return json_response(self.stats())
        if request.path == "/_loopback/config" and request.method == "POST":
            data = request.json() or {}
            if "latency_s" in data:
                self.latency_s = float(data["latency_s"])
            if "faults" in data:
                self.plan = _FaultPlan(FaultConfig.from_json(data["faults"]))
            return json_response(
                {"latency_s": self.latency_s, "faults": self.plan.config.to_json()}
            )
        answer = await self.app.control(request)
        return answer if answer is not None else json_response({"error": "no such control"}, 404)

    def stats(self) -> dict[str, Any]:
        return {
            "server": {
                "requests": self.counts["requests"],
                "connections": self.counts["connections"],
                "app_exceptions": self.counts["app_exceptions"],
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "faults": dict(sorted(self.faults.items())),
                "faults_total": sum(self.faults.values()),
            },
            "app": self.app.stats(),
        }


async def _read_request(reader: asyncio.StreamReader) -> tuple[Request | None, bool]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None, False
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise ValueError(f"bad request line {lines[0]!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        length = int(headers.get("content-length", "0") or "0")
        body = await reader.readexactly(length) if length else b""
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    split = urlsplit(target)
    query = parse_qs(split.query, keep_blank_values=True)
    return Request(method, unquote(split.path), query, headers, body, target), keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


# --------------------------------------------------------------------------- running


def _make_app(factory: str, config: Mapping[str, Any]) -> LoopbackApp:
    module_name, _, attr = factory.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    app: LoopbackApp = cls.from_json(config)
    return app


class LoopbackServer:
    """Runs one loopback app on 127.0.0.1 on a free port, in a background thread
    (`in_process=True`) or in a child Python process (better for benchmarks: no shared
    GIL). Use as a context manager or call start()/stop(). Counters come from the
    `/_loopback/stats` endpoint, which is ours, not the platform's."""

    def __init__(
        self,
        factory: str,
        app_config: Mapping[str, Any],
        *,
        latency_s: float = 0.0,
        faults: FaultConfig | None = None,
        in_process: bool = True,
    ) -> None:
        self.factory = factory
        self.app_config = dict(app_config)
        self.options = ServerOptions(latency_s, faults or FaultConfig())
        self.in_process = in_process
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._core: _HttpCore | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        if not self.port:
            raise RuntimeError("the loopback server is not running; call start() first")
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, in_process: bool | None = None) -> None:
        if self.port:
            raise RuntimeError("already started")
        if in_process is not None:
            self.in_process = in_process
        if self.in_process:
            self._start_thread()
        else:
            self._start_process()

    def _start_thread(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                core = _HttpCore(_make_app(self.factory, self.app_config), self.options)
                self._core = core
                self.port = loop.run_until_complete(core.start())
                ready.set()
                loop.run_until_complete(core.stopped.wait())
                loop.run_until_complete(core.shutdown())
            except BaseException as exc:
                self._error = exc
            finally:
                ready.set()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="loopback-server", daemon=True)
        self._thread.start()
        ready.wait(30)
        if self._error is not None or not self.port:
            raise RuntimeError(f"loopback server failed to start: {self._error!r}")

    def _start_process(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        code = "from connectors.loopback.common import serve_child; serve_child()"
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=str(REPO_ROOT),
        )
        self._proc = proc
        assert proc.stdin is not None
        assert proc.stdout is not None
        spec = {"factory": self.factory, "config": self.app_config}
        spec["options"] = self.options.to_json()
        proc.stdin.write(json.dumps(spec).encode() + b"\n")
        proc.stdin.flush()
        line = proc.stdout.readline().decode().strip()
        proc.stdout.close()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"loopback child failed to start (said {line!r})")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        if self._thread is not None:
            loop, core = self._loop, self._core
            if loop is not None and core is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(core.stopped.set)
            self._thread.join(30)
            self._thread = None
        self.port = 0

    # ---- the internal control endpoint (plain http.client: no pools to leak)

    def _control(self, method: str, path: str, payload: Any = None) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            body = json.dumps(payload).encode() if payload is not None else None
            conn.request(method, path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{method} {path} answered {resp.status}: {data[:300]!r}")
            return json.loads(data)
        finally:
            conn.close()

    def stats(self) -> dict[str, Any]:
        """Server counters (requests, statuses, faults) and the app's (writes, keys)."""
        result: dict[str, Any] = self._control("GET", "/_loopback/stats")
        return result

    def configure(
        self, *, latency_s: float | None = None, faults: FaultConfig | None = None
    ) -> None:
        """Change latency or the fault plan while running (e.g. seed calmly, then chaos)."""
        payload: dict[str, Any] = {}
        if latency_s is not None:
            payload["latency_s"] = latency_s
        if faults is not None:
            payload["faults"] = faults.to_json()
        self._control("POST", "/_loopback/config", payload)


def serve_child() -> None:
    """Entry point of the child process: spec on the first stdin line, `PORT n` on
    stdout, serve until stdin closes (the parent stopped or died)."""
    spec = json.loads(sys.stdin.buffer.readline())
    app = _make_app(spec["factory"], spec["config"])
    core = _HttpCore(app, ServerOptions.from_json(spec["options"]))

    async def main() -> None:
        port = await core.start()
        sys.stdout.write(f"PORT {port}\n")
        sys.stdout.flush()
        await asyncio.to_thread(sys.stdin.buffer.read)
        await core.shutdown()

    asyncio.run(main())


# --------------------------------------------------------------------------- time


def parse_iso(text: str) -> datetime:
    """ISO 8601 date or date-time; naive values are UTC (both doubles run in UTC)."""
    value = text.strip().strip("'\"")
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_iso(moment: datetime, *, zulu: bool = True) -> str:
    text = moment.astimezone(UTC).replace(microsecond=0).isoformat()
    return text.replace("+00:00", "Z") if zulu else text.replace("+00:00", "")


# --------------------------------------------------------------------------- seed shop

_ADJECTIVES = ["Cotton", "Linen", "Wool", "Denim", "Silk", "Canvas", "Leather", "Bamboo"]
_NOUNS = ["Shirt", "Scarf", "Tote", "Cap", "Apron", "Sock", "Jacket", "Mug", "Poster", "Lamp"]
_OPTIONS = ["S", "M", "L", "XL", "Red", "Blue", "Green", "Black"]
_NAMES = ["Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea"]


@dataclasses.dataclass(frozen=True)
class SeedVariant:
    index: int  # 0-based across the shop
    sku: str
    option: str
    price_cents: int
    stock: tuple[int, ...]  # available per location


@dataclasses.dataclass(frozen=True)
class SeedProduct:
    index: int
    title: str
    handle: str
    status: str  # active | draft
    variants: tuple[SeedVariant, ...]


@dataclasses.dataclass(frozen=True)
class SeedOrder:
    index: int  # 0-based, ascending with created_at
    kind: str  # see ShopSeed order counts
    created_at: datetime
    email: str
    customer: str
    lines: tuple[tuple[int, int], ...]  # (variant index, quantity)
    location: int  # the location index the order is assigned to


@dataclasses.dataclass(frozen=True)
class ShopSeed:
    """The deterministic shop both doubles build from: same seed, same shop.

    Order kinds: paid_unfulfilled (the work queue), paid_fulfilled, pending (awaiting
    payment), refunded, cancelled. Created timestamps spread over `days` before `now`."""

    seed: int = 1
    products: int = 20
    variants_per_product: int = 3
    locations: int = 2
    paid_unfulfilled: int = 20
    paid_fulfilled: int = 5
    pending: int = 5
    refunded: int = 2
    cancelled: int = 2
    days: int = 30
    now: str = "2026-11-09T00:00:00Z"
    stock_min: int = 0
    stock_max: int = 200

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShopSeed:
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class SeedShop:
    products: tuple[SeedProduct, ...]
    variants: tuple[SeedVariant, ...]
    orders: tuple[SeedOrder, ...]
    location_names: tuple[str, ...]
    now: datetime


def build_seed(seed: ShopSeed) -> SeedShop:
    rng = random.Random(seed.seed)
    products: list[SeedProduct] = []
    variants: list[SeedVariant] = []
    for p in range(seed.products):
        title = f"{_ADJECTIVES[p % len(_ADJECTIVES)]} {_NOUNS[(p // 3) % len(_NOUNS)]} {p + 1}"
        own: list[SeedVariant] = []
        for v in range(seed.variants_per_product):
            stock = tuple(
                rng.randint(seed.stock_min, seed.stock_max) for _ in range(seed.locations)
            )
            variant = SeedVariant(
                index=len(variants),
                sku=f"SKU-{p + 1:05d}-{v + 1}",
                option=_OPTIONS[v % len(_OPTIONS)],
                price_cents=rng.randint(5, 120) * 100 - 1,
                stock=stock,
            )
            own.append(variant)
            variants.append(variant)
        status = "draft" if p % 10 == 9 else "active"
        handle = title.lower().replace(" ", "-")
        products.append(SeedProduct(p, title, handle, status, tuple(own)))
    now = parse_iso(seed.now)
    kinds = (
        ["paid_unfulfilled"] * seed.paid_unfulfilled
        + ["paid_fulfilled"] * seed.paid_fulfilled
        + ["pending"] * seed.pending
        + ["refunded"] * seed.refunded
        + ["cancelled"] * seed.cancelled
    )
    rng.shuffle(kinds)
    span = seed.days * 86400
    offsets = sorted(rng.randrange(1, span) for _ in kinds)
    orders: list[SeedOrder] = []
    for i, (kind, offset) in enumerate(zip(kinds, reversed(offsets), strict=True)):
        lines: dict[int, int] = {}
        for _ in range(rng.randint(1, 3)):
            if variants:
                pick = rng.randrange(len(variants))
                lines[pick] = lines.get(pick, 0) + rng.randint(1, 3)
        name = _NAMES[rng.randrange(len(_NAMES))]
        orders.append(
            SeedOrder(
                index=i,
                kind=kind,
                created_at=now - timedelta(seconds=offset),
                email=f"{name.lower()}{i}@example.com",
                customer=name,
                lines=tuple(sorted(lines.items())),
                location=rng.randrange(max(seed.locations, 1)),
            )
        )
    names = tuple(f"Warehouse {chr(ord('A') + i)}" for i in range(seed.locations))
    return SeedShop(tuple(products), tuple(variants), tuple(orders), names, now)


# --------------------------------------------------------------------------- webhooks


def hmac_sha256_base64(body: bytes, secret: str) -> str:
    """base64(HMAC-SHA256(raw body, secret)): the signature Shopify and WooCommerce send."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_hmac_sha256_base64(body: bytes, secret: str, signature: str) -> bool:
    """Constant-time check of a webhook signature over the exact raw bytes received."""
    return hmac.compare_digest(hmac_sha256_base64(body, secret), signature.strip())


async def post_webhooks(
    url: str, deliveries: Sequence[tuple[bytes, Mapping[str, str]]], timeout_s: float = 10.0
) -> list[int]:
    """POST signed deliveries one by one; returns each HTTP status (0 = no answer)."""
    import httpx  # only the webhook sender needs it

    statuses: list[int] = []
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        for body, headers in deliveries:
            try:
                resp = await client.post(url, content=body, headers=dict(headers))
                statuses.append(resp.status_code)
            except httpx.HTTPError:
                statuses.append(0)
    return statuses


def now_utc() -> datetime:
    return datetime.now(UTC)


def monotonic() -> float:
    return time.monotonic()
