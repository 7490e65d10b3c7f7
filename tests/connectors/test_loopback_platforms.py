"""The Shopify and WooCommerce loopback doubles, driven with httpx over real sockets:
auth, pagination, throttling, idempotency, faults, exactly-once counters, webhooks."""

from __future__ import annotations

import base64
import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest

from connectors.loopback import (
    FaultConfig,
    ShopifyConfig,
    ShopifyServer,
    ShopSeed,
    WooCommerceConfig,
    WooCommerceServer,
    shopify_webhook,
    verify_hmac_sha256_base64,
    woocommerce_webhook,
)

SMALL = ShopSeed(seed=3, products=12, variants_per_product=2, paid_unfulfilled=23)


@pytest.fixture
def shopify() -> Iterator[ShopifyServer]:
    with ShopifyServer(ShopifyConfig(seed=SMALL)) as server:
        yield server


@pytest.fixture
def woo() -> Iterator[WooCommerceServer]:
    with WooCommerceServer(WooCommerceConfig(seed=SMALL)) as server:
        yield server


def gql(
    client: httpx.Client,
    server: ShopifyServer,
    query: str,
    variables: dict[str, Any] | None = None,
    version: str | None = None,
) -> dict[str, Any]:
    resp = client.post(
        server.graphql_url(version),
        headers=server.headers,
        json={"query": query, "variables": variables or {}},
    )
    assert 200 == resp.status_code, resp.text
    body: dict[str, Any] = resp.json()
    return body


UNSHIPPED = """query Unshipped($after: String, $q: String) {
  orders(first: 5, after: $after, query: $q, sortKey: CREATED_AT) {
    nodes { id name createdAt fulfillmentOrders(first: 3) { nodes { id status } } }
    pageInfo { hasNextPage endCursor }
  }
}"""

FULFIL = """mutation Fulfil($fo: ID!, $key: String!) {
  fulfillmentCreate(fulfillment: {lineItemsByFulfillmentOrder: [{fulfillmentOrderId: $fo}],
                                  trackingInfo: {company: "DHL", number: "JD0001"}})
      @idempotent(key: $key) {
    fulfillment { id status }
    userErrors { field message code }
  }
}"""

ADJUST = """mutation Adjust($item: ID!, $loc: ID!, $delta: Int!, $key: String!) {
  inventoryAdjustQuantities(input: {reason: "restock", name: "available",
      changes: [{delta: $delta, inventoryItemId: $item, locationId: $loc}]})
      @idempotent(key: $key) {
    inventoryAdjustmentGroup { id changes { name delta quantityAfterChange } }
    userErrors { field message code }
  }
}"""

LEVEL = """query Level($item: ID!) {
  inventoryItem(id: $item) {
    sku
    inventoryLevels(first: 5) {
      nodes { location { id } quantities(names: ["available", "on_hand"]) { name quantity } }
    }
  }
}"""


def first_item_and_location(client: httpx.Client, server: ShopifyServer) -> tuple[str, str, int]:
    data = gql(
        client,
        server,
        "{ products(first: 1) { nodes { variants(first: 1) {"
        " nodes { inventoryItem { id } } } } } }",
    )["data"]
    item = data["products"]["nodes"][0]["variants"]["nodes"][0]["inventoryItem"]["id"]
    level = gql(client, server, LEVEL, {"item": item})["data"]["inventoryItem"]
    node = level["inventoryLevels"]["nodes"][0]
    available = next(q["quantity"] for q in node["quantities"] if q["name"] == "available")
    return item, node["location"]["id"], available


# --------------------------------------------------------------------------- auth, versions


def test_shopify_refuses_missing_or_wrong_token(shopify: ShopifyServer) -> None:
    with httpx.Client() as client:
        for headers in ({}, {"X-Shopify-Access-Token": "shpat_wrong"}):
            resp = client.post(
                shopify.graphql_url(), headers=headers, json={"query": "{shop{name}}"}
            )
            assert 401 == resp.status_code
            assert "Invalid API key or access token" in resp.json()["errors"]


def test_shopify_versions_fall_forward_or_404(shopify: ShopifyServer) -> None:
    with httpx.Client() as client:
        body = {"query": "{ shop { name } }"}
        resp = client.post(shopify.graphql_url("2026-07"), headers=shopify.headers, json=body)
        assert "2026-07" == resp.headers["x-shopify-api-version"]
        old = client.post(shopify.graphql_url("2024-01"), headers=shopify.headers, json=body)
        assert 200 == old.status_code
        assert "2026-01" == old.headers["x-shopify-api-version"]
        for bad in ("2026-05", "latest"):
            resp = client.post(shopify.graphql_url(bad), headers=shopify.headers, json=body)
            assert 404 == resp.status_code


