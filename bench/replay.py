"""Replay events/s: rebuild a run from a long recorded history, as every driver does on load.

The history comes from driving a 10-state cycle of human tasks, guarded choices and
actions (with `with:` inputs and saved results) until it holds HISTORY events. Compared in
the same run with driving the same SOP live, and with replay from the stored form (ISO
timestamps converted per event, as `Engine.load` does). Imports storeops only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.common import REPEATS, Section, Target, clock, duration, interleaved, rate
from storeops.durations import iso_to_us, us_to_iso
from storeops.expressions import Expressions
from storeops.machine import AssignTask, Event, Run, RunAction
from storeops.spec import SopSpec

HISTORY = 200_000  # events recorded
RECORD_SECONDS = 15.0  # bound on recording, should the engine be far slower than expected
LIVE_SECONDS = 0.2  # per live-driving sample

_HUMAN = {
    "title": {"zh-CN": "核对", "en": "Check"},
    "due": "4h",
    "remind": "1h",
    "on_timeout": "fail",
}
_RESULTS: dict[str, Any] = {
    "store.get_product": {"sku": "A-1001", "stock": 12, "price": 59.0, "title": "Mug"},
    "store.set_price": {"ok": True},
    "builtin.echo": {"note": "checked"},
    "store.add_order_note": {"ok": True, "id": 42},
}
_FIELDS = {
    "s0": {"ok": True, "count": 3, "remark": "shelf B-12 checked"},
    "s5": {"ok": True, "count": 2, "remark": "approved"},
}


def mixed_sop() -> SopSpec:
    """Two tasks, four choices and four actions in a cycle (plus a `stop` end)."""
    states: dict[str, Any] = {
        "s0": {
            "type": "task",
            "role": "clerk",
            **_HUMAN,
            "fields": {"ok": {"type": "bool"}, "count": {"type": "int"}, "remark": {}},
            "next": "s1",
        },
        "s1": _choice("steps.s0.fields.ok", "s2"),
        "s2": _action("store.get_product", "s3", {"sku": "{{ params.sku }}"}, "product"),
        "s3": _choice("vars.product.stock > 0", "s4"),
        "s4": _action(
            "store.set_price",
            "s5",
            {"sku": "{{ params.sku }}", "price": "{{ vars.product.price }}"},
        ),
        "s5": {
            "type": "task",
            "role": "lead",
            **_HUMAN,
            "fields": {"ok": {"type": "bool"}, "count": {"type": "int"}, "remark": {}},
            "next": "s6",
        },
        "s6": _choice("steps.s5.fields.count >= 1", "s7"),
        "s7": _action("builtin.echo", "s8", {"note": "run {{ run.id }} checked"}, "echo"),
        "s8": _choice("params.n > 0", "s9"),
        "s9": _action("store.add_order_note", "s0", {"text": "{{ vars.echo.note }}"}),
        "stop": {"type": "succeed"},
    }
    return SopSpec.model_validate(
        {
            "id": "bench-mixed",
            "version": 1,
            "title": "benchmark: tasks, choices and actions",
            "params": {"n": {"type": "int"}, "sku": {"type": "string"}},
            "roles": ["clerk", "lead"],
            "start": "s0",
            "states": states,
        }
    )


def _choice(when: str, target: str) -> dict[str, Any]:
    return {"type": "choice", "choices": [{"when": when, "next": target}], "default": "stop"}


def _action(
    uses: str, target: str, inputs: dict[str, Any], save_as: str | None = None
) -> dict[str, Any]:
    state: dict[str, Any] = {"type": "action", "uses": uses, "with": inputs, "next": target}
    if save_as:
        state["save_as"] = save_as
    return state


class MixedDriver:
    """Plays people and connectors: tasks are assigned and completed, actions succeed."""

    def __init__(self, sop: SopSpec, *, keep: bool) -> None:
        self.now = 1_700_000_000_000_000
        self.run = Run(sop, Expressions(), run_id="bench-replay")
        self.log: list[Event] = []
        self.keep = keep
        start = Event(
            "run.started",
            self.now,
            {
                "run": "bench-replay",
                "sop": sop.id,
                "version": 1,
                "params": {"n": 1, "sku": "A-1001"},
                "key": "A-1001",
            },
        )
        self.run.apply(start)
        self.events = 1
        self._keep([start, *self.run.advance(self.now)])

    def _keep(self, events: list[Event]) -> None:
        self.events += len(events)
        if self.keep:
            self.log += events

    def results(self, count: int) -> int:
        """Record `count` outside results; return how many events that made (all kinds)."""
        before = self.events
        run = self.run
        for _ in range(count):
            self.now += 1000
            now = self.now
            effect = run.effects()[0]
            ref = {"step": effect.step, "visit": effect.visit}
            if isinstance(effect, AssignTask):
                outside = [
                    Event(
                        "task.assigned", now, {**ref, "role": effect.role, "candidates": ["ann"]}
                    ),
                    Event(
                        "task.completed",
                        now,
                        {
                            **ref,
                            "actor": "ann",
                            "role": effect.role,
                            "fields": _FIELDS[effect.step],
                        },
                    ),
                ]
            elif isinstance(effect, RunAction):
                ref["attempt"] = effect.attempt
                key = {"idempotency_key": effect.idempotency_key}
                outside = [
                    Event(
                        "action.attempted",
                        now,
                        {**ref, **key, "uses": effect.uses, "inputs": effect.inputs},
                    ),
                    Event("action.succeeded", now, {**ref, **key, "result": _RESULTS[effect.uses]}),
                ]
            else:  # pragma: no cover - the bench SOP makes no other effects
                raise RuntimeError(f"unexpected effect {effect!r}")
            for event in outside:
                run.apply(event)
            self._keep([*outside, *run.advance(now)])
        return self.events - before


def record(size: int) -> tuple[list[Event], Run, float]:
    """A history of at least `size` events (or what RECORD_SECONDS allowed), the live run,
    and the events/s seen while recording."""
    driver = MixedDriver(mixed_sop(), keep=True)
    started = clock()
    while len(driver.log) < size and clock() - started < RECORD_SECONDS:
        driver.results(200)
    return driver.log, driver.run, len(driver.log) / (clock() - started)


def run() -> Section:
    section = Section("replay", "rebuilding a run from its recorded events")
    sop = mixed_sop()
    history, live, recording_rate = record(HISTORY)
    replayed = Run(sop, Expressions()).replay(history)
    # Effects are decisions: they come back with the first advance after a replay.
    if replayed.advance(history[-1].at) or replayed.snapshot() != live.snapshot():
        raise RuntimeError("replay did not reproduce the live run's state")
    stored = [(e.type, us_to_iso(e.at), e.data) for e in history]
    kinds = sorted({e.type for e in history})

    def replay_events() -> float:
        return len(history) / duration(lambda: Run(sop, Expressions()).replay(history))

    def replay_stored() -> float:
        def load() -> None:
            run = Run(sop, Expressions())
            apply = run.apply
            for type_, at, data in stored:
                apply(Event(type_, iso_to_us(at), data))

        return len(stored) / duration(load)

    def drive_live() -> float:
        driver = MixedDriver(sop, keep=False)
        return rate(lambda: driver.results(50), seconds=LIVE_SECONDS, max_calls=10_000)

    cases: dict[str, Callable[[], float]] = {
        "replay (machine Events)": replay_events,
        "replay from stored form (ISO `at` → µs)": replay_stored,
        "live driving (decide + apply)": drive_live,
    }
    samples = interleaved(cases, repeats=REPEATS)
    rows = {name: section.row(name, found, "events/s") for name, found in samples.items()}
    headline = rows["replay (machine Events)"].value
    section.ratio("replay / live driving", headline, rows["live driving (decide + apply)"].value)
    section.ratio(
        "replay / replay from stored form",
        headline,
        rows["replay from stored form (ISO `at` → µs)"].value,
    )
    section.notes.append(
        f"history: {len(history):,} events of {len(kinds)} kinds ({', '.join(kinds)}), "
        f"recorded at {recording_rate:,.0f} events/s; replay plus one `advance` reproduces "
        "the live run's snapshot, effects included (checked before timing; the timed "
        "replay does not call `advance`)."
    )
    section.notes.append(
        "replay = `Run(sop, Expressions()).replay(events)` on in-memory events; the stored "
        "form adds `iso_to_us` per event as `Engine.load` does; neither reads the database "
        "(see the ledger section for that)."
    )
    section.targets.append(Target("replay", headline, 500_000, "events/s"))
    return section
