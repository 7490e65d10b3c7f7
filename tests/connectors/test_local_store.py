"""The local store (SQLite) through the executor the engine uses: seed data, velocity,
idempotent writes, and clear errors for bad input."""

from __future__ import annotations

import asyncio
import sqlite3
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


def test_release_returns_a_held_order_to_where_it_was(executor: ConnectorExecutor) -> None:
    paid = call(executor, "store.list_orders", status="paid", limit=2)["orders"]
    order_id, other_id = paid[0]["id"], paid[1]["id"]
    held = call(executor, "store.hold_order", key="h1", order_id=order_id, reason="地址缺失")
    again = call(executor, "store.hold_order", key="h2", order_id=order_id, reason="再确认")
    assert ("on_hold", "on_hold") == (held["status"], again["status"])
    with pytest.raises(OperationError) as blocked:
        call(executor, "store.fulfil_order", key="f0", order_id=order_id)
    assert "Conflict" == blocked.value.error

    released = call(executor, "store.release_order", key="r1", order_id=order_id, note="已核实")
    assert ("paid", None) == (released["status"], released["hold_reason"])
    assert "released: 已核实" == released["notes"][-1]
    assert set(paid[0]) == set(released)  # the common order shape, as hold_order returns
    assert released == call(executor, "store.get_order", order_id=order_id)
    # releasing again (a retry, another key) is harmless: nothing changes, no second note
    assert released == call(executor, "store.release_order", key="r1", order_id=order_id)
    twice = call(executor, "store.release_order", key="r2", order_id=order_id, note="again")
    assert released == twice
    # an open order that was never held is left as it is
    assert paid[1] == call(executor, "store.release_order", key="r3", order_id=other_id)

    done = call(executor, "store.fulfil_order", key="f1", order_id=order_id)
    assert "fulfilled" == done["status"]
    with pytest.raises(OperationError) as shipped:
        call(executor, "store.release_order", key="r4", order_id=order_id)
    assert ("Conflict", False) == (shipped.value.error, shipped.value.retryable)
    assert order_id in str(shipped.value)
    assert "fulfilled" in str(shipped.value)


def test_release_refuses_cancelled_and_unknown_orders(executor: ConnectorExecutor) -> None:
    order_id = call(executor, "store.list_orders", status="paid", limit=1)["orders"][0]["id"]
    call(executor, "store.hold_order", key="h", order_id=order_id, reason="fraud?")
    call(executor, "store.cancel_order", key="c", order_id=order_id, reason="fraud")
    with pytest.raises(OperationError) as cancelled:
        call(executor, "store.release_order", key="r", order_id=order_id)
    assert ("Conflict", False) == (cancelled.value.error, cancelled.value.retryable)
    assert order_id in str(cancelled.value)
    assert "cancelled" in str(cancelled.value)
    assert "cancelled" == call(executor, "store.get_order", order_id=order_id)["status"]
    with pytest.raises(OperationError) as missing:
        call(executor, "store.release_order", key="r", order_id="LO-nope")
    assert ("NotFound", False) == (missing.value.error, missing.value.retryable)
    with pytest.raises(OperationError) as bad:
        call(executor, "store.release_order", key="r", order="LO-1")
    assert "Invalid" == bad.value.error


def test_release_returns_a_pending_order_to_pending(tmp_path: Path) -> None:
    async def scenario() -> tuple[dict, dict]:  # type: ignore[type-arg]
        store = LocalStore(tmp_path / "shop.db")
        try:
            paid = await store.list_orders(s.ListOrders(status="paid", limit=2), key="k")
            order_id, paid_id = (o["id"] for o in paid["orders"])
            with store._tx() as db:  # an unpaid order, as a checkout awaiting payment leaves it
                db.execute(
                    "UPDATE orders SET status = 'pending', financial_status = 'pending'"
                    " WHERE id = ?",
                    (order_id,),
                )
            await store.hold_order(s.HoldOrder(order_id=order_id), key="h")
            released = await store.release_order(s.ReleaseOrder(order_id=order_id), key="r")
            # a hold recorded before `held_from` existed: back by the financial status
            with store._tx() as db:
                db.execute(
                    "UPDATE orders SET status = 'on_hold', held_from = NULL WHERE id = ?",
                    (paid_id,),
                )
            legacy = await store.release_order(s.ReleaseOrder(order_id=paid_id), key="r2")
            return released, legacy
        finally:
            await store.aclose()

    released, legacy = asyncio.run(scenario())
    assert "pending" == released["status"]
    assert "paid" == legacy["status"]


def test_an_older_database_gets_the_held_from_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE orders (id TEXT PRIMARY KEY, number INTEGER NOT NULL,"
        " status TEXT NOT NULL, financial_status TEXT NOT NULL, total_cents INTEGER NOT NULL,"
        " currency TEXT NOT NULL, created_at TEXT NOT NULL, customer_name TEXT NOT NULL,"
        " customer_email TEXT NOT NULL, shipping_address TEXT NOT NULL, tracking TEXT,"
        " fulfilled_at TEXT, hold_reason TEXT);"
        "INSERT INTO orders VALUES ('LO-1', 1, 'on_hold', 'paid', 100, 'CNY',"
        " '2026-01-01T00:00:00Z', 'n', 'e@example.com', '{}', NULL, NULL, 'check');"
    )
    old.commit()
    old.close()

    async def scenario() -> dict:  # type: ignore[type-arg]
        store = LocalStore(path, seed_if_empty=False)
        try:
            return await store.release_order(s.ReleaseOrder(order_id="LO-1"), key="r")
        finally:
            await store.aclose()

    released = asyncio.run(scenario())
    assert ("paid", None) == (released["status"], released["hold_reason"])
    again = LocalStore(path, seed_if_empty=False)  # a second open finds the column there
    again.close()