def test_woocommerce_refuses_with_its_error_shape(woo: WooCommerceServer) -> None:
    with httpx.Client() as client:
        anonymous = client.get(f"{woo.api_url}/orders")
        assert 401 == anonymous.status_code
        assert {
            "code": "woocommerce_rest_cannot_view",
            "message": "Sorry, you cannot list resources.",
            "data": {"status": 401},
        } == anonymous.json()
        wrong = client.get(f"{woo.api_url}/orders", auth=(woo.auth[0], "cs_wrong"))
        assert "woocommerce_rest_authentication_error" == wrong.json()["code"]
        assert "Consumer secret is invalid." == wrong.json()["message"]
        by_query = client.get(
            f"{woo.api_url}/orders",
            params={"consumer_key": woo.auth[0], "consumer_secret": woo.auth[1]},
        )
        assert 200 == by_query.status_code


# --------------------------------------------------------------------------- pagination


def test_shopify_order_pagination_is_complete_while_orders_are_fulfilled(
    shopify: ShopifyServer,
) -> None:
    """Keyset cursors: fulfilling the orders already read does not skip the next ones."""
    seen: list[str] = []
    with httpx.Client() as client:
        after = None
        while True:
            variables = {"after": after, "q": "financial_status:paid fulfillment_status:unshipped"}
            page = gql(client, shopify, UNSHIPPED, variables)["data"]["orders"]
            for order in page["nodes"]:
                seen.append(order["id"])
                fo = order["fulfillmentOrders"]["nodes"][0]["id"]
                result = gql(client, shopify, FULFIL, {"fo": fo, "key": str(uuid.uuid4())})
                assert [] == result["data"]["fulfillmentCreate"]["userErrors"]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        left = gql(
            client, shopify, UNSHIPPED, {"q": "financial_status:paid fulfillment_status:unshipped"}
        )
    assert SMALL.paid_unfulfilled == len(seen) == len(set(seen))
    assert [] == left["data"]["orders"]["nodes"]
    stats = shopify.stats()["app"]
    assert SMALL.paid_unfulfilled == stats["fulfilments_applied"]
    assert [] == stats["orders_fulfilled_more_than_once"]


def test_shopify_products_pages_and_search(shopify: ShopifyServer) -> None:
    query = """query P($after: String) { products(first: 5, after: $after) {
        edges { cursor node { id handle status } } pageInfo { hasNextPage endCursor } } }"""
    ids: list[str] = []
    with httpx.Client() as client:
        after = None
        while True:
            page = gql(client, shopify, query, {"after": after})["data"]["products"]
            ids.extend(edge["node"]["id"] for edge in page["edges"])
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        drafts = gql(
            client, shopify, '{ products(first: 50, query: "status:draft") { nodes { status } } }'
        )
        since = gql(client, shopify, UNSHIPPED, {"q": "created_at:>2026-11-01 bogus:1"})
    assert SMALL.products == len(ids) == len(set(ids))
    assert {"DRAFT"} == {n["status"] for n in drafts["data"]["products"]["nodes"]}
    assert all(n["createdAt"] > "2026-11-01" for n in since["data"]["orders"]["nodes"])
    assert "bogus" == since["extensions"]["search"][0]["warnings"][0]["field"]


def test_woocommerce_orders_paginate_with_totals_and_links(woo: WooCommerceServer) -> None:
    ids: list[int] = []
    with httpx.Client(auth=woo.auth) as client:
        url: str | None = f"{woo.api_url}/orders?status=processing&per_page=7&order=asc"
        pages = 0
        while url:
            resp = client.get(url)
            assert str(SMALL.paid_unfulfilled) == resp.headers["x-wp-total"]
            assert "4" == resp.headers["x-wp-totalpages"]
            ids.extend(o["id"] for o in resp.json())
            url = resp.links.get("next", {}).get("url")
            pages += 1
        too_big = client.get(f"{woo.api_url}/orders", params={"per_page": 101})
        past_end = client.get(f"{woo.api_url}/orders", params={"per_page": 50, "page": 9})
    assert 4 == pages
    assert SMALL.paid_unfulfilled == len(ids) == len(set(ids))
    assert sorted(ids) == ids
    assert 400 == too_big.status_code
    assert "rest_invalid_param" == too_big.json()["code"]
    assert [] == past_end.json()


# --------------------------------------------------------------------------- throttling


