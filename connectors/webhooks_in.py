"""Incoming store webhooks: Shopify and WooCommerce tell us about new orders.

Edge module. Both platforms sign a delivery as base64(HMAC-SHA256(raw body, secret)) —
Shopify in `X-Shopify-Hmac-Sha256` with the app's secret, WooCommerce in
`X-WC-Webhook-Signature` with the webhook's secret (STOREOPS_SHOPIFY_WEBHOOK_SECRET,
STOREOPS_WOO_WEBHOOK_SECRET). A delivery is checked on its exact bytes, in constant time,
before anything reads it; platforms retry deliveries, so each delivery id is acted on once.
What a new or paid order means is decided here: the order wave is due now (started unless
one is already open; the 15-minute schedule stays the safety net).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ORDER_TOPICS",
    "SECRET_VARIABLES",
    "Deduper",
    "Delivery",
    "read_delivery",
    "signature_ok",
]

#: Topics that make an order wave due.
ORDER_TOPICS = frozenset(
    {"orders/create", "orders/paid", "order.created", "order.updated", "order.restored"}
)

_PLATFORMS = {
    "shopify": ("x-shopify-hmac-sha256", "x-shopify-topic", "x-shopify-webhook-id",
                "STOREOPS_SHOPIFY_WEBHOOK_SECRET"),
    "woocommerce": ("x-wc-webhook-signature", "x-wc-webhook-topic", "x-wc-webhook-delivery-id",
                    "STOREOPS_WOO_WEBHOOK_SECRET"),
}  # fmt: skip
#: The environment variables holding the webhook secrets.
SECRET_VARIABLES = tuple(entry[3] for entry in _PLATFORMS.values())


@dataclass(frozen=True)
class Delivery:
    platform: str
    topic: str
    delivery_id: str


def signature_ok(body: bytes, signature: str, secret: str) -> bool:
    """Whether `signature` is base64(HMAC-SHA256(body, secret)); constant time."""
    if not signature or not secret:
        return False
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace"))


def read_delivery(
    platform: str, body: bytes, headers: Mapping[str, str], environ: Mapping[str, str]
) -> Delivery:
    """The checked delivery; ValueError (unknown platform, no secret configured) or
    PermissionError (bad signature) otherwise. `headers` keys are lower case."""
    if platform not in _PLATFORMS:
        raise ValueError(f"no webhooks for {platform!r}; known: {', '.join(_PLATFORMS)}")
    sign_header, topic_header, id_header, variable = _PLATFORMS[platform]
    secret = environ.get(variable, "")
    if not secret or secret.startswith("prefect-secret:"):  # an unresolved reference
        raise ValueError(f"{platform} webhooks are not configured: set {variable}")
    if not signature_ok(body, headers.get(sign_header, ""), secret):
        raise PermissionError(f"{platform} webhook signature does not match")
    delivery_id = headers.get(id_header) or hashlib.sha256(body).hexdigest()
    return Delivery(platform, headers.get(topic_header, ""), delivery_id)


class Deduper:
    """Remembers the last `size` delivery ids (platforms redeliver on timeouts)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, key: str) -> bool:
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True

    def forget(self, key: str) -> None:
        """A delivery that was not acted on after all (its redelivery must be)."""
        self._seen.pop(key, None)
