"""A loopback double of the Shopify Admin GraphQL API for tests and benchmarks.

Test-and-benchmark edge: imports common and _graphql only, never storeops. What it
follows, by rule (shopify.dev pages named as on the site):

- Endpoint/auth ("Getting started"): `POST /admin/api/{version}/graphql.json` with
  `X-Shopify-Access-Token`; wrong or missing token -> 401
  `{"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}`.
- Versioning ("API versioning"): `versions` are served; a well-formed `YYYY-MM` older than
  the oldest served version "falls forward" to the oldest one; anything else -> 404
  `{"errors": "Not Found"}`. Every answer carries `X-Shopify-API-Version` (the version used).
- Rate limits ("GraphQL Admin API rate limits"): a leaky bucket per app+store
  (`maximum_available`, `restore_rate` points/s). The requested cost is taken before
  running and the difference to the actual cost refunded. Cost: scalar 0, object 1,
  connection 2 + first x (1 + per-node cost), each mutation field 10; a query above
  1,000 -> MAX_COST_EXCEEDED. Every answer has `extensions.cost {requestedQueryCost,
  actualQueryCost, throttleStatus {maximumAvailable, currentlyAvailable, restoreRate}}`.
  An empty bucket -> HTTP 200 with `errors[{message: "Throttled", extensions: {code:
  "THROTTLED"}}]`, no `data`, `actualQueryCost: null` (shape seen in Shopify's community
  answers and Shopify/cli PR 8317).
- Idempotency ("Idempotent requests", "Implementing idempotency", changelog "Making
  idempotency mandatory for inventory adjustments and refund mutations"): the
  `@idempotent(key:)` directive on a mutation field; same key + same arguments -> the
  original result, applied once; same key + other arguments -> userError
  IDEMPOTENCY_KEY_PARAMETER_MISMATCH; a key whose first attempt failed ->
  IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED. From 2026-04 `inventoryAdjustQuantities` without
  it -> error "The @idempotent directive is required for this mutation but was not
  provided." (code BAD_REQUEST, as reported from a live 2026-04 store). Keys are kept
  for the server's life (Shopify: 24 hours). Results are stored, not rebuilt.
- Orders ("orders" query, "Search syntax"): `query:` terms `field:value`,
  `field:>value` (also >=, <, <=), quoted values; unknown fields are ignored and
  reported in `extensions.search[].warnings`, as Shopify does.
- Fulfilment ("fulfillmentCreate", "FulfillmentInput"): lines by fulfillment order; no
  line items = the whole remainder; a fulfillment order that is CLOSED, CANCELLED or
  ON_HOLD cannot be fulfilled again (userError), so a retried fulfilment is applied once
  even without a key; `@idempotent` is accepted too. `fulfillmentOrderHold` puts it ON_HOLD
  (each hold has an `id`). `fulfillmentOrderReleaseHold(id, holdIds, externalId)`
  ("fulfillmentOrderReleaseHold"): only an ON_HOLD fulfillment order can be released
  (else a userError); `holdIds` names the holds to release - ids that are not this
  fulfillment order's holds are ignored - and without it every hold goes; once no hold
  is left it reopens (OPEN, or IN_PROGRESS if partly fulfilled). An unknown id ->
  userError FULFILLMENT_ORDER_NOT_FOUND.
- Pagination ("Paginating results with GraphQL"): `first` (1..250) + `after`, `nodes`,
  `edges {cursor node}`, `pageInfo {hasNextPage hasPreviousPage startCursor endCursor}`;
  keyset cursors, so writes between pages neither skip nor repeat items.

THE SUBSET (anything else is an `undefinedField` error). Arguments may be literals or
`$variables`; aliases and `__typename` work; fragments do not; `last`/`before` do not.
The selection set is honoured: only selected fields come back.
  Query: shop; locations(first); products(first, after, query: status:|title:|sku:|
    updated_at:); product(id); productVariants(first, after, query: sku:);
    inventoryItem(id) {inventoryLevels(first) {location quantities(names)}};
    orders(first, after, query, sortKey: ID|CREATED_AT|UPDATED_AT|ORDER_NUMBER|
    PROCESSED_AT, reverse); ordersCount(query, limit); order(id); fulfillmentOrder(id).
  Mutation: productSet(input|product, identifier, synchronous); productCreate(product|
    input); productUpdate(product|input); productChangeStatus(productId, status);
    productVariantsBulkUpdate(productId, variants); inventoryAdjustQuantities(input);
    inventorySetQuantities(input); fulfillmentCreate(fulfillment, message); orderUpdate(
    input); orderCancel(orderId, reason, refund, restock, notifyCustomer, staffNote);
    fulfillmentOrderHold(id, fulfillmentHold); fulfillmentOrderReleaseHold(id, holdIds,
    externalId).
  Search fields: orders: financial_status, fulfillment_status (shipped|fulfilled|
    partial|unshipped|unfulfilled|on_hold|any), status (open|closed|cancelled|any),
    created_at, updated_at, processed_at, name, tag, email, sku, id.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.loopback import _graphql as gql
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
    monotonic,
    now_utc,
    parse_iso,
    post_webhooks,
)

__all__ = ["ShopifyApp", "ShopifyConfig", "ShopifyServer", "shopify_webhook"]

DEFAULT_VERSIONS = ("2026-01", "2026-04", "2026-07", "2026-10", "unstable")
_VERSION_RE = re.compile(r"^(\d{4})-(01|04|07|10)$")
_AUTH_ERROR = "[API] Invalid API key or access token (unrecognized login or wrong password)"
MAX_QUERY_COST = 1000
MUTATION_COST = 10
_REASONS = frozenset(
    [
        "correction",
        "cycle_count_available",
        "damaged",
        "movement_canceled",
        "movement_created",
        "movement_received",
        "movement_updated",
        "other",
        "promotion",
        "quality_control",
        "received",
        "reservation_created",
        "reservation_deleted",
        "reservation_updated",
        "restock",
        "safety_stock",
        "shrinkage",
    ]
)


@dataclasses.dataclass(frozen=True)
class ShopifyConfig:
    """Everything that makes one Shopify double; plain data so a child process can
    rebuild it. `idempotent_required_from` is the first version that refuses
    inventoryAdjustQuantities without `@idempotent` (2026-04 per Shopify's changelog)."""

    seed: ShopSeed = dataclasses.field(default_factory=ShopSeed)
    shop_domain: str = "loopback-shop.myshopify.com"
    access_token: str = "shpat_loopback_token"
    api_secret: str = "shpss_loopback_secret"
    versions: tuple[str, ...] = DEFAULT_VERSIONS
    maximum_available: float = 2000.0
    restore_rate: float = 100.0
    idempotent_required_from: str = "2026-04"
    currency: str = "EUR"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["seed"] = self.seed.to_json()
        data["versions"] = list(self.versions)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShopifyConfig:
        values = dict(data)
        values["seed"] = ShopSeed.from_json(values["seed"])
        values["versions"] = tuple(values["versions"])
        return cls(**values)


def gid(kind: str, number: int) -> str:
    return f"gid://shopify/{kind}/{number}"


def _gid_number(value: Any, kind: str) -> int | None:
    if not isinstance(value, str):
        return None
    prefix = f"gid://shopify/{kind}/"
    if not value.startswith(prefix):
        return None
    tail = value[len(prefix) :].split("?")[0]
    return int(tail) if tail.isdigit() else None


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _cents(text: Any) -> int:
    return round(float(text) * 100)


# --------------------------------------------------------------------------- state


@dataclasses.dataclass(slots=True)
class Variant:
    id: int
    product_id: int
    sku: str
    title: str
    price: int
    compare_at: int | None
    created_at: datetime


@dataclasses.dataclass(slots=True)
class Product:
    id: int
    title: str
    handle: str
    status: str
    vendor: str
    tags: list[str]
    created_at: datetime
    updated_at: datetime
    variant_ids: list[int]


@dataclasses.dataclass(slots=True)
class LineItem:
    id: int
    variant_id: int | None
    sku: str
    title: str
    quantity: int
    price: int


@dataclasses.dataclass(slots=True)
class FoLine:
    id: int
    line_item_id: int
    total: int
    remaining: int


@dataclasses.dataclass(slots=True)
class FulfillmentOrder:
    id: int
    order_id: int
    location_id: int
    status: str  # OPEN | IN_PROGRESS | CLOSED | CANCELLED | ON_HOLD
    lines: list[FoLine]
    holds: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


@dataclasses.dataclass(slots=True)
class Fulfillment:
    id: int
    order_id: int
    created_at: datetime
    tracking: list[dict[str, Any]]
    lines: list[tuple[int, int]]  # (line item id, quantity)


@dataclasses.dataclass(slots=True)
class Order:
    id: int
    number: int
    created_at: datetime
    updated_at: datetime
    email: str
    financial: str  # PAID | PENDING | REFUNDED | VOIDED | ...
    cancelled_at: datetime | None
    cancel_reason: str | None
    note: str | None
    tags: list[str]
    lines: list[LineItem]
    fo_ids: list[int]
    fulfillment_ids: list[int]

    @property
    def name(self) -> str:
        return f"#{self.number}"


class _Bucket:
    """Leaky bucket: `available` refills at `rate` per second up to `maximum`."""

    def __init__(self, maximum: float, rate: float) -> None:
        self.maximum = maximum
        self.rate = rate
        self.available = maximum
        self.stamp = monotonic()

    def refill(self) -> float:
        now = monotonic()
        self.available = min(self.maximum, self.available + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.available

    def status(self) -> dict[str, float]:
        return {
            "maximumAvailable": float(self.maximum),
            "currentlyAvailable": float(int(self.available)),
            "restoreRate": float(self.rate),
        }


class _Throttled(Exception):
    pass


# --------------------------------------------------------------------------- the app


class ShopifyApp:
    """The in-memory shop plus the GraphQL endpoint. Single-threaded (one event loop):
    every mutation applies without awaiting, so there are no torn writes."""

    def __init__(self, config: ShopifyConfig) -> None:
        self.config = config
        self.bucket = _Bucket(config.maximum_available, config.restore_rate)
        self._docs: dict[str, list[gql.Operation]] = {}
        self._ids = Counter[str]()
        self.products: dict[int, Product] = {}
        self.variants: dict[int, Variant] = {}
        self.levels: dict[tuple[int, int], dict[str, int]] = {}  # (item, loc) -> quantities
        self.locations: dict[int, str] = {}
        self.orders: dict[int, Order] = {}
        self.fos: dict[int, FulfillmentOrder] = {}
        self.fulfillments: dict[int, Fulfillment] = {}
        self.idempotency: dict[str, tuple[str, str, dict[str, Any], bool]] = {}
        # counters for exactly-once checks
        self.writes = Counter[str]()
        self.fulfilments_by_order = Counter[str]()
        self.duplicates = Counter[str]()
        self.key_replays = Counter[str]()
        self.throttled = 0
        self._seed()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShopifyApp:
        return cls(ShopifyConfig.from_json(data))

    def _next(self, kind: str, base: int) -> int:
        self._ids[kind] += 1
        return base + self._ids[kind]

    # ---- seeding

    def _seed(self) -> None:
        shop = build_seed(self.config.seed)
        self.now_seed = shop.now
        loc_ids = []
        for name in shop.location_names:
            loc = self._next("Location", 60_000_000)
            self.locations[loc] = name
            loc_ids.append(loc)
        by_index: dict[int, int] = {}
        for sp in shop.products:
            created = shop.now.replace(year=shop.now.year - 1)
            pid = self._next("Product", 7_000_000_000)
            product = Product(
                pid, sp.title, sp.handle, sp.status.upper(), "Loopback", [], created, created, []
            )
            for sv in sp.variants:
                vid = self._next("ProductVariant", 40_000_000_000)
                self.variants[vid] = Variant(
                    vid, pid, sv.sku, sv.option, sv.price_cents, None, created
                )
                product.variant_ids.append(vid)
                by_index[sv.index] = vid
                for loc, qty in zip(loc_ids, sv.stock, strict=True):
                    self.levels[(vid, loc)] = {"available": qty, "committed": 0}
            self.products[pid] = product
        for so in shop.orders:
            oid = self._next("Order", 5_000_000_000)
            lines = []
            for vindex, qty in so.lines:
                variant = self.variants[by_index[vindex]]
                title = self.products[variant.product_id].title
                lid = self._next("LineItem", 13_000_000_000)
                lines.append(LineItem(lid, variant.id, variant.sku, title, qty, variant.price))
            financial = {
                "paid_unfulfilled": "PAID",
                "paid_fulfilled": "PAID",
                "pending": "PENDING",
                "refunded": "REFUNDED",
                "cancelled": "VOIDED",
            }
            order = Order(
                oid,
                1000 + so.index + 1,
                so.created_at,
                so.created_at,
                so.email,
                financial[so.kind],
                None,
                None,
                None,
                [],
                lines,
                [],
                [],
            )
            self.orders[oid] = order
            location = loc_ids[so.location] if loc_ids else 0
            fo = self._open_fulfillment_order(order, location, so.created_at)
            if so.kind == "paid_fulfilled":
                self._apply_fulfilment(
                    order, [(fo, [(ln.id, ln.remaining) for ln in fo.lines])], [], so.created_at
                )
            elif so.kind in ("refunded", "cancelled"):
                self._release(fo)
                fo.status = "CLOSED" if so.kind == "refunded" else "CANCELLED"
                if so.kind == "cancelled":
                    order.cancelled_at, order.cancel_reason = so.created_at, "CUSTOMER"

    def _open_fulfillment_order(
        self, order: Order, location: int, at: datetime
    ) -> FulfillmentOrder:
        fid = self._next("FulfillmentOrder", 6_000_000_000)
        lines = [
            FoLine(
                self._next("FulfillmentOrderLineItem", 14_000_000_000),
                ln.id,
                ln.quantity,
                ln.quantity,
            )
            for ln in order.lines
        ]
        fo = FulfillmentOrder(fid, order.id, location, "OPEN", lines, [], at, at)
        self.fos[fid] = fo
        order.fo_ids.append(fid)
        for fol, ln in zip(lines, order.lines, strict=True):
            level = self.levels.get((ln.variant_id or 0, location))
            if level is not None:
                level["available"] -= fol.total
                level["committed"] += fol.total
        return fo

    def _release(self, fo: FulfillmentOrder) -> None:
        order = self.orders[fo.order_id]
        by_id = {ln.id: ln for ln in order.lines}
        for fol in fo.lines:
            level = self.levels.get((by_id[fol.line_item_id].variant_id or 0, fo.location_id))
            if level is not None and fol.remaining:
                level["available"] += fol.remaining
                level["committed"] -= fol.remaining
            fol.remaining = 0

    def _apply_fulfilment(
        self,
        order: Order,
        plan: list[tuple[FulfillmentOrder, list[tuple[int, int]]]],
        tracking: list[dict[str, Any]],
        at: datetime,
    ) -> Fulfillment:
        by_line = {ln.id: ln for ln in order.lines}
        done: list[tuple[int, int]] = []
        for fo, picks in plan:
            fol_by_id = {fol.id: fol for fol in fo.lines}
            for fol_id, qty in picks:
                fol = fol_by_id[fol_id]
                fol.remaining -= qty
                level = self.levels.get((by_line[fol.line_item_id].variant_id or 0, fo.location_id))
                if level is not None:
                    level["committed"] -= qty
                done.append((fol.line_item_id, qty))
            fo.status = "CLOSED" if all(f.remaining == 0 for f in fo.lines) else "IN_PROGRESS"
            fo.updated_at = at
        fid = self._next("Fulfillment", 4_000_000_000)
        self.fulfillments[fid] = Fulfillment(fid, order.id, at, tracking, done)
        order.fulfillment_ids.append(fid)
        order.updated_at = at
        return self.fulfillments[fid]

    # ---- HTTP

    async def handle(self, request: Request) -> Response:
        match = re.fullmatch(r"/admin/api/([^/]+)/graphql\.json", request.path)
        if match is None:
            return json_response({"errors": "Not Found"}, 404)
        version = self._served_version(match.group(1))
        if version is None:
            return json_response({"errors": "Not Found"}, 404)
        headers = [("X-Shopify-API-Version", version)]
        if request.headers.get("x-shopify-access-token") != self.config.access_token:
            return json_response({"errors": _AUTH_ERROR}, 401, headers)
        if request.method != "POST":
            return json_response({"errors": "Method Not Allowed"}, 405, headers)
        try:
            body = request.json()
            if not isinstance(body, dict) or not isinstance(body.get("query"), str):
                raise ValueError("no query")
        except ValueError:
            msg = {"errors": {"query": "Required parameter missing or invalid"}}
            return json_response(msg, 400, headers)
        variables = body.get("variables") or {}
        return json_response(
            self.execute(body["query"], variables, body.get("operationName"), version), 200, headers
        )

    def _served_version(self, asked: str) -> str | None:
        if asked in self.config.versions:
            return asked
        dated = sorted(v for v in self.config.versions if _VERSION_RE.match(v))
        if _VERSION_RE.match(asked) and dated and asked < dated[0]:
            return dated[0]  # "falls forward" to the oldest supported version
        return None

    def execute(
        self, query: str, variables: Mapping[str, Any], operation_name: str | None, version: str
    ) -> dict[str, Any]:
        """Run one GraphQL request; always returns a body with `extensions.cost`."""
        self.bucket.refill()
        try:
            op = self._operation(query, operation_name)
            variables = {**op.defaults, **dict(variables)}
            if op.kind == "mutation":
                requested = MUTATION_COST * len(op.selections)
            else:
                requested = gql.requested_cost(op.selections, variables)
        except gql.GraphQLError as exc:
            return {"errors": [exc.to_json()], "extensions": self._cost(0, 0)}
        if requested > MAX_QUERY_COST:
            err = gql.GraphQLError(
                f"Query cost is {requested}, which exceeds the single query max cost limit "
                f"({MAX_QUERY_COST}).",
                "MAX_COST_EXCEEDED",
                cost=requested,
                maxCost=MAX_QUERY_COST,
            )
            return {"errors": [err.to_json()], "extensions": self._cost(requested, None)}
        if self.bucket.available < requested:
            self.throttled += 1
            err = gql.GraphQLError(
                "Throttled", "THROTTLED", documentation="https://shopify.dev/api/usage/rate-limits"
            )
            return {"errors": [err.to_json()], "extensions": self._cost(requested, None)}
        self.bucket.available -= requested
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        search: list[dict[str, Any]] = []
        for field in op.selections:
            try:
                args = {k: gql.resolve(v, variables) for k, v in field.args.items()}
                if op.kind == "mutation":
                    value = self._mutate(field, args, variables, version)
                else:
                    value = self._query_field(field.name, args, search, field.key)
                data[field.key] = (
                    gql.project(value, field.selections, variables, field.name)
                    if field.selections
                    else value
                )
            except gql.GraphQLError as exc:
                data[field.key] = None
                errors.append(exc.to_json([field.key]))
        actual = (
            requested if op.kind == "mutation" else gql.actual_cost(op.selections, data, variables)
        )
        self.bucket.available = min(
            self.bucket.maximum, self.bucket.available + max(0, requested - actual)
        )
        out: dict[str, Any] = {"data": data}
        if errors:
            out["errors"] = errors
        out["extensions"] = self._cost(requested, actual)
        if search:
            out["extensions"]["search"] = search
        return out

    def _operation(self, query: str, name: str | None) -> gql.Operation:
        ops = self._docs.get(query)
        if ops is None:
            ops = gql.parse_document(query)
            if len(self._docs) > 2000:
                self._docs.clear()
            self._docs[query] = ops
        if name is not None:
            for op in ops:
                if op.name == name:
                    return op
            raise gql.GraphQLError(f'No operation named "{name}"')
        if len(ops) > 1:
            raise gql.GraphQLError("An operation name is required")
        return ops[0]

    def _cost(self, requested: int, actual: int | None) -> dict[str, Any]:
        return {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": self.bucket.status(),
            }
        }

    # ---- JSON views (dicts with __typename; callables take the field's arguments)

    def _location_json(self, loc: int) -> dict[str, Any]:
        return {
            "__typename": "Location",
            "id": gid("Location", loc),
            "legacyResourceId": str(loc),
            "name": self.locations.get(loc, ""),
            "isActive": True,
        }

    def _item_json(self, vid: int) -> dict[str, Any]:
        variant = self.variants[vid]

        def levels(args: dict[str, Any]) -> dict[str, Any]:
            rows = [(loc, (vid, loc)) for loc in self.locations if (vid, loc) in self.levels]
            return _connection([((loc,), self._level_json(vid, loc)) for loc, _ in rows], args)

        return {
            "__typename": "InventoryItem",
            "id": gid("InventoryItem", vid),
            "legacyResourceId": str(vid),
            "sku": variant.sku,
            "tracked": True,
            "inventoryLevels": levels,
            "variant": lambda _a: self._variant_json(vid),
        }

    def _level_json(self, vid: int, loc: int) -> dict[str, Any]:
        level = self.levels[(vid, loc)]

        def quantities(args: dict[str, Any]) -> list[dict[str, Any]]:
            names = args.get("names") or []
            return [
                {"__typename": "InventoryQuantity", "name": n, "quantity": self._quantity(level, n)}
                for n in names
            ]

        return {
            "__typename": "InventoryLevel",
            "id": f"gid://shopify/InventoryLevel/{vid}?inventory_item_id={vid}",
            "location": self._location_json(loc),
            "quantities": quantities,
            "item": lambda _a: self._item_json(vid),
        }

    @staticmethod
    def _quantity(level: dict[str, int], name: str) -> int:
        if name == "on_hand":
            return level["available"] + level["committed"]
        return level.get(name, 0)

    def _variant_json(self, vid: int) -> dict[str, Any]:
        v = self.variants[vid]
        total = sum(q["available"] for (item, _), q in self.levels.items() if item == vid)
        return {
            "__typename": "ProductVariant",
            "id": gid("ProductVariant", vid),
            "legacyResourceId": str(vid),
            "sku": v.sku,
            "title": v.title,
            "price": _money(v.price),
            "compareAtPrice": _money(v.compare_at) if v.compare_at is not None else None,
            "inventoryQuantity": total,
            "createdAt": format_iso(v.created_at),
            "inventoryItem": lambda _a: self._item_json(vid),
            "product": lambda _a: self._product_json(v.product_id),
        }

    def _product_json(self, pid: int) -> dict[str, Any]:
        p = self.products[pid]

        def variants(args: dict[str, Any]) -> dict[str, Any]:
            return _connection([((vid,), self._variant_json(vid)) for vid in p.variant_ids], args)

        return {
            "__typename": "Product",
            "id": gid("Product", pid),
            "legacyResourceId": str(pid),
            "title": p.title,
            "handle": p.handle,
            "status": p.status,
            "vendor": p.vendor,
            "tags": list(p.tags),
            "createdAt": format_iso(p.created_at),
            "updatedAt": format_iso(p.updated_at),
            "variants": variants,
            "totalInventory": sum(
                self.levels[(vid, loc)]["available"]
                for vid in p.variant_ids
                for loc in self.locations
                if (vid, loc) in self.levels
            ),
        }

    def _money_set(self, cents: int) -> dict[str, Any]:
        money = {
            "__typename": "MoneyV2",
            "amount": _money(cents),
            "currencyCode": self.config.currency,
        }
        return {"__typename": "MoneyBag", "shopMoney": money, "presentmentMoney": money}

    def _fulfilment_status(self, order: Order) -> str:
        total = sum(ln.quantity for ln in order.lines)
        done = sum(q for fid in order.fulfillment_ids for _, q in self.fulfillments[fid].lines)
        if total and done >= total:
            return "FULFILLED"
        if done:
            return "PARTIALLY_FULFILLED"
        if any(self.fos[f].status == "ON_HOLD" for f in order.fo_ids):
            return "ON_HOLD"
        return "UNFULFILLED"

    def _order_json(self, oid: int) -> dict[str, Any]:
        o = self.orders[oid]
        fulfilled = Counter[int]()
        for fid in o.fulfillment_ids:
            for line_id, qty in self.fulfillments[fid].lines:
                fulfilled[line_id] += qty

        def line_json(ln: LineItem) -> dict[str, Any]:
            return {
                "__typename": "LineItem",
                "id": gid("LineItem", ln.id),
                "sku": ln.sku,
                "title": ln.title,
                "name": ln.title,
                "quantity": ln.quantity,
                "currentQuantity": ln.quantity,
                "unfulfilledQuantity": ln.quantity - fulfilled[ln.id],
                "originalUnitPriceSet": self._money_set(ln.price),
                "variant": (
                    lambda _a, v=ln.variant_id: (
                        self._variant_json(v) if v in self.variants else None
                    )
                ),
            }

        status = self._fulfilment_status(o)
        closed = o.cancelled_at is not None or status == "FULFILLED"
        return {
            "__typename": "Order",
            "id": gid("Order", oid),
            "legacyResourceId": str(oid),
            "name": o.name,
            "email": o.email,
            "createdAt": format_iso(o.created_at),
            "processedAt": format_iso(o.created_at),
            "updatedAt": format_iso(o.updated_at),
            "cancelledAt": format_iso(o.cancelled_at) if o.cancelled_at else None,
            "cancelReason": o.cancel_reason,
            "closed": closed,
            "note": o.note,
            "tags": list(o.tags),
            "displayFinancialStatus": o.financial,
            "displayFulfillmentStatus": status,
            "fullyPaid": o.financial == "PAID",
            "currencyCode": self.config.currency,
            "totalPriceSet": self._money_set(sum(ln.price * ln.quantity for ln in o.lines)),
            "lineItems": lambda args: _connection(
                [((ln.id,), line_json(ln)) for ln in o.lines], args
            ),
            "fulfillmentOrders": lambda args: _connection(
                [((f,), self._fo_json(f)) for f in o.fo_ids], args
            ),
            "fulfillments": lambda _a: [self._fulfillment_json(f) for f in o.fulfillment_ids],
        }

    def _fo_json(self, fid: int) -> dict[str, Any]:
        fo = self.fos[fid]
        order = self.orders[fo.order_id]
        by_line = {ln.id: ln for ln in order.lines}

        def line_json(fol: FoLine) -> dict[str, Any]:
            ln = by_line[fol.line_item_id]
            return {
                "__typename": "FulfillmentOrderLineItem",
                "id": gid("FulfillmentOrderLineItem", fol.id),
                "sku": ln.sku,
                "totalQuantity": fol.total,
                "remainingQuantity": fol.remaining,
                "lineItem": {
                    "__typename": "LineItem",
                    "id": gid("LineItem", ln.id),
                    "sku": ln.sku,
                    "quantity": ln.quantity,
                },
            }

        location = self._location_json(fo.location_id)
        return {
            "__typename": "FulfillmentOrder",
            "id": gid("FulfillmentOrder", fid),
            "status": fo.status,
            "requestStatus": "UNSUBMITTED",
            "createdAt": format_iso(fo.created_at),
            "updatedAt": format_iso(fo.updated_at),
            "orderId": gid("Order", fo.order_id),
            "orderName": order.name,
            "assignedLocation": {
                "__typename": "FulfillmentOrderAssignedLocation",
                "name": location["name"],
                "location": location,
            },
            "fulfillmentHolds": [dict(h, __typename="FulfillmentHold") for h in fo.holds],
            "lineItems": lambda args: _connection(
                [((f.id,), line_json(f)) for f in fo.lines], args
            ),
            "order": lambda _a: self._order_json(fo.order_id),
        }

    def _fulfillment_json(self, fid: int) -> dict[str, Any]:
        f = self.fulfillments[fid]
        return {
            "__typename": "Fulfillment",
            "id": gid("Fulfillment", fid),
            "status": "SUCCESS",
            "createdAt": format_iso(f.created_at),
            "name": f"{self.orders[f.order_id].name}-F",
            "trackingInfo": lambda _a: [
                dict(t, __typename="FulfillmentTrackingInfo") for t in f.tracking
            ],
            "totalQuantity": sum(q for _, q in f.lines),
            "order": lambda _a: self._order_json(f.order_id),
        }

    # ---- queries

    def _query_field(
        self, name: str, args: dict[str, Any], search: list[dict[str, Any]], key: str
    ) -> Any:
        if name == "shop":
            return {
                "__typename": "Shop",
                "name": "Loopback Shop",
                "myshopifyDomain": self.config.shop_domain,
                "currencyCode": self.config.currency,
            }
        if name == "locations":
            return _connection([((loc,), self._location_json(loc)) for loc in self.locations], args)
        if name == "products":
            return self._products(args, search, key)
        if name == "product":
            pid = _gid_number(args.get("id"), "Product")
            return self._product_json(pid) if pid in self.products else None
        if name == "productVariants":
            terms, _ = _parse_search(args.get("query"), {"sku", "product_id"})
            rows = [
                ((vid,), vid)
                for vid, v in sorted(self.variants.items())
                if all(_match_text(v.sku, t) for t in terms if t.field == "sku")
            ]
            return _connection(rows, args, self._variant_json)
        if name == "inventoryItem":
            vid = _gid_number(args.get("id"), "InventoryItem")
            return self._item_json(vid) if vid in self.variants else None
        if name == "orders":
            return self._orders(args, search, key)
        if name == "ordersCount":
            limit = args.get("limit", 10000)
            count = len(self._filtered_orders(args.get("query"), search, key))
            capped = count if limit is None else min(count, int(limit))
            precision = "EXACT" if capped == count else "AT_LEAST"
            return {"__typename": "Count", "count": capped, "precision": precision}
        if name == "order":
            oid = _gid_number(args.get("id"), "Order")
            return self._order_json(oid) if oid in self.orders else None
        if name == "fulfillmentOrder":
            fid = _gid_number(args.get("id"), "FulfillmentOrder")
            return self._fo_json(fid) if fid in self.fos else None
        raise gql.GraphQLError(
            f"Field '{name}' doesn't exist on type 'QueryRoot'",
            "undefinedField",
            typeName="QueryRoot",
            fieldName=name,
        )

    def _products(self, args: dict[str, Any], search: list[dict[str, Any]], key: str) -> Any:
        terms, warnings = _parse_search(
            args.get("query"), {"status", "title", "sku", "updated_at", "id"}
        )
        if warnings:
            search.append({"path": [key], "query": args.get("query"), "warnings": warnings})
        rows = []
        for pid, p in sorted(self.products.items()):
            skus = [self.variants[v].sku for v in p.variant_ids]
            ok = True
            for t in terms:
                if t.field == "status":
                    ok = p.status.lower() in t.value.lower().split(",")
                elif t.field == "title":
                    ok = _match_text(p.title, t)
                elif t.field == "sku":
                    ok = any(_match_text(s, t) for s in skus)
                elif t.field == "updated_at":
                    ok = _compare(p.updated_at, t)
                elif t.field == "id":
                    ok = _compare(pid, t)
                if not ok:
                    break
            if ok:
                rows.append(((pid,), pid))
        return _connection(rows, args, self._product_json)

    def _filtered_orders(self, query: Any, search: list[dict[str, Any]], key: str) -> list[Order]:
        terms, warnings = _parse_search(query, _ORDER_FIELDS)
        if warnings:
            search.append({"path": [key], "query": query, "warnings": warnings})
        out = []
        for order in self.orders.values():
            if all(self._order_matches(order, t) for t in terms):
                out.append(order)
        return out

    def _order_matches(self, o: Order, t: _Term) -> bool:
        f = t.field
        if f == "financial_status":
            return t.value.lower() == "any" or o.financial.lower() in t.value.lower().split(",")
        if f == "fulfillment_status":
            status = self._fulfilment_status(o)
            wanted = t.value.lower()
            groups = {
                "shipped": {"FULFILLED"},
                "fulfilled": {"FULFILLED"},
                "partial": {"PARTIALLY_FULFILLED"},
                "unshipped": {"UNFULFILLED", "ON_HOLD"},
                "unfulfilled": {"UNFULFILLED", "ON_HOLD"},
                "on_hold": {"ON_HOLD"},
            }
            return wanted == "any" or status in groups.get(wanted, set())
        if f == "status":
            cancelled = o.cancelled_at is not None
            closed = cancelled or self._fulfilment_status(o) == "FULFILLED"
            return {"open": not closed, "closed": closed, "cancelled": cancelled, "any": True}.get(
                t.value.lower(), False
            )
        if f in ("created_at", "processed_at"):
            return _compare(o.created_at, t)
        if f == "updated_at":
            return _compare(o.updated_at, t)
        if f == "name":
            return o.name.lstrip("#") == t.value.lstrip("#")
        if f == "tag":
            return t.value in o.tags
        if f == "email":
            return o.email == t.value
        if f == "sku":
            return any(ln.sku == t.value for ln in o.lines)
        if f == "id":
            return _compare(o.id, t)
        return True

    def _orders(self, args: dict[str, Any], search: list[dict[str, Any]], key: str) -> Any:
        orders = self._filtered_orders(args.get("query"), search, key)
        sort = args.get("sortKey") or "ID"
        keyers: dict[str, Callable[[Order], Any]] = {
            "ID": lambda o: 0,
            "CREATED_AT": lambda o: o.created_at.timestamp(),
            "PROCESSED_AT": lambda o: o.created_at.timestamp(),
            "UPDATED_AT": lambda o: o.updated_at.timestamp(),
            "ORDER_NUMBER": lambda o: o.number,
        }
        if sort not in keyers:
            raise gql.GraphQLError(
                f"Argument 'sortKey' has an invalid value ({sort}); loopback "
                f"supports {sorted(keyers)}",
                "argumentLiteralsIncompatible",
            )
        keyer = keyers[sort]
        rows = [((keyer(o), o.id), o.id) for o in orders]
        return _connection(rows, args, self._order_json, bool(args.get("reverse")))

    # ---- mutations

    def _mutate(
        self, field: gql.Field, args: dict[str, Any], variables: Mapping[str, Any], version: str
    ) -> Any:
        name = field.name
        handler = _MUTATIONS.get(name)
        if handler is None:
            raise gql.GraphQLError(
                f"Field '{name}' doesn't exist on type 'Mutation'",
                "undefinedField",
                typeName="Mutation",
                fieldName=name,
            )
        directive = field.directives.get("idempotent")
        key = gql.resolve(directive.get("key"), variables) if directive is not None else None
        if (
            key is None
            and name == "inventoryAdjustQuantities"
            and _at_least(version, self.config.idempotent_required_from)
        ):
            raise gql.GraphQLError(
                "The @idempotent directive is required for this mutation but was not provided.",
                "BAD_REQUEST",
            )
        if key is None:
            return handler(self, args)
        fingerprint = hashlib.sha256(
            json.dumps([name, args], sort_keys=True, default=str).encode()
        ).hexdigest()
        seen = self.idempotency.get(str(key))
        if seen is not None:
            seen_name, seen_print, result, ok = seen
            self.duplicates["idempotent_replay"] += 1
            self.key_replays[str(key)] += 1
            if seen_name != name or seen_print != fingerprint:
                return _user_errors(
                    "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                    "The same idempotency key cannot be used with different operation parameters.",
                )
            if not ok:
                return _user_errors(
                    "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED",
                    "A previous request "
                    "with this idempotency key failed. Retry with a new "
                    "idempotency key.",
                )
            return result
        result = handler(self, args)
        ok = not any(result.get(k) for k in ("userErrors", "orderCancelUserErrors"))
        self.idempotency[str(key)] = (name, fingerprint, result, ok)
        return result

    def _wrote(self, name: str) -> None:
        self.writes[name] += 1

    def m_product_set(self, args: dict[str, Any]) -> dict[str, Any]:
        data = args.get("input") or args.get("product") or {}
        ident = args.get("identifier") or {}
        pid = _gid_number(ident.get("id") or data.get("id"), "Product")
        handle = ident.get("handle") or data.get("handle")
        if pid is None and handle:
            pid = next((p.id for p in self.products.values() if p.handle == handle), None)
        if pid is not None and pid not in self.products:
            return _user_errors("PRODUCT_DOES_NOT_EXIST", "Product does not exist", ["input", "id"])
        now = now_utc()
        status = str(data.get("status") or "ACTIVE")
        if status not in ("ACTIVE", "DRAFT", "ARCHIVED", "UNLISTED"):
            return _user_errors("INVALID", f"Status is not valid: {status}", ["input", "status"])
        if pid is None:
            title = data.get("title") or ""
            if not title:
                return _user_errors("BLANK", "Title can't be blank", ["input", "title"])
            pid = self._next("Product", 7_000_000_000)
            self.products[pid] = Product(
                pid,
                title,
                handle or _handleize(title),
                status,
                data.get("vendor") or "Loopback",
                [],
                now,
                now,
                [],
            )
        p = self.products[pid]
        p.title = data.get("title") or p.title
        p.status = str(data.get("status") or p.status)
        if "tags" in data:
            p.tags = _tags(data["tags"])
        if "variants" in data:
            keep: list[int] = []
            for vin in data.get("variants") or []:
                sku = vin.get("sku") or (vin.get("inventoryItem") or {}).get("sku") or ""
                vid = _gid_number(vin.get("id"), "ProductVariant")
                if vid is None:
                    vid = next((v for v in p.variant_ids if self.variants[v].sku == sku), None)
                if vid is None or vid not in self.variants:
                    vid = self._new_variant(pid, sku, now)
                v = self.variants[vid]
                v.sku = sku or v.sku
                if vin.get("price") is not None:
                    v.price = _cents(vin["price"])
                if "compareAtPrice" in vin:
                    cap = vin["compareAtPrice"]
                    v.compare_at = _cents(cap) if cap is not None else None
                options = vin.get("optionValues") or []
                if options and isinstance(options[0], dict) and options[0].get("name"):
                    v.title = str(options[0]["name"])
                keep.append(vid)
            for vid in p.variant_ids:
                if vid not in keep:
                    self._drop_variant(vid)
            p.variant_ids = keep
        p.updated_at = now
        self._wrote("productSet")
        product = self._product_json(pid)
        operation = {
            "__typename": "ProductSetOperation",
            "id": gid("ProductSetOperation", pid),
            "status": "COMPLETE",
            "product": product,
            "userErrors": [],
        }
        return {
            "__typename": "ProductSetPayload",
            "product": product,
            "productSetOperation": operation,
            "userErrors": [],
        }

    def _new_variant(self, pid: int, sku: str, now: datetime) -> int:
        vid = self._next("ProductVariant", 40_000_000_000)
        self.variants[vid] = Variant(vid, pid, sku, "Default Title", 0, None, now)
        for loc in self.locations:
            self.levels[(vid, loc)] = {"available": 0, "committed": 0}
        return vid

    def _drop_variant(self, vid: int) -> None:
        self.variants.pop(vid, None)
        for loc in self.locations:
            self.levels.pop((vid, loc), None)

    def m_product_create(self, args: dict[str, Any]) -> dict[str, Any]:
        data = args.get("product") or args.get("input") or {}
        title = data.get("title") or ""
        if not title:
            return _user_errors("BLANK", "Title can't be blank", ["title"], payload="product")
        handle = data.get("handle") or _handleize(title)
        if any(p.handle == handle for p in self.products.values()):
            handle = f"{handle}-{self._ids['Product'] + 1}"
        now = now_utc()
        pid = self._next("Product", 7_000_000_000)
        status = str(data.get("status") or "ACTIVE")
        self.products[pid] = Product(
            pid,
            title,
            handle,
            status,
            data.get("vendor") or "Loopback",
            _tags(data.get("tags") or []),
            now,
            now,
            [],
        )
        self.products[pid].variant_ids.append(self._new_variant(pid, "", now))
        self._wrote("productCreate")
        return {
            "__typename": "ProductCreatePayload",
            "product": self._product_json(pid),
            "userErrors": [],
        }

    def m_product_update(self, args: dict[str, Any]) -> dict[str, Any]:
        data = args.get("product") or args.get("input") or {}
        pid = _gid_number(data.get("id"), "Product")
        if pid not in self.products:
            return _user_errors(
                "PRODUCT_DOES_NOT_EXIST", "Product does not exist", ["id"], payload="product"
            )
        p = self.products[pid]
        if "status" in data:
            if data["status"] not in ("ACTIVE", "DRAFT", "ARCHIVED", "UNLISTED"):
                return _user_errors("INVALID", "Status is not valid", ["status"], payload="product")
            p.status = data["status"]
        for key_in, attr in (("title", "title"), ("handle", "handle"), ("vendor", "vendor")):
            if data.get(key_in):
                setattr(p, attr, data[key_in])
        if "tags" in data:
            p.tags = _tags(data["tags"])
        p.updated_at = now_utc()
        self._wrote("productUpdate")
        return {
            "__typename": "ProductUpdatePayload",
            "product": self._product_json(pid),
            "userErrors": [],
        }

    def m_product_change_status(self, args: dict[str, Any]) -> dict[str, Any]:
        result = self.m_product_update(
            {"product": {"id": args.get("productId"), "status": args.get("status")}}
        )
        result["__typename"] = "ProductChangeStatusPayload"
        return result

    def m_variants_bulk_update(self, args: dict[str, Any]) -> dict[str, Any]:
        pid = _gid_number(args.get("productId"), "Product")
        if pid not in self.products:
            return _user_errors(
                "PRODUCT_DOES_NOT_EXIST", "Product does not exist", ["productId"], payload="product"
            )
        p = self.products[pid]
        changes = []
        for i, vin in enumerate(args.get("variants") or []):
            vid = _gid_number(vin.get("id"), "ProductVariant")
            if vid not in p.variant_ids:
                return _user_errors(
                    "PRODUCT_VARIANT_DOES_NOT_EXIST",
                    "Product variant does not exist",
                    ["variants", str(i), "id"],
                    payload="product",
                )
            changes.append((vid, vin))
        now = now_utc()
        for vid, vin in changes:
            v = self.variants[vid]
            if vin.get("price") is not None:
                v.price = _cents(vin["price"])
            if "compareAtPrice" in vin:
                cap = vin["compareAtPrice"]
                v.compare_at = _cents(cap) if cap is not None else None
            sku = vin.get("sku") or (vin.get("inventoryItem") or {}).get("sku")
            if sku:
                v.sku = sku
        p.updated_at = now
        self._wrote("productVariantsBulkUpdate")
        return {
            "__typename": "ProductVariantsBulkUpdatePayload",
            "product": self._product_json(pid),
            "productVariants": [self._variant_json(vid) for vid, _ in changes],
            "userErrors": [],
        }

    def _inventory_target(
        self, change: Mapping[str, Any], path: list[str]
    ) -> tuple[tuple[int, int] | None, dict[str, Any] | None]:
        vid = _gid_number(change.get("inventoryItemId"), "InventoryItem")
        loc = _gid_number(change.get("locationId"), "Location")
        if vid is None or vid not in self.variants:
            return None, _user_errors(
                "INVALID_INVENTORY_ITEM",
                "The specified inventory item could not be found.",
                [*path, "inventoryItemId"],
            )
        if loc is None or (vid, loc) not in self.levels:
            return None, _user_errors(
                "INVALID_LOCATION",
                "The specified location could not be found.",
                [*path, "locationId"],
            )
        return (vid, loc), None

    def m_inventory_adjust(self, args: dict[str, Any]) -> dict[str, Any]:
        data = args.get("input") or {}
        name = data.get("name") or "available"
        reason = data.get("reason") or ""
        if reason not in _REASONS:
            return _user_errors(
                "INVALID_REASON", "The specified reason is invalid.", ["input", "reason"]
            )
        if name not in ("available", "on_hand"):
            return _user_errors(
                "INVALID_QUANTITY_NAME",
                "The quantity name must be available or on_hand.",
                ["input", "name"],
            )
        planned = []
        for i, change in enumerate(data.get("changes") or []):
            target, error = self._inventory_target(change, ["input", "changes", str(i)])
            if error is not None or target is None:
                return error or {}
            level = self.levels[target]
            if change.get("changeFromQuantity") is not None and int(
                change["changeFromQuantity"]
            ) != self._quantity(level, name):
                return _user_errors(
                    "CHANGE_FROM_QUANTITY_STALE",
                    "The quantity has changed since changeFromQuantity was read.",
                    ["input", "changes", str(i), "changeFromQuantity"],
                )
            planned.append((target, int(change.get("delta") or 0)))
        out = []
        for (vid, loc), delta in planned:
            level = self.levels[(vid, loc)]
            level["available"] += delta
            out.append(self._change_json(vid, loc, name, delta, self._quantity(level, name)))
        self._wrote("inventoryAdjustQuantities")
        return self._adjustment_payload("InventoryAdjustQuantitiesPayload", reason, data, out)

    def _change_json(self, vid: int, loc: int, name: str, delta: int, after: int) -> dict[str, Any]:
        return {
            "__typename": "InventoryChange",
            "name": name,
            "delta": delta,
            "quantityAfterChange": after,
            "item": self._item_json(vid),
            "location": self._location_json(loc),
        }

    def _adjustment_payload(
        self, typename: str, reason: str, data: Mapping[str, Any], changes: list[dict[str, Any]]
    ) -> dict[str, Any]:
        group_id = self._next("InventoryAdjustmentGroup", 90_000_000_000)
        group = {
            "__typename": "InventoryAdjustmentGroup",
            "id": gid("InventoryAdjustmentGroup", group_id),
            "createdAt": format_iso(now_utc()),
            "reason": reason,
            "referenceDocumentUri": data.get("referenceDocumentUri"),
            "changes": changes,
        }
        return {"__typename": typename, "inventoryAdjustmentGroup": group, "userErrors": []}

    def m_inventory_set(self, args: dict[str, Any]) -> dict[str, Any]:
        data = args.get("input") or {}
        name = data.get("name") or "available"
        reason = data.get("reason") or ""
        if reason not in _REASONS:
            return _user_errors(
                "INVALID_REASON", "The specified reason is invalid.", ["input", "reason"]
            )
        if name not in ("available", "on_hand"):
            return _user_errors(
                "INVALID_NAME", "The quantity name must be available or on_hand.", ["input", "name"]
            )
        ignore = bool(data.get("ignoreCompareQuantity"))
        planned = []
        for i, row in enumerate(data.get("quantities") or []):
            path = ["input", "quantities", str(i)]
            target, error = self._inventory_target(row, path)
            if error is not None or target is None:
                return error or {}
            current = self._quantity(self.levels[target], name)
            if not ignore:
                if "compareQuantity" in row:
                    compare = row["compareQuantity"]
                elif "changeFromQuantity" in row:
                    compare = row["changeFromQuantity"]
                else:
                    return _user_errors(
                        "COMPARE_QUANTITY_REQUIRED",
                        "compareQuantity (or "
                        "changeFromQuantity) is required unless "
                        "ignoreCompareQuantity is true.",
                        path,
                    )
                if compare is not None and int(compare) != current:
                    return _user_errors(
                        "COMPARE_QUANTITY_STALE",
                        "The compareQuantity argument no longer matches the persisted quantity.",
                        path,
                    )
            planned.append((target, int(row.get("quantity") or 0), current))
        out = []
        for (vid, loc), quantity, current in planned:
            level = self.levels[(vid, loc)]
            level["available"] += quantity - current
            out.append(self._change_json(vid, loc, name, quantity - current, quantity))
        self._wrote("inventorySetQuantities")
        return self._adjustment_payload("InventorySetQuantitiesPayload", reason, data, out)

    def m_fulfillment_create(self, args: dict[str, Any]) -> dict[str, Any]:
        data = args.get("fulfillment") or {}
        groups = data.get("lineItemsByFulfillmentOrder") or []
        if not groups:
            return _user_errors(
                "INVALID",
                "lineItemsByFulfillmentOrder can't be blank",
                ["fulfillment"],
                payload="fulfillment",
            )
        plan: list[tuple[FulfillmentOrder, list[tuple[int, int]]]] = []
        order: Order | None = None
        for i, group in enumerate(groups):
            fid = _gid_number(group.get("fulfillmentOrderId"), "FulfillmentOrder")
            fo = self.fos.get(fid or 0)
            path = ["fulfillment", "lineItemsByFulfillmentOrder", str(i)]
            if fo is None:
                return _user_errors(
                    "INVALID",
                    "Fulfillment order does not exist.",
                    [*path, "fulfillmentOrderId"],
                    payload="fulfillment",
                )
            if order is not None and fo.order_id != order.id:
                return _user_errors(
                    "INVALID",
                    "All fulfillment orders must belong to the same order.",
                    path,
                    payload="fulfillment",
                )
            order = self.orders[fo.order_id]
            if fo.status not in ("OPEN", "IN_PROGRESS"):
                self.duplicates[f"fulfillment_order_{fo.status.lower()}"] += 1
                return _user_errors(
                    "INVALID",
                    f"Fulfillment order {gid('FulfillmentOrder', fo.id)}"
                    f" has an unfulfillable status= {fo.status.lower()}.",
                    path,
                    payload="fulfillment",
                )
            by_id = {f.id: f for f in fo.lines}
            wanted = group.get("fulfillmentOrderLineItems")
            if not wanted:
                picks = [(f.id, f.remaining) for f in fo.lines if f.remaining > 0]
            else:
                picks = []
                for w in wanted:
                    lid = _gid_number(w.get("id"), "FulfillmentOrderLineItem")
                    qty = int(w.get("quantity") or 0)
                    fol = by_id.get(lid or 0)
                    if fol is None or qty <= 0 or qty > fol.remaining:
                        return _user_errors(
                            "INVALID",
                            "Invalid fulfillment order line item quantity requested.",
                            path,
                            payload="fulfillment",
                        )
                    picks.append((fol.id, qty))
            plan.append((fo, picks))
        assert order is not None
        tracking_in = data.get("trackingInfo") or {}
        tracking = []
        if tracking_in:
            numbers = tracking_in.get("numbers") or [tracking_in.get("number")]
            for number in numbers:
                tracking.append(
                    {
                        "company": tracking_in.get("company"),
                        "number": number,
                        "url": tracking_in.get("url"),
                    }
                )
        fulfillment = self._apply_fulfilment(order, plan, tracking, now_utc())
        self.fulfilments_by_order[gid("Order", order.id)] += 1
        self._wrote("fulfillmentCreate")
        return {
            "__typename": "FulfillmentCreatePayload",
            "fulfillment": self._fulfillment_json(fulfillment.id),
            "userErrors": [],
        }

    def m_order_update(self, args: dict[str, Any]) -> dict[str, Any]:
        data = args.get("input") or {}
        oid = _gid_number(data.get("id"), "Order")
        if oid not in self.orders:
            return _user_errors("INVALID", "Order does not exist", ["id"], payload="order")
        order = self.orders[oid]
        if "note" in data:
            order.note = data["note"]
        if "tags" in data:
            order.tags = _tags(data["tags"])
        if data.get("email"):
            order.email = data["email"]
        order.updated_at = now_utc()
        self._wrote("orderUpdate")
        return {
            "__typename": "OrderUpdatePayload",
            "order": self._order_json(oid),
            "userErrors": [],
        }

    def m_order_cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        oid = _gid_number(args.get("orderId"), "Order")

        def fail(code: str, message: str) -> dict[str, Any]:
            err = {
                "__typename": "OrderCancelUserError",
                "field": ["orderId"],
                "message": message,
                "code": code,
            }
            return {
                "__typename": "OrderCancelPayload",
                "job": None,
                "orderCancelUserErrors": [err],
                "userErrors": [err],
            }

        if oid not in self.orders:
            return fail("NOT_FOUND", "Order does not exist")
        order = self.orders[oid]
        if order.cancelled_at is not None:
            self.duplicates["order_already_cancelled"] += 1
            return fail("INVALID", "Order has already been cancelled.")
        if order.fulfillment_ids:
            return fail("INVALID", "Cannot cancel an order that has fulfillments.")
        now = now_utc()
        for fid in order.fo_ids:
            fo = self.fos[fid]
            if args.get("restock", True):
                self._release(fo)
            fo.status, fo.updated_at = "CLOSED", now
        order.cancelled_at, order.updated_at = now, now
        order.cancel_reason = str(args.get("reason") or "OTHER")
        if args.get("refund") or args.get("refundMethod"):
            order.financial = "REFUNDED"
        elif order.financial != "PAID":
            order.financial = "VOIDED"
        if args.get("staffNote"):
            order.note = args["staffNote"]
        self._wrote("orderCancel")
        job = {"__typename": "Job", "id": gid("Job", self._next("Job", 1)), "done": True}
        return {
            "__typename": "OrderCancelPayload",
            "job": job,
            "orderCancelUserErrors": [],
            "userErrors": [],
        }

    def _fo_arg(self, args: dict[str, Any]) -> FulfillmentOrder | dict[str, Any]:
        """The fulfillment order `args["id"]` names, or the userErrors payload saying so."""
        fo = self.fos.get(_gid_number(args.get("id"), "FulfillmentOrder") or 0)
        if fo is not None:
            return fo
        return _user_errors(
            "FULFILLMENT_ORDER_NOT_FOUND",
            "Fulfillment order not found.",
            ["id"],
            payload="fulfillmentOrder",
        )

    def m_fo_hold(self, args: dict[str, Any]) -> dict[str, Any]:
        fo = self._fo_arg(args)
        if not isinstance(fo, FulfillmentOrder):
            return fo  # FULFILLMENT_ORDER_NOT_FOUND
        if fo.status not in ("OPEN", "IN_PROGRESS", "ON_HOLD"):
            return _user_errors(
                "INVALID",
                f"Fulfillment order cannot be held in status {fo.status}.",
                ["id"],
                payload="fulfillmentOrder",
            )
        hold_in = args.get("fulfillmentHold") or {}
        hold = {
            "id": gid("FulfillmentHold", self._next("FulfillmentHold", 8_000_000_000)),
            "reason": hold_in.get("reason") or "OTHER",
            "reasonNotes": hold_in.get("reasonNotes"),
            "handle": hold_in.get("handle"),
        }
        fo.holds.append(hold)
        fo.status, fo.updated_at = "ON_HOLD", now_utc()
        self._wrote("fulfillmentOrderHold")
        return {
            "__typename": "FulfillmentOrderHoldPayload",
            "fulfillmentOrder": self._fo_json(fo.id),
            "fulfillmentHold": dict(hold, __typename="FulfillmentHold"),
            "remainingFulfillmentOrder": None,
            "userErrors": [],
        }

    def m_fo_release(self, args: dict[str, Any]) -> dict[str, Any]:
        fo = self._fo_arg(args)
        if not isinstance(fo, FulfillmentOrder):
            return fo  # FULFILLMENT_ORDER_NOT_FOUND
        if fo.status != "ON_HOLD":
            self.duplicates["release_not_on_hold"] += 1
            return _user_errors(
                "INVALID", "Fulfillment order is not on hold.", ["id"], payload="fulfillmentOrder"
            )
        wanted = args.get("holdIds")
        if wanted is None:
            fo.holds.clear()
        else:
            named = {str(h) for h in wanted}
            fo.holds[:] = [h for h in fo.holds if h["id"] not in named]
        if not fo.holds:
            partial = any(f.remaining < f.total for f in fo.lines)
            fo.status = "IN_PROGRESS" if partial else "OPEN"
        fo.updated_at = now_utc()
        self._wrote("fulfillmentOrderReleaseHold")
        return {
            "__typename": "FulfillmentOrderReleaseHoldPayload",
            "fulfillmentOrder": self._fo_json(fo.id),
            "userErrors": [],
        }

    # ---- counters, control, webhooks

    def stats(self, detail: bool = False) -> dict[str, Any]:
        twice = sorted(k for k, n in self.fulfilments_by_order.items() if n > 1)
        out: dict[str, Any] = {
            "platform": "shopify",
            "writes": dict(sorted(self.writes.items())),
            "fulfilments_applied": sum(self.fulfilments_by_order.values()),
            "orders_fulfilled": len(self.fulfilments_by_order),
            "orders_fulfilled_more_than_once": twice,
            "duplicates_suppressed": dict(sorted(self.duplicates.items())),
            "idempotency_keys": len(self.idempotency),
            "idempotency_keys_replayed": len(self.key_replays),
            "throttled": self.throttled,
            "bucket": self.bucket.status(),
            "orders": len(self.orders),
        }
        if detail:
            out["fulfilments_by_order"] = dict(self.fulfilments_by_order)
            out["replays_by_key"] = dict(self.key_replays)
        return out

    async def control(self, request: Request) -> Response | None:
        if request.path == "/_loopback/stats/detail":
            return json_response({"app": self.stats(detail=True)})
        if request.path == "/_loopback/webhooks/orders-create" and request.method == "POST":
            data = request.json() or {}
            deliveries = [
                self.create_order_webhook(data.get("api_version") or self.config.versions[0])
                for _ in range(int(data.get("count", 1)))
            ]
            statuses = await post_webhooks(str(data["url"]), deliveries)
            return json_response({"statuses": statuses})
        return None

    def create_order_webhook(self, api_version: str) -> tuple[bytes, dict[str, str]]:
        """Place a new paid, unfulfilled order and sign its `orders/create` delivery."""
        now = now_utc()
        vid = sorted(self.variants)[len(self.orders) % len(self.variants)]
        v = self.variants[vid]
        oid = self._next("Order", 5_000_000_000)
        line = LineItem(
            self._next("LineItem", 13_000_000_000),
            vid,
            v.sku,
            self.products[v.product_id].title,
            1,
            v.price,
        )
        order = Order(
            oid,
            1001 + len(self.orders),
            now,
            now,
            f"buyer{oid}@example.com",
            "PAID",
            None,
            None,
            None,
            [],
            [line],
            [],
            [],
        )
        self.orders[oid] = order
        self._open_fulfillment_order(order, next(iter(self.locations), 0), now)
        payload = {
            "id": oid,
            "admin_graphql_api_id": gid("Order", oid),
            "name": order.name,
            "order_number": order.number,
            "email": order.email,
            "created_at": format_iso(now),
            "updated_at": format_iso(now),
            "financial_status": "paid",
            "fulfillment_status": None,
            "currency": self.config.currency,
            "total_price": _money(v.price),
            "note": None,
            "tags": "",
            "line_items": [
                {
                    "id": line.id,
                    "variant_id": vid,
                    "sku": v.sku,
                    "title": line.title,
                    "quantity": 1,
                    "price": _money(v.price),
                }
            ],
        }
        return shopify_webhook(
            "orders/create", payload, self.config.api_secret, self.config.shop_domain, api_version
        )


_MUTATIONS: dict[str, Callable[[ShopifyApp, dict[str, Any]], dict[str, Any]]] = {
    "productSet": ShopifyApp.m_product_set,
    "productCreate": ShopifyApp.m_product_create,
    "productUpdate": ShopifyApp.m_product_update,
    "productChangeStatus": ShopifyApp.m_product_change_status,
    "productVariantsBulkUpdate": ShopifyApp.m_variants_bulk_update,
    "inventoryAdjustQuantities": ShopifyApp.m_inventory_adjust,
    "inventorySetQuantities": ShopifyApp.m_inventory_set,
    "fulfillmentCreate": ShopifyApp.m_fulfillment_create,
    "orderUpdate": ShopifyApp.m_order_update,
    "orderCancel": ShopifyApp.m_order_cancel,
    "fulfillmentOrderHold": ShopifyApp.m_fo_hold,
    "fulfillmentOrderReleaseHold": ShopifyApp.m_fo_release,
}

_ORDER_FIELDS = frozenset(
    {
        "financial_status",
        "fulfillment_status",
        "status",
        "created_at",
        "updated_at",
        "processed_at",
        "name",
        "tag",
        "email",
        "sku",
        "id",
    }
)


def _user_errors(
    code: str, message: str, field: Sequence[str] | None = None, payload: str | None = None
) -> dict[str, Any]:
    err = {
        "__typename": "UserError",
        "field": list(field) if field else None,
        "message": message,
        "code": code,
    }
    out: dict[str, Any] = {"__typename": "Payload", "userErrors": [err]}
    for key in (
        "product",
        "productVariants",
        "inventoryAdjustmentGroup",
        "fulfillment",
        "order",
        "fulfillmentOrder",
        "productSetOperation",
        "job",
        "fulfillmentHold",
        "remainingFulfillmentOrder",
    ):
        out[key] = None
    if payload:
        out[payload] = None
    return out


def _at_least(version: str, floor: str) -> bool:
    return version == "unstable" or version >= floor


def _handleize(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    return [str(t).strip() for t in value if str(t).strip()]


def _cursor(key: tuple[Any, ...]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _uncursor(text: str) -> tuple[Any, ...]:
    try:
        return tuple(json.loads(base64.urlsafe_b64decode(text.encode())))
    except ValueError as exc:
        raise gql.GraphQLError(
            f"Invalid cursor for current pagination sort: {text}", "argumentLiteralsIncompatible"
        ) from exc


def _connection(
    rows: list[tuple[tuple[Any, ...], Any]],
    args: Mapping[str, Any],
    render: Callable[[Any], dict[str, Any]] | None = None,
    reverse: bool = False,
) -> dict[str, Any]:
    """A Relay connection over rows keyed by a sort tuple (keyset cursors, first/after)."""
    if args.get("last") is not None or args.get("before") is not None:
        raise gql.GraphQLError("last/before pagination is not supported by the loopback subset")
    first = args.get("first")
    if first is None:
        raise gql.GraphQLError("you must provide one of first or last", "missingRequiredArguments")
    first = int(first)
    if not 0 <= first <= 250:
        raise gql.GraphQLError(
            f"first must be between 0 and 250 (got {first})", "argumentLiteralsIncompatible"
        )
    rows = sorted(rows, key=lambda r: r[0], reverse=reverse)
    keys = [r[0] for r in rows]
    start = 0
    if args.get("after"):
        after = _uncursor(str(args["after"]))
        if reverse:
            start = next((i for i, k in enumerate(keys) if k < after), len(keys))
        else:
            start = bisect.bisect_right(keys, after)
    page = rows[start : start + first]
    nodes = [render(v) if render else v for _, v in page]
    edges = [
        {"__typename": "Edge", "cursor": _cursor(k), "node": n}
        for (k, _), n in zip(page, nodes, strict=True)
    ]
    info = {
        "__typename": "PageInfo",
        "hasNextPage": start + first < len(rows),
        "hasPreviousPage": start > 0,
        "startCursor": _cursor(page[0][0]) if page else None,
        "endCursor": _cursor(page[-1][0]) if page else None,
    }
    return {"__typename": "Connection", "nodes": nodes, "edges": edges, "pageInfo": info}


@dataclasses.dataclass(frozen=True, slots=True)
class _Term:
    field: str
    op: str  # : > >= < <=
    value: str


_TERM_RE = re.compile(r"""(\w+):(>=|<=|>|<)?("[^"]*"|'[^']*'|\S+)""")


def _parse_search(
    query: Any, allowed: frozenset[str] | set[str]
) -> tuple[list[_Term], list[dict[str, str]]]:
    if not query:
        return [], []
    terms, warnings = [], []
    for match in _TERM_RE.finditer(str(query)):
        field, op, value = match.group(1), match.group(2) or ":", match.group(3).strip("'\"")
        if field not in allowed:
            warnings.append({"field": field, "message": "Invalid search field for this query."})
            continue
        terms.append(_Term(field, op, value))
    return terms, warnings


def _compare(actual: datetime | int, term: _Term) -> bool:
    wanted: Any
    if isinstance(actual, datetime):
        wanted = parse_iso(term.value)
    else:
        wanted = int(str(term.value).rsplit("/", 1)[-1])
    results: dict[str, bool] = {
        ":": actual == wanted,
        ">": actual > wanted,
        ">=": actual >= wanted,
        "<": actual < wanted,
        "<=": actual <= wanted,
    }
    return results[term.op]


def _match_text(text: str, term: _Term) -> bool:
    value = term.value
    if value.endswith("*"):
        return text.lower().startswith(value[:-1].lower())
    return text.lower() == value.lower() if term.field == "sku" else value.lower() in text.lower()


def shopify_webhook(
    topic: str, payload: Any, secret: str, shop_domain: str, api_version: str
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a webhook delivery as Shopify sends it: X-Shopify-Hmac-Sha256 =
    base64(HMAC-SHA256(raw body, app secret)) plus topic, shop, API version, ids."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    digest = hashlib.sha256(body).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": hmac_sha256_base64(body, secret),
        "X-Shopify-Shop-Domain": shop_domain,
        "X-Shopify-Api-Version": api_version,
        "X-Shopify-Webhook-Id": f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}"
        f"-{digest[20:32]}",
        "X-Shopify-Triggered-At": format_iso(now_utc()),
        "X-Shopify-Event-Id": digest[32:48],
    }
    return body, headers


class ShopifyServer(LoopbackServer):
    """The Shopify double, running. `graphql_url(version)` and `headers` are what a
    client needs; `stats()` returns the counters (see ShopifyApp.stats)."""

    def __init__(
        self,
        config: ShopifyConfig | None = None,
        *,
        latency_s: float = 0.0,
        faults: FaultConfig | None = None,
        in_process: bool = True,
    ) -> None:
        self.config = config or ShopifyConfig()
        super().__init__(
            "connectors.loopback.shopify:ShopifyApp",
            self.config.to_json(),
            latency_s=latency_s,
            faults=faults,
            in_process=in_process,
        )

    def __enter__(self) -> ShopifyServer:
        self.start()
        return self

    @property
    def access_token(self) -> str:
        return self.config.access_token

    @property
    def headers(self) -> dict[str, str]:
        return {
            "X-Shopify-Access-Token": self.config.access_token,
            "Content-Type": "application/json",
        }

    def graphql_url(self, version: str | None = None) -> str:
        dated = [v for v in self.config.versions if v != "unstable"]
        chosen = version or (dated[-1] if dated else self.config.versions[0])
        return f"{self.base_url}/admin/api/{chosen}/graphql.json"

    def stats(self, detail: bool = False) -> dict[str, Any]:
        result = super().stats()
        if detail:
            result["app"] = self._control("GET", "/_loopback/stats/detail")["app"]
        return result

    def send_order_webhooks(self, url: str, count: int = 1) -> list[int]:
        """Create `count` new paid orders and POST a signed `orders/create` for each."""
        answer = self._control(
            "POST", "/_loopback/webhooks/orders-create", {"url": url, "count": count}
        )
        statuses: list[int] = answer["statuses"]
        return statuses
