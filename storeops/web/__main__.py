"""`python -m storeops.web [--port 8765]`: serve the inbox on 127.0.0.1.

Writes its address to STOREOPS_HOME/inbox.json once it listens (as the runner writes
runner.json) and removes the file when it stops. GET /health answers {"ok": true}.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import uvicorn

from storeops.serving import QuietServer
from storeops.settings import Settings
from storeops.wake import INBOX_FILE, forget_url, record_url, recorded_url
from storeops.web.app import create_app

DEFAULT_PORT = 8765

log = logging.getLogger("storeops.inbox")


def inbox_url(home: Path) -> str | None:
    """The inbox's address if one recorded itself under `home` (it may have died since)."""
    return recorded_url(home / INBOX_FILE)


async def serve(settings: Settings, *, port: int = DEFAULT_PORT) -> None:
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = QuietServer(config)
    serving = asyncio.create_task(_serve(server))
    while not server.started:
        if serving.done():
            if not serving.result():
                raise OSError(f"cannot listen on 127.0.0.1:{port} (the reason is logged above)")
            return
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    state = settings.home / INBOX_FILE
    record_url(state, bound)
    log.info("inbox listening on http://127.0.0.1:%s", bound)
    try:
        await serving
    finally:
        forget_url(state)


async def _serve(server: uvicorn.Server) -> bool:
    """Serve until stopped; False when uvicorn gave up starting (it exits on a bind error)."""
    try:
        await server.serve()
    except SystemExit:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storeops.web", description=__doc__)
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"loopback port (default {DEFAULT_PORT}; 0: any free)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    try:
        asyncio.run(serve(settings, port=args.port))
    except OSError as exc:  # the port is taken, the home is not writable
        print(f"error: the inbox could not start: {exc}", file=sys.stderr)
        return 1
    finally:
        forget_url(settings.home / INBOX_FILE)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
