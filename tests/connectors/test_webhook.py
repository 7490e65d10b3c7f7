"""`http.post` through a named webhook, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connectors.executor import ConnectorExecutor
from connectors.http import redact, retry_after_seconds
from connectors.webhook import WebhookClient
from storeops.errors import OperationError

SECRET = "whsec-test-0123456789"


class Receiver:
    """Answers with the status queued in `answers` (default 200) and keeps what it got."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"headers": dict(self.headers), "body": body})
                status, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                data = json.dumps({"ok": status < 300, "token": "tok-SECRET-VALUE"}).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=tok-SECRET-VALUE"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


def client(receiver: Receiver) -> WebhookClient:
    return WebhookClient(
        {"STOREOPS_WEBHOOK_MITIGATION": receiver.url, "STOREOPS_WEBHOOK_MITIGATION_SECRET": SECRET}
    )


def test_posts_signed_json_with_the_idempotency_key(receiver: Receiver) -> None:
    hooks = client(receiver)
    result = hooks.post(
        {"webhook": "mitigation", "json": {"action": "pause_promotion", "备注": "流量高峰"}},
        idempotency_key="run-1/mitigate/1",
        timeout=5,
    )
    hooks.close()
    assert 200 == result["status"]
    got = receiver.received[0]
    headers = {k.lower(): v for k, v in got["headers"].items()}
    assert "run-1/mitigate/1" == headers["idempotency-key"]
    assert {"action": "pause_promotion", "备注": "流量高峰"} == json.loads(got["body"])
    stamp = headers["x-storeops-timestamp"]
    expected = hmac.new(SECRET.encode(), stamp.encode() + b"." + got["body"], hashlib.sha256)
    assert "sha256=" + expected.hexdigest() == headers["x-storeops-signature"]


def test_errors_say_whether_a_retry_may_help(receiver: Receiver) -> None:
    hooks = client(receiver)
    receiver.answers += [(429, {"Retry-After": "3"}), (503, {}), (400, {})]
    with pytest.raises(OperationError) as limited:
        hooks.post({"webhook": "mitigation"}, idempotency_key="k", timeout=5)
    assert ("RateLimited", True, 3.0) == (
        limited.value.error,
        limited.value.retryable,
        limited.value.retry_after,
    )
    with pytest.raises(OperationError) as down:
        hooks.post({"webhook": "mitigation"}, idempotency_key="k", timeout=5)
    assert ("Unavailable", True) == (down.value.error, down.value.retryable)
    with pytest.raises(OperationError) as bad:
        hooks.post({"webhook": "mitigation"}, idempotency_key="k", timeout=5)
    assert ("Invalid", False) == (bad.value.error, bad.value.retryable)
    assert "tok-SECRET-VALUE" not in str(bad.value)  # the answer echoed a secret: redacted
    hooks.close()


def test_unreachable_and_unconfigured_webhooks() -> None:
    hooks = WebhookClient({"STOREOPS_WEBHOOK_GONE": "http://127.0.0.1:9/x?key=abcdef"})
    with pytest.raises(OperationError) as gone:
        hooks.post({"webhook": "gone"}, idempotency_key="k", timeout=2)
    assert gone.value.retryable
    assert "abcdef" not in str(gone.value)
    with pytest.raises(OperationError) as missing:
        hooks.post({"webhook": "supplier"}, idempotency_key="k", timeout=2)
    assert "NotConfigured" == missing.value.error
    assert "STOREOPS_WEBHOOK_SUPPLIER" in str(missing.value)
    assert "abcdef" not in repr(hooks.webhook("gone"))
    hooks.close()


def test_the_executor_routes_http_post_and_keeps_builtins(tmp_path: Path) -> None:
    executor = ConnectorExecutor({"STOREOPS_STORE": "magento:x"}, home=tmp_path)
    assert {"a": 1} == executor.run("builtin.echo", {"a": 1}, idempotency_key="k", timeout=1)
    with pytest.raises(OperationError) as caught:
        executor.run("store.get_order", {"order_id": "1"}, idempotency_key="k", timeout=1)
    assert "NotConfigured" == caught.value.error
    assert "STOREOPS_STORE" in str(caught.value)
    executor.close()


def test_helpers() -> None:
    assert 120.0 == retry_after_seconds("120")
    assert 0.0 == retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT")  # in the past
    assert retry_after_seconds("soon") is None
    assert "https://***@h/x?access_token=***&a=1" == redact("https://u:p@h/x?access_token=zzz&a=1")


def test_the_shop_client_never_resends_a_write_that_is_not_safe_to_repeat(
    receiver: Receiver,
) -> None:
    """A 5xx with Retry-After may have been applied: only repeatable requests go again
    (a 429 was refused before anything happened, so it always may)."""
    import asyncio

    from connectors.client import ClientOptions, ShopClient

    base = receiver.url.split("/hook")[0]

    async def send(repeatable: bool, status: int) -> int:
        receiver.answers += [(status, {"Retry-After": "0"}), (200, {})]
        before = len(receiver.received)
        client = ShopClient(base, name="shop", options=ClientOptions(attempts=3, backoff=0.01))
        try:
            await client.request("POST", "/hook", what="write", json={}, repeatable=repeatable)
        except OperationError:
            pass
        finally:
            await client.aclose()
        receiver.answers.clear()
        return len(receiver.received) - before

    assert 1 == asyncio.run(send(False, 504))  # not safe to repeat: sent once
    assert 2 == asyncio.run(send(True, 504))  # safe: sent again after Retry-After
    assert 2 == asyncio.run(send(False, 429))  # refused outright: always sent again
