"""The Shopify connector against the loopback Shopify (connectors/loopback/shopify.py).

Shopify itself cannot run here, so these tests use the loopback double, which follows
Shopify's documented rules: the Admin GraphQL endpoint and access-token header, version
fall-forward, the calculated query cost and its leaky bucket (THROTTLED as HTTP 200),
the 1,000-point single-query limit, `@idempotent` keys, fulfillment orders, search
syntax, cursor pagination and HMAC-signed webhooks. Everything goes over real sockets.
"""

from __future__ import annotations

import asyncio
import http.server
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import pytest

from connectors import store as s
from connectors.client import ClientOptions
from connectors.loopback import FaultConfig, ShopifyConfig, ShopifyServer, ShopSeed
from connectors.shopify import ShopifyStore, idempotency_uuid, verify_webhook
from storeops.errors import ConfigError, OperationError

T = TypeVar("T")

NOW = datetime.now(UTC).replace(microsecond=0)
SEED = ShopSeed(
    seed=3,
    products=12,
    variants_per_product=2,
    paid_unfulfilled=23,
    now=NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
)
# orders in the seed: 23 paid and unfulfilled, 5 fulfilled, 5 pending, 2 refunded,
# 2 cancelled
ALL_ORDERS = 37


# A bucket that never runs dry, for tests about something else: at Shopify's Standard
# rate (100 points/s) listing an order costs ~15 actual points, so 450 orders take a minute.
# The throttling tests use a small bucket on purpose.
def generous(seed: ShopSeed) -> ShopifyConfig:
    return ShopifyConfig(seed=seed, maximum_available=1_000_000.0, restore_rate=1_000_000.0)


@pytest.fixture
def server() -> Iterator[ShopifyServer]:
    with ShopifyServer(generous(SEED)) as running:
        yield running


@asynccontextmanager
async def opened(server: ShopifyServer, **options: Any) -> AsyncIterator[ShopifyStore]:
    store = ShopifyStore(
        server.base_url, server.access_token, options=ClientOptions(**{"timeout": 5, **options})
    )
    try:
        yield store
    finally:
        await store.aclose()


def run(server: ShopifyServer, body: Callable[[ShopifyStore], Awaitable[T]], **opts: Any) -> T:
    async def main() -> T:
        async with opened(server, **opts) as store:
            result = await body(store)
            assert 0 == store.metrics["cost_underestimates"]
            return result

    return asyncio.run(main())


async def paid_ids(store: ShopifyStore, limit: int = 100_000) -> list[str]:
    listed = await store.list_orders(s.ListOrders(status="paid", limit=limit), key="list")
    return [o["id"] for o in listed["orders"]]


# --------------------------------------------------------------------------- configuration


def test_from_env_reads_token_and_version_and_names_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="STOREOPS_SHOPIFY_TOKEN is not set"):
        ShopifyStore.from_env("https://my-shop.myshopify.com", {})
    env = {"STOREOPS_SHOPIFY_TOKEN": "shpat_secret_value", "STOREOPS_SHOPIFY_API_VERSION": "26-1"}
    with pytest.raises(ConfigError, match="STOREOPS_SHOPIFY_API_VERSION='26-1'") as bad:
        ShopifyStore.from_env("https://my-shop.myshopify.com", env)
    assert "shpat_secret_value" not in str(bad.value)
    with pytest.raises(ConfigError, match="plain http would send the access token"):
        ShopifyStore.from_env("http://my-shop.myshopify.com", {"STOREOPS_SHOPIFY_TOKEN": "x"})

    async def build() -> tuple[str, str, str]:
        env = {"STOREOPS_SHOPIFY_TOKEN": "shpat_secret_value"}
        store = ShopifyStore.from_env("my-shop", env)
        try:
            return store.endpoint_base, store.api_version, repr(store)
        finally:
            await store.aclose()

    base, version, shown = asyncio.run(build())
    assert ("https://my-shop.myshopify.com", "2026-10") == (base, version)
    assert "shpat_secret_value" not in shown


