"""A loopback double of the WooCommerce REST API v3 for tests and benchmarks.

Test-and-benchmark edge: imports common only, never storeops. What it follows, by rule
(developer.woocommerce.com and the REST API docs at woocommerce.github.io):

- Base `/wp-json/wc/v3/`; auth by HTTP Basic `consumer_key:consumer_secret` or the
  `consumer_key`/`consumer_secret` query parameters (the HTTPS methods). Failures -> 401
  with WordPress's error shape `{"code", "message", "data": {"status"}}`: no credentials
  -> woocommerce_rest_cannot_view|create|edit|delete ("Sorry, you cannot list
  resources." ...), a wrong key/secret -> woocommerce_rest_authentication_error
  ("Consumer key is invalid." / "Consumer secret is invalid.").
- Pagination (developer.wordpress.org, "Pagination"): `page`, `per_page` 1..100 (else
  400 rest_invalid_param), totals in `X-WP-Total` and `X-WP-TotalPages`, `Link` with
  rel="next"/rel="prev"; a page past the end is an empty list.
- Products: simple products only (one per seeded variant/SKU; variations are not
  modelled). Stock fields manage_stock, stock_quantity (absolute; only used when
  manage_stock), stock_status (instock|outofstock|onbackorder, derived when stock is
  managed), backorders (no|notify|yes), low_stock_amount. `POST /products/batch` takes
  create/update/delete, at most 100 objects (413 rest_request_entity_too_large).
- Orders: statuses pending, processing, on-hold, completed, cancelled, refunded, failed;
  list filters status (comma list or any), include (ids, as `include=1,2` or repeated
  `include[]=1&include[]=2`), after/before (date_created), modified_after/modified_before,
  orderby date|id|include|modified, order asc|desc. Stock moves
  like WooCommerce: reduced when an order enters processing/on-hold/completed, restored
  when a reduced order is cancelled/refunded/failed/pending; `date_paid` is set on the
  first move into processing or completed (WC_Order::maybe_set_date_paid), so an order
  held from pending and released again stays unpaid. `completed` = fulfilled: each
  applied transition into completed is counted per order; completed -> completed is a
  no-op (counted as a suppressed duplicate).
- `POST /orders/batch {create, update, delete}`: at most 100 objects in all (else 413
  woocommerce_rest_request_entity_too_large, nothing applied). Each update is applied as
  `PUT /orders/{id}` would apply it, in order; one that fails is answered in its place as
  `{"id", "error": {"code", "message", "data"}}` while the others still apply. The double
  validates each item as PUT does (WooCommerce skips the schema check for batch items; an
  unknown status there is not refused the same way). NOT MODELLED: create and delete, which
  are answered per item with the error loopback_batch_not_supported (HTTP 501 in `data`).
  Latency, faults and Idempotency-Key apply to the batch request as a whole.
- Notes: `POST /orders/{id}/notes {note, customer_note}` -> 201; not idempotent.
- Webhooks ("Webhooks" in the v3 docs): X-WC-Webhook-Signature = base64(HMAC-SHA256(raw
  body, secret)), plus X-WC-Webhook-Source/-Topic/-Resource/-Event/-ID/-Delivery-ID.

OUR EXTENSION (not WooCommerce): WooCommerce has no idempotency keys. Writes (POST, PUT,
PATCH, DELETE) may carry `Idempotency-Key`; the first answer is stored and a retry with
the same key and the same request gets it back with `Idempotent-Replayed: true` without
applying again; the same key with another request -> 422 loopback_idempotency_key_mismatch.
Our connector sends it so chaos tests can check exactly-once; a real store ignores it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from connectors.loopback.common import (
    FaultConfig,
    LoopbackServer,
    Request,
    Response,
    ShopSeed,
    build_seed,
    format_iso,
    hmac_sha256_base64,
    json_response,
    now_utc,
    parse_iso,
    post_webhooks,
)

__all__ = ["WooCommerceApp", "WooCommerceConfig", "WooCommerceServer", "woocommerce_webhook"]

PREFIX = "/wp-json/wc/v3"
STATUSES = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed")
_REDUCING = frozenset({"processing", "on-hold", "completed"})
_RESTORING = frozenset({"cancelled", "refunded", "failed", "pending"})
_MAX_BATCH = 100


@dataclasses.dataclass(frozen=True)
class WooCommerceConfig:
    seed: ShopSeed = dataclasses.field(default_factory=ShopSeed)
    consumer_key: str = "ck_loopback_key"
    consumer_secret: str = "cs_loopback_secret"
    webhook_secret: str = "wc_loopback_webhook_secret"
    site_url: str = "https://loopback-store.example/"
    currency: str = "EUR"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["seed"] = self.seed.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WooCommerceConfig:
        values = dict(data)
        values["seed"] = ShopSeed.from_json(values["seed"])
        return cls(**values)


def _error(code: str, message: str, status: int, **data: Any) -> Response:
    return json_response(
        {"code": code, "message": message, "data": {"status": status, **data}}, status
    )


def _wc_date(moment: datetime | None) -> str | None:
    return format_iso(moment, zulu=False) if moment else None


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


@dataclasses.dataclass(slots=True)
class WcProduct:
    id: int
    name: str
    slug: str
    status: str
    sku: str
    regular: int | None
    sale: int | None
    manage_stock: bool
    stock: int | None
    backorders: str
    low_stock: int | None
    created: datetime
    modified: datetime
    meta: list[dict[str, Any]]


@dataclasses.dataclass(slots=True)
class WcLine:
    id: int
    product_id: int
    sku: str
    name: str
    quantity: int
    price: int


@dataclasses.dataclass(slots=True)
class WcOrder:
    id: int
    status: str
    created: datetime
    modified: datetime
    paid: datetime | None
    completed: datetime | None
    email: str
    first_name: str
    customer_note: str
    lines: list[WcLine]
    stock_reduced: bool
    meta: list[dict[str, Any]]
    notes: list[dict[str, Any]]


class WooCommerceApp:
    """The in-memory store plus the REST routes; single event loop, no torn writes."""

    def __init__(self, config: WooCommerceConfig) -> None:
        self.config = config
        self.products: dict[int, WcProduct] = {}
        self.orders: dict[int, WcOrder] = {}
        self._next_id = 100
        self.idempotency: dict[str, tuple[str, Response]] = {}
        self.writes = Counter[str]()
        self.fulfilments_by_order = Counter[int]()
        self.notes_by_order = Counter[int]()
        self.duplicates = Counter[str]()
        self.key_replays = Counter[str]()
        self._seed()
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = [
            ("GET", re.compile(r"/products"), self.list_products),
            ("POST", re.compile(r"/products"), self.create_product),
            ("POST", re.compile(r"/products/batch"), self.batch_products),
            ("GET", re.compile(r"/products/(\d+)"), self.get_product),
            ("PUT", re.compile(r"/products/(\d+)"), self.update_product),
            ("PATCH", re.compile(r"/products/(\d+)"), self.update_product),
            ("DELETE", re.compile(r"/products/(\d+)"), self.delete_product),
            ("GET", re.compile(r"/orders"), self.list_orders),
            ("POST", re.compile(r"/orders/batch"), self.batch_orders),
            ("GET", re.compile(r"/orders/(\d+)"), self.get_order),
            ("PUT", re.compile(r"/orders/(\d+)"), self.update_order),
            ("PATCH", re.compile(r"/orders/(\d+)"), self.update_order),
            ("GET", re.compile(r"/orders/(\d+)/notes"), self.list_notes),
            ("POST", re.compile(r"/orders/(\d+)/notes"), self.create_note),
        ]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WooCommerceApp:
        return cls(WooCommerceConfig.from_json(data))

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _seed(self) -> None:
        shop = build_seed(self.config.seed)
        by_variant: dict[int, int] = {}
        for sp in shop.products:
            created = shop.now.replace(year=shop.now.year - 1)
            for sv in sp.variants:
                pid = self._new_id()
                name = f"{sp.title} - {sv.option}" if len(sp.variants) > 1 else sp.title
                status = "publish" if sp.status == "active" else "draft"
                self.products[pid] = WcProduct(
                    pid,
                    name,
                    f"{sp.handle}-{sv.option.lower()}",
                    status,
                    sv.sku,
                    sv.price_cents,
                    None,
                    True,
                    sum(sv.stock),
                    "no",
                    5,
                    created,
                    created,
                    [],
                )
                by_variant[sv.index] = pid
        status_of = {
            "paid_unfulfilled": "processing",
            "paid_fulfilled": "completed",
            "pending": "pending",
            "refunded": "refunded",
            "cancelled": "cancelled",
        }
        self._next_id = max(self._next_id, 1000)
        for so in shop.orders:
            oid = self._new_id()
            lines = []
            for vindex, qty in so.lines:
                p = self.products[by_variant[vindex]]
                lines.append(WcLine(self._new_id(), p.id, p.sku, p.name, qty, p.regular or 0))
            status = status_of[so.kind]
            paid = so.created_at if status in ("processing", "completed", "refunded") else None
            done = so.created_at if status == "completed" else None
            # seeded stock is what remains after these orders: processing/completed
            # orders count as already reduced
            self.orders[oid] = WcOrder(
                oid,
                status,
                so.created_at,
                so.created_at,
                paid,
                done,
                so.email,
                so.customer,
                "",
                lines,
                status in _REDUCING,
                [],
                [],
            )

    # ---- HTTP

    async def handle(self, request: Request) -> Response:
        if not request.path.startswith(PREFIX + "/"):
            return _error(
                "rest_no_route", "No route was found matching the URL and request method.", 404
            )
        denied = self._authenticate(request)
        if denied is not None:
            return denied
        sub = request.path[len(PREFIX) :].rstrip("/")
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(sub)
            if match and method == request.method:
                if method == "GET":
                    return handler(request, *match.groups())
                return self._write(request, handler, match.groups())
        return _error(
            "rest_no_route", "No route was found matching the URL and request method.", 404
        )

    def _authenticate(self, request: Request) -> Response | None:
        key = secret = None
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                key, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                key = secret = ""
        elif request.arg("consumer_key") is not None:
            key, secret = request.arg("consumer_key"), request.arg("consumer_secret")
        if key is None:
            verb = {
                "GET": ("view", "Sorry, you cannot list resources."),
                "POST": ("create", "Sorry, you are not allowed to create resources."),
                "DELETE": ("delete", "Sorry, you are not allowed to delete this resource."),
            }
            word, message = verb.get(
                request.method, ("edit", "Sorry, you are not allowed to edit this resource.")
            )
            return _error(f"woocommerce_rest_cannot_{word}", message, 401)
        if key != self.config.consumer_key:
            return _error("woocommerce_rest_authentication_error", "Consumer key is invalid.", 401)
        if secret != self.config.consumer_secret:
            return _error(
                "woocommerce_rest_authentication_error", "Consumer secret is invalid.", 401
            )
        return None

    def _write(
        self, request: Request, handler: Callable[..., Response], groups: tuple[Any, ...]
    ) -> Response:
        try:
            body = request.json() or {}
        except ValueError:
            return _error("rest_invalid_json", "Invalid JSON body passed.", 400)
        key = request.headers.get("idempotency-key")
        if key is None:
            return handler(request, *groups, body=body)
        fingerprint = hashlib.sha256(
            f"{request.method} {request.path}\n".encode()
            + json.dumps(body, sort_keys=True).encode()
        ).hexdigest()
        seen = self.idempotency.get(key)
        if seen is not None:
            self.key_replays[key] += 1
            if seen[0] != fingerprint:
                return _error(
                    "loopback_idempotency_key_mismatch",
                    "This Idempotency-Key was used with a different request (loopback extension).",
                    422,
                )
            self.duplicates["idempotent_replay"] += 1
            stored = seen[1]
            return Response(
                stored.status, stored.body, [*stored.headers, ("Idempotent-Replayed", "true")]
            )
        response = handler(request, *groups, body=body)
        self.idempotency[key] = (fingerprint, response)
        return response

    # ---- pagination

    def _page(
        self, request: Request, items: list[Any], render: Callable[[Any], dict[str, Any]]
    ) -> Response:
        try:
            per_page = int(request.arg("per_page", "10") or "10")
            page = int(request.arg("page", "1") or "1")
        except ValueError:
            return _error("rest_invalid_param", "Invalid parameter(s): per_page, page", 400)
        if not 1 <= per_page <= 100:
            return _error(
                "rest_invalid_param",
                "Invalid parameter(s): per_page",
                400,
                params={"per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"},
            )
        if page < 1:
            return _error(
                "rest_invalid_param",
                "Invalid parameter(s): page",
                400,
                params={"page": "page must be greater than or equal to 1"},
            )
        total = len(items)
        pages = math.ceil(total / per_page)
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = [("X-WP-Total", str(total)), ("X-WP-TotalPages", str(pages))]
        host = request.headers.get("host", "127.0.0.1")
        base = {
            k: v[0]
            for k, v in request.query.items()
            if k not in ("page", "consumer_key", "consumer_secret")
        }
        links = []
        if page > 1:
            prev_q = urlencode({**base, "page": min(page - 1, max(pages, 1))})
            links.append(f'<http://{host}{request.path}?{prev_q}>; rel="prev"')
        if page < pages:
            next_q = urlencode({**base, "page": page + 1})
            links.append(f'<http://{host}{request.path}?{next_q}>; rel="next"')
        if links:
            headers.append(("Link", ", ".join(links)))
        return json_response([render(i) for i in chunk], 200, headers)

    @staticmethod
    def _dates(request: Request, names: tuple[str, ...]) -> dict[str, datetime] | Response:
        out = {}
        for name in names:
            value = request.arg(name)
            if value:
                try:
                    out[name] = parse_iso(value)
                except ValueError:
                    return _error(
                        "rest_invalid_param",
                        f"Invalid parameter(s): {name}",
                        400,
                        params={name: "Invalid date."},
                    )
        return out

    # ---- products

    def _product_json(self, p: WcProduct) -> dict[str, Any]:
        price = p.sale if p.sale is not None else p.regular
        return {
            "id": p.id,
            "name": p.name,
            "slug": p.slug,
            "permalink": f"{self.config.site_url}product/{p.slug}/",
            "date_created": _wc_date(p.created),
            "date_created_gmt": _wc_date(p.created),
            "date_modified": _wc_date(p.modified),
            "date_modified_gmt": _wc_date(p.modified),
            "type": "simple",
            "status": p.status,
            "sku": p.sku,
            "price": _money(price) if price is not None else "",
            "regular_price": _money(p.regular) if p.regular is not None else "",
            "sale_price": _money(p.sale) if p.sale is not None else "",
            "on_sale": p.sale is not None,
            "manage_stock": p.manage_stock,
            "stock_quantity": p.stock if p.manage_stock else None,
            "stock_status": self._stock_status(p),
            "backorders": p.backorders,
            "low_stock_amount": p.low_stock,
            "meta_data": p.meta,
        }

    @staticmethod
    def _stock_status(p: WcProduct) -> str:
        if not p.manage_stock:
            return "instock"
        if (p.stock or 0) > 0:
            return "instock"
        return "onbackorder" if p.backorders != "no" else "outofstock"

    def list_products(self, request: Request) -> Response:
        dates = self._dates(request, ("after", "before", "modified_after", "modified_before"))
        if isinstance(dates, Response):
            return dates
        sku, status, search = request.arg("sku"), request.arg("status"), request.arg("search")
        items = []
        for p in self.products.values():
            if sku and p.sku not in sku.split(","):
                continue
            if status and status != "any" and p.status != status:
                continue
            if search and search.lower() not in p.name.lower():
                continue
            if not _in_range(p.created, dates.get("after"), dates.get("before")):
                continue
            if not _in_range(p.modified, dates.get("modified_after"), dates.get("modified_before")):
                continue
            items.append(p)
        ordered = _sort(
            items,
            request,
            {
                "date": lambda p: (p.created, p.id),
                "id": lambda p: (p.id,),
                "title": lambda p: (p.name, p.id),
                "modified": lambda p: (p.modified, p.id),
            },
        )
        if isinstance(ordered, Response):
            return ordered
        return self._page(request, ordered, self._product_json)

    def get_product(self, request: Request, pid: str) -> Response:
        p = self.products.get(int(pid))
        if p is None:
            return _error("woocommerce_rest_product_invalid_id", "Invalid ID.", 404)
        return json_response(self._product_json(p))

    def _apply_product(self, p: WcProduct, body: Mapping[str, Any]) -> Response | None:
        if "sku" in body:
            sku = str(body["sku"] or "")
            if sku and any(o.sku == sku and o.id != p.id for o in self.products.values()):
                return _error("product_invalid_sku", "Invalid or duplicated SKU.", 400)
            p.sku = sku
        if "status" in body:
            if body["status"] not in ("draft", "pending", "private", "publish"):
                return _error("rest_invalid_param", "Invalid parameter(s): status", 400)
            p.status = body["status"]
        if "backorders" in body:
            if body["backorders"] not in ("no", "notify", "yes"):
                return _error("rest_invalid_param", "Invalid parameter(s): backorders", 400)
            p.backorders = body["backorders"]
        if body.get("name"):
            p.name = str(body["name"])
        for field, attr in (("regular_price", "regular"), ("sale_price", "sale")):
            if field in body:
                raw = body[field]
                setattr(p, attr, round(float(raw) * 100) if raw not in (None, "") else None)
        if "manage_stock" in body:
            p.manage_stock = bool(body["manage_stock"])
        if "stock_quantity" in body and p.manage_stock and body["stock_quantity"] is not None:
            p.stock = int(body["stock_quantity"])
        if "low_stock_amount" in body:
            raw = body["low_stock_amount"]
            p.low_stock = int(raw) if raw is not None else None
        if "meta_data" in body:
            _merge_meta(p.meta, body["meta_data"])
        p.modified = now_utc()
        return None

    def create_product(self, request: Request, body: Mapping[str, Any]) -> Response:
        now = now_utc()
        name = str(body.get("name") or "Product")
        p = WcProduct(
            self._new_id(),
            name,
            re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
            "publish",
            "",
            None,
            None,
            False,
            None,
            "no",
            None,
            now,
            now,
            [],
        )
        error = self._apply_product(p, body)
        if error is not None:
            return error
        self.products[p.id] = p
        self.writes["product.create"] += 1
        return json_response(self._product_json(p), 201)

    def update_product(self, request: Request, pid: str, body: Mapping[str, Any]) -> Response:
        p = self.products.get(int(pid))
        if p is None:
            return _error("woocommerce_rest_product_invalid_id", "Invalid ID.", 404)
        error = self._apply_product(p, body)
        if error is not None:
            return error
        self.writes["product.update"] += 1
        return json_response(self._product_json(p))

    def delete_product(self, request: Request, pid: str, body: Mapping[str, Any]) -> Response:
        p = self.products.get(int(pid))
        if p is None:
            return _error("woocommerce_rest_product_invalid_id", "Invalid ID.", 404)
        if request.arg("force") not in ("true", "1"):
            p.status = "trash"
            return json_response(self._product_json(p))
        del self.products[p.id]
        self.writes["product.delete"] += 1
        return json_response(self._product_json(p))

    def batch_products(self, request: Request, body: Mapping[str, Any]) -> Response:
        creates = body.get("create") or []
        updates = body.get("update") or []
        deletes = body.get("delete") or []
        if len(creates) + len(updates) + len(deletes) > _MAX_BATCH:
            return _error(
                "rest_request_entity_too_large",
                f"Unable to accept more than {_MAX_BATCH} items for this request.",
                413,
            )
        out: dict[str, list[Any]] = {}
        if creates:
            out["create"] = [_item(self.create_product(request, body=c)) for c in creates]
        if updates:
            out["update"] = [
                _item(self.update_product(request, str(u.get("id", 0)), body=u)) for u in updates
            ]
        if deletes:
            force = Request("DELETE", request.path, {"force": ["true"]}, {}, b"")
            out["delete"] = [_item(self.delete_product(force, str(d), body={})) for d in deletes]
        return json_response(out)

    # ---- orders

    def _order_json(self, o: WcOrder) -> dict[str, Any]:
        total = sum(ln.price * ln.quantity for ln in o.lines)
        return {
            "id": o.id,
            "parent_id": 0,
            "number": str(o.id),
            "order_key": f"wc_order_{hashlib.sha1(str(o.id).encode()).hexdigest()[:13]}",
            "created_via": "checkout",
            "version": "9.9.0",
            "status": o.status,
            "currency": self.config.currency,
            "date_created": _wc_date(o.created),
            "date_created_gmt": _wc_date(o.created),
            "date_modified": _wc_date(o.modified),
            "date_modified_gmt": _wc_date(o.modified),
            "date_paid": _wc_date(o.paid),
            "date_paid_gmt": _wc_date(o.paid),
            "date_completed": _wc_date(o.completed),
            "date_completed_gmt": _wc_date(o.completed),
            "total": _money(total),
            "customer_id": 0,
            "customer_note": o.customer_note,
            "billing": {"first_name": o.first_name, "last_name": "", "email": o.email},
            "shipping": {"first_name": o.first_name, "last_name": ""},
            "payment_method": "bacs",
            "meta_data": o.meta,
            "line_items": [
                {
                    "id": ln.id,
                    "name": ln.name,
                    "product_id": ln.product_id,
                    "variation_id": 0,
                    "quantity": ln.quantity,
                    "sku": ln.sku,
                    "price": ln.price / 100,
                    "subtotal": _money(ln.price * ln.quantity),
                    "total": _money(ln.price * ln.quantity),
                }
                for ln in o.lines
            ],
        }

    def list_orders(self, request: Request) -> Response:
        dates = self._dates(request, ("after", "before", "modified_after", "modified_before"))
        if isinstance(dates, Response):
            return dates
        wanted = [s for s in (request.arg("status") or "any").split(",") if s]
        bad = [s for s in wanted if s != "any" and s not in STATUSES]
        if bad:
            return _error(
                "rest_invalid_param",
                "Invalid parameter(s): status",
                400,
                params={"status": f"status[0] is not one of any, {', '.join(STATUSES)}"},
            )
        include = _id_list(request, "include")
        if isinstance(include, Response):
            return include
        position = {oid: n for n, oid in enumerate(include or [])}
        items = [
            o
            for o in self.orders.values()
            if ("any" in wanted or o.status in wanted)
            and (include is None or o.id in position)
            and _in_range(o.created, dates.get("after"), dates.get("before"))
            and _in_range(o.modified, dates.get("modified_after"), dates.get("modified_before"))
        ]
        ordered = _sort(
            items,
            request,
            {
                "date": lambda o: (o.created, o.id),
                "id": lambda o: (o.id,),
                "include": lambda o: (position.get(o.id, len(position)), o.id),
                "modified": lambda o: (o.modified, o.id),
            },
        )
        if isinstance(ordered, Response):
            return ordered
        return self._page(request, ordered, self._order_json)

    def get_order(self, request: Request, oid: str) -> Response:
        o = self.orders.get(int(oid))
        if o is None:
            return _error("woocommerce_rest_shop_order_invalid_id", "Invalid ID.", 404)
        return json_response(self._order_json(o))

    def update_order(self, request: Request, oid: str, body: Mapping[str, Any]) -> Response:
        return self._update_order(int(oid), body)

    def _update_order(self, oid: int, body: Mapping[str, Any]) -> Response:
        """`PUT /orders/{id}`, also each update of `POST /orders/batch`."""
        o = self.orders.get(oid)
        if o is None:
            return _error("woocommerce_rest_shop_order_invalid_id", "Invalid ID.", 404)
        status = body.get("status")
        if body.get("set_paid") and status is None:
            status = "processing"
        if status is not None and status not in STATUSES:
            return _error(
                "rest_invalid_param",
                "Invalid parameter(s): status",
                400,
                params={"status": f"status is not one of {', '.join(STATUSES)}."},
            )
        now = now_utc()
        if body.get("set_paid") and o.paid is None:
            o.paid = now
        if "customer_note" in body:
            o.customer_note = str(body["customer_note"] or "")
        if "meta_data" in body:
            _merge_meta(o.meta, body["meta_data"])
        if status is not None and status != o.status:
            self._transition(o, status, now)
        elif status == "completed":
            self.duplicates["already_completed"] += 1
        o.modified = now
        self.writes["order.update"] += 1
        return json_response(self._order_json(o))

    def batch_orders(self, request: Request, body: Mapping[str, Any]) -> Response:
        """`POST /orders/batch`: updates applied one by one as `PUT /orders/{id}`; create
        and delete are not modelled and fail per item. The answer holds a list per action
        given, in request order, a failed item as `{"id", "error": {code, message, data}}`."""
        if not isinstance(body, Mapping):
            return _error("rest_invalid_param", "Invalid parameter(s): create, update, delete", 400)
        actions: dict[str, list[Any]] = {}
        for action in ("create", "update", "delete"):
            items = body.get(action) or []
            if not isinstance(items, list):
                return _error(
                    "rest_invalid_param",
                    f"Invalid parameter(s): {action}",
                    400,
                    params={action: f"{action} is not of type array."},
                )
            actions[action] = items
        total = sum(len(items) for items in actions.values())
        if total > _MAX_BATCH:
            return _error(
                "woocommerce_rest_request_entity_too_large",
                f"Unable to accept more than {_MAX_BATCH} items for this request.",
                413,
            )
        self.writes["order.batch"] += 1
        out: dict[str, list[Any]] = {}
        if actions["create"]:
            out["create"] = [_not_supported(0, "create") for _ in actions["create"]]
        if actions["update"]:
            out["update"] = [self._batch_update(item) for item in actions["update"]]
        if actions["delete"]:
            out["delete"] = [_not_supported(_as_id(d), "delete") for d in actions["delete"]]
        return json_response(out)

    def _batch_update(self, item: Any) -> dict[str, Any]:
        if not isinstance(item, Mapping):
            return _batch_error(
                0, _error("woocommerce_rest_shop_order_invalid_id", "Invalid ID.", 400)
            )
        oid = _as_id(item.get("id"))
        answer = self._update_order(oid, item)
        if answer.status >= 400:
            return _batch_error(oid, answer)
        data: dict[str, Any] = json.loads(answer.body)
        return data

    def _transition(self, o: WcOrder, status: str, now: datetime) -> None:
        if status in _REDUCING and not o.stock_reduced:
            self._move_stock(o, -1)
            o.stock_reduced = True
        elif status in _RESTORING and o.stock_reduced:
            self._move_stock(o, +1)
            o.stock_reduced = False
        if status in ("processing", "completed"):  # WC_Order::maybe_set_date_paid
            o.paid = o.paid or now
        if status == "completed":
            o.completed = now
            self.fulfilments_by_order[o.id] += 1
        self._add_note(
            o, f"Order status changed from {_label(o.status)} to {_label(status)}.", False, "system"
        )
        o.status = status

    def _move_stock(self, o: WcOrder, sign: int) -> None:
        for ln in o.lines:
            p = self.products.get(ln.product_id)
            if p is not None and p.manage_stock and p.stock is not None:
                p.stock += sign * ln.quantity
                p.modified = now_utc()

    def _add_note(self, o: WcOrder, text: str, customer: bool, author: str) -> dict[str, Any]:
        now = now_utc()
        note = {
            "id": self._new_id(),
            "author": author,
            "date_created": _wc_date(now),
            "date_created_gmt": _wc_date(now),
            "note": text,
            "customer_note": customer,
        }
        o.notes.append(note)
        return note

    def list_notes(self, request: Request, oid: str) -> Response:
        o = self.orders.get(int(oid))
        if o is None:
            return _error("woocommerce_rest_order_invalid_id", "Invalid order ID.", 404)
        return json_response(list(reversed(o.notes)))

    def create_note(self, request: Request, oid: str, body: Mapping[str, Any]) -> Response:
        o = self.orders.get(int(oid))
        if o is None:
            return _error("woocommerce_rest_order_invalid_id", "Invalid order ID.", 404)
        text = str(body.get("note") or "")
        if not text:
            return _error(
                "rest_missing_callback_param", "Missing parameter(s): note", 400, params=["note"]
            )
        note = self._add_note(o, text, bool(body.get("customer_note")), "loopback")
        self.notes_by_order[o.id] += 1
        self.writes["order.note"] += 1
        return json_response(note, 201)

    # ---- counters, control, webhooks

    def stats(self, detail: bool = False) -> dict[str, Any]:
        twice = sorted(k for k, n in self.fulfilments_by_order.items() if n > 1)
        out: dict[str, Any] = {
            "platform": "woocommerce",
            "writes": dict(sorted(self.writes.items())),
            "fulfilments_applied": sum(self.fulfilments_by_order.values()),
            "orders_fulfilled": len(self.fulfilments_by_order),
            "orders_fulfilled_more_than_once": twice,
            "notes_added": sum(self.notes_by_order.values()),
            "duplicates_suppressed": dict(sorted(self.duplicates.items())),
            "idempotency_keys": len(self.idempotency),
            "idempotency_keys_replayed": len(self.key_replays),
            "orders": len(self.orders),
        }
        if detail:
            out["fulfilments_by_order"] = {str(k): v for k, v in self.fulfilments_by_order.items()}
            out["notes_by_order"] = {str(k): v for k, v in self.notes_by_order.items()}
            out["replays_by_key"] = dict(self.key_replays)
        return out

    async def control(self, request: Request) -> Response | None:
        if request.path == "/_loopback/stats/detail":
            return json_response({"app": self.stats(detail=True)})
        if request.path == "/_loopback/webhooks/order-created" and request.method == "POST":
            data = request.json() or {}
            deliveries = [self.create_order_webhook() for _ in range(int(data.get("count", 1)))]
            return json_response({"statuses": await post_webhooks(str(data["url"]), deliveries)})
        return None

    def create_order_webhook(self) -> tuple[bytes, dict[str, str]]:
        """Place a new processing order and sign its `order.created` delivery."""
        now = now_utc()
        pids = sorted(self.products)
        p = self.products[pids[len(self.orders) % len(pids)]]
        oid = self._new_id()
        order = WcOrder(
            oid,
            "pending",
            now,
            now,
            None,
            None,
            f"buyer{oid}@example.com",
            "Buyer",
            "",
            [WcLine(self._new_id(), p.id, p.sku, p.name, 1, p.regular or 0)],
            False,
            [],
            [],
        )
        self.orders[oid] = order
        self._transition(order, "processing", now)
        order.paid = now
        return woocommerce_webhook(
            "order.created",
            self._order_json(order),
            self.config.webhook_secret,
            self.config.site_url,
        )


def _label(status: str) -> str:
    return {"on-hold": "On hold"}.get(status, status.capitalize())


def _item(response: Response) -> Any:
    data = json.loads(response.body)
    if response.status >= 400:
        return {"id": 0, "error": data}
    return data


def _as_id(value: Any) -> int:
    """An id as WordPress's absint reads it: anything not a whole number is 0."""
    try:
        return abs(int(value))
    except (TypeError, ValueError):
        return 0


