"""Engine transitions/s: storeops' machine against `transitions` and python-statemachine.

All three run the same 10-state cycle s0 → s1 → … → s9 → s0 with the same guard
(`n > 0`, always true) on the same edges. What one "transition" is in each is spelled out
in `NOTES` below and in BENCHMARKS.md. Imports storeops, transitions, statemachine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from statemachine import State, StateMachine
from transitions import Machine

from bench.common import REPEATS, Section, Target, interleaved, rate
from storeops.expressions import Expressions
from storeops.machine import Event, Run
from storeops.spec import SopSpec

GUARD = "params.n > 0"
SECONDS = 0.15  # per sample
MAX_CALLS = 200_000  # per sample, a bound in case a library is far faster than expected
CHUNK = 100  # outside events (storeops) or triggers (peers) per timed call

#: The brief's shape: choice (guarded) and action (waits for an outside result) alternate.
ALTERNATING = "ca" * 5
#: A second shape: nine guarded choices in a row, then one action.
CHOICE_CHAIN = "c" * 9 + "a"

NOTES = [
    "storeops: one transition = one `state.entered` event decided by `Run.advance` and "
    "applied (a Token built, the event recorded, the next state's effect computed). Per "
    "outside result the driver applies `action.attempted` + `action.succeeded` and calls "
    "`advance`; in the alternating shape that yields 2 transitions, the first out of the "
    "action (unguarded), the second out of a choice state (guard evaluated).",
    "transitions / python-statemachine: one transition = one `step()` trigger that moves "
    "the model to the next state; the triggers leaving the 'choice' states carry a "
    "condition (a model method returning n > 0), the others none: same graph, same guards.",
    "storeops Python guards: the same Run with an evaluator whose guard is a Python "
    "callable instead of the Jinja2 sandbox: the machine's own cost.",
    "choice chain: nine guarded choices then one action, so storeops decides 10 "
    "transitions per outside result (the peers still take one trigger each): shows how "
    "much of storeops' cost is folding the outside events rather than deciding.",
    "dict interpreter: a loop over {state: (guard, next)} appending one event tuple per "
    "transition: a floor for any Python implementation, not a competitor.",
]


# ---------------------------------------------------------------- storeops


def cycle_sop(shape: str) -> SopSpec:
    """A cycle of len(shape) states: 'c' is a choice guarded by GUARD, 'a' an action."""
    size = len(shape)
    states: dict[str, Any] = {"stop": {"type": "succeed"}}
    for i, kind in enumerate(shape):
        target = f"s{(i + 1) % size}"
        if kind == "c":
            states[f"s{i}"] = {
                "type": "choice",
                "choices": [{"when": GUARD, "next": target}],
                "default": "stop",
            }
        else:
            states[f"s{i}"] = {"type": "action", "uses": "builtin.echo", "next": target}
    return SopSpec.model_validate(
        {
            "id": "bench-cycle",
            "version": 1,
            "title": "benchmark cycle",
            "params": {"n": {"type": "int", "default": 1}},
            "start": "s0",
            "states": states,
        }
    )


class PythonGuards:
    """An Evaluator whose guards are Python callables: the machine without Jinja2."""

    def __init__(self, guards: Mapping[str, Callable[[Mapping[str, Any]], Any]]) -> None:
        self.guards = dict(guards)

    def evaluate(self, source: str, namespace: Mapping[str, Any]) -> Any:
        return self.guards[source](namespace)

    def render_value(self, value: Any, namespace: Mapping[str, Any]) -> Any:
        return value  # the bench actions have no `with:` values


def python_guards() -> PythonGuards:
    return PythonGuards({GUARD: lambda ns: ns["params"]["n"] > 0})


class StoreopsDriver:
    """Plays the outside world for a run: every action succeeds at once."""

    def __init__(self, sop: SopSpec, evaluator: Any, *, run_id: str = "bench") -> None:
        self.now = 1_700_000_000_000_000
        self.run = Run(sop, evaluator, run_id=run_id)
        self.log: list[Event] | None = None
        start = Event(
            "run.started",
            self.now,
            {"run": run_id, "sop": sop.id, "version": sop.version, "params": {"n": 1}},
        )
        self.run.apply(start)
        first = self.run.advance(self.now)
        self.record([start, *first])

    def record(self, events: list[Event]) -> None:
        if self.log is not None:
            self.log.extend(events)

    def results(self, count: int) -> int:
        """Record `count` action results; return the transitions that followed."""
        run = self.run
        now = self.now
        log = self.log
        transitions = 0
        for _ in range(count):
            now += 1000
            (effect,) = run.effects()
            ref = {"step": effect.step, "visit": effect.visit, "attempt": effect.attempt}
            attempted = Event("action.attempted", now, {**ref, "uses": effect.uses, "inputs": {}})
            succeeded = Event("action.succeeded", now, {**ref, "result": None})
            run.apply(attempted)
            run.apply(succeeded)
            decided = run.advance(now)
            transitions += len(decided)
            if log is not None:
                log += (attempted, succeeded, *decided)
        self.now = now
        return transitions


# ---------------------------------------------------------------- peers


class _Model:
    n = 1

    def ok(self) -> bool:
        return self.n > 0


def transitions_machine(shape: str) -> Callable[[], bool]:
    """A `transitions` Machine on the cycle; returns its `step` trigger."""
    size = len(shape)
    model = _Model()
    edges = []
    for i, kind in enumerate(shape):
        edge: dict[str, Any] = {"trigger": "step", "source": f"s{i}", "dest": f"s{(i + 1) % size}"}
        if kind == "c":
            edge["conditions"] = "ok"
        edges.append(edge)
    Machine(
        model,
        states=[f"s{i}" for i in range(size)],
        transitions=edges,
        initial="s0",
        auto_transitions=False,
    )
    step: Callable[[], bool] = model.step  # type: ignore[attr-defined]
    return step


def statemachine_class(shape: str) -> type[StateMachine]:
    """A python-statemachine 3.x class on the cycle (`cond=` on the guarded edges)."""
    size = len(shape)
    states = {f"s{i}": State(initial=i == 0) for i in range(size)}
    step = None
    for i, kind in enumerate(shape):
        source, dest = states[f"s{i}"], states[f"s{(i + 1) % size}"]
        edge = source.to(dest, cond="ok") if kind == "c" else source.to(dest)
        step = edge if step is None else step | edge
    attrs: dict[str, Any] = {**states, "step": step, "n": 1, "ok": lambda self: self.n > 0}
    return type("BenchCycle", (StateMachine,), attrs)


def dict_interpreter(shape: str) -> Callable[[int], int]:
    size = len(shape)
    ns = {"params": {"n": 1}}

    def guard(namespace: Mapping[str, Any]) -> bool:
        return bool(namespace["params"]["n"] > 0)

    table = {
        f"s{i}": (guard if kind == "c" else None, f"s{(i + 1) % size}")
        for i, kind in enumerate(shape)
    }
    current = ["s0"]

    def steps(count: int) -> int:
        state = current[0]
        log: list[tuple[str, str, str]] = []
        for _ in range(count):
            check, target = table[state]
            if check is None or check(ns):
                log.append(("state.entered", state, target))
                state = target
        current[0] = state
        return len(log)

    return steps


# ---------------------------------------------------------------- the benchmark


def _per_sample(op: Callable[[], int]) -> Callable[[], float]:
    return lambda: rate(op, seconds=SECONDS, max_calls=MAX_CALLS)


def _triggers(step: Callable[[], object]) -> Callable[[], int]:
    def op() -> int:
        for _ in range(CHUNK):
            step()
        return CHUNK

    return op


def _check_equivalent(shape: str) -> None:
    """Guard against a benchmark that measures nothing: every peer must really move."""
    driver = StoreopsDriver(cycle_sop(shape), Expressions())
    driver.log = []
    driver.results(len(shape))
    kinds = {e.type for e in driver.log} - {"action.attempted", "action.succeeded"}
    if kinds != {"state.entered"}:
        raise RuntimeError(f"storeops cycle emitted {sorted(kinds)}, expected only state.entered")
    per_cycle = shape.count("a")
    entered = driver.results(per_cycle)
    if entered != len(shape):
        raise RuntimeError(f"storeops made {entered} transitions per cycle, expected {len(shape)}")
    step = transitions_machine(shape)
    for _ in range(len(shape) + 3):
        if not step():
            raise RuntimeError("transitions: a guarded step did not fire")
    machine = statemachine_class(shape)()
    for _ in range(len(shape) + 3):
        machine.step()
    if [s.id for s in machine.configuration] != ["s3"]:
        raise RuntimeError("python-statemachine did not follow the cycle")


def bench_shape(shape: str, *, peers: bool = True) -> dict[str, list[float]]:
    """transitions/s samples on one cycle shape; `peers=False` keeps storeops and
    `transitions` only (the slow python-statemachine and the floor are measured once)."""
    _check_equivalent(shape)
    results_per_call = max(1, CHUNK * shape.count("a") // len(shape))
    jinja = StoreopsDriver(cycle_sop(shape), Expressions())
    plain = StoreopsDriver(cycle_sop(shape), python_guards())
    machine = statemachine_class(shape)()
    floor = dict_interpreter(shape)
    cases = {
        "storeops (Jinja2 guards)": _per_sample(lambda: jinja.results(results_per_call)),
        "storeops (Python guards)": _per_sample(lambda: plain.results(results_per_call)),
        "transitions 0.9": _per_sample(_triggers(transitions_machine(shape))),
    }
    if peers:
        cases["python-statemachine 3.x"] = _per_sample(_triggers(machine.step))
        cases["dict interpreter"] = _per_sample(lambda: floor(CHUNK))
    return interleaved(cases, repeats=REPEATS)


def jinja_guard_rate() -> float:
    """Guard evaluations per second through storeops' Expressions, alone."""
    expressions = Expressions()
    namespace = {"params": {"n": 1}, "vars": {}, "steps": {}, "run": {}}
    evaluate = expressions.evaluate

    def op() -> int:
        for _ in range(CHUNK):
            evaluate(GUARD, namespace)
        return CHUNK

    return rate(op, seconds=SECONDS, max_calls=MAX_CALLS)


