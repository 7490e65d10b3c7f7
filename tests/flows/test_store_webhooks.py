"""Signed store webhooks reach the runner: a new order makes the order wave due.

The senders are the loopback Shopify and WooCommerce doubles (the platforms cannot run
here), which sign deliveries as the platforms document: base64(HMAC-SHA256(raw body)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import httpx
import pytest

from connectors.loopback import ShopifyConfig, ShopifyServer, WooCommerceConfig, WooCommerceServer
from storeops.settings import Settings
from storeops.wake import runner_url
from tests.conftest import ROOT, stop_process
from tests.flows.test_runner import _runner_env, _start_runner


def test_signed_order_webhooks_start_one_wave_and_forgeries_are_refused(
    prefect_api_url: str, tmp_path: Path
) -> None:
    woo_config, shop_config = WooCommerceConfig(), ShopifyConfig()
    env = {
        **_runner_env(prefect_api_url, tmp_path),
        "STOREOPS_SOPS": str(ROOT / "sops"),
        "STOREOPS_TEMPLATES": str(ROOT / "templates"),
        "STOREOPS_ROSTER": str(ROOT / "sops" / "team.yaml"),
        "STOREOPS_WOO_WEBHOOK_SECRET": woo_config.webhook_secret,
        "STOREOPS_SHOPIFY_WEBHOOK_SECRET": shop_config.api_secret,
    }
    runner = _start_runner(env, tmp_path, "runner.log")
    try:
        url = runner_url(tmp_path)
        assert url is not None
        with WooCommerceServer(woo_config) as woo, ShopifyServer(shop_config) as shop:
            assert [202, 202, 202] == woo.send_order_webhooks(f"{url}/webhooks/woocommerce", 3)
            assert [202, 202] == shop.send_order_webhooks(f"{url}/webhooks/shopify", 2)
        forged = httpx.post(
            f"{url}/webhooks/woocommerce",
            content=b'{"id": 1}',
            headers={"X-WC-Webhook-Topic": "order.created", "X-WC-Webhook-Signature": "AAAA"},
            timeout=30,
        )
        assert 401 == forged.status_code
        assert 404 == httpx.post(f"{url}/webhooks/magento", content=b"{}", timeout=30).status_code
        # the delivery id is not signed: the same signed body under new ids is a replay
        body = b'{"id": 4242, "status": "processing"}'
        signature = base64.b64encode(
            hmac.new(woo_config.webhook_secret.encode(), body, hashlib.sha256).digest()
        ).decode()
        answers = [
            httpx.post(
                f"{url}/webhooks/woocommerce",
                content=body,
                headers={
                    "X-WC-Webhook-Topic": "order.created",
                    "X-WC-Webhook-Signature": signature,
                    "X-WC-Webhook-Delivery-ID": delivery,
                },
                timeout=30,
            ).json()["action"]
            for delivery in ("replay-1", "replay-2")
        ]
        assert "duplicate delivery, ignored" == answers[1]
        assert "duplicate" not in answers[0]
    finally:
        stop_process(runner, tmp_path / "runner.log")
    settings = Settings(
        home=str(tmp_path), ledger=str(tmp_path / "ledger.db"), sops=str(ROOT / "sops")
    )
    engine = settings.engine()
    try:
        waves = engine.ledger.runs(sop_id="order-wave")
        assert 1 == len(waves)  # five deliveries, one wave: it was open for the others
        assert "store-webhook" == engine.ledger.events(waves[0].run_id)[0].data["actor"]
    finally:
        settings.close()


def test_a_secret_left_as_a_prefect_reference_never_checks_a_signature() -> None:
    """An unresolved `prefect-secret:NAME` is no secret (block names are not): refuse."""
    from connectors.webhooks_in import read_delivery

    reference = "prefect-secret:shopify-webhook"
    body = b"{}"
    signed = base64.b64encode(hmac.new(reference.encode(), body, hashlib.sha256).digest())
    headers = {"x-shopify-hmac-sha256": signed.decode(), "x-shopify-topic": "orders/create"}
    with pytest.raises(ValueError, match="not configured"):
        read_delivery("shopify", body, headers, {"STOREOPS_SHOPIFY_WEBHOOK_SECRET": reference})