def _batch_error(oid: int, response: Response) -> dict[str, Any]:
    """A failed batch item: its id beside the error WordPress would have answered."""
    error = json.loads(response.body)
    return {
        "id": oid,
        "error": {
            "code": error.get("code"),
            "message": error.get("message"),
            "data": error.get("data"),
        },
    }


def _not_supported(oid: int, action: str) -> dict[str, Any]:
    return _batch_error(
        oid,
        _error(
            "loopback_batch_not_supported",
            f"The loopback double does not model batch {action} of orders (loopback "
            "extension; WooCommerce supports it).",
            501,
        ),
    )


def _id_list(request: Request, name: str) -> list[int] | Response | None:
    """An array-of-ids parameter as WordPress reads it: `name=1,2`, repeated `name[]=1`,
    or both; None when absent or empty."""
    raw = [*request.query.get(name, []), *request.query.get(f"{name}[]", [])]
    if not raw:
        return None
    ids: list[int] = []
    for position, text in enumerate(p.strip() for value in raw for p in value.split(",")):
        if not text:
            continue
        if not text.isdigit():
            return _error(
                "rest_invalid_param",
                f"Invalid parameter(s): {name}",
                400,
                params={name: f"{name}[{position}] is not of type integer."},
            )
        ids.append(int(text))
    return ids or None  # `include=` filters nothing, as in WordPress


