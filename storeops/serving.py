"""Serving our small HTTP apps (the runner, the inbox) with uvicorn on loopback.

Edge module (uvicorn). uvicorn re-raises SIGTERM once it has shut down, which would end
the process before it removes its address file; this server does not.

A process that runs Prefect flows in its event loop cannot rely on asyncio's signal
handling: Prefect's flow engine swaps in its own SIGTERM handler for the length of each flow
run (raising inside whatever the loop is doing), and a loop busy in a blocking call sees
no signal at all. `StopSignals` takes SIGTERM and SIGINT away from every thread but one of
its own, asks the server to stop, and ends the process anyway after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator

import uvicorn

__all__ = ["QuietServer", "StopSignals"]

log = logging.getLogger("storeops.serving")

_STOPS = {signal.SIGTERM, signal.SIGINT}


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


class StopSignals:
    """SIGTERM/SIGINT for a serving process, seen even while its event loop is busy.

    `install()` must run in the main thread before any other thread starts: it blocks the
    signals there (threads inherit the mask) and waits for them in a thread of its own.
    The first signal asks the attached server to stop and arms a deadline: after `grace`
    seconds `on_deadline` runs and the process ends (exit code 0: a stop was asked for).
    Where signals cannot be masked (Windows), uvicorn's own handling stays in charge.
    """

    def __init__(self, *, grace: float, on_deadline: Callable[[], None] | None = None) -> None:
        self.grace = grace
        self.on_deadline = on_deadline
        self.requested = threading.Event()
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def install(self) -> bool:
        if not hasattr(signal, "pthread_sigmask") or not hasattr(signal, "sigwait"):
            return False
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
        threading.Thread(target=self._wait, name="storeops-stop", daemon=True).start()
        return True

    def attach(self, server: uvicorn.Server, loop: asyncio.AbstractEventLoop) -> None:
        """Stop `server` on the first signal (at once if one came before it existed)."""
        with self._lock:
            self._server, self._loop = server, loop
            if self.requested.is_set():
                server.should_exit = True

    def _wait(self) -> None:
        signum = signal.sigwait(_STOPS)
        late = f"not stopped {self.grace:.0f} s after the signal; leaving anyway"
        deadline = threading.Timer(self.grace, self._leave, (late,))
        deadline.daemon = True
        deadline.start()
        log.info("received %s; stopping", signal.Signals(signum).name)
        with self._lock:
            self.requested.set()
            server, loop = self._server, self._loop
        if server is not None and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(server.handle_exit, signum, None)
        signal.sigwait(_STOPS)
        self._leave("a second stop signal; leaving now")

    def _leave(self, why: str) -> None:
        # No logging here: a handler lock held by a stuck thread may be why we are late.
        with contextlib.suppress(OSError):
            os.write(2, f"storeops: {why} (the ledger keeps every step)\n".encode())
        if self.on_deadline is not None:
            with contextlib.suppress(Exception):
                self.on_deadline()
        os._exit(0)
