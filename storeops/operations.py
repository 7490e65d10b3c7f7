"""The catalogue of operations an action's `uses` may name.

Pure core: names and one-line contracts only; implementations live in `connectors/` and
`storeops/executor.py`. Validation checks `uses` against this list, so adding a connector
operation starts here.
"""

from __future__ import annotations

OPERATIONS: dict[str, str] = {
    "builtin.echo": "return the `with` inputs unchanged (testing, shaping data)",
    "builtin.fail": "fail with the error class given in `error` (drills and tests)",
    "builtin.sleep": "wait `seconds` (at most 60), then return them (drills and tests)",
    "render.template": "render a template for a locale; result is {text, digest}",
    "store.list_products": "list products, filtered and paginated",
    "store.get_product": "one product by SKU",
    "store.upsert_product": "create or update a product",
    "store.publish_product": "make a product visible",
    "store.unpublish_product": "hide a product",
    "store.set_price": "set a product's price",
    "store.inventory_levels": "stock levels and 7/30-day sales velocity per SKU",
    "store.adjust_inventory": "adjust stock by a delta, with an idempotency key",
    "store.set_inventory": "set stock to an absolute value",
    "store.list_orders": "orders by status and time window",
    "store.get_order": "one order",
    "store.fulfil_order": "fulfil an order, with an idempotency key",
    "store.cancel_order": "cancel an order",
    "store.hold_order": "put an order on hold",
    "store.release_order": "release a held order back to where it was (harmless when not held)",
    "store.add_order_note": "add a note to an order",
    "store.list_inquiries": "customer inquiries where the platform has them",
    "store.reply_inquiry": "answer a customer inquiry",
    "ledger.timeline": "a run's timeline from the ledger: {run, sop, status, lines, text}",
    "ledger.open_tasks": "open human steps across runs: {tasks, count, overdue, by_person}",
    "email.send": "e-mail an address outside the roster (a supplier): {to, subject, text}",
    "http.post": "POST JSON to a configured webhook (mitigations, supplier systems)",
    "monitor.probe": "run a monitoring probe now; result is {ok, latency_ms, error_rate}",
}
