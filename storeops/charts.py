"""Hand-written SVG charts for reports: grouped and stacked horizontal bars, rate bars.

Pure: standard library only, no JavaScript, no external assets. Output is a function of
the arguments alone (fixed layout, fixed number formatting), so tests can compare it byte
for byte. Every piece of text is XML-escaped; labels are shown as given (callers localize)
in a font list with CJK fallbacks, so Simplified Chinese renders wherever a CJK font is
installed. Each bar carries a <title> with its exact value: a tooltip without script.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "FONT_FAMILY",
    "PALETTE",
    "Bar",
    "Rate",
    "bar_chart",
    "escape",
    "format_seconds",
    "rate_chart",
    "stacked_bar_chart",
]

FONT_FAMILY: Final = (
    "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, "
    "'PingFang SC', 'Hiragino Sans GB', 'Microsoft YaHei', 'Noto Sans CJK SC', "
    "'Noto Sans SC', 'Source Han Sans SC', 'WenQuanYi Micro Hei', sans-serif"
)
"""Latin faces first, then the common Simplified Chinese faces of macOS, Windows, Linux."""

PALETTE: Final = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948")
_TEXT, _MUTED, _GRID = "#222222", "#666666", "#e3e3e3"
_BAD, _GOOD, _WARN = "#c0392b", "#59a14f", "#e8a33d"

_WIDTH: Final = 760
_LABEL_MAX: Final = 34  # display columns a label may take before it is cut with "…"
_CHAR_PX: Final = 7.0  # width of one display column at 12px, roughly
_INVALID_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

Unit = Literal["duration", "number"]


@dataclass(frozen=True, slots=True)
class Bar:
    """One row: its label and one value per series (seconds for durations)."""

    label: str
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Rate:
    """One row of a rate chart: `rate` 0–1 (None: nothing to judge), breaches, total."""

    label: str
    rate: float | None
    breaches: int
    total: int


def escape(text: str) -> str:
    """Text safe inside an XML element or a double-quoted attribute. Characters XML 1.0
    forbids (control characters) become U+FFFD, so the document always parses."""
    text = _INVALID_XML.sub("\ufffd", text)
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&#39;")
    )


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _cut(text: str, limit: int = _LABEL_MAX) -> str:
    """`text` cut to `limit` display columns (CJK count two), ending in … when cut."""
    if _columns(text) <= limit:
        return text
    out, used = [], 0
    for ch in text:
        size = _columns(ch)
        if used + size > limit - 1:
            break
        out.append(ch)
        used += size
    return "".join(out) + "…"


def _num(value: float) -> str:
    """A fixed, short decimal form: at most two decimals, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def format_seconds(seconds: float) -> str:
    """A duration for a chart: 45s, 12m, 3.5h, 2.25d."""
    if seconds < 90:
        return f"{_num(seconds)}s"
    if seconds < 90 * 60:
        return f"{_num(seconds / 60)}m"
    if seconds < 48 * 3600:
        return f"{_num(seconds / 3600)}h"
    return f"{_num(seconds / 86400)}d"


def _nice_step(top: float, ticks: int = 5) -> float:
    """A 1-2-5 step that divides [0, top] into about `ticks` intervals."""
    raw = top / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if raw <= factor * power:
            return factor * power
    return 10 * power  # pragma: no cover - the loop always returns


def _axis(top: float, unit: Unit) -> tuple[float, list[float], Callable[[float], str]]:
    """The axis maximum, tick values (in seconds or plain numbers) and their formatter."""
    if top <= 0:
        top = 1.0
    if unit == "number":
        step = _nice_step(top)
        return _ticks(top, step, 1.0, _num)
    size, suffix = (1.0, "s")
    for candidate, name in ((60.0, "m"), (3600.0, "h"), (86400.0, "d")):
        if top >= 2 * candidate:
            size, suffix = candidate, name
    step = _nice_step(top / size)
    return _ticks(top / size, step, size, lambda v: f"{_num(v / size)}{suffix}" if v else "0")


def _ticks(
    top: float, step: float, scale: float, fmt: Callable[[float], str]
) -> tuple[float, list[float], Callable[[float], str]]:
    count = max(1, math.ceil(top / step - 1e-9))
    values = [round(i * step, 9) * scale for i in range(count + 1)]
    return values[-1], values, fmt


