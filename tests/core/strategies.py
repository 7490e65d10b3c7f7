"""Hypothesis strategies and a pure driver for the machine, kept in one place.

The driver plays the outside world for `storeops.machine.Run` with no ledger and no I/O:
people complete or reject open steps, connector operations succeed or fail, and time
moves. Every choice is drawn from a `Chooser`, so a run can be repeated exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from storeops import machine as m
from storeops import spec as s
from storeops.durations import us_to_iso
from storeops.expressions import Expressions
from tests.conftest import HOUR, MINUTE, T0

Chooser = Callable[[Sequence[Any]], Any]


def from_data(data: Any) -> Chooser:
    """A chooser that lets Hypothesis pick (and shrink) every decision."""
    return lambda options: data.draw(st.sampled_from(list(options)))


def field_values(spec: s.FieldSpec) -> list[Any]:
    """A few valid values for a form field, bounds included."""
    low = spec.min if spec.min is not None else -1000.0
    high = spec.max if spec.max is not None else 1000.0
    if spec.type == "int":
        return sorted({int(low), int((low + high) / 2), int(high)})
    if spec.type == "number":
        return sorted({low, (low + high) / 2, high})
    if spec.type == "bool":
        return [False, True]
    if spec.type == "enum":
        return list(spec.values or ["x"])
    if spec.type == "datetime":
        return [us_to_iso(T0 + h * HOUR) for h in (0, 5, 50)]
    if spec.type == "date":
        return ["2026-11-11", "2026-12-12"]
    if spec.type == "duration":
        return [0.0, 3600.0]
    if spec.type == "list":
        return [[], [1, 2]]
    return ["x", "长文本 " * 3]


def best_value(spec: s.FieldSpec) -> Any:
    """The value a cooperative person would give when the test wants the run to end."""
    if spec.type in ("int", "number"):
        value = spec.max if spec.max is not None else 1000
        return int(value) if spec.type == "int" else float(value)
    if spec.type == "datetime":
        return us_to_iso(T0)
    return {"bool": True, "enum": (spec.values or ["x"])[0], "list": []}.get(spec.type, "ok")


#: How many times a cooperative person answers the same step before letting it time out.
PATIENCE = 3


@dataclass
class Driver:
    sop: s.SopSpec
    choose: Chooser
    run_id: str = "prop-run"
    now: int = T0
    log: list[m.Event] = field(default_factory=list)
    people: int = 0

    def __post_init__(self) -> None:
        self.run = m.Run(self.sop, Expressions(), self.run_id)
        params = {name: best_value(spec) for name, spec in self.sop.params.items()}
        if "orders" in params:
            params["orders"] = [{"id": f"o{i}", "value": 10**i} for i in range(4)]
        self.record("run.started", {"run": self.run_id, "sop": self.sop.id, "params": params})

    def record(self, kind: str, data: dict[str, Any]) -> None:
        event = m.Event(kind, self.now, data)
        self.run.apply(event)
        self.log.append(event)

    def settle(self, cooperative: bool) -> None:
        """Advance and carry out every effect until only people or time are awaited."""
        for _ in range(10_000):
            self.log += self.run.advance(self.now)
            effects = self.run.effects()
            if not effects:
                return
            self.resolve(effects[0], cooperative)
        raise AssertionError("effects never settled")

    def resolve(self, effect: m.Effect, cooperative: bool) -> None:
        ref = {"step": effect.step, "visit": effect.visit}
        if isinstance(effect, m.AssignTask):
            self.record("task.assigned", {**ref, "role": effect.role, "candidates": ["a", "b"]})
        elif isinstance(effect, m.RunAction):
            self.record(
                "action.attempted", {**ref, "attempt": effect.attempt, "inputs": effect.inputs}
            )
            ok = cooperative or self.choose([True, False])
            if ok:
                result = dict(effect.inputs) if effect.uses == "builtin.echo" else {"low_count": 0}
                self.record(
                    "action.succeeded", {**ref, "attempt": effect.attempt, "result": result}
                )
            else:
                error = self.choose(["Unavailable", "NotFound", "Timeout"])
                retryable = self.choose([True, False])
                self.record(
                    "action.failed",
                    {**ref, "attempt": effect.attempt, "error": error, "retryable": retryable},
                )
        elif isinstance(effect, m.SendNotification):
            self.record("notification.sent", {**ref, "people": ["a"]})
        elif isinstance(effect, m.StartCall):
            self.record("call.started", {**ref, "child": "child-run"})
            ok = cooperative or self.choose([True, False])
            status = "succeeded" if ok else "failed"
            self.record("call.finished", {**ref, "status": status, "output": {"doubled": 2}})
        elif isinstance(effect, m.Remind):
            self.record("task.reminded", {**ref, "number": effect.number})
        elif isinstance(effect, m.Escalate):
            self.record("task.escalated", {**ref, "to": effect.to})

    def act(self, cooperative: bool) -> None:
        """One move of the world: a person acts, or time passes."""
        tasks = self.run.active_tasks()
        if cooperative and tasks and tasks[0].visit > PATIENCE:
            # A loop a person keeps failing (a listing check random values never pass):
            # a cooperative world stops answering and lets the step's timeout decide.
            tasks = []
        if tasks and (cooperative or self.choose([0, 1, 2, 3]) > 0):
            token = tasks[0] if cooperative else self.choose(tasks)
            state = self.run.states[token.state]
            self.people += 1
            actor = f"p{self.people}"
            ref = {"step": token.step, "visit": token.visit, "actor": actor, "role": state.role}
            can_reject = isinstance(state, s.ApprovalState) or getattr(state, "on_reject", None)
            if can_reject and not cooperative and self.choose([False, True]):
                self.record("task.rejected", {**ref, "reason": "no"})
                return
            fields = {
                name: best_value(spec) if cooperative else self.choose(field_values(spec))
                for name, spec in state.fields.items()
            }
            self.record("task.completed", {**ref, "fields": fields})
            return
        step = (
            30 * 86400 * 1_000_000
            if cooperative
            else self.choose([MINUTE, 15 * MINUTE, HOUR, 5 * HOUR, 86400 * 1_000_000])
        )
        wake = self.run.wake_at()
        self.now = (
            min(self.now + step, wake) if wake is not None and cooperative else self.now + step
        )

    def play(self, budget: int = 60, finish_within: int = 5_000) -> None:
        """`budget` random moves, then cooperate until the run ends."""
        self.settle(cooperative=False)
        for _ in range(budget):
            if self.run.status != "running":
                return
            self.act(cooperative=False)
            self.settle(cooperative=False)
        for _ in range(finish_within):
            if self.run.status != "running":
                return
            self.act(cooperative=True)
            self.settle(cooperative=True)
        raise AssertionError(f"{self.sop.id} did not finish; open: {self.run.active_tasks()}")
