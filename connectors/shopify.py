"""The Shopify store: `connectors.store.Store` over the Admin GraphQL API (pinned version).

Edge module: imports httpx through `connectors.client.ShopClient` (every HTTP call goes
there), pydantic models from `connectors.store`, and storeops.errors; never the engine.
Shopify GIDs stay inside: callers see plain ids (the numeric part of a GID) and accept
back a numeric id, an order name (`#1001`) or a full GID.

Rate limits: Shopify charges a calculated query cost against a leaky bucket per app and
store. The connector keeps a mirror of that bucket (from every answer's
`extensions.cost.throttleStatus`) and waits before sending a query the bucket cannot pay
for; a THROTTLED answer (HTTP 200) or a 429 still gets through, so ShopClient waits and
sends again. Page sizes are chosen so one query never costs more than the 1,000-point
single-query limit, nor more than the bucket holds.

Writes that must happen once carry Shopify's `@idempotent(key:)` directive with a UUID
derived from our idempotency key (uuid5), so a retry - ShopClient's after a lost answer,
or the SOP's with the same key - gets the original result instead of a second write.

What Shopify has no field for is kept in product tags: `category:<name>`,
`low-stock:<n>` and `lead-time:<days>`. Shopify has no customer-inquiry API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from connectors import store as s
from connectors.client import ClientOptions, ShopClient
from connectors.webhooks_in import signature_ok
from storeops.errors import ConfigError, OperationError

__all__ = ["DEFAULT_API_VERSION", "ShopifyStore", "idempotency_uuid", "verify_webhook"]

log = logging.getLogger("storeops.shopify")

DEFAULT_API_VERSION = "2026-10"
MAX_QUERY_COST = 1000  # Shopify refuses a single query that costs more
_VERSION_RE = re.compile(r"^\d{4}-(01|04|07|10)$")
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_KEY_NAMESPACE = uuid.UUID("6f0d7c57-2b1e-5c8e-9a55-53746f72654f")
_REASONS = frozenset(
    {
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
    }
)
_STALE = frozenset({"CHANGE_FROM_QUANTITY_STALE", "COMPARE_QUANTITY_STALE"})
_OUR_TAGS = ("category:", "low-stock:", "lead-time:")


def verify_webhook(body: bytes, header: str, secret: str) -> bool:
    """Whether `header` (X-Shopify-Hmac-Sha256) is base64(HMAC-SHA256(body, secret)).

    `body` must be the raw bytes as received, before any JSON parsing. Constant time."""
    return signature_ok(body, header, secret)


def idempotency_uuid(operation: str, key: str, *parts: str) -> str:
    """The UUID Shopify gets for our idempotency key: the same inputs give the same UUID."""
    return str(uuid.uuid5(_KEY_NAMESPACE, "/".join([operation, key, *parts])))


# --------------------------------------------------------------------------- queries
# Costs follow Shopify's documented rule (object 1, connection 2 + first x (1 + node));
# `node` below is the cost of one node's selection, used to size pages.

_LEVELS = """inventoryItem { id inventoryLevels(first: 10) {
      nodes { location { id } quantities(names: ["available", "on_hand"]) { name quantity } } } }"""
_VARIANT = f"id sku title price product {{ id title status tags }} {_LEVELS}"
_VARIANT_NODE = 34

VARIANTS = f"""query Variants($first: Int!, $after: String, $q: String) {{
  productVariants(first: $first, after: $after, query: $q) {{
    nodes {{ {_VARIANT} }} pageInfo {{ hasNextPage endCursor }} }} }}"""

_ORDER = """id name createdAt cancelledAt displayFinancialStatus displayFulfillmentStatus
  email note currencyCode totalPriceSet { shopMoney { amount currencyCode } }
  lineItems(first: 10) { nodes { sku quantity originalUnitPriceSet { shopMoney { amount } } }
    pageInfo { hasNextPage endCursor } }
  fulfillmentOrders(first: 5) { nodes { id status fulfillmentHolds { reason reasonNotes } } }
  fulfillments { trackingInfo { company number } }"""
_ORDER_NODE = 48

ORDERS = f"""query Orders($first: Int!, $after: String, $q: String) {{
  orders(first: $first, after: $after, query: $q, sortKey: CREATED_AT) {{
    nodes {{ {_ORDER} }} pageInfo {{ hasNextPage endCursor }} }} }}"""
ORDER = f"query Order($id: ID!) {{ order(id: $id) {{ {_ORDER} }} }}"

MORE_LINES = """query Lines($id: ID!, $first: Int!, $after: String) { order(id: $id) {
  lineItems(first: $first, after: $after) {
    nodes { sku quantity originalUnitPriceSet { shopMoney { amount } } }
    pageInfo { hasNextPage endCursor } } } }"""
_LINE_NODE = 2

SOLD = """query Sold($first: Int!, $after: String, $q: String) {
  orders(first: $first, after: $after, query: $q, sortKey: CREATED_AT) {
    nodes { id createdAt cancelledAt displayFinancialStatus
      lineItems(first: 20) { nodes { sku quantity } pageInfo { hasNextPage endCursor } } }
    pageInfo { hasNextPage endCursor } } }"""
_SOLD_NODE = 22

FULFILMENT_ORDERS = """query Open($id: ID!) { order(id: $id) { id name cancelledAt
  displayFulfillmentStatus fulfillmentOrders(first: 10) { nodes { id status } } } }"""
_FULFILMENT_ORDERS_COST = 1 + 2 + 10 * 1

SHOP = "query Shop { shop { currencyCode } }"

PRODUCT_SET = """mutation Create($identifier: ProductSetIdentifiers, $input: ProductSetInput!) {
  productSet(identifier: $identifier, input: $input, synchronous: true) {
    product { id } userErrors { field message code } } }"""

PRODUCT_UPDATE = """mutation Update($product: ProductUpdateInput!, $productId: ID!,
    $variants: [ProductVariantsBulkInput!]!) {
  productUpdate(product: $product) { product { id } userErrors { field message code } }
  productVariantsBulkUpdate(productId: $productId, variants: $variants) {
    productVariants { id price } userErrors { field message code } } }"""

PRODUCT_STATUS = """mutation Status($product: ProductUpdateInput!) {
  productUpdate(product: $product) { product { id status } userErrors { field message code } } }"""

SET_PRICE = """mutation Price($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants) {
    productVariants { id price } userErrors { field message code } } }"""

ADJUST = """mutation Adjust($input: InventoryAdjustQuantitiesInput!, $key: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { changes { name delta quantityAfterChange } }
    userErrors { field message code } } }"""
ADJUST_UNKEYED = ADJUST.replace(", $key: String!", "").replace(" @idempotent(key: $key)", "")

SET = """mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { changes { name delta quantityAfterChange } }
    userErrors { field message code } } }"""
SET_UNKEYED = SET.replace(", $key: String!", "").replace(" @idempotent(key: $key)", "")

FULFIL = """mutation Fulfil($fulfillment: FulfillmentInput!, $key: String!) {
  fulfillmentCreate(fulfillment: $fulfillment) @idempotent(key: $key) {
    fulfillment { id status } userErrors { field message code } } }"""
FULFIL_UNKEYED = FULFIL.replace(", $key: String!", "").replace(" @idempotent(key: $key)", "")

HOLD = """mutation Hold($id: ID!, $hold: FulfillmentOrderHoldInput!) {
  fulfillmentOrderHold(id: $id, fulfillmentHold: $hold) {
    fulfillmentOrder { id status } userErrors { field message code } } }"""

RELEASE = """mutation Release($id: ID!, $holdIds: [ID!]) {
  fulfillmentOrderReleaseHold(id: $id, holdIds: $holdIds) {
    fulfillmentOrder { id status } userErrors { field message code } } }"""

HELD = """query Held($id: ID!) { order(id: $id) { id name cancelledAt
  displayFulfillmentStatus fulfillmentOrders(first: 10) { nodes { id status
    fulfillmentHolds { id } } } } }"""
_HELD_COST = 1 + 2 + 10 * (1 + 1)

NOTE_READ = "query Note($id: ID!) { order(id: $id) { id note } }"
NOTE = """mutation Note($input: OrderInput!) {
  orderUpdate(input: $input) { order { id } userErrors { field message code } } }"""

CANCEL = """mutation Cancel($orderId: ID!, $staffNote: String) {
  orderCancel(orderId: $orderId, reason: OTHER, refund: false, restock: true,
      notifyCustomer: false, staffNote: $staffNote) {
    job { id done } orderCancelUserErrors { field message code } } }"""

BY_NAME = """query ByName($q: String!) { orders(first: 1, query: $q) { nodes { id } } }"""


# --------------------------------------------------------------------------- helpers


def _plain(gid: str) -> str:
    """The numeric part of a GID: gid://shopify/Order/5001?x=y -> 5001."""
    return gid.rsplit("/", 1)[-1].split("?", 1)[0]


