"""Timing and reporting shared by every benchmark: one way to measure, one way to print.

Scripts, not tests: nothing here asserts speed. Each benchmark module returns a `Section`
(rows, ratios against alternatives measured in the same process, targets); `run.py`
prints them. Imports the standard library only.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

#: Every measurement is repeated this many times after one warm-up; medians are reported.
REPEATS = 5
#: Fewest repeats kept when a comparison runs past its time budget (shown as n=… per row).
MIN_REPEATS = 3

clock = time.perf_counter


# ---------------------------------------------------------------- measuring


def rate(op: Callable[[], int], *, seconds: float, max_calls: int) -> float:
    """Units per second of `op` (which returns how many units it did).

    Calls `op` until `seconds` have passed or it was called `max_calls` times, whichever
    comes first, so every loop is bounded by both time and count.
    """
    units = 0
    calls = 0
    started = clock()
    elapsed = 0.0
    while calls < max_calls and elapsed < seconds:
        units += op()
        calls += 1
        elapsed = clock() - started
    return units / elapsed


def duration(op: Callable[[], object]) -> float:
    """Seconds one call of `op` takes."""
    started = clock()
    op()
    return clock() - started


def latencies(op: Callable[[int], object], *, seconds: float, max_calls: int) -> list[float]:
    """Seconds of each call `op(i)`, i = 0, 1, …, bounded by time and count."""
    found: list[float] = []
    deadline = clock() + seconds
    for i in range(max_calls):
        started = clock()
        op(i)
        ended = clock()
        found.append(ended - started)
        if ended > deadline:
            break
    return found


def interleaved(
    cases: Mapping[str, Callable[[], float]],
    *,
    repeats: int = REPEATS,
    warmup: int = 1,
    budget: float = 30.0,
) -> dict[str, list[float]]:
    """Run each case `warmup` times unrecorded, then `repeats` rounds of every case in turn.

    Stops early, after at least MIN_REPEATS rounds, once `budget` seconds have passed, so
    a loaded machine cannot stretch the run without bound; rows show how many samples
    they hold.

    Interleaving the alternatives (A, B, A, B, …) spreads drift of the machine (other
    processes, CPU frequency) over all of them instead of penalising whichever ran last.
    A full collection before each sample keeps one case's garbage out of the next one's
    time; the collector stays enabled while measuring, as in production.
    """
    for _ in range(warmup):
        for case in cases.values():
            gc.collect()
            case()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    started = clock()
    for done in range(1, repeats + 1):
        for name, case in cases.items():
            gc.collect()
            samples[name].append(case())
        if done >= MIN_REPEATS and clock() - started > budget:
            break
    return samples


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in (0, 100]."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# ---------------------------------------------------------------- reporting


@dataclass
class Row:
    """One measured figure: a median over repeats, with its unit and the spread seen."""

    name: str
    value: float
    unit: str
    detail: str = ""

    def shown(self) -> str:
        return f"{fmt(self.value)} {self.unit}"


@dataclass
class Target:
    """A goal from the brief, judged against a figure measured in this run."""

    what: str
    value: float
    goal: float
    unit: str
    higher_is_better: bool = True

    @property
    def passed(self) -> bool:
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "MISS"

    def figure(self) -> str:
        op = "≥" if self.higher_is_better else "≤"
        return f"{self.what}: {fmt(self.value)} {self.unit} (target {op} {fmt(self.goal)})"

    def line(self) -> str:
        return f"{self.verdict}  {self.figure()}"


@dataclass
class Section:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    ratios: list[tuple[str, float]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, name: str, samples: Sequence[float], unit: str, scale: float = 1.0) -> Row:
        """Add the median of `samples` (times `scale`) with its min–max as the detail."""
        values = [v * scale for v in samples]
        found = Row(
            name,
            median(values),
            unit,
            f"n={len(values)}, {fmt(min(values))}–{fmt(max(values))}",
        )
        self.rows.append(found)
        return found

    def ratio(self, label: str, numerator: float, denominator: float) -> float:
        value = numerator / denominator
        self.ratios.append((label, value))
        return value


def fmt(value: float) -> str:
    """Readable at any magnitude: 1,234,567 / 12,345 / 123.4 / 1.23 / 0.0123."""
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def render_text(section: Section) -> str:
    width = max((len(r.name) for r in section.rows), default=10)
    shown = [r.shown() for r in section.rows]
    value_width = max((len(s) for s in shown), default=10)
    lines = [f"== {section.name}: {section.title} ({section.seconds:.1f} s)"]
    lines.append(f"  {'measure':<{width}}  {'median':>{value_width}}  spread")
    for row, text in zip(section.rows, shown, strict=True):
        lines.append(f"  {row.name:<{width}}  {text:>{value_width}}  {row.detail}")
    lines += [f"  {label} = {value:.2f}×" for label, value in section.ratios]
    lines += [f"  {t.line()}" for t in section.targets]
    lines += [f"  note: {n}" for n in section.notes]
    return "\n".join(lines)


def render_markdown(section: Section) -> str:
    lines = [f"### {section.name}: {section.title}", ""]
    lines += ["| measure | median | spread |", "|---|---:|---|"]
    lines += [f"| {r.name} | {r.shown()} | {r.detail} |" for r in section.rows]
    if section.ratios:
        lines += ["", "| ratio (same run) | value |", "|---|---:|"]
        lines += [f"| {label} | {value:.2f}× |" for label, value in section.ratios]
    if section.targets:
        lines += [""] + [f"- **{t.verdict}** {t.figure()}" for t in section.targets]
    if section.notes:
        lines += [""] + [f"- {n}" for n in section.notes]
    return "\n".join(lines)
