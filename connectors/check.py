"""`storeops connectors check`: is every configured connector reachable, with working
credentials? One line per connector, exit 1 if any is not.

Edge module. Reads only: the store is asked for one product and one order (no writes),
webhooks are listed but not called (a POST has effects), chat and e-mail channels are
checked for configuration — and, with `--send-test PERSON`, a test message is delivered
to that person through their channel, the only way to prove a robot's signature works.
Secrets never appear in the output.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from connectors import store as s
from connectors.executor import open_store
from connectors.secrets import resolve_environment
from storeops.errors import ConfigError, OperationError, StoreopsError

__all__ = ["Check", "check_connectors", "cmd_connectors_check"]


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.what:<22} {self.detail}"


async def _probe_store(store: s.Store) -> str:
    try:
        products = await store.list_products(s.ListProducts(limit=1), key="check")
        orders = await store.list_orders(s.ListOrders(limit=1), key="check")
    finally:
        await store.aclose()
    seen = "a product" if products.get("products") else "no products"
    return f"reachable, credentials accepted; sees {seen} and {orders.get('count', 0)} order(s)"


def check_connectors(cfg: Any, *, send_test: str | None = None) -> list[Check]:
    """Check the store, webhooks, channels (and monitors) configured for `cfg`."""
    from connectors.notify import ChannelConfig, ChannelOutbox

    checks: list[Check] = []
    try:
        environ = resolve_environment(os.environ)
    except ConfigError as exc:
        return [Check("secrets", False, str(exc))]
    url = environ.get("STOREOPS_STORE", "local")
    what = f"store ({url.split('+')[0].split(':')[0]})"
    try:
        store = open_store(url, cfg.home, environ)
        checks.append(Check(what, True, asyncio.run(asyncio.wait_for(_probe_store(store), 30))))
    except TimeoutError:
        checks.append(Check(what, False, "no answer within 30 s"))
    except (OperationError, ConfigError) as exc:
        retry = " (may pass later)" if getattr(exc, "retryable", False) else ""
        checks.append(Check(what, False, f"{exc}{retry}"))
    hooks = sorted(
        name.removeprefix("STOREOPS_WEBHOOK_").lower()
        for name in environ
        if name.startswith("STOREOPS_WEBHOOK_") and not name.endswith("_SECRET")
    )
    for hook in hooks:
        signed = f"STOREOPS_WEBHOOK_{hook.upper()}_SECRET" in environ
        checks.append(
            Check(
                f"webhook {hook}",
                True,
                "configured" + (", signed" if signed else ", unsigned") + " (not called)",
            )
        )
    try:
        config = ChannelConfig.from_env(environ)
    except ConfigError as exc:
        return [*checks, Check("channels", False, str(exc))]
    roster = cfg.roster()
    reachable = set(config.configured())
    checks.append(Check("channels", True, ", ".join(config.configured())))
    inbox_only = [
        person
        for person, entry in roster.people.items()
        if entry.active and not (set(entry.channels) & reachable)
    ]
    if inbox_only:
        checks.append(
            Check("people", True, f"only in the inbox (no configured channel): {inbox_only}")
        )
    if send_test:
        outbox = ChannelOutbox(roster, config)
        try:
            entry = roster.people.get(send_test)
            if entry is None:
                raise ConfigError(f"no person {send_test!r} in the roster")
            channel = next((c for c in entry.channels if outbox.can_reach(c)), "inbox")
            delivery = outbox.deliver(
                send_test,
                channel,
                "storeops connectors check",
                "测试消息 / test message from `storeops connectors check`",
                "http://127.0.0.1:8765/",
            )
            checks.append(Check(f"send to {send_test}", True, f"{channel}: {delivery}"))
        except StoreopsError as exc:
            checks.append(Check(f"send to {send_test}", False, str(exc)))
        finally:
            outbox.close()
    monitors = cfg.sops / "monitors.yaml"
    if monitors.is_file():
        from connectors.probes import check_monitors_file

        problems = check_monitors_file(monitors)
        detail = "valid" if not problems else f"{len(problems)} problem(s): {problems[0]}"
        checks.append(Check("monitors", not problems, detail))
    return checks


def cmd_connectors_check(args: Any, cfg: Any) -> int:
    checks = check_connectors(cfg, send_test=args.send_test)
    for check in checks:
        print(check.line())
    return 0 if all(c.ok for c in checks) else 1