def _gid(kind: str, plain: str) -> str:
    return plain if plain.startswith("gid://") else f"gid://shopify/{kind}/{plain}"


def _quoted(value: str) -> str:
    """A search-syntax value in double quotes (SKUs may hold spaces or colons)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _at_least(version: str, floor: str) -> bool:
    return version == "unstable" or version >= floor


def _handle(title: str, sku: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{title} {sku}".lower()).strip("-") or "product"


def _tag(tags: list[str], prefix: str) -> str | None:
    for tag in tags:
        if tag.startswith(prefix):
            return tag[len(prefix) :].strip()
    return None


def _int_tag(tags: list[str], prefix: str, default: int) -> int:
    value = _tag(tags, prefix)
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _money(value: Any) -> float:
    try:
        return round(float(value), 2)
    except (TypeError, ValueError):
        return 0.0


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class _Variant:
    """One SKU as read from Shopify (GIDs included; they never leave the module)."""

    sku: str
    variant_id: str
    title: str
    price: float
    product_id: str
    product_title: str
    product_status: str
    tags: list[str]
    item_id: str
    levels: list[tuple[str, int, int]]  # (location gid, available, on_hand)

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> _Variant:
        product = node["product"]
        item = node.get("inventoryItem") or {}
        levels = []
        for level in ((item.get("inventoryLevels") or {}).get("nodes")) or []:
            quantities = {q["name"]: int(q["quantity"]) for q in level.get("quantities") or []}
            levels.append(
                (
                    level["location"]["id"],
                    quantities.get("available", 0),
                    quantities.get("on_hand", 0),
                )
            )
        return cls(
            sku=node.get("sku") or "",
            variant_id=node["id"],
            title=node.get("title") or "",
            price=_money(node.get("price")),
            product_id=product["id"],
            product_title=product.get("title") or "",
            product_status=str(product.get("status") or "").upper(),
            tags=list(product.get("tags") or []),
            item_id=item.get("id") or "",
            levels=levels,
        )

    @property
    def status(self) -> str:
        # UNLISTED (2025-10+) is active but hidden from search: for us it is active
        return {"ACTIVE": "active", "DRAFT": "draft", "ARCHIVED": "archived"}.get(
            self.product_status, "active"
        )

    @property
    def on_hand(self) -> int:
        return sum(on_hand for _, _, on_hand in self.levels)

    @property
    def available(self) -> int:
        return sum(available for _, available, _ in self.levels)


@dataclass
class _Bucket:
    """Our mirror of Shopify's leaky bucket, fed by each answer's throttleStatus. Unknown
    until the first answer. Only ever trusts the server to lower the estimate."""

    maximum: float | None = None
    available: float = 0.0
    rate: float = 0.0
    stamp: float = field(default_factory=time.monotonic)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def _refill(self) -> None:
        now = time.monotonic()
        if self.maximum is not None:
            self.available = min(self.maximum, self.available + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, cost: float) -> float:
        """Reserve `cost` points, waiting until the bucket holds them; returns seconds waited."""
        waited = 0.0
        while self.maximum is not None and self.rate > 0:
            self._refill()
            need = min(cost, self.maximum)
            if self.available >= need:
                self.available -= need
                break
            delay = (need - self.available) / self.rate
            started = time.monotonic()
            # an answer refunds what a query did not use: look again as soon as one comes
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), delay)
            waited += time.monotonic() - started
        return waited

    def settle(self, reserved: float, charged: float, status: Mapping[str, Any] | None) -> None:
        """Refund what the server did not charge; adopt the server's view when lower."""
        self.changed.set()
        self.changed = asyncio.Event()
        if self.maximum is None:
            if status:
                self.maximum = float(status["maximumAvailable"])
                self.rate = float(status["restoreRate"])
                self.available = float(status["currentlyAvailable"])
                self.stamp = time.monotonic()
            return
        self._refill()
        self.available += reserved - charged
        if status:
            self.maximum = float(status["maximumAvailable"])
            self.rate = float(status["restoreRate"])
            self.available = min(self.available, float(status["currentlyAvailable"]))
        self.available = min(self.available, self.maximum)


