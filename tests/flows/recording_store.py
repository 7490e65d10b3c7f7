"""A store endpoint on 127.0.0.1 that records every write by idempotency key.

Used by the crash tests: it applies a write once per `Idempotency-Key` (a repeat gets the
first answer back, as Shopify's `@idempotent` and Stripe-style keys do), and can lose
answers on purpose: with `fault_rate` it either refuses before applying (503) or applies
and then drops the connection without answering — the case that makes exactly-once hard.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class RecordingStore:
    def __init__(self, *, fault_rate: float = 0.0, delay: float = 0.05, seed: int = 7) -> None:
        self.applied: dict[str, dict[str, Any]] = {}
        self.applications: Counter[str] = Counter()
        self.deliveries: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.in_flight = 0
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._fault_rate = fault_rate
        self._delay = delay
        store = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                store._handle(self, self.headers.get("Idempotency-Key"), json.loads(body))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a caller killed mid-request (the point of the crash tests)

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/writes"

    def __enter__(self) -> RecordingStore:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _draw(self) -> float:
        with self._lock:
            return self._random.random()

    def _handle(self, handler: BaseHTTPRequestHandler, key: str | None, body: Any) -> None:
        with self._lock:
            self.in_flight += 1
        try:
            self._write(handler, key, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _write(self, handler: BaseHTTPRequestHandler, key: str | None, body: Any) -> None:
        if not key:
            self._answer(handler, 400, {"error": "Idempotency-Key header required"})
            return
        with self._lock:
            self.deliveries[key] += 1
        draw = self._draw()
        if draw < self._fault_rate / 2:
            with self._lock:
                self.faults["refused"] += 1
            self._answer(handler, 503, {"error": "try again"}, retry_after="0")
            return
        time.sleep(self._delay * self._draw())
        with self._lock:
            first = key not in self.applied
            if first:
                self.applied[key] = {"write": body, "seq": len(self.applied) + 1}
                self.applications[key] += 1
            answer = self.applied[key]
        if draw < self._fault_rate:
            with self._lock:
                self.faults["answer lost"] += 1
            handler.close_connection = True
            handler.connection.close()  # applied, but the caller never hears of it
            return
        self._answer(handler, 201 if first else 200, answer)

    @staticmethod
    def _answer(
        handler: BaseHTTPRequestHandler, status: int, body: Any, retry_after: str | None = None
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            handler.send_header("Retry-After", retry_after)
        handler.end_headers()
        handler.wfile.write(data)
