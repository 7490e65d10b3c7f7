"""Tell the local runner that a run has work (a completion was just recorded).

Edge module: standard library HTTP only, so the CLI stays fast. The ledger is always
written first; a wake is only a nudge, and a lost one is caught up by the runner's timer
loop, never lost work.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

RUNNER_FILE = "runner.json"

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def runner_url(home: Path) -> str | None:
    """The runner's address if one recorded itself under `home` (it may have died since)."""
    try:
        url = json.loads((home / RUNNER_FILE).read_text()).get("url")
    except (OSError, ValueError, AttributeError):
        return None
    return str(url) if url else None


def wake_runner(home: Path, run_id: str, *, timeout: float = 2.0) -> bool:
    """POST /wake/RUN to the runner; False when no runner answers (drive in-process then)."""
    url = runner_url(home)
    if url is None:
        return False
    request = urllib.request.Request(
        f"{url}/wake/{urllib.parse.quote(run_id, safe='')}", method="POST", data=b""
    )
    try:
        with _NO_PROXY.open(request, timeout=timeout) as answer:
            return bool(answer.status == 202)
    except (urllib.error.URLError, OSError, ValueError):
        return False