def _merge_meta(meta: list[dict[str, Any]], incoming: Any) -> None:
    for entry in incoming or []:
        key = entry.get("key")
        existing = next((m for m in meta if m.get("key") == key), None)
        if existing is not None:
            existing["value"] = entry.get("value")
        else:
            meta.append({"id": len(meta) + 1, "key": key, "value": entry.get("value")})


def _in_range(moment: datetime, after: datetime | None, before: datetime | None) -> bool:
    return (after is None or moment > after) and (before is None or moment < before)


def _sort(
    items: list[Any], request: Request, keys: Mapping[str, Callable[[Any], Any]]
) -> list[Any] | Response:
    orderby = request.arg("orderby", "date") or "date"
    order = request.arg("order", "desc") or "desc"
    if orderby not in keys or order not in ("asc", "desc"):
        return _error(
            "rest_invalid_param",
            "Invalid parameter(s): orderby, order",
            400,
            params={"orderby": f"orderby is not one of {', '.join(keys)}."},
        )
    return sorted(items, key=keys[orderby], reverse=order == "desc")


def woocommerce_webhook(
    topic: str, payload: Any, secret: str, source_url: str, webhook_id: int = 1
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a delivery as WooCommerce sends it: X-WC-Webhook-Signature =
    base64(HMAC-SHA256(raw body, webhook secret)), plus source, topic, resource, event."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    resource, _, event = topic.partition(".")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "WooCommerce/9.9.0 Hookshot (WordPress/6.8)",
        "X-WC-Webhook-Source": source_url,
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": hmac_sha256_base64(body, secret),
        "X-WC-Webhook-ID": str(webhook_id),
        "X-WC-Webhook-Delivery-ID": hashlib.md5(body).hexdigest(),
    }
    return body, headers


