"""Tell the local runner that a run has work (a completion was just recorded).

Edge module: standard library HTTP only, so the CLI stays fast. The ledger is always
written first; a wake is only a nudge, and a lost one is caught up by the runner's timer
loop, never lost work.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

RUNNER_FILE = "runner.json"
#: Where the inbox records its address (as the runner does in RUNNER_FILE).
INBOX_FILE = "inbox.json"

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def recorded_url(path: Path) -> str | None:
    """The address a local server recorded in `path` (it may have died since), or None."""
    try:
        url = json.loads(path.read_text()).get("url")
    except (OSError, ValueError, AttributeError):
        return None
    return str(url) if url else None


def record_url(path: Path, port: int) -> None:
    """Record this process's loopback address in `path` (atomically: readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"url": f"http://127.0.0.1:{port}", "pid": os.getpid()}))
    temporary.replace(path)


def forget_url(path: Path) -> None:
    """Remove `path` if this process recorded it, so clients stop calling here."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def runner_url(home: Path) -> str | None:
    """The runner's address if one recorded itself under `home` (it may have died since)."""
    return recorded_url(home / RUNNER_FILE)


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
