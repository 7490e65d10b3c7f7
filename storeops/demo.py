"""`storeops demo`: promotion prep end to end on the local stack, in real time.

Edge module. Validates the shipped library, brings up the local stack (a Prefect server
and our runner on 127.0.0.1, state under STOREOPS_HOME), starts promotion prep against
the local demo store, and lets the people of `sops/team.yaml` act as the scenario
`sops/scenarios/promotion-prep.scenario.yaml` scripts them — through `Engine.complete`,
the path the CLI and the inbox take, each completion recorded first and then waking the
runner. The promotion window is moved to start a few seconds from now, so the run's waits
pass in real time. Prints the timeline, the ledger's verification and where to look in
the Prefect UI; stops the stack again unless `--keep` (or it was already up).
"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from storeops.errors import StoreopsError
from storeops.loader import validate_paths
from storeops.simulate import act, load_scenario
from storeops.timeline import render
from storeops.wake import runner_url, wake_runner

#: The promotion starts this long after the goals are set, and lasts this long.
LEAD_SECONDS = 8
WINDOW_SECONDS = 6
#: With nothing scripted to do for this long, `play(improvise=True)` does an open step.
IMPROVISE_AFTER = 1.5


def _say(t0: float, text: str) -> None:
    print(f"  [{time.monotonic() - t0:5.1f} s] {text}", flush=True)


def _open_steps(engine: Any, run_id: str) -> set[str]:
    found: set[str] = set()
    for record in [engine.ledger.get_run(run_id), *engine.ledger.runs(status="running")]:
        if record.run_id == run_id or record.parent_run == run_id:
            found |= {t.step for t in engine.load(record.run_id)[0].active_tasks()}
    return found


def _wait_until(check: Any, seconds: float, what: str, log: Any = None) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            where = f"; see {log}" if log else ""
            raise StoreopsError(f"demo: waited {seconds:.0f} s for {what}{where}")
        time.sleep(0.1)


def _flow_runs(api: str, run_id: str) -> list[dict[str, Any]]:
    """The run-sop flow runs of this SOP run, from the Prefect API (oldest first)."""
    body = json.dumps(
        {"flow_runs": {"tags": {"all_": ["sop:promotion-prep"]}}, "sort": "START_TIME_ASC"}
    ).encode()
    request = urllib.request.Request(
        f"{api}/flow_runs/filter", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        runs: list[dict[str, Any]] = json.loads(answer.read())
    return [r for r in runs if r.get("parameters", {}).get("run_id") == run_id]


def run_demo(cfg: Any, *, keep: bool = False, timeout: float = 300.0) -> int:
    from storeops.stack import Stack

    t0 = time.monotonic()
    print(f"== 1. validating the SOP library in {cfg.sops}")
    from connectors.probes import check_monitors_file

    diagnostics, count = validate_paths(
        [cfg.sops], templates_root=cfg.templates, check_monitors=check_monitors_file
    )
    for diag in diagnostics:
        print(diag)
    errors = [d for d in diagnostics if d.severity == "error"]
    print(f"{count} file(s): {len(errors)} error(s)")
    if errors:
        return 1

    print(f"\n== 2. bringing up the local stack under {cfg.home} (127.0.0.1 only)")
    stack = Stack(cfg.home, storeops_env=cfg.environment())
    up = stack.up(timeout=180)
    how = "started" if up.started else "already running, reused"
    print(f"  Prefect server and runner {how} in {up.seconds:.1f} s")
    ui = up.urls.get("prefect_ui") or up.urls.get("prefect_api", "").removesuffix("/api")
    api = up.urls.get("prefect_api", "")
    try:
        code = _promotion(cfg, t0, timeout, ui, api)
    finally:
        if up.started and not keep:
            stack.down()
            print("\nstack stopped (run `storeops demo --keep` to look around in the UI after)")
        else:
            print(f"\nstack still running: Prefect UI {ui} — `storeops down` stops it")
    return code


def play(
    cfg: Any,
    engine: Any,
    scenario: Any,
    *,
    params: dict[str, Any] | None = None,
    adjust: Any = None,
    timeout: float = 300.0,
    say: Any = None,
    pace: float = 0.3,
    improvise: bool = False,
) -> tuple[str, list[str]]:
    """Play a scenario's people for real against a running stack: start the run, then
    whenever the runner has brought a scripted step to a person, act as the script says
    (through `Engine.complete`) and wake the runner. `adjust(step)` may rewrite a step
    first (e.g. move dates to now); `after:` delays are not waited for. With `improvise`,
    a step the script does not mention (the live world differs from the simulated one: a
    store that answers, a probe that is healthy) is done by someone holding its role with
    plain answers once nothing scripted has happened for a moment. Returns (run, problems)."""
    say = say or (lambda text: None)
    log = cfg.home / "logs" / "runner.log"
    _wait_until(lambda: runner_url(cfg.home) is not None, 60, "the runner to listen", log)
    run_id = engine.start(
        scenario.sop, {**scenario.params, **(params or {})}, actor=scenario.as_, drive=False
    )
    wake_runner(cfg.home, run_id)
    say(f"{scenario.as_} started run {run_id}")
    pending = [(n, s) for n, s in enumerate(scenario.steps, start=1) if s.done or s.reject]
    problems: list[str] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while engine.ledger.get_run(run_id).status == "running":
        if time.monotonic() > deadline:
            waiting = sorted(_open_steps(engine, run_id))
            raise StoreopsError(
                f"demo: {scenario.sop} run {run_id} did not finish in {timeout:.0f} s; "
                f"open steps {waiting}; see {log}"
            )
        open_now = _open_steps(engine, run_id)
        chosen = next(
            ((i, n, s) for i, (n, s) in enumerate(pending) if _target(s) in open_now), None
        )
        if chosen is not None:
            index, number, step = chosen
            pending.pop(index)
            if adjust is not None:
                step = adjust(step)
            problem = act(engine, step, run_id, number, drive=False)
            verb = "rejected" if step.reject else "completed"
            if step.expect_error and problem is None:
                say(f"{step.as_} tried {_target(step)}: refused ({step.expect_error}), recorded")
            else:
                say(f"{step.as_} {verb} {_target(step)}" + (f" — {problem}" if problem else ""))
            if problem:
                problems.append(problem)
        elif improvise and open_now and time.monotonic() - quiet_since > IMPROVISE_AFTER:
            scripted = {_target(s) for _n, s in pending}
            for step in sorted(open_now - scripted):
                say(_improvise(engine, run_id, step))
        else:
            time.sleep(0.1)
            continue
        quiet_since = time.monotonic()
        wake_runner(cfg.home, run_id)
        time.sleep(pace)  # let people's pace show in the timeline
    return run_id, problems


def _target(step: Any) -> str:
    return str(step.done or step.reject)


def _improvise(engine: Any, run_id: str, step: str) -> str:
    """Do an unscripted step as the first person holding its role, with plain answers:
    every field its default (or a neutral value), every checklist item done, evidence a
    placeholder digest, approvals approved."""
    from storeops import spec as s
    from storeops.simulate import run_waiting_for

    where = run_waiting_for(engine, step) or run_id
    run = engine.load(where)[0]
    token = run.token(step)
    state = run.states[token.state]
    roles = list(token.roles)
    person = next((p for r in roles for p in engine.roster.holders(r)), None)
    if person is None:
        return f"nobody holds {roles} for {step}"
    fields = {
        name: spec.default if spec.default is not None else _plain(spec)
        for name, spec in getattr(state, "fields", {}).items()
        if spec.required or spec.default is not None
    }
    evidence = {
        e.name: ["0" * 64] * max(1, e.min_count)
        for e in getattr(state, "evidence", [])
        if e.required
    }
    engine.complete(
        where,
        step,
        actor=person,
        fields=fields,
        evidence=evidence,
        checklist={0: "done"},
        note="(improvised by the demo)",
        drive=False,
    )
    title = s.localize(getattr(state, "title", None), "en") or step
    return f"{person} completed {step} ({title}), unscripted"


def _plain(spec: Any) -> Any:
    if spec.type in ("int", "number"):
        low = spec.min if spec.min is not None else 0
        return int(low) if spec.type == "int" else float(low)
    if spec.type == "enum":
        return (spec.values or [""])[0]
    if spec.type == "list":
        return []
    if spec.type == "bool":
        return False
    if spec.type in ("date", "datetime"):
        return (
            datetime.now(UTC).isoformat()
            if spec.type == "datetime"
            else str(datetime.now(UTC).date())
        )
    return "ok"


def _promotion(cfg: Any, t0: float, timeout: float, ui: str, api: str) -> int:
    scenario = load_scenario(cfg.sops / "scenarios" / "promotion-prep.scenario.yaml")
    engine = cfg.engine()
    code = f"D11-DEMO-{datetime.now(UTC):%H%M%S}"
    print(f"\n== 3. promotion prep {code}: people act as the scenario scripts them")
    print(f"     (store: the local demo store, {cfg.home / 'store.db'})")

    def now_plus_window(step: Any) -> Any:
        if (step.done or step.reject) != "set_goals":
            return step
        starts = datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)
        ends = starts + timedelta(seconds=WINDOW_SECONDS)
        fields = {**step.fields, "starts_at": starts.isoformat(), "ends_at": ends.isoformat()}
        return step.model_copy(update={"fields": fields})

    run_id, problems = play(
        cfg,
        engine,
        scenario,
        params={"promo_code": code},
        adjust=now_plus_window,
        timeout=timeout,
        say=lambda text: _say(t0, text),
    )
    record = engine.ledger.get_run(run_id)
    _say(t0, f"run {run_id} {record.status}")

    print("\n== 4. the run's timeline, from the ledger")
    loaded = engine.definition(record.def_hash)
    events = [{"type": e.type, "at": e.at, "data": e.data} for e in engine.ledger.events(run_id)]
    for line in render(events, loaded.spec, cfg.locale):
        print(f"  {line}")
    print("\n== 5. verifying the ledger's hash chains")
    report = engine.ledger.verify()
    print(
        f"  {report.runs_checked} run(s), {report.events_checked} event(s): "
        + ("intact" if report.ok else "TAMPERED")
    )
    for problem in problems:
        print(f"  scenario problem: {problem}")

    print("\n== 6. where to look")
    try:
        flow_runs = _flow_runs(api, run_id)
    except OSError:
        flow_runs = []
    print(f"  {len(flow_runs)} run-sop flow run(s) carried this run; none waited for people")
    if flow_runs:
        print(f"  Prefect UI, latest flow run: {ui}/runs/flow-run/{flow_runs[-1]['id']}")
    print(f"  Prefect UI, all SOP flow runs: {ui}/runs")
    inbox = cfg.inbox_url()
    print(f"  the people's inbox: {inbox}  (sign in after `storeops passwd li.wei`)")
    print(f"  the run's artifact (timeline and diagram): {ui}/artifacts")
    print(f"  storeops show {run_id}   ·   storeops verify   ·   storeops graph promotion-prep")
    engine.close()
    ok = record.status == "succeeded" and report.ok and not problems
    return 0 if ok else 1
