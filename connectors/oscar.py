"""The django-oscar store: `connectors.store.Store` over django-oscar-api's admin API plus
the small operations endpoints of tests/teststore (`/api/ops/...`, the status endpoint).

Edge module: imports httpx, connectors.client (every HTTP call goes through ShopClient),
connectors.store and storeops.errors; never Django. The token stays in the Authorization
header: it is redacted from every error message and never appears in `repr`.

How the store's words map to Oscar's:

- A product is an Oscar product with a stock record; its SKU is the stock record's
  `partner_sku` (one entry per stock record; products without one have no SKU and are
  not listed). `status` is `active` when `is_public`, else `draft` (Oscar has no
  archive). Category is the first category path ("Merch/Sale"). New products get
  UPC = SKU and slug = SKU; upsert adds the category (Oscar products may sit in several).
- Order statuses (the pipeline of PLATFORMS.md 1.2): `Pending` and `Being processed` -> `paid`
  (placed and paid through checkout), `Shipped` and `Complete` -> `fulfilled`,
  `Cancelled` -> `cancelled`; any other status -> `pending`. Oscar has no hold, so
  `hold_order` records a Warning note starting with HOLD_MARK: the order reads back as
  `on_hold` and this connector refuses to fulfil it, until a later note starting with
  RELEASE_MARK (`release_order` adds one; staff may add one in the dashboard). Oscar's
  own dashboard ignores the marks; Oscar's status never changes for a hold.
- Writes that must happen once send the action's key as `Idempotency-Key`: the store
  answers a repeat with the first answer (`replayed: true` here).
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors import store as s
from connectors.client import ClientOptions, ShopClient, all_at_once, both
from connectors.http import redact
from storeops.errors import ConfigError, OperationError

__all__ = ["HOLD_MARK", "RELEASE_MARK", "OscarStore"]

Json = dict[str, Any]
Params = list[tuple[str, str]]

TOKEN_ENV = "STOREOPS_OSCAR_TOKEN"
PARTNER_ENV = "STOREOPS_OSCAR_PARTNER"
PRODUCT_CLASS_ENV = "STOREOPS_OSCAR_PRODUCT_CLASS"
LEAD_TIME_ENV = "STOREOPS_OSCAR_LEAD_TIME_DAYS"

HOLD_MARK = "[storeops hold]"
RELEASE_MARK = "[storeops release]"

PAID = ("Pending", "Being processed")
FULFILLED = ("Shipped", "Complete")
CANCELLED = "Cancelled"
PROCESSING = "Being processed"
_OSCAR_STATUSES: dict[str, tuple[str, ...]] = {
    "pending": (),  # placed but unpaid: Oscar's checkout has no such status
    "paid": PAID,
    "on_hold": PAID,
    "fulfilled": FULFILLED,
    "cancelled": (CANCELLED,),
}


def _iso(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _seconds(text: str) -> str:
    """Oscar's timestamp in the shape every store returns (UTC, seconds, `Z`)."""
    return _parse_time(text).strftime("%Y-%m-%dT%H:%M:%SZ")


def _money(value: Any) -> float:
    return round(float(value or 0), 2)


def _tail_id(url: str | None) -> int | None:
    """The last path segment of an API URL as an id (`.../partners/1/` -> 1)."""
    if not url:
        return None
    last = url.rstrip("/").rsplit("/", 1)[-1]
    return int(last) if last.isdigit() else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "product"


def _held(notes: Sequence[Json]) -> str | None:
    """The reason of the hold in force (the latest hold/release mark), else None."""
    reason: str | None = None
    for note in notes:
        message = str(note.get("message", ""))
        if message.startswith(HOLD_MARK):
            reason = message[len(HOLD_MARK) :].strip()
        elif message.startswith(RELEASE_MARK):
            reason = None
    return reason


