"""`storeops connectors check` against real stores: the local one, and the WooCommerce
double (which follows WooCommerce's documented rules; WooCommerce cannot run here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.loopback import WooCommerceServer
from storeops.cli import main
from tests.conftest import VALID


def run_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **env: str
) -> tuple[int, str]:
    for name in ("STOREOPS_STORE", "STOREOPS_WOO_KEY", "STOREOPS_WOO_SECRET", "STOREOPS_SMTP_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(
        ["--home", str(tmp_path), "--sops", str(VALID), "--roster", str(VALID / "team.yaml"),
         "connectors", "check"]
    )  # fmt: skip
    return code, capsys.readouterr().out


def test_the_local_store_and_unconfigured_channels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_check(
        tmp_path, monkeypatch, capsys, STOREOPS_WEBHOOK_MITIGATION="http://127.0.0.1:9/x?token=zz9"
    )
    assert 0 == code, out
    assert "ok    store (local)" in out
    assert "sees a product" in out
    assert "webhook mitigation" in out
    assert "zz9" not in out
    assert "only in the inbox" in out


def test_a_wrong_secret_is_reported_without_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with WooCommerceServer() as shop:
        key, _secret = shop.auth
        code, out = run_check(
            tmp_path,
            monkeypatch,
            capsys,
            STOREOPS_STORE=f"woocommerce+{shop.base_url}",
            STOREOPS_WOO_KEY=key,
            STOREOPS_WOO_SECRET="cs_wrong_secret_value",
        )
        assert 1 == code
        assert "FAIL  store (woocommerce)" in out
        assert "cs_wrong_secret_value" not in out
        code, out = run_check(
            tmp_path,
            monkeypatch,
            capsys,
            STOREOPS_STORE=f"woocommerce+{shop.base_url}",
            STOREOPS_WOO_KEY=key,
            STOREOPS_WOO_SECRET=shop.auth[1],
        )
        assert 0 == code, out
        assert "ok    store (woocommerce)" in out