def _user_errors(what: str, errors: list[dict[str, Any]]) -> OperationError:
    codes = {str(e.get("code") or "") for e in errors}
    text = "; ".join(
        (".".join(str(f) for f in e["field"]) + ": " if e.get("field") else "")
        + str(e.get("message"))
        + (f" ({e['code']})" if e.get("code") else "")
        for e in errors
    )
    message = f"shopify: {what}: {text}"
    if any("NOT_FOUND" in c or "DOES_NOT_EXIST" in c for c in codes):
        return OperationError("NotFound", message)
    if codes & _STALE:
        return OperationError("Conflict", message, retryable=True)
    if any(c.startswith("IDEMPOTENCY_") for c in codes) or any(
        "unfulfillable status" in str(e.get("message")) for e in errors
    ):
        return OperationError("Conflict", message)
    return OperationError("Invalid", message)


# --------------------------------------------------------------------------- the store


class ShopifyStore:
    """A `connectors.store.Store` for one Shopify shop (Admin GraphQL, pinned version).

    `endpoint_base` is the shop's origin (`https://my-shop.myshopify.com`); the token is
    sent as X-Shopify-Access-Token and kept out of messages, logs and repr.
    `served_api_version` is the version Shopify answered with (it falls forward when
    the pinned one is retired). `metrics` counts requests, throttling and waiting."""

    name = "shopify"

    def __init__(
        self,
        endpoint_base: str,
        access_token: str,
        *,
        api_version: str = DEFAULT_API_VERSION,
        options: ClientOptions | None = None,
    ) -> None:
        if not access_token:
            raise ConfigError("shopify: the access token is empty")
        if not (_VERSION_RE.match(api_version) or api_version == "unstable"):
            raise ConfigError(
                f"shopify: API version {api_version!r} is not YYYY-MM with MM one of "
                "01, 04, 07, 10 (or `unstable`)"
            )
        self.endpoint_base = endpoint_base.rstrip("/")
        self.api_version = api_version
        self.served_api_version: str | None = None
        self._path = f"/admin/api/{api_version}/graphql.json"
        self._client = ShopClient(
            self.endpoint_base,
            name="shopify",
            headers={"X-Shopify-Access-Token": access_token, "Content-Type": "application/json"},
            options=options,
            secrets=[access_token],
        )
        self._bucket = _Bucket()
        self._currency: str | None = None
        self._ready = asyncio.Lock()
        self.metrics: dict[str, float] = {
            "requests": 0,
            "throttled": 0,
            "waits": 0,
            "waited_s": 0.0,
            "cost_underestimates": 0,
        }

    @classmethod
    def from_env(
        cls, url: str, environ: Mapping[str, str], *, options: ClientOptions | None = None
    ) -> ShopifyStore:
        """The store for STOREOPS_STORE=`shopify+<url>`: `url` is the shop's origin
        (`https://my-shop.myshopify.com`; plain http only to a loopback address).
        STOREOPS_SHOPIFY_TOKEN (required), STOREOPS_SHOPIFY_API_VERSION (default
        2026-10). Raises ConfigError naming the variable, never the token."""
        text = url.strip()
        if "://" not in text:
            text = "https://" + (text if "." in text else f"{text}.myshopify.com")
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"STOREOPS_STORE=shopify+{url}: expected the shop's address, like "
                "shopify+https://my-shop.myshopify.com"
            )
        if parts.scheme == "http" and parts.hostname not in _LOCAL_HOSTS:
            raise ConfigError(
                f"STOREOPS_STORE=shopify+{url}: plain http would send the access token "
                "in clear; use https (http is allowed for loopback addresses only)"
            )
        token = environ.get("STOREOPS_SHOPIFY_TOKEN", "").strip()
        if not token:
            raise ConfigError(
                "STOREOPS_SHOPIFY_TOKEN is not set; it must hold the Admin API access "
                "token of the shop's custom app (shpat_...)"
            )
        version = environ.get("STOREOPS_SHOPIFY_API_VERSION", "").strip() or DEFAULT_API_VERSION
        if not (_VERSION_RE.match(version) or version == "unstable"):
            raise ConfigError(
                f"STOREOPS_SHOPIFY_API_VERSION={version!r}; expected YYYY-MM with MM one "
                f"of 01, 04, 07, 10 (a stable version, e.g. {DEFAULT_API_VERSION}) or unstable"
            )
        origin = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        return cls(origin, token, api_version=version, options=options)

    def __repr__(self) -> str:
        return f"ShopifyStore({self.endpoint_base!r}, api_version={self.api_version!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------ plumbing

    async def _fit(self, node: int, wanted: int, fixed: int = 2) -> int:
        """The largest page whose requested cost stays within the single-query limit and
        within the bucket (learnt first), capped at `wanted` and at Shopify's 250."""
        if self._currency is None:
            await self._bootstrap()
        ceiling = MAX_QUERY_COST
        if self._bucket.maximum is not None:
            ceiling = min(ceiling, int(self._bucket.maximum))
        return max(1, min(wanted, 250, (ceiling - fixed) // (1 + node)))

    def _throttle_wait(self, response: httpx.Response) -> float | None:
        """ShopClient's hook: seconds to wait if this HTTP 200 is Shopify's THROTTLED."""
        if response.status_code != 200 or b"THROTTLED" not in response.content:
            return None
        try:
            payload = response.json()
        except ValueError:
            return None
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if not isinstance(errors, list) or not any(
            (e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors
        ):
            return None
        self.metrics["throttled"] += 1
        cost = (payload.get("extensions") or {}).get("cost") or {}
        status = cost.get("throttleStatus") or {}
        requested = float(cost.get("requestedQueryCost") or 0)
        if not status:
            return 1.0
        self._bucket.settle(0, 0, status)
        if requested > float(status["maximumAvailable"]):
            return None  # waiting cannot help; _call reports it
        rate = float(status["restoreRate"]) or 1.0
        return max(0.05, (requested - float(status["currentlyAvailable"])) / rate)

    async def _call(
        self,
        what: str,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        cost: int,
        repeatable: bool = True,
    ) -> dict[str, Any]:
        """One GraphQL request: pre-throttle, send, record version and cost, map errors.

        Returns `data`. `cost` is our estimate of the requested cost (mutations: 10)."""
        if self._currency is None and query is not SHOP:
            await self._bootstrap()
        waited = await self._bucket.take(cost)
        if waited:
            self.metrics["waits"] += 1
            self.metrics["waited_s"] += waited
        self.metrics["requests"] += 1
        body = {"query": query, "variables": dict(variables or {})}
        try:
            response = await self._client.request(
                "POST",
                self._path,
                what=what,
                json=body,
                repeatable=repeatable,
                throttled=self._throttle_wait,
            )
        except OperationError as exc:
            self._bucket.settle(cost, 0, None)
            if exc.error == "NotFound":
                raise OperationError(
                    "NotConfigured",
                    f"shopify: {what}: {self.endpoint_base} has no Admin API at "
                    f"{self._path} (is API version {self.api_version} served, and is this "
                    "the shop's address?)",
                ) from None
            raise
        self._note_version(response)
        try:
            payload = response.json()
        except ValueError:
            self._bucket.settle(cost, 0, None)
            raise OperationError(
                "Unavailable", f"shopify: {what}: answer is not JSON", retryable=True
            ) from None
        extensions = payload.get("extensions") or {}
        spent = extensions.get("cost") or {}
        requested = spent.get("requestedQueryCost")
        if requested is not None and requested > cost:
            self.metrics["cost_underestimates"] += 1
            log.debug("shopify: %s cost %s, estimated %s", what, requested, cost)
        actual = spent.get("actualQueryCost")
        self._bucket.settle(cost, float(actual or 0), spent.get("throttleStatus"))
        errors = payload.get("errors")
        if errors:
            raise self._graphql_error(what, errors)
        data: dict[str, Any] = payload.get("data") or {}
        return data

    def _graphql_error(self, what: str, errors: Any) -> OperationError:
        if not isinstance(errors, list):
            return OperationError("Invalid", f"shopify: {what}: {str(errors)[:300]}")
        codes = {str((e.get("extensions") or {}).get("code") or "") for e in errors}
        text = "; ".join(str(e.get("message")) for e in errors)[:500]
        message = f"shopify: {what}: {text}"
        if "THROTTLED" in codes:
            return OperationError(
                "RateLimited", message + " (query costs more than the bucket holds)"
            )
        if "ACCESS_DENIED" in codes:
            return OperationError("Unauthorized", message + " (check the app's access scopes)")
        if "INTERNAL_SERVER_ERROR" in codes:
            return OperationError("Unavailable", message, retryable=True)
        return OperationError("Invalid", message)

    def _note_version(self, response: httpx.Response) -> None:
        served = response.headers.get("x-shopify-api-version")
        if served and served != self.served_api_version:
            self.served_api_version = served
            if served != self.api_version:
                log.warning(
                    "shopify: asked for API version %s, the shop answered with %s "
                    "(the pinned version is no longer served; update it)",
                    self.api_version,
                    served,
                )
            else:
                log.info("shopify: API version %s", served)

    async def _bootstrap(self) -> None:
        """Learn the bucket and the shop's currency with a 1-point query, once."""
        async with self._ready:
            if self._currency is None:
                data = await self._call("read the shop", SHOP, cost=1)
                self._currency = str((data.get("shop") or {}).get("currencyCode") or "")

    def _keyed(self) -> bool:
        return _at_least(self.api_version, "2026-01")

    # ------------------------------------------------------------ products

    async def _variants(self, query: str | None, limit: int) -> list[_Variant]:
        found: list[_Variant] = []
        after: str | None = None
        while True:
            first = await self._fit(_VARIANT_NODE, max(1, limit - len(found)))
            data = await self._call(
                "list product variants",
                VARIANTS,
                {"first": first, "after": after, "q": query},
                cost=2 + first * (1 + _VARIANT_NODE),
            )
            page = data["productVariants"]
            found += [_Variant.from_node(n) for n in page["nodes"]]
            if not page["pageInfo"]["hasNextPage"] or len(found) >= limit:
                return found
            after = page["pageInfo"]["endCursor"]

    async def _find(self, sku: str) -> _Variant | None:
        first = await self._fit(_VARIANT_NODE, 5)
        data = await self._call(
            f"find SKU {sku!r}",
            VARIANTS,
            {"first": first, "after": None, "q": f"sku:{_quoted(sku)}"},
            cost=2 + first * (1 + _VARIANT_NODE),
        )
        for node in data["productVariants"]["nodes"]:
            if node.get("sku") == sku:
                return _Variant.from_node(node)
        return None

    async def _variant(self, sku: str) -> _Variant:
        found = await self._find(sku)
        if found is None:
            raise OperationError("NotFound", f"shopify: no product variant with SKU {sku!r}")
        return found

    def _product(self, v: _Variant) -> dict[str, Any]:
        return {
            "sku": v.sku,
            "title": v.product_title,
            "variant_title": "" if v.title == "Default Title" else v.title,
            "price": v.price,
            "currency": self._currency or "",
            "status": v.status,
            "category": _tag(v.tags, "category:") or "",
            "attributes": {},
            "description": "",
            "images": [],
            "on_hand": v.on_hand,
            "available": v.available,
            "low_stock_threshold": _int_tag(v.tags, "low-stock:", 5),
            "product_id": _plain(v.product_id),
        }

    async def list_products(self, req: s.ListProducts, *, key: str) -> dict[str, Any]:
        """SKUs in Shopify's order (by variant id); status and category filtered here."""
        products: list[dict[str, Any]] = []
        after: str | None = None
        while len(products) < req.limit:
            first = await self._fit(_VARIANT_NODE, 250)
            data = await self._call(
                "list product variants",
                VARIANTS,
                {"first": first, "after": after, "q": None},
                cost=2 + first * (1 + _VARIANT_NODE),
            )
            page = data["productVariants"]
            for node in page["nodes"]:
                product = self._product(_Variant.from_node(node))
                if req.status and product["status"] != req.status:
                    continue
                if req.category and product["category"] != req.category:
                    continue
                products.append(product)
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        products = products[: req.limit]
        return {"products": products, "count": len(products)}

    async def get_product(self, req: s.GetProduct, *, key: str) -> dict[str, Any]:
        return self._product(await self._variant(req.sku))

    async def upsert_product(self, req: s.UpsertProduct, *, key: str) -> dict[str, Any]:
        """Create the SKU as a one-variant product (productSet, looked up by a handle made
        from title and SKU, so a repeated create updates instead of duplicating), or
        update title, status, our tags and price of the product that holds the SKU."""
        existing = await self._find(req.sku)
        ours = [f"category:{req.category}"] if req.category else []
        ours.append(f"low-stock:{req.low_stock_threshold}")
        price = f"{req.price:.2f}"
        if existing is None:
            handle = _handle(req.title, req.sku)
            data = await self._call(
                f"create product {req.sku}",
                PRODUCT_SET,
                {
                    "identifier": {"handle": handle},
                    "input": {
                        "title": req.title,
                        "handle": handle,
                        "status": req.status.upper(),
                        "tags": ours,
                        "productOptions": [
                            {"name": "Title", "values": [{"name": "Default Title"}]}
                        ],
                        "variants": [
                            {
                                "optionValues": [{"optionName": "Title", "name": "Default Title"}],
                                "sku": req.sku,
                                "price": price,
                            }
                        ],
                    },
                },
                cost=10,
            )
            result = data["productSet"]
            if result.get("userErrors"):
                raise _user_errors(f"create product {req.sku}", result["userErrors"])
        else:
            kept = [t for t in existing.tags if not t.startswith(_OUR_TAGS)]
            lead = _tag(existing.tags, "lead-time:")
            tags = kept + ours + ([f"lead-time:{lead}"] if lead else [])
            data = await self._call(
                f"update product {req.sku}",
                PRODUCT_UPDATE,
                {
                    "product": {
                        "id": existing.product_id,
                        "title": req.title,
                        "status": req.status.upper(),
                        "tags": tags,
                    },
                    "productId": existing.product_id,
                    "variants": [{"id": existing.variant_id, "price": price}],
                },
                cost=20,
            )
            for name in ("productUpdate", "productVariantsBulkUpdate"):
                if data[name].get("userErrors"):
                    raise _user_errors(f"update product {req.sku}", data[name]["userErrors"])
        product = self._product(await self._variant(req.sku))
        return {**product, "created": existing is None}

    async def _set_status(self, sku: str, status: str) -> dict[str, Any]:
        variant = await self._variant(sku)
        data = await self._call(
            f"set {sku} {status.lower()}",
            PRODUCT_STATUS,
            {"product": {"id": variant.product_id, "status": status}},
            cost=10,
        )
        result = data["productUpdate"]
        if result.get("userErrors"):
            raise _user_errors(f"set {sku} {status.lower()}", result["userErrors"])
        variant.product_status = str(result["product"]["status"])
        return self._product(variant)

    async def publish_product(self, req: s.PublishProduct, *, key: str) -> dict[str, Any]:
        """Status ACTIVE. Shopify does not add the product to sales channels by itself."""
        return await self._set_status(req.sku, "ACTIVE")

    async def unpublish_product(self, req: s.UnpublishProduct, *, key: str) -> dict[str, Any]:
        return await self._set_status(req.sku, "DRAFT")

    async def set_price(self, req: s.SetPrice, *, key: str) -> dict[str, Any]:
        variant = await self._variant(req.sku)
        data = await self._call(
            f"set the price of {req.sku}",
            SET_PRICE,
            {
                "productId": variant.product_id,
                "variants": [{"id": variant.variant_id, "price": f"{req.price:.2f}"}],
            },
            cost=10,
        )
        result = data["productVariantsBulkUpdate"]
        if result.get("userErrors"):
            raise _user_errors(f"set the price of {req.sku}", result["userErrors"])
        for changed in result.get("productVariants") or []:
            if changed["id"] == variant.variant_id:
                variant.price = _money(changed["price"])
        return self._product(variant)

    # ------------------------------------------------------------ inventory

    async def _sold(self, since: datetime) -> list[tuple[datetime, str, int]]:
        """(created at, SKU, quantity) of every line of orders since `since`, except
        cancelled or fully refunded ones."""
        out: list[tuple[datetime, str, int]] = []
        after: str | None = None
        while True:
            first = await self._fit(_SOLD_NODE, 250)
            data = await self._call(
                "read sold quantities",
                SOLD,
                {"first": first, "after": after, "q": f"created_at:>={s.iso_utc(since)}"},
                cost=2 + first * (1 + _SOLD_NODE),
            )
            page = data["orders"]
            for order in page["nodes"]:
                refunded = order.get("displayFinancialStatus") in ("REFUNDED", "VOIDED")
                if order.get("cancelledAt") or refunded:
                    continue
                created = _parse_time(order["createdAt"])
                lines = order["lineItems"]["nodes"]
                if order["lineItems"]["pageInfo"]["hasNextPage"]:
                    lines += await self._more_lines(
                        order["id"], order["lineItems"]["pageInfo"]["endCursor"]
                    )
                out += [(created, ln.get("sku") or "", int(ln["quantity"])) for ln in lines]
            if not page["pageInfo"]["hasNextPage"]:
                return out
            after = page["pageInfo"]["endCursor"]

    async def inventory_levels(self, req: s.InventoryLevels, *, key: str) -> dict[str, Any]:
        """Levels summed over the shop's locations (committed = allocated) and velocity
        from orders created in the window (cancelled orders do not count)."""
        now = datetime.now(UTC)
        since_7 = now - timedelta(days=7)
        if req.skus and len(req.skus) <= 20:
            found = await asyncio.gather(*(self._find(sku) for sku in req.skus))
            variants = [v for v in found if v is not None]
        else:
            variants = await self._variants(None, 100_000)
        sales = await self._sold(now - timedelta(days=req.window_days))
        sold_7: dict[str, int] = {}
        sold_n: dict[str, int] = {}
        for created, sku, quantity in sales:
            sold_n[sku] = sold_n.get(sku, 0) + quantity
            if created >= since_7:
                sold_7[sku] = sold_7.get(sku, 0) + quantity
        wanted = set(req.skus) if req.skus else None
        levels = [
            s.stock_level(
                sku=v.sku,
                title=v.product_title,
                on_hand=v.on_hand,
                allocated=v.on_hand - v.available,
                sold_7d=sold_7.get(v.sku, 0),
                sold_window=sold_n.get(v.sku, 0),
                window_days=req.window_days,
                low_stock_threshold=_int_tag(v.tags, "low-stock:", 5),
                lead_time_days=_int_tag(v.tags, "lead-time:", 7),
            )
            for v in variants
            if v.status != "archived" and (wanted is None or v.sku in wanted)
        ]
        return s.inventory_answer(levels, req, now)

    @staticmethod
    def _primary(variant: _Variant) -> tuple[str, int, int]:
        if not variant.levels:
            raise OperationError(
                "Invalid", f"shopify: SKU {variant.sku} is not stocked at any location"
            )
        return variant.levels[0]

    async def adjust_inventory(self, req: s.AdjustInventory, *, key: str) -> dict[str, Any]:
        """A delta on `available` at the SKU's first location, under @idempotent: the same
        key gives Shopify the same UUID and the same arguments, so it applies once.
        Shopify allows negative availability (overselling); this does not refuse it."""
        variant = await self._variant(req.sku)
        location, available, _on_hand = self._primary(variant)
        token = idempotency_uuid("adjust_inventory", key)
        change: dict[str, Any] = {
            "delta": req.delta,
            "inventoryItemId": variant.item_id,
            "locationId": location,
        }
        if _at_least(self.api_version, "2026-04"):
            change["changeFromQuantity"] = None  # explicit opt-out: a delta, not a CAS
        variables: dict[str, Any] = {
            "input": {
                "reason": req.reason if req.reason in _REASONS else "other",
                "name": "available",
                "referenceDocumentUri": f"storeops://inventory-adjustment/{token}",
                "changes": [change],
            }
        }
        if self._keyed():
            variables["key"] = token
        data = await self._call(
            f"adjust {req.sku} by {req.delta}",
            ADJUST if self._keyed() else ADJUST_UNKEYED,
            variables,
            cost=10,
            repeatable=self._keyed(),
        )
        result = data["inventoryAdjustQuantities"]
        if result.get("userErrors"):
            raise _user_errors(f"adjust {req.sku} by {req.delta}", result["userErrors"])
        changes = (result.get("inventoryAdjustmentGroup") or {}).get("changes") or []
        after = next(
            (int(c["quantityAfterChange"]) for c in changes if c["name"] == "available"),
            available + req.delta,
        )
        # on hand moves with available. Totals over the SKU's locations, measured against
        # what we read, so a replayed answer (read after the first write) is still right
        moved = after - available
        return {
            "sku": req.sku,
            "before": variant.on_hand + moved - req.delta,
            "on_hand": variant.on_hand + moved,
            "available": variant.available + moved,
            "location": _plain(location),
        }

    async def set_inventory(self, req: s.SetInventory, *, key: str) -> dict[str, Any]:
        """Set the SKU's on-hand total (over its locations) to `quantity` by setting its
        first location, compare-and-set against the quantity read; a stale compare is
        read again once, then reported as a retryable Conflict."""
        for attempt in (1, 2):
            variant = await self._variant(req.sku)
            location, _available, on_hand = self._primary(variant)
            total = variant.on_hand
            target = req.quantity - (total - on_hand)
            if target < 0:
                raise OperationError(
                    "Invalid",
                    f"shopify: SKU {req.sku} has {total - on_hand} on hand at other "
                    f"locations, more than {req.quantity}; set it per location in Shopify",
                )
            row: dict[str, Any] = {
                "inventoryItemId": variant.item_id,
                "locationId": location,
                "quantity": target,
            }
            compare = "changeFromQuantity" if _at_least(self.api_version, "2026-04") else None
            row[compare or "compareQuantity"] = on_hand
            token = idempotency_uuid(
                "set_inventory", key, variant.item_id, location, str(on_hand), str(target)
            )
            variables: dict[str, Any] = {
                "input": {
                    "name": "on_hand",
                    "reason": "correction",
                    "referenceDocumentUri": f"storeops://inventory-count/{token}",
                    "quantities": [row],
                }
            }
            if self._keyed():
                variables["key"] = token
            data = await self._call(
                f"set {req.sku} to {req.quantity}",
                SET if self._keyed() else SET_UNKEYED,
                variables,
                cost=10,
            )
            result = data["inventorySetQuantities"]
            errors = result.get("userErrors") or []
            if errors and attempt == 1 and {str(e.get("code")) for e in errors} & _STALE:
                continue
            if errors:
                raise _user_errors(f"set {req.sku} to {req.quantity}", errors)
            return {
                "sku": req.sku,
                "before": total,
                "on_hand": req.quantity,
                "location": _plain(location),
            }
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------ orders

    async def _more_lines(self, order_id: str, after: str | None) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        while True:
            first = await self._fit(_LINE_NODE, 250, fixed=3)
            data = await self._call(
                "read more order lines",
                MORE_LINES,
                {"id": order_id, "first": first, "after": after},
                cost=3 + first * (1 + _LINE_NODE),
            )
            page = (data.get("order") or {}).get("lineItems") or {}
            lines += page.get("nodes") or []
            if not (page.get("pageInfo") or {}).get("hasNextPage"):
                return lines
            after = page["pageInfo"]["endCursor"]

    async def _order(self, node: Mapping[str, Any]) -> dict[str, Any]:
        lines = list(node["lineItems"]["nodes"])
        if node["lineItems"]["pageInfo"]["hasNextPage"]:
            lines += await self._more_lines(node["id"], node["lineItems"]["pageInfo"]["endCursor"])
        fos = node["fulfillmentOrders"]["nodes"]
        fulfilment = str(node.get("displayFulfillmentStatus") or "")
        financial = str(node.get("displayFinancialStatus") or "").lower()
        held = fulfilment == "ON_HOLD" or any(fo["status"] == "ON_HOLD" for fo in fos)
        if node.get("cancelledAt") or (
            financial in ("refunded", "voided") and fulfilment != "FULFILLED"
        ):
            status = "cancelled"  # refunded before shipping: closed, as the local store has it
        elif fulfilment == "FULFILLED":
            status = "fulfilled"
        elif held:
            status = "on_hold"
        elif financial in ("paid", "partially_refunded"):
            status = "paid"
        else:
            status = "pending"
        holds = [h for fo in fos for h in fo.get("fulfillmentHolds") or []]
        tracking = [t for f in node.get("fulfillments") or [] for t in f.get("trackingInfo") or []]
        name = str(node.get("name") or "")
        digits = re.sub(r"\D", "", name)
        money = node["totalPriceSet"]["shopMoney"]
        return {
            "id": _plain(node["id"]),
            "number": int(digits) if digits else None,
            "name": name,
            "status": status,
            "financial_status": financial,
            "total": _money(money["amount"]),
            "currency": money.get("currencyCode") or node.get("currencyCode") or "",
            "created_at": node["createdAt"],
            "customer": {"name": "", "email": node.get("email") or ""},
            "shipping_address": {},
            "lines": [
                {
                    "sku": ln.get("sku") or "",
                    "quantity": int(ln["quantity"]),
                    "price": _money(ln["originalUnitPriceSet"]["shopMoney"]["amount"]),
                }
                for ln in lines
            ],
            "notes": [n for n in (node.get("note") or "").split("\n") if n.strip()],
            "tracking": (
                {"number": tracking[-1].get("number"), "carrier": tracking[-1].get("company")}
                if tracking
                else None
            ),
            "hold_reason": (holds[-1].get("reasonNotes") or holds[-1].get("reason"))
            if held and holds
            else None,
        }

    async def _order_gid(self, order_id: str) -> str:
        """A GID for what callers pass: a numeric id, a GID, or a name like `#1001`."""
        text = order_id.strip()
        if text.startswith("gid://shopify/Order/"):
            return text
        if text.isdigit():
            return _gid("Order", text)
        if text.startswith("#") and text[1:].strip():
            data = await self._call(
                f"find order {text}", BY_NAME, {"q": f"name:{_quoted(text)}"}, cost=3
            )
            nodes = data["orders"]["nodes"]
            if nodes:
                return str(nodes[0]["id"])
        raise OperationError("NotFound", f"shopify: no order {order_id!r}")

    async def _read_order(self, order_id: str) -> dict[str, Any]:
        gid = await self._order_gid(order_id)
        data = await self._call(f"read order {order_id}", ORDER, {"id": gid}, cost=1 + _ORDER_NODE)
        node = data.get("order")
        if node is None and order_id.strip().isdigit():
            # a bare number may be an order number (the name without `#`)
            return await self._read_order("#" + order_id.strip())
        if node is None:
            raise OperationError("NotFound", f"shopify: no order {order_id!r}")
        return await self._order(node)

    async def list_orders(self, req: s.ListOrders, *, key: str) -> dict[str, Any]:
        """Orders by creation time, every page until `limit` or the last one."""
        terms = {
            "pending": ["financial_status:pending"],
            "paid": ["financial_status:paid", "fulfillment_status:unshipped", "status:open"],
            "on_hold": ["fulfillment_status:on_hold"],
            "fulfilled": ["fulfillment_status:shipped"],
            "cancelled": ["status:cancelled"],
        }.get(req.status or "", [])
        if req.since:
            terms.append(f"created_at:>={s.iso_utc(req.since)}")
        if req.until:
            terms.append(f"created_at:<={s.iso_utc(req.until)}")
        orders: list[dict[str, Any]] = []
        after: str | None = None
        while len(orders) < req.limit:
            first = await self._fit(_ORDER_NODE, req.limit - len(orders))
            data = await self._call(
                "list orders",
                ORDERS,
                {"first": first, "after": after, "q": " ".join(terms) or None},
                cost=2 + first * (1 + _ORDER_NODE),
            )
            page = data["orders"]
            for node in page["nodes"]:
                order = await self._order(node)
                if req.status is None or order["status"] == req.status:
                    orders.append(order)
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        orders = orders[: req.limit]
        gmv = round(sum(o["total"] for o in orders if o["status"] != "cancelled"), 2)
        return {
            "orders": orders,
            "count": len(orders),
            "gmv": gmv,
            "average_order_value": round(gmv / len(orders), 2) if orders else 0.0,
        }

    async def get_order(self, req: s.GetOrder, *, key: str) -> dict[str, Any]:
        return await self._read_order(req.order_id)

    async def _fulfilment_orders(
        self, order_id: str, query: str = FULFILMENT_ORDERS, cost: int = _FULFILMENT_ORDERS_COST
    ) -> dict[str, Any]:
        gid = await self._order_gid(order_id)
        data = await self._call(f"read order {order_id}", query, {"id": gid}, cost=cost)
        node = data.get("order")
        if node is None and order_id.strip().isdigit():
            return await self._fulfilment_orders("#" + order_id.strip(), query, cost)
        if node is None:
            raise OperationError("NotFound", f"shopify: no order {order_id!r}")
        found: dict[str, Any] = node
        return found

    async def fulfil_order(self, req: s.FulfilOrder, *, key: str) -> dict[str, Any]:
        """Fulfil every open fulfillment order of the order, each with fulfillmentCreate
        under @idempotent (UUID from our key and the fulfillment order). A repeat with the
        same key - after a lost answer - gets Shopify's original answer, so the order is
        fulfilled once; an order already fulfilled under another key is a Conflict."""
        node = await self._fulfilment_orders(req.order_id)
        name = node.get("name") or req.order_id
        if node.get("cancelledAt"):
            raise OperationError("Conflict", f"shopify: order {name} is cancelled")
        fos = node["fulfillmentOrders"]["nodes"]
        todo = [fo for fo in fos if fo["status"] in ("OPEN", "IN_PROGRESS")]
        replay = False
        if not todo:
            if any(fo["status"] == "ON_HOLD" for fo in fos):
                raise OperationError(
                    "Conflict", f"shopify: order {name} is on hold; release the hold first"
                )
            # nothing open: if this key closed them, the same request replays its answer
            todo = [fo for fo in fos if fo["status"] == "CLOSED"]
            replay = True
            if not todo:
                raise OperationError(
                    "Conflict", f"shopify: order {name} has nothing left to fulfil"
                )
        tracking: dict[str, Any] = {}
        if req.tracking_number:
            tracking["number"] = req.tracking_number
        if req.carrier:
            tracking["company"] = req.carrier
        fulfilled = 0
        for fo in todo:
            fulfillment: dict[str, Any] = {
                "lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": fo["id"]}],
                "notifyCustomer": False,
            }
            if tracking:
                fulfillment["trackingInfo"] = tracking
            variables: dict[str, Any] = {"fulfillment": fulfillment}
            if self._keyed():
                variables["key"] = idempotency_uuid("fulfil_order", key, fo["id"])
            data = await self._call(
                f"fulfil order {name}",
                FULFIL if self._keyed() else FULFIL_UNKEYED,
                variables,
                cost=10,
            )
            errors = data["fulfillmentCreate"].get("userErrors") or []
            if errors:
                if replay:
                    continue
                raise _user_errors(f"fulfil order {name}", errors)
            fulfilled += 1
        if replay and not fulfilled:
            raise OperationError(
                "Conflict",
                f"shopify: order {name} is already fulfilled (not by this action's key)",
            )
        if req.note:
            await self._append_note(node["id"], req.note)
        return {
            "order_id": _plain(node["id"]),
            "status": "fulfilled",
            "tracking": (
                {"number": req.tracking_number, "carrier": req.carrier} if tracking else None
            ),
            "replayed": replay,
        }

    async def cancel_order(self, req: s.CancelOrder, *, key: str) -> dict[str, Any]:
        """orderCancel without refund (refunds are a separate decision), restocking."""
        order = await self._read_order(req.order_id)
        if order["status"] in ("cancelled", "fulfilled"):
            raise OperationError(
                "Conflict",
                f"shopify: order {order['name']} is {order['status']}; only pending, paid "
                "or on_hold orders can be cancelled",
            )
        gid = _gid("Order", order["id"])
        data = await self._call(
            f"cancel order {order['name']}",
            CANCEL,
            {"orderId": gid, "staffNote": req.reason or None},
            cost=10,
            repeatable=False,
        )
        result = data["orderCancel"]
        errors = [
            e
            for e in result.get("orderCancelUserErrors") or []
            if "already been cancelled" not in str(e.get("message"))
        ]
        if errors:
            raise _user_errors(f"cancel order {order['name']}", errors)
        after = await self._read_order(gid)
        if after["status"] != "cancelled":  # Shopify cancels in a background job
            after = {**after, "status": "cancelled", "cancellation": "in progress"}
        return after

    async def hold_order(self, req: s.HoldOrder, *, key: str) -> dict[str, Any]:
        """fulfillmentOrderHold on each open fulfillment order; holding a held order
        changes nothing."""
        node = await self._fulfilment_orders(req.order_id)
        name = node.get("name") or req.order_id
        if node.get("cancelledAt") or node.get("displayFulfillmentStatus") == "FULFILLED":
            state = "cancelled" if node.get("cancelledAt") else "fulfilled"
            raise OperationError(
                "Conflict",
                f"shopify: order {name} is {state}; only pending, paid or on_hold orders "
                "can be held",
            )
        for fo in node["fulfillmentOrders"]["nodes"]:
            if fo["status"] not in ("OPEN", "IN_PROGRESS"):
                continue
            data = await self._call(
                f"hold order {name}",
                HOLD,
                {"id": fo["id"], "hold": {"reason": "OTHER", "reasonNotes": req.reason or None}},
                cost=10,
                repeatable=False,
            )
            errors = data["fulfillmentOrderHold"].get("userErrors") or []
            if errors:
                raise _user_errors(f"hold order {name}", errors)
        return await self._read_order(node["id"])

    async def release_order(self, req: s.ReleaseOrder, *, key: str) -> dict[str, Any]:
        """fulfillmentOrderReleaseHold on each ON_HOLD fulfillment order, naming the holds
        read just before (`holdIds`, as Shopify recommends: a hold placed meanwhile stays).
        Shopify then reopens them, so the order reads back as paid (or pending, if it is
        unpaid). Releasing named holds is safe to repeat: a lost answer is sent again, and
        a fulfillment order found no longer on hold counts as released. An order with
        nothing on hold is left as it is; cancelled or fulfilled -> Conflict. The note, if
        given, is appended to the order's note as `released: <note>`."""
        node = await self._fulfilment_orders(req.order_id, HELD, _HELD_COST)
        name = node.get("name") or req.order_id
        if node.get("cancelledAt") or node.get("displayFulfillmentStatus") == "FULFILLED":
            state = "cancelled" if node.get("cancelledAt") else "fulfilled"
            raise OperationError(
                "Conflict", f"shopify: order {name} is {state}; only held orders can be released"
            )
        held = [fo for fo in node["fulfillmentOrders"]["nodes"] if fo["status"] == "ON_HOLD"]
        for fo in held:
            hold_ids = [h["id"] for h in fo.get("fulfillmentHolds") or [] if h.get("id")]
            data = await self._call(
                f"release order {name}",
                RELEASE,
                {"id": fo["id"], "holdIds": hold_ids or None},
                cost=10,
                repeatable=True,
            )
            errors = data["fulfillmentOrderReleaseHold"].get("userErrors") or []
            if errors and await self._still_held(node["id"], fo["id"]):
                raise _user_errors(f"release order {name}", errors)
        if held and req.note:
            await self._append_note(node["id"], f"released: {req.note}")
        return await self._read_order(node["id"])

    async def _still_held(self, order_gid: str, fo_id: str) -> bool:
        """Whether a fulfillment order is still ON_HOLD (after a refused release: one
        released by our own lost attempt, or by someone else meanwhile, is done)."""
        node = await self._fulfilment_orders(order_gid)
        return any(
            fo["id"] == fo_id and fo["status"] == "ON_HOLD"
            for fo in node["fulfillmentOrders"]["nodes"]
        )

    async def _append_note(self, order_id: str, message: str) -> str:
        """Append a line to the order's note and return the order's GID; a repeat of the
        last line is not added again (a retried action must not double it)."""
        gid = await self._order_gid(order_id)
        data = await self._call("read order note", NOTE_READ, {"id": gid}, cost=1)
        order = data.get("order")
        if order is None and order_id.strip().isdigit():
            return await self._append_note("#" + order_id.strip(), message)
        if order is None:
            raise OperationError("NotFound", f"shopify: no order {order_id!r}")
        note = order.get("note") or ""
        lines = [ln for ln in note.split("\n") if ln.strip()]
        if lines and lines[-1] == message:
            return gid
        data = await self._call(
            "add an order note",
            NOTE,
            {"input": {"id": gid, "note": "\n".join([*lines, message])}},
            cost=10,
        )
        errors = data["orderUpdate"].get("userErrors") or []
        if errors:
            raise _user_errors("add an order note", errors)
        return gid

    async def add_order_note(self, req: s.AddOrderNote, *, key: str) -> dict[str, Any]:
        return await self._read_order(await self._append_note(req.order_id, req.message))

    # ------------------------------------------------------------ inquiries

    async def list_inquiries(self, req: s.ListInquiries, *, key: str) -> dict[str, Any]:
        raise OperationError(
            "NotConfigured",
            "shopify: Shopify has no customer-inquiry API; read inquiries from the "
            "channel that receives them (Shopify Inbox, e-mail) instead",
        )

    async def reply_inquiry(self, req: s.ReplyInquiry, *, key: str) -> dict[str, Any]:
        raise OperationError(
            "NotConfigured",
            "shopify: Shopify has no customer-inquiry API; reply from the channel that "
            "received the inquiry",
        )