def run() -> Section:
    section = Section("engine", "transitions per second, 10-state cycle with guards")
    samples = bench_shape(ALTERNATING)
    rows = {name: section.row(f"{name}", s, "transitions/s") for name, s in samples.items()}
    jinja = rows["storeops (Jinja2 guards)"].value
    plain = rows["storeops (Python guards)"].value
    peer = rows["transitions 0.9"].value
    guards = interleaved({"guard": jinja_guard_rate}, repeats=REPEATS)["guard"]
    guard_rate = section.row("Jinja2 guard evaluation alone", guards, "evaluations/s").value

    chain = bench_shape(CHOICE_CHAIN, peers=False)
    chain_rows = {
        name: section.row(f"choice chain: {name}", found, "transitions/s")
        for name, found in chain.items()
    }

    ratio = section.ratio("engine / transitions", jinja, peer)
    section.ratio("engine (Python guards) / transitions", plain, peer)
    section.ratio("engine / python-statemachine", jinja, rows["python-statemachine 3.x"].value)
    section.ratio("dict interpreter / engine", rows["dict interpreter"].value, jinja)
    section.ratio(
        "choice chain: engine / transitions",
        chain_rows["storeops (Jinja2 guards)"].value,
        chain_rows["transitions 0.9"].value,
    )
    us_per = 1e6 / jinja
    guard_us = 1e6 / guard_rate
    section.notes += NOTES
    section.notes.append(
        f"cost split (alternating shape): {us_per:.2f} µs per storeops transition, of which "
        f"{1e6 / plain:.2f} µs is the machine with a Python guard; one Jinja2 guard "
        f"evaluation alone is {guard_us:.2f} µs and happens on every second transition."
    )
    section.targets.append(Target("engine / transitions (alternating shape)", ratio, 2.0, "×"))
    return section
