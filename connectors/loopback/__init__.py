"""Loopback doubles of Shopify (Admin GraphQL) and WooCommerce (REST v3) for tests and
benchmarks: in-memory seeded shops, documented platform behaviour, latency, seeded
faults before and after writes, and exactly-once counters.

Test-and-benchmark edge: standard library and httpx only; storeops never imports this.
"""

from connectors.loopback.common import (
    FAULT_KINDS,
    FaultConfig,
    LoopbackServer,
    ShopSeed,
    hmac_sha256_base64,
    verify_hmac_sha256_base64,
)
from connectors.loopback.shopify import ShopifyConfig, ShopifyServer, shopify_webhook
from connectors.loopback.woocommerce import (
    WooCommerceConfig,
    WooCommerceServer,
    woocommerce_webhook,
)

__all__ = [
    "FAULT_KINDS",
    "FaultConfig",
    "LoopbackServer",
    "ShopSeed",
    "ShopifyConfig",
    "ShopifyServer",
    "WooCommerceConfig",
    "WooCommerceServer",
    "hmac_sha256_base64",
    "shopify_webhook",
    "verify_hmac_sha256_base64",
    "woocommerce_webhook",
]