def test_served_version_is_kept_and_a_fall_forward_is_logged(
    server: ShopifyServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def both() -> tuple[str | None, str | None]:
        env = {"STOREOPS_SHOPIFY_TOKEN": server.access_token}
        pinned = ShopifyStore.from_env(server.base_url, env)
        old = ShopifyStore.from_env(
            server.base_url, {**env, "STOREOPS_SHOPIFY_API_VERSION": "2025-10"}
        )
        try:
            await pinned.get_product(s.GetProduct(sku="SKU-00001-1"), key="k")
            await old.get_product(s.GetProduct(sku="SKU-00001-1"), key="k")
            return pinned.served_api_version, old.served_api_version
        finally:
            await pinned.aclose()
            await old.aclose()

    with caplog.at_level(logging.DEBUG, logger="storeops.shopify"):
        assert ("2026-10", "2026-01") == asyncio.run(both())
    assert any("answered with 2026-01" in r.getMessage() for r in caplog.records)
    assert all(server.access_token not in r.getMessage() for r in caplog.records)


def test_wrong_token_is_unauthorized_and_the_token_stays_out(
    server: ShopifyServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def call() -> OperationError:
        store = ShopifyStore(server.base_url, "shpat_wrong_token_123")
        try:
            with pytest.raises(OperationError) as failed:
                await store.get_product(s.GetProduct(sku="SKU-00001-1"), key="k")
            return failed.value
        finally:
            await store.aclose()

    with caplog.at_level(logging.DEBUG):
        error = asyncio.run(call())
    assert ("Unauthorized", False) == (error.error, error.retryable)
    assert "Invalid API key or access token" in str(error)
    assert "shpat_wrong_token_123" not in str(error)
    assert all("shpat_wrong_token_123" not in r.getMessage() for r in caplog.records)


def test_unknown_api_version_is_not_configured(server: ShopifyServer) -> None:
    async def call() -> OperationError:
        store = ShopifyStore(server.base_url, server.access_token, api_version="2027-01")
        try:
            with pytest.raises(OperationError) as failed:
                await store.list_orders(s.ListOrders(), key="k")
            return failed.value
        finally:
            await store.aclose()

    error = asyncio.run(call())
    assert "NotConfigured" == error.error
    assert "2027-01" in str(error)


# --------------------------------------------------------------------------- products


def test_products_list_get_and_filter(server: ShopifyServer) -> None:
    async def body(store: ShopifyStore) -> None:
        listed = await store.list_products(s.ListProducts(), key="k")
        assert 24 == listed["count"] == len({p["sku"] for p in listed["products"]})
        drafts = await store.list_products(s.ListProducts(status="draft"), key="k")
        assert ["SKU-00010-1", "SKU-00010-2"] == [p["sku"] for p in drafts["products"]]
        assert 5 == (await store.list_products(s.ListProducts(limit=5), key="k"))["count"]
        one = await store.get_product(s.GetProduct(sku="SKU-00002-2"), key="k")
        assert {
            "sku": "SKU-00002-2",
            "title": "Linen Shirt 2",
            "status": "active",
            "currency": "EUR",
        } == {k: one[k] for k in ("sku", "title", "status", "currency")}
        assert one["on_hand"] >= one["available"] >= 0
        assert not one["product_id"].startswith("gid://")
        with pytest.raises(OperationError) as missing:
            await store.get_product(s.GetProduct(sku="NO-SUCH"), key="k")
        assert "NotFound" == missing.value.error

    run(server, body)


def test_upsert_creates_once_then_updates_and_status_and_price(server: ShopifyServer) -> None:
    async def body(store: ShopifyStore) -> None:
        new = s.UpsertProduct(sku="TEA 001", title="龙井 Longjing", price=88, category="tea")
        created = await store.upsert_product(new, key="u1")
        assert (True, "draft", 88.0, "tea") == (
            created["created"],
            created["status"],
            created["price"],
            created["category"],
        )
        again = await store.upsert_product(new, key="u1")  # a retried create
        assert False is again["created"]
        assert created["product_id"] == again["product_id"]
        changed = s.UpsertProduct(
            sku="TEA 001", title="Longjing 2026", price=98.5, category="green", status="active"
        )
        updated = await store.upsert_product(changed, key="u2")
        assert ("Longjing 2026", 98.5, "green", "active") == (
            updated["title"],
            updated["price"],
            updated["category"],
            updated["status"],
        )
        assert (
            "draft"
            == (await store.unpublish_product(s.UnpublishProduct(sku="TEA 001"), key="p"))["status"]
        )
        assert (
            "active"
            == (await store.publish_product(s.PublishProduct(sku="TEA 001"), key="p"))["status"]
        )
        priced = await store.set_price(s.SetPrice(sku="TEA 001", price=9.99), key="p")
        assert 9.99 == priced["price"]
        assert 9.99 == (await store.get_product(s.GetProduct(sku="TEA 001"), key="k"))["price"]

    run(server, body)
    writes = server.stats()["app"]["writes"]
    assert 1 == writes["productSet"]


# --------------------------------------------------------------------------- inventory


def test_adjust_inventory_with_the_same_key_applies_once(server: ShopifyServer) -> None:
    async def body(store: ShopifyStore) -> list[dict[str, Any]]:
        before = await store.get_product(s.GetProduct(sku="SKU-00003-1"), key="k")
        req = s.AdjustInventory(sku="SKU-00003-1", delta=7, reason="restock")
        first = await store.adjust_inventory(req, key="run-1/adjust")
        repeat = await store.adjust_inventory(req, key="run-1/adjust")
        other = await store.adjust_inventory(req, key="run-2/adjust")
        after = await store.get_product(s.GetProduct(sku="SKU-00003-1"), key="k")
        assert before["on_hand"] + 14 == after["on_hand"]
        assert first == repeat
        assert before["on_hand"] + 7 == first["on_hand"] == first["before"] + 7
        return [first, other]

    first, other = run(server, body)
    assert first["on_hand"] + 7 == other["on_hand"]
    app = server.stats()["app"]
    assert 2 == app["writes"]["inventoryAdjustQuantities"]
    assert 1 == app["idempotency_keys_replayed"]


def test_idempotency_uuid_is_deterministic_and_uuid_shaped() -> None:
    one = idempotency_uuid("adjust_inventory", "run-1/adjust")
    assert one == idempotency_uuid("adjust_inventory", "run-1/adjust")
    assert one != idempotency_uuid("adjust_inventory", "run-2/adjust")
    assert 36 == len(one)
    assert "5" == one[14]  # version 5


def test_set_inventory_is_compare_and_set_and_reads_again_once(server: ShopifyServer) -> None:
    async def body(store: ShopifyStore) -> dict[str, Any]:
        plain = await store.set_inventory(s.SetInventory(sku="SKU-00004-1", quantity=500), key="a")
        assert 500 == plain["on_hand"]
        sku = "SKU-00004-2"
        real_call = store._call
        raced: list[str] = []

        async def racing(what: str, query: str, variables: Any = None, **kw: Any) -> Any:
            if "inventorySetQuantities" in query and not raced:
                # someone else changes the level between our read and our write
                raced.append(what)
                await store.adjust_inventory(s.AdjustInventory(sku=sku, delta=3), key="race")
            return await real_call(what, query, variables, **kw)

        store._call = racing  # type: ignore[method-assign]
        result = await store.set_inventory(s.SetInventory(sku=sku, quantity=400), key="b")
        store._call = real_call  # type: ignore[method-assign]
        level = await store.get_product(s.GetProduct(sku=sku), key="k")
        assert 500 == (await store.get_product(s.GetProduct(sku="SKU-00004-1"), key="k"))["on_hand"]
        assert 400 == level["on_hand"] == result["on_hand"]
        assert 1 == len(raced)
        return result

    run(server, body)
    assert 2 == server.stats()["app"]["writes"]["inventorySetQuantities"]


def test_inventory_levels_count_sales_in_the_window(server: ShopifyServer) -> None:
    async def body(store: ShopifyStore) -> None:
        orders = (await store.list_orders(s.ListOrders(), key="k"))["orders"]
        since_7 = NOW - timedelta(days=7)
        sold: dict[str, list[int]] = {}
        for order in orders:
            if order["status"] == "cancelled":
                continue
            created = datetime.fromisoformat(order["created_at"].replace("Z", "+00:00"))
            for line in order["lines"]:
                counts = sold.setdefault(line["sku"], [0, 0])
                counts[1] += line["quantity"]
                if created >= since_7:
                    counts[0] += line["quantity"]
        report = await store.inventory_levels(s.InventoryLevels(window_days=30), key="k")
        by_sku = {lv["sku"]: lv for lv in report["levels"]}
        assert 24 == len(by_sku)  # drafts count too; only archived products are left out
        for sku, (s7, s30) in sold.items():
            assert (s7, s30) == (by_sku[sku]["sold_7d"], by_sku[sku]["sold_30d"]), sku
        for lv in report["levels"]:
            assert lv["on_hand"] - lv["allocated"] == lv["available"]
        some = await store.inventory_levels(
            s.InventoryLevels(skus=["SKU-00001-1", "NOPE"], window_days=30), key="k"
        )
        assert [by_sku["SKU-00001-1"]] == some["levels"]
        low = await store.inventory_levels(s.InventoryLevels(low_only=True), key="k")
        assert all(lv["low"] for lv in low["levels"])
        assert low["skus"] == [lv["sku"] for lv in low["levels"]]

    run(server, body)


# --------------------------------------------------------------------------- orders


def test_list_orders_by_status_and_window(server: ShopifyServer) -> None:
    async def body(store: ShopifyStore) -> None:
        every = await store.list_orders(s.ListOrders(), key="k")
        assert ALL_ORDERS == every["count"] == len({o["id"] for o in every["orders"]})
        counts = {
            status: (await store.list_orders(s.ListOrders(status=status), key="k"))["count"]
            for status in ("paid", "fulfilled", "pending", "cancelled", "on_hold")
        }
        assert {"paid": 23, "fulfilled": 5, "pending": 5, "cancelled": 2, "on_hold": 0} == counts
        created = sorted(o["created_at"] for o in every["orders"])
        assert created == [o["created_at"] for o in every["orders"]]
        middle = datetime.fromisoformat(created[18].replace("Z", "+00:00"))
        since = await store.list_orders(s.ListOrders(since=middle), key="k")
        until = await store.list_orders(s.ListOrders(until=middle - timedelta(seconds=1)), key="k")
        assert ALL_ORDERS == since["count"] + until["count"]
        assert all(o["created_at"] >= created[18] for o in since["orders"])
        gmv = round(sum(o["total"] for o in every["orders"] if o["status"] != "cancelled"), 2)
        assert gmv == every["gmv"]
        assert round(gmv / ALL_ORDERS, 2) == every["average_order_value"]

    run(server, body)


def test_order_pagination_is_complete() -> None:
    big = ShopSeed(seed=11, products=10, variants_per_product=2, paid_unfulfilled=450)
    with ShopifyServer(generous(big)) as server:

        async def body(store: ShopifyStore) -> None:
            ids = await paid_ids(store)
            assert 450 == len(ids) == len(set(ids))
            assert 120 == len(await paid_ids(store, limit=120))
            assert store.metrics["requests"] > 450 // 20  # many pages, each under 1,000

        run(server, body)
        assert 0 == server.stats()["app"]["throttled"]


def test_get_order_accepts_id_name_number_and_gid(server: ShopifyServer) -> None:
    async def body(store: ShopifyStore) -> None:
        first = (await store.list_orders(s.ListOrders(limit=1), key="k"))["orders"][0]
        for ref in (
            first["id"],
            first["name"],
            str(first["number"]),
            f"gid://shopify/Order/{first['id']}",
        ):
            assert first == await store.get_order(s.GetOrder(order_id=ref), key="k"), ref
        for missing in ("#99999", "123", "nonsense"):
            with pytest.raises(OperationError) as failed:
                await store.get_order(s.GetOrder(order_id=missing), key="k")
            assert "NotFound" == failed.value.error

    run(server, body)


def test_fulfil_applies_once_per_key_and_refuses_a_second_key(server: ShopifyServer) -> None:
    async def body(store: ShopifyStore) -> None:
        order_id = (await paid_ids(store))[0]
        req = s.FulfilOrder(order_id=order_id, tracking_number="SF1234", carrier="SF", note="sent")
        done = await store.fulfil_order(req, key="wave-1/o1")
        assert {
            "order_id": order_id,
            "status": "fulfilled",
            "tracking": {"number": "SF1234", "carrier": "SF"},
            "replayed": False,
        } == done
        again = await store.fulfil_order(req, key="wave-1/o1")
        assert (True, "fulfilled") == (again["replayed"], again["status"])
        with pytest.raises(OperationError) as other:
            await store.fulfil_order(req, key="wave-2/o1")
        assert ("Conflict", False) == (other.value.error, other.value.retryable)
        order = await store.get_order(s.GetOrder(order_id=order_id), key="k")
        assert ("fulfilled", ["sent"]) == (order["status"], order["notes"])
        assert {"number": "SF1234", "carrier": "SF"} == order["tracking"]

    run(server, body)
    app = server.stats()["app"]
    assert (1, 1, []) == (
        app["fulfilments_applied"],
        app["orders_fulfilled"],
        app["orders_fulfilled_more_than_once"],
    )


def test_hold_cancel_and_notes(server: ShopifyServer) -> None:
    async def body(store: ShopifyStore) -> None:
        held_id, cancel_id, note_id = (await paid_ids(store))[:3]
        held = await store.hold_order(s.HoldOrder(order_id=held_id, reason="address?"), key="h")
        assert ("on_hold", "address?") == (held["status"], held["hold_reason"])
        assert held == await store.hold_order(s.HoldOrder(order_id=held_id), key="h")
        on_hold = await store.list_orders(s.ListOrders(status="on_hold"), key="k")
        assert [held_id] == [o["id"] for o in on_hold["orders"]]
        assert held_id not in await paid_ids(store)
        with pytest.raises(OperationError) as blocked:
            await store.fulfil_order(s.FulfilOrder(order_id=held_id), key="f")
        assert "Conflict" == blocked.value.error

        cancelled = await store.cancel_order(
            s.CancelOrder(order_id=cancel_id, reason="customer asked"), key="c"
        )
        assert "cancelled" == cancelled["status"]
        for again in (
            store.cancel_order(s.CancelOrder(order_id=cancel_id), key="c"),
            store.fulfil_order(s.FulfilOrder(order_id=cancel_id), key="f"),
            store.hold_order(s.HoldOrder(order_id=cancel_id), key="h"),
        ):
            with pytest.raises(OperationError) as refused:
                await again
            assert "Conflict" == refused.value.error

        await store.add_order_note(s.AddOrderNote(order_id=note_id, message="called"), key="n1")
        await store.add_order_note(s.AddOrderNote(order_id=note_id, message="called"), key="n1")
        noted = await store.add_order_note(
            s.AddOrderNote(order_id=note_id, message="second"), key="n2"
        )
        assert ["called", "second"] == noted["notes"]

    run(server, body)


def test_release_reopens_a_held_order_which_can_then_be_fulfilled(server: ShopifyServer) -> None:
    async def body(store: ShopifyStore) -> None:
        held_id, open_id = (await paid_ids(store))[:2]
        before = await store.get_order(s.GetOrder(order_id=held_id), key="k")
        held = await store.hold_order(s.HoldOrder(order_id=held_id, reason="address?"), key="h")
        assert "on_hold" == held["status"]
        released = await store.release_order(
            s.ReleaseOrder(order_id=held_id, note="address confirmed"), key="r1"
        )
        assert ("paid", None) == (released["status"], released["hold_reason"])
        assert ["released: address confirmed"] == released["notes"]
        assert set(before) == set(released)
        assert {**before, "notes": released["notes"]} == released
        assert held_id in await paid_ids(store)
        # releasing again, by a retry or another action, changes nothing
        assert released == await store.release_order(
            s.ReleaseOrder(order_id=held_id, note="address confirmed"), key="r1"
        )
        assert released == await store.release_order(
            s.ReleaseOrder(order_id=held_id, note="second"), key="r2"
        )
        untouched = await store.get_order(s.GetOrder(order_id=open_id), key="k")
        assert untouched == await store.release_order(s.ReleaseOrder(order_id=open_id), key="r3")

        done = await store.fulfil_order(s.FulfilOrder(order_id=held_id), key="f")
        assert "fulfilled" == done["status"]
        with pytest.raises(OperationError) as shipped:
            await store.release_order(s.ReleaseOrder(order_id=held_id), key="r4")
        assert ("Conflict", False) == (shipped.value.error, shipped.value.retryable)
        assert "fulfilled" in str(shipped.value)
        assert released["name"] in str(shipped.value)

    run(server, body)
    app = server.stats()["app"]
    assert 1 == app["writes"]["fulfillmentOrderReleaseHold"]  # one held fulfillment order
    assert 1 == app["fulfilments_applied"]


def test_release_keeps_pending_orders_pending_and_refuses_closed_ones(
    server: ShopifyServer,
) -> None:
    async def body(store: ShopifyStore) -> None:
        pending = await store.list_orders(s.ListOrders(status="pending"), key="k")
        pending_id = pending["orders"][0]["id"]
        await store.hold_order(s.HoldOrder(order_id=pending_id), key="h1")
        released = await store.release_order(s.ReleaseOrder(order_id=pending_id), key="r1")
        assert ("pending", []) == (released["status"], released["notes"])

        cancel_id = (await paid_ids(store))[0]
        await store.hold_order(s.HoldOrder(order_id=cancel_id, reason="fraud?"), key="h2")
        await store.cancel_order(s.CancelOrder(order_id=cancel_id), key="c")
        with pytest.raises(OperationError) as cancelled:
            await store.release_order(s.ReleaseOrder(order_id=cancel_id), key="r2")
        assert ("Conflict", False) == (cancelled.value.error, cancelled.value.retryable)
        assert "cancelled" in str(cancelled.value)
        for unknown in ("999999999", "#424242", "gid://shopify/Order/1"):
            with pytest.raises(OperationError) as missing:
                await store.release_order(s.ReleaseOrder(order_id=unknown), key="r3")
            assert "NotFound" == missing.value.error

    run(server, body)


def test_release_under_lost_answers_releases_every_order(server: ShopifyServer) -> None:
    """Answers lost after the release applied: the client sends it again (the named holds
    are gone, Shopify says the order is not on hold), and the connector counts that as
    done; the engine's retries with the same key see nothing left to release."""
    lost = ("server_error_after", "hang_after", "reset_after")
    weights = dict.fromkeys((*lost, "server_error", "reset"), 1.0)

    async def body(store: ShopifyStore) -> list[dict[str, Any]]:
        ids = (await paid_ids(store))[:20]
        for order_id in ids:
            await store.hold_order(s.HoldOrder(order_id=order_id), key=f"h-{order_id}")
        server.configure(faults=FaultConfig(rate=0.3, seed=5, weights=weights, hang_s=0.3))

        async def release(order_id: str) -> dict[str, Any]:
            for _ in range(30):
                try:
                    request = s.ReleaseOrder(order_id=order_id)
                    return await store.release_order(request, key=f"r-{order_id}")
                except OperationError as exc:
                    if not exc.retryable:
                        raise
                    await asyncio.sleep(0.05)
            raise AssertionError(f"order {order_id} never released")

        answers = await asyncio.gather(*(release(i) for i in ids))
        server.configure(faults=FaultConfig())
        return answers

    answers = run(server, body, timeout=3)
    assert {"paid"} == {a["status"] for a in answers}
    stats = server.stats()
    assert sum(stats["server"]["faults"].get(k, 0) for k in lost) > 0
    assert stats["app"]["writes"]["fulfillmentOrderReleaseHold"] == 20


def test_inquiries_are_not_configured(server: ShopifyServer) -> None:
    async def body(store: ShopifyStore) -> None:
        for call in (
            store.list_inquiries(s.ListInquiries(), key="k"),
            store.reply_inquiry(s.ReplyInquiry(inquiry_id="1", text="hi"), key="k"),
        ):
            with pytest.raises(OperationError) as failed:
                await call
            assert "NotConfigured" == failed.value.error

    run(server, body)


# --------------------------------------------------------------------------- throttling


def test_a_burst_against_a_small_bucket_waits_and_never_fails() -> None:
    config = ShopifyConfig(seed=SEED, maximum_available=100, restore_rate=50)
    with ShopifyServer(config) as server:

        async def burst(store: ShopifyStore) -> list[dict[str, Any]]:
            skus = [f"SKU-{n:05d}-1" for n in range(1, 13)]
            return await asyncio.gather(
                *(store.get_product(s.GetProduct(sku=sku), key="k") for sku in skus),
                store.get_order(s.GetOrder(order_id="#1001"), key="k"),
            )

        async def body(store: ShopifyStore) -> None:
            results = await burst(store)
            assert 13 == len(results)
            assert "#1001" == results[-1]["name"]
            assert store.metrics["waits"] > 0
            assert 0 == store.metrics["throttled"]  # the mirror of the bucket kept it paid

        run(server, body)

        async def two_apps(_store: ShopifyStore) -> list[ShopifyStore]:
            # two processes share one bucket: neither mirror sees the other's spending, so
            # Shopify answers THROTTLED (HTTP 200) and ShopClient waits and asks again
            async with opened(server, attempts=12) as one, opened(server, attempts=12) as two:
                results = await asyncio.gather(burst(one), burst(two))
                assert [13, 13] == [len(r) for r in results]
                assert one.metrics["throttled"] + two.metrics["throttled"] > 0
                return [one, two]

        run(server, two_apps)
        assert server.stats()["app"]["throttled"] > 0


def test_429_with_retry_after_is_waited_out(server: ShopifyServer) -> None:
    server.configure(
        faults=FaultConfig(rate=0.4, seed=4, weights={"rate_limit": 1}, retry_after_s=1)
    )

    async def body(store: ShopifyStore) -> None:
        for n in range(1, 6):
            product = await store.get_product(s.GetProduct(sku=f"SKU-{n:05d}-1"), key="k")
            assert f"SKU-{n:05d}-1" == product["sku"]

    run(server, body, attempts=10)
    assert server.stats()["server"]["by_status"].get("429", 0) > 0


# --------------------------------------------------------------------------- faults


async def fulfil_like_the_engine(store: ShopifyStore, order_id: str, key: str) -> int:
    """Retry a retryable failure with the same key, as the engine's `retry:` does."""
    for attempt in range(1, 30):
        try:
            await store.fulfil_order(s.FulfilOrder(order_id=order_id), key=key)
        except OperationError as exc:
            if not exc.retryable:
                raise
            await asyncio.sleep(0.05)
            continue
        return attempt
    raise AssertionError(f"order {order_id} never fulfilled")


def test_chaos_wave_fulfils_every_order_exactly_once() -> None:
    seed = ShopSeed(seed=8, products=20, variants_per_product=2, paid_unfulfilled=300)
    lost = ("server_error_after", "hang_after", "reset_after")
    weights = dict.fromkeys((*lost, "server_error", "hang", "reset"), 1.0)
    faults = FaultConfig(rate=0.3, seed=21, weights=weights, hang_s=0.3)
    with ShopifyServer(generous(seed)) as server:

        async def body(store: ShopifyStore) -> list[int]:
            ids = await paid_ids(store)
            assert 300 == len(ids)
            server.configure(faults=faults)
            return await asyncio.gather(
                *(fulfil_like_the_engine(store, i, f"wave-7/fulfil/{i}") for i in ids)
            )

        attempts = run(server, body, timeout=3)
        stats = server.stats(detail=True)
    app, http = stats["app"], stats["server"]
    assert 300 == app["fulfilments_applied"] == app["orders_fulfilled"]
    assert {1} == set(app["fulfilments_by_order"].values())
    assert [] == app["orders_fulfilled_more_than_once"]
    assert sum(http["faults"].get(k, 0) for k in lost) > 0
    assert app["idempotency_keys_replayed"] > 0
    assert max(attempts) > 1  # some actions needed the engine's retry, not only the client's


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


def test_verify_webhook_accepts_shopify_signatures_only(server: ShopifyServer) -> None:
    class Handler(_Receiver):
        received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    handler = Handler
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{receiver.server_address[1]}/hooks"
        assert [200, 200] == server.send_order_webhooks(url, count=2)
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join(5)
    secret = server.config.api_secret
    for headers, body in handler.received:
        signature = headers["x-shopify-hmac-sha256"]
        assert verify_webhook(body, signature, secret)
        assert verify_webhook(body, f" {signature}\n", secret)
        assert not verify_webhook(body + b" ", signature, secret)
        assert not verify_webhook(body, signature, secret + "x")
        assert not verify_webhook(body, "", secret)
        assert not verify_webhook(body, "ünïcode", secret)
    assert 2 == len(handler.received)


# --------------------------------------------------------------------------- throughput


@pytest.mark.slow
def test_print_fulfilment_throughput(capsys: pytest.CaptureFixture[str]) -> None:
    seed = ShopSeed(seed=9, products=40, variants_per_product=2, paid_unfulfilled=2000)
    server = ShopifyServer(generous(seed), latency_s=0.02, in_process=False)
    with server:

        async def body(store: ShopifyStore) -> tuple[float, float]:
            ids = await paid_ids(store)
            assert 2000 == len(ids)
            started = time.perf_counter()
            await asyncio.gather(*(fulfil_like_the_engine(store, i, f"bench/{i}") for i in ids))
            return time.perf_counter() - started, store.metrics["requests"]

        elapsed, requests = run(server, body)
        app = server.stats()["app"]
    assert 2000 == app["fulfilments_applied"]
    with capsys.disabled():
        print(
            f"\nshopify loopback, 20 ms latency, server in a child process: 2,000 fulfilments"
            f" in {elapsed:.2f} s = {2000 / elapsed:,.0f} orders/s"
            f" ({requests:,.0f} GraphQL requests in all, incl. listing)"
        )
