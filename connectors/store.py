"""The store interface: one input model per operation, and the shapes every store returns.

Edge module (pydantic only; no I/O). SOP actions name these operations (`uses:
store.fulfil_order`); `connectors.executor` validates an action's `with` against the
operation's model, so a wrong field fails as `Invalid` naming the field, before any store
is called. Every implementation (local SQLite, django-oscar, Shopify, WooCommerce) returns
the same plain JSON shapes, so SOPs and templates do not care which store is behind them:

    Product  {sku, title, price, currency, status, category, attributes, description,
              images, on_hand, available, low_stock_threshold}
    Level    {sku, title, on_hand, allocated, available, sold_7d, sold_30d, per_day,
              days_of_cover, low_stock_threshold, lead_time_days, low}
    Order    {id, number, status, financial_status, total, currency, created_at,
              customer {name, email}, shipping_address, lines [{sku, quantity, price}],
              notes}
    Inquiry  {id, created_at, customer, order_id, channel, text, status, reply}

Writes that must not happen twice (`adjust_inventory`, `fulfil_order`) take the action's
idempotency key; a store that has no native keys records them itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "OPERATIONS",
    "AddOrderNote",
    "AdjustInventory",
    "CancelOrder",
    "FulfilOrder",
    "GetOrder",
    "GetProduct",
    "HoldOrder",
    "InventoryLevels",
    "ListInquiries",
    "ListOrders",
    "ListProducts",
    "ProductStatus",
    "PublishProduct",
    "ReleaseOrder",
    "ReplyInquiry",
    "SetInventory",
    "SetPrice",
    "Store",
    "UnpublishProduct",
    "UpsertProduct",
    "inventory_answer",
    "iso_utc",
    "stock_level",
]

ProductStatus = Literal["active", "draft", "archived"]
OrderStatus = Literal["pending", "paid", "on_hold", "fulfilled", "cancelled"]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListProducts(Request):
    status: ProductStatus | None = None
    category: str | None = None
    limit: int = Field(default=100, ge=1, le=10_000)


class GetProduct(Request):
    sku: str


class UpsertProduct(Request):
    sku: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1)
    price: float = Field(ge=0)
    currency: str = "CNY"
    category: str = ""
    attributes: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    images: list[str] = Field(default_factory=list)
    status: ProductStatus = "draft"
    low_stock_threshold: int = Field(default=5, ge=0)


class PublishProduct(Request):
    sku: str


class UnpublishProduct(Request):
    sku: str


class SetPrice(Request):
    sku: str
    price: float = Field(ge=0)


class InventoryLevels(Request):
    skus: list[str] | None = None
    window_days: int = Field(default=30, ge=1, le=365)
    low_only: bool = False
    promo: str | None = None  # a label for the record; stores ignore it


class AdjustInventory(Request):
    sku: str
    delta: int
    reason: str = "correction"


class SetInventory(Request):
    sku: str
    quantity: int = Field(ge=0)


class ListOrders(Request):
    status: OrderStatus | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=1000, ge=1, le=100_000)


class GetOrder(Request):
    order_id: str


class FulfilOrder(Request):
    order_id: str
    tracking_number: str | None = None
    carrier: str | None = None
    note: str | None = None


class CancelOrder(Request):
    order_id: str
    reason: str = ""


class HoldOrder(Request):
    order_id: str
    reason: str = ""


class ReleaseOrder(Request):
    """Undo `hold_order`: the order goes back to where it was before the hold (`paid`, or
    `pending` where the store can tell), the note recorded if given. An open order that
    is not on hold is left as it is (a repeat is harmless); fulfilled or cancelled ->
    Conflict."""

    order_id: str
    note: str = ""


class AddOrderNote(Request):
    order_id: str
    message: str = Field(min_length=1)


class ListInquiries(Request):
    status: Literal["open", "answered"] | None = "open"
    since: datetime | None = None
    limit: int = Field(default=200, ge=1, le=10_000)


class ReplyInquiry(Request):
    inquiry_id: str
    text: str = Field(min_length=1)


#: `uses` name -> (input model, method name on a Store)
OPERATIONS: dict[str, tuple[type[Request], str]] = {
    "store.list_products": (ListProducts, "list_products"),
    "store.get_product": (GetProduct, "get_product"),
    "store.upsert_product": (UpsertProduct, "upsert_product"),
    "store.publish_product": (PublishProduct, "publish_product"),
    "store.unpublish_product": (UnpublishProduct, "unpublish_product"),
    "store.set_price": (SetPrice, "set_price"),
    "store.inventory_levels": (InventoryLevels, "inventory_levels"),
    "store.adjust_inventory": (AdjustInventory, "adjust_inventory"),
    "store.set_inventory": (SetInventory, "set_inventory"),
    "store.list_orders": (ListOrders, "list_orders"),
    "store.get_order": (GetOrder, "get_order"),
    "store.fulfil_order": (FulfilOrder, "fulfil_order"),
    "store.cancel_order": (CancelOrder, "cancel_order"),
    "store.hold_order": (HoldOrder, "hold_order"),
    "store.release_order": (ReleaseOrder, "release_order"),
    "store.add_order_note": (AddOrderNote, "add_order_note"),
    "store.list_inquiries": (ListInquiries, "list_inquiries"),
    "store.reply_inquiry": (ReplyInquiry, "reply_inquiry"),
}


class Store(Protocol):
    """What a store connector implements. Every method is async (remote stores are HTTP);
    every failure is an `OperationError` whose class says whether a retry may help."""

    name: str

    async def list_products(self, req: ListProducts, *, key: str) -> dict[str, Any]: ...
    async def get_product(self, req: GetProduct, *, key: str) -> dict[str, Any]: ...
    async def upsert_product(self, req: UpsertProduct, *, key: str) -> dict[str, Any]: ...
    async def publish_product(self, req: PublishProduct, *, key: str) -> dict[str, Any]: ...
    async def unpublish_product(self, req: UnpublishProduct, *, key: str) -> dict[str, Any]: ...
    async def set_price(self, req: SetPrice, *, key: str) -> dict[str, Any]: ...
    async def inventory_levels(self, req: InventoryLevels, *, key: str) -> dict[str, Any]: ...
    async def adjust_inventory(self, req: AdjustInventory, *, key: str) -> dict[str, Any]: ...
    async def set_inventory(self, req: SetInventory, *, key: str) -> dict[str, Any]: ...
    async def list_orders(self, req: ListOrders, *, key: str) -> dict[str, Any]: ...
    async def get_order(self, req: GetOrder, *, key: str) -> dict[str, Any]: ...
    async def fulfil_order(self, req: FulfilOrder, *, key: str) -> dict[str, Any]: ...
    async def cancel_order(self, req: CancelOrder, *, key: str) -> dict[str, Any]: ...
    async def hold_order(self, req: HoldOrder, *, key: str) -> dict[str, Any]: ...
    async def release_order(self, req: ReleaseOrder, *, key: str) -> dict[str, Any]: ...
    async def add_order_note(self, req: AddOrderNote, *, key: str) -> dict[str, Any]: ...
    async def list_inquiries(self, req: ListInquiries, *, key: str) -> dict[str, Any]: ...
    async def reply_inquiry(self, req: ReplyInquiry, *, key: str) -> dict[str, Any]: ...
    async def aclose(self) -> None: ...


# ---------------------------------------------------------------- shared shapes


def iso_utc(moment: datetime) -> str:
    """Timestamps in every store's answers: ISO 8601, UTC, whole seconds, a Z."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stock_level(
    *,
    sku: str,
    title: str,
    on_hand: int | None,
    allocated: int,
    sold_7d: int,
    sold_window: int,
    window_days: int,
    low_stock_threshold: int,
    lead_time_days: int,
) -> dict[str, Any]:
    """One Level: velocity is the faster of the last 7 days and the window; a SKU is low
    when what is available is at its threshold or lasts less than the supplier's lead
    time. `on_hand` None means the store does not track the SKU's stock (never low)."""
    available = None if on_hand is None else on_hand - allocated
    per_day = round(max(sold_7d / 7, sold_window / window_days), 2)
    cover = round(available / per_day, 1) if per_day > 0 and available is not None else None
    low = available is not None and (
        available <= low_stock_threshold or (cover is not None and cover < lead_time_days)
    )
    return {
        "sku": sku,
        "title": title,
        "on_hand": on_hand,
        "allocated": allocated,
        "available": available,
        "sold_7d": sold_7d,
        f"sold_{window_days}d": sold_window,
        "per_day": per_day,
        "days_of_cover": cover,
        "low_stock_threshold": low_stock_threshold,
        "lead_time_days": lead_time_days,
        "low": low,
    }


def inventory_answer(
    levels: list[dict[str, Any]], req: InventoryLevels, now: datetime
) -> dict[str, Any]:
    """What `inventory_levels` returns: the levels (only the low ones with `low_only`),
    how many are low and which."""
    shown = [lv for lv in levels if lv["low"] or not req.low_only]
    low_skus = [lv["sku"] for lv in shown if lv["low"]]
    return {
        "levels": shown,
        "low_count": len(low_skus),
        "skus": low_skus,
        "window_days": req.window_days,
        "as_of": iso_utc(now),
    }
