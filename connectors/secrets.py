"""Secrets for connectors: from the environment, or from Prefect Secret blocks.

Edge module. Any `STOREOPS_*` variable may hold `prefect-secret:BLOCK` instead of the
value itself; `resolve_environment` replaces it with the block's value (read through the
Prefect API the process is configured for), so tokens can live in Prefect's encrypted
block storage rather than in shell profiles. Resolved values are never printed: errors
name the variable and the block, not the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storeops.errors import ConfigError

__all__ = ["PREFIX", "resolve_environment"]

PREFIX = "prefect-secret:"


def resolve_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of `environ` with every `STOREOPS_*=prefect-secret:NAME` resolved."""
    resolved = dict(environ)
    wanted = {
        name: value.removeprefix(PREFIX).strip()
        for name, value in environ.items()
        if name.startswith("STOREOPS_") and value.startswith(PREFIX)
    }
    if not wanted:
        return resolved
    from prefect.blocks.system import Secret

    for variable, block in wanted.items():
        try:
            secret: Any = Secret.load(block, _sync=True)  # type: ignore[call-arg]
        except ValueError as exc:
            raise ConfigError(
                f"{variable} names the Prefect Secret block {block!r}, which does not exist; "
                f"create it (`prefect block create secret`) or set {variable} to the value"
            ) from exc
        except Exception as exc:  # the API is down or unconfigured
            raise ConfigError(
                f"{variable} names the Prefect Secret block {block!r}, but it could not be "
                f"read ({type(exc).__name__}); is PREFECT_API_URL set and the server up?"
            ) from None
        resolved[variable] = str(secret.get())
    return resolved
