"""Serving our small HTTP apps (the runner, the inbox) with uvicorn on loopback.

Edge module (uvicorn). uvicorn re-raises SIGTERM once it has shut down, which would end
the process before it removes its address file; this server does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn

__all__ = ["QuietServer"]


class QuietServer(uvicorn.Server):
    """uvicorn, minus re-raising SIGINT/SIGTERM after shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
