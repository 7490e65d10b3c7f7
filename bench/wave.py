"""Order waves at peak (issue 4 §4): paid orders fulfilled through the WooCommerce
connector against the loopback WooCommerce double answering every request in 20 ms.

Starts its own Prefect server (SQLite, a free 127.0.0.1 port) and the WooCommerce double
in a child process (so server and client do not share a GIL), then measures, in one run:

  wave          one SOP run (`bench/sops/wave.yaml`): list the paid orders, then a `map`
                fulfilling each through the connector, at most 200 at once, carried by
                one `run-sop` flow run; the ledger on SQLite records every attempt
  per-order     the alternative: one Prefect flow run per order (the same connector call
                inside), 10 at once, on the same server
  chaos         a wave against a double that fails 30% of requests (429 with Retry-After,
                5xx, hangs past the action's timeout, resets, and answers lost after the
                write was applied): the wave must finish and the shop must have applied
                every fulfilment exactly once

    .venv/bin/python -m bench.wave                  # 10,000 orders, ~1–2 minutes
    .venv/bin/python -m bench.wave --orders 2000    # quicker

The WooCommerce double is not WooCommerce (which cannot be installed here); it follows
the documented REST v3 rules, plus our documented `Idempotency-Key` extension.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import median
from connectors.loopback import FaultConfig, ShopSeed, WooCommerceConfig, WooCommerceServer
from storeops.durations import iso_to_us
from storeops.settings import Settings
from storeops.stack import Stack

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET = 1000.0  # orders per second, issue 4 §4


def _use_shop(shop: WooCommerceServer, home: Path) -> Settings:
    key, secret = shop.auth
    os.environ.update(
        {
            "STOREOPS_HOME": str(home),
            "STOREOPS_LEDGER": str(home / "ledger.db"),
            "STOREOPS_SOPS": str(HERE / "sops"),
            "STOREOPS_TEMPLATES": str(ROOT / "tests" / "fixtures" / "templates"),
            "STOREOPS_ROSTER": str(HERE / "sops" / "team.yaml"),
            "STOREOPS_STORE": f"woocommerce+{shop.base_url}",
            "STOREOPS_WOO_KEY": key,
            "STOREOPS_WOO_SECRET": secret,
        }
    )
    return Settings()


def wave(shop: WooCommerceServer, home: Path, orders: int) -> dict[str, Any]:
    """One SOP run over `orders` paid orders, through the run-sop flow."""
    from flows.run_sop import drive_on_prefect

    settings = _use_shop(shop, home)
    engine = settings.engine()
    run_id = engine.start("wave", {"limit": orders}, actor="ann", drive=False)
    began = time.perf_counter()
    status = asyncio.run(drive_on_prefect(run_id, settings))
    while status == "running":  # retries wait out their backoff; as the runner would,
        wake = engine.next_wake()  # start the next flow run when the earliest is due
        if wake is not None:
            time.sleep(max(0.0, min(5.0, (wake - time.time_ns() // 1000) / 1e6)))
        status = asyncio.run(drive_on_prefect(run_id, settings))
    seconds = time.perf_counter() - began
    events = engine.ledger.events(run_id)
    fulfil = [e for e in events if e.data.get("step", "").startswith("fulfil[")]
    attempts = [e for e in fulfil if e.type == "action.attempted"]
    done = [e for e in fulfil if e.type == "action.succeeded"]
    first = min(iso_to_us(e.at) for e in attempts)
    last = max(iso_to_us(e.at) for e in done)
    report = engine.ledger.verify(run_id)
    engine.close()
    return {
        "status": status,
        "orders": len(done),
        "attempts": len(attempts),
        "events": len(events),
        "run_seconds": seconds,
        "map_seconds": (last - first) / 1e6,
        "ledger_ok": report.ok,
        "shop": shop.stats()["app"],
    }


def per_order(shop: WooCommerceServer, home: Path, orders: int) -> dict[str, Any]:
    """The same fulfilment as one Prefect flow run per order, 10 flow runs at once."""
    from prefect import flow

    from connectors import store as s
    from connectors.woocommerce import WooCommerceStore

    _use_shop(shop, home)
    key, secret = shop.auth

    async def go() -> list[float]:
        store = WooCommerceStore(shop.base_url, key, secret)
        listed = await store.list_orders(s.ListOrders(status="paid", limit=orders), key="list")
        ids = [o["id"] for o in listed["orders"]]

        @flow(name="fulfil-one-order", persist_result=False)
        async def fulfil_one(order_id: str) -> str:
            done = await store.fulfil_order(s.FulfilOrder(order_id=order_id), key=order_id)
            return str(done["status"])

        gate = asyncio.Semaphore(10)
        took: list[float] = []

        async def one(order_id: str) -> None:
            async with gate:
                t0 = time.perf_counter()
                await fulfil_one(order_id)
                took.append(time.perf_counter() - t0)

        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in ids))
        took.append(time.perf_counter() - began)  # last: the wall time
        await store.aclose()
        return took

    took = asyncio.run(go())
    wall = took.pop()
    return {"orders": len(took), "seconds": wall, "median_flow_run": median(took)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000, help="orders in the wave")
    parser.add_argument("--per-order", type=int, default=150, help="orders as flow runs each")
    parser.add_argument("--chaos", type=int, default=2_000, help="orders in the chaos wave")
    parser.add_argument("--latency", type=float, default=0.020, help="store answer time, s")
    args = parser.parse_args(argv)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with tempfile.TemporaryDirectory(prefix="storeops-wave-") as tmp:
        base = Path(tmp)
        stack = Stack(base / "stack", port=0, ui=False, runner=False)
        up = stack.up(timeout=180)
        try:
            api = up.urls["prefect_api"]
            os.environ["PREFECT_API_URL"] = api
            with temporary_settings({PREFECT_API_URL: api}):
                seed = ShopSeed(paid_unfulfilled=args.orders + args.per_order, products=40)
                config = WooCommerceConfig(seed=seed)
                with WooCommerceServer(config, latency_s=args.latency, in_process=False) as shop:
                    alternative = per_order(shop, base / "per-order", args.per_order)
                    ours = wave(shop, base / "wave", args.orders)
                chaos_seed = ShopSeed(paid_unfulfilled=args.chaos, products=40, seed=2)
                faults = FaultConfig(rate=0.3, seed=11, hang_s=8.0, retry_after_s=1)
                with WooCommerceServer(
                    WooCommerceConfig(seed=chaos_seed),
                    latency_s=args.latency,
                    faults=faults,
                    in_process=False,
                ) as shop:
                    chaos = wave(shop, base / "chaos", args.chaos)
                    chaos["faults"] = shop.stats()["server"]["faults"]
        finally:
            stack.down()
    rate = ours["orders"] / ours["map_seconds"]
    alt_rate = alternative["orders"] / alternative["seconds"]
    print(f"order wave, store answering in {args.latency * 1000:.0f} ms (WooCommerce double)")
    print(
        f"  wave: {ours['orders']} orders fulfilled in {ours['map_seconds']:.1f} s of map = "
        f"{rate:,.0f} orders/s (whole run incl. listing {ours['run_seconds']:.1f} s; "
        f"{ours['events']} ledger events; status {ours['status']}; chain ok {ours['ledger_ok']})"
    )
    print(
        f"  per-order flow runs: {alternative['orders']} orders in "
        f"{alternative['seconds']:.1f} s = {alt_rate:.1f} orders/s "
        f"(median flow run {alternative['median_flow_run']:.2f} s, 10 at once)"
    )
    print(f"  wave / per-order = {rate / alt_rate:,.0f}×")
    shop = ours["shop"]
    print(
        f"  shop: {shop['orders_fulfilled']} orders fulfilled, applied "
        f"{shop['fulfilments_applied']}, more than once: "
        f"{len(shop['orders_fulfilled_more_than_once'])}"
    )
    verdict = "PASS" if rate >= TARGET else "MISS"
    print(f"  target ≥ {TARGET:,.0f} orders/s: {verdict} ({rate:,.0f})")
    cs = chaos["shop"]
    exactly_once = (
        chaos["status"] == "succeeded"
        and cs["orders_fulfilled"] == args.chaos
        and cs["fulfilments_applied"] == args.chaos
        and not cs["orders_fulfilled_more_than_once"]
    )
    print(
        f"  chaos (30% faults {chaos['faults']}): status {chaos['status']}, "
        f"{chaos['attempts']} attempts for {chaos['orders']} orders in "
        f"{chaos['map_seconds']:.1f} s; shop applied {cs['fulfilments_applied']} fulfilments "
        f"to {cs['orders_fulfilled']} orders, twice: {len(cs['orders_fulfilled_more_than_once'])}"
        f", duplicates absorbed {cs['duplicates_suppressed']}: "
        + ("exactly once: PASS" if exactly_once else "FAIL")
    )
    return 0 if verdict == "PASS" and exactly_once else 1


if __name__ == "__main__":
    raise SystemExit(main())
