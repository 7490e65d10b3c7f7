"""The local store (SQLite) through the executor the engine uses: seed data, velocity,
idempotent writes, and clear errors for bad input."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors import store as s
from connectors.executor import ConnectorExecutor
from connectors.local import LocalStore
from storeops.errors import OperationError


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[ConnectorExecutor]:
    made = ConnectorExecutor({"STOREOPS_STORE": f"local:{tmp_path / 'store.db'}"})
    yield made
    made.close()


def call(executor: ConnectorExecutor, uses: str, key: str = "k", **inputs: object) -> dict:  # type: ignore[type-arg]
    found: dict = executor.run(uses, inputs, idempotency_key=key, timeout=30)  # type: ignore[type-arg]
    return found


def test_seed_is_a_realistic_shop(executor: ConnectorExecutor) -> None:
    products = call(executor, "store.list_products", limit=10_000)["products"]
    assert len(products) >= 300
    assert any("龙井" in p["title"] for p in products)
    month = call(executor, "store.list_orders", limit=100_000)
    days = {o["created_at"][:10] for o in month["orders"]}
    assert len(days) >= 30
    assert month["count"] > 30 * 20
    paid = call(executor, "store.list_orders", status="paid", limit=100_000)
    assert paid["count"] > 0
    assert all(o["status"] == "paid" for o in paid["orders"])
    assert all(o["lines"] for o in paid["orders"])


def test_inventory_velocity_matches_the_orders(executor: ConnectorExecutor) -> None:
    levels = call(executor, "store.inventory_levels", window_days=30)
    assert levels["low_count"] == len(levels["skus"]) > 0
    since = datetime.now(UTC) - timedelta(days=30)
    orders = call(executor, "store.list_orders", since=since.isoformat(), limit=100_000)
    busiest = max(levels["levels"], key=lambda lv: lv["sold_30d"])
    sold = sum(
        line["quantity"]
        for order in orders["orders"]
        if order["status"] != "cancelled"
        for line in order["lines"]
        if line["sku"] == busiest["sku"]
    )
    assert sold == busiest["sold_30d"]
    low = call(executor, "store.inventory_levels", low_only=True)
    assert {lv["sku"] for lv in low["levels"]} == set(levels["skus"])
    for level in low["levels"]:
        cover = level["days_of_cover"]
        assert level["available"] <= level["low_stock_threshold"] or cover < level["lead_time_days"]


def test_fulfilment_happens_once_per_key(executor: ConnectorExecutor) -> None:
    order = call(executor, "store.list_orders", status="paid", limit=1)["orders"][0]
    sku = order["lines"][0]["sku"]
    before = call(executor, "store.get_product", sku=sku)["on_hand"]
    first = call(executor, "store.fulfil_order", key="wave-1/fulfil[0]/1", order_id=order["id"])
    again = call(executor, "store.fulfil_order", key="wave-1/fulfil[0]/1", order_id=order["id"])
    assert "fulfilled" == first["status"]
    assert first["tracking"] == again["tracking"]
    assert again["replayed"]
    shipped = sum(ln["quantity"] for ln in order["lines"] if ln["sku"] == sku)
    assert before - shipped == call(executor, "store.get_product", sku=sku)["on_hand"]
    with pytest.raises(OperationError) as twice:  # a different key: the order is shipped
        call(executor, "store.fulfil_order", key="other", order_id=order["id"])
    assert ("Conflict", False) == (twice.value.error, twice.value.retryable)


def test_stock_adjustments_are_idempotent_and_checked(executor: ConnectorExecutor) -> None:
    sku = call(executor, "store.list_products", limit=1)["products"][0]["sku"]
    start = call(executor, "store.get_product", sku=sku)["on_hand"]
    call(executor, "store.adjust_inventory", key="restock-1", sku=sku, delta=40)
    call(executor, "store.adjust_inventory", key="restock-1", sku=sku, delta=40)
    assert start + 40 == call(executor, "store.get_product", sku=sku)["on_hand"]
    with pytest.raises(OperationError) as negative:
        call(executor, "store.adjust_inventory", key="oops", sku=sku, delta=-10_000)
    assert "Invalid" == negative.value.error
    assert start + 40 == call(executor, "store.get_product", sku=sku)["on_hand"]


def test_bad_input_and_unknown_things_are_named(executor: ConnectorExecutor) -> None:
    with pytest.raises(OperationError) as bad:
        call(executor, "store.fulfil_order", orderid="LO-1")
    assert "Invalid" == bad.value.error
    assert "order_id" in str(bad.value)
    assert "orderid" in str(bad.value)
    with pytest.raises(OperationError) as missing:
        call(executor, "store.get_order", order_id="LO-nope")
    assert ("NotFound", False) == (missing.value.error, missing.value.retryable)


def test_products_notes_holds_and_inquiries(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = LocalStore(tmp_path / "shop.db")
        made = await store.upsert_product(
            s.UpsertProduct(sku="NEW-1", title="明前龙井 礼盒", price=368), key="a"
        )
        assert made["created"]
        assert "draft" == made["status"]
        assert (
            "active"
            == (await store.publish_product(s.PublishProduct(sku="NEW-1"), key="b"))["status"]
        )
        assert (
            299.0 == (await store.set_price(s.SetPrice(sku="NEW-1", price=299), key="c"))["price"]
        )
        paid = (await store.list_orders(s.ListOrders(status="paid", limit=1), key="d"))["orders"]
        held = await store.hold_order(
            s.HoldOrder(order_id=paid[0]["id"], reason="地址缺失"), key="e"
        )
        assert "on_hold" == held["status"]
        assert any("地址缺失" in n for n in held["notes"])
        open_ = await store.list_inquiries(s.ListInquiries(), key="f")
        first = open_["inquiries"][0]["id"]
        await store.reply_inquiry(
            s.ReplyInquiry(inquiry_id=first, text="您好，已安排发货。"), key="g"
        )
        assert (
            open_["count"] - 1 == (await store.list_inquiries(s.ListInquiries(), key="h"))["count"]
        )
        await store.aclose()

    asyncio.run(scenario())
