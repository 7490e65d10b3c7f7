"""Latency of the local stack as people feel it: `storeops done` → the next automated step
starting, `storeops start` → first task assigned, and an alert → the commander's task.

Starts its own stack (Prefect server + runner) in a temporary STOREOPS_HOME, drives it
through the real CLI in fresh processes (as a person would), reads the answer from the
ledger's timestamps, and stops everything it started. Beside each figure it prints the
same step driven in-process by the CLI (no runner: the floor) and Prefect's own
deployment-run start (`create_flow_run` → flow body under `serve()` polling every 1 s),
measured in the same invocation by `bench/wake.py`'s harness on its own Prefect server
(see docs/wake-mechanisms.md). Run: `.venv/bin/python bench/latency.py [--rounds 15]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import median, percentile
from storeops.durations import iso_to_us
from storeops.settings import Settings
from storeops.stack import Stack
from storeops.wake import runner_headers, runner_url

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOPS = HERE / "sops"
TEMPLATES = ROOT / "tests" / "fixtures" / "templates"


def cli(home: Path, *args: str) -> str:
    env = {
        **os.environ,
        "STOREOPS_HOME": str(home),
        "STOREOPS_SOPS": str(SOPS),
        "STOREOPS_TEMPLATES": str(TEMPLATES),
        "STOREOPS_LEDGER": str(home / "ledger.db"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "storeops.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def first_after(settings: Settings, run_id: str, kind: str, after_us: int, step: str) -> int:
    """µs timestamp of the first `kind` event of `step` at or after `after_us` (waits)."""
    ledger = settings.engine().ledger
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for event in ledger.events(run_id):
                at = iso_to_us(event.at)
                if event.type == kind and event.data.get("step") == step and at >= after_us:
                    return at
            time.sleep(0.01)
        raise TimeoutError(f"no {kind} for {step} in {run_id}")
    finally:
        ledger.close()


def measure(home: Path, rounds: int) -> dict[str, list[float]]:
    settings = Settings(
        home=str(home), ledger=str(home / "ledger.db"), sops=str(SOPS), templates=str(TEMPLATES)
    )
    found: dict[str, list[float]] = {"start": [], "done": [], "alert": []}
    t0 = time.time_ns() // 1000
    run_id = json.loads(cli(home, "start", "latency", "--as", "ann", "--format", "json"))["run"]
    found["start"].append((first_after(settings, run_id, "task.assigned", t0, "work") - t0) / 1e6)
    for _ in range(rounds):
        t0 = time.time_ns() // 1000
        cli(home, "done", run_id, "work", "--as", "ann")
        attempted = first_after(settings, run_id, "action.attempted", t0, "echo")
        found["done"].append((attempted - t0) / 1e6)
        first_after(settings, run_id, "task.assigned", attempted, "work")  # settled again
    url = runner_url(home)
    for i in range(rounds if url else 0):
        t0 = time.time_ns() // 1000
        answer = httpx.post(
            f"{url}/alerts",
            json={"key": f"k{i}", "sop": "incident"},
            headers=runner_headers(home),
            timeout=30,
        )
        found["alert"].append(
            (first_after(settings, answer.json()["run"], "task.assigned", t0, "command") - t0) / 1e6
        )
    return found


def measure_inbox(home: Path, rounds: int) -> list[float]:
    """Seconds from a person's completion in the web inbox (a real HTTP form post, signed
    in, with CSRF) to the next automated step starting — as `done` measures it for the CLI."""
    import json
    import re

    from storeops.web.auth import set_password

    settings = Settings(
        home=str(home), ledger=str(home / "ledger.db"), sops=str(SOPS), templates=str(TEMPLATES)
    )
    set_password(home, "ann", "latency-bench-password")
    url = json.loads((home / "inbox.json").read_text())["url"]
    token = re.compile(r'name="csrf" value="([^"]+)"')
    found: list[float] = []
    with httpx.Client(base_url=url, timeout=30) as web:
        page = web.get("/signin")
        web.post(
            "/signin",
            data={
                "csrf": token.search(page.text).group(1),  # type: ignore[union-attr]
                "person": "ann",
                "password": "latency-bench-password",
            },
        )
        run_id = json.loads(cli(home, "start", "latency", "--as", "ann", "--format", "json"))["run"]
        first_after(settings, run_id, "task.assigned", 0, "work")
        for _ in range(rounds):
            form = web.get(f"/runs/{run_id}/steps/work")
            t0 = time.time_ns() // 1000
            web.post(
                f"/runs/{run_id}/steps/work",
                data={"csrf": token.search(form.text).group(1), "action": "complete"},  # type: ignore[union-attr]
            )
            attempted = first_after(settings, run_id, "action.attempted", t0, "echo")
            found.append((attempted - t0) / 1e6)
            first_after(settings, run_id, "task.assigned", attempted, "work")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="storeops-latency-") as tmp:
        stacked, alone = Path(tmp) / "stack", Path(tmp) / "alone"
        env = {
            "STOREOPS_SOPS": str(SOPS),
            "STOREOPS_TEMPLATES": str(TEMPLATES),
            "STOREOPS_ROSTER": str(SOPS / "team.yaml"),
            "STOREOPS_LEDGER": str(stacked / "ledger.db"),
        }
        stack = Stack(stacked, port=0, ui=False, storeops_env=env)
        stack.up(timeout=120)
        try:
            deadline = time.monotonic() + 60
            while runner_url(stacked) is None and time.monotonic() < deadline:
                time.sleep(0.1)
            through_runner = measure(stacked, args.rounds)
            through_runner["inbox"] = measure_inbox(stacked, args.rounds)
        finally:
            stack.down()
        in_process = measure(alone, args.rounds)
    prefect_start = _prefect_deployment_start(args.rounds)
    print(f"storeops latency, {args.rounds} rounds; seconds, median / p90 (n)")
    rows = [
        ("start → first task assigned", "start"),
        ("done → next automated step starts (target ≤ 1 s)", "done"),
        ("alert → commander's task assigned (target ≤ 5 s)", "alert"),
        ("inbox completion → next automated step starts", "inbox"),
    ]
    for label, key in rows:
        ours = through_runner[key]
        floor = in_process.get(key, [])
        line = (
            f"  {label:<52} runner {median(ours):.3f} / {percentile(ours, 90):.3f} (n={len(ours)})"
        )
        if floor:
            line += f"   in-process CLI {median(floor):.3f} (n={len(floor)})"
            line += f"   runner/in-process = {median(ours) / max(median(floor), 1e-6):.1f}×"
        if prefect_start and ours:
            line += f"   Prefect deployment run / ours = {prefect_start / median(ours):.1f}×"
        print(line)
    if prefect_start:
        print(
            f"  Prefect's own deployment-run start on this machine, this invocation: "
            f"{prefect_start:.3f} s median (serve(), poll 1 s)"
        )
    else:
        print("  Prefect's deployment-run start could not be measured (see the error above)")
    return 0


def _prefect_deployment_start(rounds: int) -> float | None:
    """Median seconds from `create_flow_run` to the flow body under `serve()`."""
    from bench import wake

    try:
        section = wake.run(rounds=max(3, min(rounds, 8)), budget=60.0)
    except Exception as exc:  # report, do not hide our own figures
        print(f"bench/wake.py failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    found = [r.value for r in section.rows if r.name.startswith("serve-wake")]
    return found[0] if found else None


if __name__ == "__main__":
    raise SystemExit(main())
