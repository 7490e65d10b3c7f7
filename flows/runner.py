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
import hmac
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from flows.run_sop import drive_on_prefect
from storeops.durations import iso_to_us, us_to_iso
from storeops.errors import StoreopsError
from storeops.ledger import RunNotFoundError as LedgerRunNotFoundError
from storeops.ledger import open_ledger
from storeops.serving import QuietServer, StopSignals
from storeops.settings import Settings
from storeops.wake import RUNNER_FILE, forget_url, record_url

log = logging.getLogger("storeops.runner")

#: The longest the timer loop sleeps: wake times set by other processes are seen by then.
MAX_SLEEP = 2.0
#: A run whose drive failed is not retried before this many seconds.
FAILURE_BACKOFF = 30.0
#: The SOP a store's order webhook starts.
WAVE_SOP = "order-wave"
#: The most a stopping runner waits for its logs to reach the Prefect server.
LOG_FLUSH_SECONDS = 3.0
#: After a stop signal the runner leaves within this many seconds, whatever is in flight.
STOP_GRACE_SECONDS = 10.0
#: The largest store webhook body read (Shopify and WooCommerce orders are far smaller).
MAX_WEBHOOK_BYTES = 5 << 20
#: How often the runner looks for probes that are due (each has its own `every`).
PROBE_TICK = 1.0


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
        from connectors.webhooks_in import Deduper

        self.deliveries = Deduper()
        #: Callers of /wake and /alerts present this (written to runner.json, owner-only).
        self.token = secrets.token_urlsafe(24)
        #: The webhook secrets, `prefect-secret:` references resolved once at start.
        self.webhook_env = _webhook_secrets()
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


async def probes(runner: Runner) -> None:
    """Run the monitoring probes of `monitors.yaml` on their schedules: a breach starts
    its runbook (once per open alert key), recovery records the all-clear. No file, no
    probes; a broken file is logged once and looked at again when it changes."""
    from connectors.probes import ProbeStates, due_probes, load_monitors, monitors_path, sweep

    settings = runner.settings
    path = monitors_path(settings.sops)
    state = ProbeStates.at_home(settings.home)
    seen: tuple[float, object] | None = None
    monitors: Any = None
    while True:
        try:
            stamp = path.stat().st_mtime if path.is_file() else 0.0
            if seen is None or seen[0] != stamp:
                monitors, problems = (None, []) if not stamp else load_monitors(path)
                seen = (stamp, monitors)
                for problem in problems:
                    log.error("monitors: %s", problem)
            if monitors is not None:
                state.reload()
                names = due_probes(monitors, state, time.time())
                if names:
                    outcomes = await anyio.to_thread.run_sync(
                        _sweep, settings, monitors, state, names, sweep
                    )
                    for outcome in outcomes:
                        if outcome.run_id and outcome.alert in ("raised", "repeated"):
                            runner.wake(outcome.run_id)
        except Exception:  # a probe must never stop the runner; logged
            log.exception("probe pass failed")
        await asyncio.sleep(PROBE_TICK)


def _sweep(settings: Settings, monitors: Any, state: Any, names: list[str], sweep: Any) -> Any:
    engine = settings.engine()
    try:
        return sweep(engine, monitors, state, names=names, drive=False)
    finally:
        engine.close()


class Alert(BaseModel):
    key: str = Field(min_length=1, max_length=200)
    sop: str = "peak-traffic"
    severity: str | None = None
    summary: str | None = Field(default=None, max_length=2000)


def _webhook_secrets() -> dict[str, str]:
    """The store webhook secrets from the environment, Prefect Secret references resolved.
    One that cannot be resolved is left out (its webhooks are refused, never checked against
    the reference text, which is no secret)."""
    from connectors.secrets import PREFIX, resolve_environment
    from connectors.webhooks_in import SECRET_VARIABLES

    found: dict[str, str] = {}
    for variable in SECRET_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if not value:
            continue
        try:
            value = resolve_environment({variable: value})[variable]
        except StoreopsError as exc:
            log.error("store webhooks refused until fixed: %s", exc)
            continue
        if not value.startswith(PREFIX):
            found[variable] = value
    return found


