"""The local store: a real store on one SQLite file, the embedded default for the demo.

Edge module. It keeps products, stock (on hand and allocated), orders with lines and
notes, and customer inquiries, seeded with a realistic tea-and-teaware shop (a few hundred
SKUs, 30 days of orders) so inventory velocity and order waves mean something. Writes
that must happen once (`adjust_inventory`, `fulfil_order`) record their idempotency key
in the same transaction as the write: a repeat returns the first answer and changes
nothing. Several processes may share the file (WAL, busy timeout).
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors import store as s
from storeops.errors import OperationError

__all__ = ["LocalStore", "seed"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY, title TEXT NOT NULL, price_cents INTEGER NOT NULL,
    currency TEXT NOT NULL, status TEXT NOT NULL, category TEXT NOT NULL,
    attributes TEXT NOT NULL, description TEXT NOT NULL, images TEXT NOT NULL,
    low_stock_threshold INTEGER NOT NULL, lead_time_days INTEGER NOT NULL,
    on_hand INTEGER NOT NULL, allocated INTEGER NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY, number INTEGER NOT NULL, status TEXT NOT NULL,
    financial_status TEXT NOT NULL, total_cents INTEGER NOT NULL, currency TEXT NOT NULL,
    created_at TEXT NOT NULL, customer_name TEXT NOT NULL, customer_email TEXT NOT NULL,
    shipping_address TEXT NOT NULL, tracking TEXT, fulfilled_at TEXT, hold_reason TEXT,
    held_from TEXT);
CREATE INDEX IF NOT EXISTS orders_status_created ON orders (status, created_at);
CREATE TABLE IF NOT EXISTS order_lines (
    order_id TEXT NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL,
    price_cents INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS order_lines_order ON order_lines (order_id);
CREATE INDEX IF NOT EXISTS order_lines_sku ON order_lines (sku);
CREATE TABLE IF NOT EXISTS order_notes (
    order_id TEXT NOT NULL, at TEXT NOT NULL, message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inquiries (
    id TEXT PRIMARY KEY, created_at TEXT NOT NULL, customer TEXT NOT NULL, order_id TEXT,
    channel TEXT NOT NULL, text TEXT NOT NULL, status TEXT NOT NULL, reply TEXT,
    replied_at TEXT);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, operation TEXT NOT NULL, result TEXT NOT NULL, at TEXT NOT NULL);
"""


def _now() -> datetime:
    return datetime.now(UTC)


def _money(cents: int) -> float:
    return round(cents / 100, 2)


