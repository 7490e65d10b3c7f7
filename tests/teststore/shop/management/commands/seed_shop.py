"""`manage.py seed_shop [--orders N] [--seed S] [--anchor ISO]`: the test store's data.

Idempotent (natural keys; orders by fixed numbers, so a re-run adds none) and
deterministic: the same seed and anchor give the same rows. Seeds countries US/GB/CN,
partner `main-warehouse`, product class `apparel` (stock tracked), category `Merch`,
products SKU-0001… (some below their low-stock threshold, a few with Chinese titles), users
`admin` (superuser), `opsbot` (staff with exactly CONNECTOR_PERMISSIONS) and `alice`
(customer) with the fixed tokens of shop/tokens.py, and N orders placed through Oscar's
OrderCreator between anchor − 30 days and anchor.
"""

from __future__ import annotations

import random
import warnings
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils.dateparse import parse_datetime
from oscar.core.loading import get_class, get_model
from rest_framework.authtoken.models import Token
from shop import tokens

Basket = get_model("basket", "Basket")
Category = get_model("catalogue", "Category")
Country = get_model("address", "Country")
Order = get_model("order", "Order")
Partner = get_model("partner", "Partner")
Product = get_model("catalogue", "Product")
ProductClass = get_model("catalogue", "ProductClass")
ProductCategory = get_model("catalogue", "ProductCategory")
ShippingAddress = get_model("order", "ShippingAddress")
StockRecord = get_model("partner", "StockRecord")
EventHandler = get_class("order.processing", "EventHandler")
Selector = get_class("partner.strategy", "Selector")

# What the connector's user may do, and nothing more (PLATFORMS.md 1.2): app_label.codename
CONNECTOR_PERMISSIONS = (
    "catalogue.view_product",
    "catalogue.add_product",
    "catalogue.change_product",
    "catalogue.view_productclass",
    "partner.view_stockrecord",
    "partner.change_stockrecord",
    "partner.view_partner",
    "order.view_order",
    "order.change_order",
    "order.view_line",
)
COUNTRIES = (
    ("US", "USA", "840", "United States", "United States of America"),
    ("GB", "GBR", "826", "United Kingdom", "United Kingdom of Great Britain and Northern Ireland"),
    ("CN", "CHN", "156", "China", "People's Republic of China"),
)
COLOURS = ("Red", "Blue", "Black", "White", "Green", "Grey", "Navy", "Olive", "Sand")
ITEMS = ("T-shirt", "Hoodie", "Cap", "Mug", "Tote bag", "Sweater", "Socks", "Scarf")
CHINESE_TITLES = ("纯棉T恤（白色）", "真丝围巾", "羊毛袜 三双装", "帆布托特包")
LOW_STOCK_THRESHOLD = 5
FIRST_ORDER_NUMBER = 500001  # far from Oscar's own numbers (100000 + basket id)
STATUS_PATHS = (  # (weight, statuses to pass through after "Pending")
    (60, ()),
    (15, ("Being processed",)),
    (10, ("Being processed", "Shipped")),
    (10, ("Being processed", "Shipped", "Complete")),
    (5, ("Cancelled",)),
)
CUSTOMERS = (
    ("Alice", "Liddell", "1 Rabbit Hole", "Oxford", "OX1 1AA", "GB"),
    ("Bob", "Stone", "20 Main Street", "Springfield", "62701", "US"),
    ("Li", "Wei", "88 Nanjing Road", "Shanghai", "200001", "CN"),
    ("Carol", "King", "5 Harbour Way", "Boston", "02110", "US"),
)


