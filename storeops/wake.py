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


def record_url(path: Path, port: int, *, token: str | None = None) -> None:
    """Record this process's loopback address in `path` (atomically: readers never see half;
    readable by its owner only, as it may carry the token callers must present)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    record: dict[str, object] = {"url": f"http://127.0.0.1:{port}", "pid": os.getpid()}
    if token is not None:
        record["token"] = token
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(handle, "w") as out:
        out.write(json.dumps(record))
    os.chmod(temporary, 0o600)
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


def runner_headers(home: Path) -> dict[str, str]:
    """What a caller of the runner's /wake and /alerts must send: the token the runner wrote
    to runner.json (only its owner, who may also write the ledger, can read it)."""
    try:
        token = json.loads((home / RUNNER_FILE).read_text()).get("token")
    except (OSError, ValueError, AttributeError):
        return {}
    return {"Authorization": f"Bearer {token}"} if token else {}


def wake_runner(home: Path, run_id: str, *, timeout: float = 2.0) -> bool:
    """POST /wake/RUN to the runner; False when no runner answers (drive in-process then)."""
    url = runner_url(home)
    if url is None:
        return False
    request = urllib.request.Request(
        f"{url}/wake/{urllib.parse.quote(run_id, safe='')}",
        method="POST",
        data=b"",
        headers=runner_headers(home),
    )
    try:
        with _NO_PROXY.open(request, timeout=timeout) as answer:
            return bool(answer.status == 202)
    except (urllib.error.URLError, OSError, ValueError):
        return False
