"""WooCommerce (REST API v3) as a `connectors.store.Store`: same operations, same shapes.

Edge module: every HTTP call goes through `connectors.client.ShopClient` (timeouts, rate
limit, retries, redaction); imports connectors.store/client/http and storeops.errors,
never the loopback double. Configured as `STOREOPS_STORE=woocommerce+https://shop` with
STOREOPS_WOO_KEY / STOREOPS_WOO_SECRET (and optionally STOREOPS_WOO_RATE, requests/s).

How the store's model maps onto WooCommerce (simple products only; variations are not
looked at):

- Products are found by SKU (`GET /products?sku=`). Status active/draft/archived is
  publish/draft/private (pending and future read as draft, trash as archived). The price
  is `regular_price` in the store currency; `sale_price` is reported beside it. Category,
  attributes, images and lead time live in `storeops_*` product meta: WooCommerce needs
  category ids, and it downloads an image `src` again on every save.
- Stock is `stock_quantity`, which WooCommerce already reduces when an order is paid, so
  on_hand = available = stock_quantity and allocated = 0. An unmanaged product reports
  None. `low_stock_amount` unset means WooCommerce's store-wide default, taken as 2.
- Order statuses: pending, processing = paid, on-hold = on_hold, completed = fulfilled,
  cancelled/refunded/failed = cancelled. `platform_status` keeps WooCommerce's own word.
  Listed orders carry `notes: []` (notes cost one request per order); get_order and the
  order writes return the notes added by people (system notes are left out).

Writes send `Idempotency-Key` (derived from the action's key). WooCommerce ignores that
header; the loopback double honours it. What makes a repeat safe on a real shop too:
fulfil_order records its key in order meta and reads before writing (completed by our key
-> the first answer; by anything else -> Conflict); adjust_inventory and set_inventory
keep a ledger of recent keys in product meta (see `adjust_inventory` for the race).

Concurrent fulfil_order calls are coalesced (on by default; `batch=False` or
STOREOPS_WOO_BATCH=0 turns it off): up to 100 calls arriving within `batch_window` share
one `GET /orders?include=` and one `POST /orders/batch`, two requests instead of two per
order, with the same answers and the same exactly-once rule (`_FulfilBatcher`).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors import store as s
from connectors.client import ClientOptions, ShopClient, all_at_once, both
from connectors.http import redact
from storeops.errors import ConfigError, OperationError

__all__ = ["ENV_BATCH", "ENV_KEY", "ENV_RATE", "ENV_SECRET", "WooCommerceStore"]


ENV_KEY = "STOREOPS_WOO_KEY"
ENV_SECRET = "STOREOPS_WOO_SECRET"
ENV_RATE = "STOREOPS_WOO_RATE"
ENV_BATCH = "STOREOPS_WOO_BATCH"

API_PREFIX = "/wp-json/wc/v3"
PER_PAGE = 100  # WordPress's maximum
SKUS_PER_QUERY = 50  # a comma list of SKUs per request; keeps URLs short
BATCH_SIZE = 100  # WooCommerce's default limit of objects per batch request
#: how long a fulfilment batch gathers calls after the first: long enough for a wave's
#: callers, freed together by the previous batch's answer, to meet; short beside a round trip
BATCH_WINDOW = 0.002

#: order meta: {"key": the fulfil action's key, "tracking": {number, carrier} | None}
META_FULFILMENT = "storeops_fulfilment"
META_HOLD_REASON = "storeops_hold_reason"
#: order meta: {"key", "status"} of the last cancel, hold or release storeops applied
META_STATUS_KEY = "storeops_status_change"
#: product meta: [{key, op, delta, before, on_hand, reason}], the last STOCK_LEDGER_SIZE
META_STOCK_LEDGER = "storeops_stock_ledger"
META_CATEGORY = "storeops_category"
META_ATTRIBUTES = "storeops_attributes"
META_IMAGES = "storeops_images"
META_LEAD_TIME = "storeops_lead_time_days"
STOCK_LEDGER_SIZE = 50
ADJUST_ROUNDS = 5

#: WooCommerce's store-wide `woocommerce_notify_low_stock_amount` out of the box
DEFAULT_LOW_STOCK = 2
DEFAULT_LEAD_TIME_DAYS = 7

_ORDER_TO_WOO: dict[str, tuple[str, ...]] = {
    "pending": ("pending",),
    "paid": ("processing",),
    "on_hold": ("on-hold",),
    "fulfilled": ("completed",),
    "cancelled": ("cancelled", "refunded", "failed"),
}
_ORDER_FROM_WOO = {
    "pending": "pending",
    "checkout-draft": "pending",
    "processing": "paid",
    "on-hold": "on_hold",
    "completed": "fulfilled",
    "cancelled": "cancelled",
    "refunded": "cancelled",
    "failed": "cancelled",
    "trash": "cancelled",
}
#: orders whose lines count as sold (stock was reduced and not given back)
_SOLD = ("processing", "on-hold", "completed")
#: orders that may be cancelled or held, as in the local store (pending, paid, on_hold)
_PARKABLE = ("pending", "processing", "on-hold")

_PRODUCT_TO_WOO = {"active": "publish", "draft": "draft", "archived": "private"}
_PRODUCT_FROM_WOO = {
    "publish": "active",
    "draft": "draft",
    "pending": "draft",
    "future": "draft",
    "private": "archived",
    "trash": "archived",
}

_LOOPBACK_HOSTS = frozenset({"localhost"})


def _now() -> datetime:
    return datetime.now(UTC)


def _woo_time(moment: datetime) -> str:
    """A query date as WooCommerce reads it with `dates_are_gmt=true` (UTC, no offset)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _gmt(text: Any) -> datetime | None:
    """A `*_gmt` field (UTC without an offset) as an aware datetime."""
    if not isinstance(text, str) or not text:
        return None
    parsed = datetime.fromisoformat(text.removesuffix("Z"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _money(value: Any) -> float:
    if value in (None, ""):
        return 0.0
    return round(float(value), 2)


def _price_text(value: float) -> str:
    return f"{value:.2f}"


def _meta(raw: Mapping[str, Any], key: str) -> Any:
    for entry in raw.get("meta_data") or []:
        if isinstance(entry, dict) and entry.get("key") == key:
            return entry.get("value")
    return None


def _meta_entry(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": value}


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _api_base(url: str) -> str:
    """The REST base for a shop URL; Basic auth only where WooCommerce accepts it."""
    shown = redact(url)
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"WooCommerce URL {shown!r} is not an http(s) URL; expected e.g. "
            "STOREOPS_STORE=woocommerce+https://shop.example.com"
        )
    if parts.username or parts.password:
        raise ConfigError(
            f"WooCommerce URL {shown!r} carries credentials; put the REST API key in "
            f"{ENV_KEY} and {ENV_SECRET} instead"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"WooCommerce URL {shown!r} is plain http: WooCommerce accepts key and secret "
            "(HTTP Basic) only over HTTPS, and OAuth 1.0a signing is not supported here; "
            "use https://"
        )
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):
        path = path[: -len(API_PREFIX)]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path + API_PREFIX, "", ""))


