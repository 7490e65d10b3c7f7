"""Smoke test of the django-oscar test store: what connectors rely on, over real HTTP.

Shares the session's store with other tests, so it changes only rows it picks itself and
compares counts it reads back, never seeded totals it assumes still hold.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.connectors.oscar_store import OscarStore

SEEDED_SKUS = {f"SKU-{n:04d}" for n in range(1, 41)}


@pytest.fixture
def client(oscar_store: OscarStore) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=oscar_store.base_url, headers=oscar_store.headers(), timeout=10
    ) as http:
        yield http


def all_pages(client: httpx.Client, url: str) -> tuple[list[dict[str, Any]], int]:
    """Every result of a paginated list by following `next`; (results, pages read)."""
    results: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        response = client.get(next_url)
        assert 200 == response.status_code, response.text
        body = response.json()
        results += body["results"]
        pages += 1
        next_url = body["next"]
    assert body["count"] == len(results)
    return results, pages


def roomiest_stockrecord(client: httpx.Client) -> int:
    """Id of the stock record with the most units, so that decrements cannot hit zero."""
    products, _ = all_pages(client, "/api/admin/products/")
    record = max((p["stockrecords"][0] for p in products), key=lambda r: r["num_in_stock"])
    assert record["num_in_stock"] >= 30
    return int(record["url"].rstrip("/").rsplit("/", 1)[1])


def newest_pending_order(client: httpx.Client) -> dict[str, Any]:
    """Newest first, to stay clear of the seeded history other tests may read."""
    orders, _ = all_pages(client, "/api/ops/orders/?status=Pending")
    assert orders, "the seed has 17 Pending orders"
    return orders[-1]


def test_products_with_stock_are_paginated(oscar_store: OscarStore, client: httpx.Client) -> None:
    products, pages = all_pages(client, "/api/admin/products/")

    assert pages >= 4  # 40 products, 10 a page
    records = {p["stockrecords"][0]["partner_sku"]: p["stockrecords"][0] for p in products}
    assert SEEDED_SKUS <= set(records)
    low = [sku for sku, r in records.items() if r["num_in_stock"] < r["low_stock_threshold"]]
    assert {"SKU-0008", "SKU-0040"} <= set(low)
    assert {"partner_sku", "num_in_stock", "num_allocated", "price", "partner"} <= set(
        records["SKU-0001"]
    )
    assert "真丝围巾" in {p["title"] for p in products}


def test_stock_adjustment_applies_once_per_key(client: httpx.Client) -> None:
    record_id = roomiest_stockrecord(client)
    before = client.get(f"/api/admin/stockrecords/{record_id}/").json()["num_in_stock"]
    key = f"smoke-{uuid.uuid4()}"
    url = f"/api/ops/stockrecords/{record_id}/adjust/"

    first = client.post(url, json={"delta": -2, "idempotency_key": key, "reason": "damaged"})
    again = client.post(url, json={"delta": -2, "idempotency_key": key, "reason": "damaged"})
    other_input = client.post(url, json={"delta": -3, "idempotency_key": key})
    too_many = client.post(url, json={"delta": -(before + 1), "idempotency_key": f"{key}-2"})

    assert 200 == first.status_code, first.text
    assert before - 2 == first.json()["num_in_stock"]
    assert (200, first.json()) == (again.status_code, again.json())
    assert "true" == again.headers["Idempotent-Replayed"]
    assert 422 == other_input.status_code
    assert 409 == too_many.status_code
    assert before - 2 == too_many.json()["num_in_stock"]
    assert before - 2 == client.get(f"/api/admin/stockrecords/{record_id}/").json()["num_in_stock"]


def test_concurrent_adjustments_apply_each_key_once(client: httpx.Client) -> None:
    record_id = roomiest_stockrecord(client)
    before = client.get(f"/api/admin/stockrecords/{record_id}/").json()["num_in_stock"]
    shared_key = f"retried-{uuid.uuid4()}"
    keys = [shared_key if n % 3 == 0 else f"once-{uuid.uuid4()}" for n in range(30)]

    def adjust(key: str) -> tuple[int, str | None]:
        body = {"delta": -1, "idempotency_key": key}
        response = client.post(f"/api/ops/stockrecords/{record_id}/adjust/", json=body)
        return response.status_code, response.headers.get("Idempotent-Replayed")

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = Counter(pool.map(adjust, keys))

    assert {(200, None): 21, (200, "true"): 9} == answers  # 20 own keys + the shared one once
    after = client.get(f"/api/admin/stockrecords/{record_id}/").json()["num_in_stock"]
    assert before - 21 == after


def test_order_status_follows_the_pipeline(client: httpx.Client) -> None:
    order = newest_pending_order(client)
    status_url = f"/api/admin/orders/{order['id']}/status/"

    invalid = client.patch(status_url, json={"status": "Shipped"})
    valid = client.patch(status_url, json={"status": "Being processed"})

    assert 409 == invalid.status_code, invalid.text
    assert ["Being processed", "Cancelled"] == invalid.json()["available_statuses"]
    assert 200 == valid.status_code, valid.text
    assert ("Pending", "Being processed") == (valid.json()["old_status"], valid.json()["status"])
    assert ["Shipped", "Cancelled"] == client.get(status_url).json()["available_statuses"]

    line = order["lines"][0]
    record_url = f"/api/admin/stockrecords/{line['stockrecord']}/"
    stock_before = client.get(record_url).json()
    fulfil_url = f"/api/ops/orders/{order['id']}/fulfil/"
    key = {"Idempotency-Key": f"ship-{uuid.uuid4()}"}
    shipped = client.post(fulfil_url, json={"reference": "TRACK-1"}, headers=key)
    replayed = client.post(fulfil_url, json={"reference": "TRACK-1"}, headers=key)
    note = client.post(f"/api/ops/orders/{order['id']}/notes/", json={"message": "left the dock"})

    assert 200 == shipped.status_code, shipped.text
    assert "Shipped" == shipped.json()["status"]
    assert shipped.json() == replayed.json()
    stock_after = client.get(record_url).json()
    shipped_units = sum(
        x["quantity"] for x in order["lines"] if x["stockrecord"] == line["stockrecord"]
    )
    assert stock_before["num_in_stock"] - shipped_units == stock_after["num_in_stock"]
    assert stock_before["num_allocated"] - shipped_units == stock_after["num_allocated"]
    assert 201 == note.status_code, note.text
    notes = client.get(f"/api/ops/orders/{order['id']}/notes/").json()
    assert "left the dock" == notes[-1]["message"]
    assert 1 == sum("Shipped (TRACK-1)" in n["message"] for n in notes)


def test_filtered_order_list_matches_the_admin_list(client: httpx.Client) -> None:
    every, _ = all_pages(client, "/api/admin/orders/")
    placed = sorted(o["date_placed"] for o in every)
    since, until = placed[len(placed) // 4], placed[3 * len(placed) // 4]
    params = {"status": ["Pending", "Being processed"], "since": since, "until": until}

    filtered, _ = all_pages(client, str(httpx.URL("/api/ops/orders/", params=params)))

    expected = sorted(
        o["number"]
        for o in every
        if o["status"] in params["status"] and since <= o["date_placed"] < until
    )
    assert expected == sorted(o["number"] for o in filtered)
    assert [o["date_placed"] for o in filtered] == sorted(o["date_placed"] for o in filtered)
    assert 400 == client.get("/api/ops/orders/", params={"since": "yesterday"}).status_code
    assert 400 == client.get("/api/ops/orders/", params={"status": "Lost"}).status_code


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/admin/products/"),
        ("GET", "/api/ops/orders/"),
        ("PATCH", "/api/admin/orders/1/status/"),
        ("POST", "/api/ops/stockrecords/1/adjust/"),
    ],
)
def test_non_staff_and_anonymous_are_refused(
    oscar_store: OscarStore, method: str, path: str
) -> None:
    body = {"status": "Cancelled", "delta": -1, "idempotency_key": "never-applied"}
    with httpx.Client(base_url=oscar_store.base_url, timeout=10) as http:
        customer = http.request(
            method, path, json=body, headers=oscar_store.headers(oscar_store.customer_token)
        )
        anonymous = http.request(method, path, json=body)

    assert 403 == customer.status_code
    assert "You do not have permission to perform this action." == customer.json()["detail"]
    assert 401 == anonymous.status_code


def test_requests_are_fast(
    oscar_store: OscarStore, client: httpx.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    latencies = []
    for _ in range(60):
        started = time.perf_counter()
        response = client.get("/api/admin/stockrecords/1/")
        latencies.append(time.perf_counter() - started)
        assert 200 == response.status_code
    p50 = statistics.median(latencies)
    with capsys.disabled():
        print(
            f"\noscar store: snapshot build {oscar_store.snapshot_build_seconds:.1f} s, "
            f"start {oscar_store.start_seconds:.2f} s, GET p50 {p50 * 1000:.1f} ms"
        )
    assert p50 < 0.25