class OscarStore:
    """A `connectors.store.Store` for django-oscar 4.2 + django-oscar-api 3.3.

    `base_url` is the shop's root (`http://127.0.0.1:8002`); `token` a DRF token of a
    staff user with the model permissions the operations need (view/add/change product,
    view/change stockrecord and order, view line, partner and product class). `partner`
    (code) and `product_class` (slug) pick what new products get; by default the only
    one the shop has. `lead_time_days` feeds the low-stock rule (Oscar has no lead times).
    """

    name = "oscar"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        options: ClientOptions | None = None,
        partner: str | None = None,
        product_class: str | None = None,
        lead_time_days: int = 7,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not token:
            raise ConfigError(f"the django-oscar store needs an API token ({TOKEN_ENV})")
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"django-oscar store URL {base_url!r} is not an http(s) URL such as "
                "http://127.0.0.1:8002"
            )
        self.base_url = base_url.rstrip("/")
        self._base_path = parts.path.rstrip("/")
        self.partner = partner
        self.product_class = product_class
        self.lead_time_days = lead_time_days
        self._client = ShopClient(
            self.base_url,
            name="oscar",
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            options=options,
            secrets=[token],
            transport=transport,
        )
        self._index: dict[str, list[tuple[int, int]]] = {}  # sku -> [(product, stockrecord)]
        self._partner_url: str | None = None
        self._chosen: dict[str, Json] = {}  # partner and product class for new products

    @classmethod
    def from_env(cls, url: str, environ: Mapping[str, str]) -> OscarStore:
        """The store of `STOREOPS_STORE=oscar+URL`; the token from STOREOPS_OSCAR_TOKEN."""
        token = environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise ConfigError(
                f"STOREOPS_STORE names a django-oscar store but {TOKEN_ENV} is not set; "
                "set it to the API token of a staff user (manage.py drf_create_token USER)"
            )
        lead_time = environ.get(LEAD_TIME_ENV, "7").strip()
        if not lead_time.isdigit():
            raise ConfigError(f"{LEAD_TIME_ENV}={lead_time!r} is not a whole number of days")
        return cls(
            url,
            token,
            partner=environ.get(PARTNER_ENV) or None,
            product_class=environ.get(PRODUCT_CLASS_ENV) or None,
            lead_time_days=int(lead_time),
        )

    def __repr__(self) -> str:
        return f"OscarStore({redact(self.base_url)!r})"

    async def __aenter__(self) -> OscarStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------ plumbing

    async def _send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Params | None = None,
        json: Any = None,
        key: str | None = None,
        repeatable: bool | None = None,
    ) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else None
        query = httpx.QueryParams(tuple(params)) if params else None  # repeated keys (status=…)
        try:
            return await self._client.request(
                method, path, what=what, params=query, json=json, headers=headers,
                repeatable=repeatable,
            )  # fmt: skip
        except OperationError as exc:
            # Django's HTML 404 means the route is missing, not the row (the API's own
            # 404s are JSON): the shop lacks an endpoint this connector needs
            if exc.error == "NotFound" and "<!doctype html" in str(exc).lower():
                raise OperationError(
                    "NotConfigured",
                    f"oscar: {what}: the shop has no API endpoint {method} {path.split('?')[0]}"
                    " (HTML 404). The admin API needs OSCARAPI_BLOCK_ADMIN_API_ACCESS = False;"
                    " /api/ops/... and the order status endpoint are the storeops extension"
                    " (tests/teststore/shop/views.py)",
                ) from None
            raise

    async def _json(self, method: str, path: str, *, what: str, **kw: Any) -> Any:
        response = await self._send(method, path, what=what, **kw)
        try:
            return response.json()
        except ValueError:
            raise OperationError(
                "Error",
                f"oscar: {what}: expected JSON, got {response.headers.get('content-type')!r}",
            ) from None

    def _relative(self, url: str) -> str:
        """A `next` link as a path under base_url: the token goes to no other host."""
        parts = urllib.parse.urlsplit(url)
        path = parts.path
        if self._base_path and path.startswith(self._base_path + "/"):
            path = path[len(self._base_path) :]
        return f"{path}?{parts.query}" if parts.query else path

    async def _list(self, path: str, *, what: str, params: Params | None = None) -> list[Json]:
        """Every row of a list, paginated or not. Page-number pages after the first are
        read concurrently, then `next` is followed in case rows were added meanwhile;
        rows are deduplicated by id (a row moved to a later page is read twice)."""
        body = await self._json("GET", path, what=what, params=params)
        if isinstance(body, list):
            return body
        rows: list[Json] = list(body["results"])
        next_url: str | None = body.get("next")
        if next_url and rows and self._page_of(next_url) == 2 and "count" in body:
            last = math.ceil(int(body["count"]) / len(rows))
            pages = await all_at_once(
                self._page(path, params, number, what) for number in range(2, last + 1)
            )
            next_url = None
            for page in pages:
                rows += page.get("results", [])
                next_url = page.get("next")
        while next_url:
            body = await self._json("GET", self._relative(next_url), what=what)
            rows += body["results"]
            next_url = body.get("next")
        unique: dict[Any, Json] = {}
        for number, row in enumerate(rows):
            unique.setdefault(row.get("id") or row.get("url") or f"#{number}", row)
        return list(unique.values())

    @staticmethod
    def _page_of(url: str) -> int | None:
        pages = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("page", [""])
        return int(pages[0]) if pages[0].isdigit() else None

    async def _page(self, path: str, params: Params | None, number: int, what: str) -> Json:
        try:
            page: Json = await self._json(
                "GET", path, what=what, params=[*(params or []), ("page", str(number))]
            )
        except OperationError as exc:
            if exc.error == "NotFound":  # rows were deleted: the page is past the end
                return {"results": [], "next": None}
            raise
        return page

    # ------------------------------------------------------------ products

    def _records(self, product: Json) -> list[Json]:
        records = [r for r in product.get("stockrecords") or [] if r.get("partner_sku")]
        if self.partner and self._partner_url:
            wanted = _tail_id(self._partner_url)
            records = [r for r in records if _tail_id(r.get("partner")) == wanted]
        return records

    def _product(self, product: Json, record: Json) -> Json:
        on_hand = int(record.get("num_in_stock") or 0)
        allocated = int(record.get("num_allocated") or 0)  # null on API-made records (P11)
        attributes = {
            str(a.get("code") or a.get("name")): a.get("value")
            for a in product.get("attributes") or []
            if isinstance(a, dict)
        }
        return {
            "sku": record["partner_sku"],
            "title": product.get("title") or "",
            "price": _money(record.get("price")),
            "currency": record.get("price_currency") or "",
            "status": "active" if product.get("is_public") else "draft",
            "category": (product.get("categories") or [""])[0],
            "attributes": attributes,
            "description": product.get("description") or "",
            "images": [i.get("original") for i in product.get("images") or [] if i],
            "on_hand": on_hand,
            "available": on_hand - allocated,
            "low_stock_threshold": int(record.get("low_stock_threshold") or 0),
            "product_id": product["id"],
            "upc": product.get("upc"),
        }

    async def _catalogue(self) -> list[tuple[Json, Json]]:
        """Every (product, stock record) of the shop; refreshes the SKU index."""
        await self._resolve_partner()
        products = await self._list("/api/admin/products/", what="list products")
        pairs = [(p, r) for p in products for r in self._records(p)]
        index: dict[str, list[tuple[int, int]]] = {}
        for product, record in pairs:
            record_id = _tail_id(record.get("url"))
            if record_id is not None:
                index.setdefault(record["partner_sku"], []).append((product["id"], record_id))
        self._index = index
        return pairs

    async def _resolve_partner(self) -> str | None:
        """The configured partner's URL (None when not configured); NotConfigured if unknown."""
        if self.partner is None or self._partner_url is not None:
            return self._partner_url
        partners = await self._list("/api/admin/partners/", what="list partners")
        for partner in partners:
            if partner.get("code") == self.partner:
                self._partner_url = str(partner["url"])
                return self._partner_url
        codes = sorted(str(p.get("code")) for p in partners)
        raise OperationError(
            "NotConfigured",
            f"oscar: no partner with code {self.partner!r} ({PARTNER_ENV}); the shop has {codes}",
        )

    async def _find(self, sku: str) -> tuple[Json, Json]:
        """(product, stock record) of `sku`: the indexed product first, verified, then a
        scan of the catalogue. NotFound if no stock record has it; Conflict if several."""
        cached = self._index.get(sku)
        if cached and len(cached) == 1:
            product_id, record_id = cached[0]
            try:
                product = await self._json(
                    "GET", f"/api/admin/products/{product_id}/", what=f"get product {sku}"
                )
            except OperationError as exc:
                if exc.error != "NotFound":
                    raise
            else:
                for record in self._records(product):
                    if record["partner_sku"] == sku and _tail_id(record.get("url")) == record_id:
                        return product, record
        found = [(p, r) for p, r in await self._catalogue() if r["partner_sku"] == sku]
        if not found:
            raise OperationError("NotFound", f"oscar: no product with SKU {sku!r}")
        if len(found) > 1:
            partners = sorted(str(r.get("partner")) for _p, r in found)
            raise OperationError(
                "Conflict",
                f"oscar: SKU {sku!r} is stocked by {len(found)} partners ({partners}); "
                f"set {PARTNER_ENV} to the partner code this connector manages",
            )
        return found[0]

    async def list_products(self, req: s.ListProducts, *, key: str) -> Json:
        wanted = req.category.lower() if req.category else None
        products = []
        for product, record in await self._catalogue():
            item = self._product(product, record)
            if req.status and item["status"] != req.status:
                continue
            if wanted is not None:
                paths = [str(c).lower() for c in product.get("categories") or []]
                if not any(wanted in (path, path.rsplit("/", 1)[-1]) for path in paths):
                    continue
            products.append(item)
        products.sort(key=lambda p: str(p["sku"]))
        chosen = products[: req.limit]
        return {"products": chosen, "count": len(chosen)}

    async def get_product(self, req: s.GetProduct, *, key: str) -> Json:
        return self._product(*await self._find(req.sku))

    async def _only(self, kind: str, path: str, field: str, configured: str | None) -> Json:
        """The configured partner or product class (by `field`), or the shop's only one."""
        if kind in self._chosen:
            return self._chosen[kind]
        rows = await self._list(path, what=f"list {kind}")
        chosen = [r for r in rows if r.get(field) == configured] if configured else rows
        if len(chosen) == 1:
            self._chosen[kind] = chosen[0]
            return chosen[0]
        env = PARTNER_ENV if kind == "partners" else PRODUCT_CLASS_ENV
        names = sorted(str(r.get(field)) for r in rows)
        raise OperationError(
            "NotConfigured",
            f"oscar: cannot tell which of the {kind} new products get: set {env} to one "
            f"of {names}" + (f" ({configured!r} is not one)" if configured else ""),
        )

    async def upsert_product(self, req: s.UpsertProduct, *, key: str) -> Json:
        """Update the product whose stock record has the SKU (one atomic PATCH of the
        product and its stock record), or create one with UPC = SKU and no stock."""
        fields: Json = {
            "title": req.title,
            "description": req.description,
            "is_public": req.status == "active",
        }
        if req.category:
            fields["categories"] = [req.category]
        if req.attributes:
            fields["attributes"] = [{"code": k, "value": v} for k, v in req.attributes.items()]
        record: Json = {
            "partner_sku": req.sku,
            "price": f"{req.price:.2f}",
            "price_currency": req.currency,
            "low_stock_threshold": req.low_stock_threshold,
        }
        try:
            product, current = await self._find(req.sku)
        except OperationError as exc:
            if exc.error != "NotFound":
                raise
        else:
            if req.attributes:
                fields["product_class"] = product.get("product_class")
            body = {**fields, "stockrecords": [{**record, "partner": current["partner"]}]}
            updated = await self._json(
                "PATCH",
                f"/api/admin/products/{product['id']}/",
                what=f"update product {req.sku}",
                json=body,
                repeatable=True,  # a PATCH to the same values is safe to repeat
            )
            return {**self._product(updated, self._record_of(updated, req.sku)), "created": False}
        partner = await self._only("partners", "/api/admin/partners/", "code", self.partner)
        product_class = await self._only(
            "product classes", "/api/admin/productclasses/", "slug", self.product_class
        )
        record["partner"] = partner["url"]
        body = {
            **fields,
            "upc": req.sku,
            "slug": _slug(req.sku),
            "product_class": product_class["slug"],
            "structure": "standalone",
            "stockrecords": [{**record, "num_in_stock": 0}],
        }
        created = True
        try:
            product = await self._json(
                "POST", "/api/admin/products/", what=f"create product {req.sku}", json=body,
                repeatable=True,  # a repeat finds the UPC taken and updates below
            )  # fmt: skip
        except OperationError as exc:
            if exc.error != "Invalid" or "upc" not in str(exc) or "exists" not in str(exc):
                raise
            # UPC = SKU is taken (a concurrent upsert, or a product without this stock
            # record): django-oscar-api's list URL updates the product the UPC names;
            # the stock record keeps its stock
            product = await self._json(
                "PATCH", "/api/admin/products/", what=f"update product {req.sku}",
                json={**fields, "upc": req.sku, "stockrecords": [record]}, repeatable=True,
            )  # fmt: skip
            created = False
        found = self._record_of(product, req.sku)
        record_id = _tail_id(found.get("url"))
        if record_id is not None:
            self._index[req.sku] = [(int(product["id"]), record_id)]
        return {**self._product(product, found), "created": created}

    @staticmethod
    def _record_of(product: Json, sku: str) -> Json:
        for record in product.get("stockrecords") or []:
            if record.get("partner_sku") == sku:
                found: Json = record
                return found
        raise OperationError(
            "Error", f"oscar: the store answered product {product.get('id')} without SKU {sku!r}"
        )

    async def _publish(self, sku: str, public: bool) -> Json:
        product, _record = await self._find(sku)
        updated = await self._json(
            "PATCH",
            f"/api/admin/products/{product['id']}/",
            what=f"{'publish' if public else 'unpublish'} product {sku}",
            json={"is_public": public},
            repeatable=True,
        )
        return self._product(updated, self._record_of(updated, sku))

    async def publish_product(self, req: s.PublishProduct, *, key: str) -> Json:
        return await self._publish(req.sku, True)

    async def unpublish_product(self, req: s.UnpublishProduct, *, key: str) -> Json:
        return await self._publish(req.sku, False)

    async def _patch_record(self, sku: str, fields: Json, what: str) -> tuple[Json, Json, Json]:
        """PATCH the SKU's stock record; (product, record before, record after)."""
        product, record = await self._find(sku)
        after = await self._json(
            "PATCH", self._relative(str(record["url"])), what=what, json=fields, repeatable=True
        )
        return product, record, after

    async def set_price(self, req: s.SetPrice, *, key: str) -> Json:
        product, _before, after = await self._patch_record(
            req.sku, {"price": f"{req.price:.2f}"}, f"set price of {req.sku}"
        )
        return self._product(product, after)

    # ------------------------------------------------------------ inventory

    async def _sold(self, since: datetime) -> list[tuple[datetime, str, int]]:
        """(placed at, SKU, quantity) of every order line placed since `since`, except
        cancelled orders."""
        params: Params = [("since", _iso(since))]
        params += [("status", status) for status in (*PAID, *FULFILLED)]
        orders = await self._list("/api/ops/orders/", what="list orders", params=params)
        return [
            (_parse_time(order["date_placed"]), str(line["partner_sku"]), int(line["quantity"]))
            for order in orders
            for line in order.get("lines") or []
        ]

    async def inventory_levels(self, req: s.InventoryLevels, *, key: str) -> Json:
        """Levels from the stock records; velocity from order lines in the window (Oscar
        `date_placed`; cancelled orders excluded). low = available <= threshold, or
        fewer days of cover than `lead_time_days`."""
        now = datetime.now(UTC)
        since_7 = now - timedelta(days=7)
        since_n = now - timedelta(days=req.window_days)
        pairs, sold_lines = await both(self._catalogue(), self._sold(min(since_7, since_n)))
        sold_7: dict[str, int] = {}
        sold_n: dict[str, int] = {}
        for placed, sku, quantity in sold_lines:
            if placed >= since_7:
                sold_7[sku] = sold_7.get(sku, 0) + quantity
            if placed >= since_n:
                sold_n[sku] = sold_n.get(sku, 0) + quantity
        wanted = set(req.skus) if req.skus else None
        levels = [
            s.stock_level(
                sku=str(record["partner_sku"]),
                title=product.get("title") or "",
                on_hand=int(record.get("num_in_stock") or 0),
                allocated=int(record.get("num_allocated") or 0),  # may be null: none
                sold_7d=sold_7.get(str(record["partner_sku"]), 0),
                sold_window=sold_n.get(str(record["partner_sku"]), 0),
                window_days=req.window_days,
                low_stock_threshold=int(record.get("low_stock_threshold") or 0),
                lead_time_days=self.lead_time_days,
            )
            for product, record in sorted(pairs, key=lambda pair: str(pair[1]["partner_sku"]))
            if wanted is None or str(record["partner_sku"]) in wanted
        ]
        return s.inventory_answer(levels, req, now)

    async def adjust_inventory(self, req: s.AdjustInventory, *, key: str) -> Json:
        """A delta on num_in_stock, applied once per key by the store itself."""
        _product, record = await self._find(req.sku)
        record_id = _tail_id(record.get("url"))
        try:
            response = await self._send(
                "POST",
                f"/api/ops/stockrecords/{record_id}/adjust/",
                what=f"adjust stock of {req.sku} by {req.delta}",
                json={"delta": req.delta, "reason": req.reason},
                key=key,
            )
        except OperationError as exc:
            if exc.error == "Conflict":  # the store refused: stock would go below zero
                raise OperationError("Invalid", str(exc)) from None
            if exc.error == "Invalid" and "idempotency key" in str(exc):
                raise OperationError("Conflict", str(exc)) from None
            raise
        body = response.json()
        after = int(body["num_in_stock"])
        return {
            "sku": req.sku,
            "before": after - int(body["delta"]),
            "on_hand": after,
            "available": after - int(body.get("num_allocated") or 0),
            "replayed": response.headers.get("Idempotent-Replayed") == "true",
        }

    async def set_inventory(self, req: s.SetInventory, *, key: str) -> Json:
        """An absolute num_in_stock (Oscar's own write; last writer wins)."""
        _product, before, after = await self._patch_record(
            req.sku, {"num_in_stock": req.quantity}, f"set stock of {req.sku}"
        )
        return {
            "sku": req.sku,
            "before": int(before.get("num_in_stock") or 0),
            "on_hand": int(after["num_in_stock"]),
        }

    # ------------------------------------------------------------ orders

    @staticmethod
    def _order_id(order_id: str) -> int:
        if not order_id.strip().isdigit():
            raise OperationError(
                "NotFound",
                f"oscar: no order {order_id!r}; orders are named by their numeric id "
                "(the `id` field, not the order number)",
            )
        return int(order_id)

    async def _summary_of(self, pk: int, placed: str) -> Json | None:
        """Our ops summary of one order (it names each line's SKU), found by its time."""
        moment = _parse_time(placed).replace(microsecond=0)
        params: Params = [("since", _iso(moment)), ("until", _iso(moment + timedelta(seconds=1)))]
        for summary in await self._list("/api/ops/orders/", what=f"get order {pk}", params=params):
            if summary.get("id") == pk:
                return summary
        return None

    async def _order(self, pk: int, summary: Json | None = None) -> Json:
        """One order in the shape every store returns (admin order, lines, notes)."""
        detail: Json = await self._json("GET", f"/api/admin/orders/{pk}/", what=f"get order {pk}")
        lines_path = self._relative(str(detail.get("lines") or f"/api/admin/orders/{pk}/lines/"))

        async def find_summary() -> Json | None:
            if summary is not None:
                return summary
            return await self._summary_of(pk, str(detail["date_placed"]))

        found, (notes, lines) = await both(
            find_summary(),
            both(self._notes(pk), self._list(lines_path, what=f"get lines of order {pk}")),
        )
        return self._shape(pk, detail, found, lines, notes)

    def _shape(
        self, pk: int, detail: Json, summary: Json | None, lines: list[Json], notes: list[Json]
    ) -> Json:
        skus = {int(x["id"]): str(x["partner_sku"]) for x in (summary or {}).get("lines", [])}
        shaped_lines = []
        for line in lines:
            quantity = int(line.get("quantity") or 0)
            total = float(line.get("price_incl_tax") or 0)  # the line's total
            shaped_lines.append(
                {
                    "sku": skus.get(_tail_id(line.get("url")) or -1, ""),
                    "quantity": quantity,
                    "price": round(total / quantity, 2) if quantity else 0.0,
                }
            )
        address = detail.get("shipping_address") or {}
        name = " ".join(
            str(address.get(part) or "") for part in ("first_name", "last_name")
        ).strip()
        oscar_status = str(detail.get("status") or "")
        hold = _held(notes) if oscar_status in PAID else None
        if oscar_status in PAID:
            status = "on_hold" if hold is not None else "paid"
        elif oscar_status in FULFILLED:
            status = "fulfilled"
        else:
            status = "cancelled" if oscar_status == CANCELLED else "pending"
        return {
            "id": str(pk),
            "number": detail.get("number"),
            "status": status,
            "oscar_status": oscar_status,
            # oscarapi exposes no payment sources; checkout orders are paid when placed
            "financial_status": "voided" if status == "cancelled" else "paid",
            "total": _money(detail.get("total_incl_tax")),
            "currency": detail.get("currency") or "",
            "created_at": _seconds(str(detail["date_placed"])),
            "customer": {
                "name": name or (summary or {}).get("user") or "",
                "email": detail.get("email") or "",
            },
            "shipping_address": {
                "name": name,
                "line1": address.get("line1") or "",
                "line2": address.get("line2") or "",
                "city": address.get("line4") or "",
                "state": address.get("state") or "",
                "postcode": address.get("postcode") or "",
                "country": str(address.get("country") or "").rstrip("/").rsplit("/", 1)[-1],
                "phone": address.get("phone_number") or "",
            },
            "lines": shaped_lines,
            "notes": [str(note.get("message", "")) for note in notes],
            "hold_reason": hold,
        }

    async def list_orders(self, req: s.ListOrders, *, key: str) -> Json:
        """Orders oldest first (Oscar `date_placed`), `since` and `until` inclusive.
        Filtering happens in the store (our ops list); each order then takes three
        reads (order, lines, notes), concurrently within the client's bound."""
        params: Params = []
        if req.status is not None:
            if not _OSCAR_STATUSES[req.status]:
                return {"orders": [], "count": 0, "gmv": 0.0, "average_order_value": 0.0}
            params += [("status", status) for status in _OSCAR_STATUSES[req.status]]
        if req.since is not None:
            params.append(("since", _iso(req.since)))
        if req.until is not None:  # the ops list's `until` is exclusive
            params.append(("until", _iso(req.until + timedelta(microseconds=1))))
        orders: list[Json] = []
        next_path: str | None = "/api/ops/orders/"
        first = True
        while next_path and len(orders) < req.limit:
            page = await self._json(
                "GET", next_path, what="list orders", params=params if first else None
            )
            first = False
            summaries = page["results"] if isinstance(page, dict) else page
            shaped = await all_at_once(self._order(int(x["id"]), x) for x in summaries)
            orders += [o for o in shaped if req.status is None or o["status"] == req.status]
            nxt = page.get("next") if isinstance(page, dict) else None
            next_path = self._relative(nxt) if nxt else None
        orders = orders[: req.limit]
        gmv = round(sum(o["total"] for o in orders if o["status"] != "cancelled"), 2)
        return {
            "orders": orders,
            "count": len(orders),
            "gmv": gmv,
            "average_order_value": round(gmv / len(orders), 2) if orders else 0.0,
        }

    async def get_order(self, req: s.GetOrder, *, key: str) -> Json:
        return await self._order(self._order_id(req.order_id))

    async def _status(self, pk: int) -> str:
        body = await self._json(
            "GET", f"/api/admin/orders/{pk}/status/", what=f"read the status of order {pk}"
        )
        return str(body["status"])

    async def _notes(self, pk: int) -> list[Json]:
        found: list[Json] = await self._json(
            "GET", f"/api/ops/orders/{pk}/notes/", what=f"get notes of order {pk}"
        )
        return found

    async def _move(self, pk: int, to: str, what: str) -> None:
        """Oscar's pipeline step to `to`; a lost answer is retried, and a refusal because
        the order is already there counts as done. Conflict when the pipeline refuses."""
        try:
            await self._send(
                "PATCH",
                f"/api/admin/orders/{pk}/status/",
                what=what,
                json={"status": to},
                repeatable=True,
            )
        except OperationError as exc:
            if exc.error != "Conflict" or await self._status(pk) != to:
                raise

    async def _note(self, pk: int, message: str, *, key: str, note_type: str = "Info") -> None:
        await self._send(
            "POST",
            f"/api/ops/orders/{pk}/notes/",
            what=f"add a note to order {pk}",
            json={"message": message, "note_type": note_type},
            key=key,
        )

    async def fulfil_order(self, req: s.FulfilOrder, *, key: str) -> Json:
        """Ship every line once per key: `Pending` moves to `Being processed` first, then
        our fulfil endpoint records Oscar's shipping event and consumes the allocations.
        A repeat with the key returns the first answer; an order shipped under another
        key, cancelled or held is a Conflict."""
        pk = self._order_id(req.order_id)
        status, notes = await both(self._status(pk), self._notes(pk))
        if status in PAID:
            reason = _held(notes)
            if reason is not None:
                raise OperationError(
                    "Conflict",
                    f"oscar: order {pk} is on hold ({reason or 'no reason given'}); "
                    f"release it first (store.release_order, or a note starting "
                    f"{RELEASE_MARK!r})",
                )
            if status != PROCESSING:
                await self._move(pk, PROCESSING, f"start processing order {pk}")
        reference = req.tracking_number or ""
        try:
            response = await self._send(
                "POST",
                f"/api/ops/orders/{pk}/fulfil/",
                what=f"fulfil order {pk}",
                json={"reference": reference},
                key=key,
            )
        except OperationError as exc:
            if exc.error == "Invalid" and "idempotency key" in str(exc):
                raise OperationError("Conflict", str(exc)) from None
            raise
        body = response.json()
        extra = [f"Carrier: {req.carrier}"] if req.carrier else []
        if req.note:
            extra.append(req.note)
        if extra:
            await self._note(pk, "; ".join(extra), key=f"{key}/note")
        return {
            "order_id": str(pk),
            "status": "fulfilled",
            "tracking": {"number": body.get("reference") or None, "carrier": req.carrier},
            "shipping_event": body.get("shipping_event"),
            "replayed": response.headers.get("Idempotent-Replayed") == "true",
        }

    async def cancel_order(self, req: s.CancelOrder, *, key: str) -> Json:
        """Oscar status `Cancelled` (from Pending or Being processed; a cancelled order
        stays cancelled, so a repeat succeeds). Conflict once shipped."""
        pk = self._order_id(req.order_id)
        await self._move(pk, CANCELLED, f"cancel order {pk}")
        if req.reason:
            await self._note(pk, f"Cancelled: {req.reason}", key=f"{key}/note")
        return await self._order(pk)

    async def hold_order(self, req: s.HoldOrder, *, key: str) -> Json:
        """A Warning note starting with HOLD_MARK (Oscar has no hold status); only for
        orders not yet shipped or cancelled."""
        pk = self._order_id(req.order_id)
        status = await self._status(pk)
        if status not in PAID:
            raise OperationError(
                "Conflict",
                f"oscar: order {pk} is {status!r}; only {' or '.join(PAID)} orders can be held",
            )
        await self._note(pk, f"{HOLD_MARK} {req.reason}".strip(), key=key, note_type="Warning")
        return await self._order(pk)

    async def release_order(self, req: s.ReleaseOrder, *, key: str) -> Json:
        """An Info note starting with RELEASE_MARK (and the note, if given) when a hold is
        in force: the order reads back as `paid` again, since its Oscar status never
        changed. An open order that is not held is left as it is (a repeat after a lost
        answer replays the note by its key, or finds nothing to release). Conflict once
        shipped or cancelled."""
        pk = self._order_id(req.order_id)
        status, notes = await both(self._status(pk), self._notes(pk))
        if status in FULFILLED or status == CANCELLED:
            ours = "fulfilled" if status in FULFILLED else "cancelled"
            raise OperationError(
                "Conflict",
                f"oscar: order {pk} is {ours} (Oscar status {status!r}); only held orders "
                "can be released",
            )
        if status in PAID and _held(notes) is not None:
            await self._note(pk, f"{RELEASE_MARK} {req.note}".strip(), key=key)
        return await self._order(pk)

    async def add_order_note(self, req: s.AddOrderNote, *, key: str) -> Json:
        pk = self._order_id(req.order_id)
        await self._note(pk, req.message, key=key)
        return await self._order(pk)

    # ------------------------------------------------------------ inquiries

    async def list_inquiries(self, req: s.ListInquiries, *, key: str) -> Json:
        raise _no_inquiries()

    async def reply_inquiry(self, req: s.ReplyInquiry, *, key: str) -> Json:
        raise _no_inquiries()


def _no_inquiries() -> OperationError:
    return OperationError(
        "NotConfigured",
        "oscar: django-oscar has no customer inquiries API; handle inquiries in the help "
        "desk or chat channel, or catch NotConfigured in the SOP",
    )