def _sub_key(key: str, *parts: object) -> str:
    """A per-request idempotency key: one action may send several writes, and a write
    whose body depends on what was read gets a key per state it was based on."""
    if not parts:
        return key
    return f"{key}:" + ":".join(str(p) for p in parts)


class WooCommerceStore:
    """A `connectors.store.Store` over one WooCommerce shop's REST API v3.

    Secrets never appear in messages or repr (ShopClient redacts them). Order ids are
    WooCommerce's numeric ids, as strings. `batch` coalesces concurrent fulfilments
    (`batch_window` seconds after the first call; 0 = the same event-loop turn)."""

    name = "woocommerce"

    def __init__(
        self,
        base_url: str,
        consumer_key: str,
        consumer_secret: str,
        *,
        options: ClientOptions | None = None,
        batch: bool = True,
        batch_window: float = BATCH_WINDOW,
    ) -> None:
        if not consumer_key or not consumer_secret:
            raise ConfigError(
                f"WooCommerce needs a REST API consumer key and secret ({ENV_KEY}, {ENV_SECRET})"
            )
        self.api_url = _api_base(base_url)
        self._client = ShopClient(
            self.api_url + "/",
            name=self.name,
            headers={"Accept": "application/json", "User-Agent": "storeops-woocommerce"},
            auth=(consumer_key, consumer_secret),
            options=options,
            secrets=(consumer_key, consumer_secret),
        )
        self._currency: str | None = None
        self._currency_lock = asyncio.Lock()
        # stock writes are read-modify-write: one at a time per SKU in this process
        self._stock_locks: dict[str, asyncio.Lock] = {}
        self._fulfilments = (
            _FulfilBatcher(
                self._fulfil_alone,
                self._fulfil_many,
                window=max(0.0, batch_window),
                size=BATCH_SIZE,
            )
            if batch
            else None
        )

    @classmethod
    def from_env(cls, url: str, environ: Mapping[str, str]) -> WooCommerceStore:
        """The store for `STOREOPS_STORE=woocommerce+<url>`; keys from the environment."""
        missing = [name for name in (ENV_KEY, ENV_SECRET) if not environ.get(name)]
        if missing:
            raise ConfigError(
                f"STOREOPS_STORE=woocommerce+{redact(url)} needs {' and '.join(missing)}: the "
                "consumer key (ck_...) and secret (cs_...) made under WooCommerce > Settings "
                "> Advanced > REST API, with read/write permission"
            )
        rate: float | None = None
        raw_rate = environ.get(ENV_RATE, "").strip()
        if raw_rate:
            try:
                rate = float(raw_rate)
            except ValueError:
                rate = -1.0
            if not rate > 0:
                raise ConfigError(
                    f"{ENV_RATE}={raw_rate!r} is not a positive number of requests per second"
                )
        raw_batch = environ.get(ENV_BATCH, "").strip().lower()
        if raw_batch not in ("", "1", "0", "true", "false", "on", "off", "yes", "no"):
            raise ConfigError(
                f"{ENV_BATCH}={raw_batch!r} is not a switch; use 1 (batch concurrent "
                "fulfilments, the default) or 0 (one order per request)"
            )
        return cls(
            url,
            environ[ENV_KEY],
            environ[ENV_SECRET],
            options=ClientOptions(rate=rate) if rate is not None else None,
            batch=raw_batch not in ("0", "false", "off", "no"),
        )

    def __repr__(self) -> str:
        return f"WooCommerceStore({self.api_url!r})"

    @property
    def client(self) -> ShopClient:
        """The shop's HTTP client (its limiter is shared by every call)."""
        return self._client

    async def aclose(self) -> None:
        if self._fulfilments is not None:
            await self._fulfilments.aclose()
        await self._client.aclose()

    # ------------------------------------------------------------ plumbing

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        key: str | None = None,
        repeatable: bool | None = None,
    ) -> Any:
        headers = {"Idempotency-Key": key} if key else None
        response = await self._client.request(
            method, path, what=what, params=params, json=body, headers=headers,
            repeatable=repeatable,
        )  # fmt: skip
        return _decode(response, what)

    async def _collect(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        what: str,
        limit: int | None = None,
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Every item of a listing, page by page (per_page=100) until X-WP-TotalPages,
        or until `limit` items passed `keep`. Items are de-duplicated by id: a listing
        that changes while it is read can shift an item onto the next page (it can also
        shift one past us; callers that filter by status must accept that)."""
        found: list[dict[str, Any]] = []
        seen: set[Any] = set()
        page, pages = 1, 1
        while page <= pages:
            label = f"{what} (page {page})"
            response = await self._client.request(
                "GET", path, what=label, params={**params, "per_page": PER_PAGE, "page": page}
            )
            items = _decode(response, label)
            if not isinstance(items, list):
                raise _unexpected(label, "a JSON list", items)
            total = response.headers.get("x-wp-totalpages")
            if total is not None and total.strip().isdigit():
                pages = int(total)
            elif len(items) == PER_PAGE:  # no header (a proxy dropped it): read on
                pages = page + 1
            for item in items:
                if not isinstance(item, dict) or item.get("id") in seen:
                    continue
                seen.add(item.get("id"))
                if keep is None or keep(item):
                    found.append(item)
                    if limit is not None and len(found) >= limit:
                        return found
            if not items:
                break
            page += 1
        return found

    async def _currency_code(self) -> str:
        """The store currency, read once: the settings API if the key may read it, else
        the newest order's currency."""
        if self._currency is not None:
            return self._currency
        async with self._currency_lock:
            if self._currency is None:
                self._currency = await self._discover_currency()
        return self._currency

    async def _discover_currency(self) -> str:
        try:
            setting = await self._call(
                "GET", "/settings/general/woocommerce_currency", what="read the store currency"
            )
        except OperationError as exc:
            if exc.error not in ("NotFound", "Unauthorized"):
                raise
        else:
            if isinstance(setting, dict) and isinstance(setting.get("value"), str):
                return str(setting["value"])
        newest = await self._call(
            "GET", "/orders", what="read the store currency from an order", params={"per_page": 1}
        )
        if isinstance(newest, list) and newest and isinstance(newest[0], dict):
            return str(newest[0].get("currency") or "")
        return ""

    # ------------------------------------------------------------ products

    async def _raw_product(self, sku: str) -> dict[str, Any]:
        found = await self._call(
            "GET",
            "/products",
            what=f"find product SKU {sku!r}",
            params={"sku": sku, "status": "any", "per_page": 10},
        )
        if not isinstance(found, list):
            raise _unexpected(f"find product SKU {sku!r}", "a JSON list", found)
        for item in found:
            if isinstance(item, dict) and item.get("sku") == sku:
                return item
        raise OperationError(
            "NotFound",
            f"woocommerce: no product with SKU {sku!r} (simple products only; a variation's "
            "SKU is not looked up)",
        )

    def _product(self, raw: Mapping[str, Any], currency: str) -> dict[str, Any]:
        stock = _stock(raw)
        sale = raw.get("sale_price")
        return {
            "sku": str(raw.get("sku") or ""),
            "title": str(raw.get("name") or ""),
            "price": _money(raw.get("regular_price") or raw.get("price")),
            "sale_price": _money(sale) if sale not in (None, "") else None,
            "currency": currency,
            "status": _product_status(raw),
            "category": _category(raw),
            "attributes": _attributes(raw),
            "description": str(raw.get("description") or ""),
            "images": _images(raw),
            "on_hand": stock,
            "available": stock,
            "low_stock_threshold": _low_stock(raw),
            "id": str(raw.get("id", "")),
        }

    async def list_products(self, req: s.ListProducts, *, key: str) -> dict[str, Any]:
        """Products by id order until `limit` matched, returned sorted by SKU."""
        # draft reads WooCommerce's draft, pending and future: filter those here
        exact = req.status in ("active", "archived")
        woo_status = _PRODUCT_TO_WOO[req.status] if exact and req.status else "any"

        def keep(raw: dict[str, Any]) -> bool:
            if req.status is not None and _product_status(raw) != req.status:
                return False
            return not req.category or _category(raw) == req.category

        currency = await self._currency_code()
        raws = await self._collect(
            "/products",
            {"status": woo_status, "orderby": "id", "order": "asc"},
            what="list products",
            limit=req.limit,
            keep=keep,
        )
        products = sorted((self._product(r, currency) for r in raws), key=lambda p: p["sku"])
        return {"products": products, "count": len(products)}

    async def get_product(self, req: s.GetProduct, *, key: str) -> dict[str, Any]:
        currency = await self._currency_code()
        return self._product(await self._raw_product(req.sku), currency)

    async def upsert_product(self, req: s.UpsertProduct, *, key: str) -> dict[str, Any]:
        """Create the product (managed stock, 0 on hand) or update the one with this SKU.
        Stock is left alone on update. A currency given explicitly must be the store's."""
        currency = await self._currency_code()
        if "currency" in req.model_fields_set and currency and req.currency != currency:
            raise OperationError(
                "Invalid",
                f"woocommerce: prices are in the store currency {currency}; got "
                f"currency={req.currency!r} for SKU {req.sku!r}",
            )
        body: dict[str, Any] = {
            "name": req.title,
            "sku": req.sku,
            "regular_price": _price_text(req.price),
            "status": _PRODUCT_TO_WOO[req.status],
            "description": req.description,
            "low_stock_amount": req.low_stock_threshold,
            "meta_data": [
                _meta_entry(META_CATEGORY, req.category),
                _meta_entry(META_ATTRIBUTES, req.attributes),
                _meta_entry(META_IMAGES, req.images),
            ],
        }
        try:
            existing: dict[str, Any] | None = await self._raw_product(req.sku)
        except OperationError as exc:
            if exc.error != "NotFound":
                raise
            existing = None
        if existing is None:
            try:
                raw = await self._call(
                    "POST",
                    "/products",
                    what=f"create product SKU {req.sku!r}",
                    body={**body, "type": "simple", "manage_stock": True, "stock_quantity": 0},
                    key=_sub_key(key, "create"),
                )
                product = self._product(_as_dict(raw, "create product"), currency)
                return {**product, "created": True}
            except OperationError as exc:
                # a retried create whose first answer was lost: the SKU exists now
                if exc.error != "Invalid" or "sku" not in str(exc).lower():
                    raise
                existing = await self._raw_product(req.sku)
        raw = await self._call(
            "PUT",
            f"/products/{int(existing['id'])}",
            what=f"update product SKU {req.sku!r}",
            body=body,
            key=_sub_key(key, "update"),
        )
        return {**self._product(_as_dict(raw, "update product"), currency), "created": False}

    async def _update_product(
        self, sku: str, body: Mapping[str, Any], *, what: str, key: str
    ) -> dict[str, Any]:
        currency = await self._currency_code()
        existing = await self._raw_product(sku)
        raw = await self._call(
            "PUT", f"/products/{int(existing['id'])}", what=what, body=dict(body), key=key
        )
        return self._product(_as_dict(raw, what), currency)

    async def publish_product(self, req: s.PublishProduct, *, key: str) -> dict[str, Any]:
        return await self._update_product(
            req.sku,
            {"status": "publish"},
            what=f"publish product SKU {req.sku!r}",
            key=_sub_key(key, "publish"),
        )

    async def unpublish_product(self, req: s.UnpublishProduct, *, key: str) -> dict[str, Any]:
        return await self._update_product(
            req.sku,
            {"status": "draft"},
            what=f"unpublish product SKU {req.sku!r}",
            key=_sub_key(key, "unpublish"),
        )

    async def set_price(self, req: s.SetPrice, *, key: str) -> dict[str, Any]:
        return await self._update_product(
            req.sku,
            {"regular_price": _price_text(req.price)},
            what=f"set the price of SKU {req.sku!r}",
            key=_sub_key(key, "price"),
        )

    # ------------------------------------------------------------ inventory

    async def _products_for_levels(self, skus: list[str] | None) -> list[dict[str, Any]]:
        if not skus:
            return await self._collect(
                "/products",
                {"status": "any", "orderby": "id", "order": "asc"},
                what="list products for stock levels",
            )
        wanted = list(dict.fromkeys(skus))
        chunks = [wanted[i : i + SKUS_PER_QUERY] for i in range(0, len(wanted), SKUS_PER_QUERY)]
        found = await all_at_once(
            [
                self._collect(
                    "/products",
                    {"sku": ",".join(chunk), "status": "any", "orderby": "id", "order": "asc"},
                    what=f"find {len(chunk)} products by SKU",
                    keep=_sku_in(chunk),
                )
                for chunk in chunks
            ]
        )
        return [raw for part in found for raw in part]

    async def _sold(self, since: datetime) -> list[dict[str, Any]]:
        return await self._collect(
            "/orders",
            {
                "status": ",".join(_SOLD),
                "after": _woo_time(since - timedelta(seconds=1)),
                "dates_are_gmt": "true",
                "orderby": "date",
                "order": "asc",
            },
            what="list orders for sales velocity",
        )

    async def inventory_levels(self, req: s.InventoryLevels, *, key: str) -> dict[str, Any]:
        """Stock from the products, velocity from paid orders (processing, on-hold,
        completed) created in the window, read in full (WooCommerce has no sales report
        per SKU in the REST API v3)."""
        now = _now()
        since_n = now - timedelta(days=req.window_days)
        since_7 = now - timedelta(days=7)
        raws, orders = await both(
            self._products_for_levels(req.skus), self._sold(min(since_n, since_7))
        )
        sold_7: dict[str, int] = {}
        sold_n: dict[str, int] = {}
        for order in orders:
            created = _gmt(order.get("date_created_gmt"))
            if created is None:
                continue
            for line in order.get("line_items") or []:
                sku = str(line.get("sku") or "")
                quantity = int(line.get("quantity") or 0)
                if created >= since_7:
                    sold_7[sku] = sold_7.get(sku, 0) + quantity
                if created >= since_n:
                    sold_n[sku] = sold_n.get(sku, 0) + quantity
        levels = [
            s.stock_level(
                sku=str(raw["sku"]),
                title=str(raw.get("name") or ""),
                on_hand=_stock(raw),  # WooCommerce's stock already excludes unshipped orders
                allocated=0,
                sold_7d=sold_7.get(str(raw["sku"]), 0),
                sold_window=sold_n.get(str(raw["sku"]), 0),
                window_days=req.window_days,
                low_stock_threshold=_low_stock(raw),
                lead_time_days=_lead_time(raw),
            )
            for raw in sorted(raws, key=lambda r: str(r.get("sku") or ""))
            if raw.get("sku") and _product_status(raw) != "archived"
        ]
        return s.inventory_answer(levels, req, now)

    async def _write_stock(
        self, raw: Mapping[str, Any], quantity: int, entry: dict[str, Any], key: str, what: str
    ) -> dict[str, Any]:
        """PUT an absolute stock_quantity together with the ledger it was based on plus
        `entry`, in one product save. The request key names the state it was based on,
        so a write built on another reading never replays an older answer."""
        ledger = _ledger(raw)
        base = hashlib.sha256(
            json.dumps([raw.get("stock_quantity"), ledger[-1:]], sort_keys=True).encode()
        ).hexdigest()[:12]
        body = {
            "manage_stock": True,
            "stock_quantity": quantity,
            "meta_data": [
                _meta_entry(META_STOCK_LEDGER, [*ledger, entry][-STOCK_LEDGER_SIZE:]),
            ],
        }
        written = await self._call(
            "PUT",
            f"/products/{int(raw['id'])}",
            what=what,
            body=body,
            key=_sub_key(key, entry["op"], base),
        )
        return _as_dict(written, what)

    def _stock_lock(self, sku: str) -> asyncio.Lock:
        return self._stock_locks.setdefault(sku, asyncio.Lock())

    async def adjust_inventory(self, req: s.AdjustInventory, *, key: str) -> dict[str, Any]:
        """Add `delta` to stock_quantity once per key, by read-modify-write.

        WooCommerce has no delta endpoint and no conditional update. So: stock writes to
        one SKU are serialised within this store object; each reads the product, writes
        the new absolute quantity together with a ledger of recent keys (product meta)
        in one save, then reads again. A repeat finds its key in the ledger and returns
        the first answer, on a real shop too. If the check read shows our key gone, a
        writer elsewhere replaced our write, and we apply again on what is there now.

        THE RACE LEFT (WooCommerce cannot close it): a write from elsewhere (a checkout
        reducing stock, an admin edit, another storeops process) landing between our
        read and our write is overwritten and lost; the window is about one round trip,
        and the check read only catches a replacement that lands before it. A repeat
        sent while the first write is still in flight may apply twice on a real shop
        (the loopback double's Idempotency-Key prevents it there)."""
        what = f"adjust stock of SKU {req.sku!r} by {req.delta}"
        async with self._stock_lock(req.sku):
            for _round in range(ADJUST_ROUNDS):
                raw = await self._raw_product(req.sku)
                done = _ledger_find(raw, key)
                if done is not None:
                    return _replayed(req.sku, done)
                before = _stock(raw)
                if before is None:
                    raise OperationError(
                        "Invalid",
                        f"woocommerce: SKU {req.sku!r} does not manage stock (manage_stock "
                        "is false); set an absolute quantity with set_inventory first",
                    )
                after = before + req.delta
                if after < 0:
                    raise OperationError(
                        "Invalid",
                        f"woocommerce: adjusting {req.sku} by {req.delta} would leave "
                        f"{after} in stock (has {before})",
                    )
                entry = {
                    "key": key,
                    "op": "adjust",
                    "delta": req.delta,
                    "before": before,
                    "on_hand": after,
                    "reason": req.reason,
                }
                await self._write_stock(raw, after, entry, key, what)
                if _ledger_find(await self._raw_product(req.sku), key) is not None:
                    return {"sku": req.sku, "before": before, "on_hand": after}
        raise OperationError(
            "Conflict",
            f"woocommerce: {what}: our write was replaced by another writer "
            f"{ADJUST_ROUNDS} times in a row; try again",
            retryable=True,
        )

    async def set_inventory(self, req: s.SetInventory, *, key: str) -> dict[str, Any]:
        """Set stock_quantity absolutely (and turn on managed stock); a repeat with the
        same key finds it in the ledger and changes nothing."""
        async with self._stock_lock(req.sku):
            raw = await self._raw_product(req.sku)
            done = _ledger_find(raw, key)
            if done is not None:
                return _replayed(req.sku, done)
            before = _stock(raw)
            entry = {
                "key": key,
                "op": "set",
                "delta": None,
                "before": before,
                "on_hand": req.quantity,
                "reason": "count",
            }
            what = f"set stock of SKU {req.sku!r} to {req.quantity}"
            await self._write_stock(raw, req.quantity, entry, key, what)
        return {"sku": req.sku, "before": before, "on_hand": req.quantity}

    # ------------------------------------------------------------ orders

    async def list_orders(self, req: s.ListOrders, *, key: str) -> dict[str, Any]:
        """Orders oldest first, `since`/`until` inclusive on the creation time (UTC)."""
        statuses = _ORDER_TO_WOO[req.status] if req.status else ("any",)
        params: dict[str, Any] = {
            "status": ",".join(statuses),
            "orderby": "date",
            "order": "asc",
            "dates_are_gmt": "true",
        }
        # WooCommerce's after/before are exclusive; widen by a second, filter here
        if req.since:
            params["after"] = _woo_time(req.since - timedelta(seconds=1))
        if req.until:
            params["before"] = _woo_time(req.until + timedelta(seconds=1))
        since = _aware(req.since)
        until = _aware(req.until)

        def keep(raw: dict[str, Any]) -> bool:
            created = _gmt(raw.get("date_created_gmt"))
            if created is None:
                return since is None and until is None
            return (since is None or created >= since) and (until is None or created <= until)

        raws = await self._collect(
            "/orders", params, what="list orders", limit=req.limit, keep=keep
        )
        orders = [_order(r, []) for r in raws]
        gmv = round(sum(o["total"] for o in orders if o["status"] != "cancelled"), 2)
        return {
            "orders": orders,
            "count": len(orders),
            "gmv": gmv,
            "average_order_value": round(gmv / len(orders), 2) if orders else 0.0,
        }

    async def _raw_order(self, order_id: str) -> dict[str, Any]:
        found = await self._call(
            "GET", f"/orders/{_order_number(order_id)}", what=f"get order {order_id}"
        )
        return _as_dict(found, f"get order {order_id}")

    async def _notes(self, order_id: str) -> list[dict[str, Any]]:
        found = await self._call(
            "GET",
            f"/orders/{_order_number(order_id)}/notes",
            what=f"list notes of order {order_id}",
            params={"type": "any"},
        )
        if not isinstance(found, list):
            raise _unexpected(f"list notes of order {order_id}", "a JSON list", found)
        return [n for n in found if isinstance(n, dict)]

    async def _full_order(self, order_id: str) -> dict[str, Any]:
        raw, notes = await both(self._raw_order(order_id), self._notes(order_id))
        return _order(raw, _people_notes(notes))

    async def get_order(self, req: s.GetOrder, *, key: str) -> dict[str, Any]:
        return await self._full_order(req.order_id)

    async def _add_note(self, order_id: str, text: str, key: str) -> None:
        await self._call(
            "POST",
            f"/orders/{_order_number(order_id)}/notes",
            what=f"add a note to order {order_id}",
            body={"note": text, "customer_note": False},
            key=key,
            # a real shop ignores Idempotency-Key: a lost answer must not add a second note
            repeatable=False,
        )

    async def _ensure_note(self, order_id: str, text: str, key: str) -> None:
        """Add the note unless a note with this text is there (a repeat after the first
        attempt's note landed but its answer was lost)."""
        wanted = _plain(text)
        if not any(_plain(n.get("note")) == wanted for n in await self._notes(order_id)):
            await self._add_note(order_id, text, key)

    async def fulfil_order(self, req: s.FulfilOrder, *, key: str) -> dict[str, Any]:
        """processing -> completed once per key, tracking recorded in order meta and as a
        private order note. Completing makes WooCommerce send its "order completed"
        e-mail. A repeat with the same key returns the first answer (`replayed`); an order
        completed by another key or by hand -> Conflict, not retryable.

        With batching on (the default), calls that arrive together share one read of up
        to 100 orders and one `POST /orders/batch`; each caller gets what it would have
        got alone (see `_FulfilBatcher`). A tracking note is one request per order either
        way: WooCommerce has no batch endpoint for notes.

        Race left: two different keys fulfilling the same order at the same moment from
        two processes both read "processing"; WooCommerce applies the transition once
        (completed -> completed is a no-op) but both callers are told they fulfilled it
        (within one store object, calls for one order are taken one batch at a time)."""
        order_id = req.order_id
        tracking = (
            {"number": req.tracking_number, "carrier": req.carrier}
            if req.tracking_number or req.carrier
            else None
        )
        if self._fulfilments is not None:
            done = await self._fulfilments.submit(order_id, key, tracking)
        else:
            done = await self._fulfil_alone(order_id, key, tracking)
        text = _fulfilment_note(tracking, req.note)
        if text:
            if done.get("replayed"):
                await self._ensure_note(order_id, text, _sub_key(key, "note"))
            else:
                await self._add_note(order_id, text, _sub_key(key, "note"))
        return done

    async def _fulfil_alone(
        self, order_id: str, key: str, tracking: dict[str, Any] | None
    ) -> dict[str, Any]:
        """One order: read it, then complete it unless it was completed already."""
        decided = _fulfil_decision(order_id, await self._raw_order(order_id), key)
        if decided is not None:
            return decided
        return await self._complete(order_id, key, tracking)

    async def _complete(
        self, order_id: str, key: str, tracking: dict[str, Any] | None
    ) -> dict[str, Any]:
        written = await self._call(
            "PUT",
            f"/orders/{_order_number(order_id)}",
            what=f"fulfil order {order_id}",
            body=_fulfil_update(key, tracking),
            key=key,
        )
        return _fulfilled(order_id, _as_dict(written, f"fulfil order {order_id}"), tracking)

    async def _fulfil_many(self, items: Sequence[_Fulfilment]) -> None:
        """Settle each item's future: one read of every order (`include`), then one batch
        update of those still processing. A failed read or batch fails every item that
        needed it, with the same (retryable) error; a repeat then reads its order
        completed with its key and is answered as a replay."""
        orders = ",".join(str(item.number) for item in items)
        what = f"read {len(items)} orders to fulfil"
        listed = await self._call(
            "GET", "/orders", what=what, params={"include": orders, "per_page": PER_PAGE}
        )
        if not isinstance(listed, list):
            raise _unexpected(what, "a JSON list", listed)
        by_number = {raw.get("id"): raw for raw in listed if isinstance(raw, dict) and "id" in raw}
        writes: list[_Fulfilment] = []
        alone: list[_Fulfilment] = []
        for item in items:
            raw = by_number.get(item.number)
            if raw is None:  # not listed (trash, a plugin's filter): ask as one order would
                alone.append(item)
                continue
            try:
                decided = _fulfil_decision(item.order_id, raw, item.key)
            except OperationError as exc:
                item.fail(exc)
                continue
            if decided is not None:
                item.succeed(decided)
            else:
                writes.append(item)
        await asyncio.gather(
            *(
                item.settle(self._fulfil_alone(item.order_id, item.key, item.tracking))
                for item in alone
            ),
            self._complete_many(writes),
        )

    async def _complete_many(self, items: Sequence[_Fulfilment]) -> None:
        if len(items) <= 1:
            for item in items:
                await item.settle(self._complete(item.order_id, item.key, item.tracking))
            return
        body = {
            "update": [
                {"id": item.number, **_fulfil_update(item.key, item.tracking)} for item in items
            ]
        }
        what = f"fulfil {len(items)} orders in one batch"
        # the batch's own key names its content: a repeat of this very request replays
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
        try:
            answer = _as_dict(
                await self._call(
                    "POST", "/orders/batch", what=what, body=body, key=f"batch:{digest}"
                ),
                what,
            )
        except OperationError as exc:
            for item in items:
                item.fail(exc)
            return
        updated = answer.get("update")
        answered = {
            entry.get("id"): entry
            for entry in (updated if isinstance(updated, list) else [])
            if isinstance(entry, dict)
        }
        for item in items:
            entry = answered.get(item.number)
            label = f"fulfil order {item.order_id}"
            if entry is None:
                item.fail(
                    OperationError(
                        "Unavailable",
                        f"woocommerce: {label}: the batch answer has no entry for this order; "
                        "whether it was applied is unknown (a repeat reads it first)",
                        retryable=True,
                    )
                )
            elif isinstance(entry.get("error"), dict):
                item.fail(self._item_error(label, entry["error"]))
            else:
                try:
                    item.succeed(_fulfilled(item.order_id, entry, item.tracking))
                except OperationError as exc:
                    item.fail(exc)

    def _item_error(self, what: str, error: Mapping[str, Any]) -> OperationError:
        """A failed batch item as the error its own request would have raised: the HTTP
        status WordPress put in `data.status`, the same mapping and redaction."""
        data = error.get("data")
        status = data.get("status") if isinstance(data, dict) else None
        code = status if isinstance(status, int) and 400 <= status <= 599 else 500
        return self._client.error(what, httpx.Response(code, json=dict(error)))

    async def _park(self, order_id: str, to: str, reason: str, key: str) -> dict[str, Any]:
        """pending/processing/on-hold -> `to`, the key recorded in order meta so that a
        repeat after a lost answer returns the order instead of a Conflict."""
        raw = await self._raw_order(order_id)
        status = str(raw.get("status") or "")
        ours = _ORDER_FROM_WOO[to]
        note = f"{ours}: {reason}" if reason else ""
        record = _meta(raw, META_STATUS_KEY)
        if status == to and isinstance(record, dict) and record.get("key") == key:
            if note:
                await self._ensure_note(order_id, note, _sub_key(key, "note"))
            return {**await self._full_order(order_id), "replayed": True}
        if status not in _PARKABLE:
            raise OperationError(
                "Conflict",
                f"woocommerce: order {order_id} is {_ORDER_FROM_WOO.get(status, status)} "
                f"(WooCommerce status {status!r}); only pending, paid or on_hold orders "
                f"can become {ours}",
            )
        meta = [_meta_entry(META_STATUS_KEY, {"key": key, "status": to})]
        if to == "on-hold":
            meta.append(_meta_entry(META_HOLD_REASON, reason))
        await self._call(
            "PUT",
            f"/orders/{_order_number(order_id)}",
            what=f"set order {order_id} to {ours}",
            body={"status": to, "meta_data": meta},
            key=_sub_key(key, ours),
        )
        if note:
            await self._add_note(order_id, note, _sub_key(key, "note"))
        return await self._full_order(order_id)

    async def cancel_order(self, req: s.CancelOrder, *, key: str) -> dict[str, Any]:
        """-> cancelled (WooCommerce restocks; no money moves: refunds are not covered)."""
        return await self._park(req.order_id, "cancelled", req.reason, key)

    async def hold_order(self, req: s.HoldOrder, *, key: str) -> dict[str, Any]:
        return await self._park(req.order_id, "on-hold", req.reason, key)

    async def release_order(self, req: s.ReleaseOrder, *, key: str) -> dict[str, Any]:
        """on-hold -> processing if the order was paid (WooCommerce's `date_paid`), else
        -> pending (an unpaid order held, e.g. awaiting a bank transfer, must not be marked
        paid). WooCommerce's side effects follow its own rules: processing sends the
        customer the "processing order" e-mail; pending gives the held stock back. The key
        goes into order meta, so a repeat after a lost answer returns the order (and adds
        a missing note) instead of changing anything; any other open order that is not on
        hold is left as it is. Completed, cancelled, refunded or failed -> Conflict."""
        order_id = req.order_id
        raw = await self._raw_order(order_id)
        status = str(raw.get("status") or "")
        note = f"released: {req.note}" if req.note else ""
        if status != "on-hold":
            ours = _ORDER_FROM_WOO.get(status, status)
            if ours not in ("pending", "paid"):
                raise OperationError(
                    "Conflict",
                    f"woocommerce: order {order_id} is {ours} (WooCommerce status {status!r}); "
                    "only on_hold orders can be released",
                )
            record = _meta(raw, META_STATUS_KEY)
            if isinstance(record, dict) and record.get("key") == key:
                if note:  # this key's release landed but its answer (or its note) was lost
                    await self._ensure_note(order_id, note, _sub_key(key, "note"))
                return {**await self._full_order(order_id), "replayed": True}
            return await self._full_order(order_id)
        back = "processing" if raw.get("date_paid_gmt") or raw.get("date_paid") else "pending"
        await self._call(
            "PUT",
            f"/orders/{_order_number(order_id)}",
            what=f"release order {order_id}",
            body={
                "status": back,
                "meta_data": [
                    _meta_entry(META_STATUS_KEY, {"key": key, "status": back}),
                    _meta_entry(META_HOLD_REASON, ""),
                ],
            },
            key=_sub_key(key, "release"),
        )
        if note:
            await self._add_note(order_id, note, _sub_key(key, "note"))
        return await self._full_order(order_id)

    async def add_order_note(self, req: s.AddOrderNote, *, key: str) -> dict[str, Any]:
        """A private note (`customer_note: false`); returns the order with its notes."""
        await self._ensure_note(req.order_id, req.message, _sub_key(key, "note"))
        return await self._full_order(req.order_id)

    # ------------------------------------------------------------ inquiries

    async def list_inquiries(self, req: s.ListInquiries, *, key: str) -> dict[str, Any]:
        raise _no_inquiries()

    async def reply_inquiry(self, req: s.ReplyInquiry, *, key: str) -> dict[str, Any]:
        raise _no_inquiries()


# ---------------------------------------------------------------- fulfilment batches


class _Fulfilment:
    """One caller's fulfilment waiting in a batch, and the future it awaits."""

    __slots__ = ("done", "key", "number", "order_id", "tracking")

    def __init__(
        self,
        order_id: str,
        number: int,
        key: str,
        tracking: dict[str, Any] | None,
        done: asyncio.Future[dict[str, Any]],
    ) -> None:
        self.order_id = order_id
        self.number = number
        self.key = key
        self.tracking = tracking
        self.done = done

    def succeed(self, result: dict[str, Any]) -> None:
        if not self.done.done():  # a caller that gave up (cancelled) is not told
            self.done.set_result(result)

    def fail(self, error: BaseException) -> None:
        if self.done.done():
            return
        if isinstance(error, OperationError):  # one per caller: each raise adds a traceback
            error = OperationError(
                error.error,
                str(error),
                retryable=error.retryable,
                retry_after=error.retry_after,
            )
        self.done.set_exception(error)

    async def settle(self, work: Coroutine[Any, Any, dict[str, Any]]) -> None:
        try:
            self.succeed(await work)
        except Exception as exc:
            self.fail(exc)


class _Batch:
    __slots__ = ("finished", "items", "timer")

    def __init__(self) -> None:
        self.items: list[_Fulfilment] = []
        self.finished = asyncio.Event()
        self.timer: asyncio.Handle | None = None


class _FulfilBatcher:
    """Coalesces concurrent fulfil_order calls of one store object into micro-batches.

    A batch forms from the first call on, for `window` seconds (0: the rest of this
    event-loop turn) or until it holds `size` calls, then runs as its own task: a lone
    call takes the single-order path (`alone`: GET the order, PUT it); more share one
    `GET /orders?include=` and one `POST /orders/batch` (`many`, the store's
    `_fulfil_many`). Each caller gets exactly the result or error the
    single-order path would give it.

    Calls for an order already in a forming or running batch wait for that batch to end
    and then join a later one, so one batch never carries an order twice and two keys
    never race for one order here (WooCommerce would apply both, the second key
    overwriting the first in the order meta). Except a repeat with the same key of a call
    whose batch is still running (its caller gave up, e.g. timed out on a hung request):
    it joins a new batch at once, whose read finds the order completed with that key or
    still processing; writing the same key twice completes the order once. A caller
    cancelled before its batch is sent is left out of it; cancelled later, the write may
    still land, and its repeat is answered as a replay."""

    def __init__(
        self,
        alone: Callable[[str, str, dict[str, Any] | None], Coroutine[Any, Any, dict[str, Any]]],
        many: Callable[[Sequence[_Fulfilment]], Coroutine[Any, Any, None]],
        *,
        window: float,
        size: int,
    ) -> None:
        self._alone = alone
        self._many = many
        self.window = window
        self.size = size
        self._forming: _Batch | None = None
        #: order number -> the batch carrying it and the key it carries it for
        self._busy: dict[int, tuple[_Batch, str]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def submit(
        self, order_id: str, key: str, tracking: dict[str, Any] | None
    ) -> dict[str, Any]:
        number = _order_number(order_id)
        while (busy := self._busy.get(number)) is not None:
            holder, holder_key = busy
            if holder_key == key and holder is not self._forming:
                break
            await holder.finished.wait()
        loop = asyncio.get_running_loop()
        batch = self._forming
        if batch is None:
            batch = self._forming = _Batch()
            if self.window > 0:
                batch.timer = loop.call_later(self.window, self._send, batch)
            else:
                batch.timer = loop.call_soon(self._send, batch)
        item = _Fulfilment(order_id, number, key, tracking, loop.create_future())
        batch.items.append(item)
        self._busy[number] = (batch, key)
        if len(batch.items) >= self.size:
            self._send(batch)
        return await item.done

    def _send(self, batch: _Batch) -> None:
        if self._forming is not batch:
            return  # sent already (it filled up before its timer)
        self._forming = None
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: _Batch) -> None:
        live = [item for item in batch.items if not item.done.done()]
        try:
            if len(live) == 1:
                item = live[0]
                await item.settle(self._alone(item.order_id, item.key, item.tracking))
            elif live:
                await self._many(live)
        except BaseException as exc:  # a failed read, a bug, or aclose: nobody waits forever
            failure = exc if isinstance(exc, Exception) else _closed()
            for item in live:
                item.fail(failure)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._release(batch)

    def _release(self, batch: _Batch) -> None:
        for item in batch.items:
            busy = self._busy.get(item.number)
            if busy is not None and busy[0] is batch:
                del self._busy[item.number]
        batch.finished.set()

    async def aclose(self) -> None:
        """Fail calls not sent yet (nothing was applied for them), end running batches."""
        batch, self._forming = self._forming, None
        if batch is not None:
            if batch.timer is not None:
                batch.timer.cancel()
            for item in batch.items:
                item.fail(_closed())
            self._release(batch)
        running = list(self._running)
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def _closed() -> OperationError:
    return OperationError(
        "Unavailable",
        "woocommerce: the store connection was closed before this fulfilment was answered; "
        "a repeat with the same key reads the order first",
        retryable=True,
    )


def _fulfil_update(key: str, tracking: dict[str, Any] | None) -> dict[str, Any]:
    """The order update that fulfils: completed, our key and tracking in order meta."""
    return {
        "status": "completed",
        "meta_data": [_meta_entry(META_FULFILMENT, {"key": key, "tracking": tracking})],
    }


def _fulfil_decision(order_id: str, raw: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """What an order as read says about fulfilling it with `key`: None = complete it now;
    the first answer again if our key completed it; Conflict otherwise."""
    status = str(raw.get("status") or "")
    if status == "completed":
        record = _meta(raw, META_FULFILMENT)
        if isinstance(record, dict) and record.get("key") == key:
            return {
                "order_id": order_id,
                "status": "fulfilled",
                "tracking": record.get("tracking"),
                "replayed": True,
            }
        raise OperationError(
            "Conflict",
            f"woocommerce: order {order_id} is already completed "
            + (
                "by another action (a different idempotency key)"
                if isinstance(record, dict)
                else "(outside storeops)"
            )
            + "; not fulfilling it again",
        )
    if status != "processing":
        raise OperationError(
            "Conflict",
            f"woocommerce: order {order_id} is {_ORDER_FROM_WOO.get(status, status)} "
            f"(WooCommerce status {status!r}); only paid (processing) orders can be "
            "fulfilled",
        )
    return None


def _fulfilled(
    order_id: str, answer: Mapping[str, Any], tracking: dict[str, Any] | None
) -> dict[str, Any]:
    """The result of a fulfilling write, from the order it answered with."""
    if answer.get("status") != "completed":
        raise OperationError(
            "Conflict",
            f"woocommerce: order {order_id} did not become completed (now "
            f"{answer.get('status')!r}); a plugin or another writer may have changed it",
        )
    return {"order_id": order_id, "status": "fulfilled", "tracking": tracking}


# ---------------------------------------------------------------- helpers


def _no_inquiries() -> OperationError:
    return OperationError(
        "NotConfigured",
        "WooCommerce has no customer inquiries API; connect the shop's help desk or "
        "contact-form plugin, or use the local store for inquiries",
    )


def _decode(response: httpx.Response, what: str) -> Any:
    """The JSON body of a 2xx answer. WordPress without pretty permalinks, or a
    maintenance page, answers 200 with HTML: say so rather than fail on parsing."""
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise OperationError(
            "Error",
            f"woocommerce: {what}: HTTP {response.status_code} answered with something "
            f"that is not JSON ({kind}); is the REST API reachable under {API_PREFIX} "
            "(pretty permalinks on, no maintenance page)?",
        ) from None


def _unexpected(what: str, expected: str, found: Any) -> OperationError:
    return OperationError(
        "Error", f"woocommerce: {what}: expected {expected}, got {type(found).__name__}"
    )


def _as_dict(found: Any, what: str) -> dict[str, Any]:
    if not isinstance(found, dict):
        raise _unexpected(what, "a JSON object", found)
    return found


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _order_number(order_id: str) -> int:
    text = order_id.strip()
    if not text.isdigit():
        raise OperationError(
            "NotFound", f"woocommerce: no order {order_id!r} (WooCommerce order ids are numbers)"
        )
    return int(text)


def _sku_in(skus: list[str]) -> Callable[[dict[str, Any]], bool]:
    wanted = frozenset(skus)
    return lambda raw: raw.get("sku") in wanted


def _plain(text: Any) -> str:
    """A note's text without the HTML WordPress may add (paragraphs, breaks)."""
    return " ".join(re.sub(r"<[^>]+>", " ", str(text or "")).split())


def _stock(raw: Mapping[str, Any]) -> int | None:
    if not raw.get("manage_stock") or raw.get("stock_quantity") is None:
        return None
    return int(raw["stock_quantity"])


def _low_stock(raw: Mapping[str, Any]) -> int:
    value = raw.get("low_stock_amount")
    return int(value) if value not in (None, "") else DEFAULT_LOW_STOCK


def _lead_time(raw: Mapping[str, Any]) -> int:
    value = _meta(raw, META_LEAD_TIME)
    try:
        return int(value) if value not in (None, "") else DEFAULT_LEAD_TIME_DAYS
    except (TypeError, ValueError):
        return DEFAULT_LEAD_TIME_DAYS


def _product_status(raw: Mapping[str, Any]) -> str:
    status = str(raw.get("status") or "")
    return _PRODUCT_FROM_WOO.get(status, "draft")


def _category(raw: Mapping[str, Any]) -> str:
    ours = _meta(raw, META_CATEGORY)
    if isinstance(ours, str) and ours:
        return ours
    for category in raw.get("categories") or []:
        if isinstance(category, dict) and category.get("slug") not in (None, "uncategorized"):
            return str(category.get("slug") or category.get("name") or "")
    return ""


def _attributes(raw: Mapping[str, Any]) -> dict[str, Any]:
    ours = _meta(raw, META_ATTRIBUTES)
    if isinstance(ours, dict):
        return ours
    found: dict[str, Any] = {}
    for attribute in raw.get("attributes") or []:
        if isinstance(attribute, dict) and attribute.get("name"):
            options = attribute.get("options") or []
            found[str(attribute["name"])] = options[0] if len(options) == 1 else options
    return found


def _images(raw: Mapping[str, Any]) -> list[str]:
    shop = [
        str(image["src"])
        for image in raw.get("images") or []
        if isinstance(image, dict) and image.get("src")
    ]
    if shop:
        return shop
    ours = _meta(raw, META_IMAGES)
    return [str(i) for i in ours] if isinstance(ours, list) else []


def _ledger(raw: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = _meta(raw, META_STOCK_LEDGER)
    return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []


def _ledger_find(raw: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    return next((e for e in _ledger(raw) if e.get("key") == key), None)


def _replayed(sku: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "sku": sku,
        "before": entry.get("before"),
        "on_hand": entry.get("on_hand"),
        "replayed": True,
    }


def _fulfilment_note(tracking: Mapping[str, Any] | None, note: str | None) -> str:
    parts = []
    if tracking:
        carrier = tracking.get("carrier") or "carrier not given"
        number = tracking.get("number") or "no tracking number"
        parts.append(f"Shipped with {carrier}, tracking number {number}.")
    if note:
        parts.append(note)
    return "\n".join(parts)


def _people_notes(notes: list[dict[str, Any]]) -> list[str]:
    """Notes people (or storeops) added, oldest first; WooCommerce lists newest first
    and mixes in its own status-change notes (author "system")."""
    ordered = sorted(notes, key=lambda n: (str(n.get("date_created_gmt") or ""), n.get("id", 0)))
    return [str(n.get("note") or "") for n in ordered if n.get("author") != "system"]


def _number(value: Any) -> int | str:
    text = str(value or "")
    return int(text) if text.isdigit() else text


def _order(raw: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    woo_status = str(raw.get("status") or "")
    billing = raw.get("billing") or {}
    shipping = raw.get("shipping") or {}
    created = _gmt(raw.get("date_created_gmt")) or _gmt(raw.get("date_created"))
    if woo_status == "refunded":
        financial = "refunded"
    elif raw.get("date_paid_gmt") or raw.get("date_paid"):
        financial = "paid"
    else:
        financial = "pending"
    fulfilment = _meta(raw, META_FULFILMENT)
    hold = _meta(raw, META_HOLD_REASON)
    name = " ".join(
        part for part in (billing.get("first_name"), billing.get("last_name")) if part
    ) or " ".join(part for part in (shipping.get("first_name"), shipping.get("last_name")) if part)
    return {
        "id": str(raw.get("id", "")),
        "number": _number(raw.get("number") or raw.get("id")),
        "status": _ORDER_FROM_WOO.get(woo_status, woo_status),
        "platform_status": woo_status,
        "financial_status": financial,
        "total": _money(raw.get("total")),
        "currency": str(raw.get("currency") or ""),
        "created_at": s.iso_utc(created) if created else None,
        "customer": {"name": name, "email": str(billing.get("email") or "")},
        "shipping_address": {
            "name": " ".join(
                p for p in (shipping.get("first_name"), shipping.get("last_name")) if p
            ),
            "line1": str(shipping.get("address_1") or ""),
            "line2": str(shipping.get("address_2") or ""),
            "city": str(shipping.get("city") or ""),
            "state": str(shipping.get("state") or ""),
            "postcode": str(shipping.get("postcode") or ""),
            "country": str(shipping.get("country") or ""),
        },
        "lines": [
            {
                "sku": str(line.get("sku") or ""),
                "quantity": int(line.get("quantity") or 0),
                "price": _money(line.get("price")),
            }
            for line in raw.get("line_items") or []
            if isinstance(line, dict)
        ],
        "notes": notes,
        "tracking": fulfilment.get("tracking") if isinstance(fulfilment, dict) else None,
        "hold_reason": hold or None,
    }
