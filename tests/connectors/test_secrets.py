"""Connector secrets from Prefect Secret blocks, against the session's real Prefect server."""

from __future__ import annotations

import pytest

from connectors.secrets import resolve_environment
from storeops.errors import ConfigError


def test_prefect_secret_blocks_resolve_and_missing_ones_are_named(prefect_api_url: str) -> None:
    from prefect.blocks.system import Secret

    Secret(value="shpat_test_0123456789").save("storeops-test-shopify-token", overwrite=True)
    environ = {
        "STOREOPS_SHOPIFY_TOKEN": "prefect-secret:storeops-test-shopify-token",
        "STOREOPS_STORE": "local",
        "OTHER": "prefect-secret:not-ours",  # only STOREOPS_* variables are resolved
    }
    resolved = resolve_environment(environ)
    assert "shpat_test_0123456789" == resolved["STOREOPS_SHOPIFY_TOKEN"]
    assert "local" == resolved["STOREOPS_STORE"]
    assert "prefect-secret:not-ours" == resolved["OTHER"]
    with pytest.raises(ConfigError) as missing:
        resolve_environment({"STOREOPS_WOO_SECRET": "prefect-secret:no-such-block"})
    assert "STOREOPS_WOO_SECRET" in str(missing.value)
    assert "no-such-block" in str(missing.value)


def test_plain_environments_need_no_prefect() -> None:
    environ = {"STOREOPS_WOO_KEY": "ck_x", "PATH": "/bin"}
    assert environ == resolve_environment(environ)