class _Svg:
    """Accumulates elements; coordinates are written with `_num` for stable output."""

    def __init__(self, title: str, height: float) -> None:
        self.height = height
        self.parts: list[str] = []
        self.title = title

    def add(self, element: str) -> None:
        self.parts.append(element)

    def text(
        self,
        x: float,
        y: float,
        content: str,
        *,
        size: int = 12,
        anchor: str = "start",
        fill: str = _TEXT,
        weight: str | None = None,
        tooltip: str | None = None,
    ) -> None:
        bold = f' font-weight="{weight}"' if weight else ""
        tip = f"<title>{escape(tooltip)}</title>" if tooltip else ""
        self.add(
            f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{fill}"{bold}>{tip}{escape(content)}</text>'
        )

    def rect(self, x: float, y: float, w: float, h: float, fill: str, tooltip: str) -> None:
        self.add(
            f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(max(w, 0.0))}" '
            f'height="{_num(h)}" fill="{fill}"><title>{escape(tooltip)}</title></rect>'
        )

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str) -> None:
        self.add(
            f'<line x1="{_num(x1)}" y1="{_num(y1)}" x2="{_num(x2)}" y2="{_num(y2)}" '
            f'stroke="{stroke}" stroke-width="1"/>'
        )

    def render(self) -> str:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" '
            f'height="{_num(self.height)}" viewBox="0 0 {_WIDTH} {_num(self.height)}" '
            f'class="chart" role="img" aria-label="{escape(self.title)}" '
            f'font-family="{FONT_FAMILY}">'
        )
        body = "\n".join(
            [
                f"<title>{escape(self.title)}</title>",
                '<rect width="100%" height="100%" fill="#ffffff"/>',
                *self.parts,
            ]
        )
        return f"{head}\n{body}\n</svg>\n"


def _frame(
    title: str, labels: Sequence[str], rows_height: float, legend: Sequence[tuple[str, str]]
) -> tuple[_Svg, float, float, float]:
    """The chart with its title and legend ((name, colour) pairs) drawn; returns it with
    the plot's left x, top y and width."""
    top = 34.0 + (22.0 if legend else 0.0)
    svg = _Svg(title, top + rows_height + 36.0)
    svg.text(12, 22, title, size=15, weight="bold")
    x = 12.0
    for name, colour in legend:
        svg.rect(x, 33, 12, 12, colour, name)
        svg.text(x + 17, 43, name, size=12)
        x += 17 + _columns(name) * _CHAR_PX + 18
    widest = max((_columns(_cut(label)) for label in labels), default=4)
    left = min(12.0 + widest * _CHAR_PX + 10.0, _WIDTH * 0.42)
    return svg, left, top, _WIDTH - left - 90.0


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _empty(title: str, message: str) -> str:
    svg = _Svg(title, 70.0)
    svg.text(12, 22, title, size=15, weight="bold")
    svg.text(12, 52, message, fill=_MUTED)
    return svg.render()


def _grid(
    svg: _Svg,
    left: float,
    top: float,
    width: float,
    bottom: float,
    ticks: Sequence[float],
    fmt: Callable[[float], str],
    axis_top: float,
) -> None:
    for value in ticks:
        x = left + width * (value / axis_top)
        svg.line(x, top - 4, x, bottom, _GRID)
        svg.text(x, bottom + 16, fmt(value), size=11, anchor="middle", fill=_MUTED)
    svg.line(left, top - 4, left, bottom, _MUTED)