def make_app(runner: Runner) -> FastAPI:
    app = FastAPI(title="storeops runner", docs_url=None, redoc_url=None)

    def caller(request: Request) -> None:
        """/wake and /alerts are for this installation's own processes: they present the
        token from runner.json (the store's webhooks are checked by their signatures)."""
        given = request.headers.get("authorization", "")
        expected = f"Bearer {runner.token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(
                status_code=401, detail="send the token of STOREOPS_HOME/runner.json"
            )

    @app.post("/wake/{run_id}", status_code=202, dependencies=[Depends(caller)])
    async def wake(run_id: str) -> dict[str, Any]:
        if not await anyio.to_thread.run_sync(runner.known, run_id):
            raise HTTPException(status_code=404, detail=f"no run {run_id!r} in the ledger")
        runner.wake(run_id)
        return {"run": run_id, "queued": True}

    @app.post("/alerts", status_code=202, dependencies=[Depends(caller)])
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
            engine.close()
        runner.wake(run_id)
        return {"run": run_id, "started": started}

    @app.post("/webhooks/{platform}", status_code=202)
    async def store_webhook(platform: str, request: Request) -> dict[str, Any]:
        """Signed store webhooks (Shopify, WooCommerce): a new order makes the wave due."""
        from connectors.webhooks_in import ORDER_TOPICS, read_delivery

        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_WEBHOOK_BYTES:
                raise HTTPException(status_code=413, detail="webhook body too large")
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            delivery = read_delivery(platform, bytes(body), headers, runner.webhook_env)
        except PermissionError as exc:
            raise HTTPException(status_code=401, detail=str(exc)) from None
        except ValueError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        # the same body again under a new delivery id (the id is not signed) is a replay
        seen = f"{platform}:{delivery.delivery_id}"
        same = f"{platform}:body:{hashlib.sha256(body).hexdigest()}"
        if not runner.deliveries.first_time(seen) or not runner.deliveries.first_time(same):
            return {"topic": delivery.topic, "action": "duplicate delivery, ignored"}
        if delivery.topic not in ORDER_TOPICS:
            return {"topic": delivery.topic, "action": "ignored"}
        try:
            started = await anyio.to_thread.run_sync(_start_wave, runner.settings)
        except Exception:  # not acted on: the platform's redelivery must be, so forget it
            runner.deliveries.forget(seen)
            runner.deliveries.forget(same)
            raise
        if started is None:
            return {"topic": delivery.topic, "action": "an order wave is already open"}
        runner.wake(started)
        return {"topic": delivery.topic, "action": "order wave started", "run": started}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "active": sorted(runner.active), "driven": runner.driven}

    return app


def _start_wave(settings: Settings) -> str | None:
    """Start an order wave unless one is open (the wave itself also refuses to overlap)."""
    engine = settings.engine()
    try:
        if engine.ledger.runs(sop_id=WAVE_SOP, status="running"):
            return None
        run_id: str = engine.start(WAVE_SOP, {}, actor="store-webhook", drive=False)
        return run_id
    finally:
        engine.close()


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


async def serve(
    settings: Settings,
    *,
    port: int = 0,
    concurrency: int = 2,
    stop: StopSignals | None = None,
) -> None:
    runner = Runner(settings, concurrency=concurrency)
    try:
        crashed = await mark_orphans_crashed(runner.tag)
        if crashed:
            log.info("marked %d flow run(s) of a stopped runner as Crashed", crashed)
    except Exception:  # Prefect unreachable: the runner still serves; logged
        log.exception("could not check for flow runs left running by a stopped runner")
    config = uvicorn.Config(
        make_app(runner),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = QuietServer(config)
    if stop is not None:
        stop.attach(server, asyncio.get_running_loop())
    timers = asyncio.create_task(runner.timers())
    probing = asyncio.create_task(probes(runner))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # raises why it could not start
            return
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    state = settings.home / RUNNER_FILE
    record_url(state, bound, token=runner.token)
    try:
        await serving
    finally:
        forget_url(state)
        for loop in (timers, probing):
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        busy = [task for task in runner.tasks if not task.done()]
        if busy:
            # Flow runs still driving (in threads asyncio cannot interrupt) would hold the
            # process past any stop signal. Every step is in the ledger, the runs stay due,
            # and the next runner takes them over (and marks their flow runs Crashed).
            log.warning(
                "stopping with %d run(s) in flight; the next runner resumes them", len(busy)
            )
        # Leave promptly whatever is in flight: give Prefect's log shipping a few seconds
        # (a loaded server can take much longer, and the ledger, not the logs, is the
        # record), then exit without waiting for worker threads or exit handlers.
        with contextlib.suppress(Exception):
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=LOG_FLUSH_SECONDS)
        logging.shutdown()
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.runner", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="loopback port (0: any free)")
    parser.add_argument(
        "--concurrency", type=int, default=2, help="flow runs at once (SQLite server: 1-2)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    # Before any thread starts: flow runs in this process swap SIGTERM handlers, so stop
    # signals are taken by a thread of their own (see storeops.serving.StopSignals).
    stop = StopSignals(
        grace=STOP_GRACE_SECONDS, on_deadline=lambda: forget_url(settings.home / RUNNER_FILE)
    )
    stop.install()
    try:
        asyncio.run(serve(settings, port=args.port, concurrency=args.concurrency, stop=stop))
    finally:  # also when a signal ends a flow run abruptly
        forget_url(settings.home / RUNNER_FILE)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
