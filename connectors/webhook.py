"""`http.post`: POST JSON to a named, configured webhook (mitigations, supplier systems).

Edge module. SOPs name a webhook (`with: {webhook: mitigation, json: {...}}`), never a
URL: the URL and an optional signing secret come from the environment
(`STOREOPS_WEBHOOK_<NAME>`, `STOREOPS_WEBHOOK_<NAME>_SECRET`), so tokens in URLs stay out
of SOP files, logs and the ledger. Every request carries the action's idempotency key in
`Idempotency-Key` (the same key on every retry and after a crash) and, with a secret,
`X-Storeops-Signature: sha256=<hex HMAC of the body>` and `X-Storeops-Timestamp`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.http import error_for_response, error_for_transport, redact, url_secrets
from storeops.errors import OperationError

__all__ = ["Webhook", "WebhookClient", "sign"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    secret: str | None = None

    def __repr__(self) -> str:  # never show the URL's token or the secret
        return f"Webhook({self.name!r}, {redact(self.url)!r})"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256 over `timestamp.body` (what a receiver recomputes)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookClient:
    """Sends `http.post` actions; one pooled sync client (the engine drives in a thread)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        self._client: httpx.Client | None = None

    def webhook(self, name: str) -> Webhook:
        if not _NAME.match(name):
            raise OperationError(
                "Invalid", f"webhook name {name!r} must match {_NAME.pattern}", retryable=False
            )
        variable = f"STOREOPS_WEBHOOK_{name.upper()}"
        url = self._environ.get(variable)
        if not url:
            raise OperationError(
                "NotConfigured",
                f"no webhook {name!r}: set {variable} to its URL "
                f"(and {variable}_SECRET to sign requests)",
            )
        return Webhook(name, url, self._environ.get(f"{variable}_SECRET") or None)

    def post(
        self, inputs: Mapping[str, Any], *, idempotency_key: str, timeout: float
    ) -> dict[str, Any]:
        hook = self.webhook(str(inputs.get("webhook", "")))
        body = json.dumps(inputs.get("json", {}), ensure_ascii=False, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
        if hook.secret:
            stamp = str(int(time.time()))
            headers["X-Storeops-Timestamp"] = stamp
            headers["X-Storeops-Signature"] = sign(hook.secret, stamp, body)
        what = f"webhook {hook.name}"
        if self._client is None:
            self._client = httpx.Client(follow_redirects=False)
        try:
            answer = self._client.post(hook.url, content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            raise error_for_transport(what, exc) from None
        text = redact(answer.text, [hook.secret or "", *url_secrets(hook.url)])
        if answer.status_code >= 300:
            raise error_for_response(what, answer.status_code, answer.headers, text)
        try:
            payload: Any = answer.json() if answer.content else None
        except ValueError:
            payload = text[:2000]
        return {"status": answer.status_code, "body": payload}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
