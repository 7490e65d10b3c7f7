"""The HTTP transport under the store connectors: httpx's own pool versus the
`httpx-aiohttp` transport, through our ShopClient, against the WooCommerce double
answering in 20 ms (child process), 200 requests in flight.

NOTES.md measured httpx's pool collapsing with many requests in flight (encode/httpx
issue 3215); this re-measures it with our client and prints the ratio, which is why
`httpx-aiohttp` is a dependency.

    .venv/bin/python -m bench.transport [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from connectors.client import ClientOptions, ShopClient
from connectors.loopback import ShopSeed, WooCommerceConfig, WooCommerceServer


async def measure(shop: WooCommerceServer, requests: int, plain: bool, conc: int) -> float:
    transport = (
        httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        )
        if plain
        else None
    )
    client = ShopClient(
        shop.api_url + "/",
        name="bench",
        auth=shop.auth,
        options=ClientOptions(concurrency=conc),
        transport=transport,
    )
    try:
        first = await client.request("GET", "orders", what="list", params={"per_page": 100})
        ids = [order["id"] for order in first.json()]
        ids = (ids * (requests // len(ids) + 1))[:requests]
        began = time.perf_counter()
        await asyncio.gather(*(client.request("GET", f"orders/{i}", what="get") for i in ids))
        return requests / (time.perf_counter() - began)
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args(argv)
    seed = ShopSeed(paid_unfulfilled=200, products=20)
    with WooCommerceServer(WooCommerceConfig(seed=seed), latency_s=0.02, in_process=False) as shop:
        rates = {}
        for name, plain in (("httpx-aiohttp", False), ("httpx pool", True)):
            rates[name] = asyncio.run(measure(shop, args.requests, plain, args.concurrency))
    print(f"GET requests/s, {args.concurrency} in flight, server answering in 20 ms")
    for name, rate in rates.items():
        print(f"  {name:<14} {rate:8,.0f} requests/s")
    print(f"  httpx-aiohttp / httpx pool = {rates['httpx-aiohttp'] / rates['httpx pool']:.1f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