class WooCommerceServer(LoopbackServer):
    """The WooCommerce double, running. `api_url` + `auth` (an httpx-style Basic tuple)
    are what a client needs; `stats()` returns the counters (see WooCommerceApp.stats)."""

    def __init__(
        self,
        config: WooCommerceConfig | None = None,
        *,
        latency_s: float = 0.0,
        faults: FaultConfig | None = None,
        in_process: bool = True,
    ) -> None:
        self.config = config or WooCommerceConfig()
        super().__init__(
            "connectors.loopback.woocommerce:WooCommerceApp",
            self.config.to_json(),
            latency_s=latency_s,
            faults=faults,
            in_process=in_process,
        )

    def __enter__(self) -> WooCommerceServer:
        self.start()
        return self

    @property
    def api_url(self) -> str:
        return f"{self.base_url}{PREFIX}"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.config.consumer_key, self.config.consumer_secret)

    def stats(self, detail: bool = False) -> dict[str, Any]:
        result = super().stats()
        if detail:
            result["app"] = self._control("GET", "/_loopback/stats/detail")["app"]
        return result

    def send_order_webhooks(self, url: str, count: int = 1) -> list[int]:
        """Create `count` new processing orders and POST a signed `order.created` each."""
        answer = self._control(
            "POST", "/_loopback/webhooks/order-created", {"url": url, "count": count}
        )
        statuses: list[int] = answer["statuses"]
        return statuses