def bar_chart(
    title: str,
    bars: Sequence[Bar],
    *,
    series: Sequence[str],
    unit: Unit = "duration",
    empty: str = "no data / 无数据",
) -> str:
    """Grouped horizontal bars: one group per row, one bar per series (e.g. p50 and p90
    cycle time per SOP). Durations are seconds; the axis picks s, m, h or d."""
    if not bars:
        return _empty(title, empty)
    group = 14.0 * len(series) + 12.0
    labels = [b.label for b in bars]
    legend = [(name, _colour(i)) for i, name in enumerate(series)] if len(series) > 1 else []
    svg, left, top, width = _frame(title, labels, group * len(bars), legend)
    axis_top, ticks, fmt = _axis(max(max(b.values, default=0.0) for b in bars), unit)
    bottom = top + group * len(bars)
    _grid(svg, left, top, width, bottom, ticks, fmt, axis_top)
    value_text = format_seconds if unit == "duration" else _num
    for row, bar in enumerate(bars):
        y = top + row * group
        svg.text(left - 8, y + group / 2 + 2, _cut(bar.label), anchor="end", tooltip=bar.label)
        for index, value in enumerate(bar.values):
            by = y + 6 + index * 14.0
            w = width * (value / axis_top)
            name = series[index] if index < len(series) else str(index + 1)
            tip = f"{bar.label} — {name}: {value_text(value)}"
            svg.rect(left, by, w, 12, _colour(index), tip)
            svg.text(left + w + 4, by + 10, value_text(value), size=11, fill=_MUTED)
    return svg.render()


def stacked_bar_chart(
    title: str,
    bars: Sequence[Bar],
    *,
    series: Sequence[str],
    unit: Unit = "duration",
    empty: str = "no data / 无数据",
) -> str:
    """Stacked horizontal bars: one bar per row, its values laid end to end in series
    order (e.g. waiting, working, with people per step); the total is written after."""
    if not bars:
        return _empty(title, empty)
    used = [i for i in range(len(series)) if any(i < len(b.values) and b.values[i] for b in bars)]
    legend = [(series[i], _colour(i)) for i in used]
    row_height = 24.0
    svg, left, top, width = _frame(title, [b.label for b in bars], row_height * len(bars), legend)
    axis_top, ticks, fmt = _axis(max(sum(b.values) for b in bars), unit)
    bottom = top + row_height * len(bars)
    _grid(svg, left, top, width, bottom, ticks, fmt, axis_top)
    value_text = format_seconds if unit == "duration" else _num
    for row, bar in enumerate(bars):
        y = top + row * row_height
        svg.text(left - 8, y + 16, _cut(bar.label), anchor="end", tooltip=bar.label)
        x = left
        for index in used:
            value = bar.values[index] if index < len(bar.values) else 0.0
            if value <= 0:
                continue
            w = width * (value / axis_top)
            tip = f"{bar.label} — {series[index]}: {value_text(value)}"
            svg.rect(x, y + 5, w, 14, _colour(index), tip)
            x += w
        svg.text(x + 4, y + 16, value_text(sum(bar.values)), size=11, fill=_MUTED)
    return svg.render()


def rate_chart(
    title: str, rates: Sequence[Rate], *, lang: str = "en", empty: str = "no data / 无数据"
) -> str:
    """On-time rate bars (0–100 %) with each row's breach count beside it, in red when
    there were breaches; rows with nothing to judge say so instead of a bar."""
    if not rates:
        return _empty(title, empty)
    zh = lang == "zh-CN"
    row_height = 24.0
    svg, left, top, width = _frame(title, [r.label for r in rates], row_height * len(rates), ())
    width -= 60.0  # room for the breach note
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    _grid(
        svg,
        left,
        top,
        width,
        top + row_height * len(rates),
        ticks,
        lambda v: f"{round(v * 100)}%",
        1.0,
    )
    for row, item in enumerate(rates):
        y = top + row * row_height
        svg.text(left - 8, y + 16, _cut(item.label), anchor="end", tooltip=item.label)
        if item.rate is None:
            svg.text(left + 4, y + 16, "无到期任务" if zh else "nothing due", size=11, fill=_MUTED)
            continue
        percent = f"{item.rate * 100:.1f}%"
        breaches = (
            f"违约 {item.breaches}"
            if zh
            else f"{item.breaches} breach" + ("" if item.breaches == 1 else "es")
        )
        tip = f"{item.label}: {percent} ({item.total}; {breaches})"
        svg.rect(left, y + 5, width * item.rate, 14, _GOOD if not item.breaches else _WARN, tip)
        svg.text(left + width * item.rate + 4, y + 16, percent, size=11, fill=_MUTED)
        svg.text(
            left + width + 56,
            y + 16,
            breaches,
            size=11,
            fill=_BAD if item.breaches else _MUTED,
            weight="bold" if item.breaches else None,
        )
    return svg.render()
