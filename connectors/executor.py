"""The executor the engine uses outside simulations: built-ins plus the connectors.

Edge module: `storeops.settings` builds one and hands it to the Engine. Each `uses` name
from `storeops/operations.py` is dispatched here: `store.*` to the configured store
(`STOREOPS_STORE`; the local SQLite store under STOREOPS_HOME by default), `http.post` to
named webhooks. The engine is synchronous (it drives in a worker thread); store
connectors are async, so they run on one private event loop thread kept for the
executor's lifetime (clients and connection pools stay warm between actions).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from connectors import store as s
from connectors.http import redact
from connectors.webhook import WebhookClient
from storeops.errors import ConfigError, OperationError
from storeops.runtime import BuiltinExecutor

__all__ = ["ConnectorExecutor", "LoopThread", "open_store"]

log = logging.getLogger("storeops.connectors")

T = TypeVar("T")


class LoopThread:
    """An asyncio loop on a daemon thread; `run` submits a coroutine and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def open_store(url: str, home: Path, environ: Mapping[str, str] | None = None) -> s.Store:
    """The store named by a STOREOPS_STORE value:

    `local` or `local:PATH`                 the local SQLite store (default under home)
    `oscar+http://127.0.0.1:8002`           django-oscar (STOREOPS_OSCAR_TOKEN)
    `shopify+https://SHOP.myshopify.com`    Shopify Admin GraphQL (STOREOPS_SHOPIFY_TOKEN)
    `woocommerce+https://shop.example`      WooCommerce REST v3 (STOREOPS_WOO_KEY/_SECRET)
    """
    env = dict(environ or {})
    kind, _, rest = url.partition(":")
    if kind == "local":
        from connectors.local import LocalStore

        return LocalStore(Path(rest) if rest else home / "store.db")
    platform, plus, address = url.partition("+")
    if plus and platform == "oscar":
        from connectors.oscar import OscarStore

        return OscarStore.from_env(address, env)
    if plus and platform == "shopify":
        from connectors.shopify import ShopifyStore

        return ShopifyStore.from_env(address, env)
    if plus and platform == "woocommerce":
        from connectors.woocommerce import WooCommerceStore

        return WooCommerceStore.from_env(address, env)
    raise ConfigError(
        f"STOREOPS_STORE={redact(url)!r} names no store this version knows; use local, "
        "local:PATH, oscar+URL, shopify+URL or woocommerce+URL"
    )


async def _gather(calls: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    return list(await asyncio.gather(*calls))


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'with'}: {e['msg']}" for e in exc.errors()
    )


