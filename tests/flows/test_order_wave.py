"""An order wave under chaos: 400 paid orders fulfilled through the WooCommerce connector
while the shop fails 30% of requests (429 with Retry-After, 5xx, hangs past the action's
timeout, resets, and answers lost after the write was applied). The wave finishes and the
shop applies every fulfilment exactly once.

The shop is the loopback WooCommerce double (`connectors/loopback/`), which follows
WooCommerce's documented REST v3 rules; WooCommerce itself cannot run here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connectors.loopback import FaultConfig, ShopSeed, WooCommerceConfig, WooCommerceServer
from storeops.settings import Settings
from tests.conftest import FIXTURES, VALID

ORDERS = 400


@pytest.mark.slow
def test_a_wave_survives_30_percent_faults_and_fulfils_each_order_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = FaultConfig(rate=0.3, seed=5, hang_s=8.0, retry_after_s=1)
    config = WooCommerceConfig(seed=ShopSeed(paid_unfulfilled=ORDERS, products=20, seed=9))
    with WooCommerceServer(config, latency_s=0.01, faults=faults, in_process=False) as shop:
        key, secret = shop.auth
        monkeypatch.setenv("STOREOPS_STORE", f"woocommerce+{shop.base_url}")
        monkeypatch.setenv("STOREOPS_WOO_KEY", key)
        monkeypatch.setenv("STOREOPS_WOO_SECRET", secret)
        settings = Settings(
            home=str(tmp_path),
            ledger=str(tmp_path / "ledger.db"),
            sops=str(VALID),
            templates=str(FIXTURES / "templates"),
            roster=str(VALID / "team.yaml"),
        )
        engine = settings.engine()
        try:
            run_id = engine.start("wave", {"limit": ORDERS}, actor="ann")
            deadline = time.monotonic() + 240
            while engine.ledger.get_run(run_id).status == "running":  # as the runner does:
                assert time.monotonic() < deadline, "the wave did not finish"
                wake = engine.next_wake()  # retries wait out their backoff, then drive
                if wake is not None:
                    time.sleep(max(0.0, min(3.0, (wake - engine.clock()) / 1e6)))
                engine.drive(run_id)
            stats = shop.stats()
            record = engine.ledger.get_run(run_id)
            events = engine.ledger.events(run_id)
            assert engine.ledger.verify().ok
        finally:
            settings.close()
    app = stats["app"]
    assert "succeeded" == record.status
    assert ORDERS == app["orders_fulfilled"] == app["fulfilments_applied"]
    assert [] == app["orders_fulfilled_more_than_once"]
    faults_seen = stats["server"]["faults"]
    assert sum(faults_seen.values()) > 0.2 * stats["server"]["requests"] * 0.5
    lost = sum(faults_seen.get(k, 0) for k in ("reset_after", "server_error_after", "hang_after"))
    assert lost > 0  # answers were lost after the write: the hard case was exercised
    failed = [e for e in events if e.type == "action.failed"]
    assert failed  # the engine saw failures and retried with the same keys
