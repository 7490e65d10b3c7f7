"""An SOP's state graph as inline SVG, drawn here because Graphviz may not be installed.

Edge module (markupsafe for escaping). A layered drawing: cycles are broken by a depth-first
walk from the start, states are placed on the longest forward path to them, nested
branches of parallel and map states hang below their owner, and everything the branches
end in leads on to the owner's successors. Current states are highlighted, visited ones
shaded. Every label is escaped; class names come from fixed words only.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from storeops import spec as s

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN = 184, 46, 22, 44, 16


@dataclass
class _Graph:
    order: list[str] = field(default_factory=list)  # states in discovery order
    states: dict[str, Any] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # drawn
    layout: dict[str, list[str]] = field(default_factory=dict)  # successors for layering


def _collect(graph: _Graph, states: dict[str, Any]) -> None:
    for sid, state in states.items():
        graph.states[sid] = state
        graph.layout.setdefault(sid, [])
        for name, target in s.transitions(state):
            label = "" if name == "next" else name.split(".")[-1].removeprefix("on_")
            graph.edges.append((sid, target, label))
            graph.layout[sid].append(target)
        branches: list[Any] = []
        if isinstance(state, s.ParallelState):
            branches = list(state.branches.values())
        elif isinstance(state, s.MapState):
            branches = [state.iterator]
        for branch in branches:
            _collect(graph, branch.states)
            graph.edges.append((sid, branch.start, "…"))
            graph.layout[sid].insert(0, branch.start)
            after = [t for _n, t in s.transitions(state)]
            for inner, inner_state in branch.states.items():
                if s.is_end(inner_state):
                    graph.layout.setdefault(inner, []).extend(after)


def _layers(graph: _Graph, start: str) -> dict[str, int]:
    """Longest-path layers over the forward edges of a depth-first walk from `start`."""
    seen: dict[str, int] = {}  # 1 on the stack, 2 finished
    forward: dict[str, list[str]] = {sid: [] for sid in graph.states}
    finished: list[str] = []

    def visit(node: str) -> None:
        seen[node] = 1
        graph.order.append(node)
        for target in graph.layout.get(node, []):
            if target not in graph.states:
                continue
            if seen.get(target) == 1:
                continue  # a back edge: drawn, but not used for placing states
            forward[node].append(target)
            if target not in seen:
                visit(target)
        seen[node] = 2
        finished.append(node)

    visit(start)
    for sid in graph.states:  # unreachable states still get drawn
        if sid not in seen:
            visit(sid)
    layer = dict.fromkeys(graph.states, 0)
    for node in reversed(finished):  # reverse post-order is a topological order
        for target in forward[node]:
            layer[target] = max(layer[target], layer[node] + 1)
    return layer


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _clip(text: str, limit: int) -> str:
    if _width(text) <= limit:
        return text
    out = ""
    for char in text:
        if _width(out + char) > limit - 1:
            break
        out += char
    return out + "…"


def _kind(state: Any) -> str:
    kind = str(getattr(state, "type", "state"))
    return kind if kind in s.STATE_TYPES else "state"


def state_svg(
    sop: s.SopSpec,
    locale: str,
    *,
    current: Iterable[str] = (),
    visited: Iterable[str] = (),
) -> Markup:
    """The diagram as an <svg> element, safe to place in a page."""
    graph = _Graph()
    _collect(graph, sop.states)
    layer = _layers(graph, sop.start)
    rows: dict[int, list[str]] = {}
    for sid in graph.order:
        rows.setdefault(layer[sid], []).append(sid)
    widest = max(len(r) for r in rows.values())
    width = MARGIN * 2 + widest * BOX_W + (widest - 1) * GAP_X
    height = MARGIN * 2 + 20 + len(rows) * (BOX_H + GAP_Y)
    where: dict[str, tuple[float, float]] = {}
    for number, row in sorted(rows.items()):
        span = len(row) * BOX_W + (len(row) - 1) * GAP_X
        left = (width - span) / 2
        for index, sid in enumerate(row):
            where[sid] = (left + index * (BOX_W + GAP_X), MARGIN + 20 + number * (BOX_H + GAP_Y))
    now, been = set(current), set(visited)
    right = float(width)  # back edges bend out to the right: the drawing widens for them
    parts = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrowhead"/></marker></defs>',
    ]
    sx, sy = where[sop.start]
    parts.append(f'<circle class="start" cx="{sx + BOX_W / 2}" cy="{MARGIN + 6}" r="6"/>')
    parts.append(
        f'<line class="edge" x1="{sx + BOX_W / 2}" y1="{MARGIN + 12}" x2="{sx + BOX_W / 2}" '
        f'y2="{sy}" marker-end="url(#arrow)"/>'
    )
    for source, target, label in graph.edges:
        if source not in where or target not in where:
            continue
        (x1, y1), (x2, y2) = where[source], where[target]
        dashed = " branch" if label == "…" else ""
        if layer[target] > layer[source]:
            path = f"M{x1 + BOX_W / 2},{y1 + BOX_H} L{x2 + BOX_W / 2},{y2}"
            lx, ly = (x1 + x2 + BOX_W) / 2 + 4, (y1 + BOX_H + y2) / 2
        else:  # back or sideways: around the right-hand side
            bend = max(x1, x2) + BOX_W + 30 + 6 * abs(layer[source] - layer[target])
            path = (
                f"M{x1 + BOX_W},{y1 + BOX_H / 2} C{bend},{y1 + BOX_H / 2} "
                f"{bend},{y2 + BOX_H / 2} {x2 + BOX_W},{y2 + BOX_H / 2}"
            )
            lx, ly = bend - 8, (y1 + y2 + BOX_H) / 2
            right = max(right, bend + 12 + 6 * len(label))
            dashed += " back"
        parts.append(f'<path class="edge{dashed}" d="{path}" marker-end="url(#arrow)"/>')
        if label and label != "…":
            parts.append(f'<text class="edge-label" x="{lx}" y="{ly}">{escape(label)}</text>')
    for sid, (x, y) in where.items():
        state = graph.states[sid]
        kind = _kind(state)
        status = " current" if sid in now else " visited" if sid in been else ""
        title = s.localize(getattr(state, "title", None), locale) or sid
        role = getattr(state, "role", None) or getattr(state, "uses", None) or ""
        sub = f"{kind} · {role}" if role else kind
        radius = 22 if s.is_end(state) else 8
        parts.append(
            f'<g class="node {kind}{status}" data-state="{escape(sid)}">'
            f"<title>{escape(sid)}: {escape(title)}</title>"
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="{radius}"/>'
            f'<text x="{x + BOX_W / 2}" y="{y + 19}" class="label">'
            f"{escape(_clip(title, 26))}</text>"
            f'<text x="{x + BOX_W / 2}" y="{y + 36}" class="sub">{escape(_clip(sub, 30))}</text>'
            "</g>"
        )
    parts.append("</svg>")
    full = int(right + MARGIN)
    parts.insert(
        0,
        f'<svg class="diagram" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {full} {height}"'
        f' width="{full}" height="{height}" role="img" aria-label="{escape(sop.id)}">',
    )
    return Markup("".join(parts))