def test_shopify_throttles_when_the_bucket_is_empty_and_restores(shopify: ShopifyServer) -> None:
    config = ShopifyConfig(seed=ShopSeed(products=60), maximum_available=100, restore_rate=50)
    query = "{ products(first: 40) { nodes { id } } }"  # 2 + 40 x 1 = 42 points
    with ShopifyServer(config) as server, httpx.Client() as client:
        first = gql(client, server, query)
        second = gql(client, server, query)
        throttled = gql(client, server, query)
        assert 42 == first["extensions"]["cost"]["requestedQueryCost"]
        assert 42 == first["extensions"]["cost"]["actualQueryCost"]
        assert second["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] < 42
        assert "data" not in throttled
        assert "THROTTLED" == throttled["errors"][0]["extensions"]["code"]
        cost = throttled["extensions"]["cost"]
        assert cost["actualQueryCost"] is None
        assert {"maximumAvailable": 100.0, "restoreRate": 50.0} == {
            k: cost["throttleStatus"][k] for k in ("maximumAvailable", "restoreRate")
        }
        before = cost["throttleStatus"]["currentlyAvailable"]
        time.sleep(0.6)
        cheap = gql(client, server, "{ shop { name } }")  # 1 point
        after = cheap["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]
        assert 25 <= after - before + 1 <= 45  # ~0.6 s x 50 points/s
        assert "data" in gql(client, server, query)
        assert 1 == server.stats()["app"]["throttled"]


def test_shopify_refuses_queries_above_the_single_query_limit(shopify: ShopifyServer) -> None:
    query = "{ products(first: 250) { nodes { variants(first: 5) { nodes { id } } } } }"
    with httpx.Client() as client:
        body = gql(client, shopify, query)
    assert "MAX_COST_EXCEEDED" == body["errors"][0]["extensions"]["code"]


# --------------------------------------------------------------------------- idempotency


def test_inventory_adjustment_with_the_same_key_applies_once(shopify: ShopifyServer) -> None:
    with httpx.Client() as client:
        item, loc, available = first_item_and_location(client, shopify)
        key = str(uuid.uuid4())
        variables = {"item": item, "loc": loc, "delta": 5, "key": key}
        one = gql(client, shopify, ADJUST, variables)["data"]["inventoryAdjustQuantities"]
        two = gql(client, shopify, ADJUST, variables)["data"]["inventoryAdjustQuantities"]
        other = gql(client, shopify, ADJUST, {**variables, "delta": 6})
        _, _, now = first_item_and_location(client, shopify)
    assert one == two
    assert available + 5 == now
    assert [5] == [c["delta"] for c in one["inventoryAdjustmentGroup"]["changes"]]
    mismatch = other["data"]["inventoryAdjustQuantities"]["userErrors"][0]["code"]
    assert "IDEMPOTENCY_KEY_PARAMETER_MISMATCH" == mismatch
    stats = shopify.stats()["app"]
    assert {"inventoryAdjustQuantities": 1} == stats["writes"]
    assert 2 == stats["duplicates_suppressed"]["idempotent_replay"]


def test_inventory_adjustment_requires_the_directive_from_2026_04(shopify: ShopifyServer) -> None:
    unkeyed = ADJUST.replace("@idempotent(key: $key)", "").replace(", $key: String!", "")
    with httpx.Client() as client:
        item, loc, available = first_item_and_location(client, shopify)
        variables = {"item": item, "loc": loc, "delta": 1}
        refused = gql(client, shopify, unkeyed, variables, version="2026-04")
        allowed = gql(client, shopify, unkeyed, variables, version="2026-01")
        _, _, now = first_item_and_location(client, shopify)
    assert "BAD_REQUEST" == refused["errors"][0]["extensions"]["code"]
    assert "@idempotent directive is required" in refused["errors"][0]["message"]
    assert [] == allowed["data"]["inventoryAdjustQuantities"]["userErrors"]
    assert available + 1 == now


def test_inventory_set_is_compare_and_set(shopify: ShopifyServer) -> None:
    mutation = """mutation S($item: ID!, $loc: ID!, $q: Int!, $was: Int) {
      inventorySetQuantities(input: {name: "available", reason: "correction",
          quantities: [{inventoryItemId: $item, locationId: $loc, quantity: $q,
                        changeFromQuantity: $was}]}) {
        inventoryAdjustmentGroup { changes { delta quantityAfterChange } }
        userErrors { code }
      }
    }"""
    with httpx.Client() as client:
        item, loc, available = first_item_and_location(client, shopify)
        stale = gql(
            client, shopify, mutation, {"item": item, "loc": loc, "q": 7, "was": available + 1}
        )
        fresh = gql(client, shopify, mutation, {"item": item, "loc": loc, "q": 7, "was": available})
        _, _, now = first_item_and_location(client, shopify)
    assert (
        "COMPARE_QUANTITY_STALE" == stale["data"]["inventorySetQuantities"]["userErrors"][0]["code"]
    )
    changes = fresh["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"]["changes"]
    assert [{"delta": 7 - available, "quantityAfterChange": 7}] == changes
    assert 7 == now


def test_woocommerce_idempotency_key_extension(woo: WooCommerceServer) -> None:
    with httpx.Client(auth=woo.auth) as client:
        order = client.get(f"{woo.api_url}/orders", params={"status": "processing"}).json()[0]
        url = f"{woo.api_url}/orders/{order['id']}/notes"
        headers = {"Idempotency-Key": "note-1"}
        first = client.post(url, json={"note": "packed"}, headers=headers)
        again = client.post(url, json={"note": "packed"}, headers=headers)
        other = client.post(url, json={"note": "shipped"}, headers=headers)
        unkeyed = [client.post(url, json={"note": "twice"}) for _ in range(2)]
    assert 201 == first.status_code == again.status_code
    assert first.json() == again.json()
    assert "true" == again.headers["idempotent-replayed"]
    assert 422 == other.status_code
    assert [201, 201] == [r.status_code for r in unkeyed]
    assert 3 == woo.stats()["app"]["notes_added"]


# --------------------------------------------------------------------------- faults


def classify(client: httpx.Client, url: str) -> str:
    try:
        return str(client.get(url).status_code)
    except httpx.TransportError as exc:
        return type(exc).__name__


def test_faults_appear_at_the_configured_rate_and_repeat_with_the_seed() -> None:
    faults = FaultConfig(
        rate=0.3, seed=11, weights={"rate_limit": 1, "server_error": 1, "reset": 1}
    )
    runs = []
    for _ in range(2):
        with WooCommerceServer(WooCommerceConfig(seed=SMALL), faults=faults) as server:
            url = f"{server.api_url}/products?per_page=1"
            with httpx.Client(auth=server.auth, timeout=5) as client:
                runs.append([classify(client, url) for _ in range(300)])
            stats = server.stats()["server"]
        failed = sum(1 for outcome in runs[-1] if outcome != "200")
        assert 0.22 <= failed / 300 <= 0.38
        assert failed == stats["faults_total"]
        assert set(stats["faults"]) == {"rate_limit", "server_error", "reset"}
    assert runs[0] == runs[1]
    assert {"200", "429"} <= set(runs[0])


def test_rate_limit_fault_carries_retry_after() -> None:
    faults = FaultConfig(rate=1.0, weights={"rate_limit": 1}, retry_after_s=2)
    with (
        ShopifyServer(ShopifyConfig(seed=SMALL), faults=faults) as server,
        httpx.Client() as client,
    ):
        resp = client.post(
            server.graphql_url(), headers=server.headers, json={"query": "{shop{name}}"}
        )
    assert 429 == resp.status_code
    assert "2" == resp.headers["retry-after"]


def call_until_answered(send: Any, attempts: int = 60) -> httpx.Response:
    for _ in range(attempts):
        try:
            resp: httpx.Response = send()
        except httpx.TransportError:
            continue
        if resp.status_code < 429 or resp.status_code == 422:
            return resp
    raise AssertionError("no answer after many retries")


def test_shopify_chaos_fulfils_each_order_exactly_once() -> None:
    faults = FaultConfig(rate=0.3, seed=5, hang_s=0.5)  # every kind, before and after
    with ShopifyServer(ShopifyConfig(seed=SMALL), faults=faults) as server:
        with httpx.Client(timeout=0.25) as client:
            server.configure(faults=FaultConfig())
            page = gql(
                client,
                server,
                UNSHIPPED.replace("first: 5", "first: 50"),
                {"q": "fulfillment_status:unshipped financial_status:paid"},
            )
            fos = [
                o["fulfillmentOrders"]["nodes"][0]["id"] for o in page["data"]["orders"]["nodes"]
            ]
            server.configure(faults=faults)
            for fo in fos:
                key = str(uuid.uuid4())
                body = {"query": FULFIL, "variables": {"fo": fo, "key": key}}
                resp = call_until_answered(
                    lambda body=body: client.post(
                        server.graphql_url(), headers=server.headers, json=body
                    )
                )
                assert [] == resp.json()["data"]["fulfillmentCreate"]["userErrors"]
        stats = server.stats()
    app = stats["app"]
    assert (
        len(fos) == SMALL.paid_unfulfilled == app["fulfilments_applied"] == app["orders_fulfilled"]
    )
    assert [] == app["orders_fulfilled_more_than_once"]
    after_faults = sum(
        stats["server"]["faults"].get(k, 0)
        for k in ("reset_after", "hang_after", "server_error_after")
    )
    assert after_faults > 0
    assert app["duplicates_suppressed"].get("idempotent_replay", 0) >= 1


def test_woocommerce_chaos_completes_each_order_exactly_once() -> None:
    faults = FaultConfig(rate=0.3, seed=9, hang_s=0.5)
    with WooCommerceServer(WooCommerceConfig(seed=SMALL), faults=faults) as server:
        with httpx.Client(auth=server.auth, timeout=0.25) as client:
            server.configure(faults=FaultConfig())
            orders = client.get(
                f"{server.api_url}/orders", params={"status": "processing", "per_page": 100}
            ).json()
            server.configure(faults=faults)
            for order in orders:
                headers = {"Idempotency-Key": f"complete-{order['id']}"}
                url = f"{server.api_url}/orders/{order['id']}"
                resp = call_until_answered(
                    lambda url=url, headers=headers: client.put(
                        url, json={"status": "completed"}, headers=headers
                    )
                )
                assert "completed" == resp.json()["status"]
        stats = server.stats(detail=True)
    app = stats["app"]
    assert SMALL.paid_unfulfilled == len(orders) == app["fulfilments_applied"]
    assert set(app["fulfilments_by_order"].values()) == {1}
    assert stats["server"]["faults_total"] > 0


# --------------------------------------------------------------------------- webhooks


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    handler = type("Handler", (_Receiver,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_shopify_webhooks_are_signed_as_documented(
    shopify: ShopifyServer, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    assert [200, 200] == shopify.send_order_webhooks(url, count=2)
    for headers, body in received:
        assert verify_hmac_sha256_base64(
            body, shopify.config.api_secret, headers["x-shopify-hmac-sha256"]
        )
        assert "orders/create" == headers["x-shopify-topic"]
        assert shopify.config.shop_domain == headers["x-shopify-shop-domain"]
        assert headers["x-shopify-api-version"]
    body, headers = shopify_webhook(
        "orders/create", {"id": 1}, "secret", "s.myshopify.com", "2026-10"
    )
    assert not verify_hmac_sha256_base64(body + b" ", "secret", headers["X-Shopify-Hmac-Sha256"])
    assert 2 + SMALL.paid_unfulfilled + 14 == shopify.stats()["app"]["orders"]


def test_woocommerce_webhooks_are_signed_as_documented(
    woo: WooCommerceServer, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    assert [200] == woo.send_order_webhooks(url)
    headers, body = received[0]
    assert verify_hmac_sha256_base64(
        body, woo.config.webhook_secret, headers["x-wc-webhook-signature"]
    )
    assert ("order.created", "order", "created") == (
        headers["x-wc-webhook-topic"],
        headers["x-wc-webhook-resource"],
        headers["x-wc-webhook-event"],
    )
    body, signed = woocommerce_webhook("order.updated", {"id": 1}, "s", "https://x/")
    digest = base64.b64decode(signed["X-WC-Webhook-Signature"])
    assert 32 == len(digest)


# --------------------------------------------------------------------------- the shops


def test_shopify_catalogue_writes(shopify: ShopifyServer) -> None:
    upsert = """mutation U($input: ProductSetInput!) {
      productSet(input: $input, synchronous: true) {
        product { id handle status variants(first: 5) { nodes { id sku price } } }
        userErrors { message } } }"""
    product = {
        "title": "Loopback Mug",
        "handle": "loopback-mug",
        "status": "DRAFT",
        "variants": [{"sku": "MUG-1", "price": "9.50"}, {"sku": "MUG-2", "price": "11.00"}],
    }
    with httpx.Client() as client:
        made = gql(client, shopify, upsert, {"input": product})["data"]["productSet"]["product"]
        again = gql(
            client, shopify, upsert, {"input": {**product, "variants": product["variants"][:1]}}
        )
        pid = made["id"]
        variant = made["variants"]["nodes"][0]["id"]
        price = gql(
            client,
            shopify,
            """mutation P($p: ID!, $v: ID!) {
            productVariantsBulkUpdate(productId: $p, variants: [{id: $v, price: "12.25"}]) {
              productVariants { price } userErrors { message } } }""",
            {"p": pid, "v": variant},
        )
        status = gql(
            client,
            shopify,
            """mutation S($p: ID!) {
            productUpdate(product: {id: $p, status: ACTIVE}) { product { status } } }""",
            {"p": pid},
        )
        wrong = gql(client, shopify, "{ shop { nope } }")
    assert "DRAFT" == made["status"]
    assert ["MUG-1", "MUG-2"] == [v["sku"] for v in made["variants"]["nodes"]]
    kept = again["data"]["productSet"]["product"]
    assert pid == kept["id"]
    assert ["MUG-1"] == [v["sku"] for v in kept["variants"]["nodes"]]
    assert [{"price": "12.25"}] == price["data"]["productVariantsBulkUpdate"]["productVariants"]
    assert "ACTIVE" == status["data"]["productUpdate"]["product"]["status"]
    assert "undefinedField" == wrong["errors"][0]["extensions"]["code"]


def test_shopify_order_notes_hold_and_cancel(shopify: ShopifyServer) -> None:
    with httpx.Client() as client:
        orders = gql(
            client, shopify, UNSHIPPED, {"q": "financial_status:paid fulfillment_status:unshipped"}
        )
        first, second = orders["data"]["orders"]["nodes"][:2]
        note = gql(
            client,
            shopify,
            """mutation N($id: ID!) { orderUpdate(input: {id: $id,
            note: "gift wrap", tags: ["vip"]}) { order { note tags } userErrors { message } } }""",
            {"id": first["id"]},
        )
        hold = gql(
            client,
            shopify,
            """mutation H($id: ID!) { fulfillmentOrderHold(id: $id,
            fulfillmentHold: {reason: AWAITING_PAYMENT, reasonNotes: "check"}) {
            fulfillmentOrder { status } userErrors { message } } }""",
            {"id": first["fulfillmentOrders"]["nodes"][0]["id"]},
        )
        held_fulfil = gql(
            client,
            shopify,
            FULFIL,
            {"fo": first["fulfillmentOrders"]["nodes"][0]["id"], "key": "h1"},
        )
        cancel_q = """mutation C($id: ID!) {
            orderCancel(orderId: $id, reason: CUSTOMER, refund: true,
            restock: true) { job { done } orderCancelUserErrors { code message } } }"""
        cancel = gql(client, shopify, cancel_q, {"id": second["id"]})
        twice = gql(client, shopify, cancel_q, {"id": second["id"]})
        cancelled = gql(
            client, shopify, '{ orders(first: 50, query: "status:cancelled") { nodes { id } } }'
        )
    assert {"note": "gift wrap", "tags": ["vip"]} == note["data"]["orderUpdate"]["order"]
    assert "ON_HOLD" == hold["data"]["fulfillmentOrderHold"]["fulfillmentOrder"]["status"]
    assert (
        "unfulfillable status= on_hold"
        in held_fulfil["data"]["fulfillmentCreate"]["userErrors"][0]["message"]
    )
    assert cancel["data"]["orderCancel"]["job"]["done"]
    assert twice["data"]["orderCancel"]["orderCancelUserErrors"]
    assert second["id"] in {o["id"] for o in cancelled["data"]["orders"]["nodes"]}


RELEASE = """mutation R($id: ID!, $holds: [ID!]) {
  fulfillmentOrderReleaseHold(id: $id, holdIds: $holds) {
    fulfillmentOrder { id status fulfillmentHolds { id } } userErrors { field message code } } }"""


def test_shopify_release_hold_follows_the_documented_rules(shopify: ShopifyServer) -> None:
    hold_q = """mutation H($id: ID!, $note: String) { fulfillmentOrderHold(id: $id,
        fulfillmentHold: {reason: OTHER, reasonNotes: $note}) {
        fulfillmentHold { id } fulfillmentOrder { status } userErrors { message } } }"""

    def release(client: httpx.Client, fo: str, holds: list[str] | None) -> dict[str, Any]:
        answer = gql(client, shopify, RELEASE, {"id": fo, "holds": holds})
        payload: dict[str, Any] = answer["data"]["fulfillmentOrderReleaseHold"]
        return payload

    with httpx.Client() as client:
        orders = gql(
            client, shopify, UNSHIPPED, {"q": "financial_status:paid fulfillment_status:unshipped"}
        )
        order = orders["data"]["orders"]["nodes"][0]
        fo = order["fulfillmentOrders"]["nodes"][0]["id"]
        not_held = release(client, fo, None)
        first = gql(client, shopify, hold_q, {"id": fo, "note": "a"})["data"]
        second = gql(client, shopify, hold_q, {"id": fo, "note": "b"})["data"]
        first_id = first["fulfillmentOrderHold"]["fulfillmentHold"]["id"]
        second_id = second["fulfillmentOrderHold"]["fulfillmentHold"]["id"]
        partly = release(client, fo, [first_id, "gid://shopify/FulfillmentHold/1"])
        fully = release(client, fo, [second_id])
        twice = release(client, fo, [second_id])
        unknown = release(client, "gid://shopify/FulfillmentOrder/1", None)
        gql(client, shopify, hold_q, {"id": fo, "note": "c"})
        everything = release(client, fo, None)
        fulfilled = gql(client, shopify, FULFIL, {"fo": fo, "key": str(uuid.uuid4())})
    assert "Fulfillment order is not on hold." == not_held["userErrors"][0]["message"]
    assert first_id.startswith("gid://shopify/FulfillmentHold/")
    assert first_id != second_id
    # holdIds: only the named holds of this fulfillment order go; it stays held until none
    assert ("ON_HOLD", [{"id": second_id}], []) == (
        partly["fulfillmentOrder"]["status"],
        partly["fulfillmentOrder"]["fulfillmentHolds"],
        partly["userErrors"],
    )
    assert ("OPEN", []) == (fully["fulfillmentOrder"]["status"], fully["userErrors"])
    assert twice["fulfillmentOrder"] is None
    assert "Fulfillment order is not on hold." == twice["userErrors"][0]["message"]
    assert "FULFILLMENT_ORDER_NOT_FOUND" == unknown["userErrors"][0]["code"]
    assert "OPEN" == everything["fulfillmentOrder"]["status"]  # no holdIds: every hold goes
    assert [] == fulfilled["data"]["fulfillmentCreate"]["userErrors"]
    app = shopify.stats()["app"]
    assert 3 == app["writes"]["fulfillmentOrderReleaseHold"]
    assert 2 == app["duplicates_suppressed"]["release_not_on_hold"]


def test_woocommerce_stock_is_absolute_and_follows_status(woo: WooCommerceServer) -> None:
    with httpx.Client(auth=woo.auth) as client:
        order = client.get(f"{woo.api_url}/orders", params={"status": "processing"}).json()[0]
        line = order["line_items"][0]
        product_url = f"{woo.api_url}/products/{line['product_id']}"
        put = client.put(product_url, json={"stock_quantity": 0, "low_stock_amount": 2})
        assert (0, "outofstock", 2) == (
            put.json()["stock_quantity"],
            put.json()["stock_status"],
            put.json()["low_stock_amount"],
        )
        client.put(f"{woo.api_url}/orders/{order['id']}", json={"status": "cancelled"})
        restocked = client.get(product_url).json()
        batch = client.post(
            f"{woo.api_url}/products/batch",
            json={
                "create": [
                    {
                        "name": "New",
                        "sku": "NEW-1",
                        "regular_price": "5.00",
                        "manage_stock": True,
                        "stock_quantity": 3,
                    }
                ],
                "update": [{"id": line["product_id"], "regular_price": "7.00"}],
                "delete": [],
            },
        )
        too_many = client.post(f"{woo.api_url}/products/batch", json={"delete": list(range(101))})
        by_sku = client.get(f"{woo.api_url}/products", params={"sku": "NEW-1"}).json()
    assert line["quantity"] == restocked["stock_quantity"]
    assert "instock" == restocked["stock_status"]
    assert "7.00" == batch.json()["update"][0]["regular_price"]
    assert 413 == too_many.status_code
    assert [("NEW-1", 3)] == [(p["sku"], p["stock_quantity"]) for p in by_sku]


def test_woocommerce_orders_include_filters_by_id_in_either_form(
    woo: WooCommerceServer,
) -> None:
    with httpx.Client(auth=woo.auth) as client:
        listed = client.get(f"{woo.api_url}/orders", params={"per_page": 100}).json()
        chosen = [listed[5]["id"], listed[0]["id"], listed[9]["id"]]
        comma = client.get(
            f"{woo.api_url}/orders",
            params={"include": ",".join(map(str, chosen)), "orderby": "include", "order": "asc"},
        )
        repeated = client.get(
            f"{woo.api_url}/orders",
            params=[("include[]", str(i)) for i in chosen] + [("orderby", "id")],
        )
        with_unknown = client.get(
            f"{woo.api_url}/orders", params={"include": f"{chosen[0]},999999", "per_page": 100}
        )
        bad = client.get(f"{woo.api_url}/orders", params={"include": "12,abc"})
    assert chosen == [o["id"] for o in comma.json()]
    assert "3" == comma.headers["x-wp-total"]
    assert sorted(chosen, reverse=True) == [o["id"] for o in repeated.json()]
    assert [chosen[0]] == [o["id"] for o in with_unknown.json()]
    assert 400 == bad.status_code
    assert "rest_invalid_param" == bad.json()["code"]
    assert "include[1] is not of type integer." == bad.json()["data"]["params"]["include"]


def test_woocommerce_order_batch_applies_each_update_like_put(woo: WooCommerceServer) -> None:
    with httpx.Client(auth=woo.auth) as client:
        processing = client.get(
            f"{woo.api_url}/orders", params={"status": "processing", "per_page": 100}
        ).json()
        done = client.get(f"{woo.api_url}/orders", params={"status": "completed"}).json()[0]
        first, second, third, fourth = processing[:4]
        client.put(
            f"{woo.api_url}/orders/{first['id']}",
            json={"meta_data": [{"key": "picker", "value": "ann"}]},
        )
        line = fourth["line_items"][0]
        product_url = f"{woo.api_url}/products/{line['product_id']}"
        stock_before = client.get(product_url).json()["stock_quantity"]
        fulfil = {"status": "completed", "meta_data": [{"key": "ours", "value": {"k": 1}}]}
        batch = client.post(
            f"{woo.api_url}/orders/batch",
            json={
                "create": [{"status": "processing"}],
                "update": [
                    {"id": first["id"], **fulfil},
                    {"id": 999999, **fulfil},
                    {"id": second["id"], **fulfil},
                    {"id": third["id"], "status": "shipped"},
                    {"id": done["id"], **fulfil},
                    {"id": fourth["id"], "status": "cancelled"},
                ],
                "delete": [third["id"]],
            },
        )
        after = {
            o["id"]: o
            for o in client.get(
                f"{woo.api_url}/orders",
                params={"include": f"{first['id']},{second['id']},{third['id']}"},
            ).json()
        }
        stock_after = client.get(product_url).json()["stock_quantity"]
    assert 200 == batch.status_code
    answer = batch.json()
    assert ["create", "delete", "update"] == sorted(answer)
    update = answer["update"]
    assert [first["id"], 999999, second["id"], third["id"], done["id"], fourth["id"]] == [
        u["id"] for u in update
    ]
    assert ("completed", "completed", "completed", "cancelled") == (
        update[0]["status"],
        update[2]["status"],
        update[4]["status"],
        update[5]["status"],
    )
    assert {
        "id": 999999,
        "error": {
            "code": "woocommerce_rest_shop_order_invalid_id",
            "message": "Invalid ID.",
            "data": {"status": 404},
        },
    } == update[1]
    assert ("rest_invalid_param", 400) == (
        update[3]["error"]["code"],
        update[3]["error"]["data"]["status"],
    )
    # meta merged into what the order had, as PUT does
    assert {"picker": "ann", "ours": {"k": 1}} == {
        m["key"]: m["value"] for m in after[first["id"]]["meta_data"]
    }
    assert "processing" == after[third["id"]]["status"]  # its failed item changed nothing
    assert stock_before + line["quantity"] == stock_after  # cancelled: restocked
    for entry in (answer["create"][0], answer["delete"][0]):
        assert "loopback_batch_not_supported" == entry["error"]["code"]
        assert 501 == entry["error"]["data"]["status"]
    assert third["id"] == answer["delete"][0]["id"]
    app = woo.stats(detail=True)["app"]
    # two transitions into completed; the completed order's update is a no-op, not a third
    assert 2 == app["fulfilments_applied"]
    assert {str(first["id"]): 1, str(second["id"]): 1} == app["fulfilments_by_order"]
    assert 1 == app["duplicates_suppressed"]["already_completed"]
    assert 1 == app["writes"]["order.batch"]


def test_woocommerce_order_batch_refuses_more_than_100_objects(woo: WooCommerceServer) -> None:
    with httpx.Client(auth=woo.auth) as client:
        processing = client.get(f"{woo.api_url}/orders", params={"status": "processing"}).json()
        update = [{"id": o["id"], "status": "completed"} for o in processing] * 10
        too_many = client.post(
            f"{woo.api_url}/orders/batch", json={"update": update[:95], "delete": [1] * 6}
        )
        listed = client.get(f"{woo.api_url}/orders", params={"status": "completed"}).json()
    assert 413 == too_many.status_code
    assert {
        "code": "woocommerce_rest_request_entity_too_large",
        "message": "Unable to accept more than 100 items for this request.",
        "data": {"status": 413},
    } == too_many.json()
    assert SMALL.paid_fulfilled == len(listed)
    assert 0 == woo.stats()["app"]["fulfilments_applied"]


def test_woocommerce_order_batch_lost_answer_is_applied_once() -> None:
    """Faults hit the batch request as a whole: an answer lost after applying leaves every
    item applied; the same request again with its key is a replay, without a key every
    item is a completed -> completed no-op. Nothing is fulfilled twice."""
    with WooCommerceServer(WooCommerceConfig(seed=SMALL)) as server:
        with httpx.Client(auth=server.auth, timeout=2.0) as client:
            orders = client.get(
                f"{server.api_url}/orders", params={"status": "processing", "per_page": 10}
            ).json()
            body = {"update": [{"id": o["id"], "status": "completed"} for o in orders]}
            url = f"{server.api_url}/orders/batch"
            headers = {"Idempotency-Key": "batch-1"}
            server.configure(faults=FaultConfig(rate=1.0, weights={"reset_after": 1.0}))
            with pytest.raises(httpx.TransportError):
                client.post(url, json=body, headers=headers)
            server.configure(faults=FaultConfig())
            replay = client.post(url, json=body, headers=headers)
            unkeyed = client.post(url, json=body)
        stats = server.stats(detail=True)
    assert "true" == replay.headers["idempotent-replayed"]
    assert {"completed"} == {o["status"] for o in replay.json()["update"]}
    assert {"completed"} == {o["status"] for o in unkeyed.json()["update"]}
    app = stats["app"]
    assert 10 == app["fulfilments_applied"] == app["orders_fulfilled"]
    assert [] == app["orders_fulfilled_more_than_once"]
    assert 10 == app["duplicates_suppressed"]["already_completed"]
    assert {"reset_after": 1} == stats["server"]["faults"]


def test_servers_run_in_a_child_process_too() -> None:
    with (
        ShopifyServer(ShopifyConfig(seed=SMALL), in_process=False) as server,
        httpx.Client() as client,
    ):
        body = gql(client, server, "{ shop { myshopifyDomain } }")
        stats = server.stats()
    assert server.config.shop_domain == body["data"]["shop"]["myshopifyDomain"]
    assert 1 == stats["server"]["requests"]
    assert 0 == server.port