class Command(BaseCommand):
    help = "Seed the test store (idempotent, deterministic for a seed and anchor)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--orders", type=int, default=0, help="orders to place (default 0)")
        parser.add_argument("--products", type=int, default=40, help="products (default 40)")
        parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
        parser.add_argument(
            "--anchor",
            help="ISO date-time the orders are placed up to (default: now, UTC)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        anchor = datetime.now(UTC)
        if options["anchor"]:
            parsed = parse_datetime(options["anchor"])
            if parsed is None:
                raise CommandError(f"--anchor {options['anchor']!r} is not an ISO date-time")
            anchor = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        rng = random.Random(options["seed"])
        # haystack's SimpleEngine warns "update is not implemented" on every product save
        warnings.filterwarnings("ignore", message="update is not implemented")
        with transaction.atomic():
            seed_countries()
            users = seed_users()
            records = seed_catalogue(rng, options["products"])
            placed = seed_orders(rng, options["orders"], anchor, records, users["alice"])
        self.stdout.write(
            f"seeded {len(records)} products, {len(users)} users, {placed} new orders"
        )


def seed_countries() -> None:
    for a2, a3, numeric, printable, name in COUNTRIES:
        Country.objects.update_or_create(
            iso_3166_1_a2=a2,
            defaults={
                "iso_3166_1_a3": a3,
                "iso_3166_1_numeric": numeric,
                "printable_name": printable,
                "name": name,
                "is_shipping_country": True,
            },
        )


def seed_users() -> dict[str, Any]:
    user_model = get_user_model()
    flags = {
        "admin": {"is_staff": True, "is_superuser": True},
        "opsbot": {"is_staff": True, "is_superuser": False},
        "alice": {"is_staff": False, "is_superuser": False},
    }
    keys = {"admin": tokens.ADMIN_TOKEN, "opsbot": tokens.OPSBOT_TOKEN, "alice": tokens.ALICE_TOKEN}
    users = {}
    for username, user_flags in flags.items():
        user, _ = user_model.objects.update_or_create(
            username=username,
            defaults={"email": f"{username}@example.com", "is_active": True, **user_flags},
        )
        user.set_password(tokens.PASSWORDS[username])
        user.save()
        Token.objects.filter(user=user).exclude(key=keys[username]).delete()
        Token.objects.get_or_create(user=user, key=keys[username])
        users[username] = user
    permissions = []
    for dotted in CONNECTOR_PERMISSIONS:
        app_label, codename = dotted.split(".")
        permissions.append(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    users["opsbot"].user_permissions.set(permissions)
    return users


def seed_catalogue(rng: random.Random, count: int) -> list[Any]:
    partner, _ = Partner.objects.get_or_create(
        code="main-warehouse", defaults={"name": "Main warehouse"}
    )
    product_class, _ = ProductClass.objects.update_or_create(
        slug="apparel",
        defaults={"name": "Apparel", "track_stock": True, "requires_shipping": True},
    )
    category = Category.get_root_nodes().filter(slug="merch").first()
    if category is None:
        category = Category.add_root(name="Merch", slug="merch")
    records = []
    for n in range(1, count + 1):
        sku = f"SKU-{n:04d}"
        if n % 10 == 4 and n // 10 < len(CHINESE_TITLES):
            title = CHINESE_TITLES[n // 10]
        else:
            title = f"{rng.choice(COLOURS)} {rng.choice(ITEMS)}"
        low = is_low_stock(n)
        stock = (n // 8) % LOW_STOCK_THRESHOLD if low else rng.randint(20, 120)
        price = Decimal(rng.randint(500, 9900)) / 100
        product, _ = Product.objects.update_or_create(
            upc=f"400{n:07d}",
            defaults={
                "title": title,
                "slug": f"product-{n:04d}",
                "product_class": product_class,
                "structure": Product.STANDALONE,
                "is_public": True,
            },
        )
        ProductCategory.objects.get_or_create(product=product, category=category)
        record, _ = StockRecord.objects.get_or_create(
            partner=partner,
            partner_sku=sku,
            defaults={
                "product": product,
                "price": price,
                "price_currency": "USD",
                "num_in_stock": stock,
                "num_allocated": 0,
                "low_stock_threshold": LOW_STOCK_THRESHOLD,
            },
        )
        records.append(record)
    return records


def is_low_stock(n: int) -> bool:
    """Every 8th product starts below its threshold (5 of 40; SKU-0040 sold out)."""
    return n % 8 == 0


def seed_orders(
    rng: random.Random, count: int, anchor: datetime, records: list[Any], alice: Any
) -> int:
    """Place `count` orders (fixed numbers; existing ones are skipped) in anchor − 30 days."""
    from oscar.test.factories import create_order  # imports factory_boy: only when placing

    sellable = [r for n, r in enumerate(records, 1) if not is_low_stock(n)]
    window = timedelta(days=30).total_seconds()
    placed_at = sorted(anchor - timedelta(seconds=rng.uniform(0, window)) for _ in range(count))
    weights = [weight for weight, _ in STATUS_PATHS]
    placed = 0
    for index, date_placed in enumerate(placed_at):
        number = str(FIRST_ORDER_NUMBER + index)
        picks = rng.sample(sellable, rng.randint(1, 3))
        quantities = [rng.randint(1, 3) for _ in picks]
        customer = CUSTOMERS[rng.randrange(len(CUSTOMERS))]
        as_alice = rng.random() < 0.3
        path = rng.choices(STATUS_PATHS, weights=weights)[0][1]
        if Order.objects.filter(number=number).exists():
            continue
        basket = Basket.objects.create(owner=alice if as_alice else None)
        basket.strategy = Selector().strategy()
        for record, quantity in zip(picks, quantities, strict=True):
            basket.add_product(record.product, quantity)
        first, last, line1, city, postcode, country = customer
        address = ShippingAddress.objects.create(
            first_name=first,
            last_name=last,
            line1=line1,
            line4=city,
            postcode=postcode,
            country_id=country,
        )
        order = create_order(
            number=number,
            basket=basket,
            user=alice if as_alice else None,
            shipping_address=address,
            guest_email="" if as_alice else f"{first.lower()}.{last.lower()}@example.com",
            date_placed=date_placed,
        )
        for new_status in path:
            order.set_status(new_status)
            if new_status == "Shipped":
                EventHandler().consume_stock_allocations(order)
            elif new_status == "Cancelled":
                EventHandler().cancel_stock_allocations(order)
        placed += 1
    return placed
