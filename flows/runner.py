"""The runner: one light process that starts a run-sop flow run whenever a run has work.

Outer edge (Prefect, FastAPI, uvicorn — all brought by Prefect). A run gets work when a
person completes a step (the CLI or the inbox records it in the ledger, then POSTs
`/wake/RUN` here) or when one of its timers is due (wake times live in the ledger, so
they survive restarts of every process). Each wake becomes one short flow run that ends
when only people or future timers remain, so no process is held while people work; wakes
for a run that is being driven are coalesced into one more pass. Listens on 127.0.0.1
only and writes its address to STOREOPS_HOME/runner.json once it is ready.

    python -m flows.runner [--port 0] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from flows.run_sop import drive_on_prefect
from storeops.durations import iso_to_us, us_to_iso
from storeops.errors import StoreopsError
from storeops.ledger import RunNotFoundError as LedgerRunNotFoundError
from storeops.ledger import open_ledger
from storeops.settings import Settings
from storeops.wake import RUNNER_FILE

log = logging.getLogger("storeops.runner")

#: The longest the timer loop sleeps: wake times set by other processes are seen by then.
MAX_SLEEP = 2.0
#: A run whose drive failed is not retried before this many seconds.
FAILURE_BACKOFF = 30.0


class Runner:
    """Coalesces wakes per run, bounds concurrent flow runs, and fires due timers."""

    def __init__(self, settings: Settings, *, concurrency: int = 2) -> None:
        self.settings = settings
        self.limit = asyncio.Semaphore(concurrency)
        self.active: set[str] = set()
        self.again: set[str] = set()
        self.failed_until: dict[str, float] = {}
        self.kick = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.driven = 0
        self.tag = runner_tag(settings)
        # The timer loop's and wake checks' handle: the ledger alone (flow runs load the
        # library, roster and templates when they drive).
        if "://" not in settings.ledger_url:
            Path(settings.ledger_url).parent.mkdir(parents=True, exist_ok=True)
        self.ledger = open_ledger(settings.ledger_url)

    def known(self, run_id: str) -> bool:
        """Whether the ledger has this run (a wake for anything else is a caller's error)."""
        try:
            self.ledger.get_run(run_id)
        except LedgerRunNotFoundError:
            return False
        return True

    def wake(self, run_id: str) -> None:
        """Make sure `run_id` gets a flow run soon (one more pass if one is running)."""
        if run_id in self.active:
            self.again.add(run_id)
            return
        self.active.add(run_id)
        task = asyncio.create_task(self._drive(run_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _drive(self, run_id: str) -> None:
        try:
            while True:
                self.again.discard(run_id)
                async with self.limit:
                    await drive_on_prefect(run_id, self.settings, extra_tags=(self.tag,))
                self.driven += 1
                if run_id not in self.again:
                    break
            self.failed_until.pop(run_id, None)
        except Exception:  # one broken run must not stop the others; it is logged
            log.exception("driving run %s failed; retrying in %ss", run_id, FAILURE_BACKOFF)
            self.failed_until[run_id] = time.monotonic() + FAILURE_BACKOFF
        finally:
            self.active.discard(run_id)
            self.kick.set()

    async def timers(self) -> None:
        """Wake every run whose timers are due; sleep until the next one (or a kick)."""
        ledger = self.ledger
        try:
            while True:
                try:
                    delay = self._timer_pass(ledger)
                except Exception:  # a locked database, a lost connection: retry, never stop
                    log.exception("timer pass failed; retrying in %ss", MAX_SLEEP)
                    delay = MAX_SLEEP
                self.kick.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.kick.wait(), delay)
        finally:
            ledger.close()

    def _timer_pass(self, ledger: Any) -> float:
        """Wake the due runs; return how long to sleep before the next pass."""
        now = time.time_ns() // 1000
        woke = 0
        for run_id in ledger.due_runs(us_to_iso(now), 500):
            # A run being driven updates its wake time when that pass ends.
            if run_id in self.active:
                continue
            if self.failed_until.get(run_id, 0.0) <= time.monotonic():
                self.wake(run_id)
                woke += 1
        following = ledger.next_wake()
        if following is None:
            return MAX_SLEEP
        delay = (iso_to_us(following) - now) / 1e6
        # Runs that are due but skipped (being driven, backing off) must not make this
        # loop spin: look again soon, not at once.
        floor = 0.01 if woke else 0.25
        return min(MAX_SLEEP, max(floor, delay))


class Alert(BaseModel):
    key: str = Field(min_length=1, max_length=200)
    sop: str = "peak-traffic"
    severity: str | None = None
    summary: str | None = Field(default=None, max_length=2000)


class _Server(uvicorn.Server):
    """uvicorn, minus its habit of re-raising SIGTERM after shutdown (which would kill the
    process before the runner forgets its address)."""

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


def make_app(runner: Runner) -> FastAPI:
    app = FastAPI(title="storeops runner", docs_url=None, redoc_url=None)

    @app.post("/wake/{run_id}", status_code=202)
    async def wake(run_id: str) -> dict[str, Any]:
        if not await anyio.to_thread.run_sync(runner.known, run_id):
            raise HTTPException(status_code=404, detail=f"no run {run_id!r} in the ledger")
        runner.wake(run_id)
        return {"run": run_id, "queued": True}

    @app.post("/alerts", status_code=202)
    async def alert(alert: Alert) -> dict[str, Any]:
        """Our incoming webhook (Prefect OSS has none): one open incident per key."""
        engine = runner.settings.engine()
        try:
            run_id, started = await anyio.to_thread.run_sync(
                lambda: engine.raise_alert(
                    alert.key,
                    sop=alert.sop,
                    severity=alert.severity,
                    summary=alert.summary,
                    drive=False,
                )
            )
        except StoreopsError as exc:  # unknown runbook, bad severity: the caller's mistake
            raise HTTPException(status_code=422, detail=str(exc)) from exc
        finally:
            engine.ledger.close()
        runner.wake(run_id)
        return {"run": run_id, "started": started}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "active": sorted(runner.active), "driven": runner.driven}

    return app


def runner_tag(settings: Settings) -> str:
    """Tags the flow runs this runner (or its predecessor in the same home) starts."""
    digest = hashlib.sha256(str(settings.home.resolve()).encode()).hexdigest()[:12]
    return f"runner:{digest}"


async def mark_orphans_crashed(tag: str) -> int:
    """Flow runs of `run-sop` tagged by this runner's home and still RUNNING when it starts
    were left by a runner that died (SIGKILL, power loss): Prefect would show them running
    forever. Mark them Crashed. Runs of other runners or workers are not touched. Their SOP
    runs lose nothing: each is due in the ledger and is driven again."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    async with get_client() as client:
        orphans = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["run-sop"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING])),
                tags=FlowRunFilterTags(all_=[tag]),
            ),
        )
        for orphan in orphans:
            await client.set_flow_run_state(
                orphan.id,
                Crashed(message="the storeops runner driving it stopped; the run continues"),
                force=True,
            )
    return len(orphans)


async def serve(settings: Settings, *, port: int = 0, concurrency: int = 2) -> None:
    runner = Runner(settings, concurrency=concurrency)
    try:
        crashed = await mark_orphans_crashed(runner.tag)
        if crashed:
            log.info("marked %d flow run(s) of a stopped runner as Crashed", crashed)
    except Exception:  # Prefect unreachable: the runner still serves; logged
        log.exception("could not check for flow runs left running by a stopped runner")
    config = uvicorn.Config(
        make_app(runner), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = _Server(config)
    timers = asyncio.create_task(runner.timers())
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # raises why it could not start
            return
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    state = settings.home / RUNNER_FILE
    settings.home.mkdir(parents=True, exist_ok=True)
    temporary = state.with_suffix(".tmp")
    temporary.write_text(json.dumps({"url": f"http://127.0.0.1:{bound}", "pid": os.getpid()}))
    temporary.replace(state)
    try:
        await serving
    finally:
        _forget(state)
        timers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await timers
        busy = [task for task in runner.tasks if not task.done()]
        if busy:
            # Flow runs still driving (in threads asyncio cannot interrupt) would hold the
            # process past any stop signal. Leave now: every step is in the ledger, the runs
            # stay due, and the next runner takes them over (and marks their flow runs
            # Crashed). Losing nothing on a crash is the design; this is one.
            log.warning(
                "stopping with %d run(s) in flight; the next runner resumes them", len(busy)
            )
            logging.shutdown()
            os._exit(0)


def _forget(state: Path) -> None:
    """Remove runner.json if it is ours, so clients stop sending wakes here."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(state.read_text()).get("pid") == os.getpid():
            state.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.runner", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="loopback port (0: any free)")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="flow runs at once (SQLite server: 1-2)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    try:
        asyncio.run(serve(settings, port=args.port, concurrency=args.concurrency))
    finally:  # also when a signal ends a flow run abruptly
        _forget(settings.home / RUNNER_FILE)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