class ConnectorExecutor:
    """Carries out actions: `builtin.*` in process, `store.*` and `http.post` outside."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        home: Path | None = None,
        store: s.Store | None = None,
        sops: Path | None = None,
    ) -> None:
        import os

        self._environ = dict(os.environ if environ is None else environ)
        self._home = home or Path(self._environ.get("STOREOPS_HOME", ".storeops"))
        self._sops = sops or Path(self._environ.get("STOREOPS_SOPS", "sops"))
        self._builtin = BuiltinExecutor()
        self._webhooks = WebhookClient(self._environ)
        self._store = store
        self._loop: LoopThread | None = None
        # the inbox drives runs from several request threads with one engine
        self._lazy = threading.Lock()

    @property
    def store(self) -> s.Store:
        with self._lazy:
            return self._open_store()

    def _looper(self) -> LoopThread:
        with self._lazy:
            if self._loop is None:
                self._loop = LoopThread()
            return self._loop

    def _open_store(self) -> s.Store:
        if self._store is None:
            try:
                self._store = open_store(
                    self._environ.get("STOREOPS_STORE", "local"), self._home, self._environ
                )
            except ConfigError as exc:  # recorded on the action, which says what to set
                raise OperationError("NotConfigured", str(exc)) from None
        return self._store

    def run(
        self, uses: str, inputs: Mapping[str, Any], *, idempotency_key: str, timeout: float
    ) -> Any:
        if uses == "http.post":
            return self._webhooks.post(inputs, idempotency_key=idempotency_key, timeout=timeout)
        if uses == "monitor.probe":
            return self._probe(inputs)
        if uses == "email.send":
            return self._email(inputs, timeout)
        if uses in s.OPERATIONS:
            call = self._store_call(uses, inputs, idempotency_key)
            try:
                return self._looper().run(call, timeout=timeout)
            except TimeoutError:
                raise OperationError(
                    "Timeout", f"{uses}: no answer within {timeout:g} s", retryable=True
                ) from None
        return self._builtin.run(uses, inputs, idempotency_key=idempotency_key, timeout=timeout)

    def _email(self, inputs: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """`email.send`: one e-mail to an address outside the roster (a supplier, a
        customer) over the configured SMTP server. At least once: a crash between the
        send and its record sends it again on the re-run."""
        from connectors.notify import ChannelConfig, EmailChannel, Message

        config = ChannelConfig.from_env(self._environ)
        if config.smtp is None:
            raise OperationError("NotConfigured", "email.send: set STOREOPS_SMTP_URL")
        address = str(inputs.get("to", "")).strip()
        subject = str(inputs.get("subject", "")).strip()
        if "@" not in address or not subject:
            raise OperationError("Invalid", "email.send needs `to` (an address) and `subject`")
        name = str(inputs.get("name") or address)
        message = Message(
            address,
            name,
            address,
            "",
            subject,
            str(inputs.get("text", "")),
            str(inputs.get("link", "")),
        )
        sent = EmailChannel(config.smtp, timeout=min(timeout, config.timeout)).send(message)
        return {"to": address, "message_id": sent}

    def _probe(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """`monitor.probe`: run one probe of monitors.yaml now (no alert is raised: the SOP
        decides what a breach means, e.g. whether an outage is over)."""
        from connectors.probes import check, load_monitors, monitors_path

        path = monitors_path(self._sops, environ=self._environ)
        name = str(inputs.get("probe", ""))
        if not path.is_file():
            raise OperationError("NotConfigured", f"monitor.probe: no monitors file at {path}")
        monitors, problems = load_monitors(path)
        if monitors is None:
            raise OperationError("NotConfigured", f"monitor.probe: {problems[0]}")
        probe = monitors.probes.get(name)
        if probe is None:
            known = ", ".join(monitors.probes) or "none"
            raise OperationError("Invalid", f"monitor.probe: no probe {name!r} (known: {known})")
        result = check(probe)
        return {
            "probe": name,
            "ok": result.ok,
            "breached": result.breached,
            "measured": result.measured,
            "reasons": result.reasons,
            "summary": result.summary(),
        }

    def run_many(self, calls: Sequence[tuple[str, Mapping[str, Any], str, float]]) -> list[Any]:
        """Carry out many calls at once (a wave): store operations concurrently on the
        loop thread, anything else one after another. Each result is a value or an
        OperationError, in the order of `calls`."""
        results: list[Any] = [None] * len(calls)
        waves: list[tuple[int, Coroutine[Any, Any, Any]]] = []
        for index, (uses, inputs, key, timeout) in enumerate(calls):
            if uses not in s.OPERATIONS:
                try:
                    results[index] = self.run(uses, inputs, idempotency_key=key, timeout=timeout)
                except OperationError as exc:
                    results[index] = exc
                continue
            try:
                call = self._store_call(uses, inputs, key)
            except OperationError as exc:
                results[index] = exc
                continue
            waves.append((index, self._bounded(uses, call, timeout)))
        if waves:
            done = self._looper().run(_gather([c for _, c in waves]))
            for (index, _), result in zip(waves, done, strict=True):
                results[index] = result
        return results

    def _store_call(
        self, uses: str, inputs: Mapping[str, Any], key: str
    ) -> Coroutine[Any, Any, Any]:
        model, method = s.OPERATIONS[uses]
        try:
            request = model.model_validate(dict(inputs))
        except ValidationError as exc:
            raise OperationError("Invalid", f"{uses}: {_errors(exc)}") from None
        call: Coroutine[Any, Any, Any] = getattr(self.store, method)(request, key=key)
        return call

    @staticmethod
    async def _bounded(uses: str, call: Coroutine[Any, Any, Any], timeout: float) -> Any:
        try:
            return await asyncio.wait_for(call, timeout)
        except TimeoutError:
            return OperationError(
                "Timeout", f"{uses}: no answer within {timeout:g} s", retryable=True
            )
        except OperationError as exc:
            return exc
        except Exception as exc:  # a connector bug: recorded, never lost
            return OperationError("Error", f"{uses}: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        self._webhooks.close()
        try:
            if self._store is not None and self._loop is not None:
                self._loop.run(self._store.aclose(), timeout=10)
        except Exception:  # a store that cannot close must not keep the loop thread alive
            log.warning("closing the store connector failed", exc_info=True)
        finally:
            self._store = None
            if self._loop is not None:
                self._loop.close()
                self._loop = None