class LocalStore:
    """A `connectors.store.Store` over one SQLite file (created and seeded on first use)."""

    name = "local"

    def __init__(self, path: str | Path, *, seed_if_empty: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, timeout=30, check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(SCHEMA)
        self._migrate()
        if seed_if_empty and self._count("products") == 0:
            seed(self)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.path)!r})"

    # ------------------------------------------------------------ plumbing

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        """Bring a database made by an older version up to SCHEMA: `orders.held_from` (the
        status a hold found, where release_order returns the order) came later. Checked
        inside the write transaction, so two processes opening an old file add it once."""
        with self._tx() as db:
            columns = {row["name"] for row in db.execute("PRAGMA table_info(orders)")}
            if "held_from" not in columns:
                db.execute("ALTER TABLE orders ADD COLUMN held_from TEXT")

    def _count(self, table: str) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _once(
        self, key: str, operation: str, write: Any
    ) -> dict[str, Any]:  # write: Callable[[Connection], dict]
        """Apply `write` once per idempotency key; a repeat returns the first answer."""
        with self._tx() as db:
            seen = db.execute("SELECT result FROM idempotency WHERE key = ?", (key,)).fetchone()
            if seen is not None:
                return {**json.loads(seen["result"]), "replayed": True}
            result: dict[str, Any] = write(db)
            db.execute(
                "INSERT INTO idempotency (key, operation, result, at) VALUES (?, ?, ?, ?)",
                (key, operation, json.dumps(result, ensure_ascii=False), s.iso_utc(_now())),
            )
        return result

    def close(self) -> None:
        self._db.close()

    async def aclose(self) -> None:
        self.close()

    # ------------------------------------------------------------ products

    def _product(self, row: sqlite3.Row) -> dict[str, Any]:
        return {
            "sku": row["sku"],
            "title": row["title"],
            "price": _money(row["price_cents"]),
            "currency": row["currency"],
            "status": row["status"],
            "category": row["category"],
            "attributes": json.loads(row["attributes"]),
            "description": row["description"],
            "images": json.loads(row["images"]),
            "on_hand": row["on_hand"],
            "available": row["on_hand"] - row["allocated"],
            "low_stock_threshold": row["low_stock_threshold"],
        }

    def _row(self, db: sqlite3.Connection | None, sku: str) -> sqlite3.Row:
        if db is None:
            rows = self._query("SELECT * FROM products WHERE sku = ?", (sku,))
            row = rows[0] if rows else None
        else:
            row = db.execute("SELECT * FROM products WHERE sku = ?", (sku,)).fetchone()
        if row is None:
            raise OperationError("NotFound", f"local store: no product with SKU {sku!r}")
        return row

    async def list_products(self, req: s.ListProducts, *, key: str) -> dict[str, Any]:
        sql, params = "SELECT * FROM products WHERE 1=1", list[Any]()
        if req.status:
            sql, params = sql + " AND status = ?", [*params, req.status]
        if req.category:
            sql, params = sql + " AND category = ?", [*params, req.category]
        rows = self._query(sql + " ORDER BY sku LIMIT ?", (*params, req.limit))
        return {"products": [self._product(r) for r in rows], "count": len(rows)}

    async def get_product(self, req: s.GetProduct, *, key: str) -> dict[str, Any]:
        return self._product(self._row(None, req.sku))

    async def upsert_product(self, req: s.UpsertProduct, *, key: str) -> dict[str, Any]:
        with self._tx() as db:
            existed = db.execute("SELECT 1 FROM products WHERE sku = ?", (req.sku,)).fetchone()
            db.execute(
                "INSERT INTO products (sku, title, price_cents, currency, status, category,"
                " attributes, description, images, low_stock_threshold, lead_time_days,"
                " on_hand, allocated, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,7,0,0,?)"
                " ON CONFLICT (sku) DO UPDATE SET title=excluded.title,"
                " price_cents=excluded.price_cents, currency=excluded.currency,"
                " status=excluded.status, category=excluded.category,"
                " attributes=excluded.attributes, description=excluded.description,"
                " images=excluded.images, low_stock_threshold=excluded.low_stock_threshold,"
                " updated_at=excluded.updated_at",
                (
                    req.sku,
                    req.title,
                    round(req.price * 100),
                    req.currency,
                    req.status,
                    req.category,
                    json.dumps(req.attributes, ensure_ascii=False),
                    req.description,
                    json.dumps(req.images),
                    req.low_stock_threshold,
                    s.iso_utc(_now()),
                ),
            )
            product = self._product(self._row(db, req.sku))
        return {**product, "created": existed is None}

    async def _set_status(self, sku: str, status: str) -> dict[str, Any]:
        with self._tx() as db:
            self._row(db, sku)
            db.execute(
                "UPDATE products SET status = ?, updated_at = ? WHERE sku = ?",
                (status, s.iso_utc(_now()), sku),
            )
            return self._product(self._row(db, sku))

    async def publish_product(self, req: s.PublishProduct, *, key: str) -> dict[str, Any]:
        return await self._set_status(req.sku, "active")

    async def unpublish_product(self, req: s.UnpublishProduct, *, key: str) -> dict[str, Any]:
        return await self._set_status(req.sku, "draft")

    async def set_price(self, req: s.SetPrice, *, key: str) -> dict[str, Any]:
        with self._tx() as db:
            self._row(db, req.sku)
            db.execute(
                "UPDATE products SET price_cents = ?, updated_at = ? WHERE sku = ?",
                (round(req.price * 100), s.iso_utc(_now()), req.sku),
            )
            return self._product(self._row(db, req.sku))

    # ------------------------------------------------------------ inventory

    async def inventory_levels(self, req: s.InventoryLevels, *, key: str) -> dict[str, Any]:
        now = _now()
        since_7 = s.iso_utc(now - timedelta(days=7))
        since_n = s.iso_utc(now - timedelta(days=req.window_days))
        sold = {
            r["sku"]: (r["sold_7d"], r["sold_n"])
            for r in self._query(
                "SELECT l.sku, sum(CASE WHEN o.created_at >= ? THEN l.quantity ELSE 0 END)"
                " AS sold_7d, sum(l.quantity) AS sold_n FROM order_lines l"
                " JOIN orders o ON o.id = l.order_id"
                " WHERE o.created_at >= ? AND o.status != 'cancelled' GROUP BY l.sku",
                (since_7, since_n),
            )
        }
        rows = self._query("SELECT * FROM products WHERE status != 'archived' ORDER BY sku")
        wanted = set(req.skus) if req.skus else None
        levels = [
            s.stock_level(
                sku=row["sku"],
                title=row["title"],
                on_hand=row["on_hand"],
                allocated=row["allocated"],
                sold_7d=sold.get(row["sku"], (0, 0))[0],
                sold_window=sold.get(row["sku"], (0, 0))[1],
                window_days=req.window_days,
                low_stock_threshold=row["low_stock_threshold"],
                lead_time_days=row["lead_time_days"],
            )
            for row in rows
            if wanted is None or row["sku"] in wanted
        ]
        return s.inventory_answer(levels, req, now)

    async def adjust_inventory(self, req: s.AdjustInventory, *, key: str) -> dict[str, Any]:
        def write(db: sqlite3.Connection) -> dict[str, Any]:
            row = self._row(db, req.sku)
            after = row["on_hand"] + req.delta
            if after < 0:
                raise OperationError(
                    "Invalid",
                    f"local store: adjusting {req.sku} by {req.delta} would leave "
                    f"{after} on hand (has {row['on_hand']})",
                )
            db.execute(
                "UPDATE products SET on_hand = ?, updated_at = ? WHERE sku = ?",
                (after, s.iso_utc(_now()), req.sku),
            )
            return {"sku": req.sku, "before": row["on_hand"], "on_hand": after}

        return self._once(key, "adjust_inventory", write)

    async def set_inventory(self, req: s.SetInventory, *, key: str) -> dict[str, Any]:
        with self._tx() as db:
            row = self._row(db, req.sku)
            db.execute(
                "UPDATE products SET on_hand = ?, updated_at = ? WHERE sku = ?",
                (req.quantity, s.iso_utc(_now()), req.sku),
            )
        return {"sku": req.sku, "before": row["on_hand"], "on_hand": req.quantity}

    # ------------------------------------------------------------ orders

    def _orders(self, where: str, params: tuple[Any, ...], limit: int) -> list[dict[str, Any]]:
        rows = self._query(
            f"SELECT * FROM orders WHERE {where} ORDER BY created_at, number LIMIT ?",
            (*params, limit),
        )
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        marks = ",".join("?" * len(ids))
        lines: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for line in self._query(
            f"SELECT * FROM order_lines WHERE order_id IN ({marks})", tuple(ids)
        ):
            lines[line["order_id"]].append(
                {
                    "sku": line["sku"],
                    "quantity": line["quantity"],
                    "price": _money(line["price_cents"]),
                }
            )
        notes: dict[str, list[str]] = {i: [] for i in ids}
        for note in self._query(
            f"SELECT * FROM order_notes WHERE order_id IN ({marks}) ORDER BY at", tuple(ids)
        ):
            notes[note["order_id"]].append(note["message"])
        return [
            {
                "id": r["id"],
                "number": r["number"],
                "status": r["status"],
                "financial_status": r["financial_status"],
                "total": _money(r["total_cents"]),
                "currency": r["currency"],
                "created_at": r["created_at"],
                "customer": {"name": r["customer_name"], "email": r["customer_email"]},
                "shipping_address": json.loads(r["shipping_address"]),
                "lines": lines[r["id"]],
                "notes": notes[r["id"]],
                "tracking": json.loads(r["tracking"]) if r["tracking"] else None,
                "hold_reason": r["hold_reason"],
            }
            for r in rows
        ]

    def _order(self, order_id: str) -> dict[str, Any]:
        found = self._orders("id = ?", (order_id,), 1)
        if not found:
            raise OperationError("NotFound", f"local store: no order {order_id!r}")
        return found[0]

    async def list_orders(self, req: s.ListOrders, *, key: str) -> dict[str, Any]:
        where, params = "1=1", tuple[Any, ...]()
        if req.status:
            where, params = where + " AND status = ?", (*params, req.status)
        if req.since:
            where, params = where + " AND created_at >= ?", (*params, s.iso_utc(req.since))
        if req.until:
            where, params = where + " AND created_at <= ?", (*params, s.iso_utc(req.until))
        orders = self._orders(where, params, req.limit)
        gmv = round(sum(o["total"] for o in orders if o["status"] != "cancelled"), 2)
        return {
            "orders": orders,
            "count": len(orders),
            "gmv": gmv,
            "average_order_value": round(gmv / len(orders), 2) if orders else 0.0,
        }

    async def get_order(self, req: s.GetOrder, *, key: str) -> dict[str, Any]:
        return self._order(req.order_id)

    def _transition(
        self, db: sqlite3.Connection, order_id: str, allowed: tuple[str, ...], to: str
    ) -> sqlite3.Row:
        row = db.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
        if row is None:
            raise OperationError("NotFound", f"local store: no order {order_id!r}")
        if row["status"] not in allowed:
            raise OperationError(
                "Conflict",
                f"local store: order {order_id} is {row['status']}; "
                f"only {', '.join(allowed)} orders can become {to}",
            )
        found: sqlite3.Row = row
        return found

    async def fulfil_order(self, req: s.FulfilOrder, *, key: str) -> dict[str, Any]:
        def write(db: sqlite3.Connection) -> dict[str, Any]:
            self._transition(db, req.order_id, ("paid",), "fulfilled")
            at = s.iso_utc(_now())
            tracking = {
                "number": req.tracking_number
                or "LS" + hashlib.sha256(key.encode()).hexdigest()[:10].upper(),
                "carrier": req.carrier or "SF Express",
            }
            db.execute(
                "UPDATE orders SET status = 'fulfilled', fulfilled_at = ?, tracking = ?"
                " WHERE id = ?",
                (at, json.dumps(tracking), req.order_id),
            )
            for line in db.execute(
                "SELECT sku, quantity FROM order_lines WHERE order_id = ?", (req.order_id,)
            ).fetchall():
                db.execute(
                    "UPDATE products SET on_hand = on_hand - ?,"
                    " allocated = max(0, allocated - ?) WHERE sku = ?",
                    (line["quantity"], line["quantity"], line["sku"]),
                )
            if req.note:
                db.execute(
                    "INSERT INTO order_notes (order_id, at, message) VALUES (?, ?, ?)",
                    (req.order_id, at, req.note),
                )
            return {"order_id": req.order_id, "status": "fulfilled", "tracking": tracking}

        return self._once(key, "fulfil_order", write)

    async def _park(self, order_id: str, to: str, reason: str) -> dict[str, Any]:
        with self._tx() as db:
            row = self._transition(db, order_id, ("pending", "paid", "on_hold"), to)
            # what a hold found (kept when a held order is held again): release_order's target
            held_from = row["held_from"] if row["status"] == "on_hold" else row["status"]
            db.execute(
                "UPDATE orders SET status = ?, hold_reason = ?, held_from = ? WHERE id = ?",
                (to, reason or None, held_from if to == "on_hold" else None, order_id),
            )
            if reason:
                db.execute(
                    "INSERT INTO order_notes (order_id, at, message) VALUES (?, ?, ?)",
                    (order_id, s.iso_utc(_now()), f"{to}: {reason}"),
                )
        return self._order(order_id)

    async def cancel_order(self, req: s.CancelOrder, *, key: str) -> dict[str, Any]:
        return await self._park(req.order_id, "cancelled", req.reason)

    async def hold_order(self, req: s.HoldOrder, *, key: str) -> dict[str, Any]:
        return await self._park(req.order_id, "on_hold", req.reason)

    async def release_order(self, req: s.ReleaseOrder, *, key: str) -> dict[str, Any]:
        """on_hold -> the status the hold found (pending or paid), in one transaction, so a
        repeat finds the order open and changes nothing. A hold recorded before
        `held_from` existed goes back by the order's financial status."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM orders WHERE id = ?", (req.order_id,)).fetchone()
            if row is None:
                raise OperationError("NotFound", f"local store: no order {req.order_id!r}")
            if row["status"] == "on_hold":
                back = row["held_from"] or (
                    "paid" if row["financial_status"] == "paid" else "pending"
                )
                db.execute(
                    "UPDATE orders SET status = ?, hold_reason = NULL, held_from = NULL"
                    " WHERE id = ?",
                    (back, req.order_id),
                )
                if req.note:
                    db.execute(
                        "INSERT INTO order_notes (order_id, at, message) VALUES (?, ?, ?)",
                        (req.order_id, s.iso_utc(_now()), f"released: {req.note}"),
                    )
            elif row["status"] not in ("pending", "paid"):
                raise OperationError(
                    "Conflict",
                    f"local store: order {req.order_id} is {row['status']}; only on_hold "
                    "orders can be released (pending and paid ones are left as they are)",
                )
        return self._order(req.order_id)

    async def add_order_note(self, req: s.AddOrderNote, *, key: str) -> dict[str, Any]:
        self._order(req.order_id)
        with self._tx() as db:
            db.execute(
                "INSERT INTO order_notes (order_id, at, message) VALUES (?, ?, ?)",
                (req.order_id, s.iso_utc(_now()), req.message),
            )
        return self._order(req.order_id)

    # ------------------------------------------------------------ inquiries

    async def list_inquiries(self, req: s.ListInquiries, *, key: str) -> dict[str, Any]:
        where, params = "1=1", tuple[Any, ...]()
        if req.status:
            where, params = where + " AND status = ?", (*params, req.status)
        if req.since:
            where, params = where + " AND created_at >= ?", (*params, s.iso_utc(req.since))
        rows = self._query(
            f"SELECT * FROM inquiries WHERE {where} ORDER BY created_at LIMIT ?",
            (*params, req.limit),
        )
        found = [dict(r) for r in rows]
        return {"inquiries": found, "count": len(found)}

    async def reply_inquiry(self, req: s.ReplyInquiry, *, key: str) -> dict[str, Any]:
        with self._tx() as db:
            row = db.execute("SELECT * FROM inquiries WHERE id = ?", (req.inquiry_id,)).fetchone()
            if row is None:
                raise OperationError("NotFound", f"local store: no inquiry {req.inquiry_id!r}")
            db.execute(
                "UPDATE inquiries SET status = 'answered', reply = ?, replied_at = ? WHERE id = ?",
                (req.text, s.iso_utc(_now()), req.inquiry_id),
            )
        return {"inquiry_id": req.inquiry_id, "status": "answered"}


# ---------------------------------------------------------------- seed data

_CATEGORIES = {
    "tea": ("茶叶", "Tea", ["龙井", "碧螺春", "铁观音", "普洱", "大红袍", "白毫银针", "祁门红茶"]),
    "teaware": ("茶具", "Teaware", ["盖碗", "紫砂壶", "公道杯", "品茗杯", "茶盘", "茶漏"]),
    "gift": ("礼盒", "Gift sets", ["中秋礼盒", "新春礼盒", "品鉴套装", "商务礼盒"]),
    "snack": ("茶点", "Tea snacks", ["绿豆糕", "桂花糕", "凤梨酥", "杏仁饼"]),
}
_GRADES = ["特级", "一级", "二级", "明前", "雨前", "经典", "限量"]
_SIZES = ["50g", "100g", "250g", "500g", "单只", "两只装", "六件套"]
_CITIES = ["杭州", "上海", "北京", "深圳", "成都", "广州", "南京", "武汉"]
_NAMES = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴"]
_QUESTIONS = [
    ("pre_sale", "这款茶是今年的新茶吗？"),
    ("shipping", "我的订单什么时候发货？"),
    ("returns", "收到的杯子有裂纹，可以退换吗？"),
    ("product", "紫砂壶可以直接用洗洁精清洗吗？"),
    ("shipping", "Where is my parcel? It has been five days."),
    ("pre_sale", "Do you ship gift boxes to Germany?"),
]


def seed(store: LocalStore, *, skus: int = 300, days: int = 30, seed_value: int = 2026) -> None:
    """Fill an empty store: `skus` products, `days` of orders ending now, open inquiries.

    Deterministic for a given seed and day (order times are relative to now)."""
    chance = random.Random(seed_value)
    now = _now().replace(microsecond=0)
    products: list[dict[str, Any]] = []
    for n in range(1, skus + 1):
        category = list(_CATEGORIES)[n % len(_CATEGORIES)]
        zh, _en, kinds = _CATEGORIES[category]
        title = f"{chance.choice(_GRADES)}{chance.choice(kinds)} {chance.choice(_SIZES)}"
        price = chance.choice([19, 29, 39, 49, 68, 88, 128, 168, 258, 398, 688])
        popularity = chance.paretovariate(1.6)
        products.append(
            {
                "sku": f"{category[:3].upper()}-{n:04d}",
                "title": title,
                "price_cents": price * 100,
                "category": category,
                "popularity": popularity,
                "on_hand": int(chance.uniform(0, 60) * popularity) + chance.choice([0, 3, 8, 20]),
                "threshold": chance.choice([5, 10, 15]),
                "lead": chance.choice([3, 5, 7, 14]),
                "attributes": {"category": zh, "origin": chance.choice(_CITIES)},
            }
        )
    weights = [p["popularity"] for p in products]
    orders: list[tuple[Any, ...]] = []
    lines: list[tuple[Any, ...]] = []
    number = 100000
    for day in range(days, -1, -1):
        for _ in range(chance.randint(25, 55)):
            number += 1
            created = now - timedelta(days=day, seconds=chance.randint(0, 86399))
            if created > now:
                created = now - timedelta(seconds=chance.randint(1, 3600))
            picked = chance.choices(products, weights=weights, k=chance.choice([1, 1, 1, 2, 3]))
            total = 0
            order_id = f"LO-{number}"
            for product in {p["sku"]: p for p in picked}.values():
                quantity = chance.choice([1, 1, 1, 2, 3])
                total += quantity * product["price_cents"]
                lines.append((order_id, product["sku"], quantity, product["price_cents"]))
            recent = day == 0 or (day == 1 and chance.random() < 0.5)
            status = "paid" if recent else chance.choice(["fulfilled"] * 30 + ["cancelled"])
            city = chance.choice(_CITIES)
            address = {"city": city, "line1": f"{city}市某区{chance.randint(1, 999)}号"}
            if chance.random() < 0.03:
                address = {"city": city, "line1": ""}  # missing street: a risk rule's case
            orders.append(
                (
                    order_id,
                    number,
                    status,
                    "refunded" if status == "cancelled" else "paid",
                    total,
                    "CNY",
                    s.iso_utc(created),
                    chance.choice(_NAMES) + chance.choice(["先生", "女士"]),
                    f"buyer{chance.randint(1, 400)}@example.com",
                    json.dumps(address, ensure_ascii=False),
                )
            )
    with store._tx() as db:
        db.executemany(
            "INSERT INTO products (sku, title, price_cents, currency, status, category,"
            " attributes, description, images, low_stock_threshold, lead_time_days, on_hand,"
            " allocated, updated_at) VALUES (?,?,?, 'CNY', 'active', ?,?,?,?,?,?,?,0,?)",
            [
                (
                    p["sku"],
                    p["title"],
                    p["price_cents"],
                    p["category"],
                    json.dumps(p["attributes"], ensure_ascii=False),
                    f"{p['title']}，产地{p['attributes']['origin']}。",
                    json.dumps([f"{p['sku'].lower()}-main.jpg"]),
                    p["threshold"],
                    p["lead"],
                    p["on_hand"],
                    s.iso_utc(now),
                )
                for p in products
            ],
        )
        db.executemany(
            "INSERT INTO orders (id, number, status, financial_status, total_cents, currency,"
            " created_at, customer_name, customer_email, shipping_address)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            orders,
        )
        db.executemany(
            "INSERT INTO order_lines (order_id, sku, quantity, price_cents) VALUES (?,?,?,?)",
            lines,
        )
        db.execute(
            "UPDATE products SET allocated = coalesce((SELECT sum(l.quantity) FROM order_lines l"
            " JOIN orders o ON o.id = l.order_id WHERE o.status = 'paid'"
            " AND l.sku = products.sku), 0)"
        )
        db.execute("UPDATE products SET on_hand = max(on_hand, allocated)")
        paid = [o[0] for o in orders if o[2] == "paid"]
        db.executemany(
            "INSERT INTO inquiries (id, created_at, customer, order_id, channel, text, status)"
            " VALUES (?,?,?,?,?,?, 'open')",
            [
                (
                    f"IQ-{n:04d}",
                    s.iso_utc(now - timedelta(minutes=chance.randint(1, 600))),
                    f"buyer{chance.randint(1, 400)}@example.com",
                    chance.choice(paid) if kind == "shipping" and paid else None,
                    chance.choice(["taobao", "wechat", "web"]),
                    text,
                )
                for n, (kind, text) in enumerate(chance.choices(_QUESTIONS, k=24), start=1)
            ],
        )
